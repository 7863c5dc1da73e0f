"""Targets made from targets: several teachers' averaged (:func:`ensemble_targets`), and soft
labels smoothed over the observed graph (:func:`smooth_soft_labels`, a training-time target)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.splits import NodeSplit
from vqgraph.errors import ArtifactMismatchError
from vqgraph.evaluation import Evaluator
from vqgraph.targets.artifact import TeacherTargets


def ensemble_targets(members: Sequence[TeacherTargets], data: Optional[Data] = None,
                     split: Optional[NodeSplit] = None) -> TeacherTargets:
    """One set of targets from several teachers of the same graph and split: the soft labels are
    the members' mean class probabilities (stored as their log, so a temperature still applies);
    ``z``, the codes and the codebook are the first member's (the tokenizer the student's code
    term matches). With ``data`` and ``split``, the ensemble's own accuracy is its metrics (on
    the sets a single teacher's are: :meth:`~vqgraph.evaluation.Evaluator.for_teacher`).

    Raises:
        ArtifactMismatchError: the members are of different graphs, splits or class counts.
    """
    if not members:
        raise ValueError("ensemble_targets: no teachers given")
    first = members[0]
    for i, other in enumerate(members[1:], start=1):
        if other.logits.shape != first.logits.shape:
            raise ArtifactMismatchError(f"ensemble_targets: teacher {i} has logits {tuple(other.logits.shape)}, "
                                        f"teacher 0 {tuple(first.logits.shape)}")
        for key in ("graph_fingerprint", "split_fingerprint"):
            if getattr(other, key) != getattr(first, key):
                raise ArtifactMismatchError(f"ensemble_targets: teacher {i} was made for another graph or split "
                                            f"({key} {getattr(other, key)!r}, teacher 0 {getattr(first, key)!r})")
    if len(members) == 1:
        return first
    probs = torch.stack([m.logits.float().softmax(-1) for m in members]).mean(0)
    logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    metrics: Dict[str, Any] = {"members": len(members)}
    if data is not None and split is not None:
        metrics.update(Evaluator.for_teacher(data.y, split)(logits))
    return dataclasses.replace(first, logits=logits, config={**first.config, "ensemble": len(members)}, metrics=metrics)


@torch.no_grad()
def smooth_soft_labels(probs: Tensor, edge_index: Tensor, hops: int, alpha: float,
                       labels: Optional[Tensor] = None, labelled: Optional[Tensor] = None) -> Tensor:
    """Soft labels mixed with their neighbours', weighted by the neighbours' reliability (a
    training-time target in the spirit of KRD; the student still predicts from features alone).

    ``hops`` rounds of ``Q <- (1 - alpha) * P + alpha * mean_r(Q over neighbours)``, starting from
    ``Q = P``, where ``mean_r`` weighs neighbour ``j`` by its reliability ``1 - H(P_j) / log C``
    (a confident teacher counts more). A node without a neighbour of positive reliability keeps its
    own row. With ``labels`` and a bool mask ``labelled``, the labelled rows of ``P`` are their
    one-hot labels (reliability 1), so the training labels spread to their neighbours as in label
    propagation. Rows stay probability distributions.

    Args:
        probs: [N, C] class probabilities (the calibrated teacher soft labels).
        edge_index: [2, E] edges by global id, only those the training may see (the observed graph).
    """
    if hops < 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smooth_soft_labels: need hops >= 0 and 0 <= alpha <= 1, got {hops}, {alpha}")
    n, c = probs.shape
    base = probs.float().clone()
    if labels is not None and labelled is not None:
        base[labelled] = F.one_hot(labels[labelled], c).to(base.dtype)
    if hops == 0 or alpha == 0.0 or edge_index.numel() == 0:
        return base
    reliability = 1.0 - (-(base * base.clamp_min(1e-12).log()).sum(-1)) / max(math.log(c), 1e-12)
    reliability = reliability.clamp(0.0, 1.0)
    src, dst = edge_index.to(base.device)
    weight = reliability[src]
    total = torch.zeros(n, dtype=base.dtype, device=base.device).index_add_(0, dst, weight)
    has = (total > 0).unsqueeze(1)
    # one sparse [N, N] matrix of the weights (dst <- src): each round is one sparse-dense product,
    # O(E + N C) memory (an [E, C] gather would be 23 GB per round on ogbn-products)
    mix = torch.sparse_coo_tensor(torch.stack([dst, src]), weight, (n, n), check_invariants=False).coalesce()
    out = base
    for _ in range(hops):
        mean = torch.where(has, torch.sparse.mm(mix, out) / total.clamp_min(1e-12).unsqueeze(1), base)
        out = (1.0 - alpha) * base + alpha * mean
    return out
