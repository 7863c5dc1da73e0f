"""Training: the one loop, the teacher and distillation objectives, evaluation and selection."""

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
from vqgraph.training.evaluation import Evaluator
from vqgraph.training.loop import DivergenceError, FitResult, Share, TrainConfig, fit
from vqgraph.training.selection import BestCheckpoint
from vqgraph.training.teacher import (
    TeacherObjective,
    TeacherResult,
    codebook_stats,
    evaluate_targets,
    fit_teacher,
    usage_stats,
)

__all__ = [
    "METHODS",
    "BestCheckpoint",
    "CodebookDistiller",
    "DistillConfig",
    "DistillLosses",
    "DistillObjective",
    "DivergenceError",
    "Evaluator",
    "FitResult",
    "Share",
    "StudentResult",
    "TeacherObjective",
    "TeacherResult",
    "TrainConfig",
    "codebook_stats",
    "evaluate_targets",
    "fit",
    "fit_student",
    "fit_teacher",
    "method_defaults",
    "usage_stats",
]
