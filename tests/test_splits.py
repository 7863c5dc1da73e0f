"""NodeSplit: the CPF split, the inductive setting and fixed splits."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from vqgraph.data import NodeSplit, Setting, cpf_split, make_csbm, make_split
from vqgraph.errors import SplitError


@pytest.fixture(scope="module")
def csbm():
    return make_csbm(num_nodes=1200, num_classes=4, avg_degree=6, num_features=8, seed=5)


@pytest.fixture(params=[pytest.param("cora", marks=pytest.mark.realdata), "csbm"])
def graph(request, csbm):
    """A CPF-split graph: real Cora, and a synthetic one (which needs no data files)."""
    if request.param == "csbm":
        return csbm
    return request.getfixturevalue("load_real")("cora")


def _ids(t):
    return set(t.tolist())


# ---- CPF split -----------------------------------------------------------------------------------
def test_cpf_split_partitions_nodes(graph):
    split = make_split(graph, seed=0)
    train, val, test = _ids(split.train_idx), _ids(split.val_idx), _ids(split.test_idx)
    assert not train & val and not train & test and not val & test
    assert train | val | test == set(range(graph.num_nodes))
    assert split.setting is Setting.TRANSDUCTIVE
    assert split.test_ind_idx.numel() == 0
    for idx in (split.train_idx, split.val_idx, split.test_idx):
        assert idx.dtype == torch.int64
        assert torch.equal(idx, torch.sort(idx).values)


def test_cpf_split_per_class_counts(graph):
    split = make_split(graph, seed=0)
    c = graph.num_classes
    assert torch.bincount(graph.y[split.train_idx], minlength=c).tolist() == [20] * c
    assert torch.bincount(graph.y[split.val_idx], minlength=c).tolist() == [30] * c
    custom = cpf_split(graph.y, c, seed=0, train_per_class=5, val_per_class=7)
    assert torch.bincount(graph.y[custom.train_idx], minlength=c).tolist() == [5] * c
    assert torch.bincount(graph.y[custom.val_idx], minlength=c).tolist() == [7] * c


def test_cpf_split_sizes(graph):
    c = graph.num_classes
    assert make_split(graph, seed=1).sizes() == {"train": 20 * c, "val": 30 * c, "test": graph.num_nodes - 50 * c}


def test_cora_split_sizes(load_real):
    assert make_split(load_real("cora"), seed=0).sizes() == {"train": 140, "val": 210, "test": 2135}


def test_same_seed_same_split_different_seed_different(graph):
    a, b, c = make_split(graph, seed=3), make_split(graph, seed=3), make_split(graph, seed=4)
    assert torch.equal(a.train_idx, b.train_idx)
    assert torch.equal(a.val_idx, b.val_idx)
    assert torch.equal(a.test_idx, b.test_idx)
    assert a.fingerprint() == b.fingerprint()
    assert not torch.equal(a.train_idx, c.train_idx)
    assert not torch.equal(a.val_idx, c.val_idx)
    assert a.fingerprint() != c.fingerprint()


# ---- inductive setting ---------------------------------------------------------------------------
@pytest.fixture
def ind(graph):
    return graph, make_split(graph, seed=2, setting="inductive")


def test_inductive_sizes(ind):
    graph, split = ind
    assert split.setting is Setting.INDUCTIVE
    n_test = split.test_idx.numel()
    assert split.test_ind_idx.numel() == int(round(0.2 * n_test))
    assert split.test_tran_idx.numel() + split.test_ind_idx.numel() == n_test
    assert _ids(split.test_tran_idx) | _ids(split.test_ind_idx) == _ids(split.test_idx)
    assert not _ids(split.test_tran_idx) & _ids(split.test_ind_idx)
    sizes = split.sizes()
    assert sizes["test_tran"] + sizes["test_ind"] == n_test
    # hiding test nodes does not change train/val
    tran = make_split(graph, seed=2)
    assert torch.equal(split.train_idx, tran.train_idx) and torch.equal(split.val_idx, tran.val_idx)


@pytest.mark.parametrize("ratio", [0.1, 0.5])
def test_inductive_ratio(graph, ratio):
    split = make_split(graph, seed=0, setting="inductive", test_ind_ratio=ratio)
    assert split.test_ind_idx.numel() == int(round(ratio * split.test_idx.numel()))


def test_index_dict_keys_per_setting(graph):
    tran = make_split(graph, seed=0)
    assert list(tran.index_dict()) == ["train", "val", "test"]
    assert list(tran.sizes()) == ["train", "val", "test"]
    ind = make_split(graph, seed=0, setting=Setting.INDUCTIVE)
    assert list(ind.index_dict()) == ["train", "val", "test_tran", "test_ind"]
    assert torch.equal(ind.index_dict()["test_ind"], ind.test_ind_idx)
    assert torch.equal(ind.index_dict()["test_tran"], ind.test_tran_idx)


def test_observed_graph_hides_test_ind(ind, assert_canonical):
    graph, split = ind
    obs = split.observed_graph(graph)
    hidden = _ids(split.test_ind_idx)
    n_id = obs.n_id
    assert obs.num_nodes == graph.num_nodes - len(hidden)
    assert not _ids(n_id) & hidden
    assert _ids(n_id) | hidden == set(range(graph.num_nodes))
    assert torch.equal(obs.x, graph.x[n_id])
    assert torch.equal(obs.y, graph.y[n_id])
    assert_canonical(obs)
    # no observed edge touches a hidden node (in global ids)
    global_edges = n_id[obs.edge_index]
    assert not bool(split.hidden_mask[global_edges].any())
    # and every original edge between observed nodes is kept
    keep = ~split.hidden_mask[graph.edge_index].any(dim=0)
    expected = graph.edge_index[:, keep]
    n = graph.num_nodes
    got = torch.sort(global_edges[0] * n + global_edges[1]).values
    assert torch.equal(got, torch.sort(expected[0] * n + expected[1]).values)
    assert expected.size(1) < graph.edge_index.size(1)  # some edges were removed


def test_observed_graph_transductive_is_whole_graph(graph):
    split = make_split(graph, seed=0)
    obs = split.observed_graph(graph)
    assert torch.equal(obs.n_id, torch.arange(graph.num_nodes))
    assert torch.equal(obs.edge_index, graph.edge_index)
    assert torch.equal(split.to_local(split.test_idx), split.test_idx)


def test_to_local_round_trip_and_hidden_nodes(ind):
    graph, split = ind
    obs = split.observed_graph(graph)
    for idx in (split.train_idx, split.val_idx, split.test_tran_idx):
        local = split.to_local(idx)
        assert int(local.max()) < obs.num_nodes
        assert torch.equal(obs.n_id[local], idx)
        assert torch.equal(obs.y[local], graph.y[idx])
    with pytest.raises(SplitError, match="hidden"):
        split.to_local(split.test_ind_idx[:1])
    with pytest.raises(SplitError, match="hidden"):
        split.to_local(torch.cat([split.train_idx[:3], split.test_ind_idx[-1:]]))


def test_inductive_fingerprint_and_draw_depend_on_seed(graph):
    a = make_split(graph, seed=0, setting="inductive")
    b = make_split(graph, seed=0, setting="inductive")
    c = make_split(graph, seed=1, setting="inductive")
    assert a.fingerprint() == b.fingerprint()
    assert torch.equal(a.test_ind_idx, b.test_ind_idx)
    assert a.fingerprint() != c.fingerprint()
    assert a.fingerprint() != make_split(graph, seed=0).fingerprint()
    # an explicit seed redraws only the hidden nodes
    d = make_split(graph, seed=0).inductive(0.2, seed=9)
    assert torch.equal(d.train_idx, a.train_idx)
    assert not torch.equal(d.test_ind_idx, a.test_ind_idx)


def test_split_checks_graph_size(graph, tiny_graph):
    split = make_split(graph, seed=0, setting="inductive")
    with pytest.raises(SplitError, match=f"{graph.num_nodes} nodes but the graph has 6"):
        split.observed_graph(tiny_graph)


def test_inductive_twice_refused(graph):
    with pytest.raises(SplitError, match="inductive already"):
        make_split(graph, seed=0, setting="inductive").inductive()


def test_unknown_setting(graph):
    with pytest.raises(SplitError, match="unknown setting 'semi'"):
        make_split(graph, seed=0, setting="semi")


def test_nodesplit_rejects_overlap():
    with pytest.raises(SplitError, match="disjoint; node 2"):
        NodeSplit(5, [0, 1, 2], [2, 3], [4], [])
    with pytest.raises(SplitError, match="more than once"):
        NodeSplit(5, [0, 0], [3], [4], [])
    with pytest.raises(SplitError, match=r"outside \[0, 5\)"):
        NodeSplit(5, [0, 5], [3], [4], [])
    with pytest.raises(SplitError, match="must be test nodes"):
        NodeSplit(5, [0, 1], [3], [4], [1])


# ---- fixed splits --------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 3, 9, 10, 13, 27])
def test_fixed_split_uses_column_seed_mod_10(load_real, seed):
    texas = load_real("texas")
    split = make_split(texas, seed=seed)
    col = seed % 10
    assert split.train_idx.tolist() == texas.train_mask[:, col].nonzero().view(-1).tolist()
    assert split.val_idx.tolist() == texas.val_mask[:, col].nonzero().view(-1).tolist()
    assert split.test_idx.tolist() == texas.test_mask[:, col].nonzero().view(-1).tolist()
    assert split.sizes() == {"train": 87, "val": 59, "test": 37}


def test_fixed_splits_differ_between_columns(load_real):
    texas = load_real("texas")
    assert make_split(texas, seed=0).fingerprint() == make_split(texas, seed=10).fingerprint()
    assert make_split(texas, seed=0).fingerprint() != make_split(texas, seed=1).fingerprint()


def test_fixed_split_inductive(load_real):
    texas = load_real("texas")
    split = make_split(texas, seed=4, setting="inductive")
    assert split.test_ind_idx.numel() == round(0.2 * 37) == 7
    assert torch.equal(split.train_idx, texas.train_mask[:, 4].nonzero().view(-1))
    obs = split.observed_graph(texas)
    assert obs.num_nodes == 183 - 7
    assert obs.train_mask.shape == (176, 10)


# ---- validation halved between teacher and student -----------------------------------------------
@pytest.mark.parametrize("setting", ["transductive", "inductive"])
def test_halved_validation_gives_each_model_its_own_half_per_class(csbm, setting):
    shared = make_split(csbm, seed=3, setting=setting)
    split = shared.halve_validation(csbm.y)
    teacher, student = split.for_teacher(), split.for_student()
    assert _ids(teacher.val_idx).isdisjoint(_ids(student.val_idx))
    assert _ids(teacher.val_idx) | _ids(student.val_idx) == _ids(shared.val_idx)
    per_class = torch.bincount(csbm.y[teacher.val_idx], minlength=4)
    assert per_class.tolist() == (torch.bincount(csbm.y[shared.val_idx], minlength=4) // 2).tolist()
    for view in (teacher, student):  # only validation differs; the views are plain splits
        assert view.teacher_val_idx is None and view.setting is shared.setting
        assert torch.equal(view.train_idx, shared.train_idx) and torch.equal(view.test_ind_idx, shared.test_ind_idx)
    assert shared.for_teacher() is shared and shared.for_student() is shared
    # reproducible, other seeds other halves, and the halving is part of the fingerprint
    assert torch.equal(shared.halve_validation(csbm.y).teacher_val_idx, split.teacher_val_idx)
    assert not torch.equal(shared.halve_validation(csbm.y, seed=4).teacher_val_idx, split.teacher_val_idx)
    assert split.fingerprint() != shared.fingerprint()
    assert shared.fingerprint() == make_split(csbm, seed=3, setting=setting).fingerprint()


def test_halving_survives_the_inductive_step(csbm):
    split = make_split(csbm, seed=0).halve_validation(csbm.y).inductive()
    assert split.teacher_val_idx is not None and split.for_student().test_ind_idx.numel() > 0


def test_teacher_val_must_be_a_strict_part_of_val():
    with pytest.raises(SplitError, match="teacher_val must be a part of val"):
        NodeSplit(6, [0, 1], [2, 3], [4, 5], [], teacher_val_idx=[4])
    with pytest.raises(SplitError, match="teacher_val must be a part of val"):
        NodeSplit(6, [0, 1], [2, 3], [4, 5], [], teacher_val_idx=[2, 3])


def test_halving_draws_per_class_with_the_seed_given():
    y = torch.arange(60) % 3
    split = NodeSplit(60, torch.arange(1, 60, 4), torch.arange(0, 60, 2), torch.arange(3, 60, 4), [])
    a = split.halve_validation(y, seed=0).for_teacher().val_idx
    assert torch.bincount(y[a], minlength=3).tolist() == [5, 5, 5]  # 10 validation nodes per class, halved
    assert torch.equal(split.halve_validation(y, seed=0).teacher_val_idx, a)
    assert not torch.equal(split.halve_validation(y, seed=1).teacher_val_idx, a)
    assert torch.equal(split.halve_validation(y).teacher_val_idx, split.halve_validation(y, seed=104729).teacher_val_idx)


def test_the_split_records_its_hidden_share_and_weighs_test_prod_by_it(graph):
    from vqgraph.evaluation import Evaluator

    split = make_split(graph, seed=0, setting="inductive", test_ind_ratio=0.3)
    assert split.test_ind_ratio == 0.3 and split.for_teacher().test_ind_ratio == 0.3
    assert make_split(graph, seed=0).test_ind_ratio is None  # transductive
    # the ratio is not part of the identity: caches keyed on the fingerprint stay valid
    assert dataclasses.replace(split, test_ind_ratio=0.2).fingerprint() == split.fingerprint()
    # a split given its hidden nodes records their share
    assert NodeSplit(6, [0], [1], [2, 3, 4, 5], [5]).test_ind_ratio == 0.25
    pred = torch.randint(0, int(graph.y.max()) + 1, (graph.num_nodes,), generator=torch.Generator().manual_seed(0))
    metrics = Evaluator.for_split(graph.y, split)(pred)
    assert metrics["test_prod/acc"] == 0.7 * metrics["test_tran/acc"] + 0.3 * metrics["test_ind/acc"]
    default = make_split(graph, seed=0, setting="inductive")
    metrics = Evaluator.for_split(graph.y, default)(pred)
    assert metrics["test_prod/acc"] == 0.8 * metrics["test_tran/acc"] + 0.2 * metrics["test_ind/acc"]


def test_observed_edges_and_rows_are_what_the_observed_graph_holds(ind):
    graph, ind = ind
    tran = make_split(graph, seed=0)
    assert tran.observed_edges(graph.edge_index) is graph.edge_index and tran.observed_rows(graph.x) is graph.x
    edges = ind.observed_edges(graph.edge_index)
    hidden = ind.hidden_mask
    assert not bool(hidden[edges].any())  # no kept edge touches a hidden node
    kept = ~(hidden[graph.edge_index[0]] | hidden[graph.edge_index[1]])
    assert edges.size(1) == int(kept.sum()) > 0  # and every other edge is kept
    observed = ind.observed_graph(graph)
    assert torch.equal(ind.observed_rows(graph.x), observed.x)
    assert torch.equal(observed.n_id[observed.edge_index], edges)  # the same edges, by global id
