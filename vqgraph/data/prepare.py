"""A user's own graph: :func:`prepare_graph` brings any PyG ``Data`` to the package's canonical
form (:mod:`vqgraph.data.graph`), converting what it can and naming what it cannot."""

from __future__ import annotations

import copy
from typing import Optional

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.graph import canonical_edges, check_graph, has_label_gaps, largest_connected_component
from vqgraph.errors import GraphValidationError


def _dense_features(x, where: str) -> Tensor:
    """``x`` as a dense float32 tensor: sparse layouts densified, float64 and integer or bool
    features converted (bag-of-words counts are integers), views made contiguous; anything else refused."""
    if not isinstance(x, Tensor):
        raise GraphValidationError(f"{where}: data.x must be a torch.Tensor, got {type(x).__name__}")
    if x.layout != torch.strided:
        x = x.to_dense()
    if x.is_complex():
        raise GraphValidationError(f"{where}: features must be real numbers, got {x.dtype}")
    return x.to(torch.float32).contiguous()  # no copy when already so; dropout masks follow memory order


def _labels(y, where: str) -> Tensor:
    if not isinstance(y, Tensor):
        raise GraphValidationError(f"{where}: data.y must be a torch.Tensor of class ids, got {type(y).__name__}")
    if y.dim() == 2 and y.size(1) == 1:  # OGB-style [N, 1]
        y = y.view(-1)
    if y.dim() != 1:
        raise GraphValidationError(f"{where}: data.y must hold one class id per node ([num_nodes]), got shape "
                                   f"{tuple(y.shape)} (multi-label targets are not supported)")
    if y.dtype == torch.bool:
        y = y.to(torch.long)
    if y.is_floating_point():
        if not bool((y == y.round()).all()):
            raise GraphValidationError(f"{where}: data.y must hold integer class ids, got non-integer {y.dtype} values")
        y = y.to(torch.long)
    return y


def prepare_graph(data: Data, *, num_classes: Optional[int] = None, remap_labels: bool = False,
                  largest_component: bool = False, name: Optional[str] = None) -> Data:
    """Bring a user's PyG ``Data`` to the package's canonical form (:mod:`vqgraph.data.graph`).

    Returns a new ``Data`` (``data`` is not modified; tensors that need no conversion, such as
    float32 features, are shared with it, not copied): features dense float32 (sparse tensors are
    densified, float64, integer and bool features converted), labels int64 ``[N]`` (``[N, 1]``
    is flattened, bool converted), edges made undirected with self-loops and duplicates dropped,
    edge attributes dropped, ``num_classes`` and ``name`` set. Other node-level attributes (for
    example fixed split masks) are kept.

    Args:
        num_classes: the number of classes; default one more than the largest label. Checked
            against the labels when given; classes without a node are then allowed.
        remap_labels: labels with gaps (for example classes 0, 2 and 5) are an error unless this
            is set; then class ``i`` is the ``i``-th smallest label value and ``data.class_values``
            holds the original values (``class_values[pred]`` turns predictions back).
        largest_component: keep only the largest connected component, as the CPF datasets do;
            ``data.orig_id`` then holds each kept node's id in ``data``.
        name: the graph's name in logs and results (default: ``data.name``, else ``"graph"``).

    Raises:
        GraphValidationError: a tensor is missing or malformed (the message says which and where).
    """
    where = name or getattr(data, "name", None) or "graph"
    for key in ("x", "edge_index", "y"):
        if getattr(data, key, None) is None:
            raise GraphValidationError(f"{where}: data.{key} is missing; a node-classification graph needs x, "
                                       "edge_index and y")
    x, y = _dense_features(data.x, where), _labels(data.y, where)
    edge_index = data.edge_index
    check_graph(x, edge_index, y, None, where)
    out = copy.copy(data)  # a shallow copy: the user's Data keeps its own attributes
    # edge attributes (edge_attr, edge_weight, ...) would not match the rewritten edges: judged
    # against the user's edges, before any attribute of ours is added
    for key in [k for k in out.keys() if k != "edge_index" and out.is_edge_attr(k)]:
        del out[key]
    y, num_classes, class_values = _class_labels(y, num_classes, remap_labels, where)
    out.x, out.y = x, y
    out.edge_index = canonical_edges(edge_index, x.size(0))
    if largest_component:
        out = _largest_component(out, where)
    out.name, out.num_classes = where, int(num_classes)
    if class_values is not None:  # set last: not a node or edge attribute, whatever its length
        out.class_values = class_values
    return out


def _class_labels(y: Tensor, num_classes: Optional[int], remap: bool, where: str):
    """:func:`prepare_graph`'s labels: ``(int64 labels, number of classes, original values or None)``."""
    values = torch.unique(y)
    class_values = None
    if remap:
        class_values = values
        y = torch.searchsorted(values, y)
    elif num_classes is None and has_label_gaps(values):
        missing = _first_missing(values)
        raise GraphValidationError(
            f"{where}: labels have gaps: classes {missing[:10]}{' ...' if len(missing) > 10 else ''} have no node "
            f"(labels used: {values.tolist()[:10]}{' ...' if values.numel() > 10 else ''}); pass "
            "vqgraph.prepare_graph(data, remap_labels=True) to number the classes 0..C-1, or num_classes=C "
            "to keep them as they are")
    inferred = int(y.max()) + 1 if y.numel() else 0
    if num_classes is None:
        num_classes = inferred
    elif num_classes < inferred:
        raise GraphValidationError(f"{where}: num_classes={num_classes} but a node has label {inferred - 1}")
    return y.to(torch.long), num_classes, class_values


def _largest_component(data: Data, where: str) -> Data:
    """The subgraph of ``data``'s largest connected component; ``orig_id`` holds the kept ids."""
    n, edge_index = data.num_nodes, data.edge_index
    if edge_index.numel() == 0 and n > 1:
        raise GraphValidationError(f"{where}: largest_component=True on a graph without edges: every component "
                                   "is a single node")
    ei = edge_index.cpu().numpy()
    adj = sp.coo_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    keep = torch.from_numpy(largest_connected_component(adj)).to(edge_index.device)
    out = data.subgraph(keep)
    out.orig_id = keep
    return out


def _first_missing(values: Tensor, limit: int = 10) -> list:
    """Up to ``limit + 1`` classes below the largest label that no node has (labels may be large ids)."""
    present, missing = set(values.tolist()), []
    for c in range(int(values[-1]) + 1):
        if c not in present:
            missing.append(c)
            if len(missing) > limit:
                break
    return missing
