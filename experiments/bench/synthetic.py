"""Time and peak memory of the synthetic CSBM generators.

    python -m experiments.bench.synthetic [--sizes 100000:1000000 1000000:10000000] [--generators csbm dcsbm]

Each size is ``NODES:UNDIRECTED_EDGES`` and runs in a fresh process per generator (``csbm``:
near-uniform degrees, ``dcsbm``: degree-corrected, heavy-tailed at the exponent of ``experiments.speed``'s graphs), so the peak
resident memory printed is that run's alone (it includes the ~0.4 GiB of the Python + torch
process). The degree mean, maximum and Gini coefficient are printed too.
"""

from __future__ import annotations

import argparse
import json
import time

from vqgraph.utils.profiling import current_rss_gib, peak_rss_gib, run_isolated


def _one(num_nodes: int, num_edges: int, num_features: int, seed: int, generator: str = "csbm") -> dict:
    import torch

    from experiments.speed.latency import DEGREE_EXPONENT
    from vqgraph.data import degree_stats, make_csbm, make_dcsbm, num_undirected_edges

    base = current_rss_gib()
    start = time.perf_counter()
    kwargs = dict(num_nodes=num_nodes, num_edges=num_edges, num_features=num_features, seed=seed)
    data = make_csbm(**kwargs) if generator == "csbm" else make_dcsbm(**kwargs, degree_exponent=DEGREE_EXPONENT)
    seconds = time.perf_counter() - start
    peak = peak_rss_gib()
    degrees = degree_stats(data.edge_index, data.num_nodes)
    same_class = (data.y[data.edge_index[0]] == data.y[data.edge_index[1]]).float().mean().item()
    return {
        "generator": generator,
        "degree_max": degrees["max"],
        "degree_gini": round(degrees["gini"], 3),
        "num_nodes": data.num_nodes,
        "num_edges": num_undirected_edges(data),
        "num_features": data.num_features,
        "edge_homophily": round(same_class, 4),
        "seconds": round(seconds, 2),
        "peak_rss_gib": round(peak, 3),
        "baseline_rss_gib": round(base, 3),
        "threads": torch.get_num_threads(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.synthetic", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", default=["100000:1000000", "1000000:10000000"])
    parser.add_argument("--num-features", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--generators", nargs="+", default=["csbm", "dcsbm"], choices=["csbm", "dcsbm"])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        nodes, edges = (int(v) for v in args.sizes[0].split(":"))
        print(json.dumps(_one(nodes, edges, args.num_features, args.seed, args.generators[0])))
        return 0
    print(f"{'generator':>9} {'nodes':>9} {'edges':>10} {'feats':>5} {'homophily':>9} {'max deg':>8} {'Gini':>5} "
          f"{'seconds':>8} {'peak GiB':>9}")
    rows = []
    for size in args.sizes:
        for generator in args.generators:
            row = run_isolated(
                "experiments.bench.synthetic",
                ["--child", "--sizes", size, "--num-features", str(args.num_features), "--seed", str(args.seed),
                 "--generators", generator],
            )
            rows.append(row)
            print(
                f"{generator:>9} {row['num_nodes']:>9} {row['num_edges']:>10} {row['num_features']:>5} "
                f"{row['edge_homophily']:>9} {row['degree_max']:>8} {row['degree_gini']:>5} {row['seconds']:>8} "
                f"{row['peak_rss_gib']:>9}"
            )
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
