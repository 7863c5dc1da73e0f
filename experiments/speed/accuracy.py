"""Accuracy against latency for ``python -m experiments.speed --results RUNS``: each method's
mean test accuracy from finished distillation runs, with the latency of its architecture, and
the plot of one against the other (matplotlib)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Dict, List

from experiments.speed.latency import GCN, load_graph, student_module, time_requests
from vqgraph.app.config import ExperimentConfig
from vqgraph.models.encoders import prepare_adjacency


def accuracy_points(results_dir: Path, args) -> List[Dict]:
    """Mean test accuracy (transductive) per dataset and method from the distillation runs, with
    the latency of each method's architecture on that dataset."""
    groups: Dict[tuple, List[Dict]] = {}
    for path in sorted(results_dir.glob("*/results.json")):
        r = json.loads(path.read_text())
        if r.get("setting") == "transductive" and r.get("selected_by") == "val/acc":
            groups.setdefault((r["dataset"], r["method"]), []).append(r)
    points = []
    datasets = sorted({d for d, _ in groups})
    for dataset in datasets:
        data = load_graph(dataset, args.data_root)
        n, f, c = data.num_nodes, data.num_features, int(data.y.max()) + 1
        teacher_done = False
        for (d, method), runs in sorted(groups.items()):
            if d != dataset:
                continue
            cfg = runs[0]["config"]
            st = cfg["student"]
            module = student_module(f, c, st["hidden_channels"], st["num_layers"]).eval()
            t = time_requests(lambda idx, m=module, x=data.x: m(x[idx]), n, args.nodes, args.repeats * 10,
                              args.warmup * 10, 4)
            acc = statistics.mean(r["metrics"]["test/acc"] for r in runs)
            points.append({"dataset": dataset, "method": method, "accuracy": acc, "latency_ms": t["median_ms"],
                           "runs": len(runs)})
            if not teacher_done:
                tc = ExperimentConfig.from_preset(dataset, runs[0]["teacher"]).teacher  # the preset the runs used
                gcn = GCN(f, tc.hidden_channels, c, tc.num_layers + 1).eval()  # encoder + output layer
                adj = prepare_adjacency("gcn", data.edge_index, n)
                t = time_requests(lambda idx, g=gcn, x=data.x, a=adj: g(x, a)[idx], n, args.nodes,
                                  max(3, args.repeats // 5), 1, 3)
                acc = statistics.mean(r["teacher_metrics"]["test/acc"] for r in runs)
                points.append({"dataset": dataset, "method": f"teacher ({runs[0]['teacher']}, whole graph)",
                               "accuracy": acc, "latency_ms": t["median_ms"], "runs": len(runs)})
                teacher_done = True
    return points


def plot(points: List[Dict], path: Path) -> None:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = sorted({p["dataset"] for p in points})
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.2 * len(datasets), 3.6), squeeze=False)
    markers = {"mlp": "s", "glnn": "^", "vqgraph": "*"}
    for ax, dataset in zip(axes[0], datasets):
        for p in (p for p in points if p["dataset"] == dataset):
            ax.scatter(p["latency_ms"], 100 * p["accuracy"], marker=markers.get(p["method"], "o"), s=70,
                       label=p["method"])
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())  # decades only
        ax.set_title(dataset)
        ax.set_xlabel(f"latency, ms ({points[0].get('nodes', 10)} new nodes)")
        ax.set_ylabel("test accuracy, %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    plt.close(fig)
