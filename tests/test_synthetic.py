"""The seeded CSBM generators: near-uniform degrees (make_csbm) and heavy-tailed ones (make_dcsbm)."""

from __future__ import annotations

import pytest
import torch

from vqgraph.data import degree_stats, load_dataset, make_csbm, make_dcsbm, make_split, num_undirected_edges


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


# ---- degree-corrected ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def heavy():
    return make_dcsbm(num_nodes=20_000, num_classes=5, avg_degree=10, homophily=0.7, num_features=8, seed=1)


def test_degree_corrected_graph_is_canonical_seeded_and_heavy_tailed(heavy, assert_canonical):
    assert_canonical(heavy, num_nodes=20_000, num_edges=100_000, num_features=8, num_classes=5)
    assert heavy.name == "dcsbm-n20000-e100000-h0.7-g2.5-s1"
    again = make_dcsbm(num_nodes=20_000, num_classes=5, avg_degree=10, homophily=0.7, num_features=8, seed=1)
    assert torch.equal(again.edge_index, heavy.edge_index) and torch.equal(again.x, heavy.x)
    uniform = make_csbm(num_nodes=20_000, num_classes=5, avg_degree=10, homophily=0.7, num_features=8, seed=1)
    h, u = degree_stats(heavy.edge_index, 20_000), degree_stats(uniform.edge_index, 20_000)
    assert h["mean"] == pytest.approx(10.0) and u["mean"] == pytest.approx(10.0)
    assert h["gini"] > 0.4 > 0.2 > u["gini"]  # Pareto propensities at exponent 2.5: Gini near 0.5; Poisson: ~0.18
    assert h["max"] > 20 * h["mean"] and u["max"] < 3 * u["mean"]
    # the same controls: class balance, homophily and the feature signal are make_csbm's
    assert torch.bincount(heavy.y).tolist() == [4000] * 5
    assert abs(edge_homophily(heavy) - 0.7) <= 0.03
    assert torch.equal(heavy.y, uniform.y)


def test_degree_exponent_sets_the_tail():
    kwargs = dict(num_nodes=20_000, num_classes=4, avg_degree=10, num_features=2, seed=0)
    ginis = [degree_stats(make_dcsbm(**kwargs, degree_exponent=g).edge_index, 20_000)["gini"] for g in (2.2, 2.5, 3.5)]
    assert ginis[0] > ginis[1] > ginis[2]  # a smaller exponent, a heavier tail


def test_degree_stats_by_hand():
    # a star of 4 leaves: degrees 4, 1, 1, 1, 1 (each edge stored both ways)
    leaves = torch.arange(1, 5)
    edge_index = torch.cat([torch.stack([torch.zeros(4, dtype=torch.long), leaves]),
                            torch.stack([leaves, torch.zeros(4, dtype=torch.long)])], 1)
    stats = degree_stats(edge_index, 5)
    assert stats["mean"] == pytest.approx(1.6) and stats["max"] == 4
    # Gini = sum |d_i - d_j| / (2 n^2 mean) = (2 * 4 * 3) / (2 * 25 * 1.6)
    assert stats["gini"] == pytest.approx(24 / 80)
    assert degree_stats(torch.empty(2, 0, dtype=torch.long), 3)["gini"] == 0.0


@pytest.mark.parametrize("exponent", [2.0, 1.5, float("nan")])
def test_degree_exponent_must_give_a_finite_mean(exponent):
    with pytest.raises(ValueError, match="degree_exponent must be > 2"):
        make_dcsbm(num_nodes=100, num_features=2, degree_exponent=exponent)


# ---- bag-of-words features ----------------------------------------------------------------------
def test_bag_of_words_features_are_binary_at_the_density_and_carry_the_class_by_signal():
    def nearest_mean_accuracy(data):  # class means from one half of the nodes, read out on the other
        x, y = data.x[:1000], data.y[:1000]
        means = torch.stack([x[y == c].mean(0) for c in range(4)])
        return float(((data.x[1000:] @ means.t()).argmax(1) == data.y[1000:]).float().mean())

    kwargs = dict(num_nodes=2000, num_classes=4, num_edges=5000, num_features=1000, feature_density=0.02, seed=0)
    words = make_csbm(**kwargs)
    assert words.name == "csbm-n2000-e5000-h0.8-d0.02-s0"
    assert set(words.x.unique().tolist()) == {0.0, 1.0} and bool((words.x.sum(1) >= 1).all())
    assert float(words.x.mean()) == pytest.approx(0.02, rel=0.1)  # a few repeated words per row collapse
    assert nearest_mean_accuracy(words) > 0.9
    assert nearest_mean_accuracy(make_csbm(**{**kwargs, "feature_signal": 0.0})) < 0.4  # 4 classes: chance is 0.25
    heavy = make_dcsbm(**kwargs)
    assert torch.equal(heavy.x.sum(1) > 0, torch.ones(2000, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"make_dcsbm: feature_density must be in \(0, 1\], got 0.0"):
        make_dcsbm(**{**kwargs, "feature_density": 0.0})
