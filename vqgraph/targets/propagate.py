"""Teacher-side propagation: the teacher's soft labels corrected and smoothed over the observed
graph with the training labels (:func:`correct_and_smooth`, Huang et al. 2021, "Combining Label
Propagation and Simple Models Out-performs Graph Neural Networks"). A training-time transform of
the targets: the student still predicts from features alone."""

from __future__ import annotations

import math
import numbers
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from torch_geometric.nn.models import CorrectAndSmooth
from torch_geometric.utils import to_torch_csr_tensor

from vqgraph.data.splits import NodeSplit, graph_and_split
from vqgraph.targets.artifact import TeacherTargets
from vqgraph.targets.outputs import targets_from_outputs

WHERE = "correct_and_smooth"


def correct_and_smooth(targets: TeacherTargets, data: Data, split: NodeSplit, *, correct_alpha: float = 0.979,
                       correct_hops: int = 50, smooth_alpha: float = 0.756, smooth_hops: int = 50,
                       temperature: float = 1.0) -> TeacherTargets:
    """The teacher's soft labels corrected and smoothed over the observed graph (C&S), as targets.

    The soft labels ``Z = softmax(logits / temperature)`` of the observed nodes go through the two
    steps of C&S over the observed graph's symmetric-normalised adjacency ``S = D^-1/2 A D^-1/2``
    (no self-loops; PyG's :class:`~torch_geometric.nn.models.CorrectAndSmooth`, autoscaled):

    * Correct: the training nodes' residuals ``E = Y - Z`` (one-hot label minus soft label; 0
      elsewhere) are spread by ``correct_hops`` rounds of ``E <- correct_alpha S E + (1 -
      correct_alpha) E0`` (clipped to [-1, 1]), each row rescaled to the training residuals' mean
      L1 norm and added to ``Z``;
    * Smooth: the training nodes clamped to their one-hot labels, ``smooth_hops`` rounds of
      ``Z <- smooth_alpha S Z + (1 - smooth_alpha) Z0`` (clipped to [0, 1]).

    Rows are then made distributions again (negative parts cut, divided by their sum; a row left
    without mass keeps its soft label). An alpha of 0 leaves its step out (with both 0 the soft
    labels are unchanged). Only the training nodes' labels are read (``data.y[split.train_idx]``);
    inductively the hidden test nodes and their edges are never touched: their rows stay the
    teacher's soft labels.

    Args:
        targets: the teacher's own targets for ``data`` and ``split`` (not propagated already).
        correct_alpha, smooth_alpha: in [0, 1]. correct_hops, smooth_hops: rounds, >= 1.
        temperature: divides the logits before the softmax (> 0): the soft labels the student reads.

    Returns:
        New :class:`TeacherTargets`, made through :func:`~vqgraph.targets.targets_from_outputs`
        (checked whole): logits the propagated probabilities' log [N, C] (read them at temperature
        1); ``z``, codes and codebook the teacher's; ``config["propagate"]`` records the transform and
        ``metrics`` are the propagated targets' own accuracy (on the sets of
        :meth:`~vqgraph.evaluation.Evaluator.for_teacher`): they never pass as the raw teacher's.

    Raises:
        TypeError, ValueError: an argument of the wrong type or outside its range, targets already
            propagated. ArtifactMismatchError: targets made for another graph or split.
    """
    data = graph_and_split(data, split, WHERE)
    _check_arguments(targets, correct_alpha, correct_hops, smooth_alpha, smooth_hops, temperature)
    targets.check_matches(data, split)
    probs = F.softmax(targets.logits.float() / temperature, dim=-1)
    observed = split.observed_idx.to(probs.device)
    train = split.to_local(split.train_idx).to(probs.device)
    labels = data.y[split.train_idx].to(probs.device)  # the training labels: the only ones read
    edges = split.to_local(split.observed_edges(data.edge_index)).to(probs.device)
    cs = CorrectAndSmooth(correct_hops, correct_alpha, smooth_hops, smooth_alpha, autoscale=True)
    propagated = probs.clone()
    propagated[observed] = _propagate(cs, probs[observed], labels, train, edges)
    logits = propagated.clamp_min(torch.finfo(propagated.dtype).tiny).log()
    record = {"method": "cs", "correct_alpha": float(correct_alpha), "correct_hops": int(correct_hops),
              "smooth_alpha": float(smooth_alpha), "smooth_hops": int(smooth_hops), "temperature": float(temperature)}
    return targets_from_outputs(logits, data, split, targets.z if targets.has_z else None, codes=targets.codes,
                                codebook=targets.codebook, metric=targets.metric,
                                config={**targets.config, "propagate": record})  # checked whole, as any targets


def _propagate(cs: CorrectAndSmooth, probs: Tensor, labels: Tensor, train: Tensor, edges: Tensor) -> Tensor:
    """C&S of ``probs`` [n, C] over the graph of ``edges`` [2, E] (local ids, both directions),
    ``train`` [T] local ids with their ``labels`` [T]; a step whose alpha is 0 left out. Returns
    rows made distributions again (a row without mass keeps its ``probs`` row)."""
    with warnings.catch_warnings():  # torch's one-time "sparse CSR is beta" notices
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        adj_t = to_torch_csr_tensor(edges.flip(0), size=(probs.size(0), probs.size(0)))  # [target, source]
    out = probs
    if cs.prop1.alpha > 0:
        out = cs.correct(out, labels, train, adj_t)
    if cs.prop2.alpha > 0:
        out = cs.smooth(out, labels, train, adj_t)
    out = out.clamp_min(0.0)
    mass = out.sum(-1, keepdim=True)
    keep = torch.isfinite(mass) & (mass > 0)
    return torch.where(keep, out / torch.where(keep, mass, torch.ones_like(mass)), probs)


def _check_arguments(targets, correct_alpha, correct_hops, smooth_alpha, smooth_hops, temperature) -> None:
    if not isinstance(targets, TeacherTargets):
        raise TypeError(f"{WHERE}: targets must be a TeacherTargets (from targets_from_model, targets_from_outputs or "
                        f"fit_teacher(...).targets), got {type(targets).__name__}")
    if "propagate" in targets.config:
        raise ValueError(f"{WHERE}: these targets were propagated already (config['propagate'] = "
                         f"{targets.config['propagate']!r}): pass the teacher's own targets")
    for name, value in (("correct_alpha", correct_alpha), ("smooth_alpha", smooth_alpha)):
        if not _real(value) or not 0.0 <= value <= 1.0:
            raise ValueError(f"{WHERE}: {name} must be a number in [0, 1] (0 leaves its step out), got {value!r}")
    for name, value in (("correct_hops", correct_hops), ("smooth_hops", smooth_hops)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{WHERE}: {name} must be an int >= 1 (rounds of propagation), got {value!r}")
    if not _real(temperature) or temperature <= 0:
        raise ValueError(f"{WHERE}: temperature must be a finite number > 0 (it divides the logits), got "
                         f"{temperature!r}")


def _real(value) -> bool:
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)
