"""Teacher accuracy over seeds for named config variants, as a Markdown table.

    python -m experiments.studies.teacher_table --datasets cora citeseer --seeds 0-4 \
        --variants "vq:" "plain:teacher.use_tokenizer=false" "dense:teacher.edge_recon=dense" \
        [--teacher gcn] [--setting transductive] [--out experiments/results/teacher.md]

Each variant is ``NAME:OVERRIDE[;OVERRIDE...]`` on top of the dataset preset. Every run writes
its own ``results.json`` under ``--runs``; finished runs are reused, so the table resumes.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
from pathlib import Path

from experiments.common import emit, parse_seeds
from experiments.train_teacher import main as train_teacher
from vqgraph.app.records import markdown_table, mean_std
from vqgraph.utils.profiling import environment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.teacher_table", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cora", "citeseer"])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--teacher", default="gcn")
    parser.add_argument("--setting", default="transductive")
    parser.add_argument("--variants", nargs="+", default=["vq:"])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--runs", type=Path, default=Path("runs/teacher_table"))
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    seeds = parse_seeds(args.seeds)
    rows = []
    for dataset in args.datasets:
        for variant in args.variants:
            name, _, overrides = variant.partition(":")
            sets = [o for o in overrides.split(";") if o]
            results = []
            for seed in seeds:
                out = args.runs / f"{dataset}-{args.setting}-{args.teacher}-{name}-s{seed}"
                if not (out / "results.json").is_file():
                    cli = ["--dataset", dataset, "--setting", args.setting, "--teacher", args.teacher]
                    cli += ["--seed", str(seed), "--out", str(out), "--quiet"]
                    if args.data_root:
                        cli += ["--data-root", args.data_root]
                    if sets:
                        cli += ["--set", *sets]
                    train_teacher(cli)
                results.append(json.loads((out / "results.json").read_text()))
            test_key = "test/acc" if args.setting == "transductive" else "test_tran/acc"
            rows.append(
                {
                    "dataset": dataset,
                    "variant": name,
                    "overrides": " ".join(sets) or "(preset)",
                    "test": mean_std([r["metrics"][test_key] for r in results]),
                    "val": mean_std([r["metrics"]["val/acc"] for r in results]),
                    "used_frac": statistics.mean(r["codebook"]["used_frac"] for r in results),
                    "epoch_s": statistics.mean(r["timings"]["epoch_s"] for r in results),
                    "seeds": len(results),
                }
            )
    lines = [
        f"Teacher `{args.teacher}`, {args.setting}, seeds {args.seeds}; accuracy in % (mean ± std), "
        f"selected on validation. Command: `python -m experiments.studies.teacher_table {shlex.join(argv or [])}`".rstrip(),
        "",
    ]
    columns = ["dataset", "variant", "overrides", "test acc", "val acc", "codes used", "s/epoch", "seeds"]
    cells = [[r["dataset"], r["variant"], r["overrides"], r["test"], r["val"], f"{r['used_frac']:.3f}",
              f"{r['epoch_s']:.3f}", r["seeds"]] for r in rows]
    lines += markdown_table(columns, cells).splitlines()
    env = environment()
    lines += ["", f"Machine: {env['cpu_count']} CPUs, torch {env['torch']}, {env['threads']} threads."]
    emit("\n".join(lines) + "\n", args.out)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
