"""The CPF / gnn-benchmark ``.npz`` family (Cora, Citeseer, Pubmed, Amazon computers and photo).

The files hold a CSR adjacency (not symmetric) and CSR features. CPF, GLNN and VQGraph
standardise them the same way, and so does :func:`load_cpf_npz`: symmetrise, drop self-loops,
keep the largest connected component (nodes kept in their original order).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import scipy.sparse as sp
from torch_geometric.data import Data

from vqgraph.data import arrays as checks
from vqgraph.data.graph import build_graph, largest_connected_component
from vqgraph.data.npz import read_npz
from vqgraph.errors import DataFormatError

CPF_KEYS = (
    "adj_data",
    "adj_indices",
    "adj_indptr",
    "adj_shape",
    "attr_data",
    "attr_indices",
    "attr_indptr",
    "attr_shape",
    "labels",
)


def read_cpf_arrays(path: Path):
    """``(adjacency, features, labels)`` of a CPF-layout ``.npz``: a COO adjacency [N, N], CSR features
    [N, F] and int64 labels [N], every array checked against the others before scipy sees it.

    Raises:
        DataFormatError: the file is unreadable, a key is missing, or an array is inconsistent
            (named with its key: dtype, shape, index range, pointers, labels).
    """
    arrays = read_npz(path, CPF_KEYS)
    n, cols = checks.shape2(arrays["adj_shape"], path, "adj_shape")
    checks.node_nonempty(n, path, "adj_shape")
    if cols != n:
        raise checks.bad(path, "adj_shape", f"must be square (an adjacency), got {[n, cols]}")
    rows, features = checks.shape2(arrays["attr_shape"], path, "attr_shape")
    labels = np.asarray(arrays["labels"])
    if rows != n or labels.shape[:1] != (n,):
        raise DataFormatError(f"{path}: {n} nodes in the adjacency but {rows} feature rows and "
                              f"{labels.shape[0] if labels.ndim else 0} labels ('adj_shape', 'attr_shape', 'labels' "
                              "disagree): each must have one entry per node")
    labels = checks.class_ids(labels, n, path, "labels")
    checks.every_class(labels, path, "labels")
    checks.dense_fits(n, features, path, "attr_shape")
    adj = checks.csr(arrays, "adj", path, nonzero=True).tocoo()
    checks.has_edges(adj.row, adj.col, path, "adj_indices")
    return adj, checks.csr(arrays, "attr", path), labels


def load_cpf_npz(path: Path, name: Optional[str] = None, standardize: bool = True) -> Data:
    """Load a CPF-format ``.npz`` file as a canonical graph.

    Args:
        path: the ``.npz`` file.
        name: the dataset's name (default: the file's stem).
        standardize: symmetrise, drop self-loops and keep the largest connected component, as
            CPF does. With ``False`` every node is kept (edges are still made undirected).
    """
    path = Path(path)
    name = name or path.stem
    adj, features, labels = read_cpf_arrays(path)
    n = adj.shape[0]
    sym = sp.coo_matrix((np.ones(adj.nnz), (adj.row, adj.col)), shape=(n, n)).tocsr()
    sym = sym + sym.T
    sym.setdiag(0)
    sym.eliminate_zeros()
    keep = largest_connected_component(sym) if standardize else np.arange(n)
    sub = sym[keep][:, keep].tocoo()
    edge_index = np.stack([sub.row, sub.col]).astype(np.int64)
    x = features[keep].toarray().astype(np.float32)
    y = labels[keep].astype(np.int64)
    num_classes = int(labels.max()) + 1 if labels.size else 0
    return build_graph(x, edge_index, y, name=name, num_classes=num_classes, where=str(path))
