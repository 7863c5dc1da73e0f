"""Checkpoints and resume: a run killed with SIGKILL mid-training and run again ends bit-identical
to the uninterrupted run (teacher full-batch and mini-batch with sampling, student, 2 processes
under torchrun); a checkpoint of another config is refused; --fresh starts over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
FAST = ["train.max_epochs=10", "train.checkpoint_epochs=2", "student_train.max_epochs=10",
        "student_train.checkpoint_epochs=3", "student_train.patience=none", "teacher.codebook_size=32",
        "teacher.hidden_channels=32", "distill.weight_decays=0.0005"]


def _env(kill=None):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "VQGRAPH_KILL_AFTER_EPOCH"):
        env.pop(key, None)
    if kill:
        env["VQGRAPH_KILL_AFTER_EPOCH"] = kill
    return env


def _run(out, cache, extra, kill=None, nproc=1, fresh=False):
    args = ["-m", "experiments.run", "--dataset", "synthetic", "--method", "vqgraph", "--setting", "inductive", "--seed", "0", "--quiet",
            "--out", str(out), "--cache", str(cache), *(["--fresh"] if fresh else []), "--set", *FAST, *extra]
    if nproc > 1:
        args = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=_env(kill), timeout=600, cwd=REPO)


def _state(out):
    return torch.load(out / "student.pt", weights_only=True)["state_dict"]


def _assert_same_run(a: Path, b: Path):
    ra, rb = (json.loads((p / "results.json").read_text()) for p in (a, b))
    assert ra["metrics"] == rb["metrics"] and ra["teacher_metrics"] == rb["teacher_metrics"]
    assert (ra["best_epoch"], ra["epochs"]) == (rb["best_epoch"], rb["epochs"])
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)  # bit-identical weights


CASES = {
    "teacher, full batch": (["distill.adversarial_weight=0.1"], "teacher:4"),
    "teacher, mini-batch with sampling": (["train.batch_size=32", "train.fanouts=5,5"], "teacher:5"),
    "student, adversarial term and dropout": (["distill.adversarial_weight=0.1", "student.dropout=0.5"], "student:4"),
    "student, weight average and neighbour term": (["student_train.ema=0.9", "distill.neighbour_weight=1"], "student:4"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_killed_run_resumes_to_the_same_result(tmp_path, case):
    extra, kill = CASES[case]
    reference = _run(tmp_path / "ref", tmp_path / "ref-cache", extra)
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = _run(tmp_path / "run", tmp_path / "cache", extra, kill=kill)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    where = tmp_path / "cache" if kill.startswith("teacher") else tmp_path / "run"
    assert list(where.glob("**/checkpoint*.pt")), "the killed run left no checkpoint"
    assert not (tmp_path / "run" / "results.json").exists()
    again = _run(tmp_path / "run", tmp_path / "cache", extra)
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_run(tmp_path / "run", tmp_path / "ref")
    assert not list(tmp_path.glob("**/checkpoint*.pt"))  # a finished run removes its checkpoints


def test_a_checkpoint_of_another_config_is_refused_and_fresh_starts_over(tmp_path):
    killed = _run(tmp_path / "run", tmp_path / "cache", [], kill="student:4")
    assert killed.returncode == -signal.SIGKILL
    changed = _run(tmp_path / "run", tmp_path / "cache", ["student.dropout=0.1"])
    assert changed.returncode == 1 and "error: " in changed.stderr and "student.dropout" in changed.stderr
    assert "--fresh" in changed.stderr and not (tmp_path / "run" / "results.json").exists()
    fresh = _run(tmp_path / "run", tmp_path / "cache", ["student.dropout=0.1"], fresh=True)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    reference = _run(tmp_path / "ref", tmp_path / "cache", ["student.dropout=0.1"])
    _assert_same_run(tmp_path / "run", tmp_path / "ref")
    assert reference.returncode == 0


def test_an_unreadable_checkpoint_is_reported_and_training_starts_over(tmp_path):
    killed = _run(tmp_path / "run", tmp_path / "cache", [], kill="student:4")
    assert killed.returncode == -signal.SIGKILL
    (checkpoint,) = (tmp_path / "run").glob("checkpoint*.pt")
    checkpoint.write_bytes(checkpoint.read_bytes()[:100])  # truncated
    again = _run(tmp_path / "run", tmp_path / "cache", [])
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"checkpoint {checkpoint} is unusable" in again.stderr
    reference = _run(tmp_path / "ref", tmp_path / "cache", [])
    assert reference.returncode == 0
    _assert_same_run(tmp_path / "run", tmp_path / "ref")


def test_two_processes_resume_from_rank_zeros_checkpoint(tmp_path):
    extra = ["train.batch_size=32", "student_train.batch_size=64"]
    reference = _run(tmp_path / "ref", tmp_path / "ref-cache", extra, nproc=2)
    assert reference.returncode == 0, reference.stderr[-3000:]
    killed = _run(tmp_path / "run", tmp_path / "cache", extra, kill="student:4", nproc=2)
    assert killed.returncode != 0
    assert len(list((tmp_path / "run").glob("checkpoint*.pt"))) == 1  # rank 0 alone writes
    again = _run(tmp_path / "run", tmp_path / "cache", extra, nproc=2)
    assert again.returncode == 0, again.stderr[-3000:]
    _assert_same_run(tmp_path / "run", tmp_path / "ref")


@pytest.mark.realdata
def test_two_threads_give_the_same_teacher_and_student_twice(data_root):
    from vqgraph import fit_student, fit_teacher
    from vqgraph.app.config import ExperimentConfig
    from vqgraph.app.task import prepare_task

    cfg = ExperimentConfig.from_preset("cora", "gcn", "vqgraph", [
        "train.max_epochs=8", "train.patience=none", "train.progress=false", "student_train.max_epochs=8",
        "student_train.progress=false", "distill.adversarial_weight=0.1"])
    task = prepare_task("cora", "inductive", 0, cfg.data, data_root)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = []
        for _ in range(2):
            teacher = fit_teacher(task.data, task.split, cfg.teacher, cfg.train)
            student = fit_student(task.data, task.split, teacher.targets, cfg.student, cfg.distill.for_student(),
                                  cfg.student_train)
            runs.append((teacher.targets, student))
    finally:
        torch.set_num_threads(threads)
    (ta, sa), (tb, sb) = runs
    assert torch.equal(ta.logits, tb.logits) and torch.equal(ta.codebook, tb.codebook) and torch.equal(ta.z, tb.z)
    assert sa.metrics == {**sb.metrics, "train_s": sa.metrics["train_s"], "infer_s": sa.metrics["infer_s"]}
    assert all(torch.equal(x, y) for x, y in zip(sa.model.state_dict().values(), sb.model.state_dict().values()))
    assert not torch.are_deterministic_algorithms_enabled()  # the mode is training's only
