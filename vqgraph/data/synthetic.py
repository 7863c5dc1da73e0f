"""Seeded contextual stochastic block models (CSBM) for scale benchmarks and data-free runs.

Nodes get balanced random classes. Each undirected edge picks a source node and, with
probability ``homophily``, a destination of the source's class, otherwise one of another class.
Features are ``feature_signal * mu[y] + N(0, I)`` with random unit class means ``mu``.

:func:`make_csbm` picks nodes uniformly, so degrees are near-uniform (Poisson).
:func:`make_dcsbm` is the degree-corrected form: each node has a propensity drawn from a power
law and is picked with probability proportional to it, on both ends of an edge, so expected
degrees follow that power law (heavy-tailed, as in citation and co-purchase graphs).
:func:`degree_stats` measures the result. All steps are vectorised over edges and nodes (O(N + E)
memory; a degree-corrected pick is a binary search): 1M nodes and 10M edges take seconds and
about 2 GiB.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.graph import build_graph


class _Picker:
    """Draws nodes uniformly (``weights`` None) or with probability proportional to ``weights``,
    from every node or from the nodes of one class: inverse-CDF draws over the nodes sorted by
    class (one cumulative sum, one binary search per draw)."""

    def __init__(self, y: Tensor, num_classes: int, weights: Optional[Tensor]):
        self.y, self.weights = y, weights
        self.order = torch.argsort(y, stable=True)
        self.count = torch.bincount(y, minlength=num_classes)
        self.start = torch.cumsum(self.count, 0) - self.count
        if weights is not None:  # float64: exact enough for 10^7 nodes
            self.cdf = torch.cumsum(weights[self.order].double(), 0)
            self.before = torch.cat([self.cdf.new_zeros(1), self.cdf])[self.start]  # mass before each class

    def any(self, num: int, gen) -> Tensor:
        if self.weights is None:
            return torch.randint(self.y.numel(), (num,), generator=gen)
        u = torch.rand(num, generator=gen, dtype=torch.float64) * self.cdf[-1]
        return self.order[torch.searchsorted(self.cdf, u, right=True).clamp_max(self.y.numel() - 1)]

    def of_class(self, cls: Tensor, gen) -> Tensor:
        if self.weights is None:
            offset = (torch.rand(cls.numel(), generator=gen) * self.count[cls]).long()
            return self.order[self.start[cls] + offset]
        low, mass = self.before[cls], self.cdf[self.start[cls] + self.count[cls] - 1] - self.before[cls]
        u = low + torch.rand(cls.numel(), generator=gen, dtype=torch.float64) * mass
        pos = torch.searchsorted(self.cdf, u, right=True)
        return self.order[torch.minimum(pos, self.start[cls] + self.count[cls] - 1)]


def _sample_pairs(num: int, picker: _Picker, homophily: float, num_classes: int, gen):
    src = picker.any(num, gen)
    src_class = picker.y[src]
    same = torch.rand(num, generator=gen) < homophily
    if num_classes > 1:
        shift = torch.randint(1, num_classes, (num,), generator=gen)
        dst_class = torch.where(same, src_class, (src_class + shift) % num_classes)
    else:
        dst_class = src_class
    return src, picker.of_class(dst_class, gen)


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
    feature_density: Optional[float] = None,
) -> Data:
    """Generate a CSBM graph in canonical form (near-uniform degrees).

    Args:
        num_nodes: number of nodes N.
        num_classes: number of balanced classes C.
        avg_degree: mean node degree, i.e. ``2 * undirected_edges / N`` (ignored if ``num_edges``).
        homophily: fraction of edges whose endpoints share a class (edge homophily).
        feature_signal: distance of class means from the origin, in noise standard deviations.
        num_features: feature width F.
        num_edges: exact number of undirected edges E (default ``round(avg_degree * N / 2)``).
        seed: the generator's seed; the same arguments and seed give the same graph.
        feature_density: None: Gaussian features as above; else binary bag-of-words features
            with about this fraction of ones per row: each node draws Poisson(density * F) words
            (at least one), each from its class's own F / C words with probability
            ``feature_signal / (1 + feature_signal)``, else from all F (held dense).
    """
    return _generate(num_nodes, num_classes, avg_degree, homophily, feature_signal, num_features, num_edges, seed,
                     name, None, "csbm", feature_density)


def make_dcsbm(
    num_nodes: int = 10_000,
    num_classes: int = 5,
    avg_degree: float = 10.0,
    homophily: float = 0.8,
    feature_signal: float = 1.0,
    num_features: int = 128,
    num_edges: Optional[int] = None,
    seed: int = 0,
    name: Optional[str] = None,
    degree_exponent: float = 2.5,
    feature_density: Optional[float] = None,
) -> Data:
    """Generate a degree-corrected CSBM graph in canonical form (heavy-tailed degrees).

    The arguments of :func:`make_csbm`, plus ``degree_exponent`` (gamma > 2): node propensities
    are Pareto with tail ``P(theta > t) = t^-(gamma - 1)`` (minimum 1), and both ends of every
    edge are drawn in proportion to them (the destination within its class), so the degree
    distribution has a power-law tail of exponent gamma and the largest degree grows as
    ``N^(1 / (gamma - 1))``. Edges stay distinct and without self-loops (exactly E of them).
    """
    if not degree_exponent > 2.0:
        raise ValueError(f"make_dcsbm: degree_exponent must be > 2 (a finite mean degree), got {degree_exponent}")
    return _generate(num_nodes, num_classes, avg_degree, homophily, feature_signal, num_features, num_edges, seed,
                     name, degree_exponent, "dcsbm", feature_density)


def _generate(num_nodes, num_classes, avg_degree, homophily, feature_signal, num_features, num_edges, seed, name,
              degree_exponent, kind, feature_density=None) -> Data:
    num_edges = _check_arguments(num_nodes, num_classes, avg_degree, homophily, num_features, num_edges)
    if feature_density is not None and not 0.0 < feature_density <= 1.0:
        raise ValueError(f"make_{kind}: feature_density must be in (0, 1], got {feature_density}")
    gen = torch.Generator().manual_seed(seed)
    y = torch.randperm(num_nodes, generator=gen) % num_classes
    weights = None
    if degree_exponent is not None:  # Pareto propensities by inverse transform: (1 - u)^(-1 / (gamma - 1))
        u = torch.rand(num_nodes, generator=gen, dtype=torch.float64)
        weights = (1.0 - u).pow(-1.0 / (degree_exponent - 1.0))
    picker = _Picker(y, num_classes, weights)

    keys = torch.empty(0, dtype=torch.long)
    while keys.numel() < num_edges:  # top up until exactly num_edges distinct pairs exist
        missing = num_edges - keys.numel()
        src, dst = _sample_pairs(int(missing * 1.05) + 16, picker, homophily, num_classes, gen)
        ok = src != dst
        lo, hi = torch.minimum(src[ok], dst[ok]), torch.maximum(src[ok], dst[ok])
        keys = torch.unique(torch.cat([keys, lo * num_nodes + hi]))
    if keys.numel() > num_edges:
        keys = keys[torch.randperm(keys.numel(), generator=gen)[:num_edges]]
    edge_index = torch.stack([keys // num_nodes, keys % num_nodes])
    del keys, picker

    if feature_density is None:
        means = torch.randn(num_classes, num_features, generator=gen)
        means = means / means.norm(dim=1, keepdim=True).clamp_min(1e-12) * feature_signal
        x = torch.randn(num_nodes, num_features, generator=gen)
        x += means[y]
    else:
        x = _bag_of_words(y, num_classes, num_features, feature_density, feature_signal, gen)
    exponent = f"-g{degree_exponent:g}" if degree_exponent is not None else ""
    words = f"-d{feature_density:g}" if feature_density is not None else ""
    name = name or f"{kind}-n{num_nodes}-e{num_edges}-h{homophily:g}{exponent}{words}-s{seed}"
    return build_graph(x, edge_index, y, name=name, num_classes=num_classes)


def _bag_of_words(y: Tensor, num_classes: int, num_features: int, density: float, signal: float, gen) -> Tensor:
    """Binary features [N, F]: per node Poisson(density * F) words (at least one), each from the
    node's class topic (a random F / C of the columns) with probability signal / (1 + signal)."""
    num_nodes = y.numel()
    counts = torch.poisson(torch.full((num_nodes,), density * num_features, dtype=torch.float64), generator=gen)
    counts = counts.long().clamp(1, num_features)
    rows = torch.repeat_interleave(torch.arange(num_nodes), counts)
    topics = torch.randperm(num_features, generator=gen)  # class c's words: topics[c * width:(c + 1) * width]
    width = max(1, num_features // num_classes)
    on_topic = torch.rand(rows.numel(), generator=gen) < signal / (1.0 + signal)
    topic_word = topics[(y[rows] * width + torch.randint(width, (rows.numel(),), generator=gen)) % num_features]
    cols = torch.where(on_topic, topic_word, torch.randint(num_features, (rows.numel(),), generator=gen))
    x = torch.zeros(num_nodes, num_features)
    x[rows, cols] = 1.0
    return x


def degree_stats(edge_index: Tensor, num_nodes: int) -> Dict[str, float]:
    """Degrees of a canonical graph (each undirected edge stored both ways): mean, maximum,
    99th percentile and the Gini coefficient (0: all degrees equal; toward 1: a few hubs hold
    the edges)."""
    deg = torch.bincount(edge_index[0], minlength=num_nodes).double().sort().values
    total = float(deg.sum())
    rank = torch.arange(1, num_nodes + 1, dtype=torch.float64)
    gini = float((2 * rank - num_nodes - 1).mul(deg).sum() / (num_nodes * total)) if total else 0.0
    return {"mean": total / num_nodes, "max": int(deg[-1]) if num_nodes else 0,
            "p99": float(deg[min(num_nodes - 1, int(0.99 * num_nodes))]) if num_nodes else 0.0, "gini": gini}
