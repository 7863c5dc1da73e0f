"""experiments.studies.tokenizers: the joint teacher's codebook against fit_tokenizer's, one record per run."""

from __future__ import annotations

import dataclasses
import json

import pytest

from experiments.studies import tokenizers
from vqgraph.models import TeacherConfig

FAST = ["train.max_epochs=5", "student_train.max_epochs=5", "teacher.codebook_size=16", "teacher.hidden_channels=16"]


def test_the_tokenizer_takes_the_joint_teachers_settings():
    teacher = TeacherConfig(codebook_size=64, decay=0.9, dead_code_threshold=0.0, edge_recon_samples=20_000)
    config = tokenizers.tokenizer_config(teacher)
    assert (config.codebook_size, config.decay, config.dead_code_threshold, config.edge_recon_samples) == (
        64, 0.9, 0.0, 20_000)
    assert config.code_dim is None and config.projection == "linear"  # z's own width, a learned map


def test_one_seed_of_each_variant_writes_a_record_and_a_paired_table(tmp_path, data_root, monkeypatch, capsys):
    monkeypatch.setattr(tokenizers, "TOKENIZER_TRAIN", dataclasses.replace(tokenizers.TOKENIZER_TRAIN, max_epochs=5))
    argv = ["--datasets", "cora", "--seeds", "0", "--runs", str(tmp_path / "runs"), "--cache", str(tmp_path / "cache"),
            "--data-root", str(data_root), "--out", str(tmp_path / "t.md"), "--set", *FAST]
    assert tokenizers.main(argv) == 0
    records = {v: json.loads((tmp_path / "runs" / f"cora-s0-{v}.json").read_text()) for v in tokenizers.VARIANTS}
    joint, posthoc, plain = (records[v] for v in tokenizers.VARIANTS)
    assert joint["teacher_test"] == posthoc["teacher_test"]  # the same cached teacher
    assert joint["tokenizer_s"] == 0.0 and posthoc["tokenizer"]["tokenizer/epochs"] == 5
    for record in records.values():
        assert 1 <= record["codes_used"] <= 16 and 1.0 <= record["perplexity"] <= record["codes_used"] + 1e-6
        assert 0.0 <= record["agreement"] <= record["top10"] <= 1.0
    text = (tmp_path / "t.md").read_text()
    assert "| cora | posthoc | 1 |" in text and "| cora | plain - joint | student test | 1 |" in text
    assert "--set train.max_epochs=5" in text  # the command that made it
    # finished runs are read back, not rerun; another --set is refused, naming the record
    monkeypatch.setattr(tokenizers, "one_run", lambda *args: pytest.fail("a finished run was rerun"))
    assert tokenizers.main(argv) == 0
    assert (tmp_path / "t.md").read_text() == text
    with pytest.raises(SystemExit):
        tokenizers.main([*argv[:-len(FAST)], "train.max_epochs=6"])
    assert "cora-s0-joint.json was made with --set" in capsys.readouterr().err
    # --report: the tables of what finished, naming what did not (and training nothing)
    (tmp_path / "runs" / "cora-s0-plain.json").unlink()
    assert tokenizers.main([*argv, "--report"]) == 0
    partial = (tmp_path / "t.md").read_text()
    assert "Not run yet (the command above runs them and reads back the rest): cora-s0-plain." in partial
    assert "| cora | plain |" not in partial and "--report" not in partial
