"""Distillation of a teacher into a graph-free MLP student: ``mlp``, ``glnn`` and ``vqgraph``.

Modules by job: :mod:`.config` (what the student learns from, and each method's defaults),
:mod:`.terms` (the loss terms, one unit each), :mod:`.objective` (the nodes, batches and loss
terms of a step of the training loop) and :mod:`.fit` (:func:`fit_student`).
"""

from vqgraph.training.distill.config import METHODS, MLP_WEIGHT_DECAYS, DistillConfig, MethodDefaults, method_defaults
from vqgraph.training.distill.fit import (
    StudentResult,
    fit_student,
    make_distiller,
    predict_rows,
    target_stats,
)
from vqgraph.training.distill.objective import DistillObjective, fit_nodes
from vqgraph.training.distill.terms import CODE_TERMS, CodebookDistiller, DistillLosses, label_loss

__all__ = [
    "CODE_TERMS",
    "METHODS",
    "MLP_WEIGHT_DECAYS",
    "CodebookDistiller",
    "DistillConfig",
    "DistillLosses",
    "DistillObjective",
    "MethodDefaults",
    "StudentResult",
    "fit_nodes",
    "fit_student",
    "label_loss",
    "make_distiller",
    "method_defaults",
    "predict_rows",
    "target_stats",
]
