"""Training loops, model selection and metrics."""

from vqgraph.training.selection import BestCheckpoint
from vqgraph.training.teacher import (
    TeacherResult,
    TrainConfig,
    accuracy,
    codebook_stats,
    compute_targets,
    evaluate_targets,
    fit_teacher,
)

__all__ = [
    "BestCheckpoint",
    "TeacherResult",
    "TrainConfig",
    "accuracy",
    "codebook_stats",
    "compute_targets",
    "evaluate_targets",
    "fit_teacher",
]
