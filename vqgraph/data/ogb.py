"""OGB node-property datasets (ogbn-arxiv, ogbn-products) through the ``ogb`` package.

We read OGB's raw layout with ``ogb``'s own reader (``read_csv_graph_raw``) and its metadata
(``master.csv``), and download with ``ogb``'s utilities. We do not go through
``NodePropPredDataset``: it asks questions on standard input (which hangs or fails in batch
jobs) and caches a pickle, and vqgraph never unpickles data files.

Layout under the data root (as OGB's zip files unpack)::

    ogbn_arxiv/raw/{edge,node-feat,node-label,num-node-list,num-edge-list}.csv.gz
    ogbn_arxiv/split/time/{train,valid,test}.csv.gz
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from torch_geometric.data import Data

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


def _read_index(path: Path) -> np.ndarray:
    import pandas as pd

    try:
        return pd.read_csv(path, compression="gzip", header=None).values.reshape(-1).astype(np.int64)
    except Exception as err:  # pandas raises many types for a bad gzip/csv
        raise DataFormatError(f"{path}: cannot read the split index file: {err}") from err


def load_ogb(name: str, root: Path) -> Data:
    """Load ``ogbn-arxiv`` / ``ogbn-products`` from ``root`` (made undirected), with the official split
    stored as ``train_mask`` / ``val_mask`` / ``test_mask`` [N, 1]."""
    import pandas as pd
    from ogb.io.read_graph_raw import read_csv_graph_raw

    meta = ogb_meta(name)
    folder = Path(root) / ogb_dir_name(name)
    raw = folder / "raw"
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # ogb prints "Loading necessary files..."
            graph = read_csv_graph_raw(str(raw), add_inverse_edge=False)[0]
        labels = pd.read_csv(raw / "node-label.csv.gz", compression="gzip", header=None).values
    except Exception as err:
        raise DataFormatError(f"{raw}: cannot read OGB raw files {list(RAW_FILES)}: {err}") from err
    if graph["node_feat"] is None:
        raise DataFormatError(f"{raw}: node-feat.csv.gz is missing; vqgraph needs node features")
    num_nodes = int(graph["num_nodes"])
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != num_nodes:
        raise DataFormatError(f"{raw}: {labels.shape[0]} labels for {num_nodes} nodes")
    if np.isnan(labels.astype(np.float64)).any():
        raise DataFormatError(f"{raw}: some nodes have no label (NaN); unlabelled nodes are not supported")
    masks = {}
    for part, key in (("train", "train_mask"), ("valid", "val_mask"), ("test", "test_mask")):
        idx = _read_index(folder / "split" / meta["split"] / f"{part}.csv.gz")
        if idx.size and (idx.min() < 0 or idx.max() >= num_nodes):
            raise DataFormatError(f"{folder}/split/{meta['split']}/{part}.csv.gz: node ids outside [0, {num_nodes})")
        mask = torch.zeros(num_nodes, 1, dtype=torch.bool)
        mask[torch.from_numpy(idx), 0] = True
        masks[key] = mask
    return build_graph(
        graph["node_feat"],
        graph["edge_index"],
        labels.astype(np.int64),
        name=name,
        num_classes=int(meta["num classes"]),
        where=str(folder),
        **masks,
    )
