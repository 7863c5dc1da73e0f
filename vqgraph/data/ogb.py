"""OGB node-property datasets (ogbn-arxiv, ogbn-products) through the ``ogb`` package.

We read OGB's raw layout ourselves (as ``ogb``'s ``read_csv_graph_raw`` does, but checking
every file against the others: that reader silently cuts features and edges to the counts of
``num-node-list`` and ``num-edge-list``), take the metadata from ``ogb``'s ``master.csv``, and
download with ``ogb``'s utilities. We do not go through
``NodePropPredDataset``: it asks questions on standard input (which hangs or fails in batch
jobs) and caches a pickle, and vqgraph never unpickles data files.

Layout under the data root (as OGB's zip files unpack)::

    ogbn_arxiv/raw/{edge,node-feat,node-label,num-node-list,num-edge-list}.csv.gz
    ogbn_arxiv/split/time/{train,valid,test}.csv.gz
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from torch_geometric.data import Data

from vqgraph.data import arrays as checks
from vqgraph.data.graph import build_graph
from vqgraph.errors import DataFormatError

RAW_FILES = ("edge.csv.gz", "node-feat.csv.gz", "node-label.csv.gz", "num-node-list.csv.gz", "num-edge-list.csv.gz")


def ogb_meta(name: str) -> Dict[str, str]:
    """OGB's metadata for ``name`` (from the ``ogb`` package's ``master.csv``)."""
    import ogb.nodeproppred
    import pandas as pd

    master = pd.read_csv(
        os.path.join(os.path.dirname(ogb.nodeproppred.__file__), "master.csv"), index_col=0, keep_default_na=False
    )
    return {key: str(value) for key, value in master[name].items()}


def ogb_dir_name(name: str) -> str:
    return name.replace("-", "_")


def ogb_expected_files(name: str) -> list:
    split = ogb_meta(name)["split"]
    folder = ogb_dir_name(name)
    return [f"{folder}/raw/{f}" for f in RAW_FILES] + [
        f"{folder}/split/{split}/{part}.csv.gz" for part in ("train", "valid", "test")
    ]


def download_ogb(name: str, root: Path) -> None:
    """Download and unpack ``name`` into ``root/<dir_name>`` (atomically: a failed download leaves nothing)."""
    from ogb.utils.url import download_url, extract_zip

    meta = ogb_meta(name)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{ogb_dir_name(name)}.download"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        archive = download_url(meta["url"], str(tmp))
        extract_zip(archive, str(tmp))
        os.replace(tmp / meta["download_name"], root / ogb_dir_name(name))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_csv(path: Path) -> np.ndarray:
    """The values of one of OGB's headerless ``.csv.gz`` files."""
    import pandas as pd

    try:
        return pd.read_csv(path, compression="gzip", header=None).values
    except Exception as err:  # pandas raises many types for a bad gzip/csv
        raise DataFormatError(f"{path}: cannot read this OGB file (not a gzip-compressed csv?): {err}") from err


def _count(raw: Path, file: str) -> int:
    """The one count of ``num-node-list`` / ``num-edge-list`` (a node-property dataset is one graph)."""
    values = checks.integers(_read_csv(raw / file), raw / file, None, 2)
    if values.shape != (1, 1) or values[0, 0] < 0:
        raise checks.bad(raw / file, None, f"must hold one non-negative count (one graph), got {values.reshape(-1)[:5].tolist()}")
    return int(values[0, 0])


def read_ogb_raw(raw: Path):
    """``(features [N, F], edges [2, E], labels [N], N)`` of OGB's raw folder, each checked against the
    others (the counts of ``num-node-list`` and ``num-edge-list`` included) before use."""
    num_nodes, num_edges = _count(raw, "num-node-list.csv.gz"), _count(raw, "num-edge-list.csv.gz")
    checks.node_nonempty(num_nodes, raw / "num-node-list.csv.gz", None)
    edges = checks.integers(_read_csv(raw / "edge.csv.gz"), raw / "edge.csv.gz", None, 2)
    if edges.shape != (num_edges, 2):
        raise checks.bad(raw / "edge.csv.gz", None, f"must have {num_edges} rows (num-edge-list) of 2 node ids, got {edges.shape}")
    checks.in_range(edges, num_nodes, raw / "edge.csv.gz", None, "num-node-list")
    feats = checks.feature_rows(_read_csv(raw / "node-feat.csv.gz"), num_nodes, raw / "node-feat.csv.gz", None)
    labels = _read_csv(raw / "node-label.csv.gz")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise checks.bad(raw / "node-label.csv.gz", None, "has nodes without a label (NaN); unlabelled nodes are not supported")
    labels = checks.class_ids(labels, num_nodes, raw / "node-label.csv.gz", None)
    return feats.astype(np.float32), edges.T.astype(np.int64), labels, num_nodes


def load_ogb(name: str, root: Path) -> Data:
    """Load ``ogbn-arxiv`` / ``ogbn-products`` from ``root`` (made undirected), with the official split
    stored as ``train_mask`` / ``val_mask`` / ``test_mask`` [N, 1]."""
    meta = ogb_meta(name)
    folder = Path(root) / ogb_dir_name(name)
    x, edge_index, labels, num_nodes = read_ogb_raw(folder / "raw")
    num_classes = int(meta["num classes"])
    if labels.max() >= num_classes:
        raise checks.bad(folder / "raw" / "node-label.csv.gz", None, f"must be below {name}'s {num_classes} classes; "
                                                              f"node {int(labels.argmax())} has {labels.max()}")
    masks = {}
    for part, key in (("train", "train_mask"), ("valid", "val_mask"), ("test", "test_mask")):
        split = folder / "split" / meta["split"]
        idx = checks.integers(_read_csv(split / f"{part}.csv.gz"), split / f"{part}.csv.gz", None, 2).reshape(-1)
        checks.in_range(idx, num_nodes, split / f"{part}.csv.gz", None, "node ids")
        mask = torch.zeros(num_nodes, 1, dtype=torch.bool)
        mask[torch.from_numpy(idx.astype(np.int64)), 0] = True
        masks[key] = mask
    return build_graph(x, edge_index, labels, name=name, num_classes=num_classes, where=str(folder), **masks)
