"""Bit-level snapshot of small training runs, to check that a refactor changes no result.

    python -m experiments.studies.snapshot OUT.json                # in this checkout
    python -m experiments.studies.snapshot --compare A.json B.json # prints every difference, exits 1 if any

Trains on a seeded 600-node CSBM graph, with one thread: SAGE teachers full-batch and
mini-batch in both settings, each distilled into mlp, glnn and vqgraph students (full and
mini-batch), then GCN, GAT, APPNP and sage_gcn teachers with both classifier inputs. It records
every per-epoch history, the final metrics and hashes of the weights and targets. It uses only
the top-level ``vqgraph`` API, so the file can be run against an older checkout too
(``PYTHONPATH=OLD python experiments/studies/snapshot.py before.json``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys

import torch

import vqgraph
from vqgraph import DistillConfig, StudentConfig, TeacherConfig, TrainConfig


def digest(*tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def record(result, *targets) -> dict:
    state = result.model.state_dict()
    metrics = {k: v for k, v in result.metrics.items() if not k.endswith("_s")}  # timings vary
    out = {"weights": digest(*(state[k] for k in sorted(state))), "metrics": metrics, "history": result.history}
    return {**out, "targets": digest(*targets)} if targets else out


def snapshot() -> dict:
    torch.set_num_threads(1)
    data = vqgraph.normalize_features(vqgraph.make_csbm(600, 4, 6.0, 0.8, 1.0, 32, seed=3), "row")
    out = {}
    for setting in ("transductive", "inductive"):
        split = vqgraph.make_split(data, seed=0, setting=setting)
        for batch in (None, 64):
            train = TrainConfig(max_epochs=15, patience=5, batch_size=batch, progress=False, seed=1)
            teacher = vqgraph.fit_teacher(data, split, TeacherConfig(conv="sage", codebook_size=64), train)
            key = f"{setting}-sage-batch{batch}"
            out[key] = record(teacher, teacher.targets.logits)
            for method in ("mlp", "glnn", "vqgraph"):
                for student_batch in (None, 100):
                    student_train = TrainConfig(lr=0.01, weight_decay=0.0, max_epochs=20, patience=8,
                                                batch_size=student_batch, progress=False, seed=2)
                    norm = "none" if method == "mlp" else "batch"
                    student = vqgraph.fit_student(data, split, teacher.targets, StudentConfig(norm=norm),
                                                  DistillConfig(method=method), student_train)
                    out[f"{key}-{method}-batch{student_batch}"] = record(student)
    split = vqgraph.make_split(data, seed=0, setting="inductive")
    for conv in ("gcn", "gat", "appnp", "sage_gcn"):
        for classify_from in ("continuous", "quantized"):
            config = TeacherConfig(conv=conv, codebook_size=64, num_layers=2, classify_from=classify_from)
            teacher = vqgraph.fit_teacher(data, split, config, TrainConfig(max_epochs=8, patience=5, progress=False, seed=1))
            out[f"{conv}-{classify_from}"] = record(teacher, teacher.targets.z, teacher.targets.codes)
    return out


def differences(a: dict, b: dict) -> list:
    """Every run and field where two snapshots differ (a metric only one side has is listed too)."""
    lines = [f"{key}: only in one snapshot" for key in sorted(set(a) ^ set(b))]
    for key in sorted(set(a) & set(b)):
        for field in sorted(set(a[key]) | set(b[key])):
            x, y = a[key].get(field), b[key].get(field)
            if field == "metrics":
                lines += [f"{key}: {m} {x.get(m)} -> {y.get(m)}" for m in sorted(set(x) | set(y)) if x.get(m) != y.get(m)]
            elif x != y:
                lines.append(f"{key}: {field} differs")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.snapshot", description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="write the snapshot here (JSON)")
    parser.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two snapshots")
    args = parser.parse_args(argv)
    if args.compare:
        a, b = (json.load(open(path)) for path in args.compare)
        lines = differences(a, b)
        print("\n".join(lines) if lines else f"identical: {len(a)} runs")
        return 1 if lines else 0
    if not args.out:
        parser.error("give OUT.json or --compare A B")
    snap = snapshot()
    with open(args.out, "w") as handle:
        json.dump(snap, handle, indent=1, sort_keys=True)
    print(f"{len(snap)} runs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
