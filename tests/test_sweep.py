"""experiments.sweep: variants side by side on validation and test, paired, resumable."""

from __future__ import annotations

import json

import pytest

from experiments import sweep

FAST = ("train.max_epochs=3;student_train.max_epochs=20;student_train.patience=none;teacher.codebook_size=32;"
        "teacher.hidden_channels=16")


def _results(runs, name):
    return sorted(runs.glob(f"{name}/*/results.json"))


def _by_run(runs, name):
    rows = [json.loads(p.read_text()) for p in _results(runs, name)]
    return {f"{r['setting']}{r['seed']}": r for r in rows}


def test_sweep_pairs_variants_by_seed_and_reuses_finished_runs(tmp_path, capsys):
    runs, cache, out = tmp_path / "runs", tmp_path / "cache", tmp_path / "sweep.md"
    argv = ["--datasets", "synthetic", "--settings", "transductive", "inductive", "--method", "glnn", "--seeds", "0-1",
            "--variants", f"ref:{FAST}", f"wide:{FAST};student.hidden_channels=256",
            "--runs", str(runs), "--cache", str(cache), "--out", str(out)]
    assert sweep.main(argv) == 0
    table = out.read_text()
    assert "## synthetic, transductive" in table and "## synthetic, inductive" in table
    assert "test_ind/acc - ref" in table  # the inductive block reports hidden nodes and prod
    # the reference's difference to itself is 0 on every seed; the variant's is computed from its runs
    assert table.count("| ref") == 2 and "+0.00 ± 0.00 (0/2/0)" in table
    ref, wide = _by_run(runs, "ref"), _by_run(runs, "wide")
    assert len(ref) == len(wide) == 4
    assert all(w["config"]["student"]["hidden_channels"] == 256 for w in wide.values())
    diffs = [wide[k]["metrics"]["val/acc"] - ref[k]["metrics"]["val/acc"] for k in ("transductive0", "transductive1")]
    assert f"{100 * sum(diffs) / 2:+.2f}" in table.split("## synthetic, inductive")[0]
    # the last column is the teacher's accuracy, from the runs' teacher_metrics
    teacher = [ref[f"transductive{s}"]["teacher_metrics"]["test/acc"] for s in (0, 1)]
    ref_row = next(x for x in table.split("## synthetic, inductive")[0].splitlines() if x.startswith("| ref"))
    assert ref_row.endswith(f"| {sweep.mean_std(teacher)} |")
    # the teacher is shared by the variants of a seed
    assert ref["transductive0"]["teacher_artifact"] == wide["transductive0"]["teacher_artifact"]
    stamps = {p: p.stat().st_mtime_ns for p in _results(runs, "*")}
    assert sweep.main(argv) == 0  # finished: nothing is redone
    assert {p: p.stat().st_mtime_ns for p in _results(runs, "*")} == stamps
    changed = [a.replace("hidden_channels=256", "hidden_channels=128") for a in argv]
    with pytest.raises(SystemExit):
        sweep.main(changed)
    assert "student.hidden_channels" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        sweep.main(argv[:-6] + ["--variants", "no-colon"])
