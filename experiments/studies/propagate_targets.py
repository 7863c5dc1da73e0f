"""The teacher's targets before and after teacher-side propagation (``distill.propagate``), scored
by their own argmax: on the teacher's half of validation, the student's half, and test.

    python -m experiments.studies.propagate_targets --datasets cora citeseer --setting transductive \
        --seeds 0-4 --set data.val_split=halves --variants "cs:distill.propagate=cs" \
        [--method glnn] [--cache runs/cache/teachers] [--out experiments/results/propagate_targets.md]

Per dataset and seed, the teacher of the sweep's runs (same preset, overrides and cache: reused,
trained if missing) gives its targets; each variant's soft labels are what its student would read
(:func:`vqgraph.training.distill.teacher_side`: calibrated on the teacher's validation nodes, then
propagated). Accuracy in % by the sets of :meth:`vqgraph.Evaluator.for_teacher`; each variant is
paired with the raw soft labels by seed. Trains no student; chooses nothing.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Dict, List

import torch

from experiments.common import emit, parse_seeds
from experiments.sweep import parse_variant
from vqgraph.app.cache import cached_teacher
from vqgraph.app.records import markdown_table, mean_std, win_tie_loss
from vqgraph.app.run import RunSpec
from vqgraph.app.task import prepare_task
from vqgraph.evaluation import Evaluator
from vqgraph.training.distill import teacher_side

SETS = {"transductive": ("val", "val_student", "test"), "inductive": ("val", "val_student", "test_tran", "test_ind")}
NAMES = {"val": "val (teacher's half)", "val_student": "val (student's half)"}


def one_seed(dataset: str, setting: str, seed: int, variants: Dict[str, tuple], args) -> Dict[str, Dict[str, float]]:
    """``{variant: {set: accuracy}}`` of one seed; ``raw`` first (the common overrides alone)."""
    out = {}
    for name, overrides in {"raw": (), **variants}.items():
        spec = RunSpec(dataset, setting, args.method, args.teacher, seed, (*args.set, *overrides), quiet=True)
        cfg = spec.config()
        task = prepare_task(dataset, setting, seed, cfg.data, args.data_root)
        targets = cached_teacher(task, cfg, seed, args.cache)[0]
        side = teacher_side(task.data, task.split, targets, cfg.distill.for_student(), "cpu")
        probs = side.probs(torch.arange(targets.num_nodes))
        metrics = Evaluator.for_teacher(task.data.y, task.split)(probs)
        out[name] = {key: metrics[f"{key}/acc"] for key in SETS[setting] if f"{key}/acc" in metrics}
    return out


def rows(dataset: str, setting: str, per_seed: List[Dict[str, Dict[str, float]]]) -> List[list]:
    table = []
    for name in per_seed[0]:
        cells = [dataset, name, len(per_seed)]
        for key in per_seed[0]["raw"]:
            values = [seed[name][key] for seed in per_seed]
            diffs = [seed[name][key] - seed["raw"][key] for seed in per_seed]
            paired = f" ({mean_std(diffs, signed=True)}; {'/'.join(map(str, win_tie_loss(diffs)))})"
            cells.append(mean_std(values) + (paired if name != "raw" else ""))
        table.append(cells)
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.propagate_targets",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--setting", default="transductive", choices=sorted(SETS))
    parser.add_argument("--method", default="glnn")
    parser.add_argument("--teacher", default="gcn")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--set", nargs="*", default=[], help="overrides of every variant (e.g. data.val_split=halves)")
    parser.add_argument("--variants", nargs="+", required=True, help="NAME:OVERRIDE[;OVERRIDE...]")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"))
    parser.add_argument("--out", type=Path, default=None, help="write the table here")
    args = parser.parse_args(argv)
    variants = dict(parse_variant(v) for v in args.variants)
    table, keys = [], []
    for dataset in args.datasets:
        per_seed = [one_seed(dataset, args.setting, seed, variants, args) for seed in parse_seeds(args.seeds)]
        table += rows(dataset, args.setting, per_seed)
        keys = list(per_seed[0]["raw"])  # val_student only with halved validation
    command = "python -m experiments.studies.propagate_targets " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = (f"# The targets' own accuracy, {args.setting}, seeds {args.seeds}\n\nCommand: `{command}`\n\n"
            "Accuracy in % of the soft labels' argmax as the student reads them, mean ± std over seeds; in "
            "brackets, minus the raw soft labels in points (wins/ties/losses).\n\n")
    halved = "val_student" in keys  # else validation is all of it, the teacher's selection set too
    columns = ["dataset", "targets", "seeds"] + [NAMES.get(key, key) if halved else key for key in keys]
    text += markdown_table(columns, table)
    emit(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
