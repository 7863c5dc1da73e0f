"""Teacher training (full-batch and mini-batch), inductive isolation, determinism, model selection,
the teacher-targets artifact and codebook statistics."""

from __future__ import annotations

import copy
import math
import os
import warnings

import pytest
import torch

import vqgraph.data.sampling
from vqgraph.data import build_graph, make_csbm, make_split
from vqgraph.data.sampling import NeighborSampler
from vqgraph.losses import code_logits
from vqgraph.models import TeacherConfig, VQGraphTeacher, prepare_adjacency
from vqgraph.errors import ArtifactMismatchError
from vqgraph.targets import TeacherTargets, graph_fingerprint, node_outputs
from vqgraph.training import BestCheckpoint, TrainConfig, codebook_stats, fit_teacher
from vqgraph.training.teacher import inner_rows

TIMING_KEYS = {"train_s", "epoch_s"}


@pytest.fixture(scope="module")
def graph():
    return make_csbm(num_nodes=300, num_classes=3, avg_degree=8, num_features=16, seed=0, name="csbm-test")


@pytest.fixture(scope="module")
def split(graph):
    return make_split(graph, seed=0)


@pytest.fixture(scope="module")
def ind_split(graph):
    return make_split(graph, seed=0, setting="inductive")


def teacher_config(**overrides):
    kwargs = dict(hidden_channels=16, codebook_size=32)
    kwargs.update(overrides)
    return TeacherConfig(**kwargs)


def train_config(**overrides):
    kwargs = dict(lr=0.01, max_epochs=10, patience=None, progress=False, seed=0)
    kwargs.update(overrides)
    return TrainConfig(**kwargs)


def without_timings(metrics):
    return {k: v for k, v in metrics.items() if k not in TIMING_KEYS}


def same_floats(a: dict, b: dict) -> bool:
    """Equal key sets and values, NaN equal to NaN."""
    if a.keys() != b.keys():
        return False
    return all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)) for x, y in zip(a.values(), (b[k] for k in a)))


def assert_same_state(model_a, model_b):
    sa, sb = model_a.state_dict(), model_b.state_dict()
    assert sa.keys() == sb.keys()
    different = [k for k in sa if not torch.equal(sa[k], sb[k])]
    assert not different, f"state differs in {different}"


@pytest.fixture
def pure_torch_sampler(monkeypatch):
    """Force the pure-torch sampler (even if pyg-lib appears) and count its calls."""
    monkeypatch.setattr(vqgraph.data.sampling, "pyg_sampler_available", lambda: False)
    calls = []
    original = NeighborSampler.sample

    def spy(self, seeds, generator=None, **kwargs):
        calls.append(seeds.numel())
        return original(self, seeds, generator, **kwargs)

    monkeypatch.setattr(NeighborSampler, "sample", spy)
    return calls


# ---- the loss falls -----------------------------------------------------------------------------
def test_full_batch_loss_falls(graph, split):
    result = fit_teacher(graph, split, teacher_config(), train_config(max_epochs=30))
    history = result.history
    assert len(history) == 30 and result.metrics["epochs"] == 30
    assert history[0]["train/loss"] > history[-1]["train/loss"]
    assert {"train/loss", "loss/ce", "loss/commit", "loss/feature_recon", "loss/edge_recon", "train/acc", "val/acc",
            "codebook/used_frac", "codebook/perplexity"} <= history[0].keys()
    assert history[-1]["loss/commit"] > 0 and history[-1]["loss/edge_recon"] > 0
    # the teacher learned something: better than chance (3 classes) on the test nodes
    assert result.metrics["test/acc"] > 0.5


def test_mini_batch_uses_pure_torch_sampler(graph, split, pure_torch_sampler):
    epochs = 20
    result = fit_teacher(graph, split, teacher_config(), train_config(max_epochs=epochs, batch_size=32, fanouts=(5, 5)))
    num_train = split.train_idx.numel()
    per_epoch = math.ceil(num_train / 32)
    assert len(pure_torch_sampler) == epochs * per_epoch
    assert sum(pure_torch_sampler) == epochs * num_train
    history = result.history
    assert len(history) == epochs
    assert all(math.isfinite(h["train/loss"]) for h in history)
    assert history[0]["train/loss"] > history[-1]["train/loss"]
    assert result.metrics["test/acc"] > 0.5
    assert result.targets.num_nodes == graph.num_nodes


def test_inner_tokenizer_gives_the_seeds_the_same_logits_and_codes(graph):
    # evaluation mode, classifier on the decoded codes: the seeds read only their 1-hop rows, so
    # tokenizing the seeds and their sampled 1-hop neighbours alone changes nothing at the seeds
    batcher = vqgraph.data.sampling.NeighborBatcher(graph, [4, 3], 16, use_pyg=False)
    b = batcher.sample(torch.arange(16), torch.Generator().manual_seed(0))
    inner = inner_rows(b)
    assert b.num_sampled_nodes[0] == 16 and 16 < inner < b.num_nodes  # a third group exists to leave out
    torch.manual_seed(0)
    model = VQGraphTeacher(graph.num_features, 3, teacher_config(conv="sage", classify_from="quantized")).eval()
    adj = prepare_adjacency("sage", b.edge_index, b.num_nodes)
    full = model(b.x, adj, b.edge_index, b.batch_size)
    part = model(b.x, adj, b.edge_index, b.batch_size, num_tokenized=inner)
    assert torch.allclose(full.logits, part.logits, atol=1e-6)
    assert torch.equal(full.codes, part.codes) and torch.allclose(full.z, part.z, atol=1e-6)
    everything = model(b.x, adj, b.edge_index)  # all rows out: the left-out rows carry no code
    some = model(b.x, adj, b.edge_index, num_tokenized=inner)
    assert (some.codes[inner:] == -1).all() and torch.equal(some.codes[:inner], everything.codes[:inner])


def test_inner_tokenizer_trains_on_the_inner_rows_only(graph, split, monkeypatch):
    import vqgraph.models.teacher as teacher_module

    seen = []
    original = teacher_module.edge_recon_sampled

    def spy(s, edge_index, num_nodes, *args):
        seen.append((s.size(0), num_nodes, int(edge_index.max()) if edge_index.numel() else -1))
        return original(s, edge_index, num_nodes, *args)

    monkeypatch.setattr(teacher_module, "edge_recon_sampled", spy)
    train = train_config(max_epochs=6, batch_size=32, fanouts=(5, 5))
    inner = fit_teacher(graph, split, teacher_config(conv="sage", tokenize="inner"), train)
    assert seen and all(rows == n and top < n for rows, n, top in seen)  # decoded rows = the pairs' node range
    inner_sizes, seen[:] = [n for _, n, _ in seen], []
    every = fit_teacher(graph, split, teacher_config(conv="sage", tokenize="all"), train)
    assert all(a < b for a, b in zip(inner_sizes, (n for _, n, _ in seen)))  # fewer rows than the whole subgraph
    assert inner.history[-1]["train/loss"] < inner.history[0]["train/loss"]
    assert inner.history != every.history  # the option acts in mini-batch training ...
    full = [fit_teacher(graph, split, teacher_config(tokenize=form), train_config(max_epochs=4)) for form in ("inner", "all")]
    assert full[0].history == full[1].history  # ... and full-batch training is unchanged


def test_unknown_tokenize_form_is_refused():
    assert TeacherConfig().tokenize == "inner"  # the cheaper form is the default (docs/distributed.md)
    with pytest.raises(ValueError, match="tokenize must be one of"):
        TeacherConfig(tokenize="seeds")


# ---- inductive isolation ------------------------------------------------------------------------
def hide_differently(graph, split):
    """The same graph, except that the hidden (test_ind) nodes get noise features, shuffled labels
    and extra edges to observed nodes: nothing training may see changes."""
    hidden = split.test_ind_idx
    gen = torch.Generator().manual_seed(123)
    x = graph.x.clone()
    x[hidden] = 5 * torch.randn(hidden.numel(), graph.num_features, generator=gen)
    y = graph.y.clone()
    y[hidden] = y[hidden][torch.randperm(hidden.numel(), generator=gen)]
    observed = split.observed_idx
    extra = torch.stack([hidden, observed[torch.randint(observed.numel(), (hidden.numel(),), generator=gen)]])
    edges = torch.cat([graph.edge_index, extra], 1)
    return build_graph(x, edges, y, name=graph.name, num_classes=graph.num_classes)


@pytest.mark.parametrize("batch_size", [None, 32], ids=["full-batch", "mini-batch"])
def test_inductive_training_never_sees_hidden_nodes(graph, ind_split, batch_size, pure_torch_sampler):
    assert ind_split.test_ind_idx.numel() > 0
    other = hide_differently(graph, ind_split)
    assert other.num_edges > graph.num_edges
    cfg, train = teacher_config(), train_config(max_epochs=8, batch_size=batch_size, fanouts=(5, 5))
    first = fit_teacher(graph, ind_split, cfg, train)
    second = fit_teacher(other, ind_split, cfg, train)
    if batch_size is not None:
        assert pure_torch_sampler, "mini-batch training sampled nothing"

    assert_same_state(first.model, second.model)
    assert first.history == second.history
    hidden = ind_split.test_ind_idx
    observed = ind_split.observed_idx
    for key in ("logits", "z", "codes"):
        assert torch.equal(getattr(first.targets, key)[observed], getattr(second.targets, key)[observed])
    assert torch.equal(first.targets.codebook, second.targets.codebook)
    # hidden nodes are encoded on the full graph after training: their outputs must differ
    assert not torch.equal(first.targets.logits[hidden], second.targets.logits[hidden])
    assert not torch.equal(first.targets.z[hidden], second.targets.z[hidden])
    m1, m2 = without_timings(first.metrics), without_timings(second.metrics)
    for key in ("train/acc", "val/acc", "test_tran/acc", "best_epoch", "epochs"):
        assert m1[key] == m2[key], key


# ---- determinism --------------------------------------------------------------------------------
@pytest.mark.parametrize("batch_size", [None, 32], ids=["full-batch", "mini-batch"])
def test_same_seed_same_run_other_seed_differs(graph, split, batch_size):
    cfg = teacher_config()
    runs = [fit_teacher(graph, split, cfg, train_config(max_epochs=6, batch_size=batch_size, seed=s)) for s in (0, 0, 1)]
    a, b, c = runs
    assert same_floats(without_timings(a.metrics), without_timings(b.metrics))
    assert a.history == b.history
    assert_same_state(a.model, b.model)
    assert torch.equal(a.targets.logits, b.targets.logits)
    assert [h["train/loss"] for h in a.history] != [h["train/loss"] for h in c.history]
    assert not torch.equal(a.targets.logits, c.targets.logits)


# ---- model selection ----------------------------------------------------------------------------
def test_best_checkpoint_keeps_first_maximum_and_stops():
    best = BestCheckpoint("val/acc", patience=2)
    stops = [best.update(epoch, {"val/acc": v, "test/acc": 1.0 - v}) for epoch, v in enumerate([0.1, 0.5, 0.3, 0.5, 0.2])]
    assert best.best_epoch == 1 and best.best_value == 0.5
    assert stops == [False, False, False, True, True]
    with pytest.raises(KeyError, match="val/acc"):
        best.update(5, {"train/acc": 1.0})


@pytest.mark.parametrize("signal", [1.0, 2.0])
def test_best_epoch_is_first_argmax_of_validation_accuracy(monkeypatch, signal):
    import vqgraph.training.teacher as training

    # two data sets: on the easier one validation accuracy plateaus (epochs tie for the maximum),
    # on the harder one the best validation and the best training epochs differ
    graph = make_csbm(num_nodes=300, num_classes=3, avg_degree=8, num_features=16, feature_signal=signal, seed=0)
    split = make_split(graph, seed=0)

    models, snapshots = [], []

    def make_model(*args, **kwargs):
        models.append(VQGraphTeacher(*args, **kwargs))
        return models[-1]

    def log(metrics, epoch):  # the state every epoch ends with
        assert epoch == len(snapshots)
        snapshots.append(copy.deepcopy(models[0].state_dict()))

    monkeypatch.setattr(training, "VQGraphTeacher", make_model)
    result = fit_teacher(graph, split, teacher_config(), train_config(max_epochs=14, lr=0.05), log=log)

    history = result.history
    vals = [h["val/acc"] for h in history]
    best = vals.index(max(vals))  # the first maximum
    assert result.metrics["best_epoch"] == best
    assert len(snapshots) == len(history) == 14
    # the returned model holds the best epoch's state (parameters and codebook buffers)
    assert result.model is models[0]
    state = result.model.state_dict()
    assert all(torch.equal(state[k], snapshots[best][k]) for k in state)
    assert best < len(history) - 1, "the test needs a run whose best epoch is not its last"
    assert not all(torch.equal(state[k], snapshots[-1][k]) for k in state)  # the state really was rolled back
    # and its validation accuracy is the recorded one
    assert result.metrics["val/acc"] == vals[best]


def test_patience_stops_after_no_improvement(graph, split):
    result = fit_teacher(graph, split, teacher_config(), train_config(max_epochs=200, lr=0.05, patience=3))
    vals = [h["val/acc"] for h in result.history]
    best = result.metrics["best_epoch"]
    assert len(vals) == best + 1 + 3 < 200
    assert all(v <= vals[best] for v in vals[best + 1 :])


# ---- teacher targets ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ind_result(graph, ind_split):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
        return fit_teacher(graph, ind_split, teacher_config(), train_config(max_epochs=6))


def test_targets_rows_by_global_id(graph, ind_split, ind_result):
    targets, model = ind_result.targets, ind_result.model
    n = graph.num_nodes
    assert targets.logits.shape == (n, graph.num_classes)
    assert targets.z.shape == (n, model.code_dim)
    assert targets.codes.shape == (n,) and targets.codes.dtype == torch.long
    assert targets.codebook.shape == (32, model.code_dim)
    assert targets.num_nodes == n and targets.setting == "inductive" and targets.metric == "cosine"
    assert targets.dataset == graph.name
    # observed nodes from the observed graph, placed at their global ids; hidden ones from the full graph
    model.eval()
    observed_graph = ind_split.observed_graph(graph)
    with torch.no_grad():
        obs = model(observed_graph.x, prepare_adjacency("gcn", observed_graph.edge_index, observed_graph.num_nodes))
        full = model(graph.x, prepare_adjacency("gcn", graph.edge_index, n))
    observed, hidden = ind_split.observed_idx, ind_split.test_ind_idx
    assert torch.equal(observed_graph.n_id, observed)
    assert torch.allclose(targets.logits[observed], obs.logits)
    assert torch.equal(targets.codes[observed], obs.codes)
    assert torch.allclose(targets.logits[hidden], full.logits[hidden])
    assert torch.equal(targets.codes[hidden], full.codes[hidden])
    # observed nodes do see a different graph than in the full one (else the check above is empty)
    assert not torch.allclose(obs.logits, full.logits[observed])
    # the hand-over invariant: codes are the argmax of code_logits(z, codebook)
    assert torch.equal(code_logits(targets.z, targets.codebook, targets.metric).argmax(-1), targets.codes)
    assert torch.equal(targets.codebook, model.codebook)
    # metrics come from these targets
    acc = float((targets.logits[hidden].argmax(-1) == graph.y[hidden]).float().mean())
    assert ind_result.metrics["test_ind/acc"] == pytest.approx(acc)
    assert {"train/acc", "val/acc", "test_tran/acc", "test_ind/acc"} <= ind_result.metrics.keys()


def test_targets_save_load_round_trip(tmp_path, graph, ind_split, ind_result):
    targets = ind_result.targets
    path = targets.save(tmp_path / "sub" / "teacher.pt")
    assert path == tmp_path / "sub" / "teacher.pt"
    loaded = TeacherTargets.load(path)
    for key in ("logits", "z", "codes", "codebook"):
        assert torch.equal(getattr(loaded, key), getattr(targets, key)), key
    for key in ("metric", "config", "graph_fingerprint", "split_fingerprint", "setting", "dataset"):
        assert getattr(loaded, key) == getattr(targets, key), key
    assert same_floats(loaded.metrics, targets.metrics)
    assert loaded.config["teacher"]["codebook_size"] == 32
    loaded.check_matches(graph, ind_split)
    assert sorted(os.listdir(tmp_path / "sub")) == ["teacher.pt"]


def test_targets_without_tokenizer_round_trip(tmp_path, graph, split):
    result = fit_teacher(graph, split, teacher_config(use_tokenizer=False), train_config(max_epochs=2))
    targets = result.targets
    assert targets.codebook is None and bool((targets.codes == -1).all())
    loaded = TeacherTargets.load(targets.save(tmp_path / "plain.pt"))
    assert loaded.codebook is None and torch.equal(loaded.logits, targets.logits)
    assert "codebook/used_frac" not in result.metrics


def test_load_rejects_other_format_version(tmp_path, ind_result):
    path = ind_result.targets.save(tmp_path / "teacher.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = payload["format_version"] + 1
    torch.save(payload, path)
    with pytest.raises(ArtifactMismatchError, match="format version"):
        TeacherTargets.load(path)


def test_load_rejects_unreadable_and_missing(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ArtifactMismatchError):
        TeacherTargets.load(bad)
    with pytest.raises(FileNotFoundError):
        TeacherTargets.load(tmp_path / "missing.pt")


def test_check_matches(graph, ind_split, ind_result):
    targets = ind_result.targets
    targets.check_matches(graph, ind_split)  # the right graph and split: no error
    # the same nodes, features and labels but one undirected edge fewer
    u, v = graph.edge_index[:, 0].tolist()
    row, col = graph.edge_index
    keep = ~(((row == u) & (col == v)) | ((row == v) & (col == u)))
    fewer = build_graph(graph.x, graph.edge_index[:, keep], graph.y, name=graph.name, num_classes=graph.num_classes)
    assert fewer.num_nodes == graph.num_nodes and fewer.num_edges < graph.num_edges
    assert graph_fingerprint(fewer) != graph_fingerprint(graph)
    with pytest.raises(ArtifactMismatchError, match="another graph"):
        targets.check_matches(fewer)
    with pytest.raises(ArtifactMismatchError, match="rows"):
        targets.check_matches(make_csbm(num_nodes=301, num_classes=3, num_features=16, seed=0))
    # another split of the same graph: another seed, or the transductive one
    for other in (make_split(graph, seed=1, setting="inductive"), make_split(graph, seed=0)):
        with pytest.raises(ArtifactMismatchError, match="another split"):
            targets.check_matches(graph, other)


def test_save_is_atomic(tmp_path, monkeypatch, ind_result):
    targets = ind_result.targets
    path = tmp_path / "teacher.pt"

    def broken_save(obj, f, *args, **kwargs):
        f.write(b"half a file")  # the temporary file the atomic save writes through
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        targets.save(path)
    assert not path.exists()
    assert os.listdir(tmp_path) == []
    monkeypatch.undo()

    # a failed overwrite keeps the previous artifact intact
    targets.save(path)
    assert os.listdir(tmp_path) == ["teacher.pt"]
    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        targets.save(path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["teacher.pt"]
    assert torch.equal(TeacherTargets.load(path).logits, targets.logits)


def test_the_targets_come_complete_with_what_the_caller_records(graph, split):
    result = fit_teacher(graph, split, teacher_config(), train_config(max_epochs=2), record={"data": {"norm": "row"}})
    targets = result.targets
    assert list(targets.config) == ["teacher", "train", "data"] and targets.config["data"] == {"norm": "row"}
    assert targets.config["teacher"] == teacher_config().to_dict()
    assert targets.metrics == result.metrics and targets.dataset == "csbm-test"
    assert targets.split_fingerprint == split.fingerprint() and targets.setting == "transductive"


def test_node_outputs_match_fit(graph, ind_split, ind_result):
    again = node_outputs(ind_result.model, graph, ind_split)
    assert torch.equal(again.logits, ind_result.targets.logits)
    assert torch.equal(again.codes, ind_result.targets.codes)
    assert ind_result.targets.split_fingerprint == ind_split.fingerprint()
    assert ind_result.targets.graph_fingerprint == graph_fingerprint(graph)


# ---- codebook statistics ------------------------------------------------------------------------
def test_codebook_stats_by_hand():
    # usage 2, 1, 1 of 8 codes (the -1 is ignored): p = (1/2, 1/4, 1/4), H = 1.5 ln 2, exp(H) = 2^1.5
    stats = codebook_stats(torch.tensor([0, 0, 3, 5, -1]), 8)
    assert stats["used_frac"] == 3 / 8
    assert stats["perplexity"] == pytest.approx(2**1.5, rel=1e-6)
    uniform = codebook_stats(torch.arange(16).repeat(3), 16)
    assert uniform == {"used_frac": 1.0, "perplexity": pytest.approx(16.0, rel=1e-6)}
    single = codebook_stats(torch.full((10,), 2), 4)
    assert single["used_frac"] == 0.25 and single["perplexity"] == pytest.approx(1.0)
    assert codebook_stats(torch.full((3,), -1), 4) == {"used_frac": 0.0, "perplexity": 0.0}


@pytest.mark.parametrize("conv", ["gcn", "appnp", "gcnii", "gat"])
def test_sparse_features_train_the_same_teacher_as_dense_ones(conv):
    from vqgraph.training.teacher import sparse_teacher

    data = make_csbm(num_nodes=300, num_classes=3, num_edges=900, num_features=120, feature_density=0.03, seed=0)
    split = make_split(data, seed=0)
    train = train_config(max_epochs=6)
    runs = {}
    for form in ("on", "off"):  # no input dropout: the same random draws on both paths
        cfg = teacher_config(conv=conv, sparse_input=form, input_dropout=0.0, dropout=0.0)
        assert sparse_teacher(cfg, train, data.x) == (form == "on")
        torch.manual_seed(0)
        runs[form] = fit_teacher(data, split, cfg, train)
    for a, b in zip(runs["on"].history, runs["off"].history):  # feature reconstruction included (non-zeros only)
        assert a["loss/feature_recon"] == pytest.approx(b["loss/feature_recon"], rel=1e-4)
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-4)
    assert torch.allclose(runs["on"].targets.logits, runs["off"].targets.logits, atol=1e-3)
    dropped = fit_teacher(data, split, teacher_config(conv=conv, sparse_input="on"), train_config(max_epochs=3))
    assert all(math.isfinite(row["train/loss"]) for row in dropped.history)  # input dropout on the stored entries


def test_sparse_teacher_features_only_where_they_apply():
    from vqgraph.training.teacher import sparse_teacher

    words = make_csbm(num_nodes=200, num_classes=2, num_edges=500, num_features=100, feature_density=0.02, seed=0).x
    assert sparse_teacher(teacher_config(sparse_input="auto"), train_config(), words)
    assert not sparse_teacher(teacher_config(sparse_input="auto"), train_config(), torch.randn(200, 100))  # dense
    assert not sparse_teacher(teacher_config(sparse_input="auto"), train_config(batch_size=32), words)  # mini-batch
    assert not sparse_teacher(teacher_config(conv="sage", sparse_input="auto"), train_config(), words)  # aggregates first
    with pytest.raises(ValueError, match="sparse_input='on' needs an encoder that starts with a linear map"):
        TeacherConfig(conv="sage", sparse_input="on")


def test_a_plain_log_callback_sees_floats_and_a_logger_that_asks_gets_the_usage_counts():
    from vqgraph.data import make_csbm, make_split
    from vqgraph.models import TeacherConfig
    from vqgraph.training import TrainConfig, fit_teacher

    data = make_csbm(num_nodes=200, num_classes=3, num_features=8, seed=0)
    split = make_split(data, seed=0, train_per_class=10, val_per_class=10)
    rows, extras = [], []

    class Asking:
        takes_extras = True

        def __call__(self, metrics, epoch, more=None):
            extras.append(more)

    train = TrainConfig(max_epochs=2, patience=None, progress=False)
    fit_teacher(data, split, TeacherConfig(hidden_channels=8, codebook_size=16), train, log=lambda m, e: rows.append(m))
    assert rows and all(isinstance(v, float) for row in rows for v in row.values())
    fit_teacher(data, split, TeacherConfig(hidden_channels=8, codebook_size=16), train, log=Asking())
    usage = extras[0]["codebook/usage"]
    assert usage.shape == (16,) and int(usage.sum()) == split.observed_idx.numel()  # every node holds one code
