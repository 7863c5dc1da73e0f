"""A seeded contextual stochastic block model (CSBM) for scale benchmarks and data-free runs.

Nodes get balanced random classes. Each undirected edge picks a uniform source node and, with
probability ``homophily``, a destination of the source's class, otherwise one of another class.
Features are ``feature_signal * mu[y] + N(0, I)`` with random unit class means ``mu``. All steps
are vectorised over edges and nodes: 1M nodes and 10M edges take seconds and about 2 GiB.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch_geometric.data import Data

from vqgraph.data.graph import build_graph


def _sample_pairs(num: int, y_sorted_nodes, class_start, class_count, y, homophily, num_classes, gen):
    num_nodes = y.numel()
    src = torch.randint(num_nodes, (num,), generator=gen)
    src_class = y[src]
    same = torch.rand(num, generator=gen) < homophily
    if num_classes > 1:
        shift = torch.randint(1, num_classes, (num,), generator=gen)
        dst_class = torch.where(same, src_class, (src_class + shift) % num_classes)
    else:
        dst_class = src_class
    offset = (torch.rand(num, generator=gen) * class_count[dst_class]).long()
    dst = y_sorted_nodes[class_start[dst_class] + offset]
    return src, dst


def _check_arguments(num_nodes, num_classes, avg_degree, homophily, num_features, num_edges) -> int:
    """Reject impossible CSBM arguments, naming them; returns the number of undirected edges."""
    if num_nodes < 2 or not 1 <= num_classes <= num_nodes or num_features < 1:
        raise ValueError(
            f"make_csbm: need num_nodes >= 2, 1 <= num_classes <= num_nodes, num_features >= 1; "
            f"got {num_nodes}, {num_classes}, {num_features}"
        )
    if not 0.0 <= homophily <= 1.0:
        raise ValueError(f"make_csbm: homophily must be in [0, 1], got {homophily}")
    if num_edges is None:
        num_edges = int(round(avg_degree * num_nodes / 2))
    max_edges = num_nodes * (num_nodes - 1) // 2
    if not 0 <= num_edges <= max_edges // 2:
        raise ValueError(f"make_csbm: num_edges must be in [0, {max_edges // 2}] for {num_nodes} nodes, got {num_edges}")
    # homophily 0 or 1 restricts edges to cross- or same-class pairs; asking for more would loop forever
    sizes = torch.bincount(torch.arange(num_nodes) % num_classes)
    same_pairs = int((sizes * (sizes - 1) // 2).sum())
    if homophily == 1.0 and num_edges > same_pairs:
        raise ValueError(f"make_csbm: homophily=1 allows at most {same_pairs} edges here, got num_edges={num_edges}")
    if homophily == 0.0 and num_classes > 1 and num_edges > max_edges - same_pairs:
        raise ValueError(
            f"make_csbm: homophily=0 allows at most {max_edges - same_pairs} edges here, got num_edges={num_edges}"
        )
    return num_edges


def make_csbm(
    num_nodes: int = 10_000,
    num_classes: int = 5,
    avg_degree: float = 10.0,
    homophily: float = 0.8,
    feature_signal: float = 1.0,
    num_features: int = 128,
    num_edges: Optional[int] = None,
    seed: int = 0,
    name: Optional[str] = None,
) -> Data:
    """Generate a CSBM graph in canonical form.

    Args:
        num_nodes: number of nodes N.
        num_classes: number of balanced classes C.
        avg_degree: mean node degree, i.e. ``2 * undirected_edges / N`` (ignored if ``num_edges``).
        homophily: fraction of edges whose endpoints share a class (edge homophily).
        feature_signal: distance of class means from the origin, in noise standard deviations.
        num_features: feature width F.
        num_edges: exact number of undirected edges E (default ``round(avg_degree * N / 2)``).
        seed: the generator's seed; the same arguments and seed give the same graph.
    """
    num_edges = _check_arguments(num_nodes, num_classes, avg_degree, homophily, num_features, num_edges)
    gen = torch.Generator().manual_seed(seed)
    y = torch.randperm(num_nodes, generator=gen) % num_classes
    order = torch.argsort(y, stable=True)
    class_count = torch.bincount(y, minlength=num_classes)
    class_start = torch.cumsum(class_count, 0) - class_count

    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < num_edges:  # top up until exactly num_edges distinct pairs exist
        missing = num_edges - keys.numel()
        src, dst = _sample_pairs(
            int(missing * 1.05) + 16, order, class_start, class_count, y, homophily, num_classes, gen
        )
        ok = src != dst
        lo, hi = torch.minimum(src[ok], dst[ok]), torch.maximum(src[ok], dst[ok])
        keys = torch.unique(torch.cat([keys, lo * num_nodes + hi]))
    if keys.numel() > num_edges:
        keys = keys[torch.randperm(keys.numel(), generator=gen)[:num_edges]]
    edge_index = torch.stack([keys // num_nodes, keys % num_nodes])
    del keys

    means = torch.randn(num_classes, num_features, generator=gen)
    means = means / means.norm(dim=1, keepdim=True).clamp_min(1e-12) * feature_signal
    x = torch.randn(num_nodes, num_features, generator=gen)
    x += means[y]
    name = name or f"csbm-n{num_nodes}-e{num_edges}-h{homophily:g}-s{seed}"
    return build_graph(x, edge_index, y, name=name, num_classes=num_classes)

