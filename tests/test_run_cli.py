"""experiments.run end to end on real Cora (few epochs): results file, teacher cache, W&B offline."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import pytest
import torch
from wandb_files import read_offline_run

from experiments import run as run_cli
from vqgraph.data import load_dataset, make_split
from vqgraph.serving import Predictor
from vqgraph.app.config import DistillSection, ExperimentConfig
from vqgraph.errors import ArtifactMismatchError, ConfigError

FAST = ["train.max_epochs=4", "student_train.max_epochs=4", "teacher.codebook_size=64"]


def _run(tmp_path, data_root, *extra, out="run", method="vqgraph", setting="transductive"):
    argv = ["--dataset", "cora", "--data-root", str(data_root), "--method", method, "--setting", setting]
    argv += ["--seed", "0", "--out", str(tmp_path / out), "--cache", str(tmp_path / "cache"), "--quiet"]
    argv += ["--set", *FAST, *extra]
    assert run_cli.main(argv) == 0
    return json.loads((tmp_path / out / "results.json").read_text())


def test_run_writes_results_and_reuses_the_cached_teacher(tmp_path, data_root):
    first = _run(tmp_path, data_root, out="a")
    for key in ("dataset", "setting", "method", "teacher", "seed", "metrics", "teacher_metrics", "timings", "config"):
        assert key in first
    assert first["dataset"] == "cora" and first["method"] == "vqgraph" and first["selected_by"] == "val/acc"
    assert set(first["metrics"]) >= {"val/acc", "test/acc"}
    assert set(first["timings"]) >= {"teacher_train_s", "student_train_s", "student_infer_s"}
    assert first["timings"]["teacher_cached"] is False and first["timings"]["teacher_train_s"] > 0
    # the student artifact serves raw features: it applies the run's normalisation itself
    predictor = Predictor.load(tmp_path / "a" / "student.pt")
    raw = load_dataset("cora", root=data_root)
    split = make_split(raw, seed=0)
    labels = predictor.predict(raw.x).labels
    served = (labels[split.test_idx] == raw.y[split.test_idx]).double().mean().item()
    assert served == pytest.approx(first["metrics"]["test/acc"], abs=1e-6)
    assert predictor.meta["method"] == "vqgraph" and predictor.codebook is not None
    # same teacher config: the artifact is reused, and identical teacher metrics come back
    second = _run(tmp_path, data_root, out="b", method="glnn")
    assert second["timings"]["teacher_cached"] is True
    assert second["teacher_metrics"] == first["teacher_metrics"]
    assert second["teacher_artifact"] == first["teacher_artifact"]
    # a different teacher setting is a different cache entry
    third = _run(tmp_path, data_root, "teacher.dropout=0.3", out="c")
    assert third["timings"]["teacher_cached"] is False and third["teacher_artifact"] != first["teacher_artifact"]


def test_inductive_run_reports_tran_ind_and_prod(tmp_path, data_root):
    result = _run(tmp_path, data_root, setting="inductive")
    m = result["metrics"]
    assert set(m) >= {"val/acc", "test_tran/acc", "test_ind/acc", "test_prod/acc"}
    assert m["test_prod/acc"] == pytest.approx(0.8 * m["test_tran/acc"] + 0.2 * m["test_ind/acc"])
    assert set(result["teacher_metrics"]) >= {"test_tran/acc", "test_ind/acc"}


def test_wandb_offline_logs_config_epochs_and_final_metrics(tmp_path, data_root, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    argv = ["--dataset", "cora", "--data-root", str(data_root), "--method", "vqgraph", "--seed", "0"]
    argv += ["--out", str(tmp_path / "wb"), "--cache", str(tmp_path / "cache"), "--quiet", "--wandb", "offline"]
    argv += ["--set", *FAST]
    assert run_cli.main(argv) == 0
    result = json.loads((tmp_path / "wb" / "results.json").read_text())
    runs = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    # W&B's own writer process may still be flushing the run file when finish() returns: wait for
    # the final summary (the last thing logged) before reading the rows, at most 30 s
    deadline = time.time() + 30
    logged = read_offline_run(runs[0])
    while "final/test/acc" not in logged["summary"] and time.time() < deadline:
        time.sleep(0.2)
        logged = read_offline_run(runs[0])
    student_rows = [row for row in logged["history"] if "val/acc" in row]
    teacher_rows = [row for row in logged["history"] if "teacher/val/acc" in row]
    assert len(student_rows) == result["epochs"]  # one row per student epoch
    assert len(teacher_rows) == 4  # teacher.max_epochs
    for key in ("train/loss", "loss/label", "loss/soft_label", "loss/soft_token", "epoch"):
        assert key in student_rows[0]
    assert "teacher/codebook/used_frac" in teacher_rows[0] and "teacher/loss/commit" in teacher_rows[0]
    # codebook health a dashboard can plot: usage as a histogram, restarts, soft-assignment entropy
    usage = teacher_rows[0]["teacher/codebook/usage"]
    assert usage["_type"] == "histogram" and sum(usage["values"]) > 0
    assert teacher_rows[0]["teacher/codebook/restarts"] >= 0
    assert 0 < teacher_rows[0]["teacher/codebook/assign_entropy"] <= math.log(2048) + 1e-6
    # the codebook figure: a PNG beside results.json and an image in the run
    assert result["figures"]["codebook"] == "codebook.png" and (tmp_path / "wb" / "codebook.png").is_file()
    images = [row["teacher/codebook"] for row in logged["history"] if "teacher/codebook" in row]
    assert len(images) == 1 and images[0]["_type"] == "image-file" and images[0]["format"] == "png"
    assert logged["summary"]["final/test/acc"] == pytest.approx(result["metrics"]["test/acc"])
    assert logged["config"]["method"] == "vqgraph" and logged["config"]["dataset"] == "cora"


def test_unknown_override_is_rejected_with_its_name(tmp_path, data_root, capsys):
    with pytest.raises(SystemExit):
        run_cli.main(["--dataset", "cora", "--data-root", str(data_root), "--out", str(tmp_path / "x"),
                      "--set", "distill.no_such_key=1"])
    assert "distill.no_such_key" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_preset_method_blocks_apply_to_their_method_only(tmp_path):

    preset = tmp_path / "p.yaml"
    preset.write_text("gcn:\n  student:\n    dropout: 0.3\n  mlp:\n    student:\n      dropout: 0.6\n")
    students = {m: ExperimentConfig.from_preset("cora", "gcn", m, preset=preset).student for m in ("mlp", "glnn", "vqgraph")}
    assert [students[m].dropout for m in ("mlp", "glnn", "vqgraph")] == [0.6, 0.3, 0.3]
    # distilled students batch-normalise by default, the label-only mlp does not
    assert [students[m].norm for m in ("mlp", "glnn", "vqgraph")] == ["none", "batch", "batch"]
    # the command line still wins over a method block
    over = ExperimentConfig.from_preset("cora", "gcn", "mlp", ["student.dropout=0.1"], preset=preset).student
    assert over.dropout == 0.1
    preset.write_text("gcn:\n  mlp:\n    studnet:\n      dropout: 0.6\n")
    with pytest.raises(ConfigError, match=r"gcn\.mlp\.studnet"):
        ExperimentConfig.from_preset("cora", "gcn", "mlp", preset=preset)


def test_run_without_method_or_teacher_takes_the_presets_recipe_per_setting(tmp_path):
    from experiments.common import parse_run
    from vqgraph.app.config import DEFAULT_RECIPE, recipe

    preset = tmp_path / "p.yaml"
    preset.write_text("recipe:\n  inductive:\n    teacher: sage\n    method: glnn\n"
                      "    set: [distill.adversarial_weight=0.1, student.hidden_channels=64]\n"
                      "sage:\n  glnn:\n    student:\n      dropout: 0.2\n")
    assert recipe("mygraph", "inductive", preset) == {
        "teacher": "sage", "method": "glnn", "set": ["distill.adversarial_weight=0.1", "student.hidden_channels=64"]}
    assert recipe("mygraph", "transductive", preset) == DEFAULT_RECIPE  # no block for the setting
    assert recipe(str(tmp_path / "own.npz"), "inductive") == DEFAULT_RECIPE  # a graph without preset
    parser = run_cli.build_parser()
    args, spec, cfg = parse_run(parser, ["--dataset", "cora", "--setting", "inductive", "--config", str(preset)])
    assert (spec.teacher, spec.method, cfg.teacher.conv, cfg.distill.method) == ("sage", "glnn", "sage", "glnn")
    assert args.recipe  # its default folder is not the plain method's
    assert cfg.student.dropout == 0.2  # the recipe's own preset block applies, then its overrides
    assert cfg.distill.adversarial_weight == 0.1 and cfg.student.hidden_channels == 64
    _, _, cfg = parse_run(parser, ["--dataset", "cora", "--setting", "inductive", "--config", str(preset),
                                   "--set", "student.hidden_channels=32"])
    assert cfg.student.hidden_channels == 32 and cfg.distill.adversarial_weight == 0.1  # the command line wins
    _, spec, cfg = parse_run(parser, ["--dataset", "cora", "--setting", "inductive", "--config", str(preset),
                                      "--method", "mlp"])
    assert (spec.teacher, spec.method) == ("sage", "mlp")  # a named method wins; the teacher still comes from the recipe
    assert cfg.distill.adversarial_weight == 0.0  # ... and the recipe's overrides stay with the recipe's method
    # the packaged presets name a recipe per setting, each a valid config
    for dataset in ("cora", "citeseer", "a-computer", "a-photo"):
        for setting in ("transductive", "inductive"):
            _, spec, _ = parse_run(parser, ["--dataset", dataset, "--setting", setting])
            assert spec.method in ("glnn", "vqgraph")
    preset.write_text("recipe:\n  inductive:\n    method: glnnn\n")
    with pytest.raises(ConfigError, match="recipe.inductive.method"):
        recipe("cora", "inductive", preset)
    for bad in ("    teachr: gcn\n", "    set: distill.adversarial_weight=0.1\n", "    set: [adversarial_weight]\n"):
        preset.write_text("recipe:\n  inductive:\n" + bad)
        with pytest.raises(ConfigError, match="recipe.inductive|section.key=value"):
            recipe("cora", "inductive", preset)


def test_a_teacher_ensemble_averages_soft_labels_and_keeps_the_first_teachers_codes(tmp_path, data_root):
    import torch

    from vqgraph.targets import TeacherTargets, ensemble_targets
    from vqgraph.evaluation import Evaluator

    single = _run(tmp_path, data_root, out="one")
    both = _run(tmp_path, data_root, "distill.teachers=3", out="three")
    assert both["timings"]["teacher_cached"] is False  # the first member is the cached teacher, two more train
    assert both["teacher_artifact"] == single["teacher_artifact"]
    entries = sorted(p.parent.name for p in (tmp_path / "cache").glob("*/teacher.pt"))
    assert len(entries) == 3  # each member cached as any teacher (train.seed = seed + 1000 m)
    members = [TeacherTargets.load(p) for p in sorted((tmp_path / "cache").glob("*/teacher.pt"))]
    first = TeacherTargets.load(single["teacher_artifact"])
    assert sorted(m.config["train"]["seed"] for m in members) == [0, 1000, 2000]
    ordered = sorted(members, key=lambda m: m.config["train"]["seed"])
    raw = load_dataset("cora", root=data_root)
    split = make_split(raw, seed=0)
    combined = ensemble_targets(ordered, raw, split)
    mean = torch.stack([m.logits.softmax(-1) for m in ordered]).mean(0)
    assert torch.allclose(combined.logits.exp(), mean, atol=1e-6)
    assert torch.equal(combined.codes, first.codes) and torch.equal(combined.z, first.z)
    assert combined.metrics["members"] == 3
    expected = Evaluator.for_split(raw.y, split)(mean)["test/acc"]
    assert both["teacher_metrics"]["test/acc"] == pytest.approx(expected)  # the ensemble's own accuracy
    assert both["config"]["distill"]["teachers"] == 3
    other = make_split(raw, seed=1)
    moved = dataclasses.replace(ordered[1], split_fingerprint=other.fingerprint())
    with pytest.raises(ArtifactMismatchError, match="teacher 1 was made for another graph or split"):
        ensemble_targets([ordered[0], moved])
    with pytest.raises(ValueError, match="teachers must be >= 1"):
        DistillSection(teachers=0)
    from vqgraph.app.run import fit_selected_student

    cfg = ExperimentConfig(distill=DistillSection(method="glnn", teachers=3))
    with pytest.raises(ConfigError, match="distill.teachers=3 but the targets come from 1 teacher"):
        fit_selected_student(raw, split, first, cfg)


def test_an_ensemble_of_other_encoder_kinds_trains_each_with_its_own_settings(tmp_path, data_root):
    """``distill.teacher_kinds`` names the kinds of teachers 2..N: each is trained with its own
    encoder and preset block on the run's graph (the first teacher's features), and the targets
    average all of them while the codes stay the first teacher's."""
    from vqgraph.targets import TeacherTargets

    preset = tmp_path / "preset.yaml"
    preset.write_text("gcn:\n  data:\n    feature_norm: row\nappnp:\n  teacher:\n    hidden_channels: 16\n")
    argv = ["--dataset", "cora", "--data-root", str(data_root), "--method", "glnn", "--seed", "0", "--config",
            str(preset), "--out", str(tmp_path / "mixed"), "--cache", str(tmp_path / "cache"), "--quiet",
            "--set", *FAST, "distill.teachers=3", "distill.teacher_kinds=[appnp, gcnii]", "teacher.num_layers=2"]
    with pytest.warns(UserWarning, match="teacher 3 of the ensemble \\('gcnii'\\) has no block in the preset"):
        assert run_cli.main(argv) == 0
    results = json.loads((tmp_path / "mixed" / "results.json").read_text())
    members = {m.config["teacher"]["conv"]: m for m in map(TeacherTargets.load, (tmp_path / "cache").glob("*/teacher.pt"))}
    assert sorted(members) == ["appnp", "gcn", "gcnii"]
    assert members["appnp"].config["teacher"]["hidden_channels"] == 16  # its own preset block
    assert members["gcn"].config["teacher"]["hidden_channels"] == 64
    assert all(m.config["teacher"]["num_layers"] == 2 for m in members.values())  # the run's overrides: every teacher
    assert all(m.config["train"]["max_epochs"] == 4 for m in members.values())
    assert [members[k].config["train"]["seed"] for k in ("gcn", "appnp", "gcnii")] == [0, 1000, 2000]
    assert all(m.config["data"]["feature_norm"] == "row" for m in members.values())  # the run's features
    assert TeacherTargets.load(results["teacher_artifact"]).config["teacher"]["conv"] == "gcn"  # the first teacher's codes
    assert results["config"]["distill"]["teacher_kinds"] == ["appnp", "gcnii"]
    with pytest.raises(ValueError, match="teacher_kinds names 1 kind.*set teachers=2"):
        DistillSection(teacher_kinds=("appnp",))
    with pytest.raises(ValueError, match=r"teacher_kinds must be a list of strings, each one of \('gcn', .*got \('gcm',\)"):
        DistillSection(teachers=2, teacher_kinds=("gcm",))
    with pytest.raises(SystemExit):  # a usage error naming the key
        run_cli.main(argv[:-3] + ["distill.teachers=2", "distill.teacher_kinds=[gcm]"])


def test_teacher_cache_key_follows_the_tokenize_form_only_where_it_acts():
    from vqgraph.app.cache import teacher_key
    from vqgraph.app.config import ExperimentConfig

    def key(overrides):
        return teacher_key("a-computer", "transductive", 0, ExperimentConfig.from_preset("a-computer", "gcn", "glnn", overrides))

    # full batch: the tokenizer sees every node in either form, so the cached teacher is the same
    assert key(["teacher.tokenize=inner"]) == key(["teacher.tokenize=all"])
    mini = ["train.batch_size=200"]
    assert key(mini + ["teacher.tokenize=inner"]) != key(mini + ["teacher.tokenize=all"])


def test_teacher_cache_key_follows_sparse_input_by_its_effect():
    from vqgraph.app.cache import teacher_key
    from vqgraph.app.config import ExperimentConfig

    dense, sparse = torch.rand(50, 20), (torch.rand(50, 200) < 0.02).float()

    def key(value, x):
        cfg = ExperimentConfig.from_preset("cora", "gcn", "glnn", [f"teacher.sparse_input={value}"])
        return teacher_key("cora", "transductive", 0, cfg, x)

    assert key("auto", dense) == key("off", dense)  # auto on dense features: the dense teacher
    assert key("auto", sparse) == key("on", sparse) != key("off", sparse)


@pytest.mark.parametrize("content,words", [
    (None, "cannot read the preset (FileNotFoundError"),
    ("gcn:\n  teacher: [unclosed\n", "not valid YAML (while parsing a flow sequence"),
    ("- just\n- a list\n", "expected a mapping of teacher kinds to sections"),
])
def test_a_bad_config_file_is_a_usage_error_naming_the_file(tmp_path, capsys, content, words):
    from experiments.common import parse_run

    preset = tmp_path / "mine.yaml"
    if content is not None:
        preset.write_text(content)
    with pytest.raises(SystemExit) as exit_info:
        parse_run(run_cli.build_parser(), ["--dataset", "cora", "--method", "glnn", "--config", str(preset)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert str(preset) in err and words in err and "Traceback" not in err


@pytest.mark.parametrize("dataset,setting", [("cora", "transductive"), ("a-photo", "inductive")])
def test_teacher_cache_keys_of_the_committed_grid_still_hold_and_halving_makes_a_new_one(dataset, setting):
    from vqgraph.app.cache import teacher_key
    from vqgraph.app.run import RunSpec

    recorded = Path(__file__).parents[1] / "experiments/results/headline_runs/glnn" / f"{dataset}-{setting}-glnn-gcn-s0" / "results.json"
    key = Path(json.loads(recorded.read_text())["teacher_artifact"]).parent.name
    spec = RunSpec(dataset, setting, "glnn", "gcn", 0)
    assert teacher_key(dataset, setting, 0, spec.config(), 1.0) == key  # dense features; keys added since are inert
    halves = dataclasses.replace(spec, overrides=("data.val_split=halves",)).config()
    assert teacher_key(dataset, setting, 0, halves, 1.0) != key
