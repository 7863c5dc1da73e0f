"""``python -m experiments.train_teacher`` on the real Cora: results.json and the teacher artifact."""

from __future__ import annotations

import contextlib
import io
import json
import os
import warnings

import pytest

from experiments.train_teacher import main
from vqgraph.app.config import ExperimentConfig
from vqgraph.app.task import DataConfig, prepare_task
from vqgraph.errors import ArtifactMismatchError, ConfigError
from vqgraph.targets import TeacherTargets

EPOCHS = 5
EVAL_KEYS = {
    "transductive": {"val/acc", "test/acc"},
    "inductive": {"val/acc", "test_tran/acc", "test_ind/acc"},
}
SEEDS = {"transductive": 0, "inductive": 1}


def run(argv):
    out = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(out):
        warnings.filterwarnings("ignore", message="Sparse", category=UserWarning)
        code = main(argv)
    return code, out.getvalue()


@pytest.fixture(scope="module")
def runs(data_root, tmp_path_factory):
    """One short run per setting: ``{setting: (out_dir, results, stdout)}``."""
    done = {}
    for setting, seed in SEEDS.items():
        out = tmp_path_factory.mktemp(f"teacher-{setting}")
        argv = ["--dataset", "cora", "--setting", setting, "--seed", str(seed), "--out", str(out),
                "--data-root", str(data_root), "--quiet", "--set", f"train.max_epochs={EPOCHS}"]
        code, stdout = run(argv)
        assert code == 0
        done[setting] = (out, json.loads((out / "results.json").read_text()), stdout)
    return done


@pytest.fixture(scope="module")
def task(data_root):
    """The graph and split each run used (seed per setting; Cora's preset normalises rows)."""
    data_config = ExperimentConfig.from_preset("cora").data
    assert data_config != DataConfig()  # the preset's normalisation, not the package default
    return {s: prepare_task("cora", s, SEEDS[s], data_config, data_root)[:2] for s in SEEDS}


@pytest.mark.parametrize("setting", ["transductive", "inductive"])
def test_results_json(runs, setting):
    out, results, stdout = runs[setting]
    assert sorted(os.listdir(out)) == ["results.json", "teacher.pt"], "stray (temporary) files"
    assert results["dataset"] == "cora"
    assert results["setting"] == setting
    assert results["teacher"] == "gcn"
    assert results["seed"] == SEEDS[setting]
    metrics = results["metrics"]
    assert EVAL_KEYS[setting] <= metrics.keys()
    other = EVAL_KEYS["inductive" if setting == "transductive" else "transductive"] - EVAL_KEYS[setting]
    assert not other & metrics.keys()
    for key, value in metrics.items():
        assert isinstance(value, float) and 0.0 <= value <= 1.0, (key, value)
    codebook = results["codebook"]
    assert set(codebook) >= {"size", "used_frac", "perplexity"}
    assert codebook["size"] == results["config"]["teacher"]["codebook_size"] > 0
    assert 0.0 < codebook["used_frac"] <= 1.0
    assert 1.0 <= codebook["perplexity"] <= codebook["used_frac"] * codebook["size"] + 1e-3
    assert results["timings"]["train_s"] > 0
    # the override and the seed reached the training config
    assert results["config"]["train"]["max_epochs"] == EPOCHS and results["epochs"] == EPOCHS
    assert results["config"]["train"]["seed"] == SEEDS[setting]
    assert results["config"]["train"]["progress"] is False
    assert 0 <= results["best_epoch"] < EPOCHS
    assert results["artifact"] == "teacher.pt"
    assert "cora" in stdout and setting in stdout


@pytest.mark.parametrize("setting", ["transductive", "inductive"])
def test_artifact_matches_graph_split_and_results(runs, task, setting):
    out, results, _ = runs[setting]
    data, split = task[setting]
    targets = TeacherTargets.load(out / "teacher.pt")
    targets.check_matches(data, split)
    assert targets.num_nodes == data.num_nodes == 2485
    assert targets.setting == setting and targets.dataset == "cora"
    assert targets.codebook.size(0) == results["codebook"]["size"]
    # the metrics in results.json are the artifact's logits scored on the split
    for key, idx in split.index_dict().items():
        acc = float((targets.logits[idx].argmax(-1) == data.y[idx]).float().mean())
        assert results["metrics"][f"{key}/acc"] == pytest.approx(acc, abs=1e-6), key
    # the other setting's split (or another seed) is rejected
    other_setting = "inductive" if setting == "transductive" else "transductive"
    with pytest.raises(ArtifactMismatchError):
        targets.check_matches(data, task[other_setting][1])


@pytest.mark.parametrize("override, key", [("teacher.bogus=1", "teacher.bogus"), ("train.max_epochs=many", "train.max_epochs")])
def test_bad_override_names_the_key(data_root, tmp_path, capsys, override, key):
    out = tmp_path / "run"
    argv = ["--dataset", "cora", "--data-root", str(data_root), "--quiet", "--out", str(out), "--set", override]
    with pytest.raises((ConfigError, SystemExit)) as err:
        main(argv)
    message = str(err.value) + capsys.readouterr().err
    assert key in message
    if isinstance(err.value, SystemExit):
        assert err.value.code not in (0, None)
    assert not out.exists(), "nothing is written for a rejected configuration"


def test_unknown_section_rejected(data_root, tmp_path, capsys):
    argv = ["--dataset", "cora", "--data-root", str(data_root), "--quiet", "--out", str(tmp_path / "run"),
            "--set", "model.hidden=3"]
    with pytest.raises((ConfigError, SystemExit)) as err:
        main(argv)
    assert "model" in str(err.value) + capsys.readouterr().err
