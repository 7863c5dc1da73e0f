"""Distillation: alignment by global id, one similarity for teacher and student, selection on validation."""

from __future__ import annotations

import copy
import math
from dataclasses import replace

import pytest
import torch

from vqgraph import distributed
from vqgraph.data import make_csbm, make_split
from vqgraph.losses import calibrate_temperature, code_logits, code_map
from vqgraph.models import TeacherConfig
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.targets import smooth_soft_labels
from vqgraph.training import BestCheckpoint, DistillConfig, TrainConfig, fit_student, fit_teacher
from distill_helpers import SetUp


@pytest.fixture(scope="module")
def task():
    data = make_csbm(num_nodes=300, num_classes=3, num_features=16, homophily=0.9, feature_signal=1.0, seed=0)
    split = make_split(data, seed=0, train_per_class=10, val_per_class=10)
    return data, split


@pytest.fixture(scope="module")
def targets(task):
    data, split = task
    cfg = TeacherConfig(hidden_channels=16, codebook_size=32)
    return fit_teacher(data, split, cfg, TrainConfig(max_epochs=20, progress=False)).targets


def test_teacher_codes_are_argmax_of_the_shared_similarity(targets):
    # the quantizer's choice and the student's similarity are the same function
    chosen = code_logits(targets.z, targets.codebook, targets.metric).argmax(-1)
    assert torch.equal(chosen, targets.codes)
    assert targets.codes.unique().numel() > 1  # not a collapsed codebook, where any argmax agrees


def test_soft_token_loss_aligns_rows_by_global_id(targets):
    cfg = DistillConfig(method="vqgraph", label_weight=0.0, soft_label_weight=0.0, soft_token_weight=1.0)
    terms = SetUp(targets, cfg)
    idx = torch.randperm(targets.num_nodes, generator=torch.Generator().manual_seed(1))[:64]
    logits = torch.zeros(idx.numel(), targets.logits.size(1))
    # a student reproducing each node's own teacher representation has zero code loss ...
    aligned = terms.weighted("soft_token", idx, logits, targets.z[idx].clone())
    assert float(aligned) == pytest.approx(0.0, abs=1e-6)
    # ... and pairing the same rows with other nodes' ids (the official code's bug) does not
    shifted = terms.weighted("soft_token", idx.roll(1), logits, targets.z[idx].clone())
    assert float(shifted) > 1e-3


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_code_map_is_the_affine_form_of_the_code_logits(metric):
    # code_logits(z) = z' @ weight.T + bias + r(z): z' the unit z and r = 0 (cosine), z and -scale |z|^2 (euclidean)
    z, codebook, scale = torch.randn(9, 5, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64), 2.5
    weight, bias = code_map(codebook, metric, scale)
    if metric == "cosine":
        affine = torch.nn.functional.normalize(z, dim=-1) @ weight.t()
        assert bias is None
    else:
        affine = z @ weight.t() + bias - scale * z.pow(2).sum(-1, keepdim=True)
    assert torch.allclose(affine, code_logits(z, codebook, metric, scale), atol=1e-10)
    with pytest.raises(ValueError, match="unknown metric"):
        code_map(codebook, "dot")


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_soft_code_term_is_the_textbook_kl_with_its_gradient(targets, metric):
    # the moment form (teacher mean codes, logsumexp) equals tau^2 KL(softmax(t / tau) || softmax(s / tau)),
    # value and gradient, with t and s of the same similarity
    cfg = DistillConfig(method="vqgraph", label_weight=0.0, soft_label_weight=0.0)
    targets = copy.copy(targets)
    targets.metric = metric
    terms = SetUp(targets, cfg)
    idx = torch.tensor([7, 3, 250, 3])
    z = torch.randn(4, targets.z.size(1), requires_grad=True)
    got = terms.weighted("soft_token", idx, torch.zeros(4, targets.logits.size(1)), z)
    (grad,) = torch.autograd.grad(got, z)
    tau = cfg.token_temperature
    t = torch.softmax(code_logits(targets.z[idx], targets.codebook, metric) / tau, -1)
    log_s = torch.log_softmax(code_logits(z, targets.codebook, metric) / tau, -1)
    expected = tau * tau * torch.nn.functional.kl_div(log_s, t, reduction="batchmean")
    (expected_grad,) = torch.autograd.grad(expected, z)
    assert float(got.detach()) > 0 and torch.allclose(got, expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(grad, expected_grad, rtol=1e-4, atol=1e-6)
    assert terms["soft_token"].moments[1].shape == (targets.num_nodes, targets.z.size(1))  # N x D, never N x K


def test_index_code_target_is_the_cross_entropy_to_the_teachers_code(targets):
    cfg = DistillConfig(method="vqgraph", label_weight=0.0, soft_label_weight=0.0, code_target="index",
                        soft_token_weight=2.0)
    terms = SetUp(targets, cfg)
    assert not hasattr(terms["soft_token"], "moments")  # no soft assignments needed
    idx = torch.tensor([7, 3, 250, 3])
    logits, z = torch.zeros(4, targets.logits.size(1)), torch.randn(4, targets.z.size(1))
    tau = cfg.token_temperature
    log_s = torch.log_softmax(code_logits(z, targets.codebook) / tau, -1)
    expected = 2.0 * tau * tau * torch.nn.functional.nll_loss(log_s, targets.codes[idx])
    assert torch.allclose(terms.weighted("soft_token", idx, logits, z), expected, atol=1e-6)
    # the student's own code is favoured over any other: its codeword scores lower than a wrong one
    own = targets.codebook[targets.codes[idx]]
    wrong = targets.codebook[(targets.codes[idx] + 1) % targets.codebook.size(0)]
    code_loss = lambda z: float(terms.weighted("soft_token", idx, logits, z))  # noqa: E731
    assert code_loss(own) < code_loss(wrong)


def test_class_code_target_is_the_kl_to_the_class_mix_of_the_teachers_code(targets):
    cfg = DistillConfig(method="vqgraph", label_weight=0.0, soft_label_weight=0.0, code_target="class")
    fit = torch.arange(0, targets.num_nodes, 2)  # half the nodes form the mixes
    terms = SetUp(targets, cfg, temperature=0.7, fit_idx=fit)
    mix = terms["soft_token"].classes
    k, c = targets.codebook.size(0), targets.logits.size(1)
    assert mix.shape == (k, c) and torch.allclose(mix.sum(1), torch.ones(k), atol=1e-5)
    # by hand: one code's mean soft label over its fit nodes, with one pseudo-node of the overall mean
    probs = torch.softmax(targets.logits[fit] / 0.7, -1)
    code = int(targets.codes[fit].mode().values)
    mine = probs[targets.codes[fit] == code]
    expected = (mine.sum(0) + probs.mean(0)) / (mine.size(0) + 1)
    assert torch.allclose(mix[code], expected, atol=1e-5)
    unused = torch.ones(k, dtype=torch.bool)
    unused[targets.codes[fit]] = False
    if unused.any():  # a code no fit node holds carries the overall mean
        assert torch.allclose(mix[unused.nonzero()[0, 0]], probs.mean(0), atol=1e-5)
    # a student predicting each node's mix has no loss; uniform predictions do
    idx = torch.arange(1, 60, 3)  # nodes outside fit too: every node has a teacher code
    assert float(terms.weighted("soft_token", idx, mix[targets.codes[idx]].log())) == pytest.approx(0.0, abs=1e-5)
    assert float(terms.weighted("soft_token", idx, torch.zeros(idx.numel(), c))) > 1e-3


def test_unknown_code_target_is_refused():
    with pytest.raises(ValueError, match="code_target must be one of"):
        DistillConfig(code_target="hard")


def test_soft_label_loss_is_the_weighted_kl_to_the_tempered_teacher(targets):
    idx, temperature, classes = torch.arange(50), 0.5, targets.logits.size(1)
    cfg = DistillConfig(method="glnn", label_weight=0.0, soft_label_weight=2.0)
    terms = SetUp(targets, cfg, temperature=temperature)
    same = targets.logits[idx] / temperature
    assert float(terms.weighted("soft_label", idx, same)) == pytest.approx(0.0, abs=1e-6)
    assert terms["soft_token"].weight == 0.0  # glnn has no code term
    assert float(terms.weighted("soft_token", idx, same)) == 0.0
    # a uniform student: KL(p || uniform) = log C - H(p), computed here in double precision
    p = torch.softmax(targets.logits[idx].double() / temperature, -1)
    expected = 2.0 * (math.log(classes) - torch.special.entr(p).sum(-1)).mean()
    got = terms.weighted("soft_label", idx, torch.zeros(50, classes))
    assert float(got) > 1e-3 and float(got) == pytest.approx(float(expected), rel=1e-5)


def test_calibrated_temperature_minimises_validation_nll():
    torch.manual_seed(0)
    y = torch.randint(0, 4, (500,))
    logits = torch.randn(500, 4) * 0.1
    logits[torch.arange(500), y] += 0.3  # right but under-confident: calibration sharpens (T < 1)
    t = calibrate_temperature(logits, y)
    assert t < 1.0
    nll = torch.nn.functional.cross_entropy
    assert nll(logits / t, y) <= nll(logits, y)
    assert nll(logits / t, y) <= nll(logits / (t * 1.5), y) and nll(logits / t, y) <= nll(logits / (t / 1.5), y)


def test_best_checkpoint_prefers_validation_and_the_earliest_tie():
    best = BestCheckpoint("val/acc")
    history = [
        {"val/acc": 0.5, "test/acc": 0.5},
        {"val/acc": 0.8, "test/acc": 0.6},  # best on validation
        {"val/acc": 0.7, "test/acc": 0.9},  # best on test: must not be chosen
        {"val/acc": 0.8, "test/acc": 0.95},  # ties keep the earliest
    ]
    for epoch, metrics in enumerate(history):
        best.update(epoch, metrics)
    assert best.best_epoch == 1 and best.best_metrics["test/acc"] == 0.6


@pytest.mark.parametrize("method", ["mlp", "glnn", "vqgraph"])
def test_fit_student_runs_and_is_reproducible(task, targets, method):
    data, split = task
    train = TrainConfig(max_epochs=15, patience=None, progress=False, lr=0.01, weight_decay=0.0)
    student = StudentConfig(hidden_channels=16)
    cfg = DistillConfig(method=method)
    first = fit_student(data, split, targets, student, cfg, train)
    second = fit_student(data, split, targets, student, cfg, train)
    assert first.history == second.history
    assert first.metrics["test/acc"] == second.metrics["test/acc"]
    assert (first.model.projection is not None) == (method == "vqgraph")
    best = max(range(len(first.history)), key=lambda e: (first.history[e]["val/acc"], -e))
    assert first.metrics["best_epoch"] == best
    for key in ("val/acc", "test/acc"):  # the reported metrics are the selected epoch's
        assert first.metrics[key] == first.history[best][key]
    assert first.history[-1]["train/loss"] < 0.9 * first.history[0]["train/loss"]  # it trains


@pytest.mark.parametrize("code_target", ["index", "class"])
def test_code_targets_train_and_class_mixes_see_only_training_nodes(task, targets, code_target):
    data, _ = task
    split = make_split(data, seed=0, setting="inductive", train_per_class=10, val_per_class=10)
    ind_targets = copy.copy(targets)
    ind_targets.split_fingerprint = ""  # the transductive teacher's outputs, as fixed targets
    cfg = DistillConfig(method="vqgraph", code_target=code_target)
    train = TrainConfig(max_epochs=15, patience=None, progress=False, lr=0.01, weight_decay=0.0)
    result = fit_student(data, split, ind_targets, StudentConfig(hidden_channels=16), cfg, train)
    soft_token = [row["loss/soft_token"] for row in result.history]
    assert soft_token[-1] < soft_token[0]  # the code term itself goes down
    if code_target == "class":  # hidden test nodes' and validation nodes' teacher outputs play no part
        cfg = replace(cfg, teacher_temperature=1.0)  # (the calibrated one is fitted on validation nodes)
        changed = copy.copy(ind_targets)
        changed.logits = ind_targets.logits.clone()
        unseen = torch.cat([split.test_ind_idx, split.val_idx])
        changed.logits[unseen] = torch.randn(unseen.numel(), changed.logits.size(1)) * 5
        mixes = [SetUp(t, cfg, data=data, split=split)["soft_token"].classes for t in (ind_targets, changed)]
        assert torch.equal(mixes[0], mixes[1])


@pytest.mark.parametrize("method", ["mlp", "vqgraph"])
def test_batch_norm_student_merges_a_one_row_last_batch(task, targets, method, monkeypatch):
    data, split = task
    fit_rows = split.train_idx.numel() if method == "mlp" else data.num_nodes
    train = TrainConfig(max_epochs=2, patience=None, progress=False, batch_size=fit_rows - 1)  # last batch: 1 row
    student = StudentConfig(hidden_channels=8, norm="batch")
    sizes, batches = [], distributed.global_batches

    def spy(items, batch_size, min_rows=1):
        out = batches(items, batch_size, min_rows)
        sizes.append([b.numel() for b in out])
        return out

    monkeypatch.setattr(distributed, "global_batches", spy)
    result = fit_student(data, split, targets, student, DistillConfig(method=method), train)
    assert sizes == [[fit_rows]] * 2  # each epoch: the one-row tail joined the batch before it
    assert len(result.history) == 2
    assert [b.numel() for b in batches(torch.arange(5), 2)] == [2, 2, 1]  # without batch norm it stays
    with pytest.raises(ValueError, match="batch size of at least 2.*batch size 1"):
        fit_student(data, split, targets, student, DistillConfig(method=method), replace(train, batch_size=1))


@pytest.fixture(scope="module", params=["transductive", "inductive"])
def val_disagrees(request):
    """Features carry the class; validation labels are shifted by one class (y + 1 mod C), so the
    better the student fits the features, the lower its val/acc and the higher its test/acc."""
    data = make_csbm(num_nodes=240, num_classes=3, num_features=8, feature_signal=2.0, seed=0)
    split = make_split(data, seed=0, setting=request.param, train_per_class=10, val_per_class=20)
    data = data.clone()
    data.y = data.y.clone()
    data.y[split.val_idx] = (data.y[split.val_idx] + 1) % data.num_classes
    return data, split, "test/acc" if request.param == "transductive" else "test_tran/acc"


def _accuracy(model, data, idx) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(data.x[idx]).logits.argmax(-1) == data.y[idx]).double().mean())


def _by_val_and_by_test(data, split, patience):
    train = TrainConfig(lr=0.01, weight_decay=0.0, max_epochs=30, patience=patience, progress=False, seed=0)
    student = StudentConfig(hidden_channels=16, dropout=0.0)
    return [fit_student(data, split, None, student, DistillConfig(method="mlp", select_by=by), train) for by in ("val", "test")]


def test_fit_student_selects_on_validation_when_validation_and_test_disagree(val_disagrees):
    data, split, test_key = val_disagrees
    by_val, by_test = _by_val_and_by_test(data, split, patience=None)
    assert by_val.history == by_test.history and len(by_val.history) == 30  # one trajectory, two choices
    history = by_val.history
    vals, tests = [h["val/acc"] for h in history], [h[test_key] for h in history]
    assert by_val.metrics["selected_by"] == "val/acc" and by_test.metrics["selected_by"] == test_key
    assert by_val.metrics["best_epoch"] == vals.index(max(vals))  # the first maximum of its own monitor
    assert by_test.metrics["best_epoch"] == tests.index(max(tests))
    assert by_val.metrics["best_epoch"] < by_test.metrics["best_epoch"]  # the construction separates them
    for result in (by_val, by_test):  # the reported metrics are the selected epoch's: rolled back
        for key in ("val/acc", test_key):
            assert result.metrics[key] == history[result.metrics["best_epoch"]][key], key
    assert by_val.metrics["val/acc"] > by_test.metrics["val/acc"]  # each protocol wins on its own set
    assert by_test.metrics[test_key] > by_val.metrics[test_key] + 0.1
    tran_idx = split.test_idx if test_key == "test/acc" else split.test_tran_idx
    for result in (by_val, by_test):  # the returned model reproduces its metrics from its own predictions
        assert _accuracy(result.model, data, split.val_idx) == pytest.approx(result.metrics["val/acc"], abs=1e-12)
        assert _accuracy(result.model, data, tran_idx) == pytest.approx(result.metrics[test_key], abs=1e-12)


def test_patience_counts_epochs_of_the_monitored_metric(val_disagrees):
    data, split, _ = val_disagrees
    by_val, by_test = _by_val_and_by_test(data, split, patience=3)
    assert len(by_val.history) == by_val.metrics["best_epoch"] + 1 + 3 == by_val.metrics["epochs"]
    assert len(by_test.history) > len(by_val.history)


def test_soft_labels_use_the_temperature_calibrated_on_validation(task, targets):
    data, split = task
    train = TrainConfig(max_epochs=2, patience=None, progress=False)
    calibrated = fit_student(data, split, targets, StudentConfig(hidden_channels=8), DistillConfig(method="glnn"), train)
    expected = calibrate_temperature(targets.logits[split.val_idx], data.y[split.val_idx])
    assert calibrated.metrics["targets/teacher_temperature"] == pytest.approx(expected)
    fixed = fit_student(data, split, targets, StudentConfig(hidden_channels=8), DistillConfig(method="glnn", teacher_temperature=2.0), train)
    assert fixed.metrics["targets/teacher_temperature"] == 2.0
    assert fixed.history[0]["loss/soft_label"] != calibrated.history[0]["loss/soft_label"]


def test_labels_of_non_training_nodes_never_reach_the_loss(task, targets):
    data, split = task
    other = data.clone()
    other.y = data.y.clone()
    rest = torch.cat([split.val_idx, split.test_idx])
    other.y[rest] = (other.y[rest] + 1) % data.num_classes
    targets = copy.copy(targets)
    targets.graph_fingerprint = ""  # the artifact would refuse the relabelled graph
    cfg = DistillConfig(method="vqgraph", teacher_temperature=1.0)  # no calibration on validation labels
    train = TrainConfig(max_epochs=3, patience=None, progress=False)
    a = fit_student(data, split, targets, StudentConfig(hidden_channels=8), cfg, train)
    b = fit_student(other, split, targets, StudentConfig(hidden_channels=8), cfg, train)
    keys = ("train/loss", "loss/label", "loss/soft_label", "loss/soft_token")
    assert [[h[k] for k in keys] for h in a.history] == [[h[k] for k in keys] for h in b.history]
    for (name, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), name  # the same student, whatever the other nodes' labels


def test_inductive_student_never_sees_hidden_nodes(task, targets):
    data, _ = task
    split = make_split(data, seed=0, setting="inductive", train_per_class=10, val_per_class=10)
    cfg = TeacherConfig(hidden_channels=16, codebook_size=32)
    ind_targets = fit_teacher(data, split, cfg, TrainConfig(max_epochs=5, progress=False)).targets
    train = TrainConfig(max_epochs=5, patience=None, progress=False)
    noisy = data.clone()
    noisy.x = data.x.clone()
    noisy.x[split.test_ind_idx] = torch.randn(split.test_ind_idx.numel(), data.num_features) * 10
    a = fit_student(data, split, ind_targets, StudentConfig(hidden_channels=8), DistillConfig(), train)
    with pytest.raises(ValueError, match="another graph"):  # the artifact notices the changed features
        fit_student(noisy, split, ind_targets, StudentConfig(hidden_channels=8), DistillConfig(), train)
    ind_targets.graph_fingerprint = ""  # ... so switch the check off to test the student itself
    b = fit_student(noisy, split, ind_targets, StudentConfig(hidden_channels=8), DistillConfig(), train)
    for (ka, va), (_, vb) in zip(a.model.state_dict().items(), b.model.state_dict().items()):
        assert torch.equal(va, vb), ka
    for key, idx in (("val", split.val_idx), ("test_tran", split.test_tran_idx), ("test_ind", split.test_ind_idx)):
        assert a.metrics[f"{key}/acc"] == pytest.approx(_accuracy(a.model, data, idx), abs=1e-12), key
    expected = 0.8 * a.metrics["test_tran/acc"] + 0.2 * a.metrics["test_ind/acc"]
    assert a.metrics["test_prod/acc"] == pytest.approx(expected)


def test_mismatched_targets_are_refused(task, targets):
    data, split = task
    other = make_split(data, seed=1, train_per_class=10, val_per_class=10)
    with pytest.raises(ValueError, match="another split"):
        fit_student(data, other, targets, StudentConfig(hidden_channels=8), DistillConfig(), TrainConfig(max_epochs=1))


def test_a_method_without_a_weighted_loss_term_is_refused(task, tmp_path):
    from vqgraph.app.config import ExperimentConfig
    from vqgraph.errors import ConfigError

    data, split = task
    DistillConfig(method="glnn", label_weight=0.0).check_learns()  # soft labels alone: fine
    with pytest.raises(ValueError, match="'mlp' has no loss term"):
        fit_student(data, split, None, StudentConfig(), DistillConfig(method="mlp", label_weight=0.0))
    with pytest.raises(ConfigError, match="'vqgraph' has no loss term"):
        ExperimentConfig.from_preset("cora", overrides=["distill.label_weight=0", "distill.soft_label_weight=0",
                                                        "distill.soft_token_weight=0"])
    # the check is on the complete config: a method block may undo what the shared block set
    preset = tmp_path / "p.yaml"
    preset.write_text("gcn:\n  distill:\n    label_weight: 0\n  mlp:\n    distill:\n      label_weight: 1\n")
    assert ExperimentConfig.from_preset("cora", "gcn", "mlp", preset=preset).distill.label_weight == 1
    with pytest.raises(ConfigError, match="method must be one of"):
        ExperimentConfig.from_preset("cora", "gcn", "mlpp")


def test_every_student_parameter_gets_a_gradient_with_the_code_term_alone(task, targets):
    data, split = task
    cfg = DistillConfig(method="vqgraph", label_weight=0.0, soft_label_weight=0.0)  # the classifier is in no term
    train = TrainConfig(max_epochs=2, patience=None, progress=False, weight_decay=0.1)
    result = fit_student(data, split, targets, StudentConfig(hidden_channels=8), cfg, train)
    assert all(p.grad is not None for p in result.model.parameters())  # DDP expects them; decay reaches all
    assert result.history[0]["loss/label"] == 0.0 and result.history[0]["loss/soft_token"] > 0


def test_student_rejects_wrong_feature_width():
    model = MLPStudent(16, 3, StudentConfig(hidden_channels=8))
    with pytest.raises(ValueError, match=r"\[batch, 16\]"):
        model(torch.zeros(4, 15))


def test_config_overrides_parse_lists_and_reject_bad_values():
    from vqgraph.app.config import ExperimentConfig
    from vqgraph.errors import ConfigError

    config = ExperimentConfig().with_overrides(["train.fanouts=5,5", "train.batch_size=none"])
    assert config.train.fanouts == (5, 5) and config.train.batch_size is None
    assert config.student_train == ExperimentConfig().student_train  # one section changed, not the other
    for bad, key in [("train.fanouts=5,x", "train.fanouts"), ("train.lr=fast", "train.lr"), ("train.fanouts=0", "fanouts"),
                     ("trian.lr=0.1", "trian"), ("train.lrr=0.1", "train.lrr"),
                     ("data.val_split=thirds", "val_split must be one of"),
                     ("data.feature_norm=l2", "feature_norm must be one of"), ("data.test_ind_ratio=1.5", "test_ind_ratio"),
                     ("data.train_per_class=0", r"data\.train_per_class must be >= 1, got 0")]:
        with pytest.raises(ConfigError, match=key):
            config.with_overrides([bad])


def test_sparse_features_train_the_same_student_as_dense_ones():
    from vqgraph.data.sparse import SparseRows, use_sparse

    data = make_csbm(num_nodes=400, num_classes=3, num_edges=1200, num_features=300, feature_density=0.03, seed=0)
    split = make_split(data, seed=0, train_per_class=10, val_per_class=10)
    assert use_sparse("auto", data.x) and not use_sparse("auto", torch.randn(10, 5)) and use_sparse("on", torch.ones(2, 2))
    targets = fit_teacher(data, split, TeacherConfig(hidden_channels=16, codebook_size=16),
                          TrainConfig(max_epochs=5, progress=False)).targets
    train = TrainConfig(max_epochs=8, patience=None, progress=False, lr=0.01, weight_decay=0.0, batch_size=128)
    runs = {}
    for form in ("on", "off"):
        student = StudentConfig(hidden_channels=16, norm="batch", sparse_input=form)
        runs[form] = fit_student(data, split, targets, student, DistillConfig(method="vqgraph"), train)
    sparse, dense = runs["on"].history, runs["off"].history
    for a, b in zip(sparse, dense):  # the same batches and the same function: only float rounding differs
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
    assert runs["on"].metrics["val/acc"] == pytest.approx(runs["off"].metrics["val/acc"], abs=0.05)
    rows = SparseRows.from_dense(data.x)  # row batches in any order, and slices, are the dense rows
    idx = torch.tensor([5, 399, 0, 5])
    assert torch.equal(rows[idx].to_dense(), data.x[idx]) and torch.equal(rows[10:20].to_dense(), data.x[10:20])
    with pytest.raises(ValueError, match="slices of consecutive rows"):
        rows[::2]
    # input dropout and the adversarial term (dense perturbations) also run on sparse features
    student = StudentConfig(hidden_channels=16, norm="batch", sparse_input="on", input_dropout=0.2)
    adversarial = DistillConfig(method="glnn", adversarial_weight=0.1, adversarial_eps=0.3)
    result = fit_student(data, split, targets, student, adversarial, replace(train, max_epochs=3))
    assert all(math.isfinite(row["train/loss"]) for row in result.history)
    with pytest.raises(ValueError, match="sparse_input must be one of"):
        StudentConfig(sparse_input="yes")


def test_smoothed_soft_labels_by_hand():
    # a path 0 - 1 - 2; node 2 is uncertain (reliability 0), node 3 is isolated
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.5, 0.5], [0.3, 0.7]])
    edge_index = torch.tensor([[0, 1, 1, 2], [1, 0, 2, 1]])
    rel = lambda p: 1 - float(-(p * p.log()).sum()) / math.log(2)  # noqa: E731
    out = smooth_soft_labels(probs, edge_index, hops=1, alpha=0.4)
    # node 1's neighbours are 0 and 2; node 2 is flat, so only node 0 counts
    assert torch.allclose(out[1], 0.6 * probs[1] + 0.4 * probs[0], atol=1e-6)
    # node 0 hears node 1 alone; node 2 hears node 1 alone; node 3 keeps its row
    assert torch.allclose(out[0], 0.6 * probs[0] + 0.4 * probs[1], atol=1e-6)
    assert torch.allclose(out[3], probs[3], atol=1e-6)
    # two hops: the second round averages the first round's rows with the same reliability weights
    two = smooth_soft_labels(probs, edge_index, hops=2, alpha=0.4)
    w0, w2 = rel(probs[0]), rel(probs[2])
    assert w2 == pytest.approx(0.0, abs=1e-6)
    mean1 = (w0 * out[0] + w2 * out[2]) / (w0 + w2)
    assert torch.allclose(two[1], 0.6 * probs[1] + 0.4 * mean1, atol=1e-6)
    assert torch.allclose(two.sum(-1), torch.ones(4), atol=1e-6)
    # labelled rows enter as their one-hot labels and spread to their neighbours
    labelled = torch.tensor([False, True, False, False])
    with_labels = smooth_soft_labels(probs, edge_index, 1, 0.4, torch.tensor([0, 0, 1, 1]), labelled)
    assert torch.allclose(with_labels[0], 0.6 * probs[0] + 0.4 * torch.tensor([1.0, 0.0]), atol=1e-6)
    assert torch.equal(smooth_soft_labels(probs, edge_index, 0, 0.4), probs)


def test_smoothing_reaches_the_soft_label_term_and_sees_only_observed_edges(task, targets):
    data, _ = task
    split = make_split(data, seed=0, setting="inductive", train_per_class=10, val_per_class=10)
    cfg = TeacherConfig(hidden_channels=16, codebook_size=32)
    ind = fit_teacher(data, split, cfg, TrainConfig(max_epochs=3, progress=False)).targets
    smooth = DistillConfig(method="glnn", teacher_temperature=1.0, smooth_hops=2, smooth_alpha=0.5)
    smoothed = SetUp(ind, smooth, data=data, split=split)
    probs = ind.logits.softmax(-1)
    edges = split.observed_edges(data.edge_index)
    hidden = torch.zeros(data.num_nodes, dtype=torch.bool)
    hidden[split.test_ind_idx] = True
    assert edges.size(1) < data.edge_index.size(1) and not bool(hidden[edges].any())
    idx = torch.arange(data.num_nodes)
    assert torch.allclose(smoothed.teacher.probs(idx), smooth_soft_labels(probs, edges, 2, 0.5), atol=1e-6)
    plain = SetUp(ind, replace(smooth, smooth_hops=0), data=data, split=split)
    assert torch.allclose(plain.teacher.probs(idx), probs, atol=1e-6)
    # the hidden nodes' features and edges cannot change what the student trains on
    moved = data.clone()
    k = min(split.test_ind_idx.numel(), split.train_idx.numel())
    extra = torch.stack([split.test_ind_idx[:k], split.train_idx[:k]])
    moved.edge_index = torch.cat([data.edge_index, extra, extra.flip(0)], 1)
    ind_moved = copy.copy(ind)
    ind_moved.graph_fingerprint = ""
    other = SetUp(ind_moved, smooth, data=moved, split=split)
    assert torch.equal(other.teacher.probs(idx), smoothed.teacher.probs(idx))
    with pytest.raises(ValueError, match="smooth_alpha"):
        DistillConfig(smooth_alpha=1.5)


def test_halved_validation_selects_the_teacher_on_its_half_and_the_student_on_the_other(task):
    data, shared = task
    split = shared.halve_validation(data.y)
    own, rest = split.for_teacher().val_idx, split.for_student().val_idx
    teacher = fit_teacher(data, split, TeacherConfig(hidden_channels=16, codebook_size=32),
                          TrainConfig(max_epochs=15, progress=False))
    hits = teacher.targets.logits.argmax(-1) == data.y
    assert teacher.metrics["val/acc"] == pytest.approx(float(hits[own].double().mean()))
    assert teacher.metrics["val_student/acc"] == pytest.approx(float(hits[rest].double().mean()))
    assert [h["val/acc"] for h in teacher.history][teacher.metrics["best_epoch"]] == teacher.metrics["val/acc"]
    train = TrainConfig(max_epochs=5, patience=None, progress=False)
    student = fit_student(data, split, teacher.targets, StudentConfig(hidden_channels=8), DistillConfig(method="glnn"), train)
    assert _accuracy(student.model, data, rest) == pytest.approx(student.metrics["val/acc"], abs=1e-12)
    expected = calibrate_temperature(teacher.targets.logits[own], data.y[own])  # calibrated on the teacher's half
    assert student.metrics["targets/teacher_temperature"] == pytest.approx(expected)
    with pytest.raises(Exception, match="another split"):  # targets of the shared split are not these
        fit_student(data, shared, teacher.targets, StudentConfig(hidden_channels=8), DistillConfig(method="glnn"), train)


def test_a_linear_student_trains_and_a_projecting_one_needs_a_hidden_layer(task, targets):
    from vqgraph.app.config import ExperimentConfig
    from vqgraph.errors import ConfigError

    data, split = task
    train = TrainConfig(max_epochs=30, patience=None, progress=False, lr=0.05)
    linear = fit_student(data, split, targets, StudentConfig(num_layers=1), DistillConfig(method="glnn"), train)
    assert not linear.model.layers and linear.model.classifier.in_features == data.num_features
    assert linear.metrics["val/acc"] > 0.6  # three well-separated classes
    with pytest.raises(ValueError, match="needs num_layers >= 2"):
        MLPStudent(16, 3, StudentConfig(num_layers=1), code_dim=8)
    with pytest.raises(ConfigError, match="student.num_layers=1: method 'vqgraph' projects"):
        ExperimentConfig.from_preset("cora", "gcn", "vqgraph", ["student.num_layers=1"])
    assert ExperimentConfig.from_preset("cora", "gcn", "mlp", ["student.num_layers=1"]).student.num_layers == 1


def test_linear_logsumexp_is_torchs_with_the_same_gradients():
    from vqgraph.losses import linear_logsumexp

    torch.manual_seed(0)
    x = torch.randn(6, 5, dtype=torch.double, requires_grad=True)
    weight = (torch.randn(40, 5, dtype=torch.double) * 8).requires_grad_(True)  # spread: the max shift matters
    bias = torch.randn(40, dtype=torch.double, requires_grad=True)
    reference = torch.logsumexp(x @ weight.t() + bias, dim=-1)
    assert torch.allclose(linear_logsumexp(x, weight, bias), reference)
    assert torch.autograd.gradcheck(linear_logsumexp, (x, weight, bias))
    assert torch.autograd.gradcheck(lambda a, w: linear_logsumexp(a, w), (x, weight))
    row_weights = torch.randn(6, dtype=torch.double)
    ours = torch.autograd.grad((linear_logsumexp(x, weight, bias) * row_weights).sum(), (x, weight, bias))
    theirs = torch.autograd.grad((reference * row_weights).sum(), (x, weight, bias))
    assert all(torch.allclose(a, b) for a, b in zip(ours, theirs))


def test_score_buffer_is_reused_between_steps_and_never_read_stale():
    from vqgraph.losses import ScoreBuffer, linear_logsumexp

    torch.manual_seed(0)
    weight = torch.randn(30, 4)
    buffer = ScoreBuffer()
    x = torch.randn(8, 4, requires_grad=True)
    (expected,) = torch.autograd.grad(torch.logsumexp(x @ weight.t(), -1).sum(), x)
    first = linear_logsumexp(x, weight, None, buffer)
    assert buffer.lent
    address = buffer._data.data_ptr()
    while_lent = linear_logsumexp(x, weight, None, buffer)  # a second graph before the first's backward
    assert buffer._data.data_ptr() == address  # the buffer stays the first graph's (the second allocated)
    for out in (first, while_lent):
        (got,) = torch.autograd.grad(out.sum(), x, retain_graph=out is first)
        assert torch.allclose(got, expected, atol=1e-6)
    assert not buffer.lent  # given back by the first graph's backward
    second = linear_logsumexp(x[:5] * 2, weight, None, buffer)  # fewer rows: the same memory
    assert buffer._data.data_ptr() == address and buffer.lent
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        torch.autograd.grad(first.sum(), x)  # its scores were overwritten: refused, not read
    assert buffer.lent  # still the second graph's
    second.sum().backward()
    with torch.no_grad():
        linear_logsumexp(x, weight, None, buffer)
    assert not buffer.lent  # nothing to keep for a backward pass
    dropped = linear_logsumexp(x, weight, None, buffer)
    assert buffer.lent
    del dropped  # its graph freed without a backward pass
    assert not buffer.lent
    linear_logsumexp(x, weight, None, buffer).sum().backward()
    assert buffer._data.data_ptr() == address and not buffer.lent


def test_sparse_linear_has_the_dense_layers_gradients():
    from vqgraph.data.sparse import to_csr, sparse_linear

    torch.manual_seed(0)
    dense = (torch.rand(50, 300) < 0.03).float() * torch.rand(50, 300)
    dense[7] = 0.0  # a row without any stored entry
    layer = torch.nn.Linear(300, 16)
    out = sparse_linear(to_csr(dense), layer.weight, layer.bias)
    grad = torch.randn(50, 16)
    weight_grad, bias_grad = torch.autograd.grad((out * grad).sum(), [layer.weight, layer.bias])
    ref = layer(dense)
    ref_weight, ref_bias = torch.autograd.grad((ref * grad).sum(), [layer.weight, layer.bias])
    assert torch.allclose(out, ref, atol=1e-5)
    assert torch.allclose(weight_grad, ref_weight, atol=1e-5) and torch.allclose(bias_grad, ref_bias, atol=1e-5)
