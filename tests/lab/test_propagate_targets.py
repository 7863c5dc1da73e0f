"""experiments.studies.propagate_targets: the targets' own accuracy before and after propagation."""

from __future__ import annotations

from experiments.studies import propagate_targets


def test_targets_are_scored_raw_and_propagated_on_both_halves_and_test(data_root, tmp_path, capsys):
    argv = ["--datasets", "cora", "--seeds", "0", "--set", "data.val_split=halves", "train.max_epochs=20",
            "--variants", "cs:distill.propagate=cs", "--data-root", str(data_root), "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out.md")]
    assert propagate_targets.main(argv) == 0
    text = (tmp_path / "out.md").read_text()
    assert "| dataset | targets | seeds | val (teacher's half) | val (student's half) | test |" in text
    raw = next(line for line in text.splitlines() if line.startswith("| cora | raw |"))
    cs = next(line for line in text.splitlines() if line.startswith("| cora | cs |"))
    assert raw.count("±") == 3 and cs.count("(+") + cs.count("(-") == 3  # each set paired with the raw targets
    means = lambda line: [cell.split(" ±")[0] for cell in line.split("|")[4:7]]  # noqa: E731
    assert means(raw) != means(cs)  # propagation moves some argmax
    assert len(list((tmp_path / "cache").glob("*/teacher.pt"))) == 1  # one teacher, shared by the variants


def test_shared_validation_is_named_as_it_is(data_root, tmp_path):
    argv = ["--datasets", "cora", "--seeds", "0", "--setting", "inductive", "--set", "train.max_epochs=20",
            "--variants", "cs:distill.propagate=cs", "--data-root", str(data_root), "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out.md")]
    assert propagate_targets.main(argv) == 0
    assert "| dataset | targets | seeds | val | test_tran | test_ind |" in (tmp_path / "out.md").read_text()
