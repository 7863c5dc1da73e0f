"""Training: the one loop, the teacher, tokenizer and distillation objectives, and selection."""

from vqgraph.training.distill import (
    METHODS,
    CodebookDistiller,
    DistillConfig,
    DistillLosses,
    DistillObjective,
    StudentResult,
    fit_student,
    method_defaults,
)
from vqgraph.training.loop import FitResult, Share, TrainConfig, fit
from vqgraph.training.selection import BestCheckpoint
from vqgraph.training.teacher import (
    TeacherObjective,
    TeacherResult,
    codebook_stats,
    fit_teacher,
    teacher_metrics,
    usage_stats,
)
from vqgraph.training.tokenizer import TokenizerObjective, fit_tokenizer

__all__ = [
    "METHODS",
    "BestCheckpoint",
    "CodebookDistiller",
    "DistillConfig",
    "DistillLosses",
    "DistillObjective",
    "FitResult",
    "Share",
    "StudentResult",
    "TeacherObjective",
    "TeacherResult",
    "TokenizerObjective",
    "TrainConfig",
    "codebook_stats",
    "fit",
    "fit_student",
    "fit_teacher",
    "fit_tokenizer",
    "method_defaults",
    "teacher_metrics",
    "usage_stats",
]
