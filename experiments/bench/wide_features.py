"""Seconds per epoch of the default teacher and student on a graph with wide bag-of-words features.

    python -m experiments.bench.wide_features [--nodes 20000] [--edges 100000] [--features 7000]
                                              [--density 0.01] [--epochs 3] [--repeats 3]
                                              [--student-method vqgraph|glnn] [--out FILE.json]
    python -m experiments.bench.wide_features --full-run auto|off [--out FILE.json]

The graph is what a user brings most often: a CSBM with binary bag-of-words features
(``make_csbm(feature_density=...)``: 20k nodes, 7k features of which 1% are ones, 100k
undirected edges, 5 classes) and no preset. Measured: the package-default GCN teacher with its
tokenizer (full batch) and the package-default ``vqgraph`` student (``--student-method glnn``:
GLNN's, without the code term) on the sparse teacher's targets, each with its features held
dense (``sparse_input=off``, as before) and sparse (``on``, what ``auto`` chooses at this
density), in the same run, ``--epochs`` epochs each; seconds per epoch are the mean over
them, each with its validation pass, as the shared training loop times them (the teacher's
``epoch_s``, the student's ``train_s / epochs``). Each form is timed ``--repeats`` times, the
two forms' order alternating between repeats; the figures are the medians (every time is in
``runs_s``), the speed-ups their ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path


def bench(nodes: int, edges: int, features: int, density: float, epochs: int, repeats: int = 1,
          method: str = "vqgraph") -> dict:
    import torch

    from vqgraph.data import make_csbm, make_split
    from vqgraph.models import TeacherConfig
    from vqgraph.models.student import StudentConfig
    from vqgraph.training import TrainConfig, fit_teacher
    from vqgraph.training.distill import DistillConfig, fit_student, method_defaults

    start = time.perf_counter()
    data = make_csbm(num_nodes=nodes, num_edges=edges, num_features=features, feature_density=density, seed=0)
    graph_s = time.perf_counter() - start
    split = make_split(data, seed=0)
    train = replace(method_defaults(method).train, max_epochs=epochs, patience=None, progress=False)
    runs = {"teacher_off": [], "teacher_on": [], "student_off": [], "student_on": []}
    targets = None
    for repeat in range(repeats):
        # "off": the dense path; "on": sparse features (teacher.sparse_input, student.sparse_input).
        # The order alternates between repeats, so a drift in the machine's speed hits both forms.
        forms = ("off", "on") if repeat % 2 == 0 else ("on", "off")
        for form in forms:
            torch.manual_seed(0)
            teacher = fit_teacher(data, split, TeacherConfig(sparse_input=form),
                                  TrainConfig(max_epochs=epochs, patience=None, progress=False))
            runs[f"teacher_{form}"].append(teacher.metrics["epoch_s"])
            if targets is None and form == "on":
                targets = teacher.targets  # every student learns from the first sparse teacher
        for form in forms:
            torch.manual_seed(0)
            student = fit_student(data, split, targets, StudentConfig(norm="batch", sparse_input=form),
                                  DistillConfig(method=method), train)
            runs[f"student_{form}"].append(student.metrics["train_s"] / student.metrics["epochs"])
    mid = {key: statistics.median(values) for key, values in runs.items()}
    return {
        "nodes": nodes, "edges": edges, "features": features, "density": float((data.x != 0).float().mean()),
        "graph_s": graph_s, "teacher_epoch_s": mid["teacher_off"], "teacher_sparse_epoch_s": mid["teacher_on"],
        "teacher_speedup": mid["teacher_off"] / mid["teacher_on"],
        "student_epoch_s": mid["student_off"], "student_sparse_epoch_s": mid["student_on"],
        "student_speedup": mid["student_off"] / mid["student_on"], "epochs": epochs, "repeats": repeats,
        "student_method": method,
        "runs_s": runs, "threads": torch.get_num_threads(),
    }


def full_run(nodes: int, edges: int, features: int, density: float, teacher_form: str) -> dict:
    """A whole default run: the default teacher until early stopping, then the default student."""
    from vqgraph.data import make_csbm, make_split
    from vqgraph.models import TeacherConfig
    from vqgraph.models.student import StudentConfig
    from vqgraph.training import TrainConfig, fit_teacher
    from vqgraph.training.distill import DistillConfig, fit_student

    data = make_csbm(num_nodes=nodes, num_edges=edges, num_features=features, feature_density=density, seed=0)
    split = make_split(data, seed=0)
    start = time.perf_counter()
    teacher = fit_teacher(data, split, TeacherConfig(sparse_input=teacher_form), TrainConfig(progress=False))
    middle = time.perf_counter()
    student = fit_student(data, split, teacher.targets, StudentConfig(norm="batch"), DistillConfig())
    end = time.perf_counter()
    return {"teacher_sparse_input": teacher_form, "teacher_s": middle - start, "teacher_epochs": teacher.metrics["epochs"],
            "student_s": end - middle, "student_epochs": student.metrics["epochs"], "total_s": end - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.wide_features",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--edges", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=7_000)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3,
                        help="time each form this many times, alternating their order; report the medians")
    parser.add_argument("--student-method", choices=["vqgraph", "glnn"], default="vqgraph",
                        help="the student timed (glnn: without the code term, which is the same in both forms)")
    parser.add_argument("--full-run", choices=["off", "auto"], default=None,
                        help="time a whole default run instead (teacher to early stopping, then the student), "
                             "with teacher.sparse_input set so")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.epochs < 1:
        parser.error(f"--repeats and --epochs take positive integers, got {args.repeats} and {args.epochs}")

    from experiments.common import report_json

    if args.full_run:
        row = full_run(args.nodes, args.edges, args.features, args.density, args.full_run)
        summary = (f"default run, teacher.sparse_input={args.full_run}: teacher {row['teacher_s']:.0f} s "
                   f"({row['teacher_epochs']} epochs), student {row['student_s']:.0f} s ({row['student_epochs']} "
                   f"epochs), total {row['total_s']:.0f} s")
    else:
        row = bench(args.nodes, args.edges, args.features, args.density, args.epochs, args.repeats, args.student_method)
        summary = (f"{row['nodes']:,} nodes, {row['edges']:,} edges, {row['features']:,} binary features "
                   f"({100 * row['density']:.2f}% ones), {row['threads']} thread(s): teacher "
                   f"{row['teacher_epoch_s']:.2f} s/epoch dense, {row['teacher_sparse_epoch_s']:.3f} sparse "
                   f"({row['teacher_speedup']:.1f}x); student {row['student_epoch_s']:.2f} s/epoch dense, "
                   f"{row['student_sparse_epoch_s']:.3f} sparse ({row['student_speedup']:.1f}x)")
    print(summary)
    report_json(row, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
