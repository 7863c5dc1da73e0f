"""Train a VQGraph teacher and write its targets artifact and results.json.

    python -m experiments.train_teacher --dataset cora --setting transductive --teacher gcn --seed 0 --out DIR \
        [--data-root DIR] [--config FILE.yaml] [--set teacher.codebook_size=1024 train.lr=0.005 ...]

Settings come from the dataclass defaults, then ``vqgraph/presets/<dataset>.yaml`` (block
``<teacher>:``), then ``--set`` overrides; unknown keys and wrong types are errors.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Optional

from experiments.common import add_run_arguments, parse_run
from vqgraph import distributed
from vqgraph.app.cache import teacher_identity
from vqgraph.app.config import to_dict
from vqgraph.app.finished import read_record
from vqgraph.app.records import write_json
from vqgraph.app.run import check_device, check_output, dataset_stem, phase_teller
from vqgraph.app.task import prepare_task
from vqgraph.errors import ConfigError, VQGraphError
from vqgraph.training import fit_teacher
from vqgraph.utils.io import ensure_writable, folder_lock, remove_if_empty
from vqgraph.utils.profiling import environment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.train_teacher", description=__doc__.splitlines()[0])
    add_run_arguments(parser, method=False)
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/teacher/<dataset>-...)")
    parser.add_argument("--fresh", action="store_true", help="ignore the checkpoint of an interrupted run: start over")
    return parser


@distributed.entry_point
def main(argv=None) -> int:
    args, spec, cfg = parse_run(build_parser(), argv)
    out = args.out or Path("runs/teacher") / f"{dataset_stem(args.dataset)}-{args.setting}-{spec.teacher}-s{args.seed}"
    try:  # before any work: the device exists, the folder is the run's own
        check_device(cfg)
        out = check_output(out)
        check_not_a_student_run(out)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    me = distributed.init(cfg.train.device)  # the backend follows the device; a world of one without torchrun
    existed = out.exists()  # a folder the user made is left in place on an error, even empty
    try:
        with contextlib.ExitStack() as stack:
            if me.is_main:  # before any training: an unwritable or busy folder is reported now
                ensure_writable(out, "output folder")
                stack.enter_context(folder_lock(out, "output folder"))
            results = train(args, spec, cfg, out)
    except VQGraphError as err:  # a clear line, no traceback; nothing was written
        if not existed:
            remove_if_empty(out)
        print(f"error: {err}", file=sys.stderr)
        return 1
    if results is not None:
        summary = " ".join(f"{k}={v:.4f}" for k, v in results["metrics"].items())
        print(f"{results['dataset']} {results['setting']} {spec.teacher} seed={args.seed}: {summary} "
              f"codes_used={results['codebook']['used_frac']:.3f} epochs={results['epochs']} "
              f"({results['timings']['train_s']:.1f}s) -> {out}")
    return 0


def check_not_a_student_run(out: Path) -> None:
    """A ConfigError when ``out`` holds a finished student run: its results.json would be replaced."""
    try:
        read_record(out / "results.json")
    except (OSError, ValueError):
        return  # none, a teacher's (this command replaces it), or not a record
    raise ConfigError(f"output folder {out} holds a finished student run (experiments.run): its results.json "
                      "would be replaced; choose another --out (e.g. runs/teacher/NAME)")


def train(args: argparse.Namespace, spec, cfg, out: Path) -> Optional[dict]:
    """Train the teacher of ``args`` into ``out``; rank 0 writes ``teacher.pt`` and ``results.json``
    and returns the results."""
    me = distributed.world()
    say = phase_teller(me.is_main and cfg.train.progress, "train_teacher")  # a line per phase, as run says them
    say(f"loading data: {args.dataset}")
    data, split, _ = prepare_task(args.dataset, args.setting, args.seed, cfg.data, args.data_root, args.download)
    start = time.perf_counter()
    who = teacher_identity(cfg, data.name, split.setting.value, args.seed)
    checkpoint = cfg.train.checkpoint(Path(out) / "checkpoint.pt", who, args.fresh)
    say(f"training {spec.teacher} (at most {cfg.train.max_epochs} epochs) into {out}")
    result = fit_teacher(data, split, cfg.teacher, cfg.train, checkpoint=checkpoint, record={"data": to_dict(cfg.data)})
    wall = time.perf_counter() - start
    if not me.is_main:  # every rank holds the same teacher; rank 0 writes it
        return None
    artifact = result.targets.save(Path(out) / "teacher.pt")
    m = result.metrics
    eval_keys = [f"{key}/acc" for key in split.index_dict() if key != "train"]
    results = {
        "dataset": data.name,
        "setting": split.setting.value,
        "teacher": spec.teacher,
        "seed": args.seed,
        "metrics": {key: m[key] for key in ["train/acc", *eval_keys]},
        "codebook": {
            "size": cfg.teacher.codebook_size if cfg.teacher.use_tokenizer else 0,
            "used_frac": m.get("codebook/used_frac", 0.0),
            "perplexity": m.get("codebook/perplexity", 0.0),
        },
        "timings": {"train_s": m["train_s"], "epoch_s": m["epoch_s"], "total_s": wall},
        "best_epoch": m["best_epoch"],
        "epochs": m["epochs"],
        "split_sizes": split.sizes(),
        "artifact": artifact.name,
        "config": cfg.to_dict(),
        "environment": {**environment(), "world_size": me.world_size},
    }
    write_json(Path(out) / "results.json", results)
    say(f"written: {artifact}, {Path(out) / 'results.json'}")
    return results


if __name__ == "__main__":
    raise SystemExit(main())
