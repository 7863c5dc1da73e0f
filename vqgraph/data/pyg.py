"""Any PyTorch Geometric node-classification dataset, by name: ``pyg:Amazon/Photo``,
``pyg:Planetoid/PubMed``, ``pyg:WikiCS``.

``pyg:CLASS/NAME`` is ``torch_geometric.datasets.CLASS(root, name=NAME)`` and ``pyg:CLASS`` is
``CLASS(root)``, with ``root = <data root>/pyg/CLASS`` for the first data root that holds the
dataset's raw files (downloads go to the first data root). Files are read by PyG's own readers (the
raw files of some datasets, Planetoid's for one, are pickles: read only those from a source you
trust). Offline, the files must already be where PyG looks for them; a missing file is reported
with those paths and nothing is fetched unless ``download=True``. The graph then goes through
:func:`vqgraph.prepare_graph` (undirected, no self-loops or duplicates; every node kept, no
largest-component cut), and keeps the dataset's fixed split masks if it has any.
"""

from __future__ import annotations

import inspect
import os
import shutil
import warnings
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data import arrays as checks
from vqgraph.data.cpf import CPF_KEYS, read_cpf_arrays
from vqgraph.data.leftovers import guarded
from vqgraph.data.prepare import prepare_graph
from vqgraph.errors import DataFormatError, DatasetNotFoundError, UnknownDatasetError, VQGraphError

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


def _refuse_download(self) -> None:
    raise _Missing([os.fspath(p) for p in self.raw_paths])


def _checked(cls, download: bool = True):
    """``cls`` whose raw ``.npz`` files in the CPF layout (Amazon's, Coauthor's, ...) pass
    :func:`read_cpf_arrays` before PyG processes them (PyG builds scipy matrices from those arrays
    unchecked); without ``download``, a missing raw file raises :class:`_Missing` instead."""
    def process(self) -> None:
        for path in map(Path, self.raw_paths):
            if path.suffix == ".npz" and path.is_file():
                with np.load(path, allow_pickle=False) as archive:
                    layout = set(CPF_KEYS) <= set(archive.files)
                if layout:
                    read_cpf_arrays(path)
        cls.process(self)

    return type(cls.__name__, (cls,), {"process": process, **({} if download else {"download": _refuse_download})})


def _offline(cls):
    return _checked(cls, download=False)


def _arrays_of(data: Data, folder: Path) -> Data:
    """The graph PyG read, its arrays checked as a file's are (:mod:`vqgraph.data.arrays`): finite
    features, edges within the nodes, split masks of one row per node (the labels are
    :func:`prepare_graph`'s to check)."""
    if not all(isinstance(data.get(key), Tensor) for key in ("x", "edge_index", "y")):
        raise checks.bad(folder, None, "holds a dataset without the tensors x, edge_index and y (not node "
                                       "classification?)")
    x = data.x.to_dense() if data.x.layout != torch.strided else data.x
    n = checks.reals(x.cpu().numpy(), folder, "data.x", 2).shape[0]
    checks.node_nonempty(n, folder, "data.x")
    edges = checks.integers(data.edge_index.cpu().numpy(), folder, "data.edge_index", 2)
    if edges.shape[0] != 2:
        raise checks.bad(folder, "data.edge_index", f"must have shape [2, num_edges], got {edges.shape}")
    checks.in_range(edges, n, folder, "data.edge_index", "rows of data.x")
    keep = {}
    for key in ("train_mask", "val_mask", "test_mask"):
        if key in data:
            mask = data[key].cpu().numpy()
            if mask.ndim not in (1, 2) or mask.shape[0] != n:
                raise checks.bad(folder, f"data.{key}", f"must have shape [{n}] or [{n}, num_splits], got {mask.shape}")
            checks.split_masks(mask.reshape(n, -1).T, n, folder, f"data.{key}")
            keep[key] = data[key].bool()
    return Data(x=data.x, edge_index=data.edge_index, y=data.y, **keep)


def _download_into(cls, folder: Path, kwargs) -> None:
    """Let PyG download the raw files into a temporary sibling of ``folder``, then move them into
    ``folder``: a transfer that fails or is interrupted leaves nothing under ``folder``. (PyG does
    not compare a file's length with the announced one; a cut that raises nothing and that its
    reader accepts cannot be noticed.)"""
    tmp = folder.parent / f".{folder.name}.download-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fetched = _checked(cls)(str(tmp), **kwargs)
        raw = Path(fetched.raw_dir)
        for path in (p for p in raw.rglob("*") if p.is_file()):
            dest = folder / raw.relative_to(tmp) / path.relative_to(raw)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_offline(cls, folders: List[Path], kwargs, name: str):
    """``(dataset, [])`` read by PyG from the first of ``folders`` holding the raw files, else
    ``(None, the raw files expected)``; what a failed attempt created is removed."""
    expected = []
    for folder in folders:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # PyG's notes on changed defaults (e.g. WikiCS is_undirected)
                return guarded(folder, lambda: _offline(cls)(str(folder), **kwargs)), []
        except _Missing as missing:
            expected += missing.raw_paths
        except VQGraphError:
            raise
        except Exception as err:  # the files are there, but PyG's reader failed on them
            raise DataFormatError(f"dataset {name!r}: PyG's {cls.__name__} could not read its files under {folder} "
                                  f"(nothing new was kept): {type(err).__name__}: {err}. Replace them (delete the "
                                  "folder and use download=True) or fix them") from err
    return None, expected


def load_pyg(name: str, roots: List[Path], download: bool = False) -> Data:
    """Load ``pyg:CLASS[/NAME]`` from the first of ``roots`` whose ``pyg/CLASS`` folder holds
    its raw files; else, with ``download``, fetch them through PyG into the first root. Returns a
    canonical graph named ``name``.

    Raises:
        UnknownDatasetError: no such PyG class, or a name missing or superfluous.
        DatasetNotFoundError: the raw files are missing (names them) or the download failed.
        DataFormatError: the raw files are there but malformed (PyG's reader failed, or our checks).
    """
    cls_name, sub = parse_name(name)
    cls, takes_name = dataset_class(cls_name, sub)
    kwargs = {"name": sub} if takes_name else {}
    folders = [Path(root) / "pyg" / cls_name for root in roots]
    dataset, expected = _read_offline(cls, folders, kwargs, name)
    if dataset is None and download:
        try:
            guarded(folders[0], lambda: _download_into(cls, folders[0], kwargs))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = guarded(folders[0], lambda: _offline(cls)(str(folders[0]), **kwargs))
        except _Missing as missing:
            raise DatasetNotFoundError(f"dataset {name!r}: the download into {folders[0]} left no "
                                       f"{missing.raw_paths}") from None
        except Exception as err:  # offline, HTTP error, a cut download, a malformed downloaded file
            raise DatasetNotFoundError(f"dataset {name!r}: PyG's {cls_name} could not download it into {folders[0]} "
                                       f"(nothing new was kept): {type(err).__name__}: {err}") from err
    if dataset is None:
        raise DatasetNotFoundError(
            f"dataset {name!r} not found: PyG's {cls_name} reads {expected}, which do not all exist. Put those "
            f"files there, or fetch them through PyG into {folders[0]} with download=True (command line: --download)")
    if len(dataset) != 1:
        raise UnknownDatasetError(f"dataset {name!r} holds {len(dataset)} graphs; node classification needs one")
    return prepare_graph(_arrays_of(dataset[0], Path(dataset.root)), name=name)
