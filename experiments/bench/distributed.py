"""Epoch time and peak memory per rank with 1 and 2 processes (torchrun, gloo on CPU).

    python -m experiments.bench.distributed [--nprocs 1 2] [--jobs teacher student] [--epochs 2] [--threads T]
                                            [--out FILE.json]
    python -m experiments.bench.distributed --profile-step [--out FILE.json]   (teacher.tokenize all against inner)

Two jobs, each launched once per process count with ``torch.distributed.run --standalone``:

* ``teacher``: mini-batch training with neighbour sampling (fan-outs 15, 10; 1,024 seed nodes
  per global batch) on a synthetic CSBM graph of 1M nodes / 10M undirected edges (128 features,
  10 classes, 100k training seeds), then the layer-wise sharded inference of its targets.
* ``student``: VQGraph distillation on a graph of ogbn-products' size (2,449,029 nodes, 100
  features, 47 classes; the student needs no edges), from random teacher targets with a 2,048-code
  codebook of width 256: a timing job, not an accuracy one.

Every rank builds the same data from the same seed (the graph is replicated). Each rank reports
seconds per epoch (training + validation), the sharded target inference (teacher), its peak
resident memory and its threads; rank 0 prints one JSON line, the parent a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

PRODUCTS = {"num_nodes": 2_449_029, "num_features": 100, "num_classes": 47}


def _teacher_job(epochs: int) -> dict:
    import torch

    from vqgraph.data import NodeSplit, make_csbm
    from vqgraph.models import TeacherConfig
    from vqgraph.training import TrainConfig, fit_teacher

    data = make_csbm(num_nodes=1_000_000, num_edges=10_000_000, num_classes=10, num_features=128, seed=0)
    perm = torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(0))
    split = NodeSplit(data.num_nodes, perm[:100_000], perm[100_000:110_000], perm[110_000:], torch.empty(0, dtype=torch.long))
    config = TeacherConfig(conv="sage", hidden_channels=128, edge_recon_samples=20_000)
    train = TrainConfig(max_epochs=epochs, patience=None, batch_size=1024, fanouts=(15, 10), progress=False)
    start = time.perf_counter()
    result = fit_teacher(data, split, config, train)
    wall = time.perf_counter() - start
    return {
        "epoch_s": result.metrics["epoch_s"],
        "steps_per_epoch": -(-100_000 // 1024),
        "targets_s": wall - result.metrics["train_s"],
        "val_acc": result.metrics["val/acc"],
    }


def _profile_step(repeats: int = 3) -> list:
    """Where one teacher step of the ``teacher`` job goes, for a rank's share of 1,024 seeds
    (all of them with one rank, 512 with two): sampling, encoder, the rest of the forward pass
    (tokenizer and classifier), backward and optimiser step. Each sampled batch is stepped once
    by a teacher of each ``teacher.tokenize`` form (the same initial weights), so the forms are
    compared on the same subgraphs in one run."""
    import torch
    import torch.nn.functional as F

    from vqgraph.data import make_csbm
    from vqgraph.data.sampling import NeighborBatcher
    from vqgraph.models import TeacherConfig, VQGraphTeacher
    from vqgraph.models.encoders import prepare_adjacency
    from vqgraph.training.teacher import inner_rows

    data = make_csbm(num_nodes=1_000_000, num_edges=10_000_000, num_classes=10, num_features=128, seed=0)
    models = {}
    for form in TOKENIZE_FORMS:
        torch.manual_seed(0)
        model = VQGraphTeacher(128, 10, TeacherConfig(conv="sage", hidden_channels=128, edge_recon_samples=20_000,
                                                      tokenize=form))
        models[form] = (model, torch.optim.Adam(model.parameters(), lr=0.01))
    batcher = NeighborBatcher(data, [15, 10], 1024, use_pyg=False)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for seeds in (1024, 512):
        for _ in range(repeats):
            t0 = time.perf_counter()
            b = batcher.sample(torch.randperm(data.num_nodes, generator=gen)[:seeds], gen)
            adj = prepare_adjacency("sage", b.edge_index, b.num_nodes)
            sample_s = time.perf_counter() - t0
            for form, (model, opt) in models.items():
                t1 = time.perf_counter()
                model.encoder(b.x, adj)
                t2 = time.perf_counter()
                tokenized = inner_rows(b) if form == "inner" else None
                out = model(b.x, adj, b.edge_index, b.batch_size, num_tokenized=tokenized)
                t3 = time.perf_counter()
                total = F.cross_entropy(out.logits, b.y[: b.batch_size]) + sum(out.losses)
                opt.zero_grad()
                total.backward()
                opt.step()
                t4 = time.perf_counter()
                rows.append({"tokenize": form, "seeds": seeds, "sampled_nodes": b.num_nodes,
                             "tokenized_nodes": tokenized or b.num_nodes, "sample_s": sample_s, "encoder_s": t2 - t1,
                             "forward_s": t3 - t2, "tokenizer_s": (t3 - t2) - (t2 - t1), "backward_step_s": t4 - t3,
                             "step_s": sample_s + (t3 - t2) + (t4 - t3)})
    return rows


TOKENIZE_FORMS = ("all", "inner")


def step_speedups(steps: list) -> dict:
    """Mean step seconds of each form per seed count, and the ``all`` / ``inner`` ratio."""
    out = {}
    for seeds in sorted({r["seeds"] for r in steps}, reverse=True):
        mean = {form: sum(r["step_s"] for r in steps if r["seeds"] == seeds and r["tokenize"] == form)
                / sum(1 for r in steps if r["seeds"] == seeds and r["tokenize"] == form) for form in TOKENIZE_FORMS}
        out[str(seeds)] = {**{f"{form}_step_s": v for form, v in mean.items()}, "speedup": mean["all"] / mean["inner"]}
    return out


def _student_job(epochs: int) -> dict:
    import torch
    from torch_geometric.data import Data

    from vqgraph.data import NodeSplit
    from vqgraph.models.student import StudentConfig
    from vqgraph.targets import TeacherTargets
    from vqgraph.training import TrainConfig
    from vqgraph.training.distill import DistillConfig, fit_student

    n, f, c = PRODUCTS["num_nodes"], PRODUCTS["num_features"], PRODUCTS["num_classes"]
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(c, (n,), generator=gen)
    x = torch.randn(n, f, generator=gen)
    x[torch.arange(n), y] += 1.0  # a class signal (in place: no N x F temporaries)
    data = Data(x=x, y=y, edge_index=torch.empty(2, 0, dtype=torch.long), num_nodes=n)
    data.num_classes = c
    perm = torch.randperm(n, generator=gen)
    split = NodeSplit(n, perm[:196_615], perm[196_615:235_938], perm[235_938:], torch.empty(0, dtype=torch.long))
    logits = torch.randn(n, c, generator=gen)
    logits[torch.arange(n), y] += 3.0
    targets = TeacherTargets(
        logits=logits,
        z=torch.randn(n, 256, generator=gen),
        codes=torch.zeros(n, dtype=torch.long),
        codebook=torch.nn.functional.normalize(torch.randn(2048, 256, generator=gen), dim=-1),
    )
    train = TrainConfig(lr=0.01, weight_decay=0.0, max_epochs=epochs, patience=None, batch_size=4096, progress=False)
    result = fit_student(data, split, targets, StudentConfig(hidden_channels=256), DistillConfig(), train)
    return {"epoch_s": result.metrics["train_s"] / result.metrics["epochs"], "steps_per_epoch": -(-n // 4096)}


def _child(job: str, epochs: int) -> None:
    import torch

    from vqgraph import distributed
    from vqgraph.utils.profiling import peak_rss_gib

    me = distributed.init("cpu")
    row = {"student": _student_job, "teacher": _teacher_job}[job](epochs)
    row.update(rank=me.rank, peak_rss_gib=round(peak_rss_gib(), 3), threads=torch.get_num_threads())
    rows = [row] if me.world_size == 1 else [None] * me.world_size
    if me.world_size > 1:
        import torch.distributed as dist

        dist.all_gather_object(rows, row)
    if me.is_main:
        print(json.dumps({"job": job, "world_size": me.world_size, "ranks": rows}))
    distributed.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.distributed", description=__doc__.splitlines()[0])
    parser.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--jobs", nargs="+", default=["teacher", "student"], choices=["teacher", "student"])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="threads per process (default: the cores shared out)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--profile-step", action="store_true", help="time the parts of one teacher step instead")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        _child(args.child, args.epochs)
        return 0

    from experiments.common import report_json
    from vqgraph.app.records import write_json
    from vqgraph.utils.profiling import environment

    if args.profile_step:
        print(f"{'tokenize':>8} {'seeds':>5} {'nodes':>7} {'tokenized':>9} {'sample':>7} {'encoder':>8} "
              f"{'tokenizer':>9} {'backward':>9} {'step':>6}")
        steps = _profile_step()
        for r in steps:
            print(f"{r['tokenize']:>8} {r['seeds']:>5} {r['sampled_nodes']:>7} {r['tokenized_nodes']:>9} "
                  f"{r['sample_s']:>7.2f} {r['encoder_s']:>8.2f} {r['tokenizer_s']:>9.2f} {r['backward_step_s']:>9.2f} "
                  f"{r['step_s']:>6.2f}")
        speedups = step_speedups(steps)
        for seeds, row in speedups.items():
            print(f"{seeds} seeds: step {row['all_step_s']:.2f} s (tokenize=all) -> {row['inner_step_s']:.2f} s "
                  f"(tokenize=inner), {row['speedup']:.1f}x")
        report_json({"steps": steps, "speedup": speedups}, args.out)
        return 0

    results = {"environment": environment(), "runs": []}
    print(f"{'job':>8} {'procs':>5} {'rank':>4} {'threads':>7} {'s/epoch':>8} {'targets s':>9} {'peak GiB':>9}")
    for job in args.jobs:
        for nproc in args.nprocs:
            cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
                   "-m", "experiments.bench.distributed", "--child", job, "--epochs", str(args.epochs)]
            env = dict(os.environ)
            if args.threads:
                env["OMP_NUM_THREADS"] = str(args.threads)
            elif nproc > 1:  # share the cores: torchrun would set 1 thread per process anyway, with a warning
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise RuntimeError(f"{job} with {nproc} process(es) failed:\n{proc.stderr[-4000:]}")
            run = json.loads(proc.stdout.strip().splitlines()[-1])
            results["runs"].append(run)
            for row in run["ranks"]:
                targets = f"{row['targets_s']:>9.1f}" if "targets_s" in row else f"{'':>9}"
                print(f"{job:>8} {nproc:>5} {row['rank']:>4} {row['threads']:>7} {row['epoch_s']:>8.2f} {targets} {row['peak_rss_gib']:>9.2f}")
    if args.out:
        write_json(args.out, results)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
