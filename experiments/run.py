"""One distillation run: teacher (trained, or reused from the cache), then the student.

    python -m experiments.run --dataset cora --setting transductive [--method vqgraph] [--teacher gcn] --seed 0 \
        [--out DIR] [--data-root DIR] [--set distill.soft_token_weight=0.5 ...] [--wandb off|offline|online]

Without ``--method`` the run trains the preset's recipe for the setting (``recipe:`` in
``vqgraph/presets/<dataset>.yaml``: teacher, method and the recipe's own overrides; its default
folder ends in ``-recipe`` when it has overrides).

Writes ``DIR/results.json`` (accuracies as fractions), ``DIR/student.pt`` and prints one line.
Training checkpoints every 10 epochs and 10 minutes (``train.checkpoint_*``,
``student_train.checkpoint_*``): run the same command after a crash and it resumes where it
stopped, ending as the uninterrupted run would; ``--fresh`` starts over.
Teachers are cached under ``--cache`` by a hash of everything that determines them.

Under ``torchrun --nproc-per-node N -m experiments.run ...`` the same command trains with N
processes (see docs/distributed.md); rank 0 alone writes files and W&B runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Optional

from experiments.common import RunSpec, add_run_arguments, cached_teacher, identity, parse_run, write_json
from experiments.figures import codebook_figure
from vqgraph import distributed
from vqgraph.data.task import prepare_task
from vqgraph.config import preset_blocks, to_dict
from vqgraph.errors import VQGraphError
from vqgraph.serving import Predictor
from vqgraph.targets import ensemble_targets
from vqgraph.training import fit_student
from vqgraph.training.loggers import MODES, WandbLogger
from vqgraph.utils.io import ensure_writable, remove_if_empty
from vqgraph.utils.profiling import environment

TEST_KEYS = ("test/acc", "test_tran/acc", "test_ind/acc", "test_prod/acc")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<dataset>-<setting>-...)")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"), help="teacher cache folder")
    parser.add_argument("--wandb", default="off", choices=MODES)
    parser.add_argument("--wandb-project", default="vqgraph")
    parser.add_argument("--fresh", action="store_true", help="ignore the checkpoints of an interrupted run: start over")
    return parser


def run(spec: RunSpec, out: Path, cache: Path, data_root=None, wandb: str = "off", project: str = "vqgraph",
        fresh: bool = False, download: bool = False) -> Optional[dict]:
    """Train (or reuse) the teacher and distil the student of ``spec``; rank 0 writes
    ``out/student.pt`` and ``out/results.json`` (last, atomically) and returns the results.

    Teacher and student training checkpoint (``<cache>/<key>/checkpoint.pt``,
    ``out/checkpoint.pt``; schedule ``train.checkpoint_*`` and ``student_train.checkpoint_*``):
    the same call after a crash resumes where it stopped; ``fresh`` starts over. ``download``:
    fetch a missing dataset into the first data root."""
    cfg = spec.config()
    me = distributed.init(cfg.train.device)  # the backend follows the device; a world of one without torchrun
    task = prepare_task(spec.dataset, spec.setting, spec.seed, cfg.data, data_root, download)
    if me.is_main:  # before any training: an unwritable folder is reported now, not after an hour
        ensure_writable(out, "output folder")
        ensure_writable(cache, "teacher cache folder")
    name, setting = task.data.name, task.split.setting.value
    config = {**cfg.to_dict(), "dataset": name, "setting": setting, "method": spec.method,
              "teacher_kind": spec.teacher, "seed": spec.seed}  # the run's identity beside its sections
    logger = WandbLogger(wandb if me.is_main else "off", project=project, group=f"{name}/{setting}/{spec.method}",
                         job_type="distill", name=f"{name}-{setting}-{spec.method}-{spec.teacher}-s{spec.seed}",
                         config=config, dir=out, tags=[name, setting, spec.method, spec.teacher])
    with logger:
        targets, artifact, teacher_seconds = cached_teacher(task, cfg, spec.seed, cache, log=logger.stage("teacher/"),
                                                            fresh=fresh)
        if cfg.distill.teachers > 1:
            targets, more_seconds = ensemble(spec, task, cfg, cache, targets, logger, fresh)
            teacher_seconds += more_seconds
        who = identity({"student": to_dict(cfg.student), "distill": to_dict(cfg.distill),
                        "student_train": to_dict(cfg.student_train)},
                       dataset=name, setting=setting, seed=spec.seed, teacher=artifact.parent.name)
        checkpoint = cfg.student_train.checkpoint(out / "checkpoint.pt", who, fresh)
        student = fit_student(task.data, task.split, targets, cfg.student, cfg.distill, cfg.student_train, log=logger,
                              checkpoint=checkpoint)
        if not me.is_main:  # every rank holds the same student; rank 0 writes it
            return None
        m = student.metrics
        metrics = {k: v for k, v in m.items() if k.endswith("/acc")}
        chosen = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("selected/")}  # e.g. the mlp's weight decay
        codebook = targets.codebook if spec.method == "vqgraph" else None
        meta = {"dataset": name, "setting": setting, "method": spec.method, "seed": spec.seed, "metrics": metrics, "config": config}
        Predictor(student.model, task.transform, codebook, targets.metric, meta=meta, backend="eager").save(out / "student.pt")
        results = {
            "dataset": name, "setting": setting, "method": spec.method, "teacher": spec.teacher, "seed": spec.seed,
            "selected_by": m["selected_by"],
            "metrics": metrics,
            "teacher_metrics": {k: v for k, v in targets.metrics.items() if "/" in k},
            "targets": {k: v for k, v in m.items() if k.startswith("targets/")},
            "timings": {"teacher_train_s": teacher_seconds, "teacher_cached": teacher_seconds == 0.0,
                        "student_train_s": m["train_s"], "student_infer_s": m["infer_s"]},
            "selected": chosen,
            "best_epoch": m["best_epoch"],
            "epochs": m["epochs"],
            "teacher_artifact": str(artifact),
            "config": config,
            "environment": {**environment(), "world_size": me.world_size},
        }
        results.update(figures(targets, out, f"{name} {setting}, teacher {spec.teacher}, seed {spec.seed}", logger))
        write_json(out / "results.json", results)
        logger.summary({f"final/{k}": v for k, v in metrics.items()})
        logger.summary({f"teacher/final/{k}": v for k, v in results["teacher_metrics"].items()})
        logger.log_artifact(artifact, f"teacher-{artifact.parent.name}", "teacher", {"metrics": results["teacher_metrics"]})
        logger.log_artifact(out / "student.pt", f"student-{name}-{spec.method}-s{spec.seed}", "student")
    return results


def ensemble(spec: RunSpec, task, cfg, cache: Path, first, logger, fresh: bool = False):
    """``distill.teachers`` teachers' targets averaged (:func:`vqgraph.targets.ensemble_targets`):
    ``first`` and teachers m = 1, 2, ... trained with ``train.seed = seed + 1000 m``, each cached
    as any teacher. Teacher m is of kind ``distill.teacher_kinds[m - 1]`` (default: the first's):
    a member of another kind takes that kind's ``teacher`` and ``train`` sections (defaults <
    its preset block < the run's overrides, which apply to every teacher); the graph, its
    features and the split stay the run's. Returns the targets and the extra training seconds."""
    members, seconds = [first], 0.0
    kinds = cfg.distill.teacher_kinds or (spec.teacher,) * (cfg.distill.teachers - 1)
    for m, kind in enumerate(kinds, start=1):
        if kind != spec.teacher and kind not in preset_blocks(spec.dataset, spec.preset):
            warnings.warn(f"teacher {m + 1} of the ensemble ({kind!r}) has no block in the preset of "
                          f"{spec.dataset!r}: it trains with the package defaults for {kind!r} and the run's "
                          "overrides", stacklevel=2)
        own = dataclasses.replace(spec, teacher=kind).config()  # the first's kind: the run's own sections
        member_cfg = dataclasses.replace(cfg, teacher=own.teacher,
                                         train=dataclasses.replace(own.train, seed=spec.seed + 1000 * m))
        targets, _, spent = cached_teacher(task, member_cfg, spec.seed, cache, log=logger.stage(f"teacher{m}/"),
                                           fresh=fresh)
        members.append(targets)
        seconds += spent
    return ensemble_targets(members, task.data, task.split), seconds


def figures(targets, out: Path, title: str, logger: WandbLogger) -> dict:
    """Write the codebook figure beside the results (and log it); ``{"figures": {...}}`` or ``{}``.
    A figure is a convenience: its failure warns and must not cost the run its results."""
    try:
        figure = codebook_figure(targets, out / "codebook.png", title)
    except Exception as err:  # noqa: BLE001 (matplotlib and disk errors alike)
        warnings.warn(f"the codebook figure was not written: {type(err).__name__}: {err}", stacklevel=2)
        return {}
    if figure is None:
        return {}
    logger.log_image("teacher/codebook", figure, "code usage and codes, coloured by majority predicted class")
    return {"figures": {"codebook": figure.name}}


def summary_line(results: dict, out: Path) -> str:
    m, t = results["metrics"], results["teacher_metrics"]
    keys = [k for k in TEST_KEYS if k in m]
    student = " ".join(f"{k}={m[k]:.4f}" for k in ["val/acc", *keys])
    teacher = " ".join(f"{k}={t[k]:.4f}" for k in keys if k in t)
    return (f"{results['dataset']} {results['setting']} {results['method']} (teacher {results['teacher']}) "
            f"seed={results['seed']}: {student} | teacher {teacher} | student {results['timings']['student_train_s']:.1f}s -> {out}")


@distributed.entry_point
def main(argv=None) -> int:
    args, spec, _ = parse_run(build_parser(), argv)
    out = args.out or Path("runs") / (spec.name + ("-recipe" if args.recipe else ""))
    try:
        results = run(spec, out, args.cache, args.data_root, args.wandb, args.wandb_project, args.fresh, args.download)
    except VQGraphError as err:  # a data, split, training or output problem: one line, no traceback
        remove_if_empty(out)
        print(f"error: {err}", file=sys.stderr)
        return 1
    if results is not None:
        print(summary_line(results, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
