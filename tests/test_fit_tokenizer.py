"""fit_tokenizer: a graph tokenizer learned on a frozen teacher's representations (codes, losses,
determinism, resume, inductive isolation, a student on its targets, bad inputs)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch_geometric.utils import coalesce

from vqgraph import DistillConfig, TeacherConfig, TokenizerConfig, TrainConfig, fit_student, fit_teacher, fit_tokenizer
from vqgraph.data import make_csbm, make_split
from vqgraph.errors import ArtifactMismatchError, ConfigError
from vqgraph.losses import code_logits
from vqgraph.targets import TeacherTargets, graph_fingerprint

K = 16


@pytest.fixture(scope="module")
def graph():
    return make_csbm(num_nodes=300, num_classes=3, avg_degree=8, num_features=16, seed=0, name="csbm-tok")


@pytest.fixture(scope="module")
def split(graph):
    return make_split(graph, seed=0)


def brief(**overrides) -> TrainConfig:
    return TrainConfig(**{"lr": 0.01, "weight_decay": 0.0, "max_epochs": 30, "patience": None, "progress": False,
                          **overrides})


@pytest.fixture(scope="module")
def targets(graph, split):
    """A briefly trained joint teacher's targets (z: 16 wide, its own 32-code codebook)."""
    return fit_teacher(graph, split, TeacherConfig(hidden_channels=16, codebook_size=32), brief(max_epochs=15)).targets


@pytest.fixture(scope="module")
def fitted(graph, split, targets):
    history = []
    out = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K), brief(),
                        log=lambda metrics, epoch: history.append(metrics))
    return out, history


def test_codes_are_the_nearest_codes_of_z_under_the_metric(fitted, targets, graph):
    out, _ = fitted
    assert out.codebook.shape == (K, 16) and out.z.shape == (graph.num_nodes, 16) and out.metric == "cosine"
    assert int(out.codes.min()) >= 0 and int(out.codes.max()) < K
    assert torch.equal(out.codes, code_logits(out.z, out.codebook, out.metric).argmax(-1))
    assert torch.allclose(out.codebook.norm(dim=-1), torch.ones(K), atol=1e-4)  # a cosine codebook: unit codes
    # the teacher's soft labels and fingerprints stay; the input targets are not changed
    assert torch.equal(out.logits, targets.logits) and out.graph_fingerprint == targets.graph_fingerprint
    assert targets.codebook.shape == (32, 16)
    assert out.config["tokenizer"] == TokenizerConfig(codebook_size=K).to_dict() and "teacher" in out.config
    assert out.metrics["tokenizer/codes_used"] == int(torch.unique(out.codes).numel())
    assert out.metrics["codebook/used_frac"] == pytest.approx(out.metrics["tokenizer/codes_used"] / K)
    assert 1.0 <= out.metrics["tokenizer/perplexity"] <= out.metrics["tokenizer/codes_used"] + 1e-4
    assert out.metrics["test/acc"] == targets.metrics["test/acc"]  # the teacher's own figures stay


def test_losses_fall_and_the_codebook_dashboard_is_logged(fitted):
    out, history = fitted
    assert len(history) == 30
    first, best = history[0], history[out.metrics["tokenizer/best_epoch"]]
    assert best["eval/loss"] < first["eval/loss"] and history[-1]["train/loss"] < first["train/loss"]
    assert best["eval/loss"] == min(h["eval/loss"] for h in history)  # selected: the lowest evaluation loss
    assert out.metrics["tokenizer/loss"] == pytest.approx(best["eval/loss"])
    for key in ("codebook/used_frac", "codebook/perplexity", "codebook/restarts", "codebook/assign_entropy",
                "loss/commit", "loss/feature_recon", "loss/edge_recon"):
        assert all(key in h for h in history), key


def test_identity_projection_quantizes_the_standardised_z(graph, split, targets):
    out = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K, projection="identity"), brief())
    z = targets.z
    assert torch.allclose(out.z, (z - z.mean(0)) / z.std(0, unbiased=False), atol=1e-5)
    raw = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K, projection="identity",
                                                              standardize=False), brief(max_epochs=2))
    assert torch.equal(raw.z, targets.z)


def test_a_code_width_of_its_own(graph, split, targets):
    out = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K, code_dim=8), brief(max_epochs=5))
    assert out.z.shape == (graph.num_nodes, 8) and out.codebook.shape == (K, 8)


def test_the_same_seed_gives_the_same_codebook_bit_for_bit(graph, split, targets, fitted):
    again = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K), brief())
    assert torch.equal(again.codebook, fitted[0].codebook) and torch.equal(again.z, fitted[0].z)
    other = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K), brief(seed=1))
    assert not torch.equal(other.codebook, fitted[0].codebook)


class Stop(Exception):
    pass


def test_resumes_from_a_checkpoint_to_the_same_result(graph, split, targets, fitted, tmp_path):
    train = brief(checkpoint_epochs=1, checkpoint_minutes=0)

    def stop_at_12(metrics, epoch):
        if epoch == 12:
            raise Stop

    with pytest.raises(Stop):
        fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K), train,
                      log=stop_at_12, checkpoint=train.checkpoint(tmp_path / "ckpt.pt", {"run": "tok"}))
    assert (tmp_path / "ckpt.pt").is_file()
    history = []
    resumed = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K), train,
                            log=lambda m, e: history.append(e),
                            checkpoint=train.checkpoint(tmp_path / "ckpt.pt", {"run": "tok"}))
    assert history[0] == 12  # picked up after the last saved epoch
    assert torch.equal(resumed.codebook, fitted[0].codebook) and torch.equal(resumed.codes, fitted[0].codes)
    assert not (tmp_path / "ckpt.pt").exists()


def test_hidden_nodes_and_their_edges_never_enter_training(graph):
    split = make_split(graph, seed=0, setting="inductive")
    targets = fit_teacher(graph, split, TeacherConfig(hidden_channels=16, codebook_size=32), brief(max_epochs=5)).targets
    hidden = split.test_ind_idx
    changed = graph.clone()
    changed.x = graph.x.clone()
    changed.x[hidden] = torch.randn(hidden.numel(), graph.num_features) * 5
    ring = torch.stack([hidden, hidden.roll(1)])  # new edges among hidden nodes, both directions
    changed.edge_index = coalesce(torch.cat([graph.edge_index, ring, ring.flip(0)], dim=1), num_nodes=graph.num_nodes)
    assert changed.edge_index.size(1) > graph.edge_index.size(1)
    z = targets.z.clone()
    z[hidden] = torch.randn(hidden.numel(), z.size(1)) * 5
    altered = dataclasses.replace(targets, z=z, graph_fingerprint=graph_fingerprint(changed))
    config = TokenizerConfig(codebook_size=K)
    base = fit_tokenizer(targets, graph, split, config, brief(max_epochs=10))
    other = fit_tokenizer(altered, changed, split, config, brief(max_epochs=10))
    assert torch.equal(base.codebook, other.codebook)
    observed = split.observed_idx
    assert torch.equal(base.codes[observed], other.codes[observed])
    assert int(other.codes[hidden].min()) >= 0  # the hidden nodes are coded after training, from their own z
    seen = graph.clone()  # the control: the same change on observed nodes moves the codebook
    seen.x = graph.x.clone()
    seen.x[split.val_idx] = torch.randn(split.val_idx.numel(), graph.num_features) * 5
    moved = fit_tokenizer(dataclasses.replace(targets, graph_fingerprint=graph_fingerprint(seen)), seen, split, config,
                          brief(max_epochs=10))
    assert not torch.equal(base.codebook, moved.codebook)


def test_a_vqgraph_student_trains_on_the_returned_targets(graph, split, fitted, tmp_path):
    out, _ = fitted
    out.save(tmp_path / "teacher.pt")
    loaded = TeacherTargets.load(tmp_path / "teacher.pt")  # the artifact's checks: z as wide as the codebook
    result = fit_student(graph, split, loaded, distill=DistillConfig(method="vqgraph"), train=brief(max_epochs=10))
    assert result.model.projection is not None and 0.0 <= result.metrics["test/acc"] <= 1.0
    assert result.metrics["targets/soft_token_entropy"] > 0


def test_a_teacher_without_a_tokenizer_gets_one(graph, split):
    plain = fit_teacher(graph, split, TeacherConfig(hidden_channels=16, use_tokenizer=False), brief(max_epochs=10))
    assert plain.targets.codebook is None and int(plain.targets.codes.max()) == -1
    with pytest.raises(ValueError, match="needs the teacher.s codebook.*fit_tokenizer"):
        fit_student(graph, split, plain.targets, distill=DistillConfig(method="vqgraph"), train=brief(max_epochs=2))
    coded = fit_tokenizer(plain.targets, graph, split, TokenizerConfig(codebook_size=K), brief(max_epochs=10))
    result = fit_student(graph, split, coded, distill=DistillConfig(method="vqgraph"), train=brief(max_epochs=5))
    assert "targets/soft_token_entropy" in result.metrics


# ---- bad inputs ----------------------------------------------------------------------------------
def test_targets_without_z_are_refused(graph, split, targets):
    no_z = TeacherTargets(targets.logits, graph_fingerprint=targets.graph_fingerprint,
                          split_fingerprint=targets.split_fingerprint)  # z=None: soft labels only
    with pytest.raises(ValueError, match=r"fit_tokenizer needs the teacher's representation z.*targets_from_model"):
        fit_tokenizer(no_z, graph, split)


def test_targets_of_another_graph_or_split_are_refused(graph, split, targets):
    other_graph = make_csbm(num_nodes=300, num_classes=3, avg_degree=8, num_features=16, seed=1)
    with pytest.raises(ArtifactMismatchError, match="made for another graph"):
        fit_tokenizer(targets, other_graph, make_split(other_graph, seed=0))
    with pytest.raises(ArtifactMismatchError, match="made for another split"):
        fit_tokenizer(targets, graph, make_split(graph, seed=1))


def test_a_codebook_larger_than_the_training_nodes_is_refused(graph, targets):
    split = make_split(graph, seed=0, setting="inductive")
    hidden = dataclasses.replace(targets, split_fingerprint=split.fingerprint())
    seen = split.observed_idx.numel()
    with pytest.raises(ValueError, match=rf"codebook_size={seen + 1} is larger than the {seen} nodes training sees"):
        fit_tokenizer(hidden, graph, split, TokenizerConfig(codebook_size=seen + 1))


def test_a_non_finite_or_misshapen_z_is_refused(graph, split, targets):
    z = targets.z.clone()
    z[7, 0] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values in 1 training row\(s\), e.g. nodes \[7\]"):
        fit_tokenizer(dataclasses.replace(targets, z=z), graph, split)
    with pytest.raises(ValueError, match=r"targets.z must be \[num_nodes=300, width >= 1\], got \(299, 16\)"):
        fit_tokenizer(dataclasses.replace(targets, z=targets.z[:-1]), graph, split)


def test_mini_batches_and_odd_configs_are_refused(graph, split, targets):
    with pytest.raises(ValueError, match="fit_tokenizer trains full batch"):
        fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K), brief(batch_size=64))
    with pytest.raises(ValueError, match="code_dim=8 needs projection='linear'"):
        TokenizerConfig(projection="identity", code_dim=8)
    with pytest.raises(ValueError, match="no loss term has a gradient"):
        TokenizerConfig(projection="identity", feature_recon_weight=0.0, edge_recon_weight=0.0)
    with pytest.raises(ConfigError, match="codebook_size must be >= 1"):
        TokenizerConfig(codebook_size=0)
    with pytest.raises(TypeError, match="targets must be a TeacherTargets, got dict"):
        fit_tokenizer({"z": targets.z}, graph, split)


def test_targets_already_tokenized_are_refused(graph, split, targets):
    coded = fit_tokenizer(targets, graph, split, TokenizerConfig(codebook_size=K), brief(max_epochs=2))
    with pytest.raises(ValueError, match=r"already made by fit_tokenizer.*teacher's own targets"):
        fit_tokenizer(coded, graph, split, TokenizerConfig(codebook_size=K), brief(max_epochs=2))
