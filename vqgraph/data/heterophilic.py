"""Heterophilic benchmarks (Texas, Cornell, Wisconsin, Actor, Chameleon, Squirrel) with their 10 splits.

Read from the npz files of Platonov et al. (ICLR 2023, ``yandex-research/heterophilous-graphs``):
``node_features`` [N, F], ``node_labels`` [N], ``edges`` [E, 2] (each undirected edge once) and
``train_masks`` / ``val_masks`` / ``test_masks`` [10, N], which equal the 10 Geom-GCN splits.
For Texas, Wisconsin and Actor the files equal the Geom-GCN files exactly.

Cornell: the Geom-GCN ``cornell/out1_node_feature_label.txt`` (which PyG's ``WebKB`` downloads)
is byte-identical to Texas's, so Geom-GCN "Cornell" pairs Texas's features and labels with
Cornell's edges. We use the Platonov et al. Cornell file, whose features and labels are
Cornell's own; its 10 masks equal the Geom-GCN splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch_geometric.data import Data

from vqgraph.data import arrays as checks
from vqgraph.data.graph import build_graph
from vqgraph.data.npz import read_npz

HETERO_KEYS = ("node_features", "node_labels", "edges", "train_masks", "val_masks", "test_masks")


def load_heterophilic_npz(path: Path, name: str) -> Data:
    """Load a heterophilic graph; its fixed splits become ``train_mask``/``val_mask``/``test_mask`` [N, 10]."""
    path = Path(path)
    arrays = read_npz(path, HETERO_KEYS)
    x = checks.reals(arrays["node_features"], path, "node_features", 2)
    n = x.shape[0]
    checks.node_nonempty(n, path, "node_features")
    if x.shape[1] < 1:
        raise checks.bad(path, "node_features", f"has no feature columns, got shape {x.shape}")
    y = checks.class_ids(arrays["node_labels"], n, path, "node_labels")
    checks.every_class(y, path, "node_labels")
    edges = checks.integers(arrays["edges"], path, "edges", 2)
    if edges.shape[1] != 2:
        raise checks.bad(path, "edges", f"must have shape [num_edges, 2], got {edges.shape}")
    checks.in_range(edges, n, path, "edges", "node ids; there are as many nodes as rows of 'node_features'")
    checks.has_edges(edges[:, 0], edges[:, 1], path, "edges")
    masks = {key[:-1]: torch.from_numpy(checks.split_masks(arrays[key], n, path, key).T.copy())  # [N, S], as PyG's
             for key in ("train_masks", "val_masks", "test_masks")}                              # WebKB stores them
    return build_graph(x.astype(np.float32), edges.T.astype(np.int64), y, name=name, where=str(path), **masks)
