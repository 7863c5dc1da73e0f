"""experiments.bench.code_term runs and its four forms of the soft-code KL agree (it asserts so)."""

from __future__ import annotations

from experiments.bench import code_term


def test_the_four_forms_agree_and_are_timed(capsys):
    assert code_term.main(["--nodes", "300", "--codes", "32", "--dim", "8", "--batch", "64", "--repeats", "4"]) == 0
    out = capsys.readouterr().out
    assert "cached" in out and "per-batch" in out and "one buffer against mean codes" in out
    assert "the two products alone" in out
