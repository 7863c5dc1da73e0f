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

from vqgraph.data.graph import build_graph
from vqgraph.data.npz import read_npz
from vqgraph.errors import DataFormatError

HETERO_KEYS = ("node_features", "node_labels", "edges", "train_masks", "val_masks", "test_masks")


def load_heterophilic_npz(path: Path, name: str) -> Data:
    """Load a heterophilic graph; its fixed splits become ``train_mask``/``val_mask``/``test_mask`` [N, 10]."""
    path = Path(path)
    arrays = read_npz(path, HETERO_KEYS)
    x = np.asarray(arrays["node_features"], dtype=np.float32)
    y = np.asarray(arrays["node_labels"]).reshape(-1)
    edges = np.asarray(arrays["edges"])
    if edges.ndim != 2 or edges.shape[1] != 2:
        raise DataFormatError(f"{path}: 'edges' must have shape [num_edges, 2], got {edges.shape}")
    masks = {}
    for key in ("train_masks", "val_masks", "test_masks"):
        mask = np.asarray(arrays[key])
        if mask.ndim != 2 or mask.shape[1] != x.shape[0]:
            raise DataFormatError(f"{path}: '{key}' must have shape [num_splits, {x.shape[0]}], got {mask.shape}")
        masks[key[:-1]] = torch.from_numpy(mask.astype(bool).T.copy())  # [N, S], as PyG's WebKB stores them
    return build_graph(x, edges.T, y, name=name, where=str(path), **masks)
