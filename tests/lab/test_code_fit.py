"""experiments.studies.code_fit: the student's fit to the teacher's codes, read back from finished runs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from experiments.studies import code_fit
from experiments import run as run_cli
from vqgraph.data import load_dataset, make_split
from vqgraph.serving import Predictor
from vqgraph.targets import TeacherTargets

FAST = ["train.max_epochs=3", "student_train.max_epochs=5", "teacher.codebook_size=16", "teacher.hidden_channels=16"]


def test_code_classes_take_the_majority_prediction_and_mark_unused_codes():
    codes = torch.tensor([0, 0, 0, 2, 3, 3])
    predictions = torch.tensor([1, 1, 0, 2, 0, 0])
    classes = code_fit.code_classes(codes, predictions, num_codes=4, num_classes=3)
    assert classes.tolist() == [1, -1, 2, 0]  # code 1 holds no node


def test_code_ranks_count_the_codes_scoring_above_the_teacher_code():
    scores = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.3, 0.1], [0.4, 0.4, 0.0]])
    ranks = code_fit.code_ranks(scores, torch.tensor([0, 2, 1]))
    assert ranks.tolist() == [0, 2, 0]  # nearest; last of three; tied with the nearest counts as nearest


def test_code_fit_reads_runs_and_skips_students_without_codes(tmp_path, capsys):
    grid = tmp_path / "grid"
    for method in ("glnn", "vqgraph"):
        argv = ["--dataset", "synthetic", "--method", method, "--seed", "0", "--out", str(grid / method),
                "--cache", str(tmp_path / "cache"), "--quiet", "--wandb", "off", "--set", *FAST]
        assert run_cli.main(argv) == 0
    fit = code_fit.run_fit(grid / "vqgraph")
    assert fit["agreement"] <= fit["top10"]
    result = json.loads((grid / "vqgraph" / "results.json").read_text())
    # agreement through the serving path: the saved student on raw features, codes against the teacher's
    targets = TeacherTargets.load(result["teacher_artifact"])
    raw = load_dataset("synthetic", seed=0)
    split = make_split(raw, seed=0)
    test = split.test_idx
    served = Predictor.load(grid / "vqgraph" / "student.pt").predict(raw.x[test]).codes
    assert fit["agreement"] == pytest.approx(float((served == targets.codes[test]).double().mean()), abs=1e-9)
    # the teacher's margin between its two nearest codes, computed here from z and the codebook
    cosines = F.normalize(targets.z[test], dim=-1) @ F.normalize(targets.codebook, dim=-1).t()
    top = cosines.sort(-1, descending=True).values
    assert fit["teacher_margin"] == pytest.approx(float((top[:, 0] - top[:, 1]).double().mean()), abs=1e-5)
    # nodes whose codes agree get the same readout: the readouts differ by at most the disagreement
    assert abs(fit["teacher_readout"] - fit["student_readout"]) <= 1 - fit["agreement"] + 1e-9
    # the split and normalised features are rebuilt from the run: the student's accuracy comes back exactly
    assert fit["student_acc"] == pytest.approx(result["metrics"]["test/acc"], abs=1e-9)
    with pytest.raises(ValueError, match="no codebook"):
        code_fit.run_fit(grid / "glnn")
    out = tmp_path / "fit.md"
    assert code_fit.main([str(grid), "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith(f"| {grid} ")]
    assert len(rows) == 1 and "| synthetic | transductive | 1 |" in rows[0]  # the glnn run is skipped
    with pytest.raises(SystemExit):
        code_fit.main([str(tmp_path / "empty")])
    assert "no finished runs" in capsys.readouterr().err
