"""Any PyTorch Geometric node-classification dataset, by name: ``pyg:Amazon/Photo``,
``pyg:Planetoid/PubMed``, ``pyg:WikiCS``.

``pyg:CLASS/NAME`` is ``torch_geometric.datasets.CLASS(root, name=NAME)`` and ``pyg:CLASS`` is
``CLASS(root)``, with ``root = <data root>/pyg/CLASS``. Files are read by PyG's own readers (the
raw files of some datasets, Planetoid's for one, are pickles: read only those from a source you
trust). Offline, the files must already be where PyG looks for them; a missing file is reported
with those paths and nothing is fetched unless ``download=True``. The graph then goes through
:func:`vqgraph.prepare_graph` (undirected, no self-loops or duplicates; every node kept, no
largest-component cut), and keeps the dataset's fixed split masks if it has any.
"""

from __future__ import annotations

import inspect
import os
import warnings
from pathlib import Path
from typing import List, Tuple

from torch_geometric.data import Data

from vqgraph.data.graph import prepare_graph
from vqgraph.errors import DatasetNotFoundError, UnknownDatasetError

PREFIX = "pyg:"


def parse_name(name: str) -> Tuple[str, str]:
    """``pyg:CLASS[/NAME]`` -> ``(CLASS, NAME or "")``."""
    rest = name[len(PREFIX):] if name.startswith(PREFIX) else name
    cls_name, _, sub = rest.partition("/")
    if not cls_name or "/" in sub:
        raise UnknownDatasetError(f"dataset {name!r}: write pyg:CLASS or pyg:CLASS/NAME, for example pyg:Amazon/Photo")
    return cls_name, sub


def dataset_class(cls_name: str, name: str = ""):
    import torch_geometric.datasets as pyg_datasets

    cls = getattr(pyg_datasets, cls_name, None)
    if not (inspect.isclass(cls) and hasattr(cls, "raw_file_names")):
        known = sorted(n for n in dir(pyg_datasets) if inspect.isclass(getattr(pyg_datasets, n)))
        raise UnknownDatasetError(f"dataset pyg:{cls_name}{'/' + name if name else ''}: torch_geometric.datasets has "
                                  f"no dataset class {cls_name!r} (it has: {', '.join(known[:40])}, ...)")
    takes_name = "name" in inspect.signature(cls.__init__).parameters
    if takes_name and not name:
        raise UnknownDatasetError(f"dataset pyg:{cls_name} needs a name: pyg:{cls_name}/NAME (for example "
                                  "pyg:Amazon/Photo, pyg:Planetoid/PubMed)")
    if name and not takes_name:
        raise UnknownDatasetError(f"dataset pyg:{cls_name}/{name}: {cls_name} takes no name; write pyg:{cls_name}")
    return cls, takes_name


class _Missing(Exception):
    def __init__(self, raw_paths: List[str]):
        super().__init__(raw_paths)
        self.raw_paths = raw_paths


def _files(folder: Path) -> set:
    return {p for p in folder.rglob("*") if p.is_file()} if folder.exists() else set()


def _prune(folder: Path, before: set, made: List[Path]) -> None:
    """Remove what a failed attempt left under ``folder``: new files, then empty folders, then
    the folders of ``made`` (those above it that did not exist before), if empty."""
    for path in _files(folder) - before:
        path.unlink(missing_ok=True)
    below = [p for p in folder.rglob("*") if p.is_dir()] if folder.exists() else []
    for path in sorted(below, key=lambda p: len(p.parts), reverse=True) + made:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def load_pyg(name: str, roots: List[Path], download: bool = False) -> Data:
    """Load ``pyg:CLASS[/NAME]`` from the first of ``roots`` that holds its folder (downloads go
    to the first root). Returns a canonical graph named ``name``.

    Raises:
        UnknownDatasetError: no such PyG class, or a name missing or superfluous.
        DatasetNotFoundError: the raw files are missing (names them) or the download failed.
    """
    cls_name, sub = parse_name(name)
    cls, takes_name = dataset_class(cls_name, sub)
    folders = [Path(root) / "pyg" / cls_name for root in roots]
    folder = next((f for f in folders if f.is_dir()), folders[0])
    kwargs = {"name": sub} if takes_name else {}
    before = _files(folder)
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyG's notes on changed defaults (e.g. WikiCS is_undirected)
            if download:
                dataset = cls(str(folder), **kwargs)
            else:
                offline = type(cls.__name__, (cls,), {"download": _refuse_download})
                dataset = offline(str(folder), **kwargs)
    except _Missing as missing:
        _prune(folder, before, made)
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: PyG's {cls_name} reads {missing.raw_paths}, which do not all exist "
            f"(searched under {', '.join(map(str, folders))}). Put those files there, or fetch them through PyG "
            "with download=True (command line: --download)") from None
    except Exception as err:  # offline, HTTP error, a cut download, a malformed raw file
        _prune(folder, before, made)
        raise DatasetNotFoundError(f"dataset {name!r}: PyG's {cls_name} could not load or download it into {folder} "
                                   f"(nothing new was kept): {type(err).__name__}: {err}") from err
    if len(dataset) != 1:
        raise UnknownDatasetError(f"dataset {name!r} holds {len(dataset)} graphs; node classification needs one")
    data = dataset[0]
    keep = {key: data[key] for key in ("train_mask", "val_mask", "test_mask") if key in data}
    plain = Data(x=data.x, edge_index=data.edge_index, y=data.y, **keep)
    return prepare_graph(plain, name=name)


def _refuse_download(self) -> None:
    raise _Missing([os.fspath(p) for p in self.raw_paths])
