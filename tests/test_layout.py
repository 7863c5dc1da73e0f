"""The package's shape, as issue 28 set it: three layers (the library ``vqgraph/``, the commands in
``experiments/``, the lab in ``experiments/bench/`` and ``experiments/studies/``), floors inside the
library that import only downwards, and modules and functions of a readable size."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

# floors of the library, lowest first: a module may import its own floor and those below it
FLOORS = (
    ("vqgraph.errors", "vqgraph.utils", "vqgraph.distributed", "vqgraph.losses"),
    ("vqgraph.data",),
    ("vqgraph.models",),
    ("vqgraph.evaluation", "vqgraph.targets"),
    ("vqgraph.serving",),
    ("vqgraph.training",),
    ("vqgraph.app",),
)
LAB = ("experiments.bench", "experiments.studies")
MAX_MODULE_LINES = {"vqgraph": 400}
MAX_FUNCTION_LINES = {"vqgraph": 60, "experiments": 70}
MAX_COMMANDS, MAX_COMMAND_LINES = 9, 200


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources(package: str):
    return sorted((REPO / package).rglob("*.py"))


def lazy_table(tree: ast.Module):
    """A package's ``_LAZY = {module: (names, ...)}`` (:mod:`vqgraph.utils.lazy`), or None."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_LAZY" for t in node.targets):
            return ast.literal_eval(node.value)
    return None


def imports(path: Path):
    """Every module ``path`` imports, at the top or inside a function (``from a import b`` counts as
    ``a.b``, which :func:`floor` maps to ``a``'s floor when ``b`` is not a module), and the names of
    its lazy table (imported on first use: ``{"a": ("b",)}`` counts as ``a.b`` too)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
    yield from (f"{module}.{name}" for module, names in (lazy_table(tree) or {}).items() for name in names)


def floor(name: str):
    for level, prefixes in enumerate(FLOORS):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return level
    return None


def test_library_imports_only_downwards():
    back_up = []
    for path in sources("vqgraph"):
        me = module_name(path)
        mine = floor(me)
        for name in imports(path):
            theirs = floor(name)
            if name.startswith("experiments"):
                back_up.append(f"{me} imports {name} (the library never imports the commands)")
            elif mine is not None and theirs is not None and theirs > mine:
                back_up.append(f"{me} (floor {mine}) imports {name} (floor {theirs})")
    assert not back_up, "\n".join(back_up)


def test_every_library_module_has_a_floor():
    assert [module_name(p) for p in sources("vqgraph") if floor(module_name(p)) is None] == ["vqgraph"]


def test_commands_do_not_import_the_lab():
    commands = [p for p in sources("experiments") if not module_name(p).startswith(LAB)]
    bad = [f"{module_name(p)} imports {name}" for p in commands for name in imports(p) if name.startswith(LAB)]
    assert not bad, "\n".join(bad)


def test_experiments_top_level_holds_only_user_commands():
    commands = sorted(p.name for p in (REPO / "experiments").glob("*.py"))
    assert len(commands) <= MAX_COMMANDS, commands
    long = {p.name: n for p in (REPO / "experiments").glob("*.py") if (n := len(p.read_text().splitlines())) > MAX_COMMAND_LINES}
    assert not long, long


@pytest.mark.parametrize("package", sorted(MAX_MODULE_LINES))
def test_no_module_is_too_long(package):
    limit = MAX_MODULE_LINES[package]
    long = {module_name(p): n for p in sources(package) if (n := len(p.read_text().splitlines())) > limit}
    assert not long, long


@pytest.mark.parametrize("package", sorted(MAX_FUNCTION_LINES))
def test_no_function_is_too_long(package):
    limit, long = MAX_FUNCTION_LINES[package], []
    for path in sources(package):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > limit:
                    long.append(f"{module_name(path)}.{node.name}: {node.end_lineno - start + 1} lines")
    assert not long, "\n".join(long)


def test_the_public_api_is_sorted_complete_and_holds_no_internals():
    import vqgraph
    from vqgraph import errors

    assert vqgraph.__all__ == sorted(vqgraph.__all__)
    assert all(hasattr(vqgraph, name) for name in vqgraph.__all__)
    raised = {name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)}
    assert raised <= set(vqgraph.__all__)  # every error a user may catch
    held = {"ExperimentConfig", "TeacherResult", "StudentResult", "Evaluator", "TeacherTargets", "Predictor"}
    assert held <= set(vqgraph.__all__)
    assert not {"resolve_data_root", "KNOWN_DATASETS", "cpf_split"} & set(vqgraph.__all__)


def test_every_exception_is_defined_in_the_errors_module():
    """(A private one that never leaves its module, a signal inside a loader, is not an error of the API.)"""
    defined = []
    for path in sources("vqgraph"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_") and any(getattr(b, "id", "").endswith(("Error", "Exception"))
                                                      for b in node.bases):
                defined.append(f"{module_name(path)}.{node.name}")
    assert all(name.startswith("vqgraph.errors.") for name in defined), defined


def test_lazy_packages_export_their_tables_sorted_and_resolvable():
    """A package with a lazy table (``vqgraph``, ``vqgraph.data``, ``vqgraph.models``) exports exactly its
    names, sorted; each resolves to the object its module defines; ``dir()`` lists them."""
    import importlib

    lazy = [p for p in sources("vqgraph") if p.name == "__init__.py" and lazy_table(ast.parse(p.read_text()))]
    assert {module_name(p) for p in lazy} >= {"vqgraph", "vqgraph.data", "vqgraph.models"}
    for path in lazy:
        package = importlib.import_module(module_name(path))
        table = lazy_table(ast.parse(path.read_text()))
        names = [name for names in table.values() for name in names]
        assert package.__all__ == sorted(package.__all__) and sorted(names) == package.__all__, package.__name__
        for module, exported in table.items():
            for name in exported:
                assert getattr(package, name) is getattr(importlib.import_module(module), name)
        assert set(package.__all__) <= set(dir(package))
