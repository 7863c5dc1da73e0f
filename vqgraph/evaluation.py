"""One evaluator for teacher and student: predictions in, ``{"<set>/acc": ...}`` out (OGB's contract).

The index sets are a split's (:meth:`~vqgraph.data.NodeSplit.index_dict`: ``train``, ``val``,
``test`` or ``test_tran`` / ``test_ind``) or any other dict of index tensors. When both
``test_tran`` and ``test_ind`` are evaluated and the share ``r`` of hidden test nodes is known
(:attr:`~vqgraph.data.NodeSplit.test_ind_ratio`, :meth:`Evaluator.for_split`),
``test_prod/acc = (1 - r) tran + r ind`` is added (the inductive production score).
Predictions may be of all N nodes (a local computation), or of one rank's block of rows: correct
and total counts are then summed over ranks (a collective that every rank must call), so every
rank gets the same dict.
"""

from __future__ import annotations

from typing import Dict, Mapping, Optional

import torch
from torch import Tensor

from vqgraph import distributed


class Evaluator:
    """Accuracy on named index sets of nodes.

    Args:
        y: labels of all N nodes [N] (long).
        index_sets: ``{name: index tensor}`` of node ids (rows of ``y``).
        test_ind_ratio: the share ``r`` of test nodes hidden in the inductive setting: with it and
            both ``test_tran`` and ``test_ind`` among the sets, ``test_prod/acc`` is
            ``(1 - r) test_tran/acc + r test_ind/acc``.

    Call as ``evaluator(pred)`` with class scores [N, C] or predicted classes [N] of all nodes, or
    ``evaluator(pred, rows)`` with those of the rows ``rows`` (a ``range``) only. An empty set
    gives NaN.
    """

    def __init__(self, y: Tensor, index_sets: Mapping[str, Tensor], test_ind_ratio: Optional[float] = None):
        if y.dim() != 1:
            raise ValueError(f"Evaluator: labels must be a vector [N], got shape {tuple(y.shape)}")
        for name, idx in index_sets.items():
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= y.numel()):
                raise ValueError(f"Evaluator: index set {name!r} has ids outside [0, {y.numel()})")
        self.y = y
        self.index_sets = dict(index_sets)
        self.prod_weights: Optional[Dict[str, float]] = None  # set: adds test_prod/acc
        if test_ind_ratio is not None and {"test_tran", "test_ind"} <= set(self.index_sets):
            self.prod_weights = {"test_tran": 1.0 - test_ind_ratio, "test_ind": test_ind_ratio}

    @classmethod
    def for_split(cls, y: Tensor, split) -> "Evaluator":
        """The evaluation sets of a :class:`~vqgraph.data.NodeSplit` (global node ids), with
        ``test_prod/acc`` weighted by the split's share of hidden test nodes."""
        return cls(y, split.index_dict(), split.test_ind_ratio)

    @classmethod
    def for_teacher(cls, y: Tensor, split) -> "Evaluator":
        """The sets a teacher's predictions of all N nodes are judged on: the split as the teacher
        sees it (:meth:`~vqgraph.data.NodeSplit.for_teacher`), and with validation halved the
        student's part as ``val_student``."""
        sets = split.for_teacher().index_dict()
        if split.teacher_val_idx is not None:
            sets["val_student"] = split.for_student().val_idx
        return cls(y, sets, split.test_ind_ratio)

    @property
    def keys(self):
        """The metric keys a call returns."""
        out = [f"{name}/acc" for name in self.index_sets]
        return out + (["test_prod/acc"] if self.prod_weights is not None else [])

    def __call__(self, pred: Tensor, rows: Optional[range] = None) -> Dict[str, float]:
        classes = pred.argmax(-1) if pred.dim() == 2 else pred
        sharded, rows = rows is not None, range(self.y.numel()) if rows is None else rows
        if classes.size(0) != len(rows):
            raise ValueError(f"Evaluator: {classes.size(0)} predictions for {len(rows)} rows")
        counts = []
        for idx in self.index_sets.values():
            idx = idx.to(classes.device)
            mine = idx[(idx >= rows.start) & (idx < rows.stop)]
            correct = (classes[mine - rows.start] == self.y[mine].to(classes.device)).sum()
            counts.append(torch.stack([correct.double().cpu(), torch.tensor(float(mine.numel()), dtype=torch.float64)]))
        totals = torch.stack(counts) if counts else torch.zeros(0, 2)
        totals = distributed.all_reduce_sum(totals) if sharded else totals
        metrics = {
            f"{name}/acc": float(c / n) if n > 0 else float("nan")
            for name, (c, n) in zip(self.index_sets, totals.tolist())
        }
        if self.prod_weights is not None:
            metrics["test_prod/acc"] = sum(w * metrics[f"{name}/acc"] for name, w in self.prod_weights.items())
        return metrics
