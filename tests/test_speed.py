"""experiments.speed: the benchmark writes its figures and the accuracy-vs-latency plot (timings
are printed, never asserted)."""

from __future__ import annotations

import json

import torch

from experiments import speed


def test_benchmark_writes_json_and_accuracy_plot(tmp_path, capsys):
    runs = tmp_path / "runs"
    for method, acc in (("mlp", 0.6), ("glnn", 0.7), ("vqgraph", 0.75)):
        folder = runs / f"g-{method}"
        folder.mkdir(parents=True)
        result = {
            "dataset": "csbm:400:1200", "setting": "transductive", "method": method, "teacher": "gcn",
            "selected_by": "val/acc", "metrics": {"test/acc": acc}, "teacher_metrics": {"test/acc": 0.8},
            "config": {"student": {"hidden_channels": 32, "num_layers": 2}},
        }
        (folder / "results.json").write_text(json.dumps(result))
    out = tmp_path / "speed"
    argv = ["--graphs", "csbm:400:1200", "--repeats", "3", "--warmup", "1", "--hidden", "16", "--widths", "1", "2",
            "--results", str(runs), "--out", str(out), "--threads", "1"]
    assert speed.main(argv) == 0
    payload = json.loads((tmp_path / "speed.json").read_text())
    row = payload["graphs"][0]
    assert row["nodes"] == 400 and set(row["latency"]) >= {"SAGE full neighbourhood", "SAGE fan-out 15", "MLP", "MLPw2"}
    assert all(v["median_ms"] > 0 and v["p10_ms"] <= v["p90_ms"] for v in row["latency"].values())
    assert row["throughput_nodes_per_s"]["MLP"] > 0
    assert payload["environment"]["threads"] == 1 and payload["environment"]["torch"] == torch.__version__
    methods = {p["method"]: p for p in payload["accuracy_vs_latency"]}
    assert methods["vqgraph"]["accuracy"] == 0.75 and "teacher (gcn, whole graph)" in methods
    assert (tmp_path / "speed.png").read_bytes()[:4] == b"\x89PNG"
    assert "SAGE full neighbourhood" in capsys.readouterr().out
