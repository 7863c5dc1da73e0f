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
import statistics
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from experiments.common import markdown_table
from vqgraph.config import ExperimentConfig
from vqgraph.data import FeatureTransform, degree_stats, load_dataset, make_csbm, make_dcsbm, num_undirected_edges
from vqgraph.data.sampling import NeighborSampler
from vqgraph.models.encoders import prepare_adjacency, resolve_conv
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving import Predictor, ServingModule
from vqgraph.training.loggers import MODES, WandbLogger
from vqgraph.utils.io import atomic_write_text
from vqgraph.utils.profiling import environment, peak_rss_gib

ARXIV = dict(num_nodes=169_343, num_edges=1_166_243, num_features=128, num_classes=40)
PRODUCTS = dict(num_nodes=2_449_029, num_edges=61_859_140, num_features=100, num_classes=47)
DEGREE_EXPONENT = 2.4  # degree Gini 0.54 at arxiv's size, as A-computer's 0.55 (docs/speed.md)
SYNTHETIC = {  # name: (generator, arguments): heavy-tailed degrees (*-like) and near-uniform ones (*-csbm)
    "arxiv-like": (make_dcsbm, dict(ARXIV, degree_exponent=DEGREE_EXPONENT)),
    "arxiv-csbm": (make_csbm, ARXIV),
    "products-like": (make_dcsbm, dict(PRODUCTS, degree_exponent=DEGREE_EXPONENT)),
    "products-csbm": (make_csbm, PRODUCTS),
}


def load_graph(name: str, root=None):
    if name in SYNTHETIC:
        generate, kwargs = SYNTHETIC[name]
        return generate(**kwargs, seed=0, name=name)
    if name.startswith("csbm:"):  # csbm:NODES:UNDIRECTED_EDGES, 128 features, 10 classes
        nodes, edges = (int(v) for v in name.split(":")[1:3])
        return make_csbm(num_nodes=nodes, num_edges=edges, num_classes=10, seed=0, name=name)
    data = load_dataset(name, root=root)
    data.x = FeatureTransform.fit(data.x, "row")(data.x)
    return data


# ---- models ---------------------------------------------------------------------------------
class LayerStack(nn.Module):
    """``num_layers`` graph layers of the library's encoder ``kind`` (``vqgraph.models.CONVS``)
    from ``in_channels`` to ``num_classes`` (hidden width between), ReLU between them."""

    def __init__(self, kind: str, in_channels: int, hidden: int, num_classes: int, num_layers: int):
        super().__init__()
        build = resolve_conv(kind).build
        dims = [in_channels] + [hidden] * (num_layers - 1) + [num_classes]
        self.convs = nn.ModuleList(build(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: Tensor, adj) -> Tensor:
        """Full-graph layer-wise forward on a precomputed adjacency."""
        for i, conv in enumerate(self.convs):
            x = conv(x, adj)
            if i < len(self.convs) - 1:
                x = torch.relu(x)
        return x


class SAGE(LayerStack):
    """GLNN's teacher for the speed comparison: SAGEConv (mean) layers."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int, num_layers: int = 3):
        super().__init__("sage", in_channels, hidden, num_classes, num_layers)

    def forward_blocks(self, x: Tensor, edge_index: Tensor, sizes: List[int]) -> Tensor:
        """Block-wise forward on a sampled computation graph: ``sizes[l]`` nodes (a prefix of
        ``x``'s rows) are computed by layer ``l``; ``edge_index`` is source -> target, local ids."""
        for i, conv in enumerate(self.convs):
            n_dst = sizes[i]
            mask = edge_index[1] < n_dst
            x = conv((x, x[:n_dst]), edge_index[:, mask], size=(x.size(0), n_dst))
            if i < len(self.convs) - 1:
                x = torch.relu(x)
        return x


class GCN(LayerStack):
    """GCNConv layers on a precomputed, normalised adjacency."""

    def __init__(self, in_channels: int, hidden: int, num_classes: int, num_layers: int = 2):
        super().__init__("gcn", in_channels, hidden, num_classes, num_layers)


def hop_sizes(n_id_hops: List[int], num_layers: int) -> List[int]:
    """Nodes each layer must compute: layer l needs the nodes within ``num_layers - 1 - l`` hops."""
    cumulative = [sum(n_id_hops[: h + 1]) for h in range(len(n_id_hops))]
    return [cumulative[min(num_layers - 1 - layer, len(cumulative) - 1)] for layer in range(num_layers)]


class NeighbourhoodServer:
    """What a GNN server does per request: gather the computation graph of the query nodes, then
    run the model block-wise on it. ``fanout=-1`` takes every neighbour."""

    def __init__(self, data, model: SAGE, fanout: int, num_layers: int, seed: int = 0):
        self.x, self.model, self.num_layers = data.x, model, num_layers
        self.sampler = NeighborSampler(data.edge_index, data.num_nodes, [fanout] * num_layers)
        self.generator = torch.Generator().manual_seed(seed)
        self.last: Dict[str, float] = {}

    def __call__(self, idx: Tensor) -> Tensor:
        t0 = time.perf_counter()
        n_id, edge_index, per_hop = self.sampler.sample(idx, self.generator, return_counts=True)
        feats = self.x[n_id]
        t1 = time.perf_counter()
        out = self.model.forward_blocks(feats, edge_index, hop_sizes(per_hop, self.num_layers))
        t2 = time.perf_counter()
        self.last = {"gather_s": t1 - t0, "compute_s": t2 - t1, "nodes": n_id.numel(), "edges": edge_index.size(1)}
        return out

# ---- timing ---------------------------------------------------------------------------------
def time_requests(fn: Callable[[Tensor], object], num_nodes: int, k: int, repeats: int, warmup: int, seed: int,
                  details: Optional[Callable[[], Dict[str, float]]] = None) -> Dict[str, float]:
    """Median and 10th-90th percentile of the wall time of ``fn(k random node ids)``."""
    gen = torch.Generator().manual_seed(seed)
    times, extra = [], []
    with torch.inference_mode():
        for r in range(warmup + repeats):
            idx = torch.randperm(num_nodes, generator=gen)[:k]
            t0 = time.perf_counter()
            fn(idx)
            dt = time.perf_counter() - t0
            if r >= warmup:
                times.append(dt)
                if details is not None:
                    extra.append(details())
    out = spread_ms(times, repeats)
    for key in (extra[0] if extra else {}):
        out[f"median_{key}"] = statistics.median(e[key] for e in extra)
    return out


def time_interleaved(fns: Dict[str, Callable[[Tensor], object]], num_nodes: int, k: int, repeats: int, warmup: int,
                     seed: int) -> Dict[str, Dict[str, float]]:
    """:func:`time_requests` for several functions at once: each request's ``k`` node ids go to
    every function, in an order that rotates from request to request."""
    gen, names = torch.Generator().manual_seed(seed), list(fns)
    times: Dict[str, List[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for r in range(warmup + repeats):
            idx = torch.randperm(num_nodes, generator=gen)[:k]
            for j in range(len(names)):
                name = names[(r + j) % len(names)]
                t0 = time.perf_counter()
                fns[name](idx)
                if r >= warmup:
                    times[name].append(time.perf_counter() - t0)
    return {name: spread_ms(ts, repeats) for name, ts in times.items()}


def spread_ms(times: List[float], repeats: int) -> Dict[str, float]:
    """The median and 10th-90th percentiles of wall times in seconds, as milliseconds."""
    q = statistics.quantiles(times, n=10) if len(times) >= 2 else [times[0]] * 9
    return {"median_ms": 1e3 * statistics.median(times), "p10_ms": 1e3 * q[0], "p90_ms": 1e3 * q[-1], "repeats": repeats}


def time_call(fn: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls after one warm-up, seconds."""
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


LEAN_BACKENDS = ("fused", "onnxruntime")


def student_module(in_channels: int, num_classes: int, hidden: int, layers: int) -> ServingModule:
    model = MLPStudent(in_channels, num_classes, StudentConfig(hidden_channels=hidden, num_layers=layers))
    return ServingModule(model, FeatureTransform(), None, "cosine")


def bench_graph(name: str, args) -> Dict:
    t0 = time.perf_counter()
    data = load_graph(name, args.data_root)
    load_s = time.perf_counter() - t0
    n, f, c = data.num_nodes, data.num_features, int(data.y.max()) + 1
    torch.manual_seed(0)
    row: Dict = {"graph": name, "nodes": n, "edges": num_undirected_edges(data), "features": f, "classes": c,
                 "load_s": round(load_s, 2), "degrees": degree_stats(data.edge_index, n)}
    k, reps, warm = args.nodes, args.repeats, args.warmup
    lat: Dict[str, Dict] = {}
    sage = SAGE(f, args.hidden, c, args.layers).eval()
    full = NeighbourhoodServer(data, sage, -1, args.layers, seed=1)
    lat["SAGE full neighbourhood"] = time_requests(full, n, k, max(5, reps // 5), warm, 1, lambda: dict(full.last))
    sampled = NeighbourhoodServer(data, sage, args.fanout, args.layers, seed=2)
    lat[f"SAGE fan-out {args.fanout}"] = time_requests(sampled, n, k, reps, warm, 2, lambda: dict(sampled.last))
    gcn = GCN(f, args.hidden, c, args.gcn_layers).eval()
    gcn_adj = prepare_adjacency("gcn", data.edge_index, n)
    lat["GCN whole graph"] = time_requests(lambda idx: gcn(data.x, gcn_adj)[idx], n, k, max(3, reps // 10), 1, 3)
    students = {}
    for mult in args.widths:
        label = "MLP" if mult == 1 else f"MLPw{mult}"
        students[label] = student_module(f, c, args.hidden * mult, args.student_layers).eval()
        module = students[label]
        lat[label] = time_requests(lambda idx, m=module: m(data.x[idx]), n, k, reps * 10, warm * 10, 4)
    # the width-256 student's serving paths against the eager module, interleaved request by
    # request (the same nodes, the order rotating) so that drift of a noisy machine hits all alike:
    # the predictor's lean backends called directly, and Predictor.predict (input checks too)
    base = students["MLP"]
    paths = {"MLP eager (interleaved)": lambda idx: base(data.x[idx])}
    for backend in LEAN_BACKENDS:
        predictor = Predictor(base.student, backend=backend)
        if predictor.backend != backend:  # onnxruntime not installed
            continue
        students[f"MLP {backend}"] = predictor._run
        paths[f"MLP {backend}"] = lambda idx, r=predictor._run: r(data.x[idx])
        paths[f"MLP {backend}, Predictor.predict"] = lambda idx, p=predictor: p.predict(data.x[idx])
    lat.update(time_interleaved(paths, n, k, reps * 10, warm * 10, 5))
    row["latency"] = lat
    base = lat["MLP"]["median_ms"]
    row["speedup_vs_MLP"] = {key: v["median_ms"] / base for key, v in lat.items()}
    # throughput over all nodes
    thr: Dict[str, float] = {}
    for label, module in students.items():
        seconds = time_call(lambda m=module: [m(part) for part in data.x.split(args.batch_size)], 3)
        thr[label] = n / seconds
    sage_adj = prepare_adjacency("sage", data.edge_index, n)
    thr["SAGE full graph"] = n / time_call(lambda: sage(data.x, sage_adj), 1)
    thr["GCN full graph"] = n / time_call(lambda: gcn(data.x, gcn_adj), 1)
    row["throughput_nodes_per_s"] = thr
    row["peak_rss_gib"] = round(peak_rss_gib(), 2)
    return row


# ---- accuracy against latency ---------------------------------------------------------------
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


LATENCY_COLUMNS = ["model", "latency ms (median)", "p10-p90 ms", "x MLP", "gather ms", "compute ms", "computation graph nodes"]


def print_table(rows: List[Dict]) -> str:
    lines = []
    for row in rows:
        deg = row["degrees"]
        lines.append(
            f"\n{row['graph']}: {row['nodes']:,} nodes, {row['edges']:,} undirected edges, {row['features']} features, "
            f"{row['classes']} classes; degree mean {deg['mean']:.1f}, max {deg['max']:,}, Gini {deg['gini']:.2f}"
        )
        cells = []
        for key, v in row["latency"].items():
            gather = f"{1e3 * v['median_gather_s']:.2f}" if "median_gather_s" in v else ""
            compute = f"{1e3 * v['median_compute_s']:.2f}" if "median_compute_s" in v else ""
            nodes = f"{v['median_nodes']:,.0f}" if "median_nodes" in v else ""
            cells.append([key, f"{v['median_ms']:.3f}", f"{v['p10_ms']:.3f}-{v['p90_ms']:.3f}",
                          f"{row['speedup_vs_MLP'][key]:.1f}", gather, compute, nodes])
        lines.append(markdown_table(LATENCY_COLUMNS, cells).rstrip("\n"))
        throughput = [[key, f"{v:,.0f}"] for key, v in row["throughput_nodes_per_s"].items()]
        lines.append(markdown_table(["throughput", "nodes/s"], throughput).rstrip("\n"))
    return "\n".join(lines)


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
    rows = []
    for name in args.graphs:
        try:
            row = bench_graph(name, args)
        except (FileNotFoundError, MemoryError, RuntimeError) as err:
            print(f"\n{name}: skipped ({type(err).__name__}: {str(err).splitlines()[0]})", flush=True)
            rows.append({"graph": name, "skipped": f"{type(err).__name__}: {err}"})
            continue
        rows.append(row)
        print(print_table([row]), flush=True)
    payload = {"environment": env, "args": {k: str(v) for k, v in vars(args).items()}, "graphs": rows}
    if args.results is not None:
        points = accuracy_points(args.results, args)
        for p in points:
            p["nodes"] = args.nodes
        payload["accuracy_vs_latency"] = points
        if points:
            plot(points, args.out.with_suffix(".png"))
            print(f"\nplot: {args.out.with_suffix('.png')}")
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


if __name__ == "__main__":
    raise SystemExit(main())
