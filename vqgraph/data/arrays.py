"""The checks every array read from a data file passes before anything is built from it.

Each reader (CPF and heterophilic ``.npz``, OGB raw ``.csv.gz``, PyG's tensors) calls these
on the arrays it read, so that scipy and torch only ever see consistent arrays: scipy trusts
the index arrays of a CSR matrix, and an index past its shape corrupts the heap. Every failure
is one :class:`DataFormatError` naming the file, the key and what is wrong.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Optional, Tuple, Union

import numpy as np
import scipy.sparse as sp

from vqgraph.errors import DataFormatError

Where = Union[str, Path]


def bad(path: Where, key: Optional[str], what: str) -> DataFormatError:
    """The one error of a bad array: ``<file>: '<key>' <what is wrong>`` (``<file>: the file ...``
    for a file that holds one array, ``key=None``)."""
    subject = "the file" if key is None else repr(key)
    return DataFormatError(f"{path}: {subject} {what}; the file is corrupt or not in the expected layout")


def _first(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask.reshape(-1))[0])


def _typed(array, path: Where, key: Optional[str], ndim: int, kinds: str, what: str) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype.kind not in kinds:
        raise bad(path, key, f"must hold {what}, got dtype {array.dtype}")
    if array.ndim != ndim:
        raise bad(path, key, f"must have {ndim} dimension(s), got shape {array.shape}")
    return array


def integers(array, path: Where, key: Optional[str], ndim: int) -> np.ndarray:
    """``array`` as an integer (not bool) array of ``ndim`` dimensions."""
    return _typed(array, path, key, ndim, "iu", "integers")


def reals(array, path: Where, key: Optional[str], ndim: int) -> np.ndarray:
    """``array`` as a finite real (bool, integer or float) array of ``ndim`` dimensions."""
    array = _typed(array, path, key, ndim, "biuf", "real numbers")
    if array.dtype.kind == "f" and array.size and not np.isfinite(array.sum(dtype=np.float64)):
        finite = np.isfinite(array)
        if not finite.all():
            raise bad(path, key, f"holds {int((~finite).sum())} NaN/inf value(s); first at flat index "
                                 f"{_first(~finite)}")
    return array


def in_range(index: np.ndarray, upper: int, path: Where, key: Optional[str], what: str) -> None:
    """Every entry of the integer array ``index`` in ``[0, upper)``; ``what`` names the bound."""
    if index.size == 0:
        return
    outside = (index < 0) | (index >= upper)
    if outside.any():
        at = _first(outside)
        raise bad(path, key, f"has {int(outside.sum())} index(es) outside [0, {upper}) ({what}); first at flat "
                             f"index {at}: {index.reshape(-1)[at]}")


def shape2(array, path: Where, key: Optional[str]) -> Tuple[int, int]:
    """A matrix shape stored as an array: two non-negative integers."""
    array = integers(array, path, key, 1)
    if array.shape != (2,) or (array < 0).any():
        raise bad(path, key, f"must be two non-negative integers (rows, columns), got {array.tolist()}")
    return int(array[0]), int(array[1])


def csr(arrays: Mapping[str, np.ndarray], prefix: str, path: Where, nonzero: bool = False) -> sp.csr_matrix:
    """The CSR matrix of ``<prefix>_data/_indices/_indptr/_shape``, built only once every array
    is consistent: ``indptr`` of length rows + 1, starting at 0, non-decreasing, ending at
    ``len(indices)``; column indices in ``[0, columns)``; ``data`` finite, one per index (and,
    with ``nonzero``, no stored zero: an adjacency entry is an edge, whatever scipy would say)."""
    rows, cols = shape2(arrays[f"{prefix}_shape"], path, f"{prefix}_shape")
    data = reals(arrays[f"{prefix}_data"], path, f"{prefix}_data", 1)
    indices = integers(arrays[f"{prefix}_indices"], path, f"{prefix}_indices", 1)
    indptr = integers(arrays[f"{prefix}_indptr"], path, f"{prefix}_indptr", 1)
    if indptr.shape[0] != rows + 1:
        raise bad(path, f"{prefix}_indptr", f"must have {rows + 1} entries ({prefix}_shape[0] + 1), got {indptr.shape[0]}")
    if indptr[0] != 0 or indptr[-1] != indices.shape[0]:
        raise bad(path, f"{prefix}_indptr", f"must start at 0 and end at len({prefix}_indices) = {indices.shape[0]}, "
                                            f"got {indptr[0]} ... {indptr[-1]}")
    falls = np.diff(indptr.astype(np.int64)) < 0
    if falls.any():
        row = _first(falls)
        raise bad(path, f"{prefix}_indptr", f"must be non-decreasing; row {row} ends before it starts "
                                            f"({indptr[row]} > {indptr[row + 1]})")
    if data.shape[0] != indices.shape[0]:
        raise bad(path, f"{prefix}_data", f"must have one value per index ({indices.shape[0]}), got {data.shape[0]}")
    in_range(indices, cols, path, f"{prefix}_indices", f"{prefix}_shape[1]")
    if nonzero and data.size and not data.all():
        raise bad(path, f"{prefix}_data", f"stores a zero at entry {_first(data == 0)}; every stored entry is an edge")
    if data.dtype == np.float16:  # a dtype scipy's sparse matrices do not take
        data = data.astype(np.float32)
    return sp.csr_matrix((data, indices, indptr), shape=(rows, cols))


def class_ids(array, num_nodes: int, path: Where, key: Optional[str]) -> np.ndarray:
    """Labels: one non-negative integer class id per node (``[N]``, or ``[N, 1]`` flattened), as int64.
    One-hot or multi-label ``[N, C]`` arrays are refused, not flattened."""
    array = np.asarray(array)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise bad(path, key, f"must hold one class id per node, shape [{num_nodes}], got shape {array.shape}"
                             + (" (one-hot or multi-label labels are not supported)" if array.ndim == 2 else ""))
    array = integers(array, path, key, 1)
    if array.shape[0] != num_nodes:
        raise bad(path, key, f"must hold one class id per node ({num_nodes} nodes), got {array.shape[0]}")
    if num_nodes and array.min() < 0:
        raise bad(path, key, f"must be >= 0; node {_first(array < 0)} has label {array.min()}")
    return array.astype(np.int64)


def every_class(labels: np.ndarray, path: Where, key: Optional[str]) -> int:
    """The number of classes of a file whose labels define them (``max + 1``), once every class
    from 0 to the largest label is held by a node and there are two or more: a label past the
    others (``10**9`` among 0..6) or a class no node has is a corrupt file, not a wider model."""
    present = np.unique(labels)
    if present.size < 2:
        raise bad(path, key, f"holds a single class ({present.tolist()}); node classification needs two or more")
    gaps = np.flatnonzero(present != np.arange(present.size))
    if gaps.size:
        raise bad(path, key, f"skips class {gaps[0]}: no node has it, yet the largest label {present[-1]} implies "
                             f"{present[-1] + 1} classes ({present.size} are held)")
    return int(present.size)


def has_edges(rows: np.ndarray, cols: np.ndarray, path: Where, key: Optional[str]) -> None:
    """At least one edge between two different nodes (a graph file without one is corrupt; the CPF
    reader would keep a largest component of one node)."""
    if not (rows != cols).any():
        raise bad(path, key, f"holds no edge between two different nodes ({rows.size} stored, all self-loops)"
                  if rows.size else "holds no edges")


def physical_memory() -> Optional[int]:
    """This machine's memory in bytes (None where the system does not say: numpy's MemoryError will)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def dense_fits(rows: int, cols: int, path: Where, key: Optional[str], itemsize: int = 4) -> None:
    """A declared feature matrix ``[rows, cols]`` with at least one column whose dense copy fits in
    this machine's memory (a few stored values can declare terabytes of columns)."""
    if cols < 1:
        raise bad(path, key, f"declares no feature columns, got [{rows}, {cols}]")
    need, have = rows * cols * itemsize, physical_memory()
    if have is not None and need > have:
        raise bad(path, key, f"declares [{rows}, {cols}] features: {need / 2**30:.1f} GiB dense, more than this "
                             f"machine's {have / 2**30:.1f} GiB of memory")


def feature_rows(array, num_nodes: int, path: Where, key: Optional[str]) -> np.ndarray:
    """Dense features: a finite real ``[N, F]`` array with one row per node."""
    array = reals(array, path, key, 2)
    if array.shape[0] != num_nodes:
        raise bad(path, key, f"must have one row per node ({num_nodes}), got {array.shape[0]} rows")
    if array.shape[1] < 1:
        raise bad(path, key, f"has no feature columns, got shape {array.shape}")
    return array


def split_masks(array, num_nodes: int, path: Where, key: Optional[str]) -> np.ndarray:
    """Fixed splits stored as ``[S, N]``: bool, or integers that are all 0 or 1."""
    array = np.asarray(array)
    if array.ndim != 2 or array.shape[1] != num_nodes or array.shape[0] < 1:
        raise bad(path, key, f"must have shape [num_splits, {num_nodes}] with at least one split, got {array.shape}")
    if array.dtype.kind != "b":
        if array.dtype.kind not in "iu" or not np.isin(array, (0, 1)).all():
            raise bad(path, key, f"must hold booleans (or 0/1), got dtype {array.dtype}"
                                 + ("" if array.dtype.kind not in "iu" else " with other values"))
    return array.astype(bool)


def node_nonempty(num_nodes: int, path: Where, key: Optional[str]) -> None:
    if num_nodes < 1:
        raise bad(path, key, "describes a graph without nodes")
