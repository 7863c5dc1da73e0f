"""Time and peak memory of teacher training epochs.

    python -m experiments.bench.teacher [--data-root DIR] [--sizes 100000 200000 400000 1000000:10000000]
                                        [--epochs 3] [--batch-size N]

Prints (1) seconds per epoch on Cora at the default config (train step + validation pass, the
same loop ``fit_teacher`` runs), and (2) seconds and peak resident memory of one full-batch
epoch on synthetic CSBM graphs, each size in a fresh process so that its peak is its own.
A size is ``NODES`` (average degree 10) or ``NODES:UNDIRECTED_EDGES``.
"""

from __future__ import annotations

import argparse
import json
import time

from vqgraph.utils.profiling import peak_rss_gib, run_isolated


def _epoch_loop(data, split, epochs: int, batch_size=None, conv: str = "gcn", train_overrides=None) -> dict:
    import torch

    from vqgraph.app.config import ExperimentConfig, replace_checked
    from vqgraph.training import fit_teacher

    cfg = ExperimentConfig.from_preset(getattr(data, "name", "synthetic"), conv)
    train = replace_checked(
        cfg.train,
        {"max_epochs": epochs, "patience": None, "progress": False, "batch_size": batch_size, **(train_overrides or {})},
    )
    torch.manual_seed(0)
    start = time.perf_counter()
    result = fit_teacher(data, split, cfg.teacher, train)
    total = time.perf_counter() - start
    return {"epoch_s": result.metrics["epoch_s"], "total_s": total, "epochs": len(result.history)}


def _synthetic_child(size: str, epochs: int, batch_size) -> dict:
    from vqgraph.data import make_csbm, make_split, num_undirected_edges

    nodes, _, edges = size.partition(":")
    nodes = int(nodes)
    edges = int(edges) if edges else nodes * 5  # average degree 10
    data = make_csbm(num_nodes=nodes, num_edges=edges, num_classes=10, num_features=128, seed=0)
    split = make_split(data, seed=0)
    gen_peak = peak_rss_gib()
    row = _epoch_loop(data, split, epochs, batch_size)
    row.update(
        num_nodes=nodes,
        num_edges=num_undirected_edges(data),
        peak_rss_gib=round(peak_rss_gib(), 3),
        peak_after_generation_gib=round(gen_peak, 3),
        mode="full-batch" if batch_size is None else f"mini-batch {batch_size}",
    )
    return row


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.teacher", description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--sizes", nargs="*", default=["100000", "200000", "400000", "1000000:10000000"])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--cora-epochs", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=None, help="mini-batch mode for the synthetic graphs")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_synthetic_child(args.child, args.epochs, args.batch_size)))
        return 0

    from vqgraph.app.task import DataConfig, prepare_task
    from vqgraph.utils.profiling import environment

    rows = {"environment": environment()}
    try:
        data, split, _ = prepare_task("cora", "transductive", 0, DataConfig(), args.data_root)
        cora = _epoch_loop(data, split, args.cora_epochs)
        rows["cora"] = cora
        print(f"cora, default config: {cora['epoch_s']:.4f} s/epoch over {cora['epochs']} epochs")
    except FileNotFoundError as err:
        print(f"cora skipped: {err}")
    print(f"{'nodes':>9} {'edges':>10} {'mode':>12} {'s/epoch':>8} {'peak GiB':>9} {'ratio':>6}")
    rows["synthetic"] = []
    previous = None
    for size in args.sizes:
        extra = ["--batch-size", str(args.batch_size)] if args.batch_size else []
        row = run_isolated("experiments.bench.teacher", ["--child", size, "--epochs", str(args.epochs), *extra])
        ratio = row["peak_rss_gib"] / previous["peak_rss_gib"] if previous else float("nan")
        row["peak_ratio_vs_previous"] = round(ratio, 3)
        rows["synthetic"].append(row)
        print(
            f"{row['num_nodes']:>9} {row['num_edges']:>10} {row['mode']:>12} {row['epoch_s']:>8.3f} "
            f"{row['peak_rss_gib']:>9.3f} {ratio:>6.2f}"
        )
        previous = row
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
