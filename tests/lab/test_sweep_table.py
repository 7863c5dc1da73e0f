"""experiments.studies.sweep_table pairs a sweep's finished runs by seed, on the seeds asked for."""

from __future__ import annotations

import json

import pytest

from experiments.studies import sweep_table


def _run(root, variant, seed, val, ind, tran, fit="held_out"):
    folder = root / variant / f"cora-inductive-glnn-gcn-s{seed}"
    folder.mkdir(parents=True)
    metrics = {"val/acc": val, "test_ind/acc": ind, "test_tran/acc": tran}
    record = {"seed": seed, "metrics": metrics, "config": {"distill": {"val_targets": fit}},
              "teacher_metrics": {"val/acc": 0.8, "test_ind/acc": 0.79}}
    (folder / "results.json").write_text(json.dumps(record))


def test_rows_pair_each_variant_with_the_reference_on_shared_seeds(tmp_path, capsys):
    for seed, (a, b) in enumerate([(0.70, 0.72), (0.60, 0.60), (0.80, 0.79)]):
        _run(tmp_path, "base", seed, a, a, a)
        _run(tmp_path, "off", seed, b, b, b + 0.01, fit="fit")
    _run(tmp_path, "off", 7, 0.99, 0.99, 0.99, fit="fit")  # outside --seeds and without a reference: ignored
    argv = [str(tmp_path), "--dataset", "cora", "--teacher", "gcn", "--reference", "base", "--seeds", "0-4",
            "--variants", "off", "missing"]
    assert sweep_table.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    off = next(line for line in lines if line.startswith("| off "))
    assert "| yes | 3 |" in off and "70.33 ± 9.61" in off  # mean of 0.72, 0.60, 0.79
    assert "+0.33 (1/1/1)" in off  # differences +0.02, 0, -0.01 on val and test_ind
    assert "+1.33 (2/1/0)" in off  # test_tran: +0.03, +0.01, 0.00
    assert next(line for line in lines if line.startswith("| missing ")).startswith("| missing |  | 0 |")


def test_a_reference_without_runs_is_a_usage_error(tmp_path):
    with pytest.raises(SystemExit) as stop:
        sweep_table.main([str(tmp_path), "--dataset", "cora", "--teacher", "gcn", "--reference", "base",
                          "--variants", "off"])
    assert stop.value.code == 2


def test_transductive_runs_pair_validation_and_test(tmp_path, capsys):
    for seed, (a, b) in enumerate([(0.70, 0.73), (0.60, 0.59)]):
        for variant, acc in (("base", a), ("cs", b)):
            folder = tmp_path / variant / f"cora-transductive-glnn-gcn-s{seed}"
            folder.mkdir(parents=True)
            record = {"seed": seed, "metrics": {"val/acc": acc, "test/acc": acc + 0.1},
                      "config": {"distill": {"val_targets": "auto"}},
                      "teacher_metrics": {"val/acc": 0.8, "test/acc": 0.75}}
            (folder / "results.json").write_text(json.dumps(record))
    argv = [str(tmp_path), "--dataset", "cora", "--teacher", "gcn", "--setting", "transductive", "--reference", "base",
            "--variants", "base", "cs"]
    assert sweep_table.main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| variant | val fitted | seeds | val | Δval | test | Δtest | teacher val / test |")
    cs = next(line for line in lines if line.startswith("| cs "))
    assert cs.startswith("| cs | yes | 2 |")  # val_targets auto: fitted transductively
    assert cs.count("+1.00 (1/0/1)") == 2 and cs.endswith("| 80.00 / 75.00 |")  # +0.03, -0.01 on val and on test
