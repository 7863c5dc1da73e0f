"""One distillation run: teacher (trained, or reused from the cache), then the student.

    python -m experiments.run --dataset cora --setting transductive --method vqgraph --teacher gcn --seed 0 \
        [--out DIR] [--data-root DIR] [--set distill.soft_token_weight=0.5 ...] [--wandb off|offline|online]

Writes ``DIR/results.json`` (accuracies as fractions), ``DIR/student.pt`` and prints one line.
Teachers are cached under ``--cache`` by a hash of everything that determines them.

Under ``torchrun --nproc-per-node N -m experiments.run ...`` the same command trains with N
processes (see README, "Multi-GPU and multi-machine"); rank 0 alone writes files and W&B runs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from experiments.common import environment, prepare_task, run_sections, write_json
from vqgraph import distributed
from vqgraph.artifacts import TeacherTargets
from vqgraph.config import ConfigError, to_dict
from vqgraph.distill import METHODS, fit_student
from vqgraph.models.encoders import CONVS
from vqgraph.serving import Predictor
from vqgraph.training import fit_teacher
from vqgraph.training.loggers import MODES, WandbLogger


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", required=True, help="dataset name or path of a CPF-format .npz")
    parser.add_argument("--setting", default="transductive", choices=["transductive", "inductive"])
    parser.add_argument("--method", default="vqgraph", choices=METHODS)
    parser.add_argument("--teacher", default="gcn", choices=sorted(CONVS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<dataset>-<setting>-...)")
    parser.add_argument("--data-root", default=None, help="data root (default: $VQGRAPH_DATA, else ./datasets)")
    parser.add_argument("--config", default=None, help="YAML preset (default: experiments/configs/<dataset>.yaml)")
    parser.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE", help="config overrides")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"), help="teacher cache folder")
    parser.add_argument("--wandb", default="off", choices=MODES)
    parser.add_argument("--wandb-project", default="vqgraph")
    parser.add_argument("--device", default=None, help="torch device for teacher and student")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def teacher_key(dataset: str, setting: str, seed: int, cfg) -> str:
    """Hash of everything that determines a teacher (the device and progress bar excluded)."""
    train = {k: v for k, v in to_dict(cfg["train"]).items() if k not in ("device", "progress")}
    blob = json.dumps(
        {"dataset": dataset, "setting": setting, "seed": seed, "data": to_dict(cfg["data"]),
         "teacher": to_dict(cfg["teacher"]), "train": train},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def sections_for(args: argparse.Namespace):
    """The config sections of the run ``args`` describes (defaults < preset < ``--set`` < the
    seed, device, progress and method flags). Raises ConfigError on a bad key or value."""
    overrides = list(args.set) + [f"train.seed={args.seed}", f"student_train.seed={args.seed}"]
    for section in ("train", "student_train"):
        if args.device:
            overrides.append(f"{section}.device={args.device}")
        if args.quiet:
            overrides.append(f"{section}.progress=false")
    overrides.append(f"distill.method={args.method}")
    return run_sections(args.dataset, args.teacher, overrides, args.config, method=args.method)


@distributed.entry_point
def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        cfg = sections_for(args)
    except ConfigError as err:
        parser.error(str(err))
    me = distributed.init(cfg["train"].device)  # the backend follows the device; a world of one without torchrun
    name = Path(args.dataset).stem
    out = args.out or Path("runs") / f"{name}-{args.setting}-{args.method}-{args.teacher}-s{args.seed}"
    data, split, transform = prepare_task(
        args.dataset, args.setting, args.seed, cfg["data"], args.data_root, with_transform=True
    )
    config = {key: to_dict(section) for key, section in cfg.items()}
    # the run's identity beside its sections (the "teacher" section keeps the teacher's settings)
    config.update(dataset=data.name, setting=split.setting.value, method=args.method, teacher_kind=args.teacher, seed=args.seed)
    logger = WandbLogger(
        args.wandb if me.is_main else "off",
        project=args.wandb_project,
        group=f"{data.name}/{split.setting.value}/{args.method}",
        job_type="distill",
        name=f"{data.name}-{split.setting.value}-{args.method}-{args.teacher}-s{args.seed}",
        config=config,
        dir=out,
        tags=[data.name, split.setting.value, args.method, args.teacher],
    )
    with logger:
        targets, teacher_seconds = None, 0.0
        key = teacher_key(data.name, split.setting.value, args.seed, cfg)
        artifact = args.cache / key / "teacher.pt"
        # rank 0 decides, so that every rank takes the same path (the cache must be readable by all)
        if distributed.broadcast_object(artifact.is_file()):
            targets = TeacherTargets.load(artifact)
            targets.check_matches(data, split)
        else:
            result = fit_teacher(data, split, cfg["teacher"], cfg["train"], log=logger.stage("teacher/"))
            targets = result.targets
            targets.config["data"] = config["data"]
            if me.is_main:
                targets.save(artifact)
            teacher_seconds = result.metrics["train_s"]
        teacher_metrics = {k: v for k, v in targets.metrics.items() if "/" in k}
        student = fit_student(
            data, split, targets, cfg["student"], cfg["distill"], cfg["student_train"], log=logger
        )
        m = student.metrics
        if not me.is_main:  # every rank holds the same student; rank 0 writes it
            return 0
        out.mkdir(parents=True, exist_ok=True)
        codebook = targets.codebook if args.method == "vqgraph" else None
        meta = {"dataset": data.name, "setting": split.setting.value, "method": args.method, "seed": args.seed,
                "metrics": {k: m[k] for k in m if k.endswith("/acc")}, "config": config}
        Predictor(student.model, transform, codebook, targets.metric, meta=meta).save(out / "student.pt")
        metric_keys = [k for k in m if k.endswith("/acc")]
        results = {
            "dataset": data.name,
            "setting": split.setting.value,
            "method": args.method,
            "teacher": args.teacher,
            "seed": args.seed,
            "selected_by": m["selected_by"],
            "metrics": {k: m[k] for k in metric_keys},
            "teacher_metrics": teacher_metrics,
            "targets": {k: v for k, v in m.items() if k.startswith("targets/")},
            "timings": {
                "teacher_train_s": teacher_seconds,
                "teacher_cached": teacher_seconds == 0.0,
                "student_train_s": m["train_s"],
                "student_infer_s": m["infer_s"],
            },
            "best_epoch": m["best_epoch"],
            "epochs": m["epochs"],
            "teacher_artifact": str(artifact),
            "config": config,
            "environment": {**environment(), "world_size": me.world_size},
        }
        write_json(out / "results.json", results)
        logger.summary({f"final/{k}": v for k, v in results["metrics"].items()})
        logger.summary({f"teacher/final/{k}": v for k, v in teacher_metrics.items()})
        logger.log_artifact(artifact, f"teacher-{key}", "teacher", {"metrics": teacher_metrics})
        logger.log_artifact(out / "student.pt", f"student-{data.name}-{args.method}-s{args.seed}", "student")
    test_keys = [k for k in ("test/acc", "test_tran/acc", "test_ind/acc", "test_prod/acc") if k in results["metrics"]]
    summary = " ".join(f"{k}={results['metrics'][k]:.4f}" for k in ["val/acc", *test_keys])
    teacher_test = " ".join(f"{k}={teacher_metrics[k]:.4f}" for k in test_keys if k in teacher_metrics)
    print(
        f"{data.name} {split.setting.value} {args.method} (teacher {args.teacher}) seed={args.seed}: {summary} | "
        f"teacher {teacher_test} | student {m['train_s']:.1f}s -> {out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
