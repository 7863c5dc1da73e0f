"""Teacher-side propagation (issue 31, lever 1): ``correct_and_smooth`` on tiny generated graphs,
by hand against a dense C&S, the labels and nodes it may read, its rows, its identity, its record,
its place in ``fit_student`` (``distill.propagate``), and its bad arguments."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vqgraph import (
    DistillConfig,
    Evaluator,
    TrainConfig,
    correct_and_smooth,
    fit_student,
    make_csbm,
    make_split,
    targets_from_outputs,
)
from vqgraph.data.graph import canonical_edges
from vqgraph.errors import ArtifactMismatchError
from vqgraph.losses import calibrate_temperature
from vqgraph.targets import TeacherTargets
from distill_helpers import SetUp

N, C = 240, 3


@pytest.fixture(scope="module")
def graph():
    return make_csbm(num_nodes=N, num_classes=C, avg_degree=6, num_features=8, seed=1, name="csbm-cs")


@pytest.fixture(scope="module", params=["transductive", "inductive"])
def split(request, graph):
    return make_split(graph, seed=0, setting=request.param, train_per_class=10, val_per_class=10)


def _logits(seed: int = 0) -> torch.Tensor:
    return torch.randn(N, C, generator=torch.Generator().manual_seed(seed)) * 2


@pytest.fixture(scope="module")
def targets(graph, split):
    return targets_from_outputs(_logits(), graph, split)


def _dense_cs(probs, edge_index, train, labels, a1, k1, a2, k2):
    """C&S written out with a dense [n, n] matrix: the reference of the by-hand test."""
    n = probs.size(0)
    adj = torch.zeros(n, n)
    adj[edge_index[1], edge_index[0]] = 1.0
    deg = adj.sum(1)
    inv = torch.where(deg > 0, deg.pow(-0.5), torch.zeros_like(deg))
    s = inv[:, None] * adj * inv[None, :]
    y = torch.nn.functional.one_hot(labels, probs.size(1)).float()
    e0 = torch.zeros_like(probs)
    e0[train] = y - probs[train]
    e = e0
    for _ in range(k1):
        e = (a1 * s @ e + (1 - a1) * e0).clamp(-1, 1)
    sigma = e0[train].abs().sum() / train.numel()
    scale = sigma / e.abs().sum(1, keepdim=True)
    scale[scale.isinf() | (scale > 1000)] = 1.0
    z0 = probs + scale * e
    z0[train] = y
    z = z0
    for _ in range(k2):
        z = (a2 * s @ z + (1 - a2) * z0).clamp(0, 1)
    return z / z.sum(1, keepdim=True)


def test_correct_and_smooth_by_hand_on_the_observed_graph(graph, split, targets):
    out = correct_and_smooth(targets, graph, split, correct_alpha=0.9, correct_hops=4, smooth_alpha=0.7,
                             smooth_hops=3, temperature=1.5)
    probs = (targets.logits / 1.5).softmax(-1)
    observed = split.observed_idx
    edges = split.to_local(split.observed_edges(graph.edge_index))
    train = split.to_local(split.train_idx)
    want = _dense_cs(probs[observed], edges, train, graph.y[split.train_idx], 0.9, 4, 0.7, 3)
    assert torch.allclose(out.logits[observed].exp(), want, atol=1e-5)
    # the training labels spread: every training node's row leans to its label
    assert bool((out.logits[split.train_idx].argmax(-1) == graph.y[split.train_idx]).all())


def test_only_the_training_labels_are_read(graph, split, targets):
    other = graph.clone()
    rest = torch.ones(N, dtype=torch.bool)
    rest[split.train_idx] = False
    other.y = graph.y.clone()
    other.y[rest] = (graph.y[rest] + 1) % C  # every validation and test label changed
    moved = targets_from_outputs(_logits(), other, split)
    a = correct_and_smooth(targets, graph, split)
    b = correct_and_smooth(moved, other, split)
    assert torch.equal(a.logits, b.logits)
    # the training labels are read: changing one changes the output
    changed = graph.clone()
    changed.y = graph.y.clone()
    changed.y[split.train_idx[0]] = (graph.y[split.train_idx[0]] + 1) % C
    c = correct_and_smooth(targets_from_outputs(_logits(), changed, split), changed, split)
    assert not torch.equal(a.logits, c.logits)


def test_inductive_never_touches_the_hidden_nodes(graph):
    split = make_split(graph, seed=0, setting="inductive", train_per_class=10, val_per_class=10)
    hidden = split.test_ind_idx
    targets = targets_from_outputs(_logits(), graph, split)
    out = correct_and_smooth(targets, graph, split, temperature=2.0)
    # the hidden rows are the teacher's soft labels, untouched
    assert torch.allclose(out.logits[hidden].exp(), (targets.logits[hidden] / 2.0).softmax(-1), atol=1e-6)
    # new edges between hidden and training nodes, and other teacher rows for hidden nodes, change nothing
    k = min(hidden.numel(), split.train_idx.numel())
    moved = graph.clone()
    moved.edge_index = canonical_edges(torch.cat([graph.edge_index, torch.stack([hidden[:k], split.train_idx[:k]])], 1),
                                       N)
    logits = _logits()
    logits[hidden] = _logits(seed=7)[hidden]
    again = correct_and_smooth(targets_from_outputs(logits, moved, split), moved, split, temperature=2.0)
    observed = split.observed_idx
    assert moved.edge_index.size(1) > graph.edge_index.size(1)
    assert torch.equal(again.logits[observed], out.logits[observed])


@pytest.mark.parametrize("alphas", [(0.979, 0.756), (0.5, 0.0), (0.0, 0.9), (1.0, 1.0)])
def test_rows_stay_distributions(graph, split, targets, alphas):
    out = correct_and_smooth(targets, graph, split, correct_alpha=alphas[0], smooth_alpha=alphas[1], temperature=0.3)
    probs = out.logits.exp()
    assert bool(torch.isfinite(out.logits).all()) and bool((probs >= 0).all())
    assert torch.allclose(probs.sum(-1), torch.ones(N), atol=1e-5)


def test_alpha_zero_leaves_its_step_out(graph, split, targets):
    probs = (targets.logits / 1.7).softmax(-1)
    same = correct_and_smooth(targets, graph, split, correct_alpha=0.0, smooth_alpha=0.0, temperature=1.7)
    assert torch.allclose(same.logits.exp(), probs, atol=1e-6)
    assert torch.equal(same.z, targets.z) and torch.equal(same.codes, targets.codes)
    # each step alone moves the soft labels
    for a1, a2 in ((0.9, 0.0), (0.0, 0.9)):
        moved = correct_and_smooth(targets, graph, split, correct_alpha=a1, smooth_alpha=a2, temperature=1.7)
        assert not torch.allclose(moved.logits.exp(), probs, atol=1e-3)


def test_the_propagated_targets_say_so(graph, split, targets, tmp_path):
    out = correct_and_smooth(targets, graph, split, correct_alpha=0.8, smooth_alpha=0.6, temperature=1.2)
    assert out.config["propagate"] == {"method": "cs", "correct_alpha": 0.8, "correct_hops": 50, "smooth_alpha": 0.6,
                                       "smooth_hops": 50, "temperature": 1.2}
    assert "propagate" not in targets.config  # the teacher's own targets are left as they were
    assert out.metrics == Evaluator.for_teacher(graph.y, split)(out.logits) != targets.metrics
    out.check_matches(graph, split)  # still the targets of this graph and split
    loaded = TeacherTargets.load(out.save(tmp_path / "cs.pt"))
    assert loaded.config["propagate"] == out.config["propagate"] and torch.equal(loaded.logits, out.logits)
    with pytest.raises(ValueError, match=r"propagated already \(config\['propagate'\]"):
        correct_and_smooth(loaded, graph, split)


def test_the_student_reads_the_propagated_soft_labels(graph, split, targets):
    cfg = DistillConfig(method="glnn", propagate="cs", cs_correct_alpha=0.8, cs_smooth_alpha=0.6)
    setup = SetUp(targets, cfg, data=graph, split=split)
    calibration = split.for_teacher().val_idx
    temperature = calibrate_temperature(targets.logits[calibration], graph.y[calibration])
    want = correct_and_smooth(targets, graph, split, correct_alpha=0.8, smooth_alpha=0.6, temperature=temperature)
    idx = torch.arange(N)
    assert setup.teacher.temperature == 1.0 and setup.teacher.calibrated == temperature
    assert torch.allclose(setup.teacher.probs(idx), want.logits.exp(), atol=1e-6)
    plain = SetUp(targets, dataclasses.replace(cfg, propagate="none"), data=graph, split=split)
    assert not torch.allclose(plain.teacher.probs(idx), setup.teacher.probs(idx), atol=1e-3)
    result = fit_student(graph, split, targets, distill=cfg, train=TrainConfig(max_epochs=2, progress=False))
    assert result.metrics["targets/teacher_temperature"] == pytest.approx(temperature)
    assert all(math.isfinite(row["train/loss"]) for row in result.history)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"correct_alpha": 1.5}, ValueError, r"correct_alpha must be a number in \[0, 1\] \(0 leaves its step out\), got 1.5"),
    ({"smooth_alpha": float("nan")}, ValueError, r"smooth_alpha must be a number in \[0, 1\].*got nan"),
    ({"smooth_alpha": True}, ValueError, r"smooth_alpha must be a number in \[0, 1\].*got True"),
    ({"correct_hops": 0}, ValueError, r"correct_hops must be an int >= 1 \(rounds of propagation\), got 0"),
    ({"smooth_hops": 2.5}, ValueError, r"smooth_hops must be an int >= 1.*got 2.5"),
    ({"temperature": 0.0}, ValueError, r"temperature must be a finite number > 0 \(it divides the logits\), got 0.0"),
])
def test_bad_arguments_are_refused_naming_them(graph, split, targets, kwargs, error, match):
    with pytest.raises(error, match=r"correct_and_smooth: " + match):
        correct_and_smooth(targets, graph, split, **kwargs)


def test_targets_of_another_kind_graph_or_split_are_refused(graph, split, targets):
    with pytest.raises(TypeError, match=r"correct_and_smooth: targets must be a TeacherTargets .* got dict"):
        correct_and_smooth({"logits": targets.logits}, graph, split)
    other_split = make_split(graph, seed=1, setting=split.setting.value, train_per_class=10, val_per_class=10)
    with pytest.raises(ArtifactMismatchError, match="made for another split"):
        correct_and_smooth(targets, graph, other_split)
    with pytest.raises(TypeError, match="correct_and_smooth: split must be a vqgraph.NodeSplit"):
        correct_and_smooth(targets, graph, {"train": split.train_idx})


def test_the_config_switch_is_checked():
    with pytest.raises(ValueError, match="propagate must be one of"):
        DistillConfig(propagate="lp")
    with pytest.raises(ValueError, match="cs_smooth_alpha must be in"):
        DistillConfig(propagate="cs", cs_smooth_alpha=1.2)
    with pytest.raises(ValueError, match="cs_correct_hops must be"):
        DistillConfig(propagate="cs", cs_correct_hops=0)
    with pytest.raises(ValueError, match="propagate='cs' transforms the teacher's soft labels, and method 'mlp' has none"):
        DistillConfig(method="mlp", propagate="cs")
    assert DistillConfig().propagate == "none"  # off by default
