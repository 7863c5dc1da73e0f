"""Results records: a run's ``results.json``, the finished runs of a folder, and the tables made of them."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

from vqgraph.utils.io import atomic_write_text


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    """``payload`` as indented JSON at ``path``, written atomically."""
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def load_rows(runs: Path) -> List[Dict]:
    """Every finished run's ``results.json`` under ``runs`` (read when the table is made, so a
    grid still running counts what it has finished)."""
    return [json.loads(path.read_text()) for path in sorted(runs.glob("*/results.json"))]


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: a header of ``columns``, then one line per row of cells (``str()`` of each)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The same table as CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def mean_std(values, signed: bool = False, percent: bool = True):
    """Fractions as ``"mean ± std"`` in percent (sample std; 0 for one value); ``signed`` shows a + on
    gains; ``percent=False`` keeps the values' own units (three decimals)."""
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    if not percent:
        return f"{statistics.mean(values):{'+' if signed else ''}.3f} ± {std:.3f}"
    return f"{100 * statistics.mean(values):{'+' if signed else ''}.2f} ± {100 * std:.2f}"


def win_tie_loss(diffs: List[float]) -> tuple:
    """How many paired differences are positive, zero and negative."""
    wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
    return wins, len(diffs) - wins - losses, losses


# (method, baseline) pairs compared seed by seed inside a grid: what the code term adds over soft
# labels, and what soft labels add over labels alone
PAIRS = (("vqgraph", "glnn"), ("glnn", "mlp"))


PAIRED_COLUMNS = ["dataset", "setting", "difference", "metric", "seeds", "mean ± std (points)", "wins / ties / losses"]


def paired(rows: List[Dict], baseline: Optional[List[Dict]] = None, label: str = "", baseline_label: str = "") -> str:
    """Markdown table of :func:`paired_lines` ("" when nothing pairs up)."""
    lines = paired_lines(rows, baseline, label, baseline_label)
    return markdown_table(PAIRED_COLUMNS, lines) if lines else ""


def paired_lines(rows: List[Dict], baseline: Optional[List[Dict]] = None, label: str = "",
                 baseline_label: str = "") -> List[List]:
    """Rows (:data:`PAIRED_COLUMNS`) of per-seed test accuracy differences (points) between runs that share a seed.

    Without ``baseline``, the methods of :data:`PAIRS` are compared inside ``rows``. With it (the
    rows of another grid, e.g. the default configuration), each method of ``rows`` (named
    ``label``, the variant) is compared with the same method in ``baseline`` (named
    ``baseline_label``, e.g. its folder). Runs of one (dataset, setting, seed) share the split
    and the cached teacher (unless a variant changes the teacher's config), so a difference
    cancels their seed noise: the spread left is the students'. Only seeds run on both sides
    count.
    """
    def index(source):
        return {(r["dataset"], r["setting"], r["method"], r["seed"]): r for r in source}

    ours = index(rows)
    if baseline is None:
        theirs, comparisons = ours, [(m, b, f"{m} - {b}") for m, b in PAIRS]
    else:
        theirs = index(baseline)
        methods = dict.fromkeys(r["method"] for r in rows)
        suffix = f" ({baseline_label})" if baseline_label else ""
        comparisons = [(m, m, f"{m} ({label or 'variant'}) - {m}{suffix}") for m in methods]
    lines = []
    for dataset, setting in dict.fromkeys((r["dataset"], r["setting"]) for r in rows):
        keys = ["test/acc"] if setting == "transductive" else ["test_ind/acc", "test_prod/acc"]
        for method, other, name in comparisons:
            seeds = sorted(s for (d, st, m, s) in ours if (d, st, m) == (dataset, setting, method)
                           and (dataset, setting, other, s) in theirs)
            for key in keys if seeds else ():
                diffs = [ours[(dataset, setting, method, s)]["metrics"][key]
                         - theirs[(dataset, setting, other, s)]["metrics"][key] for s in seeds]
                lines.append([dataset, setting, name, key, len(seeds), mean_std(diffs, signed=True),
                              " / ".join(map(str, win_tie_loss(diffs)))])
    return lines
