"""experiments.reproduce: killed mid-grid (kill -9) and started again, it finishes without redoing
finished runs and leaves no half-written results file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO
from experiments import reproduce
from vqgraph.app import grid, records
from vqgraph.app.run import RunSpec

ARGS = ["--datasets", "synthetic", "--settings", "transductive", "--methods", "mlp", "glnn", "--seeds", "0-2"]
FAST = ["--set", "train.max_epochs=3", "student_train.max_epochs=30", "student_train.patience=none",
        "teacher.codebook_size=32", "teacher.hidden_channels=16"]


def test_killed_grid_resumes_without_redoing_runs(tmp_path, capsys):
    runs, cache = tmp_path / "runs", tmp_path / "cache"
    argv = ARGS + ["--runs", str(runs), "--cache", str(cache)] + FAST
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-m", "experiments.reproduce", *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list(runs.glob("*/results.json"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = sorted(runs.glob("*/results.json"))
    assert 2 <= len(done) < 6, f"the grid should be cut mid-way, found {len(done)} finished runs"
    for path in done:  # every results file on disk is whole
        json.loads(path.read_text())
    stamps = {path: path.stat().st_mtime_ns for path in done}

    assert reproduce.main(argv + ["--out", str(tmp_path / "table")]) == 0
    finished = sorted(runs.glob("*/results.json"))
    assert len(finished) == 6
    for path, stamp in stamps.items():  # finished runs were not redone
        assert path.stat().st_mtime_ns == stamp
    assert not list(runs.glob("*/.*.tmp"))
    table = (tmp_path / "table.md").read_text()
    assert "| synthetic | transductive | mlp | 3 |" in table and "| synthetic | transductive | glnn | 3 |" in table
    assert (tmp_path / "table.csv").read_text().startswith("dataset,setting,method,seeds")

    # the same folder with another config: an error naming the run and the key, nothing rerun or mixed
    changed = [a if a != "student_train.max_epochs=30" else "student_train.max_epochs=31" for a in argv]
    with pytest.raises(SystemExit):
        reproduce.main(changed)
    err = capsys.readouterr().err
    assert "student_train.max_epochs: 30 -> 31" in err and "synthetic-transductive-mlp-gcn-s0" in err
    assert all(path.stat().st_mtime_ns == stamp for path, stamp in stamps.items())


def test_summary_reports_mean_std_and_published_numbers():
    rows = [
        {"dataset": "cora", "setting": "transductive", "method": "glnn", "selected_by": "val/acc",
         "metrics": {"test/acc": acc}, "teacher_metrics": {"test/acc": 0.8}}
        for acc in (0.80, 0.82)
    ]
    md = reproduce.summarise(rows)["markdown"]
    assert "81.00 ± 1.41" in md and "80.54" in md and "val/acc" in md
    variant = reproduce.summarise(rows, "distill.soft_token_weight=0")["markdown"]
    assert "| glnn (distill.soft_token_weight=0) |" in variant and "80.54" not in variant


def test_paired_differences_match_seeds_and_count_wins():
    def row(method, seed, acc, setting="transductive"):
        metrics = {"test/acc": acc} if setting == "transductive" else {"test_ind/acc": acc, "test_prod/acc": acc + 0.01}
        return {"dataset": "cora", "setting": setting, "method": method, "seed": seed, "metrics": metrics}

    rows = [row("glnn", 0, 0.80), row("glnn", 1, 0.82), row("glnn", 2, 0.90),
            row("vqgraph", 0, 0.81), row("vqgraph", 1, 0.82), row("vqgraph", 3, 0.10),  # seed 3: no glnn pair
            row("glnn", 0, 0.70, "inductive"), row("vqgraph", 0, 0.69, "inductive")]
    md = records.paired(rows)
    # seeds 0 and 1 pair up: +1 and 0 points; seed 2 (glnn only) and seed 3 (vqgraph only) are left out
    assert "| cora | transductive | vqgraph - glnn | test/acc | 2 | +0.50 ± 0.71 | 1 / 1 / 0 |" in md
    assert "| cora | inductive | vqgraph - glnn | test_ind/acc | 1 | -1.00 ± 0.00 | 0 / 0 / 1 |" in md
    assert "test_prod/acc | 1 | -1.00 ± 0.00" in md
    assert "glnn - mlp" not in md  # no mlp runs: no such row
    assert records.paired([row("glnn", 0, 0.8)]) == ""
    # against another grid: each method with itself there, by seed
    variant = [row("vqgraph", 0, 0.83), row("vqgraph", 1, 0.80)]
    md = records.paired(variant, baseline=rows, label="code weight 0")
    assert "| cora | transductive | vqgraph (code weight 0) - vqgraph | test/acc | 2 | +0.00 ± 2.83 | 1 / 0 / 1 |" in md
    md = records.paired(variant, baseline=rows, label="code weight 0", baseline_label="default")
    assert "| vqgraph (code weight 0) - vqgraph (default) | test/acc |" in md


def test_compare_to_a_missing_grid_fails_before_running(tmp_path, capsys):
    with pytest.raises(SystemExit):
        reproduce.main(ARGS + ["--runs", str(tmp_path / "runs"), "--compare-to", str(tmp_path / "nowhere")])
    assert "nowhere" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_full_batch_teachers_tokenize_setting_is_not_a_config_change():
    spec = RunSpec("cora", "transductive", "glnn", "gcn", 0)
    recorded = {"config": json.loads(json.dumps(spec.config().to_dict()))}
    recorded["config"]["teacher"]["tokenize"] = "all"  # runs made before inner became the default
    assert grid.config_changes(recorded, spec) == []
    recorded["config"]["teacher"]["hidden_channels"] = 7
    assert grid.config_changes(recorded, spec) == [f"teacher.hidden_channels: 7 -> {spec.config().teacher.hidden_channels}"]
    batched = RunSpec("cora", "transductive", "glnn", "gcn", 0, ("train.batch_size=256",))
    recorded = {"config": json.loads(json.dumps(batched.config().to_dict()))}
    recorded["config"]["teacher"]["tokenize"] = "all"
    assert grid.config_changes(recorded, batched) == ["teacher.tokenize: 'all' -> 'inner'"]


def test_teacher_sparse_input_is_compared_by_its_effect():
    # the synthetic graph's features are dense: auto and off are the same teacher there
    spec = RunSpec("synthetic", "transductive", "glnn", "gcn", 0)
    recorded = {"config": json.loads(json.dumps(spec.config().to_dict()))}
    assert recorded["config"]["teacher"]["sparse_input"] == "auto"
    recorded["config"]["teacher"]["sparse_input"] = "off"
    assert grid.config_changes(recorded, spec) == []
    recorded["config"]["teacher"]["sparse_input"] = "on"
    assert grid.config_changes(recorded, spec) == ["teacher.sparse_input: 'on' -> 'auto'"]


def test_grid_summary_run_holds_the_tables_offline(tmp_path, monkeypatch):
    from wandb_files import read_offline_run

    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    argv = ["--datasets", "synthetic", "--settings", "transductive", "--methods", "mlp", "glnn", "--seeds", "0-1",
            "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "table"),
            "--wandb", "offline"] + FAST
    assert reproduce.main(argv) == 0
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1  # one summary run for the whole grid, beside the tables
    deadline = time.time() + 30
    logged = read_offline_run(runs[0])
    while "grid/runs" not in logged["summary"] and time.time() < deadline:
        time.sleep(0.2)
        logged = read_offline_run(runs[0])
    tables = {key: value for row in logged["history"] for key, value in row.items() if key.startswith("grid/")}
    assert tables["grid/results"]["_type"] == "table-file" and tables["grid/results"]["nrows"] == 2  # mlp, glnn
    assert tables["grid/paired_differences"]["nrows"] == 1  # glnn - mlp
    assert logged["summary"]["grid/runs"] == 4 and logged["config"]["seeds"] == "0-1"
    files = [p for p in runs[0].rglob("*.table.json")]
    contents = [json.loads(p.read_text()) for p in files]
    results = next(c for c in contents if "published" in c["columns"])
    assert {row[2] for row in results["data"]} == {"mlp", "glnn"}


def test_an_unfinished_run_of_another_config_starts_over(tmp_path, monkeypatch):
    from vqgraph.errors import CheckpointMismatchError

    calls = []

    def fake_run(spec, folder, cache, data_root=None, fresh=False):
        calls.append(fresh)
        if not fresh:
            raise CheckpointMismatchError(f"{folder}/checkpoint.pt was written by another configuration")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps({"config": {}, "ok": True}))

    monkeypatch.setattr(grid, "run_experiment", fake_run)
    spec = RunSpec("synthetic", "transductive", "glnn", "gcn", 0)
    with pytest.warns(UserWarning, match="starts over with the grid's config"):
        result = grid.finished_run(spec, tmp_path / "run", tmp_path / "cache")
    assert calls == [False, True] and result["ok"]
