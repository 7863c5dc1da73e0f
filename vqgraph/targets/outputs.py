"""Any teacher's outputs made into targets, checked at the door: :func:`targets_from_outputs`.

Every teacher's targets pass here: outputs saved by another framework or machine, a model's
(:func:`~vqgraph.targets.targets_from_model`) and the built-in teacher's
(:func:`~vqgraph.training.fit_teacher`). The checks name the argument and the row; the tensors
that pass are kept on the CPU as float32 (a float32 CPU tensor is kept as it is, not copied).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.splits import NodeSplit, graph_and_split
from vqgraph.evaluation import Evaluator
from vqgraph.losses import METRICS, code_logits
from vqgraph.targets.artifact import TeacherTargets, graph_fingerprint

LOGITS_FIX = ("pass the logits, or the probabilities' log (log-probabilities are fine as logits: "
              "probs.clamp_min(1e-30).log())")


def as_tensor(value: Any, name: str, where: str) -> Tensor:
    """``value`` (a torch tensor or numpy array of numbers) as a dense tensor; else TypeError."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise TypeError(f"{where}: {name} must hold numbers, got a numpy array of {value.dtype}")
        value = torch.from_numpy(np.require(value, requirements="W"))  # a read-only array is copied
    if not isinstance(value, Tensor):
        raise TypeError(f"{where}: {name} must be a torch.Tensor or a numpy array, got {type(value).__name__}")
    if value.layout != torch.strided:
        raise TypeError(f"{where}: {name} must be a dense tensor, got layout {value.layout} (call .to_dense())")
    return value


def node_rows(value: Any, name: str, num_nodes: int, where: str, graph: str = "the graph") -> Tensor:
    """``value`` as a CPU float32 [num_nodes, D] tensor (D >= 1) of finite values, one row per
    node of ``graph`` (named in the errors); else an error naming ``name``, the shape or the
    first bad row."""
    value = as_tensor(value, name, where)
    if value.dim() != 2:
        raise ValueError(f"{where}: {name} must be 2-D [{num_nodes}, *] (one row per node), got shape "
                         f"{list(value.shape)}")
    if value.size(0) != num_nodes:
        raise ValueError(f"{where}: {name} has {value.size(0)} rows but {graph} has {num_nodes} nodes (one row "
                         "per node)")
    if value.size(1) == 0:
        raise ValueError(f"{where}: {name} has no columns")
    if not value.is_floating_point():
        raise TypeError(f"{where}: {name} must be floating point, got {value.dtype}")
    value = value.detach().cpu().float()
    finite = torch.isfinite(value).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero().view(-1)
        rows = "" if graph == "the graph" else f", rows of {graph}"
        raise ValueError(f"{where}: {name} row {int(bad[0])} holds NaN or inf ({bad.numel()} of {num_nodes} rows "
                         f"do{rows})")
    return value


def check_logits(logits: Any, num_nodes: int, num_classes: int, where: str, name: str = "logits",
                 fix: str = LOGITS_FIX, graph: str = "the graph") -> Tensor:
    """:func:`node_rows` of logits [N, C], C the graph's class count, refused when they are
    probabilities (every row non-negative and summing to 1; ``fix`` says what to pass)."""
    logits = node_rows(logits, name, num_nodes, where, graph)
    if logits.size(1) != num_classes:
        raise ValueError(f"{where}: {name} has {logits.size(1)} columns but the graph has {num_classes} classes "
                         "(one logit per class)")
    if bool((logits >= 0).all()) and bool(((logits.sum(1) - 1).abs() <= 1e-3).all()):
        raise ValueError(f"{where}: every row of {name} is non-negative and sums to 1: these are probabilities, "
                         f"not logits (a temperature calibrated on them would be meaningless); {fix}")
    return logits


def check_codes(codes: Any, codebook: Any, z: Optional[Tensor], metric: str, num_nodes: int,
                where: str) -> Tuple[Optional[Tensor], Optional[Tensor]]:
    """``(codes [N] int64 or None, codebook [K, D] float32 or None)``, consistent with ``z``: a
    codebook only with ``z`` and as wide; codes in ``[0, K)``, or all -1 without a codebook.
    Codes not given with a codebook are each node's most similar code under ``metric``."""
    if metric not in METRICS:
        raise ValueError(f"{where}: metric must be one of {METRICS}, got {metric!r}")
    if codebook is not None:
        if z is None:
            raise ValueError(f"{where}: a codebook needs the representation it quantizes: pass z [N, D] too")
        codebook = as_tensor(codebook, "codebook", where)
        if codebook.dim() != 2 or codebook.size(0) == 0 or codebook.size(1) != z.size(1):
            raise ValueError(f"{where}: codebook must be [K, {z.size(1)}] (K >= 1 codes as wide as z), got "
                             f"shape {list(codebook.shape)}")
        if not codebook.is_floating_point() or not bool(torch.isfinite(codebook).all()):
            raise ValueError(f"{where}: codebook must hold finite floating-point values, got {codebook.dtype}"
                             f"{'' if not codebook.is_floating_point() else ' with NaN or inf'}")
        codebook = codebook.detach().cpu().float()
    if codes is None:
        if codebook is None:
            return None, None
        nearest = [code_logits(part, codebook, metric).argmax(-1) for part in z.split(65_536)]
        return torch.cat(nearest), codebook
    codes = as_tensor(codes, "codes", where)
    if codes.shape != (num_nodes,) or codes.is_floating_point() or codes.is_complex() or codes.dtype == torch.bool:
        raise ValueError(f"{where}: codes must be integers of shape [{num_nodes}] (one code per node), got "
                         f"{codes.dtype} of shape {list(codes.shape)}")
    codes = codes.detach().cpu().long()
    low, high = (0, codebook.size(0) - 1) if codebook is not None else (-1, -1)
    outside = (codes < low) | (codes > high)
    if bool(outside.any()):
        row = int(outside.nonzero()[0, 0])
        wanted = (f"outside [0, {high}] (the codebook has {high + 1} codes)" if codebook is not None else
                  "but without a codebook every code is -1 (no code): pass the codebook the codes index")
        raise ValueError(f"{where}: codes row {row} is {int(codes[row])}, {wanted}")
    return codes, codebook


def targets_from_outputs(
    logits: Any,
    data: Data,
    split: NodeSplit,
    z: Any = None,
    *,
    codes: Any = None,
    codebook: Any = None,
    metric: str = "cosine",
    config: Optional[Mapping[str, Any]] = None,
    metrics: Optional[Mapping[str, Any]] = None,
) -> TeacherTargets:
    """A teacher's outputs for every node made into targets for distillation, checked whole.

    For teachers trained elsewhere (another framework or machine, as GLNN's code reads saved
    outputs) and every teacher of this package. Rows are by global node id; inductively, the
    observed nodes' outputs should come from ``split.observed_graph(data)`` and the hidden test
    nodes' from the full graph, as :func:`~vqgraph.targets.targets_from_model` computes them.

    Args:
        logits: [N, C] the teacher's logits (log-probabilities are fine; probabilities are not),
            a tensor or numpy array; N = ``data.num_nodes``, C = the graph's class count.
        z: [N, D] the teacher's representation, any width D; None: soft labels only (the code
            and similarity terms then refuse these targets, naming the fix).
        codes: [N] each node's code index in ``codebook``; default: its most similar code.
        codebook: [K, D] codes in ``z``'s space (only with ``z``). metric: their similarity,
            ``cosine`` or ``euclidean`` (:func:`vqgraph.losses.code_logits`).
        config: recorded with the targets (how the teacher was made). metrics: likewise; default:
            the teacher's accuracy on the split's sets (:meth:`~vqgraph.evaluation.Evaluator.for_teacher`).

    Returns:
        :class:`~vqgraph.targets.TeacherTargets` with the graph's and the split's fingerprints.

    Raises:
        TypeError, ValueError: an output of another type, shape, dtype or row count than above,
            NaN/inf in a row, probabilities for logits, codes outside the codebook.
    """
    where = "targets_from_outputs"
    data = graph_and_split(data, split, where)
    n = data.num_nodes
    logits = check_logits(logits, n, data.num_classes, where)
    z = None if z is None else node_rows(z, "z", n, where)
    codes, codebook = check_codes(codes, codebook, z, metric, n, where)
    for name, value in (("config", config), ("metrics", metrics)):
        if value is not None and not isinstance(value, Mapping):
            raise TypeError(f"{where}: {name} must be a mapping (a dict), got {type(value).__name__}")
    return TeacherTargets(
        logits=logits,
        z=z,
        codes=codes,
        codebook=codebook,
        metric=metric,
        config=dict(config or {}),
        metrics=dict(metrics) if metrics is not None else Evaluator.for_teacher(data.y, split)(logits),
        graph_fingerprint=graph_fingerprint(data),
        split_fingerprint=split.fingerprint(),
        setting=split.setting.value,
        dataset=str(getattr(data, "name", "")),
    )
