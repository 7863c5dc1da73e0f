"""A validation sweep: named config variants over datasets, settings and seeds, chosen on validation.

    python -m experiments.sweep --datasets cora citeseer --settings inductive --method glnn --seeds 0-4 \
        --variants "base:" "wd:student_train.weight_decay=0.0005" "adv:distill.adversarial_weight=0.1" \
        [--runs runs/sweep] [--out experiments/results/sweep_x.md]

Each variant is ``NAME:OVERRIDE[;OVERRIDE...]`` on top of the dataset preset; the first one is
the reference. Every run is an ``experiments.run`` run written to
``<runs>/<name>/<dataset>-<setting>-<method>-<teacher>-s<seed>/``; finished runs are reused (and
refused if their recorded config differs), so a killed sweep resumes. Variants of one seed share
the split and the cached teacher (unless a variant changes the teacher), so the table gives, per
(dataset, setting), each variant's validation and test accuracy and its paired difference to the
reference on both: choose on the validation columns (``*`` marks the best mean validation
accuracy), read the test columns only as the outcome of that choice.
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Dict, List

from experiments.common import emit, parse_seeds, seeds_argument
from vqgraph.app.grid import finished_run
from vqgraph.app.records import markdown_table, mean_std, win_tie_loss
from vqgraph.app.run import RunSpec
from vqgraph.errors import ConfigError, VQGraphError
from vqgraph.training.loop import progress


def parse_variant(text: str):
    name, sep, overrides = text.partition(":")
    if not sep or not name:
        raise ConfigError(f"variant {text!r} must look like NAME:OVERRIDE[;OVERRIDE...] (NAME: for the preset as is)")
    return name, tuple(o for o in overrides.split(";") if o)


def paired_cell(values: List[float], reference: List[float]) -> str:
    diffs = [a - b for a, b in zip(values, reference)]
    return f"{mean_std(diffs, signed=True)} ({'/'.join(map(str, win_tie_loss(diffs)))})"


def table(results: Dict[str, List[Dict]], setting: str) -> str:
    """One (dataset, setting) block: a row per variant, validation first."""
    keys = ["test/acc"] if setting == "transductive" else ["test_ind/acc", "test_prod/acc"]
    names = list(results)
    reference = results[names[0]]
    best = max(names, key=lambda n: statistics.mean(r["metrics"]["val/acc"] for r in results[n]))
    rows = []
    for name in names:
        runs = results[name]
        metric = lambda key, rs=runs: [r["metrics"][key] for r in rs]  # noqa: E731
        row = [name + (" *" if name == best else ""), len(runs), mean_std(metric("val/acc")),
               paired_cell(metric("val/acc"), [r["metrics"]["val/acc"] for r in reference])]
        for key in keys:
            row += [mean_std(metric(key)), paired_cell(metric(key), [r["metrics"][key] for r in reference])]
        rows.append(row + [mean_std([r["teacher_metrics"][keys[0]] for r in runs])])
    columns = ["variant", "seeds", "val", "val - ref (w/t/l)"]
    for key in keys:
        columns += [key, f"{key} - ref (w/t/l)"]
    columns.append(f"teacher {keys[0]}")  # a variant may change the teacher (or average several)
    return markdown_table(columns, rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--settings", nargs="+", default=["transductive"], choices=["transductive", "inductive"])
    parser.add_argument("--method", default="vqgraph")
    parser.add_argument("--teacher", default="gcn")
    parser.add_argument("--seeds", default="0-4", type=seeds_argument)
    parser.add_argument("--variants", nargs="+", required=True, help="NAME:OVERRIDE[;OVERRIDE...], the first is the reference")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--runs", type=Path, default=Path("runs/sweep"))
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"))
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here")
    args = parser.parse_args(argv)
    try:
        variants = dict(parse_variant(v) for v in args.variants)
        grid = [(d, s, name, seed) for d in args.datasets for s in args.settings for seed in parse_seeds(args.seeds)
                for name in variants]
        for d, s, name, seed in grid:  # every config is checked before anything trains
            RunSpec(d, s, args.method, args.teacher, seed, variants[name]).config()
    except ConfigError as err:
        parser.error(str(err))
    blocks: Dict[tuple, Dict[str, List[Dict]]] = {}
    for dataset, setting, name, seed in progress(grid, "sweep", enabled=True):
        spec = RunSpec(dataset, setting, args.method, args.teacher, seed, variants[name], quiet=True)
        try:
            result = finished_run(spec, args.runs / name / spec.name, args.cache, args.data_root)
        except ConfigError as err:
            parser.error(str(err))
        except VQGraphError as err:  # data, divergence, a busy or full folder: one line, no traceback
            print(f"error: {err}", file=sys.stderr)
            return 1
        blocks.setdefault((dataset, setting), {}).setdefault(name, []).append(result)
    command = "python -m experiments.sweep " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = (f"# Sweep: method `{args.method}`, teacher `{args.teacher}`, seeds {args.seeds}\n\n"
            f"Command: `{command}`\n\nAccuracy in %, mean ± std; paired differences to the first variant in "
            "points (wins/ties/losses); `*`: best mean validation accuracy.\n\n")
    for name, overrides in variants.items():
        text += f"- `{name}`: {', '.join(f'`{o}`' for o in overrides) or 'the preset as is'}\n"
    for (dataset, setting), results in blocks.items():
        text += f"\n## {dataset}, {setting}\n\n" + table(results, setting)
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
