"""First-run friction: plain progress lines in logs, the run says what it trains and why, an offline
W&B run says how to sync it, and every documented command runs on the plain install (no extras)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from experiments import run as run_cli
from experiments.common import parse_run
from vqgraph.app.loggers import WandbLogger
from vqgraph.training import loop
from vqgraph.training.loop import PlainProgress, progress

FAST = ["train.max_epochs=3", "student_train.max_epochs=3", "teacher.codebook_size=16", "teacher.hidden_channels=16"]


class _Clock:
    def __init__(self, step: float):
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_off_a_terminal_a_plain_line_every_interval(capsys):
    bar = PlainProgress(range(2, 8), "teacher", clock=_Clock(20.0))  # resumed at epoch 3; 20 s per epoch
    for epoch in bar:
        bar.set_postfix(loss=f"{1.0 / (epoch + 1):.3f}", **{"val/acc": f"{[0.5, 0.7, 0.6][epoch % 3]:.3f}"})
    lines = capsys.readouterr().err.splitlines()
    assert lines == [  # every 30 s or more: after the 2nd, 4th and 6th epoch of this process
        "teacher: epoch 4/8, loss 0.250, best val/acc 0.6000, 40 s elapsed",
        "teacher: epoch 6/8, loss 0.167, best val/acc 0.7000, 80 s elapsed",
        "teacher: epoch 8/8, loss 0.125, best val/acc 0.7000, 120 s elapsed",
    ]
    for _ in PlainProgress(["a", "b"], "grid", clock=_Clock(31.0)):
        pass
    assert capsys.readouterr().err.splitlines() == ["grid: 1/2, 31 s elapsed", "grid: 2/2, 62 s elapsed"]


def test_progress_is_a_bar_on_a_terminal_plain_lines_off_it_and_nothing_when_off(monkeypatch, capsys):
    assert isinstance(progress(range(3), "x", enabled=True), PlainProgress)  # pytest's stderr is no terminal
    monkeypatch.setattr(loop, "PLAIN_INTERVAL", 0.0)
    assert list(progress(range(3), "x", enabled=False)) == [0, 1, 2]
    assert capsys.readouterr().err == ""

    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            pass

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stderr", Terminal())
    assert not isinstance(progress(range(3), "x", enabled=True), PlainProgress)


def test_a_run_in_a_log_prints_each_phase_and_what_it_trains_and_why(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "PLAIN_INTERVAL", 0.0)  # a line every epoch: stands for every 30 s
    out = tmp_path / "run"
    argv = ["--dataset", "synthetic", "--method", "vqgraph", "--seed", "0", "--out", str(out),
            "--cache", str(tmp_path / "cache"), "--set", *FAST]
    assert run_cli.main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    why = "method named by --method, teacher chosen by default (no preset recipe for this graph)"
    assert err[0] == f"run: synthetic transductive seed 0: method vqgraph, teacher gcn, {why}"
    assert err[1] == "run: loading data: synthetic"
    assert re.fullmatch(r"run: teacher: training gcn \(at most 3 epochs; cached in .*cache/\w+\)", err[2])
    assert [line.split(",")[0] for line in err[3:6]] == [f"teacher gcn: epoch {e}/3" for e in (1, 2, 3)]
    assert "best val/acc" in err[3] and "elapsed" in err[3]
    assert err[6] == "run: student: training vqgraph (at most 3 epochs)"
    assert err[7].startswith("student vqgraph: epoch 1/3, loss ")
    assert err[-1] == f"run: writing: {out / 'student.pt'}, {out / 'results.json'}"
    assert json.loads((out / "results.json").read_text())["chosen_by"] == why
    # --quiet: none of it; the same run again is reused, and says so
    assert run_cli.main([*argv, "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert run_cli.main(argv) == 0
    assert f"run: {out} holds this run, finished: reused (--fresh trains it again)" in capsys.readouterr().err


@pytest.mark.parametrize("flags,why", [
    ([], "chosen by the preset's recipe (vqgraph/presets/cora.yaml, recipe.transductive)"),
    (["--method", "mlp"], "method named by --method, teacher chosen by the preset's recipe "
                          "(vqgraph/presets/cora.yaml, recipe.transductive)"),
    (["--teacher", "sage"], "teacher named by --teacher, method chosen by the preset's recipe "
                            "(vqgraph/presets/cora.yaml, recipe.transductive)"),
    (["--method", "mlp", "--teacher", "sage"], "named by --method and --teacher"),
    (["--dataset", "synthetic"], "teacher gcn and method auto chosen by default (no preset recipe for this graph)"),
    (["--dataset", "synthetic", "--teacher", "sage"],
     "teacher named by --teacher, method auto, chosen by default (no preset recipe for this graph)"),
])
def test_why_the_method_and_teacher_were_chosen(flags, why):
    args, spec, _ = parse_run(run_cli.build_parser(), ["--dataset", "cora", *flags])
    assert run_cli.chosen_by(args, spec) == why


def test_an_offline_wandb_run_says_where_it_is_and_how_to_sync_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_SILENT", "true")
    with WandbLogger("offline", name="t", dir=tmp_path) as logger:
        logger.log_metrics({"a": 1.0}, 0)
        folder = logger.run_dir
    assert folder.parent == tmp_path / "wandb" and folder.name.startswith("offline-run-")
    lines = [line for line in capsys.readouterr().err.splitlines() if "W&B" in line]
    assert lines == [f"W&B: offline run saved in {folder}; upload it with: wandb sync {folder}"]


# ---- every documented command on the plain install ---------------------------------------------
EXTRAS = ("onnx", "onnxruntime", "onnxscript", "matplotlib", "sklearn")  # setup.cfg's extras, not installed
BLOCKER = f'''"""The optional extras absent, as on a plain `pip install -e .`: the path finder does not see them."""
import sys
from importlib.machinery import PathFinder


class _Plain:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.split(".")[0] in {EXTRAS!r}:
            return None
        return PathFinder.find_spec(name, path, target)

    @staticmethod
    def invalidate_caches():
        PathFinder.invalidate_caches()


sys.meta_path[:] = [_Plain if finder is PathFinder else finder for finder in sys.meta_path]
'''
TINY = ["--set", *FAST]
GRID = ["--seeds", "0", "--cache", "{tmp}/cache"]
COMMANDS = {  # tiny arguments of each documented command; a command not here runs --help
    "experiments.run": ["--dataset", "synthetic", "--out", "{tmp}/run", "--cache", "{tmp}/cache", *TINY],
    "experiments.train_teacher": ["--dataset", "synthetic", "--out", "{tmp}/teacher", *TINY],
    "experiments.reproduce": ["--datasets", "synthetic", "--settings", "transductive", "--methods", "mlp",
                              "--runs", "{tmp}/grid", *GRID, *TINY],
    "experiments.sweep": ["--datasets", "synthetic", "--variants", "ref:" + ";".join(FAST), "--runs", "{tmp}/sweep", *GRID],
    "experiments.speed": ["--graphs", "csbm:300:900", "--repeats", "2", "--warmup", "1", "--widths", "1",
                          "--out", "{tmp}/speed"],
    "experiments.datasets": ["--data-root", "{tmp}/no-data"],
    "experiments.export": ["{tmp}/run/student.pt"],  # after experiments.run (the dict's order)
}
SKIPS = {  # what a command says when it skips the optional part
    "experiments.run": "matplotlib is not installed: no figure is written",
    "experiments.speed": "MLP onnxruntime: skipped on every graph (backend 'onnxruntime' needs the 'onnxruntime' package",
}


def documented_commands() -> list:
    """Every ``python -m experiments.X`` named in README.md and docs/ (the lab's studies and
    benchmarks excepted: they need the ``lab`` extra, as their row says)."""
    text = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    found = set(re.findall(r"-m (experiments(?:\.\w+)+)", text))
    return sorted(m for m in found if not m.startswith(("experiments.studies", "experiments.bench")))


def test_every_documented_command_runs_without_the_optional_extras(tmp_path):
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(BLOCKER)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), str(REPO)]), OMP_NUM_THREADS="1")
    probe = subprocess.run([sys.executable, "-c", "import matplotlib"], env=env, capture_output=True, text=True)
    assert "ModuleNotFoundError: No module named 'matplotlib'" in probe.stderr  # the extras are absent
    commands = documented_commands()
    assert set(COMMANDS) <= set(commands), "a command given tiny arguments here is no longer documented"
    for module in [*COMMANDS, *(m for m in commands if m not in COMMANDS)]:
        argv = [a.format(tmp=tmp_path) for a in COMMANDS.get(module, ["--help"])]
        done = subprocess.run([sys.executable, "-m", module, *argv], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, f"{module} {argv}:\n{done.stderr[-3000:]}"
        assert "Traceback" not in done.stderr, f"{module}:\n{done.stderr[-3000:]}"
        assert SKIPS.get(module, "") in done.stdout + done.stderr, f"{module}:\n{done.stdout}\n{done.stderr}"


def test_train_teacher_in_a_log_says_each_phase(tmp_path, capsys):
    """``experiments.train_teacher`` printed nothing but its final line off a terminal."""
    from experiments import train_teacher

    out = tmp_path / "teacher"
    argv = ["--dataset", "synthetic", "--out", str(out), "--set", *FAST]
    assert train_teacher.main(argv) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("train_teacher: ")]
    assert err == ["train_teacher: loading data: synthetic", f"train_teacher: training gcn (at most 3 epochs) into {out}",
                   f"train_teacher: written: {out / 'teacher.pt'}, {out / 'results.json'}"]
    assert train_teacher.main([*argv, "--quiet"]) == 0
    assert "train_teacher:" not in capsys.readouterr().err
