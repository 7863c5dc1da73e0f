"""Graph tensors: validation and canonical form.

Every loader ends in :func:`build_graph`, so every dataset reaches the rest of the package in
one form: ``x`` float32 ``[N, F]``, ``edge_index`` int64 ``[2, 2E]`` holding each undirected
edge in both directions, sorted by (row, col), with no self-loops and no duplicates, ``y``
int64 ``[N]`` in ``[0, num_classes)``, plus ``name`` and ``num_classes``. A user's own PyG ``Data``
is brought to it by :func:`vqgraph.data.prepare.prepare_graph`.
"""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.transform import FEATURE_NORMS, FeatureTransform
from vqgraph.errors import GraphValidationError


def _first_bad(mask: Tensor) -> int:
    """Index of the first True entry of a 1-D mask."""
    return int(mask.nonzero()[0, 0])


def check_features(x: Tensor, where: str) -> None:
    """Raise :class:`GraphValidationError` unless ``x`` is a finite floating ``[N, F]`` tensor."""
    if not isinstance(x, Tensor):
        raise GraphValidationError(f"{where}: features must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise GraphValidationError(f"{where}: features must have shape [num_nodes, num_features], got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise GraphValidationError(f"{where}: features must be floating point, got {x.dtype}")
    if x.numel() and bool(torch.isfinite(x.sum(dim=1)).all()):  # one pass, no N x F mask: NaN/inf make the row sum so
        return
    bad = ~torch.isfinite(x)  # or a finite row overflowed: then nothing is found here
    if bool(bad.any()):
        rows = bad.any(dim=1)
        raise GraphValidationError(
            f"{where}: features contain {int(bad.sum())} NaN/inf value(s) in {int(rows.sum())} node(s); "
            f"first bad node is {_first_bad(rows)}"
        )


def check_graph(
    x: Tensor,
    edge_index: Tensor,
    y: Tensor,
    num_classes: Optional[int] = None,
    where: str = "graph",
) -> None:
    """Check shapes, dtypes and ranges of a node-classification graph; raise a clear error if wrong.

    Args:
        x: node features, float ``[N, F]``.
        edge_index: edges, integer ``[2, E]`` with entries in ``[0, N)``.
        y: labels, integer ``[N]`` with entries in ``[0, num_classes)``.
        num_classes: number of classes; ``None`` checks only that labels are non-negative.
        where: names the source (dataset name or file) in error messages.
    """
    check_features(x, where)
    num_nodes = x.size(0)
    if num_nodes == 0:
        raise GraphValidationError(f"{where}: the graph has no nodes")
    if not isinstance(edge_index, Tensor) or edge_index.dim() != 2 or edge_index.size(0) != 2:
        shape = tuple(edge_index.shape) if isinstance(edge_index, Tensor) else type(edge_index).__name__
        raise GraphValidationError(f"{where}: edge_index must have shape [2, num_edges], got {shape}")
    if edge_index.is_floating_point() or edge_index.dtype == torch.bool:
        raise GraphValidationError(f"{where}: edge_index must be an integer tensor, got {edge_index.dtype}")
    if edge_index.numel() > 0:
        bad = (edge_index < 0) | (edge_index >= num_nodes)
        if bool(bad.any()):
            col = int(bad.any(dim=0).nonzero()[0, 0])
            raise GraphValidationError(
                f"{where}: edge_index has {int(bad.any(dim=0).sum())} edge(s) with a node index outside "
                f"[0, {num_nodes}); first is edge {col} = ({int(edge_index[0, col])}, {int(edge_index[1, col])})"
            )
    if not isinstance(y, Tensor) or y.dim() != 1 or y.size(0) != num_nodes:
        shape = tuple(y.shape) if isinstance(y, Tensor) else type(y).__name__
        raise GraphValidationError(f"{where}: labels must have shape [{num_nodes}] (one per node), got {shape}")
    if y.is_floating_point() or y.dtype == torch.bool:
        raise GraphValidationError(f"{where}: labels must be an integer tensor, got {y.dtype}")
    if bool((y < 0).any()):
        node = _first_bad(y < 0)
        raise GraphValidationError(f"{where}: labels must be >= 0; node {node} has label {int(y[node])}")
    if num_classes is not None:
        if num_classes < 1:
            raise GraphValidationError(f"{where}: num_classes must be >= 1, got {num_classes}")
        if bool((y >= num_classes).any()):
            node = _first_bad(y >= num_classes)
            raise GraphValidationError(
                f"{where}: labels must be in [0, {num_classes}); node {node} has label {int(y[node])}"
            )


def canonical_edges(edge_index: Tensor, num_nodes: int) -> Tensor:
    """Symmetrise, drop self-loops and duplicates; return ``[2, 2E]`` sorted by (row, col).

    Vectorised over a single int64 key per pair, so it costs a few passes over the edges and
    handles tens of millions of them.
    """
    edge_index = edge_index.to(torch.long)
    row, col = edge_index[0], edge_index[1]
    keep = row != col
    row, col = row[keep], col[keep]
    lo, hi = torch.minimum(row, col), torch.maximum(row, col)
    key = torch.unique(lo * num_nodes + hi)  # sorted, one per undirected pair
    lo, hi = key // num_nodes, key % num_nodes
    both = torch.cat([lo * num_nodes + hi, hi * num_nodes + lo])
    both, _ = torch.sort(both)
    return torch.stack([both // num_nodes, both % num_nodes])


def build_graph(
    x,
    edge_index,
    y,
    *,
    name: str,
    num_classes: Optional[int] = None,
    where: Optional[str] = None,
    **extra,
) -> Data:
    """Validate raw arrays and return the canonical PyG ``Data`` every loader returns.

    ``x``, ``edge_index`` and ``y`` may be numpy arrays or tensors. ``extra`` node-level
    attributes (e.g. fixed split masks ``[N, S]``) are attached unchanged.
    """
    where = where or name
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, Tensor) else x)
    if x.is_floating_point():
        x = x.to(torch.float32)
    edge_index = torch.as_tensor(edge_index if isinstance(edge_index, Tensor) else np.asarray(edge_index))
    y = torch.as_tensor(y if isinstance(y, Tensor) else np.asarray(y))
    if y.dim() == 2 and y.size(1) == 1:  # OGB stores labels as [N, 1]
        y = y.view(-1)
    check_graph(x, edge_index, y, num_classes, where)
    y = y.to(torch.long)
    if num_classes is None:
        num_classes = int(y.max()) + 1
    data = Data(x=x, edge_index=canonical_edges(edge_index, x.size(0)), y=y, **extra)
    data.name = name
    data.num_classes = int(num_classes)
    return data


def num_undirected_edges(data: Data) -> int:
    """Number of undirected edges of a canonical graph (each stored in both directions)."""
    return data.edge_index.size(1) // 2


def normalize_features(data: Data, kind: str = "row", fit_idx: Optional[Tensor] = None) -> Data:
    """A copy of ``data`` with features normalised by :class:`FeatureTransform` ``kind``, the
    transform recorded on it as ``data.feature_transform``: ``fit_student`` hands it to its
    result, whose ``predictor()`` serves raw features exactly as training saw them.

    For ``standard``, pass ``fit_idx`` = the observed nodes in the inductive setting, so that
    hidden nodes do not shape the transform; ``none`` returns ``data``.

    Raises:
        ValueError: ``data`` was normalised already (it carries a ``feature_transform`` other
            than ``none``). The two transforms are not composed: a served model would need both,
            in order, and a second call is nearly always the first one repeated; normalise the
            raw data once.
    """
    if kind not in FEATURE_NORMS:
        raise ValueError(f"unknown feature normalisation {kind!r}; choose from {FEATURE_NORMS}")
    done = getattr(data, "feature_transform", None)
    if kind != "none" and isinstance(done, FeatureTransform) and done.kind != "none":
        raise ValueError(f"normalize_features(data, {kind!r}): data's features are normalised already "
                         f"({done.kind!r}, recorded as data.feature_transform); normalising twice is refused, "
                         "not composed (serving would need both transforms): normalise the raw data once, with "
                         "the kind you want")
    if kind == "none":
        return data
    out = data.clone()
    transform = FeatureTransform.fit(data.x, kind, fit_idx)
    out.x = transform(data.x)
    out.feature_transform = transform
    return out


# ---- the entry points' check (vqgraph/data/prepare.py converts a user's own graph) --------------

_PREPARE = "vqgraph.prepare_graph(data)"


def has_label_gaps(values: Tensor) -> bool:
    """Whether sorted distinct labels ``values`` leave a class below the largest without a node."""
    return bool(values.numel()) and values.numel() != int(values[-1]) + 1


def largest_connected_component(adj: sp.spmatrix) -> np.ndarray:
    """Sorted ids of the nodes in the largest connected component of a symmetric adjacency."""
    _, component = connected_components(adj, directed=False)
    sizes = np.bincount(component)
    return np.flatnonzero(component == int(np.argmax(sizes)))


def is_canonical_edges(edge_index: Tensor, num_nodes: int) -> bool:
    """Whether ``edge_index`` is already in canonical form (:func:`canonical_edges` of itself)."""
    if edge_index.dtype != torch.long:
        return False
    if edge_index.numel() == 0:
        return True
    key = edge_index[0] * num_nodes + edge_index[1]
    if not bool((key[1:] > key[:-1]).all()) or bool((edge_index[0] == edge_index[1]).any()):
        return False  # unsorted, duplicated or self-loops
    reverse = torch.sort(edge_index[1] * num_nodes + edge_index[0]).values
    return torch.equal(reverse, key)


def ensure_graph(data: Data, where: str = "data") -> Data:
    """What every public entry point does with the graph it is given: check that it is in
    canonical form and refuse it, naming :func:`prepare_graph`, if not (never train on a graph
    that silently differs from the user's: symmetrising or dropping edges is the user's call).
    ``num_classes`` is the one thing filled in: inferred from ``y`` when absent (a shallow copy
    is returned), checked when given; and features that are not contiguous in memory (a
    transposed or sliced view) are made so on a shallow copy, so that the same values train the
    same model bit for bit (a contiguous ``x`` is not copied)."""
    if not isinstance(data, Data):
        raise TypeError(f"{where}: data must be a torch_geometric.data.Data graph (from vqgraph.load_dataset or "
                        f"vqgraph.prepare_graph), got {type(data).__name__}")
    name = getattr(data, "name", None) or "graph"
    for key in ("x", "edge_index", "y"):
        if getattr(data, key, None) is None:
            raise GraphValidationError(f"{where}: graph {name!r} has no data.{key}")
    x, y = data.x, data.y
    if not isinstance(x, Tensor) or x.layout != torch.strided or x.dtype != torch.float32:
        what = type(x).__name__ if not isinstance(x, Tensor) else f"{x.layout}, {x.dtype}"
        raise GraphValidationError(f"{where}: graph {name!r} has features of {what}; dense float32 is expected: "
                                   f"{_PREPARE} converts them")
    if not isinstance(y, Tensor) or y.dim() != 1 or y.dtype != torch.long:
        what = type(y).__name__ if not isinstance(y, Tensor) else f"shape {tuple(y.shape)}, {y.dtype}"
        raise GraphValidationError(f"{where}: graph {name!r} has labels of {what}; int64 [num_nodes] is expected: "
                                   f"{_PREPARE} converts them")
    given = getattr(data, "num_classes", None) if "num_classes" in data else None
    edge_index = data.edge_index
    # a verdict is remembered on the edge tensor itself, as long as it is not modified in place
    # (its version counter): the entry points of one run check the same tensor once, not thrice
    stamp = (data.num_nodes, getattr(edge_index, "_version", None))
    known = getattr(edge_index, "_vqgraph_canonical", None) == stamp
    no_edges = torch.empty(2, 0, dtype=torch.long)  # the node tensors are checked every time (cheap)
    check_graph(x, no_edges if known else edge_index, y, given, f"{where}: graph {name!r}")
    if not known and edge_index.dtype != torch.long:
        raise GraphValidationError(f"{where}: graph {name!r} has edge_index of {edge_index.dtype}; int64 is expected: "
                                   f"{_PREPARE} converts it")
    if not known and not is_canonical_edges(edge_index, data.num_nodes):
        raise GraphValidationError(
            f"{where}: graph {name!r} has edges that are not in canonical form (each undirected edge in both "
            f"directions, sorted, no self-loops, no duplicates); {_PREPARE} makes them so")
    if given is None:
        values = torch.unique(y)
        if has_label_gaps(values):
            raise GraphValidationError(
                f"{where}: graph {name!r} has labels with gaps (values used: {values.tolist()[:10]}"
                f"{' ...' if values.numel() > 10 else ''}) and no data.num_classes; "
                "vqgraph.prepare_graph(data, remap_labels=True) numbers the classes 0..C-1")
    edge_index._vqgraph_canonical = stamp
    out = _with_classes(data, given)
    if not x.is_contiguous():  # dropout masks follow memory order: a transposed or sliced x would train another model
        out = copy.copy(out) if out is data else out
        out.x = x.contiguous()
    return out


def _with_classes(data: Data, given: Optional[int]) -> Data:
    """``data`` itself when it names its classes, else a shallow copy with ``num_classes`` from ``y``."""
    if given is not None:
        return data
    data = copy.copy(data)
    data.num_classes = int(data.y.max()) + 1 if data.y.numel() else 0
    return data
