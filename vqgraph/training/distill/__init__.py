"""Distillation of a teacher into a graph-free student: ``mlp``, ``glnn`` and ``vqgraph``.

Modules by job: :mod:`.base` (the loss-term mechanism: :class:`LossTerm`, :class:`TermInputs`,
:class:`TermContext`), :mod:`.config` (what the student learns from, and each method's defaults),
:mod:`.terms` (the built-in loss terms, one unit each), :mod:`.objective` (the nodes, batches and
loss terms of a step of the training loop) and :mod:`.fit` (:func:`fit_student`).
"""

from vqgraph.training.distill.base import BUILTIN_TERMS, NEEDS, LossTerm, TeacherSide, TermContext, TermInputs
from vqgraph.training.distill.config import METHODS, MLP_WEIGHT_DECAYS, DistillConfig, MethodDefaults, method_defaults
from vqgraph.training.distill.fit import (
    StudentResult,
    fit_student,
    predict_rows,
    target_stats,
    teacher_side,
)
from vqgraph.training.distill.objective import DistillObjective, fit_nodes
from vqgraph.training.distill.terms import CODE_TERMS

__all__ = [
    "BUILTIN_TERMS",
    "CODE_TERMS",
    "METHODS",
    "MLP_WEIGHT_DECAYS",
    "NEEDS",
    "DistillConfig",
    "DistillObjective",
    "LossTerm",
    "MethodDefaults",
    "StudentResult",
    "TeacherSide",
    "TermContext",
    "TermInputs",
    "fit_nodes",
    "fit_student",
    "method_defaults",
    "predict_rows",
    "target_stats",
    "teacher_side",
]
