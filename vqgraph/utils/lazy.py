"""Lazy public names of a package (PEP 562): ``import vqgraph`` costs nothing until a name is used.

A package lists its public names by the module that defines them, ``_LAZY = {"vqgraph.x.y":
("Name", ...)}``, and sets ``__getattr__, __dir__ = lazy_exports(__name__, _LAZY)``: the first
``vqgraph.Name`` (or ``from vqgraph import Name``) imports ``vqgraph.x.y`` and keeps the name in
the package, later ones are plain attribute reads. A serving process that imports only
``Predictor`` so never imports the graph library. ``tests/test_layout.py`` reads these tables as
imports (the floors hold for them too).
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from typing import Callable, List, Mapping, Sequence, Tuple


def lazy_exports(package: str, table: Mapping[str, Sequence[str]]) -> Tuple[Callable, Callable]:
    """``(__getattr__, __dir__)`` for ``package`` exporting ``table`` (``{module: names}``); a
    submodule not yet imported (``vqgraph.data``) is imported on first access as well."""
    where = {name: module for module, names in table.items() for name in names}

    def __getattr__(name: str):
        me = sys.modules[package]
        if name in where:
            value = getattr(importlib.import_module(where[name]), name)
        elif not name.startswith("__") and name in _submodules(me):
            value = importlib.import_module(f"{package}.{name}")
        else:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        setattr(me, name, value)  # the next access is a plain attribute read
        return value

    def __dir__() -> List[str]:
        return sorted(set(vars(sys.modules[package])) | set(where))

    return __getattr__, __dir__


def _submodules(module) -> set:
    return {info.name for info in pkgutil.iter_modules(getattr(module, "__path__", []))}
