"""Training: the one loop, the teacher, tokenizer and distillation objectives, and selection."""

from vqgraph.training.distill import (
    METHODS,
    DistillConfig,
    DistillObjective,
    LossTerm,
    StudentResult,
    TermContext,
    TermInputs,
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
    "DistillConfig",
    "DistillObjective",
    "FitResult",
    "LossTerm",
    "Share",
    "StudentResult",
    "TeacherObjective",
    "TeacherResult",
    "TermContext",
    "TermInputs",
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
