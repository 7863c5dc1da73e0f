"""Peak memory against graph size: one teacher epoch and one student epoch, each size in a fresh process.

    python -m experiments.bench.memory [--sizes 1000000:10000000 2000000:20000000] [--out FILE.json]

For each ``NODES:UNDIRECTED_EDGES`` size, a fresh process builds the synthetic CSBM graph (128
features, 10 classes; 1% of the nodes are training seeds, 1% validation), then trains

* the teacher for one epoch: mini-batch SAGE with the tokenizer on (1,024 seeds per batch,
  fan-outs 15 and 10, ``teacher.tokenize`` at its default), followed by what ``fit_teacher``
  always does, the layer-wise inference of every node's targets;
* a VQGraph student for one epoch on those targets (batches of 4,096 nodes; soft code
  assignments per batch, never N x K).

It prints, for each size, the resident memory after each stage and the process's peak, and the
bytes of the graph's own tensors (features, edges, labels); then the ratio of the peaks of the
largest and smallest size. Memory linear in E means the ratio follows the sizes (2x the nodes
and edges: at most 2.2x the peak).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from vqgraph.utils.profiling import peak_rss_gib, run_isolated


def _child(size: str) -> dict:
    import torch

    from vqgraph.data import NodeSplit, make_csbm
    from vqgraph.models import TeacherConfig
    from vqgraph.models.student import StudentConfig
    from vqgraph.training import TrainConfig, fit_teacher
    from vqgraph.training.distill import DistillConfig, fit_student
    from vqgraph.utils.profiling import current_rss_gib

    nodes, edges = (int(v) for v in size.split(":"))
    stages = {"start": current_rss_gib()}
    t0 = time.perf_counter()
    data = make_csbm(num_nodes=nodes, num_edges=edges, num_classes=10, num_features=128, seed=0)
    graph_gib = sum(t.numel() * t.element_size() for t in (data.x, data.edge_index, data.y)) / 2**30
    stages["graph"], stages["graph_peak"] = current_rss_gib(), peak_rss_gib()
    perm = torch.randperm(nodes, generator=torch.Generator().manual_seed(0))
    train_n = val_n = nodes // 100  # the steps of an epoch; a step's memory does not depend on their number
    split = NodeSplit(nodes, perm[:train_n], perm[train_n:train_n + val_n], perm[train_n + val_n:],
                      torch.empty(0, dtype=torch.long))
    t1 = time.perf_counter()
    teacher = fit_teacher(data, split, TeacherConfig(conv="sage", hidden_channels=128, edge_recon_samples=20_000),
                          TrainConfig(max_epochs=1, patience=None, batch_size=1024, fanouts=(15, 10), progress=False))
    stages["teacher"], stages["teacher_peak"] = current_rss_gib(), peak_rss_gib()
    t2 = time.perf_counter()
    fit_student(data, split, teacher.targets, StudentConfig(hidden_channels=256, norm="batch"), DistillConfig(),
                TrainConfig(lr=0.01, weight_decay=0.0, max_epochs=1, patience=None, batch_size=4096, progress=False))
    stages["student"], stages["peak"] = current_rss_gib(), peak_rss_gib()
    t3 = time.perf_counter()
    return {"size": size, "nodes": nodes, "edges": edges, "graph_tensors_gib": graph_gib,
            "rss_gib": {k: round(v, 3) for k, v in stages.items()},
            "seconds": {"graph": t1 - t0, "teacher": t2 - t1, "student": t3 - t2},
            "teacher_val_acc": teacher.metrics["val/acc"], "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.memory", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["1000000:10000000", "2000000:20000000"])
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(_child(args.child)))
        return 0

    from experiments.common import report_json

    for size in args.sizes:
        parts = size.split(":")
        if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
            print(f"error: --sizes takes NODES:UNDIRECTED_EDGES (positive integers), got {size!r}", file=sys.stderr)
            return 2
    print(f"{'nodes':>10} {'edges':>11} {'graph GiB':>9} {'after graph':>11} {'gen peak':>8} {'teacher':>8} "
          f"{'student':>8} {'peak GiB':>8} {'seconds':>8}")
    rows = []
    for size in args.sizes:
        row = run_isolated("experiments.bench.memory", ["--child", size])
        rows.append(row)
        rss = row["rss_gib"]
        print(f"{row['nodes']:>10,} {row['edges']:>11,} {row['graph_tensors_gib']:>9.2f} {rss['graph']:>11.2f} "
              f"{rss['graph_peak']:>8.2f} {rss['teacher']:>8.2f} {rss['student']:>8.2f} {rss['peak']:>8.2f} "
              f"{sum(row['seconds'].values()):>8.0f}", flush=True)
    ratio = rows[-1]["rss_gib"]["peak"] / rows[0]["rss_gib"]["peak"]
    scale = rows[-1]["edges"] / rows[0]["edges"]
    print(f"peak ratio {rows[-1]['size']} / {rows[0]['size']}: {ratio:.2f} (edges x{scale:g})")
    report_json({"sizes": rows, "peak_ratio": ratio}, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
