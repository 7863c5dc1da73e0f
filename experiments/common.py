"""What the experiment commands share: the run arguments, the teacher cache, results files."""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Sequence, Tuple

from vqgraph import distributed
from vqgraph.config import ConfigError, ExperimentConfig, recipe, to_dict
from vqgraph.data.sparse import density
from vqgraph.data.splits import Setting
from vqgraph.data.task import Task
from vqgraph.models.encoders import CONVS
from vqgraph.targets import TeacherTargets
from vqgraph.training import METHODS, fit_teacher
from vqgraph.training.loop import NOT_RESULT_KEYS
from vqgraph.training.teacher import sparse_teacher
from vqgraph.utils.io import ArtifactMismatchError, atomic_write_text


def dataset_stem(dataset: str) -> str:
    """A dataset's name in folder names: a file's stem, ``pyg:Amazon/Photo`` as ``pyg-Amazon-Photo``."""
    if dataset.startswith("pyg:"):
        return dataset.replace(":", "-").replace("/", "-")
    return Path(dataset).stem


@dataclass(frozen=True)
class RunSpec:
    """One run of the grid: what ``experiments.run`` and ``experiments.train_teacher`` take."""

    dataset: str
    setting: str = "transductive"
    method: str = "vqgraph"
    teacher: str = "gcn"
    seed: int = 0
    overrides: Tuple[str, ...] = field(default_factory=tuple)  # section.key=value
    preset: Optional[str] = None  # YAML preset (default: the dataset's packaged one)
    device: Optional[str] = None
    quiet: bool = False

    @property
    def name(self) -> str:
        return f"{dataset_stem(self.dataset)}-{self.setting}-{self.method}-{self.teacher}-s{self.seed}"

    def config(self) -> ExperimentConfig:
        """Defaults < preset < ``overrides`` < the seed, device, progress and method of the spec.
        Raises ConfigError on a bad key or value."""
        flags = [f"train.seed={self.seed}", f"student_train.seed={self.seed}"]
        for section in ("train", "student_train"):
            flags += [f"{section}.device={self.device}"] if self.device else []
            flags += [f"{section}.progress=false"] if self.quiet else []
        overrides = [*self.overrides, *flags, f"distill.method={self.method}"]
        return ExperimentConfig.from_preset(self.dataset, self.teacher, self.method, overrides, self.preset)


def add_run_arguments(parser: argparse.ArgumentParser, method: bool = True) -> None:
    """The arguments that name a run (dataset, setting, teacher, seed, ...) and its config."""
    parser.add_argument("--dataset", required=True, help="dataset name or path of a CPF-format .npz")
    parser.add_argument("--setting", default="transductive", choices=["transductive", "inductive"])
    if method:
        parser.add_argument("--method", default=None, choices=METHODS,
                            help="distillation method (default: the preset's recipe for the setting, else vqgraph)")
    parser.add_argument("--teacher", default=None, choices=sorted(CONVS),
                        help="teacher kind (default: the preset's recipe for the setting, else gcn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None,
                        help="data root, or several separated by ':' searched in order (default: $VQGRAPH_DATA, "
                             "else ./datasets)")
    parser.add_argument("--download", action="store_true",
                        help="fetch a missing dataset from its public source into the first data root")
    parser.add_argument("--config", default=None, help="YAML preset (default: vqgraph/presets/<dataset>.yaml)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                        help="config overrides (repeatable)")
    parser.add_argument("--device", default=None, help="torch device")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def parse_run(parser: argparse.ArgumentParser, argv=None) -> Tuple[argparse.Namespace, RunSpec, ExperimentConfig]:
    """Parse ``argv`` (arguments of :func:`add_run_arguments` and the script's own) into the
    arguments, the run and its config; a bad config key or value is a usage error naming it."""
    args = parser.parse_args(argv)
    try:
        chosen = recipe(args.dataset, args.setting, args.config)
        named = getattr(args, "method", None)
        # the recipe's own overrides come with its method only; the command line's win
        overrides = args.set if named else [*chosen["set"], *args.set]
        spec = RunSpec(args.dataset, args.setting, named or chosen["method"], args.teacher or chosen["teacher"],
                       args.seed, tuple(overrides), args.config, args.device, args.quiet)
        args.recipe = not named and bool(chosen["set"])  # the run is the preset's recipe, not the plain method
        return args, spec, spec.config()
    except ConfigError as err:
        parser.error(str(err))


# keys added later, with the value that reproduces what came before: left out of the hash at that value
LATER_KEYS = {"train": {"optimizer": "adam"},
              "teacher": {"deep_weight_decay": None, "tokenize": "all", "sparse_input": "off"},
              "data": {"val_split": "shared"}}


def observed_density(task: Task) -> float:
    """The share of non-zero features over the nodes the teacher trains on (the observed ones),
    which decides ``sparse_input="auto"``."""
    x = task.data.x if task.split.setting is Setting.TRANSDUCTIVE else task.data.x[task.split.observed_idx]
    return density(x)


def teacher_key(dataset: str, setting: str, seed: int, cfg: ExperimentConfig, x=None) -> str:
    """Hash of everything that determines a teacher (the device and progress bar excluded).
    Given the features the teacher trains on ``x`` (or their density), ``teacher.sparse_input``
    counts by its effect (``auto`` on dense features is ``off``: the same teacher, the same entry)."""
    train = {k: v for k, v in to_dict(cfg.train).items() if k not in NOT_RESULT_KEYS}
    teacher, data = to_dict(cfg.teacher), to_dict(cfg.data)
    if x is not None:
        teacher["sparse_input"] = "on" if sparse_teacher(cfg.teacher, cfg.train, x) else "off"
    for section, values in (("train", train), ("teacher", teacher), ("data", data)):
        for key, default in LATER_KEYS[section].items():  # added later, at their default: earlier caches stay valid
            if key in values and values[key] == default:
                del values[key]
    if train.get("batch_size") is None:  # the tokenizer sees every node of a full batch either way
        teacher.pop("tokenize", None)
    blob = json.dumps(
        {"dataset": dataset, "setting": setting, "seed": seed, "data": data,
         "teacher": teacher, "train": train},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def identity(sections: Dict[str, Any], **extra) -> Dict[str, Any]:
    """A flat ``{"section.key": value}`` of what determines a run (JSON values; the keys of
    :data:`~vqgraph.training.loop.NOT_RESULT_KEYS` left out): a checkpoint's identity."""
    flat = {f"{name}.{k}": v for name, values in sections.items() for k, v in values.items()
            if k not in NOT_RESULT_KEYS}
    return json.loads(json.dumps({**flat, **extra}))


def cached_teacher(task: Task, cfg: ExperimentConfig, seed: int, cache: Path, log=None,
                   fresh: bool = False) -> Tuple[TeacherTargets, Path, float]:
    """The teacher's targets from ``cache`` (by :func:`teacher_key`), else trained and saved there.

    Returns ``(targets, artifact path, training seconds)`` (0 for a cache hit). Rank 0 decides
    whether the cache is hit, so that every rank takes the same path; it alone writes. An entry
    that cannot be read (truncated, corrupt, not a teacher artifact) or that was made for another
    graph or split is reported with its path and treated as missing: the teacher is retrained
    and the entry replaced. Training checkpoints to ``checkpoint.pt`` beside the entry and resumes
    from it (``fresh``: start over)."""
    data, split = task.data, task.split
    artifact = cache / teacher_key(data.name, split.setting.value, seed, cfg, observed_density(task)) / "teacher.pt"
    targets = None
    if distributed.world().is_main and artifact.is_file():
        try:
            targets = TeacherTargets.load(artifact)
            targets.check_matches(data, split)
        except ArtifactMismatchError as err:
            targets = None
            warnings.warn(f"teacher cache entry {artifact} is unusable and will be retrained: {err}", stacklevel=2)
    if distributed.broadcast_object(targets is not None):
        if not distributed.world().is_main:
            targets = TeacherTargets.load(artifact)
        return targets, artifact, 0.0
    who = identity({"data": to_dict(cfg.data), "teacher": to_dict(cfg.teacher), "train": to_dict(cfg.train)},
                   dataset=data.name, setting=split.setting.value, seed=seed)
    checkpoint = cfg.train.checkpoint(artifact.with_name("checkpoint.pt"), who, fresh)
    result = fit_teacher(data, split, cfg.teacher, cfg.train, log=log, checkpoint=checkpoint)
    result.targets.config["data"] = to_dict(cfg.data)
    if distributed.world().is_main:
        result.targets.save(artifact)
    return result.targets, artifact, result.metrics["train_s"]


def markdown_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table: a header of ``columns``, then one line per row of cells (``str()`` of each)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def csv_table(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """The same table as CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buf.getvalue()


def emit(text: str, path: Optional[Path] = None) -> None:
    """Print a table and, given ``path``, write it there too (atomically)."""
    print(text)
    if path is not None:
        atomic_write_text(path, text)


def write_json(path: Path, payload: Dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


def report_json(payload: Dict[str, Any], path: Optional[Path] = None) -> None:
    """A benchmark's figures: printed as one JSON line and, given ``path``, written there with
    the environment they were measured in (torch, threads, CPU)."""
    from vqgraph.utils.profiling import environment

    if path is not None:
        write_json(path, {"environment": environment(), **payload})
    print(json.dumps(payload))
