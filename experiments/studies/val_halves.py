"""Is validation biased toward the teacher it selected? Teacher targets judged on two halves of
validation: the half the teacher was selected and calibrated on, and a half it never saw.

    python -m experiments.studies.val_halves --datasets cora citeseer a-computer a-photo --seeds 0-4 \
        [--out experiments/results/val_halves.md]

Per dataset and seed, the validation nodes of the CPF split are halved per class (half A, half
B, drawn with seed 100 + seed, by ``NodeSplit.halve_validation``). The preset's teacher (the
transductive recipe's) is trained with half A as its validation set (early stopping, checkpoint
choice); its soft labels are calibrated on half A. Then each variant of the targets (raw soft
labels, and soft labels smoothed over neighbours: ``distill.smooth_hops`` / ``smooth_alpha``) is
scored by the accuracy of its argmax on half A, on half B and on the CPF test nodes. If half A
favours the raw targets while half B and test favour smoothing, validation is biased toward the
teacher it selected. Reads no test label for any choice: the table only reports.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path
from typing import List

import torch.nn.functional as F

from experiments.common import emit, parse_seeds
from vqgraph.app.records import markdown_table, mean_std
from vqgraph.app.run import RunSpec
from vqgraph.app.task import prepare_task
from vqgraph.losses import calibrate_temperature
from vqgraph.targets import smooth_soft_labels
from vqgraph.training import fit_teacher

VARIANTS = ((0, 0.0), (2, 0.5), (10, 0.5), (10, 0.8))  # (smooth_hops, smooth_alpha); (0, 0): raw soft labels


def one_seed(dataset: str, seed: int, data_root) -> List[List[float]]:
    """[variant][half A, half B, test] accuracies (%) of one seed."""
    cfg = RunSpec(dataset, "transductive", "glnn", "gcn", seed).config()
    data, split, _ = prepare_task(dataset, "transductive", seed, cfg.data, data_root)
    split = split.halve_validation(data.y, seed=100 + seed)
    val_a, val_b = split.for_teacher().val_idx, split.for_student().val_idx
    targets = fit_teacher(data, split, cfg.teacher, replace(cfg.train, progress=False)).targets
    probs = F.softmax(targets.logits / calibrate_temperature(targets.logits[val_a], data.y[val_a]), dim=-1)
    edges = split.observed_edges(data.edge_index)
    out = []
    for hops, alpha in VARIANTS:
        right = (smooth_soft_labels(probs, edges, hops, alpha).argmax(-1) == data.y).float() * 100
        out.append([float(right[val_a].mean()), float(right[val_b].mean()), float(right[split.test_idx].mean())])
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.val_halves", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cora", "citeseer", "a-computer", "a-photo"])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the table to OUT.md")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    rows = []
    for dataset in args.datasets:
        per_seed = [one_seed(dataset, seed, args.data_root) for seed in seeds]
        for v, (hops, alpha) in enumerate(VARIANTS):
            name = "raw soft labels" if hops == 0 else f"smoothed, hops {hops}, alpha {alpha}"
            cells = [mean_std([s[v][k] / 100 for s in per_seed]) for k in range(3)]
            diffs = [mean_std([(s[v][k] - s[0][k]) / 100 for s in per_seed], signed=True) for k in range(3)]
            rows.append([dataset, name, len(seeds), *(f"{c} ({d})" if v else c for c, d in zip(cells, diffs))])
    command = "python -m experiments.studies.val_halves " + shlex.join(argv if argv is not None else sys.argv[1:])
    text = (f"# Validation halves: accuracy of the teacher's targets, seeds {args.seeds}\n\nCommand: `{command}`\n\n"
            "Accuracy in % of the targets' argmax, mean ± std over seeds; in brackets, minus the raw soft labels, "
            "in points. Half A: the validation nodes the teacher was selected and calibrated on; half B: the other "
            "half, which it never saw.\n\n")
    text += markdown_table(["dataset", "targets", "seeds", "half A (selected on)", "half B (unseen)", "test"], rows)
    emit(text, args.out.with_suffix(".md") if args.out else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
