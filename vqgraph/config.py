"""Configuration: frozen dataclasses, YAML presets and ``section.key=value`` overrides.

Precedence is defaults < YAML preset < command line, always: a preset never overrides a flag.
Unknown sections or keys and values of the wrong type are rejected with the key's name.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import typing
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, TypeVar

import yaml

from vqgraph.errors import VQGraphError

T = TypeVar("T")


class ConfigError(VQGraphError, ValueError):
    """A configuration key is unknown or its value has the wrong type."""


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
        if isinstance(value, str):
            value = [v for v in value.replace(" ", "").split(",") if v]
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


def load_sections(
    defaults: Mapping[str, Any], yaml_path: Optional[Path] = None, overrides: Iterable[str] = ()
) -> Dict[str, Any]:
    """Apply a YAML preset, then command-line overrides, to a mapping of section -> dataclass."""
    sections = dict(defaults)
    layers = []
    if yaml_path is not None:
        with open(yaml_path) as handle:
            preset = yaml.safe_load(handle) or {}
        if not isinstance(preset, dict):
            raise ConfigError(f"{yaml_path}: expected a mapping of sections, got {type(preset).__name__}")
        layers.append((str(yaml_path), preset))
    layers.append(("command line", parse_overrides(overrides)))
    for source, layer in layers:
        for section, values in layer.items():
            if section not in sections:
                raise ConfigError(f"{source}: unknown config section {section!r}; known: {sorted(sections)}")
            if not isinstance(values, dict):
                raise ConfigError(f"{source}: section {section!r} must be a mapping")
            sections[section] = replace_checked(sections[section], values, section)
    return sections


def to_dict(obj: Any) -> Dict[str, Any]:
    out = dataclasses.asdict(obj)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}
