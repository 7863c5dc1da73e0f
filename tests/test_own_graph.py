"""A user's own PyG graph: prepare_graph brings it to canonical form; the entry points refuse
any other form with a message naming prepare_graph, and infer the number of classes."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.data import Data

import vqgraph
from vqgraph import GraphValidationError, Predictor, TrainConfig
from vqgraph.data.graph import canonical_edges, is_canonical_edges


@pytest.fixture(scope="module")
def graph():
    return vqgraph.make_csbm(num_nodes=400, num_classes=3, num_features=8, seed=0)


def plain(graph, **changes) -> Data:
    """The graph as a user holds it: x, edge_index, y and nothing else."""
    fields = {"x": graph.x, "edge_index": graph.edge_index, "y": graph.y, **changes}
    return Data(**fields)


def test_plain_data_without_num_classes_runs_end_to_end(graph):
    data = plain(graph)
    split = vqgraph.make_split(data, seed=0)  # num_classes inferred from y
    teacher = vqgraph.fit_teacher(data, split, train=TrainConfig(max_epochs=3, progress=False))
    student = vqgraph.fit_student(data, split, teacher.targets, train=TrainConfig(max_epochs=3, progress=False))
    assert student.model.num_classes == 3 and "num_classes" not in data  # the user's object is untouched
    assert torch.equal(Predictor(student.model).predict(data).labels, Predictor(student.model).predict(data.x).labels)


@pytest.mark.parametrize("case, message", [
    ("one_direction", "not in canonical form"),
    ("duplicates", "not in canonical form"),
    ("self_loops", "not in canonical form"),
    ("unsorted", "not in canonical form"),
    ("float64", "torch.float64"),
    ("integer_x", "torch.int64"),
    ("sparse_x", "sparse_coo"),
    ("y_column", r"shape \(400, 1\)"),
    ("label_gaps", "labels with gaps"),
])
def test_each_bad_form_is_refused_naming_prepare_graph(graph, case, message):
    ei = graph.edge_index
    forms = {
        "one_direction": {"edge_index": ei[:, ei[0] < ei[1]]},
        "duplicates": {"edge_index": torch.cat([ei, ei[:, :4]], 1)},
        "self_loops": {"edge_index": torch.cat([ei, torch.tensor([[0], [0]])], 1)},
        "unsorted": {"edge_index": ei.flip(1)},
        "float64": {"x": graph.x.double()},
        "integer_x": {"x": (graph.x > 0).long()},
        "sparse_x": {"x": graph.x.to_sparse()},
        "y_column": {"y": graph.y.view(-1, 1)},
        "label_gaps": {"y": graph.y * 2},
    }
    bad = plain(graph, **forms[case])
    with pytest.raises(GraphValidationError, match=message) as err:
        vqgraph.make_split(bad, seed=0)
    assert "prepare_graph" in str(err.value) and "make_split" in str(err.value)
    fixed = vqgraph.prepare_graph(bad, remap_labels=case == "label_gaps")
    split = vqgraph.make_split(fixed, seed=0)  # now accepted
    assert fixed.x.dtype == torch.float32 and fixed.y.dtype == torch.long and fixed.y.dim() == 1
    assert is_canonical_edges(fixed.edge_index, fixed.num_nodes) and split.num_nodes == 400
    if case in ("one_direction", "duplicates", "self_loops", "unsorted"):
        assert torch.equal(fixed.edge_index, graph.edge_index)  # the graph the user meant


def test_entry_points_other_than_make_split_refuse_too(graph):
    split = vqgraph.make_split(graph, seed=0)
    bad = plain(graph, edge_index=graph.edge_index[:, graph.edge_index[0] < graph.edge_index[1]])
    with pytest.raises(GraphValidationError, match="fit_teacher.*prepare_graph"):
        vqgraph.fit_teacher(bad, split, train=TrainConfig(max_epochs=1, progress=False))
    teacher = vqgraph.fit_teacher(graph, split, train=TrainConfig(max_epochs=1, progress=False))
    with pytest.raises(GraphValidationError, match="fit_student.*prepare_graph"):
        vqgraph.fit_student(bad, split, teacher.targets, train=TrainConfig(max_epochs=1, progress=False))


def test_label_gaps_are_remapped_and_the_values_kept(graph):
    values = torch.tensor([0, 2, 5])
    with pytest.raises(GraphValidationError, match=r"classes \[1, 3, 4\] have no node.*remap_labels=True"):
        vqgraph.prepare_graph(plain(graph, y=values[graph.y]))
    fixed = vqgraph.prepare_graph(plain(graph, y=values[graph.y]), remap_labels=True)
    assert torch.equal(fixed.y, graph.y) and torch.equal(fixed.class_values, values) and fixed.num_classes == 3
    kept = vqgraph.prepare_graph(plain(graph, y=values[graph.y]), num_classes=6)  # a fixed label space: kept
    assert kept.num_classes == 6 and torch.equal(kept.y, values[graph.y])
    with pytest.raises(GraphValidationError, match=r"classes \[1, 2, 3, 4, 5, 6, 7, 8, 9, 10\] \.\.\."):
        vqgraph.prepare_graph(plain(graph, y=graph.y * 10**9))  # large ids: the first gaps, at once
    # three labels and three stored edges: class_values is no edge attribute
    tiny = Data(x=torch.rand(4, 2), edge_index=torch.tensor([[0, 1, 2], [1, 2, 3]]), y=torch.tensor([0, 2, 5, 0]))
    assert torch.equal(vqgraph.prepare_graph(tiny, remap_labels=True).class_values, torch.tensor([0, 2, 5]))
    assert vqgraph.prepare_graph(plain(graph, y=graph.y == 1)).num_classes == 2  # bool labels


def test_num_classes_is_checked_when_given(graph):
    with pytest.raises(GraphValidationError, match="num_classes=2 but a node has label 2"):
        vqgraph.prepare_graph(plain(graph), num_classes=2)
    assert vqgraph.prepare_graph(plain(graph), num_classes=5).num_classes == 5
    wrong = plain(graph)
    wrong.num_classes = 2
    with pytest.raises(GraphValidationError, match=r"labels must be in \[0, 2\)"):
        vqgraph.make_split(wrong, seed=0)


def test_largest_component_keeps_the_biggest_part_and_its_ids(graph):
    # a second component of three nodes, and one isolated node
    n = graph.num_nodes
    extra = torch.tensor([[n, n + 1], [n + 1, n + 2]])
    x = torch.cat([graph.x, torch.randn(4, graph.num_features)])
    y = torch.cat([graph.y, torch.tensor([0, 1, 2, 0])])
    edges = torch.cat([graph.edge_index, extra], 1)
    data = Data(x=x, edge_index=edges, y=y, train_mask=torch.arange(n + 4) % 2 == 0, edge_attr=torch.rand(edges.size(1), 3))
    whole = vqgraph.prepare_graph(data)
    assert whole.num_nodes == n + 4 and "edge_attr" not in whole  # edge attributes would not match the new edges
    kept = vqgraph.prepare_graph(data, largest_component=True)
    assert kept.num_nodes <= n and torch.equal(kept.x, x[kept.orig_id]) and torch.equal(kept.y, y[kept.orig_id])
    assert torch.equal(kept.train_mask, data.train_mask[kept.orig_id])  # node attributes follow
    assert is_canonical_edges(kept.edge_index, kept.num_nodes)


def test_largest_component_of_a_graph_without_edges_is_refused(graph):
    with pytest.raises(GraphValidationError, match="without edges"):
        vqgraph.prepare_graph(plain(graph, edge_index=torch.empty(2, 0, dtype=torch.long)), largest_component=True)


def test_int32_edges_are_named(graph):
    with pytest.raises(GraphValidationError, match="edge_index of torch.int32; int64 is expected.*prepare_graph"):
        vqgraph.make_split(plain(graph, edge_index=graph.edge_index.int()), seed=0)


def test_malformed_tensors_get_a_clear_error(graph):
    with pytest.raises(GraphValidationError, match="data.y is missing"):
        vqgraph.prepare_graph(Data(x=graph.x, edge_index=graph.edge_index))
    with pytest.raises(GraphValidationError, match="non-integer"):
        vqgraph.prepare_graph(plain(graph, y=graph.y.float() + 0.5))
    with pytest.raises(GraphValidationError, match="multi-label"):
        vqgraph.prepare_graph(plain(graph, y=torch.zeros(400, 3, dtype=torch.long)))
    with pytest.raises(GraphValidationError, match="outside"):
        vqgraph.prepare_graph(plain(graph, edge_index=torch.tensor([[0], [400]])))


def test_canonical_check_agrees_with_canonical_edges():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        ei = torch.randint(0, 30, (2, 60), generator=gen)
        canon = canonical_edges(ei, 30)
        assert is_canonical_edges(canon, 30)
        assert is_canonical_edges(ei, 30) == torch.equal(ei, canon)


def test_the_edge_check_is_remembered_until_the_edges_change_in_place(graph, monkeypatch):
    from vqgraph.data import graph as graph_module

    data = plain(graph, edge_index=graph.edge_index.clone())
    calls = []
    real = graph_module.is_canonical_edges
    monkeypatch.setattr(graph_module, "is_canonical_edges", lambda *a: calls.append(1) or real(*a))
    vqgraph.make_split(data, seed=0)
    vqgraph.make_split(data, seed=1)
    assert len(calls) == 1  # the second entry point trusts the unchanged tensor
    data.edge_index[1, 0] = data.edge_index[0, 0]  # a self-loop, written in place
    with pytest.raises(GraphValidationError, match="not in canonical form"):
        vqgraph.make_split(data, seed=0)


def test_features_that_are_not_contiguous_train_the_same_teacher_bit_for_bit(graph):
    """Dropout masks follow memory order: a transposed-then-transposed or sliced x (the same values,
    another layout) trains the same teacher as the contiguous x; a contiguous x is not copied."""
    wide = torch.cat([graph.x, torch.zeros_like(graph.x)], dim=1)
    views = {"transposed": graph.x.t().contiguous().t(), "sliced": wide[:, : graph.x.size(1)]}
    train = TrainConfig(max_epochs=3, progress=False, seed=0)
    split = vqgraph.make_split(graph, seed=0)
    reference = vqgraph.fit_teacher(graph, split, train=train)
    for kind, x in views.items():
        assert not x.is_contiguous() and torch.equal(x, graph.x), kind
        for data in (plain(graph, x=x), vqgraph.prepare_graph(plain(graph, x=x))):
            result = vqgraph.fit_teacher(data, split, train=train)
            assert result.history == reference.history, kind
            for key, value in reference.model.state_dict().items():
                assert torch.equal(result.model.state_dict()[key], value), (kind, key)
            assert data.x is x or data.x.is_contiguous()  # the user's graph is left as it was
    assert vqgraph.data.graph.ensure_graph(graph).x is graph.x  # contiguous: shared, not copied
    assert vqgraph.prepare_graph(plain(graph)).x is graph.x
