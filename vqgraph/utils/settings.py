"""Settings that declare their valid values where they are defined.

A config dataclass declares each field with :func:`ranged` (numbers, and lists of numbers) or
:func:`choice` (strings); its ``__post_init__`` calls :func:`check_fields` first, which checks
every declared field: its type, that a float is finite, and its range or choices. A failure is
a :class:`~vqgraph.errors.ConfigError` (a ``ValueError``) naming the key, the value and what is
valid, with the key in ``err.key`` so that a reader can name the section (``train.lr``)::

    @dataclass(frozen=True)
    class TrainConfig:
        lr: float = ranged(0.01, gt=0)
        patience: Optional[int] = ranged(100, ge=0)  # Optional: None passes

:func:`describe_fields` lists a dataclass's keys, defaults and ranges (``--help``);
:func:`replace_checked` applies ``{key: value}`` updates, typed by :func:`coerce` (strings parsed
only from the command line: a YAML file's ``"0.1"`` for a number is refused).
"""

from __future__ import annotations

import collections.abc
import dataclasses
import functools
import math
import reprlib
import typing
from dataclasses import dataclass, field, fields
from typing import Any, List, Mapping, Optional, Sequence, Tuple, TypeVar

from vqgraph.errors import ConfigError

T = TypeVar("T")
RULE = "vqgraph_rule"  # the key of a field's rule in its dataclass metadata


@dataclass(frozen=True)
class Rule:
    """What values a field takes: numbers in a range (``ge``/``gt`` below, ``le``/``lt`` above,
    ``also`` extra allowed values) or one of ``choices``. For a list field every item is checked;
    ``nonempty`` refuses an empty list."""

    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    also: Tuple[Any, ...] = ()
    choices: Tuple[str, ...] = ()
    nonempty: bool = False

    def describe(self, item: type = float) -> str:
        """The valid values of an ``item`` (bool, int, float, str) in words: ``in [0, 1)``,
        ``>= 1``, ``>= 0 and finite``, ``one of (...)``."""
        if self.choices:
            return f"one of {self.choices}"
        if item in (bool, str):
            return "true or false" if item is bool else "any string"
        integer = item is int
        low = f"[{_num(self.ge)}" if self.ge is not None else f"({_num(self.gt)}" if self.gt is not None else None
        high = f"{_num(self.le)}]" if self.le is not None else f"{_num(self.lt)})" if self.lt is not None else None
        if low and high:
            text = f"in {low}, {high}"
        else:
            bounds = [(">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)]
            text = " and ".join(f"{op} {_num(bound)}" for op, bound in bounds if bound is not None)
            text = text if integer or not text else f"{text} and finite"
        return (text or ("any integer" if integer else "finite")) + "".join(f" or {v!r}" for v in self.also)

    def holds(self, value: Any) -> bool:
        if self.choices:
            return value in self.choices
        if value in self.also:
            return True
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))


def _num(bound: float) -> str:
    return str(bound) if isinstance(bound, int) else f"{bound:g}"


def ranged(default: Any, *, ge=None, gt=None, le=None, lt=None, also: Sequence[Any] = (), nonempty: bool = False):
    """A numeric field (or a list of numbers) with its ``default`` and valid range; floats must be
    finite. ``also``: values allowed outside the range (``-1``: all neighbours)."""
    return field(default=default, metadata={RULE: Rule(ge, gt, le, lt, tuple(also), (), nonempty)})


def choice(default: Any, choices: Sequence[str]):
    """A string field that takes one of ``choices`` (a list field: each item)."""
    return field(default=default, metadata={RULE: Rule(choices=tuple(choices))})


@functools.lru_cache(maxsize=None)
def _kinds(cls: type) -> dict:
    """Per field of ``cls``: (optional, is a list, item type) from its annotation."""
    out = {}
    for name, hint in typing.get_type_hints(cls).items():
        args = typing.get_args(hint)
        optional = typing.get_origin(hint) is typing.Union and type(None) in args
        if optional:
            hint = next(a for a in args if a is not type(None))
        listed = typing.get_origin(hint) in (tuple, list, Sequence, typing.get_origin(Sequence[int]))
        item = typing.get_args(hint)[0] if listed else hint
        out[name] = (optional, listed, item)
    return out


_SHOWN = reprlib.Repr()
_SHOWN.maxlevel, _SHOWN.maxlist, _SHOWN.maxtuple, _SHOWN.maxdict = 2, 8, 8, 8
_SHOWN.maxstring = _SHOWN.maxother = 120


def shown(value: Any) -> str:
    """``repr(value)`` cut short: a YAML alias bomb (a billion items sharing a few objects) is
    shown as ``[[[...], ...], ...]`` in an error, never expanded."""
    return _SHOWN.repr(value)


def _fail(key: str, message: str) -> ConfigError:
    err = ConfigError(f"{key} {message}")
    err.key = key
    return err


def _listed(rule: Rule, item: type) -> str:
    kind = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}.get(item, "values")
    return f"a {'non-empty ' if rule.nonempty else ''}list of {kind}, each {rule.describe(item)}"


def _check_item(key: str, value: Any, item: type, rule: Rule, whole: Any, listed: bool) -> None:
    if item is bool:
        ok = isinstance(value, bool)
        expected = "true or false"
    elif item is str:
        ok = isinstance(value, str)
        expected = "a string"
    else:
        numeric = (int,) if item is int else (int, float)
        ok = isinstance(value, numeric) and not isinstance(value, bool)
        expected = "an integer" if item is int else "a number"
    if not ok or not rule.holds(value):
        valid = _listed(rule, item) if listed else rule.describe(item) if ok else expected
        raise _fail(key, f"must be {valid}, got {shown(whole)}")


def check_fields(obj: Any) -> None:
    """Check every field of the dataclass ``obj``: its type (bool, int, float, str, a list of
    them), and the range or choices of one declared with :func:`ranged` or :func:`choice`;
    raise ConfigError naming the first bad one."""
    kinds = _kinds(type(obj))
    for f in fields(obj):
        rule = f.metadata.get(RULE) or Rule()
        value = getattr(obj, f.name)
        optional, listed, item = kinds[f.name]
        if optional and value is None:
            continue
        if not listed:
            _check_item(f.name, value, item, rule, value, False)
            continue
        if not isinstance(value, (tuple, list)) or (rule.nonempty and not value):
            raise _fail(f.name, f"must be {_listed(rule, item)}, got {shown(value)}")
        for one in value:
            _check_item(f.name, one, item, rule, value, True)


def describe_fields(cls: type) -> List[Tuple[str, Any, str]]:
    """``[(key, default, valid values)]`` of a config dataclass, in field order."""
    kinds = _kinds(cls)
    out = []
    for f in fields(cls):
        rule, (optional, listed, item) = f.metadata.get(RULE), kinds[f.name]
        valid = (rule or Rule()).describe(item)
        if listed:
            valid = _listed(rule or Rule(), item).removeprefix("a ")
        out.append((f.name, f.default, valid + (" or None" if optional else "")))
    return out


def coerce(value: Any, annotation: Any, where: str, text: bool = True) -> Any:
    """Check ``value`` against a dataclass field annotation, parsing strings (the command line's)
    when ``text``; a typed file (YAML) gives numbers, booleans and lists as such, not as strings."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if value is None or (text and isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        inner = [a for a in args if a is not type(None)]
        return coerce(value, inner[0], where, text)
    item = args[0] if args else str
    if isinstance(value, str) and not text and (annotation in (bool, int, float) or item in (bool, int, float)):
        raise ConfigError(f"{where}: expected {_TYPED.get(annotation, 'a list')}, got the string {value!r}: write it "
                          "without quotes")
    if origin in (tuple, list, collections.abc.Sequence) or annotation in (tuple, list):
        if isinstance(value, str):  # "a,b" or "[a, b]"
            value = value.replace(" ", "").removeprefix("[").removesuffix("]").split(",")
            if value != [""] and "" in value:
                raise ConfigError(f"{where}: an empty item in the list {','.join(value)!r}")
            value = [v for v in value if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {shown(value)}")
        return tuple(coerce(v, item, where, text) for v in value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{where}: expected true/false, got {shown(value)}")
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
        raise ConfigError(f"{where}: expected {expected}, got {shown(value)}")
    if annotation is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {shown(value)}")
        return value
    return value


_TYPED = {bool: "true or false", int: "an integer", float: "a number"}


def replace_checked(obj: T, updates: Mapping[str, Any], section: str = "", text: bool = True) -> T:
    """``dataclasses.replace`` that rejects unknown keys and wrong types, naming the key (``text``:
    values may be strings to parse, as on the command line)."""
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    clean = {}
    for key, value in updates.items():
        where = f"{section}.{key}" if section else key
        if key not in names:
            raise ConfigError(f"unknown config key {where!r}; known keys: {sorted(names)}")
        clean[key] = coerce(value, hints[key], where, text)
    try:
        return dataclasses.replace(obj, **clean)
    except ConfigError as err:  # a field out of its declared range: err.key names it
        if not getattr(err, "key", None):
            raise
        raise ConfigError(f"{section}.{err}" if section else str(err)) from err
    except (ValueError, TypeError) as err:  # a check across fields
        raise ConfigError(f"{section or type(obj).__name__}: {err}") from err
