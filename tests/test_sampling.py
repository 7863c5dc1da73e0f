"""The pure-torch neighbour sampler and the mini-batch iterator built on it."""

from __future__ import annotations

import math

import pytest
import torch
from torch_geometric.data import Data

from vqgraph.data import make_csbm
from vqgraph.data.sampling import NeighborBatcher, NeighborSampler


@pytest.fixture(scope="module")
def graph():
    return make_csbm(num_nodes=300, num_classes=3, avg_degree=6, num_features=4, seed=5)


@pytest.fixture(scope="module")
def directed():
    """A random directed graph (no reverse edges, no self-loops, no duplicates)."""
    gen = torch.Generator().manual_seed(0)
    n = 120
    src, dst = torch.randint(n, (2, 900), generator=gen)
    keep = src < dst  # one direction only
    key = torch.unique(src[keep] * n + dst[keep])
    edges = torch.stack([key // n, key % n])
    # flip a random half so both "directions" appear, but never an edge and its reverse
    flip = torch.rand(edges.size(1), generator=gen) < 0.5
    edges[:, flip] = edges[:, flip].flip(0)
    return edges, n


def in_neighbours(edge_index, num_nodes):
    """``{target: set(sources)}`` for directed edges ``source -> target``."""
    out = {v: set() for v in range(num_nodes)}
    for s, t in edge_index.t().tolist():
        out[t].add(s)
    return out


def check_sample(edge_index, num_nodes, seeds, fanouts, n_id, local_edges):
    """Every property a sample must have; returns the sampled neighbours of every target (global)."""
    nbrs = in_neighbours(edge_index, num_nodes)
    assert n_id.dtype == torch.long and local_edges.dtype == torch.long
    assert torch.equal(n_id[: seeds.numel()], seeds), "seeds come first, in order"
    assert torch.unique(n_id).numel() == n_id.numel(), "n_id lists a node twice"
    assert local_edges.size(0) == 2
    if local_edges.numel():
        assert int(local_edges.min()) >= 0 and int(local_edges.max()) < n_id.numel()
    pairs = local_edges.t().tolist()
    assert len(set(map(tuple, pairs))) == len(pairs), "duplicate sampled edge"
    sampled = {}
    for s, t in n_id[local_edges].t().tolist():
        assert s in nbrs[t], f"sampled edge {s}->{t} is not in the graph"
        sampled.setdefault(t, set()).add(s)
    # hop 1 expands the seeds, hop 2 the nodes hop 1 added, ...
    seed_set = set(seeds.tolist())
    frontier = list(seeds.tolist())
    seen = set(seed_set)
    for fanout in fanouts:
        new = set()
        for t in frontier:
            want = len(nbrs[t]) if fanout < 0 else min(len(nbrs[t]), fanout)
            got = sampled.get(t, set())
            assert len(got) == want, f"node {t}: {len(got)} sampled neighbours, expected {want}"
            new |= got - seen
        seen |= new
        frontier = sorted(new)
    assert seen == set(n_id.tolist()), "n_id holds exactly the seeds and the sampled neighbours"
    return sampled


def degrees(edge_index, num_nodes):
    return torch.bincount(edge_index[1], minlength=num_nodes)


def test_sample_properties(graph):
    fanouts = [5, 3]
    sampler = NeighborSampler(graph.edge_index, graph.num_nodes, fanouts)
    seeds = torch.tensor([7, 3, 250, 41, 120, 99, 0, 18])
    deg = degrees(graph.edge_index, graph.num_nodes)[seeds]
    assert bool((deg < 5).any()) and bool((deg > 5).any()), "want seeds on both sides of the fanout"
    n_id, edges = sampler.sample(seeds, torch.Generator().manual_seed(0))
    check_sample(graph.edge_index, graph.num_nodes, seeds, fanouts, n_id, edges)
    assert edges.size(1) > seeds.numel()  # two hops were sampled


def test_sample_respects_edge_direction(directed):
    edge_index, n = directed
    sampler = NeighborSampler(edge_index, n, [2, 2])
    seeds = torch.arange(0, n, 9)
    n_id, edges = sampler.sample(seeds, torch.Generator().manual_seed(1))
    check_sample(edge_index, n, seeds, [2, 2], n_id, edges)


def test_fanout_minus_one_takes_every_neighbour(graph):
    sampler = NeighborSampler(graph.edge_index, graph.num_nodes, [-1])
    seeds = torch.tensor([5, 60, 200])
    n_id, edges = sampler.sample(seeds, torch.Generator().manual_seed(0))
    sampled = check_sample(graph.edge_index, graph.num_nodes, seeds, [-1], n_id, edges)
    nbrs = in_neighbours(graph.edge_index, graph.num_nodes)
    for s in seeds.tolist():
        assert sampled[s] == nbrs[s]
    assert edges.size(1) == int(degrees(graph.edge_index, graph.num_nodes)[seeds].sum())


def test_large_fanout_equals_all_neighbours(graph):
    seeds = torch.tensor([11, 12, 13])
    a = NeighborSampler(graph.edge_index, graph.num_nodes, [1000]).sample(seeds, torch.Generator().manual_seed(0))
    b = NeighborSampler(graph.edge_index, graph.num_nodes, [-1]).sample(seeds, torch.Generator().manual_seed(0))
    assert set(a[0].tolist()) == set(b[0].tolist())
    assert a[1].size(1) == b[1].size(1)


def test_isolated_seed_and_zero_fanout():
    edge_index = torch.tensor([[0, 1], [1, 0]])
    sampler = NeighborSampler(edge_index, 4, [2, 2])
    n_id, edges = sampler.sample(torch.tensor([3, 0]))
    assert n_id.tolist() == [3, 0, 1]
    assert n_id[edges].t().tolist() == [[1, 0], [0, 1]]
    n_id, edges = NeighborSampler(edge_index, 4, [0]).sample(torch.tensor([0]))
    assert n_id.tolist() == [0] and edges.shape == (2, 0)


def test_same_generator_seed_same_sample(graph):
    sampler = NeighborSampler(graph.edge_index, graph.num_nodes, [4, 4])
    seeds = torch.arange(0, 300, 13)
    a = sampler.sample(seeds, torch.Generator().manual_seed(3))
    b = sampler.sample(seeds, torch.Generator().manual_seed(3))  # also: the sampler's state was reset
    c = NeighborSampler(graph.edge_index, graph.num_nodes, [4, 4]).sample(seeds, torch.Generator().manual_seed(3))
    other = sampler.sample(seeds, torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(a[0], c[0]) and torch.equal(a[1], c[1])
    assert not (torch.equal(a[0], other[0]) and torch.equal(a[1], other[1]))


def test_sampling_is_roughly_uniform():
    # a star: node 0 with 10 neighbours, fanout 2 -> each neighbour drawn with probability 1/5
    leaves = torch.arange(1, 11)
    edge_index = torch.stack([torch.cat([leaves, torch.zeros(10, dtype=torch.long)]), torch.cat([torch.zeros(10, dtype=torch.long), leaves])])
    sampler = NeighborSampler(edge_index, 11, [2])
    gen = torch.Generator().manual_seed(0)
    counts = torch.zeros(11)
    trials = 2000
    for _ in range(trials):
        n_id, _ = sampler.sample(torch.tensor([0]), gen)
        assert n_id.numel() == 3
        counts[n_id[1:]] += 1
    freq = counts[1:] / trials
    assert bool(((freq - 0.2).abs() < 0.04).all()), freq


# ---- NeighborBatcher ----------------------------------------------------------------------------
@pytest.mark.parametrize("shuffle", [False, True])
def test_batcher_covers_every_input_node_once(graph, shuffle):
    input_nodes = torch.randperm(graph.num_nodes, generator=torch.Generator().manual_seed(0))[:150]
    batcher = NeighborBatcher(graph, [5, 5], batch_size=32, use_pyg=False)
    assert batcher.sampler is not None
    batches = list(batcher(input_nodes, shuffle=shuffle, generator=torch.Generator().manual_seed(1)))
    assert len(batches) == math.ceil(150 / 32)
    assert [b.batch_size for b in batches] == [32, 32, 32, 32, 22]
    assert sum(b.batch_size for b in batches) == input_nodes.numel()
    seeds = torch.cat([b.n_id[: b.batch_size] for b in batches])
    assert torch.equal(torch.sort(seeds).values, torch.sort(input_nodes).values)
    if shuffle:
        assert not torch.equal(seeds, input_nodes)
    else:
        assert torch.equal(seeds, input_nodes)
    for b in batches:
        assert isinstance(b, Data)
        assert torch.equal(b.x, graph.x[b.n_id]) and torch.equal(b.y, graph.y[b.n_id])
        assert b.num_nodes == b.n_id.numel()
        check_sample(graph.edge_index, graph.num_nodes, b.n_id[: b.batch_size], [5, 5], b.n_id, b.edge_index)


def test_batcher_epochs_reshuffle_and_seeded(graph):
    input_nodes = torch.arange(graph.num_nodes)
    batcher = NeighborBatcher(graph, [3], batch_size=64, use_pyg=False)

    def epoch(gen):
        return torch.cat([b.n_id[: b.batch_size] for b in batcher(input_nodes, shuffle=True, generator=gen)])

    gen = torch.Generator().manual_seed(5)
    first, second = epoch(gen), epoch(gen)
    assert not torch.equal(first, second)
    assert torch.equal(torch.sort(first).values, input_nodes) and torch.equal(torch.sort(second).values, input_nodes)
    assert torch.equal(epoch(torch.Generator().manual_seed(5)), first)
