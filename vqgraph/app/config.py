"""Configuration: one typed experiment configuration, dataset presets and ``section.key=value`` overrides.

:class:`ExperimentConfig` holds every setting of a run in six frozen sections: ``data``,
``teacher``, ``train`` (the teacher's optimisation), ``student``, ``distill`` and
``student_train``. Precedence is defaults < preset < overrides, always: a preset never
overrides a flag. Unknown sections or keys and values of the wrong type are rejected with the
key's name.

A preset (``vqgraph/presets/<dataset>.yaml``, or any YAML file) holds one block per teacher kind
(``gcn:``, ``sage:``, ...) of sections; inside it, a block named after a method (``mlp:``,
``glnn:``, ``vqgraph:``) holds sections for that method only, applied after the shared ones.
A ``recipe:`` block names, per setting, the teacher kind and method a run uses when none is
named (:func:`recipe`).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple, TypeVar

import yaml

from vqgraph.app.task import DataConfig
from vqgraph.errors import ConfigError
from vqgraph.models.encoders import resolve_conv
from vqgraph.models.student import StudentConfig
from vqgraph.models.teacher import TeacherConfig
from vqgraph.training.distill import METHODS, DistillConfig, method_defaults
from vqgraph.training.loop import TrainConfig

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"

T = TypeVar("T")


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check ``value`` against a dataclass field annotation (parsing strings from the command line)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where)
    if origin in (tuple, list, collections.abc.Sequence) or annotation in (tuple, list):
        if isinstance(value, str):  # "a,b" or "[a, b]"
            value = [v for v in value.replace(" ", "").removeprefix("[").removesuffix("]").split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else str
        return tuple(_coerce(v, item, where) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if annotation in (int, float):
        expected = "an integer" if annotation is int else "a number"
        numeric = (int,) if annotation is int else (int, float)
        if isinstance(value, numeric) and not isinstance(value, bool):
            return annotation(value)
        if isinstance(value, str):
            try:
                return annotation(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected {expected}, got {value!r}")
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def replace_checked(obj: T, updates: Mapping[str, Any], section: str = "") -> T:
    """``dataclasses.replace`` that rejects unknown keys and wrong types, naming the key."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    clean = {}
    for key, value in updates.items():
        where = f"{section}.{key}" if section else key
        if key not in names:
            raise ConfigError(f"unknown config key {where!r}; known keys: {sorted(names)}")
        clean[key] = _coerce(value, hints[key], where)
    try:
        return dataclasses.replace(obj, **clean)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{section or type(obj).__name__}: {err}") from err


def parse_overrides(items: Iterable[str]) -> Dict[str, Dict[str, str]]:
    """``["teacher.dropout=0.5", ...]`` -> ``{"teacher": {"dropout": "0.5"}}``."""
    out: Dict[str, Dict[str, str]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        out.setdefault(section, {})[name] = value
    return out


def to_dict(obj: Any) -> Dict[str, Any]:
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def preset_path(dataset: str) -> Optional[Path]:
    """The packaged preset of ``dataset`` (``vqgraph/presets/<name>.yaml``), if there is one
    (never for a ``pyg:`` dataset, whatever its name)."""
    if dataset.startswith("pyg:"):
        return None
    path = PRESET_DIR / f"{Path(dataset).stem}.yaml"
    return path if path.is_file() else None


DEFAULT_RECIPE = {"teacher": "gcn", "method": "vqgraph", "set": []}  # for a graph without preset


def recipe(dataset: str, setting: str = "transductive", preset=None) -> Dict[str, Any]:
    """What a run of ``dataset`` in ``setting`` trains when no method is named: the preset's
    ``recipe.<setting>`` block, chosen on validation (``teacher``, ``method`` and ``set``, a list
    of ``section.key=value`` overrides of the recipe's own), else :data:`DEFAULT_RECIPE`."""
    path = Path(preset) if preset else preset_path(dataset)
    out = {**DEFAULT_RECIPE, "set": []}
    if path is None:
        return out
    block = _load_preset(path).get("recipe") or {}
    chosen = block.get(setting) or {} if isinstance(block, dict) else None
    if not isinstance(chosen, dict) or set(chosen) - set(out):
        raise ConfigError(f"{path}: recipe.{setting} must be a mapping with keys {sorted(out)}, got {chosen!r}")
    out.update(chosen)
    if out["method"] not in METHODS:
        raise ConfigError(f"{path}: recipe.{setting}.method must be one of {METHODS}, got {out['method']!r}")
    if not isinstance(out["set"], list) or not all(isinstance(item, str) for item in out["set"]):
        raise ConfigError(f"{path}: recipe.{setting}.set must be a list of section.key=value strings")
    parse_overrides(out["set"])  # malformed items fail here, naming themselves
    return out


def preset_blocks(dataset: str, preset=None) -> set:
    """The top-level blocks (teacher kinds, ``recipe``) of ``preset``, else of the dataset's
    packaged preset; empty when there is none."""
    path = Path(preset) if preset else preset_path(dataset)
    return set(_load_preset(path)) if path is not None else set()


def _load_preset(path: Path) -> dict:
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the preset ({type(err).__name__}: {err.strerror or err})") from err
    try:
        preset = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err
    if not isinstance(preset, dict):
        raise ConfigError(f"{path}: expected a mapping of teacher kinds to sections")
    return preset


def _read_preset(path: Path, teacher: str, method: str) -> list:
    """The layers of a preset that apply to ``teacher`` and ``method``: ``[(where, sections)]``."""
    preset = _load_preset(path)
    block = preset.get(teacher, {}) or {}
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: block {teacher!r} must be a mapping of sections")
    own = block.get(method) or {}
    if not isinstance(own, dict):
        raise ConfigError(f"{path}: block {teacher}.{method} must be a mapping of sections")
    shared = {key: values for key, values in block.items() if key not in METHODS}
    return [(str(path), teacher, shared), (str(path), f"{teacher}.{method}", own)]


@dataclass(frozen=True)
class DistillSection(DistillConfig):
    """The ``distill`` section of an experiment: the library's :class:`DistillConfig` (what one
    student learns from) and what a run arranges around it: the weight decays to choose among on
    validation (:func:`~vqgraph.app.run.fit_selected_student`) and the teachers whose soft labels
    the targets average (:func:`~vqgraph.app.run.ensemble`)."""

    weight_decays: Tuple[float, ...] = ()  # one student each, the best on select_by kept; (): student_train's
    teachers: int = 1  # teachers whose soft labels the targets average (vqgraph.ensemble_targets)
    teacher_kinds: Tuple[str, ...] = ()  # encoder kinds of teachers 2..N (each with its preset block); (): the first's

    def __post_init__(self):
        super().__post_init__()
        if any(wd < 0 for wd in self.weight_decays):
            raise ValueError(f"weight_decays must be >= 0, got {self.weight_decays}")
        if self.teachers < 1:
            raise ValueError(f"teachers must be >= 1, got {self.teachers}")
        if self.teacher_kinds and len(self.teacher_kinds) != self.teachers - 1:
            raise ValueError(f"teacher_kinds names {len(self.teacher_kinds)} kind(s) for teachers 2..N: set "
                             f"teachers={len(self.teacher_kinds) + 1} (it is {self.teachers})")
        for kind in self.teacher_kinds:
            resolve_conv(kind)

    def for_student(self) -> DistillConfig:
        """The library's config of one student: this section without the run's own keys."""
        return DistillConfig(**{f.name: getattr(self, f.name) for f in dataclasses.fields(DistillConfig)})


@dataclass(frozen=True)
class ExperimentConfig:
    """Every setting of a run. Build it with :meth:`defaults` or :meth:`from_preset`.

    The student's defaults depend on the method: :func:`~vqgraph.training.distill.method_defaults`
    (architecture, terms and optimisation).
    """

    data: DataConfig = field(default_factory=DataConfig)
    teacher: TeacherConfig = field(default_factory=TeacherConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    student: StudentConfig = field(default_factory=lambda: method_defaults().student)
    distill: DistillSection = field(default_factory=DistillSection)
    student_train: TrainConfig = field(default_factory=lambda: method_defaults().train)

    @classmethod
    def defaults(cls, teacher: str = "gcn", method: str = "vqgraph") -> "ExperimentConfig":
        """Every section at its default for a ``teacher`` kind and a distillation ``method``."""
        try:
            teacher_config = TeacherConfig(conv=teacher)
            student, distill, student_train, weight_decays = method_defaults(method)
            distill = DistillSection(**distill.to_dict(), weight_decays=weight_decays)
            return cls(teacher=teacher_config, student=student, distill=distill, student_train=student_train)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    @classmethod
    def from_preset(
        cls, dataset: str, teacher: str = "gcn", method: str = "vqgraph", overrides: Iterable[str] = (), preset=None
    ) -> "ExperimentConfig":
        """Defaults < the dataset's preset (``preset``, else the packaged one, if any) <
        ``overrides`` (``["section.key=value", ...]``)."""
        config = cls.defaults(teacher, method)
        path = Path(preset) if preset else preset_path(dataset)
        for origin, block, layer in _read_preset(path, teacher, method) if path is not None else []:
            config = config.updated(layer, origin, block)
        config = config.with_overrides(overrides)
        config.check()
        return config

    def check(self) -> None:
        """Checks across keys, on the complete config (a preset layer may be incomplete)."""
        try:
            self.distill.check_learns()
        except ValueError as err:
            raise ConfigError(f"distill: {err}") from err
        if self.distill.uses_projection and self.student.num_layers < 2:
            raise ConfigError(f"student.num_layers={self.student.num_layers}: method {self.distill.method!r} projects "
                              "a hidden layer into code space, so it needs num_layers >= 2")

    def with_overrides(self, overrides: Iterable[str]) -> "ExperimentConfig":
        """This config with ``["section.key=value", ...]`` applied (values parsed by type)."""
        return self.updated(parse_overrides(overrides), "command line")

    def updated(self, layer: Mapping[str, Mapping[str, Any]], origin: str = "", block: str = "") -> "ExperimentConfig":
        """This config with ``{section: {key: value}}`` applied. Unknown names and wrong types
        are errors naming the ``origin`` (a file, "command line") and the key (``block.section.key``)."""
        names = [f.name for f in dataclasses.fields(self)]
        changes = {}
        for section, values in layer.items():
            where = f"{block}.{section}" if block else section
            if section not in names:
                blocks = f" (and per-method blocks {list(METHODS)})" if block else ""
                raise ConfigError(f"{origin}: unknown config section {where!r}; known: {names}{blocks}")
            if values is not None and not isinstance(values, Mapping):
                raise ConfigError(f"{origin}: section {where} must be a mapping")
            changes[section] = replace_checked(getattr(self, section), values or {}, where)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        return {f.name: to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}
