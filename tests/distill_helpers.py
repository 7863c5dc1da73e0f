"""Loss terms of a DistillConfig set up against targets and called on a hand-made batch, through the
same mechanism fit_student uses (vqgraph.training.distill.base)."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from vqgraph.models.student import StudentOutput
from vqgraph.training.distill import TeacherSide, TermContext, TermInputs, fit_nodes, teacher_side
from vqgraph.training.loop import Share


class SetUp:
    """``cfg``'s built-in terms (by name) after their setup, and the teacher's side they read."""

    def __init__(self, targets, cfg, temperature: float = 1.0, fit_idx=None, data=None, split=None):
        if data is not None:  # the path of fit_student: checked, calibrated unless cfg fixes the temperature
            self.teacher = teacher_side(data, split, targets, cfg, "cpu")
            fit_idx = fit_nodes(split, cfg)
        else:
            self.teacher = TeacherSide(targets, "cpu", temperature)
            fit_idx = torch.arange(targets.num_nodes) if fit_idx is None else fit_idx
        x = data.x if data is not None else None
        self.context = TermContext(data, split, fit_idx, x, targets, self.teacher, "cpu")
        self.terms = cfg.loss_terms()
        for term in self.terms:
            term.setup(self.context)
        self.by_name: Dict[str, object] = {term.name: term for term in self.terms}

    def __getitem__(self, name: str):
        return self.by_name[name]

    def inputs(self, idx, logits, z=None, y=None, labelled=None, share: Optional[Share] = None) -> TermInputs:
        labelled = torch.zeros(idx.numel(), dtype=torch.bool) if labelled is None else labelled
        y = torch.full((idx.numel(),), -1, dtype=torch.long) if y is None else y
        share = share or Share(idx.numel(), int(labelled.sum()))
        return TermInputs(idx, None, y, labelled, share, self.teacher, StudentOutput(logits, z))

    def weighted(self, name: str, idx, logits, z=None, **kwargs) -> torch.Tensor:
        """The term's weighted value on this batch, as the objective adds it (0 at weight 0)."""
        term = self.by_name[name]
        if not term.weight:
            return logits.new_zeros(())
        return term.weight * term(self.inputs(idx, logits, z, **kwargs))
