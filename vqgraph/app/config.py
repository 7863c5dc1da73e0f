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

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import yaml

from vqgraph.app.task import DataConfig
from vqgraph.data.datasets import get_spec
from vqgraph.errors import ConfigError, UnknownDatasetError
from vqgraph.models.encoders import CONVS
from vqgraph.models.student import StudentConfig
from vqgraph.models.teacher import TeacherConfig
from vqgraph.training.distill import METHODS, DistillConfig, method_defaults
from vqgraph.training.loop import TrainConfig
from vqgraph.utils.settings import choice, coerce, ranged, replace_checked, shown

PRESET_DIR = Path(__file__).resolve().parent.parent / "presets"


def parse_overrides(items: Iterable[str]) -> Dict[str, Dict[str, str]]:
    """``["teacher.dropout=0.5", ...]`` -> ``{"teacher": {"dropout": "0.5"}}``; a key given twice
    with different values is an error (the last would win silently)."""
    out: Dict[str, Dict[str, str]] = {}
    for item in items:
        if "=" not in item or "." not in item.split("=", 1)[0]:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        section, name = key.split(".", 1)
        if out.get(section, {}).get(name, value) != value:
            raise ConfigError(f"{key} is set twice, to {out[section][name]!r} and {value!r}: give it once")
        out.setdefault(section, {})[name] = value
    return out


def override_value(item: str) -> Any:
    """The value of one ``section.key=value`` override, parsed as its key's type."""
    [(section, values)] = parse_overrides([item]).items()
    [(key, value)] = values.items()
    if section not in SECTIONS:
        raise ConfigError(f"command line: unknown config section {section!r}; known: {list(SECTIONS)}")
    hints = typing.get_type_hints(SECTIONS[section])
    if key not in hints:
        raise ConfigError(f"unknown config key '{section}.{key}'; known keys: {sorted(hints)}")
    return coerce(value, hints[key], f"{section}.{key}")


def to_dict(obj: Any) -> Dict[str, Any]:
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _a_file(dataset: str) -> bool:
    """Whether ``dataset`` names a file (as the loader decides), not a known dataset."""
    return dataset.endswith(".npz") or Path(dataset).expanduser().is_file()


def canonical_dataset(dataset: str) -> str:
    """A known dataset's canonical name (``Cora`` -> ``cora``, ``photo`` -> ``a-photo``), as the
    loader resolves it; a path, a ``pyg:`` name or an unknown name (the loader reports it) as is."""
    if dataset.startswith("pyg:") or _a_file(dataset):
        return dataset
    try:
        return get_spec(dataset).name
    except UnknownDatasetError:
        return dataset


def preset_path(dataset: str) -> Optional[Path]:
    """The packaged preset of ``dataset`` (``vqgraph/presets/<name>.yaml``, by its canonical name),
    if there is one (never for a ``pyg:`` dataset or a file, whatever its name)."""
    if dataset.startswith("pyg:") or _a_file(dataset):
        return None  # a file (even one named cora.npz): a user's own graph, not the dataset its stem names
    path = PRESET_DIR / f"{Path(canonical_dataset(dataset)).stem}.yaml"
    return path if path.is_file() else None


AUTO_METHOD = "auto"  # the method chosen on validation among candidates (vqgraph/app/choice.py)
DEFAULT_RECIPE = {"teacher": "gcn", "method": AUTO_METHOD, "set": []}  # for a graph without preset


def recipe(dataset: str, setting: str = "transductive", preset=None) -> Dict[str, Any]:
    """What a run of ``dataset`` in ``setting`` trains when no method is named: the preset's
    ``recipe.<setting>`` block, chosen on validation (``teacher``, ``method`` and ``set``, a list
    of ``section.key=value`` overrides of the recipe's own), else :data:`DEFAULT_RECIPE`."""
    path = Path(preset) if preset else preset_path(dataset)
    out = {**DEFAULT_RECIPE, "set": []}
    if path is None:
        return out
    out.update((_load_preset(path).get("recipe") or {}).get(setting) or {})  # checked whole by _load_preset
    return out


def _check_recipe(path: Path, block: Any) -> None:
    """A preset's ``recipe:`` block: per setting, a known teacher kind and method and a list of
    ``section.key=value`` overrides whose keys and values are valid, none twice."""
    if block is None:
        return
    if not isinstance(block, dict) or set(block) - {"transductive", "inductive"}:
        raise ConfigError(f"{path}: recipe must be a mapping of settings (transductive, inductive) to blocks, got "
                          f"{shown(block)}")
    for setting, chosen in block.items():
        where = f"{path}: recipe.{setting}"
        if chosen is not None and (not isinstance(chosen, dict) or set(chosen) - set(DEFAULT_RECIPE)):
            raise ConfigError(f"{where} must be a mapping with keys {sorted(DEFAULT_RECIPE)}, got {shown(chosen)}")
        chosen = {**DEFAULT_RECIPE, **(chosen or {})}
        for key, known in (("teacher", sorted(CONVS)), ("method", (*METHODS, AUTO_METHOD))):
            if not isinstance(chosen[key], str) or chosen[key] not in known:
                raise ConfigError(f"{where}.{key} must be one of {tuple(known)}, got {shown(chosen[key])}")
        if not isinstance(chosen["set"], list) or not all(isinstance(item, str) for item in chosen["set"]):
            raise ConfigError(f"{where}.set must be a list of section.key=value strings")
        try:
            parse_overrides(chosen["set"])
            for item in chosen["set"]:
                override_value(item)
        except ConfigError as err:
            raise ConfigError(f"{where}.set: {err}") from err


def preset_blocks(dataset: str, preset=None) -> set:
    """The top-level blocks (teacher kinds, ``recipe``) of ``preset``, else of the dataset's
    packaged preset; empty when there is none."""
    path = Path(preset) if preset else preset_path(dataset)
    return set(_load_preset(path)) if path is not None else set()


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (safe_load keeps the last)."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.setdefault(key, key_node.start_mark.line + 1)
            except TypeError:  # an unhashable key: the base class reports it
                continue
            if first != key_node.start_mark.line + 1:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} on lines {first} and {key_node.start_mark.line + 1} "
                    "(YAML would keep the last silently): keep one", key_node.start_mark)
        return super().construct_mapping(node, deep)


# keys a preset may not set: each is named by the block it sits in or by the run
FLAG_KEYS = {"teacher.conv": "the teacher block's name", "distill.method": "the method block's name (mlp:, glnn:, "
             "vqgraph:) or the run's method", "train.seed": "the run's seed", "student_train.seed": "the run's seed"}


def _load_preset(path: Path) -> dict:
    """The preset at ``path``, its structure checked: top-level blocks are teacher kinds or
    ``recipe``; a teacher block holds sections and method blocks of known keys; no key twice."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the preset ({type(err).__name__}: {err.strerror or err})") from err
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file in UTF-8 ({err.reason} at byte {err.start})") from err
    try:
        preset = yaml.load(text, Loader=_UniqueKeyLoader)
    except RecursionError as err:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from err
    except yaml.YAMLError as err:
        if str(getattr(err, "problem", "")).startswith("duplicate key"):
            raise ConfigError(f"{path}: {err.problem}") from err
        raise ConfigError(f"{path}: not valid YAML ({' '.join(str(err).split())})") from err
    except (ValueError, TypeError, OverflowError) as err:  # a value YAML parses but cannot build (a date)
        raise ConfigError(f"{path}: not valid YAML ({type(err).__name__}: {err})") from err
    if preset is None:
        raise ConfigError(f"{path}: the preset is empty (no YAML document); write {{}} for a preset that sets nothing "
                          "(it replaces the dataset's packaged preset)")
    if not isinstance(preset, dict):
        raise ConfigError(f"{path}: expected a mapping of teacher kinds to sections")
    for kind, block in preset.items():
        if kind == "recipe":
            _check_recipe(path, block)
            continue
        if kind not in CONVS:
            hint = " (a section belongs inside a teacher block: gcn: {kind}: ...)" if kind in SECTIONS else ""
            raise ConfigError(f"{path}: top-level key {kind!r} is neither a teacher kind {sorted(CONVS)} nor 'recipe'"
                              + hint.format(kind=kind))
        _check_block(path, kind, block)
    return preset


def _check_block(path: Path, where: str, block: Any, methods: bool = True) -> None:
    """A teacher block (``methods``) or a method block: sections of known keys, each once."""
    if block is None:
        return
    if not isinstance(block, dict):
        raise ConfigError(f"{path}: block {where!r} must be a mapping of sections")
    for section, values in block.items():
        if methods and section in METHODS:
            _check_block(path, f"{where}.{section}", values, methods=False)
            continue
        if section not in SECTIONS:
            more = f" (and per-method blocks {list(METHODS)})" if methods else ""
            raise ConfigError(f"{path}: unknown config section '{where}.{section}'; known: {list(SECTIONS)}{more}")
        if values is not None and not isinstance(values, dict):
            raise ConfigError(f"{path}: section {where}.{section} must be a mapping")
        keys = {f.name for f in dataclasses.fields(SECTIONS[section])}
        for key in values or {}:
            if key not in keys:
                raise ConfigError(f"{path}: unknown config key '{where}.{section}.{key}'; known keys: {sorted(keys)}")
            if f"{section}.{key}" in FLAG_KEYS:
                raise ConfigError(f"{path}: {where}.{section}.{key} cannot be set in a preset: it is "
                                  f"{FLAG_KEYS[f'{section}.{key}']}")


def _read_preset(path: Path, teacher: str, method: str) -> list:
    """The layers of a preset that apply to ``teacher`` and ``method``: ``[(where, sections)]``."""
    preset = _load_preset(path)
    block = preset.get(teacher, {}) or {}
    own = block.get(method) or {}
    shared = {key: values for key, values in block.items() if key not in METHODS}
    return [(str(path), teacher, shared), (str(path), f"{teacher}.{method}", own)]


@dataclass(frozen=True)
class DistillSection(DistillConfig):
    """The ``distill`` section of an experiment: the library's :class:`DistillConfig` (what one
    student learns from) and what a run arranges around it: the weight decays to choose among on
    validation (:func:`~vqgraph.app.run.fit_selected_student`) and the teachers whose soft labels
    the targets average (:func:`~vqgraph.app.run.ensemble`)."""

    weight_decays: Tuple[float, ...] = ranged((), ge=0)  # one student each, the best on select_by kept; (): student_train's
    teachers: int = ranged(1, ge=1)  # teachers whose soft labels the targets average (vqgraph.ensemble_targets)
    teacher_kinds: Tuple[str, ...] = choice((), CONVS)  # encoder kinds of teachers 2..N (each with its preset block); (): the first's

    def __post_init__(self):
        super().__post_init__()  # checks every field, these included
        if self.teacher_kinds and len(self.teacher_kinds) != self.teachers - 1:
            raise ValueError(f"teacher_kinds names {len(self.teacher_kinds)} kind(s) for teachers 2..N: set "
                             f"teachers={len(self.teacher_kinds) + 1} (it is {self.teachers})")

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
            config = config.updated(layer, origin, block, text=False)
        config = config.with_overrides(overrides)
        for key, named, value in (("teacher.conv", teacher, config.teacher.conv), ("distill.method", method,
                                                                                  config.distill.method)):
            if value.lower() != named.lower():
                raise ConfigError(f"{key}={value} contradicts the {key.split('.')[0]} named ({named!r}), whose "
                                  f"preset block and defaults were applied: name {value!r} instead")
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

    def updated(self, layer: Mapping[str, Mapping[str, Any]], origin: str = "", block: str = "",
                text: bool = True) -> "ExperimentConfig":
        """This config with ``{section: {key: value}}`` applied. Unknown names and wrong types
        are errors naming the ``origin`` (a file, "command line") and the key (``block.section.key``);
        ``text=False`` (a YAML file's typed values): a number or boolean given as a string is one."""
        names = [f.name for f in dataclasses.fields(self)]
        changes = {}
        for section, values in layer.items():
            where = f"{block}.{section}" if block else section
            if section not in names:
                blocks = f" (and per-method blocks {list(METHODS)})" if block else ""
                raise ConfigError(f"{origin}: unknown config section {where!r}; known: {names}{blocks}")
            if values is not None and not isinstance(values, Mapping):
                raise ConfigError(f"{origin}: section {where} must be a mapping")
            try:
                changes[section] = replace_checked(getattr(self, section), values or {}, where, text)
            except ConfigError as err:  # a file names itself; the command line's keys are its own
                if origin and origin != "command line":
                    raise ConfigError(f"{origin}: {err}") from err
                raise
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Dict[str, Any]]:
        return {f.name: to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}


SECTIONS = {f.name: typing.get_type_hints(ExperimentConfig)[f.name] for f in dataclasses.fields(ExperimentConfig)}
