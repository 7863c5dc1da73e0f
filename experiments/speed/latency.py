"""Serving latency and throughput of GNN teachers and graph-free students on one graph: the
machinery behind ``python -m experiments.speed`` (docs/speed.md).

The graphs (real datasets, ``*-like`` heavy-tailed and ``*-csbm`` near-uniform synthetic ones,
``csbm:NODES:EDGES``), the models with random weights (SAGE served block-wise on a gathered
neighbourhood, GCN on the whole graph, MLP students and the predictor's lean backends), the request
timers, one graph's latency and throughput row (:func:`bench_graph`) and its printed tables.
"""

from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn

from vqgraph.app.records import markdown_table
from vqgraph.data import FeatureTransform, degree_stats, load_dataset, make_csbm, make_dcsbm, num_undirected_edges
from vqgraph.data.sampling import NeighborSampler
from vqgraph.models.encoders import prepare_adjacency, resolve_conv
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving import Predictor, ServingModule
from vqgraph.utils.profiling import peak_rss_gib

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
        try:
            predictor = Predictor(base.student, backend=backend)
        except ImportError as err:  # an optional extra (onnx) not installed: its rows are skipped, and said so
            row.setdefault("skipped_rows", {})[f"MLP {backend}"] = str(err)
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


# ---- printed tables -------------------------------------------------------------------------
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
