"""experiments.studies.label_baselines: the label-only mlp against a validation-tuned linear model."""

from __future__ import annotations

import json

import pytest

from experiments.studies import label_baselines


@pytest.mark.realdata
def test_label_baselines_compare_the_mlp_with_a_tuned_linear_model(tmp_path, data_root):
    out = tmp_path / "lb.md"
    argv = ["--datasets", "cora", "--seeds", "0", "--data-root", str(data_root), "--choose", "--lbfgs", "--out", str(out),
            "--variants", "a:student_train.max_epochs=5;distill.weight_decays=",
            "b:student_train.max_epochs=5;distill.weight_decays=0.5"]
    assert label_baselines.main(argv) == 0
    record = json.loads(out.with_suffix(".json").read_text())["runs"]["cora"]
    linear = record["logistic regression"][0]
    assert 0.45 < linear["test/acc"] < 0.75 and linear["choice"].split(",")[0] in ("none", "row", "standard")
    table = out.read_text()
    best = max(("a", "b"), key=lambda n: record[n][0]["val/acc"])  # chosen on validation, first on ties
    chosen_row = next(line for line in table.splitlines() if "chosen on validation" in line)
    assert f"{100 * record[best][0]['test/acc']:.2f}" in chosen_row
    diff = 100 * (record["a"][0]["test/acc"] - linear["test/acc"])
    assert f"{diff:+.2f}" in next(line for line in table.splitlines() if "| mlp a |" in line)
    lbfgs = [record[name][0] for name in ("L-BFGS linear", "L-BFGS mlp")]
    assert all(r["choice"].startswith("l2=") and 0.3 < r["test/acc"] < 0.8 for r in lbfgs)
    either = max(lbfgs, key=lambda r: r["val/acc"])  # the linear model on ties
    assert f"{100 * either['test/acc']:.2f}" in next(line for line in table.splitlines() if "linear or mlp chosen" in line)
