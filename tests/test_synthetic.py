"""The seeded CSBM generator."""

from __future__ import annotations

import pytest
import torch

from vqgraph.data import load_dataset, make_csbm, make_split, num_undirected_edges


def edge_homophily(data) -> float:
    row, col = data.edge_index
    return float((data.y[row] == data.y[col]).float().mean())


@pytest.fixture(scope="module")
def small():
    return make_csbm(num_nodes=2000, num_classes=4, avg_degree=8, homophily=0.7, num_features=16, seed=1)


def test_exact_edge_count_and_canonical_form(small, assert_canonical):
    assert_canonical(small, num_nodes=2000, num_edges=8000, num_features=16, num_classes=4)
    assert num_undirected_edges(small) == 8000
    assert small.name == "csbm-n2000-e8000-h0.7-s1"


def test_explicit_num_edges():
    data = make_csbm(num_nodes=500, num_classes=3, num_edges=1234, num_features=4, seed=0)
    assert num_undirected_edges(data) == 1234


def test_balanced_classes(small):
    assert torch.bincount(small.y, minlength=4).tolist() == [500] * 4


@pytest.mark.parametrize("homophily", [0.1, 0.5, 0.9])
def test_edge_homophily_close_to_requested(homophily):
    data = make_csbm(num_nodes=2000, num_classes=5, avg_degree=10, homophily=homophily, num_features=4, seed=2)
    assert abs(edge_homophily(data) - homophily) <= 0.03


def test_extreme_homophily():
    assert edge_homophily(make_csbm(num_nodes=300, num_classes=3, num_features=2, homophily=1.0)) == 1.0
    assert edge_homophily(make_csbm(num_nodes=300, num_classes=3, num_features=2, homophily=0.0)) == 0.0


def test_features_carry_the_class_signal():
    data = make_csbm(num_nodes=2000, num_classes=4, num_features=16, feature_signal=3.0, seed=0)
    means = torch.stack([data.x[data.y == c].mean(0) for c in range(4)])
    nearest = torch.cdist(data.x, means).argmin(1)
    assert float((nearest == data.y).float().mean()) > 0.8


def test_same_seed_identical(small):
    again = make_csbm(num_nodes=2000, num_classes=4, avg_degree=8, homophily=0.7, num_features=16, seed=1)
    assert torch.equal(again.x, small.x)
    assert torch.equal(again.edge_index, small.edge_index)
    assert torch.equal(again.y, small.y)


def test_different_seed_different(small):
    other = make_csbm(num_nodes=2000, num_classes=4, avg_degree=8, homophily=0.7, num_features=16, seed=2)
    assert not torch.equal(other.x, small.x)
    assert not torch.equal(other.y, small.y)
    assert other.edge_index.shape == small.edge_index.shape
    assert not torch.equal(other.edge_index, small.edge_index)


def test_registry_synthetic_is_seeded_and_splittable(assert_canonical):
    a, b = load_dataset("synthetic", seed=4), load_dataset("csbm", seed=4)
    assert_canonical(a, num_nodes=10_000, num_edges=50_000, num_features=128, num_classes=5)
    assert a.name == "synthetic"
    assert torch.equal(a.edge_index, b.edge_index)
    assert not torch.equal(a.edge_index, load_dataset("synthetic", seed=5).edge_index)
    assert make_split(a, seed=0).sizes() == {"train": 100, "val": 150, "test": 9750}


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_nodes=1), "num_nodes >= 2"),
        (dict(num_classes=0), "num_classes"),
        (dict(num_nodes=3, num_classes=5, num_edges=1), "num_classes <= num_nodes"),
        (dict(num_features=0), "num_features >= 1"),
        (dict(homophily=1.5), r"homophily must be in \[0, 1\], got 1.5"),
        (dict(homophily=-0.1), r"homophily must be in \[0, 1\]"),
        (dict(num_nodes=10, num_edges=23), r"num_edges must be in \[0, 22\] for 10 nodes, got 23"),
        (dict(num_edges=-1), r"num_edges must be in \[0, "),
        (dict(num_nodes=10, avg_degree=100.0), r"num_edges must be in \[0, 22\] for 10 nodes, got 500"),
        (dict(num_nodes=10, num_classes=5, num_edges=20, homophily=1.0), "homophily=1 allows at most 5 edges"),
        (dict(num_nodes=10, num_classes=5, num_edges=6, homophily=1.0), "homophily=1 allows at most 5 edges"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_csbm(**{"num_features": 4, **kwargs})


def test_feasible_extremes_do_not_hang():
    """At the capacity limit of homophily 0/1 the generator still finishes."""
    data = make_csbm(num_nodes=10, num_classes=5, num_edges=5, homophily=1.0, num_features=2)
    assert num_undirected_edges(data) == 5 and edge_homophily(data) == 1.0
    data = make_csbm(num_nodes=10, num_classes=2, num_edges=22, homophily=0.0, num_features=2)
    assert num_undirected_edges(data) == 22 and edge_homophily(data) == 0.0
