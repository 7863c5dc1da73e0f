"""Runs and output folders: an output folder of its own, a finished run reused or refused, one run
per folder at a time (a lock), a full disk named, an unusable device refused before any work."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from experiments import run as run_cli
from experiments import train_teacher
from vqgraph.app.run import run_experiment
from vqgraph.errors import NotWritableError
from vqgraph.utils import io
from vqgraph.utils.io import LOCK_NAME, atomic_write_text, folder_lock

FAST = ["train.max_epochs=3", "student_train.max_epochs=3", "teacher.codebook_size=16", "teacher.hidden_channels=16"]


def _argv(tmp_path, *extra, out="run", method="glnn"):
    return ["--dataset", "synthetic", "--method", method, "--seed", "0", "--quiet", "--out", str(tmp_path / out),
            "--cache", str(tmp_path / "cache"), "--set", *FAST, *extra]


@pytest.mark.parametrize("out", ["", "."])
def test_an_empty_or_current_output_folder_is_refused(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    for main in (run_cli.main, train_teacher.main):
        assert main(["--dataset", "synthetic", "--out", out, "--quiet", "--set", *FAST]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: output folder '.' is the current folder {tmp_path}: name a folder of the run's own")
        assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_a_finished_run_is_reused_and_one_of_another_method_refused(tmp_path, capsys):
    assert run_cli.main(_argv(tmp_path)) == 0
    first = json.loads((tmp_path / "run" / "results.json").read_text())
    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()}
    capsys.readouterr()
    # the same configuration: reported as finished and reused, nothing retrained or rewritten
    assert run_cli.main(_argv(tmp_path)) == 0
    assert capsys.readouterr().out.strip().endswith(f"-> {tmp_path / 'run'} (finished before: reused)")
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "run").iterdir()} == stamps
    # another method into the same folder: refused, naming the folder and what differs
    assert run_cli.main(_argv(tmp_path, method="mlp")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: output folder {tmp_path / 'run'} holds a finished run of another configuration "
                          "(method: 'glnn' -> 'mlp'; ")
    assert err.strip().endswith("choose another --out, or pass --fresh to replace it")
    assert json.loads((tmp_path / "run" / "results.json").read_text()) == first  # untouched
    # a display-only change (progress) is the same run
    assert run_cli.main([a for a in _argv(tmp_path) if a != "--quiet"]) == 0
    # --fresh trains it again (the same result, one thread), and replaces a run of another method
    assert run_cli.main([*_argv(tmp_path), "--fresh"]) == 0
    again = json.loads((tmp_path / "run" / "results.json").read_text())
    assert again["metrics"] == first["metrics"] and "reused" not in again
    assert (tmp_path / "run" / "student.pt").stat().st_mtime_ns != stamps["student.pt"]
    assert run_cli.main([*_argv(tmp_path, method="mlp"), "--fresh"]) == 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["method"] == "mlp"


def test_a_results_file_that_is_not_a_run_record_is_refused(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "results.json").write_text("{not json")
    assert run_cli.main(_argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: output folder {tmp_path / 'run'} holds a results.json that is not a run's record "
                          "(JSONDecodeError: ")
    assert not list(tmp_path.glob("cache/*/teacher.pt"))  # refused before the teacher


def test_a_folder_another_run_is_writing_is_refused(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with folder_lock(out):  # another run (here: this process) holds the folder
        assert run_cli.main(_argv(tmp_path)) == 1
        assert train_teacher.main(["--dataset", "synthetic", "--quiet", "--out", str(out), "--set", *FAST]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0] == err[1]
    assert err[0] == (f"error: output folder {out} is in use by process {os.getpid()} on {socket.gethostname()} "
                      f"(lock file {out / LOCK_NAME}): wait for that run to end, or choose another folder; remove the "
                      "lock file only if no run is writing there")
    assert list(out.iterdir()) == []  # nothing written, the lock released


def test_two_runs_at_once_one_refuses(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    argv = [sys.executable, "-m", "experiments.run", *_argv(tmp_path)]
    procs = [subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    done = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in done)
    assert codes == [0, 1], done
    refused = next(err for code, err in done if code == 1)
    assert "is in use by process" in refused and "Traceback" not in refused
    assert json.loads((tmp_path / "run" / "results.json").read_text())["method"] == "glnn"
    assert not (tmp_path / "run" / LOCK_NAME).exists()


def test_a_stale_lock_of_a_dead_process_is_taken_over_with_a_warning(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_NAME).write_text(f"{dead.pid} {socket.gethostname()}\n")
    with pytest.warns(UserWarning, match=f"taking over the lock of process {dead.pid}, which is no longer running") as got:
        assert run_cli.main(_argv(tmp_path)) == 0
    assert (out / "results.json").is_file() and not (out / LOCK_NAME).exists()
    # the warning points at the code that took the lock, not at contextlib.py (`result = _enter(cm)` before)
    assert [w.filename for w in got if "taking over" in str(w.message)] == [run_experiment.__code__.co_filename]


class _FullDisk:
    """A file whose writes fail as on a full disk."""

    def __init__(self, fd, mode):
        self.real = os.fdopen(fd, mode)

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.real.close()


def test_a_full_disk_is_reported_naming_the_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(io, "_open", _FullDisk)
    with pytest.raises(NotWritableError, match=f"no space left on device for {tmp_path}: a.txt was not written"):
        atomic_write_text(tmp_path / "a.txt", "text")
    assert list(tmp_path.iterdir()) == []  # no temporary file left
    assert run_cli.main(_argv(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: no space left on device for {tmp_path / 'cache'}") and "Traceback" not in err
    assert "teacher.pt was not written (nothing half-written was kept)" in err
    assert not list(tmp_path.glob("**/*.tmp")) and not list(tmp_path.glob("**/teacher.pt"))
    assert not (tmp_path / "run").exists()


def test_a_quota_exceeded_names_it(tmp_path, monkeypatch):
    def fail(fd, mode):
        os.close(fd)
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(io, "_open", fail)
    with pytest.raises(NotWritableError, match=r"no space left on device for .* \(disk quota exceeded\)"):
        io.atomic_torch_save({"a": torch.zeros(2)}, tmp_path / "x.pt")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device,words", [
    ("cuda", "CUDA is not available (torch "),
    ("cuda:1", "CUDA is not available (torch "),
    ("foo", "not a torch device; use cpu, cuda, cuda:N or mps"),
    ("meta", "device type 'meta' is not one vqgraph trains on"),
    ("cpu:1", "the CPU has no device index"),
])
def test_an_unusable_device_is_one_line_before_any_work(tmp_path, capsys, device, words):
    for main in (run_cli.main, train_teacher.main):  # a missing dataset would be reported later: never reached
        assert main(["--dataset", str(tmp_path / "none.npz"), "--device", device, "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: device {device!r} (train.device, --device): {words}")
        assert len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_shared_with_other_files_or_the_cache_is_refused(tmp_path, monkeypatch, capsys):
    """The file system's root, the home folder, a folder holding the current one, the repository,
    a file, the teacher cache: refused before any work (``--out /`` wrote student.pt into / before)."""
    work = tmp_path / "work" / "here"
    work.mkdir(parents=True)
    (tmp_path / "afile").write_text("x")
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    cases = [("/", "is the file system's root"), (str(tmp_path / "home"), "is the home folder"),
             (str(tmp_path / "work"), "is a folder holding the current folder"),
             (str(tmp_path / "afile"), "is a file, not a folder")]
    for out, words in cases:
        for main, more in ((run_cli.main, ["--cache", str(tmp_path / "cache")]), (train_teacher.main, [])):
            assert main(["--dataset", "synthetic", "--quiet", "--out", out, *more, "--set", *FAST]) == 2
            err = capsys.readouterr().err
            assert err.startswith(f"error: output folder {out!r} {words}") and len(err.strip().splitlines()) == 1
    for out in (tmp_path / "cache", tmp_path / "cache" / "x"):
        assert run_cli.main(["--dataset", "synthetic", "--quiet", "--out", str(out), "--cache", str(tmp_path / "cache"),
                             "--set", *FAST]) == 2
        assert "is the teacher cache folder" in capsys.readouterr().err
    # nothing written; the (empty) folders the user made are left in place (removed on an error before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "home", "work"]
    assert list((tmp_path / "home").iterdir()) == [] and list((tmp_path / "work").iterdir()) == [work]


def test_a_teacher_record_and_a_student_run_never_take_each_others_folder(tmp_path, capsys):
    """``run`` into a train_teacher folder took the teacher's results.json for a finished run (a
    KeyError traceback); ``train_teacher`` into a finished run replaced its results.json silently."""
    teacher, student = tmp_path / "teacher", tmp_path / "run"
    assert train_teacher.main(["--dataset", "synthetic", "--quiet", "--out", str(teacher), "--set", *FAST]) == 0
    assert run_cli.main(_argv(tmp_path, out="teacher")) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: output folder {teacher} holds a results.json that is not a run's record "
                          "(ValueError: it is a teacher's record (written by experiments.train_teacher)")
    assert run_cli.main(_argv(tmp_path)) == 0
    record = (student / "results.json").read_text()
    capsys.readouterr()
    assert train_teacher.main(["--dataset", "synthetic", "--quiet", "--out", str(student), "--set", *FAST]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: output folder {student} holds a finished student run (experiments.run)")
    assert (student / "results.json").read_text() == record and not (student / "teacher.pt").exists()


def test_a_grid_folder_whose_results_are_not_a_run_record_is_named(tmp_path):
    from vqgraph.app.grid import finished_run
    from vqgraph.app.run import RunSpec
    from vqgraph.errors import ConfigError

    folder = tmp_path / "run"
    folder.mkdir()
    for text, words in (("{not json", "JSONDecodeError"), (json.dumps({"artifact": "teacher.pt", "teacher": "gcn"}),
                                                           "a teacher's record")):
        (folder / "results.json").write_text(text)
        with pytest.raises(ConfigError, match=f"{folder} holds a results.json that is not a run's record .*{words}"):
            finished_run(RunSpec("synthetic", method="glnn"), folder, tmp_path / "cache")
        assert (folder / "results.json").read_text() == text


def test_a_lock_is_never_seen_empty_by_a_process_that_reads_it_at_once(tmp_path, monkeypatch):
    """The pid is written before the lock file appears (a hard link of a written file): a second
    run that finds the lock always reads who holds it (two runs at once used to see an empty lock)."""
    from vqgraph.utils import io

    seen = []
    real_link = os.link

    def link_then_read(src, dst):
        real_link(src, dst)
        seen.append(Path(dst).read_text())  # what a racing process would read at this instant

    monkeypatch.setattr(io.os, "link", link_then_read)
    with io.folder_lock(tmp_path):
        assert seen == [f"{os.getpid()} {socket.gethostname()}\n"]
    assert not (tmp_path / LOCK_NAME).exists() and not list(tmp_path.glob(".*.tmp"))
