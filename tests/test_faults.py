"""Faults: a diverging run stops with an error naming the epoch and the term, and writes nothing."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from experiments import run as run_cli
from experiments import train_teacher
from vqgraph import DivergenceError
from vqgraph.training.loop import check_finite

FAST = ["train.max_epochs=5", "student_train.max_epochs=5", "teacher.codebook_size=16", "teacher.hidden_channels=16"]


def test_check_finite_names_the_epoch_the_term_and_its_last_finite_value():
    model = nn.Linear(2, 2)
    history = [{"train/loss": 1.5, "loss/ce": 1.0}, {"train/loss": 1.25, "loss/ce": 0.75}]
    check_finite(2, {"train/loss": 1.0, "loss/ce": 0.5}, history, model)  # finite: no error
    with pytest.raises(DivergenceError, match=r"epoch 2: loss/ce = nan \(last finite value 0.75 at epoch 1\)"):
        check_finite(2, {"train/loss": float("nan"), "loss/ce": float("nan")}, history, model)
    with pytest.raises(DivergenceError, match="epoch 0: train/loss = inf .no finite value before it"):
        check_finite(0, {"train/loss": float("inf")}, [], model)
    with torch.no_grad():
        model.bias[1] = float("inf")
    with pytest.raises(DivergenceError, match="parameter 'bias' is not finite"):
        check_finite(3, {"train/loss": 1.0}, history, model)


@pytest.mark.parametrize("where", ["teacher", "student"])
def test_a_diverging_run_stops_with_a_clear_error_and_writes_nothing(tmp_path, capsys, where):
    out, cache = tmp_path / "run", tmp_path / "cache"
    # a weight that overflows float32 makes the term inf at the first step (Adam's steps are bounded
    # by the learning rate, so a huge learning rate alone can stay finite for a few epochs)
    lr = "teacher.feature_recon_weight=1e39" if where == "teacher" else "distill.soft_label_weight=1e39"
    argv = ["--dataset", "synthetic", "--method", "vqgraph", "--seed", "0", "--quiet", "--out", str(out), "--cache", str(cache),
            "--set", *FAST, lr, "student_train.patience=none", "distill.weight_decays=0"]
    assert run_cli.main(argv) == 1
    err = capsys.readouterr().err
    term = "loss/feature_recon" if where == "teacher" else "loss/soft_label"  # the term that broke, not the first in order
    assert err.startswith(f"error: training diverged at epoch 0: {term} = ") and "lower the learning rate" in err
    assert not (out / "results.json").exists() and not (out / "student.pt").exists()
    teachers = list(cache.glob("*/teacher.pt"))
    assert len(teachers) == (0 if where == "teacher" else 1)  # a diverged teacher is never cached
    if where == "teacher":
        argv = ["--dataset", "synthetic", "--seed", "0", "--quiet", "--out", str(tmp_path / "t"), "--set", *FAST, lr]
        assert train_teacher.main(argv) == 1
        assert "training diverged" in capsys.readouterr().err and not (tmp_path / "t").exists()


class _Payload:
    """Unpickling this would create ``path`` (a harmless stand-in for running any code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.mkdir, (self.path,)


def _poison_entry(artifact, damage):
    """A cache entry that loads but does not fit: NaN logits, or a code outside the codebook."""
    payload = torch.load(artifact, weights_only=True)
    if damage == "nan logits":
        payload["tensors"]["logits"][0, 0] = float("nan")
    else:
        payload["tensors"]["codes"][3] = payload["tensors"]["codebook"].size(0)
    torch.save(payload, artifact)


@pytest.mark.parametrize("damage", ["truncated", "malicious pickle", "not ours", "nan logits", "code outside"])
def test_an_unusable_teacher_cache_entry_is_reported_and_retrained(tmp_path, damage):
    import json
    import pickle
    import warnings

    from vqgraph import Predictor, TeacherTargets
    from vqgraph.errors import ArtifactMismatchError

    out, cache, marker = tmp_path / "run", tmp_path / "cache", tmp_path / "executed"
    argv = ["--dataset", "synthetic", "--method", "vqgraph", "--seed", "0", "--quiet", "--out", str(out), "--cache", str(cache),
            "--set", *FAST, "distill.weight_decays=0"]
    assert run_cli.main(argv) == 0
    first = json.loads((out / "results.json").read_text())
    (artifact,) = cache.glob("*/teacher.pt")
    blob = artifact.read_bytes()
    if damage == "truncated":
        artifact.write_bytes(blob[: len(blob) // 2])
    elif damage == "malicious pickle":
        artifact.write_bytes(pickle.dumps(_Payload(marker)))
    elif damage == "not ours":
        torch.save({"weights": torch.zeros(3)}, artifact)  # a readable file, but not a teacher artifact
    else:
        _poison_entry(artifact, damage)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_cli.main([*argv, "--fresh"]) == 0  # --fresh: the finished run is trained again, not reused
    assert any(str(artifact) in str(w.message) and "retrained" in str(w.message) for w in caught)
    if damage in ("nan logits", "code outside"):  # the warning names the field
        field = "'tensors.logits' holds 1 NaN/inf" if damage == "nan logits" else "'tensors.codes' has 1 indices"
        assert any(field in str(w.message) for w in caught), [str(w.message) for w in caught]
    again = json.loads((out / "results.json").read_text())
    assert not again["timings"]["teacher_cached"]  # retrained, not crashed
    assert again["metrics"] == first["metrics"]  # the same teacher and student, one thread
    assert TeacherTargets.load(artifact).num_nodes > 0  # the entry was replaced by a readable teacher
    assert not marker.exists()
    if damage == "malicious pickle":  # the student reader refuses it too, without running it
        bad = tmp_path / "student.pt"
        bad.write_bytes(pickle.dumps(_Payload(marker)))
        with pytest.raises(ArtifactMismatchError, match="not a readable student artifact"):
            Predictor.load(bad)
        assert not marker.exists()


@pytest.mark.parametrize("which", ["--out", "--cache"])
def test_an_unwritable_folder_is_reported_before_any_training(tmp_path, capsys, which):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    folders = {"--out": tmp_path / "run", "--cache": tmp_path / "cache"}
    folders[which] = blocker / "inside"  # cannot be created, whoever runs the test (root too)
    argv = ["--dataset", "synthetic", "--method", "vqgraph", "--seed", "0", "--quiet", "--out", str(folders["--out"]),
            "--cache", str(folders["--cache"]), "--set", *FAST]
    assert run_cli.main(argv) == 1
    err = capsys.readouterr().err
    what = "output folder" if which == "--out" else "teacher cache folder"
    assert err.startswith(f"error: {what} {blocker / 'inside'} cannot be written")
    assert not list(tmp_path.glob("cache/*")) and not (tmp_path / "run").exists()  # nothing trained, nothing left


def test_data_problems_are_one_line_errors_of_the_command_lines(tmp_path, capsys):
    for main in (run_cli.main, train_teacher.main):
        assert main(["--dataset", "coraa", "--out", str(tmp_path / "o"), "--quiet"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: unknown dataset 'coraa'; known datasets: ") and "Traceback" not in err
        missing = tmp_path / "none.npz"
        assert main(["--dataset", str(missing), "--out", str(tmp_path / "o"), "--quiet"]) == 1
        assert capsys.readouterr().err.startswith(f"error: CPF-format file '{missing}' does not exist")
        assert not (tmp_path / "o").exists()
