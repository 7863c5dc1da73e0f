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


def _csr(arrays, prefix: str, path: Path) -> sp.csr_matrix:
    try:
        return sp.csr_matrix(
            (arrays[f"{prefix}_data"], arrays[f"{prefix}_indices"], arrays[f"{prefix}_indptr"]),
            shape=tuple(int(s) for s in arrays[f"{prefix}_shape"]),
        )
    except (ValueError, TypeError, IndexError) as err:
        raise DataFormatError(f"{path}: arrays '{prefix}_*' do not form a valid CSR matrix: {err}") from err


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
    arrays = read_npz(path, CPF_KEYS)
    adj = _csr(arrays, "adj", path)
    features = _csr(arrays, "attr", path)
    labels = np.asarray(arrays["labels"]).reshape(-1)
    n = adj.shape[0]
    if adj.shape != (n, n):
        raise DataFormatError(f"{path}: adjacency must be square, got shape {adj.shape}")
    if features.shape[0] != n or labels.shape[0] != n:
        raise DataFormatError(
            f"{path}: {n} nodes in the adjacency but {features.shape[0]} feature rows and {labels.shape[0]} labels"
        )
    if labels.dtype.kind not in "iu":
        raise DataFormatError(f"{path}: labels must be integers, got dtype {labels.dtype}")
    adj = adj.tocoo()
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
