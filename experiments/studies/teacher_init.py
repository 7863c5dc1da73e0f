"""Lever 4 of the accuracy issue (TINED): the student started from its GCN teacher's weights.

    python -m experiments.studies.teacher_init --datasets cora citeseer --setting transductive --seeds 0-4 \
        --out experiments/results/teacher_init

A GCN teacher of one graph layer is ``head(dropout(relu(A (x W0) + b0)))`` with ``head`` a second
GCN layer ``A (. W1) + b1``: without the propagation ``A`` it is exactly a two-layer MLP
``W1(dropout(relu(x W0 + b0))) + b1`` of the teacher's width, the package's
:class:`~vqgraph.models.MLPStudent`. TINED starts the student there. For each graph and seed
the preset's teacher is trained (``fit_teacher``, the run's deterministic teacher; whether its
targets equal the run cache's entry, when there is one, is counted) and three students of the
setting's recipe (or ``--method``) are distilled from its targets, the same seed each:

* ``preset``: the preset's student (what ``experiments.run`` trains);
* ``random``: an ``MLPStudent`` of the teacher's width from random weights;
* ``teacher``: the same student with ``W0, b0, W1, b1`` copied from the teacher.

``teacher`` against ``random`` is the lever (same architecture); against ``preset``, what a
user would gain. Judged on validation accuracy (``val/acc``, the students' selection nodes);
test (``test_ind`` inductively) reported beside it. Finished seeds are kept in ``OUT.json``
and reused; ``OUT.md`` holds the table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Dict, List, Tuple

import torch

from experiments.common import emit, parse_seeds, seeds_argument
from experiments.studies.choice import paired, score_key
from vqgraph.app.cache import observed_density, teacher_key
from vqgraph.app.config import recipe
from vqgraph.app.records import markdown_table, write_json
from vqgraph.app.run import RunSpec
from vqgraph.app.task import prepare_task
from vqgraph.errors import VQGraphError
from vqgraph.models import MLPStudent
from vqgraph.models.teacher import VQGraphTeacher
from vqgraph.targets import TeacherTargets
from vqgraph.training import fit_student, fit_teacher

ARMS = ("preset", "random", "teacher")


def student_from_teacher(teacher: VQGraphTeacher, student: MLPStudent) -> MLPStudent:
    """``student`` (two linear layers, the teacher's width) with the teacher's feature maps copied in.

    Raises:
        ValueError: the teacher is not a one-layer GCN, or the shapes differ (naming both).
    """
    convs = teacher.encoder.convs
    if teacher.encoder.kind != "gcn" or len(convs) != 1:
        raise ValueError(f"a student starts from a GCN teacher of one graph layer, got {teacher.encoder.kind!r} "
                         f"with {len(convs)} layer(s)")
    if len(student.layers) != 1:
        raise ValueError(f"a student started from the teacher has one hidden layer, got {len(student.layers)}")
    pairs = [(student.layers[0], convs[0]), (student.classifier, teacher.head_conv)]
    with torch.no_grad():
        for linear, conv in pairs:
            if linear.weight.shape != conv.lin.weight.shape:
                raise ValueError(f"student layer {tuple(linear.weight.shape)} cannot start from the teacher's "
                                 f"{tuple(conv.lin.weight.shape)}: give the student the teacher's width")
            linear.weight.copy_(conv.lin.weight)
            linear.bias.copy_(conv.bias)
    return student


def students_of(args, dataset: str) -> Tuple[str, Tuple[str, ...]]:
    """The method and overrides the students are distilled with: ``--method`` and ``--set``, else
    the preset's recipe for the setting followed by ``--set``."""
    if args.method:
        return args.method, tuple(args.set)
    plan = recipe(dataset, args.setting)
    return plan["method"], (*plan.get("set", ()), *args.set)


def seed_row(args, dataset: str, seed: int, method: str, overrides: Tuple[str, ...]) -> Dict:
    """One seed: the teacher, then the three students' (``method`` with ``overrides``) validation and test accuracy."""
    spec = RunSpec(dataset, args.setting, method, "gcn", seed, overrides, quiet=True)
    cfg = spec.config()
    task = prepare_task(dataset, args.setting, seed, cfg.data, args.data_root)
    teacher = fit_teacher(task.data, task.split, cfg.teacher, cfg.train)
    entry = args.cache / teacher_key(task.data.name, args.setting, seed, cfg, observed_density(task)) / "teacher.pt"
    as_cached = entry.is_file() and torch.equal(TeacherTargets.load(entry).logits, teacher.targets.logits)
    width = cfg.teacher.hidden_channels
    narrow = dataclasses.replace(cfg.student, hidden_channels=width, num_layers=2)
    code_dim = teacher.targets.z.size(1) if cfg.distill.uses_projection else None
    torch.manual_seed(seed)
    from_random = MLPStudent(task.data.num_features, task.data.num_classes, narrow, code_dim)
    started = student_from_teacher(teacher.model, MLPStudent(task.data.num_features, task.data.num_classes, narrow,
                                                             code_dim))
    if code_dim:  # the projection into code space has nothing to start from: the random student's
        started.projection.load_state_dict(from_random.projection.state_dict())
    row = {"gcn": {"val": teacher.metrics["val/acc"], "test": teacher.metrics[score_key(args.setting)]},
           "as_cached": as_cached}
    distill, train = cfg.distill.for_student(), cfg.student_train
    for arm, student in zip(ARMS, (cfg.student, from_random, started)):
        metrics = fit_student(task.data, task.split, teacher.targets, student, distill, train).metrics
        row[arm] = {"val": metrics["val/acc"], "test": metrics[score_key(args.setting)]}
    return row


def arm_minus(rows: List[Dict], arm: str, other: str, key: str) -> str:
    """``arm`` minus ``other`` on ``key`` (val or test), paired by seed (:func:`experiments.studies.choice.paired`)."""
    return paired([r[arm][key] for r in rows], [r[other][key] for r in rows])


def render(command: str, blocks: Dict[str, List[Dict]], setting: str) -> str:
    lines = []
    for dataset, rows in blocks.items():
        mean = lambda arm, key: f"{100 * statistics.mean(r[arm][key] for r in rows):.2f}"  # noqa: E731
        lines.append([dataset, len(rows), *(f"{mean(a, 'val')} / {mean(a, 'test')}" for a in ("gcn", *ARMS)),
                      *(arm_minus(rows, "teacher", other, key) for other in ("random", "preset") for key in ("val", "test")),
                      f"{sum(r['as_cached'] for r in rows)}/{len(rows)}"])
    test = score_key(setting).split("/")[0]
    return (f"# The student started from its teacher (TINED's initialisation), {setting}\n\nCommand: `{command}`\n\n"
            f"Accuracy in %, mean over seeds, validation / {test}. Arms: `preset`, the preset's student; `random`, "
            "an MLP student of the teacher's width from random weights; `teacher`, the same started from the "
            "teacher's feature maps. Paired columns: `teacher` minus the other arm, points (wins/ties/losses). "
            "`as cached`: seeds whose retrained teacher equals the run cache's entry.\n\n"
            + markdown_table(["dataset", "seeds", "gcn", *ARMS, "teacher - random, val", f"teacher - random, {test}",
                              "teacher - preset, val", f"teacher - preset, {test}", "as cached"], lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.teacher_init",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--setting", default="transductive", choices=["transductive", "inductive"])
    parser.add_argument("--seeds", default="0-4", type=seeds_argument)
    parser.add_argument("--method", default=None, help="distillation method (default: the preset's recipe)")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"),
                        help="the run cache the retrained teachers are compared with (read only)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE")
    parser.add_argument("--out", type=Path, required=True, help="OUT.json (finished seeds) and OUT.md")
    args = parser.parse_args(argv)
    command = ("python -m experiments.studies.teacher_init "
               + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv)))
    store = args.out.with_suffix(".json")
    done = json.loads(store.read_text()) if store.is_file() else {}
    blocks = {}
    try:
        for dataset in args.datasets:
            for seed in parse_seeds(args.seeds):
                method, overrides = students_of(args, dataset)
                key = f"{dataset}/{args.setting}/{method}/{' '.join(overrides)}/s{seed}"
                if key not in done:
                    done[key] = seed_row(args, dataset, seed, method, overrides)
                    write_json(store, done)
                blocks.setdefault(dataset, []).append(done[key])
    except (VQGraphError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    emit(render(command, blocks, args.setting), args.out.with_suffix(".md"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
