"""Every array of every file format we read is checked whole before a matrix or tensor is built
from it (vqgraph/data/arrays.py): one DataFormatError naming the file, the key and what is
wrong; never an interpreter crash, never a silently different graph."""

from __future__ import annotations

import gzip
import io
import re
import zipfile

import numpy as np
import pytest

import vqgraph
from test_download import SERVED, cpf_bytes, server  # noqa: F401 (a fixture)
from test_ogb import write_tiny_arxiv
from vqgraph.data.cpf import load_cpf_npz
from vqgraph.data.heterophilic import load_heterophilic_npz
from vqgraph.errors import DataFormatError


def cpf_arrays():
    """A valid 3-node CPF archive: edges 0-1, 1-2; 3 feature columns; labels 0, 1, 0."""
    return dict(adj_data=np.ones(4, np.float32), adj_indices=np.array([1, 0, 2, 1], np.int32),
                adj_indptr=np.array([0, 1, 3, 4], np.int32), adj_shape=np.array([3, 3]),
                attr_data=np.array([1.0, 2.0, 3.0], np.float32), attr_indices=np.array([0, 2, 1], np.int32),
                attr_indptr=np.array([0, 1, 2, 3], np.int32), attr_shape=np.array([3, 3]),
                labels=np.array([0, 1, 0], np.int8))


CPF_CASES = {  # name: (changes to the valid archive, the error's text after "<file>: ")
    "column index past attr_shape": (dict(attr_indices=np.array([0, 3, 1], np.int32)),
                                     "'attr_indices' has 1 index(es) outside [0, 3) (attr_shape[1]); first at flat index 1: 3"),
    "negative column index": (dict(adj_indices=np.array([1, -1, 2, 1], np.int32)),
                              "'adj_indices' has 1 index(es) outside [0, 3) (adj_shape[1]); first at flat index 1: -1"),
    "pointers that fall": (dict(adj_indptr=np.array([0, 3, 1, 4], np.int32)),
                           "'adj_indptr' must be non-decreasing; row 1 ends before it starts (3 > 1)"),
    "pointers ending early": (dict(adj_indptr=np.array([0, 1, 3, 3], np.int32)),
                              "'adj_indptr' must start at 0 and end at len(adj_indices) = 4, got 0 ... 3"),
    "pointers of the wrong length": (dict(attr_indptr=np.array([0, 1, 3], np.int32)),
                                     "'attr_indptr' must have 4 entries (attr_shape[0] + 1), got 3"),
    "values of the wrong length": (dict(attr_data=np.ones(2, np.float32)),
                                   "'attr_data' must have one value per index (3), got 2"),
    "float indices": (dict(adj_indices=np.array([1.0, 0.0, 2.0, 1.0])),
                      "'adj_indices' must hold integers, got dtype float64"),
    "NaN features": (dict(attr_data=np.array([1.0, np.nan, 3.0], np.float32)),
                     "'attr_data' holds 1 NaN/inf value(s); first at flat index 1"),
    "a stored zero in the adjacency": (dict(adj_data=np.array([1, 1, 0, 1], np.float32)),
                                       "'adj_data' stores a zero at entry 2; every stored entry is an edge"),
    "a shape of floats": (dict(attr_shape=np.array([3.0, 3.0])), "'attr_shape' must hold integers, got dtype float64"),
    "a shape of three numbers": (dict(adj_shape=np.array([3, 3, 1])),
                                 "'adj_shape' must be two non-negative integers (rows, columns), got [3, 3, 1]"),
    "a non-square adjacency": (dict(adj_shape=np.array([3, 4])), "'adj_shape' must be square (an adjacency), got [3, 4]"),
    "no nodes": (dict(adj_shape=np.array([0, 0]), adj_indptr=np.array([0]), adj_indices=np.zeros(0, np.int32),
                      adj_data=np.zeros(0)), "'adj_shape' describes a graph without nodes"),
    "one-hot labels": (dict(labels=np.eye(3, dtype=np.int64)[[0, 1, 0]]),
                       "'labels' must hold one class id per node, shape [3], got shape (3, 3) (one-hot or multi-label"),
    "negative labels": (dict(labels=np.array([0, -1, 0])), "'labels' must be >= 0; node 1 has label -1"),
    "float labels": (dict(labels=np.array([0.0, 1.0, 0.0])), "'labels' must hold integers, got dtype float64"),
    "labels that skip a class": (dict(labels=np.array([0, 2, 0])), "'labels' skips class 1: no node has it, yet the "
                                                                    "largest label 2 implies 3 classes (2 are held)"),
    "a label far past the others": (dict(labels=np.array([0, 1, 10**9])),
                                    "'labels' skips class 2: no node has it, yet the largest label 1000000000 implies"),
    "a single class": (dict(labels=np.zeros(3, np.int64)),
                       "'labels' holds a single class ([0]); node classification needs two or more"),
    "no edges": (dict(adj_data=np.zeros(0), adj_indices=np.zeros(0, np.int32), adj_indptr=np.zeros(4, np.int32)),
                 "'adj_indices' holds no edges"),
    "only self-loops": (dict(adj_data=np.ones(3), adj_indices=np.arange(3), adj_indptr=np.arange(4)),
                        "'adj_indices' holds no edge between two different nodes (3 stored, all self-loops)"),
    "no feature columns": (dict(attr_shape=np.array([3, 0]), attr_data=np.zeros(0), attr_indices=np.zeros(0, np.int32),
                                attr_indptr=np.zeros(4, np.int32)), "'attr_shape' declares no feature columns, got [3, 0]"),
    "terabytes of feature columns": (dict(attr_shape=np.array([3, 10**12])),
                                     "'attr_shape' declares [3, 1000000000000] features: "),
}


@pytest.mark.parametrize("case", sorted(CPF_CASES))
def test_a_cpf_file_with_inconsistent_arrays_is_one_error_naming_file_and_key(tmp_path, case):
    """An index past attr_shape or a negative one used to corrupt the heap at features[keep].toarray()
    (the interpreter aborted); pointers that fall used to load a different graph silently."""
    changes, text = CPF_CASES[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **{**cpf_arrays(), **changes})
    with pytest.raises(DataFormatError) as err:
        load_cpf_npz(path)
    assert str(err.value).startswith(f"{path}: {text}"), str(err.value)
    assert str(err.value).endswith("the file is corrupt or not in the expected layout")


def test_the_valid_cpf_archive_loads_as_written(tmp_path):
    path = tmp_path / "good.npz"
    np.savez(path, **cpf_arrays())
    data = load_cpf_npz(path)
    assert data.edge_index.tolist() == [[0, 1, 1, 2], [1, 0, 2, 1]] and data.y.tolist() == [0, 1, 0]
    assert data.x.tolist() == [[1, 0, 0], [0, 0, 2], [0, 3, 0]]


def hetero_arrays(n: int = 4):
    return dict(node_features=np.arange(n * 2, dtype=np.float32).reshape(n, 2), node_labels=np.array([0, 1, 0, 1]),
                edges=np.array([[0, 1], [1, 2], [2, 3]]), train_masks=np.eye(2, n, dtype=bool),
                val_masks=np.eye(2, n, 1, dtype=bool), test_masks=np.eye(2, n, 2, dtype=bool))


HETERO_CASES = {
    "an edge to a node that does not exist": (dict(edges=np.array([[0, 1], [1, 4]])),
                                              "'edges' has 1 index(es) outside [0, 4) (node ids; "),
    "a negative edge": (dict(edges=np.array([[0, -1]])), "'edges' has 1 index(es) outside [0, 4)"),
    "float edges": (dict(edges=np.array([[0.0, 1.0]])), "'edges' must hold integers, got dtype float64"),
    "edges of three columns": (dict(edges=np.array([[0, 1, 2]])), "'edges' must have shape [num_edges, 2], got (1, 3)"),
    "a mask of 0, 1 and 2": (dict(val_masks=np.array([[0, 1, 2, 0]])), "'val_masks' must hold booleans (or 0/1), got "
                                                                       "dtype int64 with other values"),
    "a mask of floats": (dict(test_masks=np.ones((1, 4))), "'test_masks' must hold booleans (or 0/1), got dtype float64"),
    "a mask of the wrong width": (dict(train_masks=np.ones((2, 3), bool)), "'train_masks' must have shape "
                                                                           "[num_splits, 4] with at least one split, got (2, 3)"),
    "NaN features": (dict(node_features=np.array([[0, 1], [np.inf, 0], [0, 0], [1, 1]], np.float32)),
                     "'node_features' holds 1 NaN/inf value(s); first at flat index 2"),
    "labels for another node count": (dict(node_labels=np.array([0, 1, 0])),
                                      "'node_labels' must hold one class id per node (4 nodes), got 3"),
    "labels that skip a class": (dict(node_labels=np.array([0, 2, 0, 2])), "'node_labels' skips class 1: no node has it"),
    "a single class": (dict(node_labels=np.ones(4, np.int64)), "'node_labels' holds a single class ([1])"),
    "no edges": (dict(edges=np.zeros((0, 2), np.int64)), "'edges' holds no edges"),
    "no feature columns": (dict(node_features=np.zeros((4, 0), np.float32)),
                           "'node_features' has no feature columns, got shape (4, 0)"),
    "masks of no split": (dict(train_masks=np.zeros((0, 4), bool)),  # make_split divided by zero
                          "'train_masks' must have shape [num_splits, 4] with at least one split, got (0, 4)"),
}


@pytest.mark.parametrize("case", sorted(HETERO_CASES))
def test_a_heterophilic_file_with_inconsistent_arrays_is_one_error_naming_file_and_key(tmp_path, case):
    """A mask of 2s used to become True silently; an edge out of range was a GraphValidationError
    that did not name the key."""
    changes, text = HETERO_CASES[case]
    path = tmp_path / "bad.npz"
    np.savez(path, **{**hetero_arrays(), **changes})
    with pytest.raises(DataFormatError) as err:
        load_heterophilic_npz(path, "bad")
    assert str(err.value).startswith(f"{path}: {text}"), str(err.value)


def test_a_heterophilic_file_with_unsigned_edges_and_0_1_masks_loads(tmp_path):
    path = tmp_path / "ok.npz"
    z = hetero_arrays()
    np.savez(path, **{**z, "edges": z["edges"].astype(np.uint64), "val_masks": z["val_masks"].astype(np.int8)})
    data = load_heterophilic_npz(path, "ok")
    assert data.edge_index.tolist() == [[0, 1, 1, 2, 2, 3], [1, 0, 2, 1, 3, 2]]
    assert data.val_mask.dtype == vqgraph.data.graph.torch.bool and data.val_mask[:, 0].tolist() == [0, 1, 0, 0]


def write_gz(path, rows):
    with gzip.open(path, "wt") as f:
        f.write("".join(",".join(map(str, np.atleast_1d(r))) + "\n" for r in rows))


OGB_CASES = {  # file written under ogbn_arxiv/, its rows, the file the error names, the error's text after it
    "fewer nodes in num-node-list than edges and features use": (
        "raw/num-node-list.csv.gz", [10], "raw/edge.csv.gz", "the file has 4 index(es) outside [0, 10) (num-node-list)"),
    "fewer edges than num-edge-list says": ("raw/num-edge-list.csv.gz", [99], "raw/edge.csv.gz",
                                            "the file must have 99 rows (num-edge-list) of 2 node ids, got (15, 2)"),
    "two graphs in num-node-list": ("raw/num-node-list.csv.gz", [6, 6], None,
                                    "the file must hold one non-negative count (one graph), got [6, 6]"),
    "a feature row missing": ("raw/node-feat.csv.gz", [[0.5, 1.0]] * 11, None,
                              "the file must have one row per node (12), got 11 rows"),
    "edges given as floats": ("raw/edge.csv.gz", [(0.5, 1)] * 15, None, "the file must hold integers, got dtype float64"),
    "a label past the dataset's 40 classes": ("raw/node-label.csv.gz", [40] + [0] * 11, None,
                                              "the file must be below ogbn-arxiv's 40 classes; node 0 has 40"),
    "a node without a label": ("raw/node-label.csv.gz", ["nan"] + [0] * 11, None,
                               "the file has nodes without a label (NaN); unlabelled nodes are not supported"),
}


@pytest.mark.parametrize("case", sorted(OGB_CASES))
def test_an_ogb_folder_whose_files_disagree_is_one_error_naming_the_file(tmp_path, case):
    """ogb's read_csv_graph_raw used to cut features and edges to the counts silently."""
    file, rows, named, text = OGB_CASES[case]
    write_tiny_arxiv(tmp_path)
    write_gz(tmp_path / "ogbn_arxiv" / file, rows)
    with pytest.raises(DataFormatError) as err:
        vqgraph.load_dataset("ogbn-arxiv", root=tmp_path)
    assert str(err.value).startswith(f"{tmp_path / 'ogbn_arxiv' / (named or file)}: {text}"), str(err.value)


def bad_amazon_npz(path) -> None:
    """A CPF-layout file (PyG's Amazon raw file) whose feature index 5 is far past its 12 columns."""
    good = np.load(io.BytesIO(cpf_bytes()))
    z = {key: good[key] for key in good.files}
    z["attr_indices"] = z["attr_indices"].copy()
    z["attr_indices"][5] = 10_000
    np.savez(path, **z)


def test_a_pyg_raw_npz_with_an_index_past_its_shape_is_refused_before_pyg_reads_it(tmp_path):
    """PyG's Amazon reader builds scipy matrices from the arrays unchecked (the heap corruption above)."""
    raw = tmp_path / "pyg" / "Amazon" / "Photo" / "raw"
    raw.mkdir(parents=True)
    bad_amazon_npz(raw / "amazon_electronics_photo.npz")
    with pytest.raises(DataFormatError, match=re.escape(f"{raw / 'amazon_electronics_photo.npz'}: 'attr_indices' has "
                                                        "1 index(es) outside [0, 12) (attr_shape[1])")):
        vqgraph.load_dataset("pyg:Amazon/Photo", root=tmp_path)
    assert sorted(p.name for p in (tmp_path / "pyg" / "Amazon" / "Photo").iterdir()) == ["raw"]  # nothing processed


def test_a_pyg_raw_file_its_reader_cannot_read_is_a_format_error_not_a_missing_dataset(tmp_path):
    folder = tmp_path / "pyg" / "WikiCS"
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "data.json").write_text('{"features": [[1.0]], "labels": ')  # cut off
    with pytest.raises(DataFormatError, match=re.escape(f"dataset 'pyg:WikiCS': PyG's WikiCS could not read its files "
                                                        f"under {folder} (nothing new was kept): JSONDecodeError")):
        vqgraph.load_dataset("pyg:WikiCS", root=tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == ["raw"]


def test_a_pyg_download_with_an_index_past_its_shape_is_refused_and_not_kept(server, monkeypatch, tmp_path):
    from torch_geometric.datasets import Amazon

    base, _ = server
    bad_amazon_npz(tmp_path / "served.npz")
    SERVED["amazon_electronics_photo.npz"] = (tmp_path / "served.npz").read_bytes()
    monkeypatch.setattr(Amazon, "url", f"{base}/file/")
    root = tmp_path / "root"
    with pytest.raises(vqgraph.DatasetNotFoundError, match=r"could not download it into .* \(nothing new was kept\): "
                                                           r"DataFormatError: .*'attr_indices' has 1 index\(es\)"):
        vqgraph.load_dataset("pyg:Amazon/Photo", root=root, download=True)
    assert not root.exists()


def _npz_with(path, members) -> None:
    """An archive written member by member, as ``np.savez`` would, but with ``members`` as given:
    ``(name, bytes)`` pairs."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            archive.writestr(name, data)


def _npy(array=None, header=None) -> bytes:
    buf = io.BytesIO()
    if header is None:
        np.save(buf, array)
    else:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(b"\0" * 64)
    return buf.getvalue()


def test_an_npz_naming_an_array_twice_or_declaring_more_than_it_holds_is_refused_before_numpy_reads_it(tmp_path):
    """A second 'labels.npy' appended to the archive used to win silently (another graph); a header
    declaring 10**12 labels made numpy allocate 7 TiB first (a raw MemoryError, or the machine swapping)."""
    members = [(f"{key}.npy", _npy(value)) for key, value in cpf_arrays().items()]
    twice = tmp_path / "twice.npz"
    with pytest.warns(UserWarning, match="Duplicate name"):
        _npz_with(twice, members + [("labels.npy", _npy(np.array([1, 1, 0])))])
    with pytest.raises(DataFormatError, match=re.escape(f"{twice}: holds ['labels.npy'] more than once")):
        load_cpf_npz(twice)
    huge = tmp_path / "huge.npz"
    header = {"descr": "<i8", "fortran_order": False, "shape": (10**12,)}
    _npz_with(huge, [m for m in members if m[0] != "labels.npy"] + [("labels.npy", _npy(header=header))])
    with pytest.raises(DataFormatError, match=re.escape(f"{huge}: 'labels' declares shape (1000000000000,) of int64 "
                                                        "(8000000000000 bytes), but its member holds 64 bytes")):
        load_cpf_npz(huge)
    extra = tmp_path / "extra.npz"  # members that are not arrays are ignored, as numpy ignores them
    _npz_with(extra, members + [("README.txt", b"notes")])
    assert load_cpf_npz(extra).y.tolist() == [0, 1, 0]


def test_an_npz_whose_arrays_exceed_the_machines_memory_is_refused_before_numpy_allocates_them(tmp_path, monkeypatch):
    """np.savez_compressed of 10**11 zeros is a few hundred MB; numpy would allocate 800 GB to read it."""
    path = tmp_path / "big.npz"
    np.savez_compressed(path, **cpf_arrays())
    monkeypatch.setattr("vqgraph.data.npz.physical_memory", lambda: 256)  # the arrays above take more
    with pytest.raises(DataFormatError, match=re.escape(f"{path}: its arrays take 0.0 GiB uncompressed, more than this "
                                                        "machine's 0.0 GiB of memory")):
        load_cpf_npz(path)
