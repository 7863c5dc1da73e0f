"""One distillation run: teacher (trained, or reused from the cache), then the student.

    python -m experiments.run --dataset cora --setting transductive [--method vqgraph] [--teacher gcn] --seed 0 \
        [--out DIR] [--data-root DIR] [--set distill.soft_token_weight=0.5 ...] [--wandb off|offline|online]

Without ``--method`` the run trains the preset's recipe for the setting (``recipe:`` in
``vqgraph/presets/<dataset>.yaml``: teacher, method and the recipe's own overrides; its default
folder ends in ``-recipe`` when it has overrides). A graph without a preset recipe gets method
``auto`` (also ``--method auto``): mlp, glnn and vqgraph with the adversarial term are trained on
halved validation under ``DIR/choice/``, and the best on validation is trained as the run
(``choice`` in ``results.json``; vqgraph/app/choice.py). The run says at the start which method and
teacher it trains and why (``chosen_by`` in ``results.json``), and a plain line at each phase.

Writes ``DIR/results.json`` (accuracies as fractions), ``DIR/student.pt`` and prints one line.
Training checkpoints every 10 epochs and 10 minutes (``train.checkpoint_*``,
``student_train.checkpoint_*``): run the same command after a crash and it resumes where it
stopped, ending as the uninterrupted run would; ``--fresh`` starts over. A finished run of the same
configuration in ``--out`` is reused, one of another configuration refused (``--fresh`` replaces
it); two runs never write one folder at once (a lock file while a run writes it).
Teachers are cached under ``--cache`` by a hash of everything that determines them.

Under ``torchrun --nproc-per-node N -m experiments.run ...`` the same command trains with N
processes (see docs/distributed.md); rank 0 alone writes files and W&B runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from experiments.common import add_run_arguments, parse_run
from vqgraph import distributed
from vqgraph.app.choice import run_choice
from vqgraph.app.config import AUTO_METHOD, preset_blocks, preset_path
from vqgraph.app.loggers import MODES
from vqgraph.app.run import RunSpec, run_experiment
from vqgraph.errors import ConfigError, VQGraphError
from vqgraph.utils.io import remove_if_empty

TEST_KEYS = ("test/acc", "test_tran/acc", "test_ind/acc", "test_prod/acc")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m experiments.run", description=__doc__.splitlines()[0])
    add_run_arguments(parser)
    parser.add_argument("--out", type=Path, default=None, help="run folder (default runs/<dataset>-<setting>-...)")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"), help="teacher cache folder")
    parser.add_argument("--wandb", default="off", choices=MODES)
    parser.add_argument("--wandb-project", default="vqgraph")
    parser.add_argument("--fresh", action="store_true",
                        help="start over: ignore the checkpoints of an interrupted run, retrain a finished one")
    return parser


def summary_line(results: dict, out: Path) -> str:
    m, t = results["metrics"], results["teacher_metrics"]
    keys = [k for k in TEST_KEYS if k in m]
    student = " ".join(f"{k}={m[k]:.4f}" for k in ["val/acc", *keys])
    teacher = " ".join(f"{k}={t[k]:.4f}" for k in keys if k in t)
    suffix = " (finished before: reused)" if results.get("reused") else ""
    if "choice" in results:  # method auto: which candidate won, on what
        suffix += f" [auto: {results['choice']['chosen']}, the best on validation of {len(results['choice']['candidates'])}]"
    return (f"{results['dataset']} {results['setting']} {results['method']} (teacher {results['teacher']}) "
            f"seed={results['seed']}: {student} | teacher {teacher} | student {results['timings']['student_train_s']:.1f}s "
            f"-> {out}{suffix}")


def chosen_by(args: argparse.Namespace, spec: RunSpec) -> str:
    """Why the run trains its method and teacher: a named flag, the preset's recipe for the
    setting, or, for a graph whose preset has no recipe, the default teacher and method auto."""
    packaged = preset_path(spec.dataset)
    preset = spec.preset or (f"vqgraph/presets/{packaged.name}" if packaged else None)
    if preset is not None and "recipe" in preset_blocks(spec.dataset, spec.preset):
        default = f"chosen by the preset's recipe ({preset}, recipe.{spec.setting})"
        method = teacher = default
    else:
        teacher = "chosen by default (no preset recipe for this graph)"
        method = f"{AUTO_METHOD}, {teacher}"
        default = f"teacher {spec.teacher} and method {AUTO_METHOD} {teacher}"
    if args.method and args.teacher:
        return "named by --method and --teacher"
    if not args.method and not args.teacher:
        return default
    return f"method named by --method, teacher {teacher}" if args.method else f"teacher named by --teacher, method {method}"


@distributed.entry_point
def main(argv=None) -> int:
    args, spec, _ = parse_run(build_parser(), argv)
    out = args.out or Path("runs") / (spec.name + ("-recipe" if args.recipe else ""))
    existed = Path(out).exists()  # a folder the user made is left in place on an error, even empty
    try:
        run = run_choice if spec.method == AUTO_METHOD else run_experiment
        results = run(spec, out, args.cache, args.data_root, args.wandb, args.wandb_project, args.fresh,
                      args.download, chosen_by=chosen_by(args, spec))
    except ConfigError as err:  # a flag that cannot be honoured (device, --out, a finished run): one line, code 2
        if not existed:
            remove_if_empty(out)
        print(f"error: {err}", file=sys.stderr)
        return 2
    except VQGraphError as err:  # a data, split, training or output problem: one line, no traceback
        if not existed:
            remove_if_empty(out)
        print(f"error: {err}", file=sys.stderr)
        return 1
    if results is not None:
        print(summary_line(results, out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
