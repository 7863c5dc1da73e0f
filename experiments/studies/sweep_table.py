"""A sweep's finished runs as one paired table with validation, ``test_ind`` and ``test_tran`` side
by side (the sweep's own table shows ``test_prod``); transductively validation and ``test``.

    python -m experiments.studies.sweep_table RUNS --dataset cora --teacher gcn --reference base \
        --variants base base+label_weight0 [--seeds 0-4] [--setting inductive] [--method glnn]

``RUNS`` is an ``experiments.sweep --runs`` folder: ``RUNS/<variant>/<dataset>-<setting>-<method>-
<teacher>-s<seed>/results.json``. Each variant's row pairs it with the reference on the seeds both
finished: mean ± std in %, and the paired difference in points with wins / ties / losses. Reads
what the runs wrote; trains nothing. experiments/results/glnn_baseline.md was made with it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Dict, List

from experiments.common import parse_seeds
from vqgraph.app.records import markdown_table, mean_std, win_tie_loss

METRICS = {"inductive": ("val/acc", "test_ind/acc", "test_tran/acc"), "transductive": ("val/acc", "test/acc")}


def load(folder: Path, pattern: str, seeds) -> Dict[int, dict]:
    """The ``results.json`` of each finished seed of ``seeds`` under ``folder``, by seed."""
    found = (json.loads(p.read_text()) for p in sorted(folder.glob(pattern)))
    return {int(r["seed"]): r for r in found if int(r["seed"]) in seeds}


def paired(values: List[float], reference: List[float]) -> str:
    diffs = [a - b for a, b in zip(values, reference)]
    wins, ties, losses = win_tie_loss(diffs)
    return f"{100 * statistics.mean(diffs):+.2f} ({wins}/{ties}/{losses})"


def row(name: str, runs: Dict[int, dict], reference: Dict[int, dict], metrics=METRICS["inductive"]) -> list:
    seeds = sorted(set(runs) & set(reference))
    if not seeds:
        return [name, "", 0] + [""] * (2 * len(metrics) + 1)
    val_targets = runs[seeds[0]]["config"]["distill"]["val_targets"]
    fits = val_targets == "fit" or (val_targets == "auto" and "test/acc" in metrics)  # auto: fitted transductively
    cells = [name, "yes" if fits else "no", len(seeds)]
    for key in metrics:
        values = [runs[s]["metrics"][key] for s in seeds]
        cells += [mean_std(values), paired(values, [reference[s]["metrics"][key] for s in seeds])]
    teacher = [f"{100 * statistics.mean(runs[s]['teacher_metrics'][k] for s in seeds):.2f}" for k in metrics[:2]]
    return cells + [" / ".join(teacher)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.sweep_table", description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="an experiments.sweep --runs folder")
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--setting", default="inductive", choices=sorted(METRICS))
    parser.add_argument("--method", default="glnn")
    parser.add_argument("--reference", required=True, help="the variant every row is paired with")
    parser.add_argument("--variants", nargs="+", required=True)
    parser.add_argument("--seeds", default="0-9", help="seeds to read, e.g. 0-4 or 5-9 (default 0-9)")
    args = parser.parse_args(argv)
    pattern = f"{args.dataset}-{args.setting}-{args.method}-{args.teacher}-s*/results.json"
    seeds = set(parse_seeds(args.seeds))
    reference = load(args.runs / args.reference, pattern, seeds)
    if not reference:
        parser.error(f"no finished run of the reference {args.reference!r} under {args.runs / args.reference}")
    metrics = METRICS[args.setting]
    columns = ["variant", "val fitted", "seeds"]
    for key in metrics:
        columns += [key.split("/")[0], f"Δ{key.split('/')[0]}"]
    columns.append("teacher " + " / ".join(key.split("/")[0] for key in metrics[:2]))
    rows = [row(name, load(args.runs / name, pattern, seeds), reference, metrics) for name in args.variants]
    sys.stdout.write(markdown_table(columns, rows) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
