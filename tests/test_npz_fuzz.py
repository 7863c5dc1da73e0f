"""Property-based fuzzing of the npz readers (CPF and heterophilic): any archive, valid or
corrupted (indices out of range or negative, pointers that fall, wrong lengths and dtypes, NaN
features, one-hot or negative labels, stored zeros, missing keys), either loads to the graph an
independent reference reading gives, or raises one of our own errors; never anything else.

Crash safety: scipy trusts a CSR matrix's index arrays, so an index past its shape corrupts the
heap (the interpreter dies, taking pytest with it). The readers build every CSR matrix through
``vqgraph.data.arrays.sp.csr_matrix``; here that name is replaced by a spy that first checks the
arrays with this file's own reference rules and raises AssertionError (a failed test, not a
crash) if the readers' checks ever let a bad array through to scipy.

Bounded and reproducible: ``derandomize=True``, a fixed number of examples, a deadline.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import scipy.sparse

from vqgraph.data import arrays
from vqgraph.data.cpf import CPF_KEYS, load_cpf_npz
from vqgraph.data.heterophilic import HETERO_KEYS, load_heterophilic_npz
from vqgraph.errors import VQGraphError

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings, strategies as st  # noqa: E402

SETTINGS = settings(max_examples=200, deadline=3000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


class Invalid(Exception):
    """The reference reader does not accept the arrays."""


def need(condition, what: str) -> None:
    if not condition:
        raise Invalid(what)


# ---- the reference reading: plain loops over Python ints, no scipy -----------------------------

def ints(a, ndim: int):
    a = np.asarray(a)
    need(a.dtype.kind in "iu" and a.ndim == ndim, f"not {ndim}-D integers: {a.dtype} {a.shape}")
    return a.tolist()


def csr_entries(z, prefix: str):
    """``(rows, cols, [(row, col, value)])`` of a CSR triple, under the reference rules."""
    shape = ints(z[f"{prefix}_shape"], 1)
    need(len(shape) == 2 and min(shape) >= 0, "shape")
    rows, cols = shape
    data = np.asarray(z[f"{prefix}_data"])
    need(data.dtype.kind in "biuf" and data.ndim == 1, "data dtype")
    need(bool(np.isfinite(data.astype(np.float64)).all()), "non-finite data")
    indices, indptr = ints(z[f"{prefix}_indices"], 1), ints(z[f"{prefix}_indptr"], 1)
    need(len(indptr) == rows + 1 and indptr[0] == 0 and indptr[-1] == len(indices) == len(data), "lengths")
    need(all(indptr[r] <= indptr[r + 1] for r in range(rows)), "pointers fall")
    entries = []
    for r in range(rows):
        for k in range(indptr[r], indptr[r + 1]):
            need(0 <= indices[k] < cols, "index out of range")
            entries.append((r, indices[k], data[k]))
    return rows, cols, entries


def components(n: int, pairs):
    parent = list(range(n))

    def root(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups = {}
    for v in range(n):
        groups.setdefault(root(v), []).append(v)
    return sorted(groups.values(), key=lambda g: (-len(g), g[0]))  # largest first; ties: smallest node


def labels_of(z, key: str, n: int):
    y = np.asarray(z[key])
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    y = ints(y, 1)
    need(len(y) == n and all(v >= 0 for v in y), "labels")
    need(len(set(y)) >= 2 and set(y) == set(range(max(y) + 1)), "a single class, or a class no node has")
    return y


def reference_cpf(z):
    need(all(key in z for key in CPF_KEYS), "missing key")
    n, cols, adj = csr_entries(z, "adj")
    need(n == cols and n >= 1, "adjacency shape")
    need(all(v != 0 for _, _, v in adj), "stored zero")
    rows, f, attr = csr_entries(z, "attr")
    need(rows == n and f >= 1, "feature rows and columns")
    y = labels_of(z, "labels", n)
    pairs = {(min(a, b), max(a, b)) for a, b, _ in adj if a != b}
    need(pairs, "no edge between two nodes")
    keep = components(n, pairs)[0]
    new = {old: i for i, old in enumerate(keep)}
    x = np.zeros((n, f), dtype=np.float64)
    for r, c, v in attr:
        x[r, c] += float(v)
    edges = {(new[a], new[b]) for a, b in pairs if a in new and b in new}
    return x[keep].astype(np.float32), edges, [y[i] for i in keep], max(y) + 1


def reference_hetero(z):
    need(all(key in z for key in HETERO_KEYS), "missing key")
    x = np.asarray(z["node_features"])
    need(x.dtype.kind in "biuf" and x.ndim == 2 and x.shape[0] >= 1 and x.shape[1] >= 1, "features")
    need(bool(np.isfinite(x.astype(np.float64)).all()), "non-finite features")
    n = x.shape[0]
    y = labels_of(z, "node_labels", n)
    edges = ints(z["edges"], 2)
    need(all(len(e) == 2 and 0 <= e[0] < n and 0 <= e[1] < n for e in edges), "edges")
    masks = {}
    for key in ("train_masks", "val_masks", "test_masks"):
        m = np.asarray(z[key])
        need(m.ndim == 2 and m.shape[1] == n and m.shape[0] >= 1 and m.dtype.kind in "biu", key)
        need(all(v in (0, 1) for v in m.reshape(-1).tolist()), key)
        masks[key[:-1]] = m.astype(bool).T
    pairs = {(min(a, b), max(a, b)) for a, b in edges if a != b}
    need(pairs, "no edge between two nodes")
    return x.astype(np.float32), pairs, y, max(y) + 1, masks


# ---- generated archives ------------------------------------------------------------------------

DTYPES = {"int32": np.int32, "int64": np.int64, "uint16": np.uint16, "float64": np.float64}


@st.composite
def csr_arrays(draw, prefix: str, rows: int, cols: int, unique: bool):
    row_cols = [draw(st.lists(st.integers(0, max(cols - 1, 0)), max_size=cols if cols else 0, unique=unique))
                if cols else [] for _ in range(rows)]
    indices = [c for rc in row_cols for c in rc]
    indptr = np.cumsum([0] + [len(rc) for rc in row_cols])
    values = draw(st.lists(st.sampled_from([1.0, 2.0, 0.5, -1.5]), min_size=len(indices), max_size=len(indices)))
    dtype = DTYPES[draw(st.sampled_from(["int32", "int64"]))]
    return {f"{prefix}_data": np.array(values, dtype=draw(st.sampled_from([np.float32, np.float64]))),
            f"{prefix}_indices": np.array(indices, dtype=dtype), f"{prefix}_indptr": indptr.astype(dtype),
            f"{prefix}_shape": np.array([rows, cols], dtype=np.int64)}


def labels(n: int):
    """Mostly every class from 0 up held by some node (what a file must hold), sometimes any labels."""
    return st.one_of(st.integers(2, 4).flatmap(lambda k: st.permutations([i % k for i in range(n)])),
                     st.lists(st.integers(0, 3), min_size=n, max_size=n))


@st.composite
def cpf_archive(draw):
    n, f = draw(st.integers(1, 7)), draw(st.integers(0, 4))
    z = {**draw(csr_arrays("adj", n, n, unique=False)), **draw(csr_arrays("attr", n, f, unique=True))}
    z["labels"] = np.array(draw(labels(n)), dtype=np.int8)
    return z


@st.composite
def hetero_archive(draw):
    n, f, s = draw(st.integers(1, 7)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    e = draw(st.integers(0, 10))
    z = {"node_features": np.array(draw(st.lists(st.floats(-3, 3, width=32), min_size=n * f, max_size=n * f)),
                                   dtype=np.float32).reshape(n, f),
         "node_labels": np.array(draw(labels(n)), dtype=np.int64),
         "edges": np.array(draw(st.lists(st.integers(0, n - 1), min_size=2 * e, max_size=2 * e)),
                           dtype=np.int64).reshape(e, 2)}
    for key in ("train_masks", "val_masks", "test_masks"):
        z[key] = np.array(draw(st.lists(st.booleans(), min_size=s * n, max_size=s * n))).reshape(s, n)
    return z


INDEX_KEYS = ("adj_indices", "adj_indptr", "attr_indices", "attr_indptr", "adj_data", "edges", "train_masks")  # where scipy and torch trust us


def corrupt(draw, z):
    """One corruption of one array (or none; the tests apply two): what a damaged or foreign file holds. Index and pointer
    arrays are picked more often, and values just outside the range most often."""
    key = draw(st.sampled_from(sorted(z) + [k for k in INDEX_KEYS if k in z] * 3))
    a = np.asarray(z[key])
    kind = draw(st.sampled_from(["none", "missing", "dtype", "drop", "grow", "nan", "twod", "swap"] + ["set"] * 6))
    z = dict(z)
    if kind == "missing":
        del z[key]
    elif kind == "dtype":
        z[key] = a.astype(draw(st.sampled_from([np.float64, np.float32, np.bool_, np.int8, np.uint64, np.complex64])))
    elif kind == "drop" and a.size:
        z[key] = a.reshape(-1)[:-1] if a.ndim == 1 else a[:-1]
    elif kind == "grow":
        z[key] = np.concatenate([a.reshape(-1), a.reshape(-1)[:1]]) if a.ndim == 1 else np.concatenate([a, a[:1]])
    elif kind == "set" and a.size:
        flat = a.reshape(-1).copy()
        top = int(a.max()) if a.dtype.kind in "iu" else 1
        value = draw(st.sampled_from([-1, top + 1, top + 2, top - 1, 0, 1, 2**31 - 1]))
        flat[draw(st.integers(0, flat.size - 1))] = np.asarray(value).astype(a.dtype) if a.dtype.kind != "b" else value % 2
        z[key] = flat.reshape(a.shape)
    elif kind == "nan" and a.dtype.kind == "f" and a.size:
        flat = a.reshape(-1).copy()
        flat[draw(st.integers(0, flat.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
        z[key] = flat.reshape(a.shape)
    elif kind == "twod":
        z[key] = np.stack([a, a], axis=-1) if a.ndim else a.reshape(1, 1)
    elif kind == "swap" and a.ndim == 1 and a.size >= 2:
        i = draw(st.integers(0, a.size - 2))
        b = a.copy()
        b[i], b[i + 1] = a[i + 1], a[i]
        z[key] = b
    return z


def spy_scipy():
    """``scipy.sparse`` as the readers see it, with a ``csr_matrix`` that refuses (AssertionError, a
    test failure) any triple the reference rules reject, before scipy touches it."""
    def csr_matrix(triple, shape):
        data, indices, indptr = triple
        z = {"s_data": data, "s_indices": indices, "s_indptr": indptr, "s_shape": np.array(shape, dtype=np.int64)}
        try:
            csr_entries(z, "s")
        except Invalid as err:
            raise AssertionError(f"a bad CSR triple reached scipy: {err}") from None
        return scipy.sparse.csr_matrix(triple, shape=shape)

    return SimpleNamespace(csr_matrix=csr_matrix)


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def check_reading(folder: Path, z, reference, load):
    path = folder / "fuzz.npz"
    np.savez(path, **z)
    try:
        expected = reference(z)
    except Invalid:
        expected = None
    with mock.patch.object(arrays, "sp", spy_scipy()):
        try:
            data = load(path)
        except VQGraphError:
            assert expected is None, "the reference reads this archive, the loader refused it"
            return None
    assert expected is not None, "the loader read an archive the reference refuses"
    return data, expected


@SETTINGS
@given(st.data())
def test_cpf_npz_loads_as_the_reference_reads_it_or_raises_our_error(folder, data):
    z = corrupt(data.draw, corrupt(data.draw, data.draw(cpf_archive())))
    out = check_reading(folder, z, reference_cpf, load_cpf_npz)
    if out is None:
        return
    graph, (x, edges, y, num_classes) = out
    assert np.array_equal(graph.x.numpy(), x) and graph.y.tolist() == y and graph.num_classes == num_classes
    assert {tuple(e) for e in graph.edge_index.t().tolist()} == edges | {(b, a) for a, b in edges}


@SETTINGS
@given(st.data())
def test_heterophilic_npz_loads_as_the_reference_reads_it_or_raises_our_error(folder, data):
    z = corrupt(data.draw, corrupt(data.draw, data.draw(hetero_archive())))
    out = check_reading(folder, z, reference_hetero, lambda path: load_heterophilic_npz(path, "fuzz"))
    if out is None:
        return
    graph, (x, pairs, y, num_classes, masks) = out
    assert np.array_equal(graph.x.numpy(), x) and graph.y.tolist() == y and graph.num_classes == num_classes
    assert {tuple(e) for e in graph.edge_index.t().tolist()} == pairs | {(b, a) for a, b in pairs}
    for key, mask in masks.items():
        assert np.array_equal(graph[key].numpy(), mask)


def test_the_spy_stops_a_bad_triple_before_scipy():
    """The guard the fuzz tests rely on: a triple with an index past its shape never reaches scipy."""
    with pytest.raises(AssertionError, match="reached scipy: index out of range"):
        spy_scipy().csr_matrix((np.ones(1), np.array([5]), np.array([0, 1])), shape=(1, 2))
