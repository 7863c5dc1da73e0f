"""Inference cost of graph-free students against GNN teachers: latency and throughput.

    python -m experiments.speed [--graphs cora citeseer a-computer a-photo arxiv-like arxiv-csbm] \
        [--nodes 10] [--repeats 50] [--results runs/reproduce] [--out experiments/results/speed]

Latency follows GLNN's protocol: ``--nodes`` random nodes are treated as new (inductive) and
each timed request does what a server would do. Teachers: gather the neighbourhood (every
neighbour over 3 hops, or 15 sampled per hop) and its features, then run the model
block-wise (layer l computes only the nodes that layer l+1 needs); GCN runs on the whole
graph. Students: gather the nodes' features and run the MLP. Each request is timed alone,
after warm-up; the median and the 10th-90th percentile spread are reported, with the split of
the teacher's time between gathering and computing.

The width-256 student is also timed through :class:`vqgraph.serving.Predictor`'s lean backends
(``fused``: folded weights, one addmm per layer; ``onnxruntime`` when installed), each called
directly and through ``Predictor.predict`` (with its input checks), against the eager module,
interleaved request by request ("MLP eager (interleaved)" is that run's eager figure).

Throughput: student predictions per second over all nodes (batched), and the teachers'
full-graph inference (every node, whole graph per layer) per second.

Graphs: the real datasets found under the data root; ``arxiv-like`` (ogbn-arxiv's size:
169,343 nodes, 1,166,243 undirected edges, 128 features, 40 classes) and ``products-like``
(ogbn-products' size: 2,449,029 nodes, 61,859,140 edges, 100 features, 47 classes), degree-
corrected CSBMs with heavy-tailed degrees (:func:`vqgraph.data.make_dcsbm`, exponent 2.4);
``arxiv-csbm`` and ``products-csbm``, the same sizes with near-uniform degrees (:func:`make_csbm`);
``csbm:NODES:EDGES``. Each graph's degree mean, maximum and Gini coefficient are reported. Models carry random weights: their cost does not depend on the values. With
``--results`` (distillation runs from ``experiments.reproduce``) a plot of test accuracy
against latency per method is saved as PNG, timing each method with the architecture of its
runs. Figures go to stdout, ``<out>.json`` and ``<out>.png``, with threads, torch version and
CPU model.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Dict

import torch

from experiments.speed.accuracy import accuracy_points, plot
from experiments.speed.latency import bench_graph, print_table
from vqgraph.app.loggers import MODES, WandbLogger
from vqgraph.utils.io import atomic_write_text
from vqgraph.utils.profiling import environment


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--graphs", nargs="+", default=["cora", "citeseer", "a-computer", "a-photo", "arxiv-like", "arxiv-csbm"])
    parser.add_argument("--nodes", type=int, default=10, help="new nodes per request (GLNN: 10)")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=256, help="teacher width (the student 'MLP' has it too)")
    parser.add_argument("--layers", type=int, default=3, help="SAGE layers")
    parser.add_argument("--gcn-layers", type=int, default=2)
    parser.add_argument("--fanout", type=int, default=15)
    parser.add_argument("--widths", type=int, nargs="+", default=[1, 4, 8], help="student widths, multiples of --hidden")
    parser.add_argument("--student-layers", type=int, default=2, help="student depth (vqgraph's default student)")
    parser.add_argument("--batch-size", type=int, default=8192, help="student throughput batch (8192 fits the caches)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: every core)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--results", type=Path, default=None, help="distillation runs for the accuracy plot")
    parser.add_argument("--out", type=Path, default=Path("runs/speed"), help="writes OUT.json (and OUT.png)")
    parser.add_argument("--wandb", default="off", choices=MODES,
                        help="log the latency table and the accuracy-vs-latency figure as one W&B run")
    parser.add_argument("--wandb-project", default="vqgraph")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    env = environment()
    print(f"# {env['cpu']}, {env['threads']} threads, torch {env['torch']}", flush=True)
    rows, said = [], set()
    for name in args.graphs:
        try:
            row = bench_graph(name, args)
        except (FileNotFoundError, MemoryError, RuntimeError) as err:
            print(f"\n{name}: skipped ({type(err).__name__}: {str(err).splitlines()[0]})", flush=True)
            rows.append({"graph": name, "skipped": f"{type(err).__name__}: {err}"})
            continue
        rows.append(row)
        print(print_table([row]), flush=True)
        for label, why in row.get("skipped_rows", {}).items():  # once per row label, not per graph
            if label not in said:
                said.add(label)
                print(f"{label}: skipped on every graph ({why})", flush=True)
    payload = {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, "graphs": rows}
    if args.results is not None:
        points = accuracy_points(args.results, args)
        for p in points:
            p["nodes"] = args.nodes
        payload["accuracy_vs_latency"] = points
        if points:
            try:
                plot(points, args.out.with_suffix(".png"))
                print(f"\nplot: {args.out.with_suffix('.png')}")
            except ImportError as err:  # the plot extra not installed: the figures are still written
                print(f"\nplot: skipped ({err}; pip install -e '.[plot]')")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_suffix(".json"), json.dumps(payload, indent=2) + "\n")
    print(f"figures: {args.out.with_suffix('.json')}")
    if args.wandb != "off":
        log_speed(args, payload)
    return 0


def log_speed(args, payload: Dict) -> None:
    """One W&B run (group ``speed``): every graph's latencies as a table, and the
    accuracy-vs-latency figure as an image when it was made."""
    rows = [[g["graph"], model, v["median_ms"], v["p10_ms"], v["p90_ms"], g["speedup_vs_MLP"][model]]
            for g in payload["graphs"] if "latency" in g for model, v in g["latency"].items()]
    with WandbLogger(args.wandb, args.wandb_project, group="speed", job_type="speed", name=args.out.stem,
                     config={"environment": payload["environment"], "args": payload["args"]},
                     dir=args.out.parent) as logger:
        logger.log_table("speed/latency", ["graph", "model", "median ms", "p10 ms", "p90 ms", "x MLP"], rows)
        if payload.get("accuracy_vs_latency") and args.out.with_suffix(".png").is_file():
            logger.log_image("speed/accuracy_vs_latency", args.out.with_suffix(".png"),
                             "test accuracy against the latency of 10 new nodes")

