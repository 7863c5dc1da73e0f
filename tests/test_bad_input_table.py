"""docs/bad_inputs.md: every row names a test that exists, so the table cannot point at a test
that was renamed or removed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "bad_inputs.md"
REF = re.compile(r"tests/([\w/]+\.py)::(\w+)")


def _rows():
    """The table rows of the page (header and separator lines left out)."""
    lines = [line for line in PAGE.read_text().splitlines() if line.startswith("|")]
    return [line for line in lines if not line.startswith("| input ") and not line.startswith("|---")]


def test_every_row_names_one_test_and_there_are_enough():
    rows = _rows()
    assert all(len(REF.findall(row)) == 1 for row in rows), [row for row in rows if len(REF.findall(row)) != 1]
    assert len(set(rows)) == len(rows) >= 30  # distinct bad inputs
    assert len({ref for row in rows for ref in REF.findall(row)}) >= 30  # distinct tests


def test_every_named_test_is_defined():
    missing = []
    for file, name in sorted(set(REF.findall(PAGE.read_text()))):
        path = ROOT / "tests" / file
        if not path.is_file() or not re.search(rf"^\s*def {name}\(", path.read_text(), flags=re.M):
            missing.append(f"tests/{file}::{name}")
    assert not missing, f"docs/bad_inputs.md names tests that do not exist: {missing}"
