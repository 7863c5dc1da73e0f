"""OGB loader on a tiny dataset written in OGB's raw layout (no download, no real data)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
import torch

from vqgraph.data import load_dataset, make_split
from vqgraph.errors import DataFormatError, DatasetNotFoundError

N = 12
# directed, as OGB stores arxiv: a ring plus a chord in both directions and a self-loop
EDGES = [(i, (i + 1) % N) for i in range(N)] + [(0, 5), (5, 0), (3, 3)]
UNDIRECTED = {tuple(sorted(e)) for e in EDGES if e[0] != e[1]}
LABELS = [6, 3, 1, 0, 7, 2, 5, 3, 1, 0, 2, 4]  # OGB arxiv has 40 classes; only 0..7 occur here
SPLIT = {"train": [0, 2, 4, 6, 8, 10], "valid": [1, 5, 9], "test": [3, 7, 11]}
RAW = ("edge", "node-feat", "node-label", "num-node-list", "num-edge-list")


def _write(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        for row in rows:
            f.write(",".join(str(v) for v in np.atleast_1d(row)) + "\n")


def write_tiny_arxiv(root: Path) -> np.ndarray:
    folder = root / "ogbn_arxiv"
    feats = np.random.default_rng(0).standard_normal((N, 4)).round(4)
    _write(folder / "raw" / "edge.csv.gz", EDGES)
    _write(folder / "raw" / "node-feat.csv.gz", feats)
    _write(folder / "raw" / "node-label.csv.gz", LABELS)
    _write(folder / "raw" / "num-node-list.csv.gz", [N])
    _write(folder / "raw" / "num-edge-list.csv.gz", [len(EDGES)])
    for part, idx in SPLIT.items():
        _write(folder / "split" / "time" / f"{part}.csv.gz", idx)
    return feats


@pytest.fixture
def arxiv_root(tmp_path):
    feats = write_tiny_arxiv(tmp_path)
    return tmp_path, feats


def test_tiny_arxiv_loads_undirected(arxiv_root, assert_canonical):
    root, feats = arxiv_root
    data = load_dataset("ogbn-arxiv", root=root)
    assert_canonical(data, num_nodes=N, num_edges=len(UNDIRECTED), num_features=4, num_classes=40)
    assert data.name == "ogbn-arxiv"
    pairs = {(int(a), int(b)) for a, b in data.edge_index.t()}
    assert pairs == UNDIRECTED | {(b, a) for a, b in UNDIRECTED}
    assert np.allclose(data.x.numpy(), feats.astype(np.float32))
    assert data.y.tolist() == LABELS


def test_tiny_arxiv_masks_match_split_files(arxiv_root):
    root, _ = arxiv_root
    data = load_dataset("ogbn-arxiv", root=root)
    for key, part in (("train_mask", "train"), ("val_mask", "valid"), ("test_mask", "test")):
        assert data[key].shape == (N, 1)
        assert data[key].dtype == torch.bool
        assert data[key][:, 0].nonzero().view(-1).tolist() == SPLIT[part]


@pytest.mark.parametrize("seed", [0, 3])
def test_make_split_uses_the_official_split(arxiv_root, seed):
    root, _ = arxiv_root
    split = make_split(load_dataset("ogbn-arxiv", root=root), seed=seed)
    assert split.train_idx.tolist() == SPLIT["train"]
    assert split.val_idx.tolist() == SPLIT["valid"]
    assert split.test_idx.tolist() == SPLIT["test"]
    assert split.sizes() == {"train": 6, "val": 3, "test": 3}


def test_alias_with_underscore(arxiv_root):
    root, _ = arxiv_root
    assert load_dataset("ogbn_arxiv", root=root).num_nodes == N


def test_missing_folder_names_expected_files(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("ogbn-arxiv", root=tmp_path)
    msg = str(err.value)
    for name in RAW:
        assert f"ogbn_arxiv/raw/{name}.csv.gz" in msg
    for part in SPLIT:
        assert f"ogbn_arxiv/split/time/{part}.csv.gz" in msg
    assert str(tmp_path) in msg


@pytest.mark.parametrize("missing", ["raw/node-feat.csv.gz", "raw/num-edge-list.csv.gz", "split/time/valid.csv.gz"])
def test_missing_single_file_is_not_found(arxiv_root, missing):
    root, _ = arxiv_root
    (root / "ogbn_arxiv" / missing).unlink()
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("ogbn-arxiv", root=root)
    assert f"Missing: ['ogbn_arxiv/{missing}']" in str(err.value)


def test_split_ids_out_of_range(arxiv_root):
    root, _ = arxiv_root
    _write(root / "ogbn_arxiv" / "split" / "time" / "test.csv.gz", [3, 7, N])
    with pytest.raises(DataFormatError, match=r"test\.csv\.gz: the file has 1 index\(es\) outside \[0, 12\) \(node ids\)"):
        load_dataset("ogbn-arxiv", root=root)


def test_corrupt_raw_file(arxiv_root):
    root, _ = arxiv_root
    (root / "ogbn_arxiv" / "raw" / "edge.csv.gz").write_bytes(b"\x00garbage, not gzip")
    with pytest.raises(DataFormatError, match=r"edge\.csv\.gz: cannot read this OGB file"):
        load_dataset("ogbn-arxiv", root=root)
