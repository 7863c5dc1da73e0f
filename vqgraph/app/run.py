"""Run assembly: one distillation run of a :class:`RunSpec`, from the dataset to ``results.json``.

:func:`run_experiment` loads and splits the data (:func:`~vqgraph.app.task.prepare_task`), takes the
teacher from the cache or trains it (:func:`~vqgraph.app.cache.cached_teacher`; several for an
ensemble), distils the student (choosing its weight decay when the config lists several), and
writes ``student.pt`` and ``results.json``. ``python -m experiments.run`` is this with arguments.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Tuple

import torch

from vqgraph import distributed
from vqgraph.app.cache import cached_teacher, identity
from vqgraph.app.config import ExperimentConfig, canonical_dataset, override_value, preset_blocks, to_dict
from vqgraph.app.figures import codebook_figure
from vqgraph.app.finished import finished_results
from vqgraph.app.loggers import WandbLogger
from vqgraph.app.records import write_json
from vqgraph.app.task import prepare_task
from vqgraph.errors import ConfigError
from vqgraph.targets import ensemble_targets
from vqgraph.training import StudentResult, fit_student
from vqgraph.utils.devices import device_problem
from vqgraph.utils.io import ensure_writable, folder_lock
from vqgraph.utils.profiling import environment


def dataset_stem(dataset: str) -> str:
    """A dataset's name in folder names: a file's stem, ``pyg:Amazon/Photo`` as ``pyg-Amazon-Photo``."""
    if dataset.startswith("pyg:"):
        return dataset.replace(":", "-").replace("/", "-")
    return Path(dataset).stem


@dataclass(frozen=True)
class RunSpec:
    """One run: what ``experiments.run`` and ``experiments.train_teacher`` take.

    ``dataset`` is made canonical (``Cora`` -> ``cora``: the name its preset and folder take).
    The seed, teacher kind, method, device and ``quiet`` name settings of the config
    (``train.seed``, ``teacher.conv``, ...): an override that restates one of them is dropped,
    one that gives it another value makes :meth:`config` refuse the spec
    (:class:`~vqgraph.errors.ConfigError` naming both), so that the run's name and record are
    those of the configuration trained."""

    dataset: str
    setting: str = "transductive"
    method: str = "vqgraph"
    teacher: str = "gcn"
    seed: int = 0
    overrides: Tuple[str, ...] = field(default_factory=tuple)  # section.key=value
    preset: Optional[str] = None  # YAML preset (default: the dataset's packaged one)
    device: Optional[str] = None
    quiet: bool = False

    def __post_init__(self):
        object.__setattr__(self, "dataset", canonical_dataset(self.dataset))
        object.__setattr__(self, "overrides", tuple(item for item in self.overrides if not self._restates(item)))

    def _flags(self) -> dict:
        """The config keys the spec's fields set: ``{key: (what, flag, value)}``."""
        seed, device, quiet = ("seed", "--seed", self.seed), ("device", "--device", self.device), ("progress", "--quiet", False)
        flags = {"teacher.conv": ("teacher", "--teacher", self.teacher), "train.seed": seed, "student_train.seed": seed,
                 "distill.method": ("method", "--method", self.method)}
        flags.update({"train.device": device, "student_train.device": device} if self.device else {})
        flags.update({"train.progress": quiet, "student_train.progress": quiet} if self.quiet else {})
        return flags

    def _restates(self, item: str) -> bool:
        """Whether the override ``item`` gives a key of :meth:`_flags` the spec's own value."""
        flag = self._flags().get(item.split("=", 1)[0])
        try:
            given = override_value(item) if flag else None
        except ConfigError:  # a malformed value: config() reports it
            return False
        return flag is not None and (given.lower() if isinstance(given, str) else given) == flag[2]

    def _check_flags(self) -> None:
        """Refuse an override that gives a key of :meth:`_flags` another value (restatements are gone)."""
        flags = self._flags()
        for item in self.overrides:
            key, _, given = item.partition("=")
            if key in flags:
                override_value(item)  # a malformed value is reported as such
                what, flag, value = flags[key]
                hint = f"give it once, as {flag} {given}" if flag != "--quiet" else "leave out one of them"
                source = f"{flag}, or the preset's recipe without it" if what in ("teacher", "method") else flag
                raise ConfigError(f"{item} contradicts the run's {what} {value!r} ({source}): {hint}")

    @property
    def name(self) -> str:
        return f"{dataset_stem(self.dataset)}-{self.setting}-{self.method}-{self.teacher}-s{self.seed}"

    def config(self) -> ExperimentConfig:
        """Defaults < preset < ``overrides`` < the seed, device, progress and method of the spec
        (which the overrides may not contradict). Raises ConfigError on a bad key or value."""
        self._check_flags()
        flags = [f"train.seed={self.seed}", f"student_train.seed={self.seed}"]
        for section in ("train", "student_train"):
            flags += [f"{section}.device={self.device}"] if self.device else []
            flags += [f"{section}.progress=false"] if self.quiet else []
        overrides = [*self.overrides, *flags, f"distill.method={self.method}"]
        return ExperimentConfig.from_preset(self.dataset, self.teacher, self.method, overrides, self.preset)


def run_experiment(spec: RunSpec, out: Path, cache: Path, data_root=None, wandb: str = "off",
                   project: str = "vqgraph", fresh: bool = False, download: bool = False,
                   chosen_by: str = "named by the caller (RunSpec)") -> Optional[dict]:
    """Train (or reuse) the teacher and distil the student of ``spec``; rank 0 writes
    ``out/student.pt`` and ``out/results.json`` (last, atomically) and returns the results.

    Before any work: the device must exist (:func:`check_device`), ``out`` must be a folder of its
    own (:func:`check_output`), writable and not in use by another run (a lock file while the run
    writes it). A finished run of the same configuration in ``out`` is reused (its results come
    back with ``reused: True``); one of another configuration is a ConfigError (see
    :func:`~vqgraph.app.finished.finished_results`); ``fresh`` replaces it. Teacher and student
    training checkpoint (``<cache>/<key>/checkpoint.pt``, ``out/checkpoint.pt``; schedule
    ``train.checkpoint_*`` and ``student_train.checkpoint_*``): the same call after a crash resumes
    where it stopped; ``fresh`` starts over. ``download``: fetch a missing dataset into the first
    data root. ``chosen_by`` (why this method and teacher) is said at the start and recorded.
    Unless the config turns progress off, a line on stderr names each phase."""
    cfg = spec.config()
    check_device(cfg)
    out = check_output(out, cache)
    me = distributed.init(cfg.train.device)  # the backend follows the device; a world of one without torchrun
    say = phase_teller(me.is_main and cfg.student_train.progress)
    with contextlib.ExitStack() as stack:
        if me.is_main:  # before any training: an unwritable or busy folder is reported now, not after an hour
            ensure_writable(out, "output folder")
            ensure_writable(cache, "teacher cache folder")
            stack.enter_context(folder_lock(out, "output folder"))
        say(f"{spec.dataset} {spec.setting} seed {spec.seed}: method {spec.method}, teacher {spec.teacher}, {chosen_by}")
        say(f"loading data: {spec.dataset}")
        task = prepare_task(spec.dataset, spec.setting, spec.seed, cfg.data, data_root, download)
        name, setting = task.data.name, task.split.setting.value
        config = {**cfg.to_dict(), "dataset": name, "setting": setting, "method": spec.method,
                  "teacher_kind": spec.teacher, "seed": spec.seed}  # the run's identity beside its sections
        done = finished_results(out, config, spec, data_root, fresh) if me.is_main else None
        if distributed.broadcast_object(done is not None):
            say(f"{out} holds this run, finished: reused (--fresh trains it again)")
            return {**done, "reused": True} if me.is_main else None
        logger = WandbLogger(wandb if me.is_main else "off", project=project, group=f"{name}/{setting}/{spec.method}",
                             job_type="distill", name=f"{name}-{setting}-{spec.method}-{spec.teacher}-s{spec.seed}",
                             config=config, dir=out, tags=[name, setting, spec.method, spec.teacher])
        with logger:
            return _train(spec, task, cfg, config, out, cache, logger, fresh, say, chosen_by)


def _train(spec: RunSpec, task, cfg: ExperimentConfig, config: dict, out: Path, cache: Path, logger: WandbLogger,
           fresh: bool, say, chosen_by: str) -> Optional[dict]:
    """:func:`run_experiment` once the folder, the data and the logger are ready."""
    me = distributed.world()
    name, setting = task.data.name, task.split.setting.value
    targets, artifact, teacher_seconds = cached_teacher(task, cfg, spec.seed, cache, log=logger.stage("teacher/"),
                                                        fresh=fresh, say=say)
    if cfg.distill.teachers > 1:
        say(f"teacher ensemble: {cfg.distill.teachers - 1} more teacher(s)")
        targets, more_seconds = ensemble(spec, task, cfg, cache, targets, logger, fresh)
        teacher_seconds += more_seconds
    who = identity({"student": to_dict(cfg.student), "distill": to_dict(cfg.distill),
                    "student_train": to_dict(cfg.student_train)},
                   dataset=name, setting=setting, seed=spec.seed, teacher=artifact.parent.name)
    checkpoint = cfg.student_train.checkpoint(out / "checkpoint.pt", who, fresh)
    decays = len(cfg.distill.weight_decays or ()) or 1
    say(f"student: training {spec.method} (at most {cfg.student_train.max_epochs} epochs"
        + (f", for each of {decays} weight decays)" if decays > 1 else ")"))
    data = copy.copy(task.data)  # the features' transform travels with them into the student's result
    data.feature_transform = task.transform
    student = fit_selected_student(data, task.split, targets, cfg, log=logger, checkpoint=checkpoint)
    if not me.is_main:  # every rank holds the same student; rank 0 writes it
        return None
    say(f"writing: {out / 'student.pt'}, {out / 'results.json'}")
    results = _record(spec, task, config, targets, artifact, student, teacher_seconds, out, me.world_size)
    results["chosen_by"] = chosen_by
    results.update(figures(targets, out, f"{name} {setting}, teacher {spec.teacher}, seed {spec.seed}", logger))
    write_json(out / "results.json", results)
    _log_final(logger, results, artifact, out, spec)
    return results


def fit_selected_student(data, split, targets, cfg: ExperimentConfig, log=None, checkpoint=None) -> StudentResult:
    """The student of ``cfg`` (:func:`~vqgraph.training.fit_student`), its weight decay chosen on
    ``distill.select_by`` among ``distill.weight_decays`` when there are several (one student
    each, from the same seed; the first wins ties; ``metrics["selected/weight_decay"]`` names it,
    ``log`` sees its epochs, ``train_s`` is the whole grid's). With ``checkpoint``, one file per
    candidate: a candidate that finished before a crash is trained again, identically."""
    made_by = targets.config.get("ensemble", 1) if targets is not None else cfg.distill.teachers
    if made_by != cfg.distill.teachers:
        raise ConfigError(f"distill.teachers={cfg.distill.teachers} but the targets come from {made_by} teacher(s): "
                         "average several with vqgraph.ensemble_targets")
    distill, train = cfg.distill.for_student(), cfg.student_train
    if not cfg.distill.weight_decays:
        return fit_student(data, split, targets, cfg.student, distill, train, log=log, checkpoint=checkpoint)
    best, seconds = None, 0.0
    for weight_decay in cfg.distill.weight_decays:
        own = checkpoint.for_candidate(f"wd{weight_decay:g}") if checkpoint is not None else None
        result = fit_student(data, split, targets, cfg.student, distill,
                             dataclasses.replace(train, weight_decay=weight_decay), checkpoint=own)
        seconds += result.metrics["train_s"]
        monitor = result.metrics["selected_by"]
        if best is None or result.metrics[monitor] > best.metrics[monitor]:
            best = result
            best.metrics["selected/weight_decay"] = weight_decay
    best.metrics["train_s"] = seconds
    for epoch, row in enumerate(best.history if log is not None else ()):
        log(row, epoch)
    return best


def _record(spec: RunSpec, task, config: dict, targets, artifact: Path, student, teacher_seconds: float, out: Path,
            world_size: int) -> dict:
    """Save the student (``out/student.pt``: weights, feature transform, codebook) and return the
    run's results record."""
    name, setting = task.data.name, task.split.setting.value
    m = student.metrics
    metrics = {k: v for k, v in m.items() if k.endswith("/acc")}
    chosen = {k.split("/", 1)[1]: v for k, v in m.items() if k.startswith("selected/")}  # e.g. the mlp's weight decay
    meta = {"dataset": name, "setting": setting, "method": spec.method, "seed": spec.seed, "metrics": metrics, "config": config}
    student.predictor(meta=meta, backend="eager").save(out / "student.pt")  # the transform and codebook it trained with
    return {
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
        "environment": {**environment(), "world_size": world_size},
    }


def _log_final(logger: WandbLogger, results: dict, artifact: Path, out: Path, spec: RunSpec) -> None:
    logger.summary({f"final/{k}": v for k, v in results["metrics"].items()})
    logger.summary({f"teacher/final/{k}": v for k, v in results["teacher_metrics"].items()})
    logger.log_artifact(artifact, f"teacher-{artifact.parent.name}", "teacher", {"metrics": results["teacher_metrics"]})
    logger.log_artifact(out / "student.pt", f"student-{results['dataset']}-{spec.method}-s{spec.seed}", "student")


def ensemble(spec: RunSpec, task, cfg: ExperimentConfig, cache: Path, first, logger, fresh: bool = False):
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


def check_device(cfg: ExperimentConfig) -> None:
    """A ConfigError in one line when a device of ``cfg`` (``train.device``, ``student_train.device``;
    ``--device`` sets both) is not a torch device or is not available on this machine."""
    for section in ("train", "student_train"):
        device = getattr(cfg, section).device
        problem = device_problem(device)
        if problem:
            raise ConfigError(f"device {device!r} ({section}.device, --device): {problem}")


def check_output(out, cache=None) -> Path:
    """``out`` as a Path; a ConfigError when it is empty, the current folder or a folder holding
    it, the file system's root, the home folder, the repository vqgraph is imported from, a file,
    or the teacher ``cache`` or a folder in it: there a run's files (``student.pt``,
    ``results.json``, checkpoints) would mix with others."""
    out = Path(out)
    if str(out) in ("", ".") or out.resolve() == Path.cwd().resolve():
        raise ConfigError(f"output folder {str(out)!r} is the current folder {Path.cwd()}: name a folder of the "
                          "run's own, e.g. --out runs/NAME, or leave --out out for the default folder under runs/")
    where = out.resolve()
    shared = {Path(where.anchor): "the file system's root", Path.home().resolve(): "the home folder",
              Path(__file__).resolve().parents[2]: "the folder vqgraph is imported from"}
    what = shared.get(where) or ("a folder holding the current folder" if where in Path.cwd().resolve().parents
                                 else None)
    if cache is not None and (where == Path(cache).resolve() or Path(cache).resolve() in where.parents):
        what = f"the teacher cache folder {cache} or a folder in it"
    if what:
        raise ConfigError(f"output folder {str(out)!r} is {what}: name a folder of the run's own, e.g. "
                          "--out runs/NAME")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"output folder {str(out)!r} is a file, not a folder: choose another --out")
    return out


def phase_teller(enabled: bool, prefix: str = "run"):
    """``say(text)``: one plain line ``<prefix>: <text>`` on stderr (flushed, so that logs show it
    at once), or nothing: how a command names each phase of its work."""
    def say(text: str) -> None:
        if enabled:
            print(f"{prefix}: {text}", file=sys.stderr, flush=True)
    return say

