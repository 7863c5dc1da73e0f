"""experiments.bench.serving_import measures each step of a serving process's start in fresh
processes (timings are printed, never asserted)."""

from __future__ import annotations

import json
import statistics

import pytest

from experiments.bench import serving_import


def test_the_import_bench_times_each_step_in_fresh_processes_and_names_heavy_imports(tmp_path, capsys):
    out = tmp_path / "import.json"
    assert serving_import.main(["--runs", "2", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    assert payload["runs"] == 2 and len(payload["rows"]) == 2 and payload["student_bytes"] > 1_000_000
    assert payload["heavy_imported"] == [] and payload["backend"] in ("onnxruntime", "fused")
    for row in payload["rows"]:
        assert row["total"] == pytest.approx(sum(row[step] for step in serving_import.STEPS))
        assert 0 < row["total"] < row["process"] and len(row["labels"]) == 10
    assert payload["median_s"]["load"] == statistics.median(row["load"] for row in payload["rows"])
    assert "imported neither torch_geometric nor vector_quantize_pytorch" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        serving_import.main(["--repo", str(tmp_path)])  # not a checkout
