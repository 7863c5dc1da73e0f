"""Shared fixtures for the data-layer tests.

* ``data_root``: the folder of real datasets (``$VQGRAPH_DATA``, else ``<repo>/../shared/data``);
  tests that use it are skipped when neither exists and are marked ``realdata``.
* ``load_real``: loads a real dataset once per session (every module shares the same object;
  tests must not modify it).
* ``tiny_graph``: a six-node canonical graph built in code.
* ``assert_canonical``: checks the canonical form every loader promises.

The suite never touches the network: every outgoing internet connection (and DNS look-up) but
loopback is refused while tests run, so a test that would download fails loudly instead.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent

# tiny tensors: one thread avoids OpenMP oversubscription (50x slower ops on a busy 2-core machine)
torch.set_num_threads(1)
_INET = {socket.AF_INET, socket.AF_INET6}


# ---- no network ---------------------------------------------------------------------------------
class NetworkBlocked(RuntimeError):
    pass


def _refuse(*args, **kwargs):
    raise NetworkBlocked("network access is disabled in the vqgraph test suite")


_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


_LOOPBACK = ("127.0.0.1", "::1", "localhost")
_real_getaddrinfo = socket.getaddrinfo
_real_create_connection = socket.create_connection


def _is_loopback(address) -> bool:
    host = address[0] if isinstance(address, tuple) else address
    return isinstance(host, str) and (host in _LOOPBACK or host.startswith("127."))


def _connect(self, address):
    if self.family in _INET and not _is_loopback(address):
        _refuse()
    return _real_connect(self, address)


def _connect_ex(self, address):
    if self.family in _INET and not _is_loopback(address):
        _refuse()
    return _real_connect_ex(self, address)


def _getaddrinfo(host, *args, **kwargs):
    if not _is_loopback(host):
        _refuse()
    return _real_getaddrinfo(host, *args, **kwargs)


def _create_connection(address, *args, **kwargs):
    if not _is_loopback(address):
        _refuse()
    return _real_create_connection(address, *args, **kwargs)


# loopback stays open: local services (e.g. wandb's offline service process) talk over it
socket.socket.connect = _connect
socket.socket.connect_ex = _connect_ex
socket.getaddrinfo = _getaddrinfo
socket.create_connection = _create_connection

# imported only now, so that nothing vqgraph imports (e.g. ogb's version check) can reach the network
from vqgraph.data import DATA_ENV, build_graph, get_spec, load_dataset, resolve_data_roots  # noqa: E402


# ---- real data ----------------------------------------------------------------------------------
def _find_data_root():
    env = os.environ.get(DATA_ENV, "")
    if env:  # a list of roots (like PATH): the first that holds the real datasets (Cora stands for them)
        roots = resolve_data_roots(env)
        return next((root for root in roots if get_spec("cora").locate(root)), roots[0])
    shared = REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def pytest_collection_modifyitems(config, items):
    for item in items:
        if {"data_root", "load_real"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.realdata)


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _find_data_root()
    if root is None:
        if os.environ.get("VQGRAPH_REQUIRE_DATA"):  # CI: missing data must fail, not skip quietly
            pytest.fail("VQGRAPH_REQUIRE_DATA is set but the real datasets were not found: set VQGRAPH_DATA")
        pytest.skip("real datasets not found: set VQGRAPH_DATA")
    return root


@pytest.fixture(scope="session")
def load_real(data_root):
    """``load_real(name)``: the real dataset ``name``, loaded once per session."""
    cache = {}

    def load(name: str):
        if name not in cache:
            cache[name] = load_dataset(name, root=data_root)
        return cache[name]

    return load


# ---- small graphs and checks --------------------------------------------------------------------
@pytest.fixture
def tiny_graph():
    """Six nodes, two classes, three float64 features; the raw edges hold a duplicate, a reversed
    duplicate and a self-loop, so the canonical graph has 7 undirected edges:
    0-1, 0-2, 1-2, 2-3, 3-4, 3-5, 4-5."""
    x = torch.arange(18, dtype=torch.float64).view(6, 3) / 10
    edges = torch.tensor(
        [
            [0, 1, 1, 2, 3, 4, 5, 0, 2, 2],
            [1, 2, 0, 3, 4, 5, 3, 1, 2, 0],
        ]
    )
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    return build_graph(x, edges, y, name="tiny", num_classes=2)


def _check_canonical(data, num_nodes=None, num_edges=None, num_features=None, num_classes=None):
    n = data.x.size(0)
    assert data.x.dtype == torch.float32
    assert data.x.dim() == 2
    assert bool(torch.isfinite(data.x).all())
    assert data.num_nodes == n
    ei = data.edge_index
    assert ei.dtype == torch.int64
    assert ei.dim() == 2 and ei.size(0) == 2 and ei.size(1) % 2 == 0
    row, col = ei
    assert int(ei.min()) >= 0 and int(ei.max()) < n
    assert not bool((row == col).any()), "self-loop"
    key = row * n + col
    assert bool((key[1:] > key[:-1]).all()), "edges not sorted by (row, col) or duplicated"
    assert torch.equal(torch.sort(col * n + row).values, key), "not symmetric"
    y = data.y
    assert y.dtype == torch.int64 and y.shape == (n,)
    assert isinstance(data.num_classes, int)
    assert int(y.min()) >= 0 and int(y.max()) < data.num_classes
    if num_nodes is not None:
        assert n == num_nodes
    if num_edges is not None:
        assert ei.size(1) == 2 * num_edges
    if num_features is not None:
        assert data.x.size(1) == num_features
    if num_classes is not None:
        assert data.num_classes == num_classes


@pytest.fixture
def assert_canonical():
    """``assert_canonical(data, num_nodes=, num_edges=, num_features=, num_classes=)``."""
    return _check_canonical
