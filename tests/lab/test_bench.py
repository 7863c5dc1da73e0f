"""experiments.bench.memory and experiments.bench.wide_features write their figures (timings are
printed, never asserted)."""

from __future__ import annotations

import json

import pytest

from experiments.bench import memory, wide_features


def test_memory_benchmark_measures_each_size_in_its_own_process(tmp_path, capsys):
    out = tmp_path / "mem.json"
    assert memory.main(["--sizes", "3000:12000", "6000:24000", "--out", str(out)]) == 0
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
    assert memory.main(["--sizes", "3000"]) == 2  # NODES:EDGES only
    assert "--sizes takes NODES:UNDIRECTED_EDGES (positive integers), got '3000'" in capsys.readouterr().err


def test_wide_feature_benchmark_times_the_default_teacher_and_student(tmp_path):
    out = tmp_path / "wide.json"
    argv = ["--nodes", "600", "--edges", "2000", "--features", "300", "--density", "0.02", "--epochs", "2",
            "--repeats", "3", "--out", str(out)]
    assert wide_features.main(argv) == 0
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
        wide_features.main(argv[:-2] + ["--repeats", "0"])


def test_wide_feature_benchmark_times_a_whole_default_run(tmp_path):
    out = tmp_path / "run.json"
    argv = ["--nodes", "300", "--edges", "900", "--features", "100", "--density", "0.05", "--full-run", "auto",
            "--out", str(out)]
    assert wide_features.main(argv) == 0
    row = json.loads(out.read_text())
    assert row["teacher_sparse_input"] == "auto" and row["teacher_epochs"] > 100  # patience 100: stopped early or not
    assert row["total_s"] == pytest.approx(row["teacher_s"] + row["student_s"])
