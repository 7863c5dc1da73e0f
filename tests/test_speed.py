"""experiments.speed: the served teacher computes what the full-graph teacher computes, and the
benchmark writes its figures (timings are printed, never asserted)."""

from __future__ import annotations

import json

import pytest
import torch

from experiments import speed
from vqgraph.data import make_csbm
from vqgraph.models.encoders import prepare_adjacency


def test_blockwise_full_neighbourhood_sage_equals_full_graph_sage():
    data = make_csbm(num_nodes=300, num_edges=900, num_features=16, num_classes=4, seed=3)
    torch.manual_seed(0)
    model = speed.SAGE(16, 32, 4, num_layers=3).eval()
    with torch.no_grad():
        full = model(data.x, prepare_adjacency("sage", data.edge_index, data.num_nodes))
        server = speed.NeighbourhoodServer(data, model, fanout=-1, num_layers=3)
        idx = torch.tensor([5, 17, 250, 3])
        served = server(idx)
    assert torch.allclose(served, full[idx], atol=1e-5)
    # block-wise: fewer nodes computed at each deeper layer, the seeds last
    assert server.last["nodes"] > idx.numel() and server.last["edges"] > 0


def test_hop_sizes_shrink_towards_the_seeds():
    assert speed.hop_sizes([10, 40, 200, 900], num_layers=3) == [250, 50, 10]
    assert speed.hop_sizes([10, 40], num_layers=3) == [50, 50, 10]  # the neighbourhood ended early


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


def test_memory_benchmark_measures_each_size_in_its_own_process(tmp_path, capsys):
    from experiments import bench_memory

    out = tmp_path / "mem.json"
    assert bench_memory.main(["--sizes", "3000:12000", "6000:24000", "--out", str(out)]) == 0
    payload = json.loads(out.read_text())
    small, large = payload["sizes"]
    assert (small["nodes"], large["edges"]) == (3000, 24000)
    for row in (small, large):
        rss = row["rss_gib"]
        assert 0 < rss["graph"] <= rss["peak"] and rss["teacher_peak"] <= rss["peak"]
        # features 128 float32 + both directions of every edge (int64) + labels
        assert row["graph_tensors_gib"] * 2**30 == row["nodes"] * (128 * 4 + 8) + 2 * row["edges"] * 16
    assert payload["peak_ratio"] == large["rss_gib"]["peak"] / small["rss_gib"]["peak"]
    assert "peak ratio 6000:24000 / 3000:12000" in capsys.readouterr().out
    assert bench_memory.main(["--sizes", "3000"]) == 2  # NODES:EDGES only
    assert "--sizes takes NODES:UNDIRECTED_EDGES (positive integers), got '3000'" in capsys.readouterr().err


def test_wide_feature_benchmark_times_the_default_teacher_and_student(tmp_path):
    from experiments import bench_wide_features

    out = tmp_path / "wide.json"
    argv = ["--nodes", "600", "--edges", "2000", "--features", "300", "--density", "0.02", "--epochs", "2",
            "--repeats", "3", "--out", str(out)]
    assert bench_wide_features.main(argv) == 0
    row = json.loads(out.read_text())
    assert (row["nodes"], row["features"], row["epochs"]) == (600, 300, 2)
    assert sorted(row["runs_s"]) == ["student_off", "student_on", "teacher_off", "teacher_on"]
    assert row["student_method"] == "vqgraph"  # the package default
    assert all(len(times) == 3 for times in row["runs_s"].values())
    assert row["student_sparse_epoch_s"] == sorted(row["runs_s"]["student_on"])[1]  # the median of three
    assert abs(row["density"] - 0.02) < 0.005  # the features are the requested bag of words
    assert row["teacher_sparse_epoch_s"] > 0 and row["student_epoch_s"] > 0 and row["student_sparse_epoch_s"] > 0
    assert row["teacher_speedup"] == row["teacher_epoch_s"] / row["teacher_sparse_epoch_s"]
    assert row["student_speedup"] == row["student_epoch_s"] / row["student_sparse_epoch_s"]
    with pytest.raises(SystemExit):
        bench_wide_features.main(argv[:-2] + ["--repeats", "0"])


def test_wide_feature_benchmark_times_a_whole_default_run(tmp_path):
    from experiments import bench_wide_features

    out = tmp_path / "run.json"
    argv = ["--nodes", "300", "--edges", "900", "--features", "100", "--density", "0.05", "--full-run", "auto",
            "--out", str(out)]
    assert bench_wide_features.main(argv) == 0
    row = json.loads(out.read_text())
    assert row["teacher_sparse_input"] == "auto" and row["teacher_epochs"] > 100  # patience 100: stopped early or not
    assert row["total_s"] == pytest.approx(row["teacher_s"] + row["student_s"])
