"""experiments.reproduce: killed mid-grid (kill -9) and started again, it finishes without redoing
finished runs and leaves no half-written results file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from conftest import REPO
from experiments import reproduce

ARGS = ["--datasets", "synthetic", "--settings", "transductive", "--methods", "mlp", "glnn", "--seeds", "0-2"]
FAST = ["--set", "train.max_epochs=3", "student_train.max_epochs=30", "student_train.patience=none",
        "teacher.codebook_size=32", "teacher.hidden_channels=16"]


def test_killed_grid_resumes_without_redoing_runs(tmp_path):
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
