"""Bad input: each case raises the right vqgraph error, and its message names the problem."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from vqgraph.data import KNOWN_DATASETS, build_graph, check_graph, cpf_split, get_spec, load_dataset, make_split
from vqgraph.data.cpf import CPF_KEYS, load_cpf_npz
from vqgraph.data.npz import read_npz
from vqgraph.errors import DataFormatError, DatasetNotFoundError, GraphValidationError, SplitError, VQGraphError

X = torch.zeros(4, 2)
EDGES = torch.tensor([[0, 1, 2], [1, 2, 3]])
Y = torch.tensor([0, 1, 0, 1])


def _graph(x=X, edge_index=EDGES, y=Y, num_classes=2):
    return build_graph(x, edge_index, y, name="bad", num_classes=num_classes)


def test_valid_baseline_builds():
    """The inputs the cases below break are valid as they stand."""
    assert _graph().num_nodes == 4
    check_graph(X, EDGES, Y, 2)


def test_errors_share_the_base_class():
    for err in (DataFormatError, DatasetNotFoundError, GraphValidationError, SplitError):
        assert issubclass(err, VQGraphError)
    assert issubclass(DatasetNotFoundError, FileNotFoundError)
    assert issubclass(GraphValidationError, ValueError)


# ---- graph tensors -------------------------------------------------------------------------------
def test_nan_features():
    x = X.clone()
    x[2, 1] = float("nan")
    with pytest.raises(GraphValidationError, match=r"bad: features contain 1 NaN/inf value\(s\) in 1 node\(s\); first bad node is 2"):
        _graph(x=x)


def test_inf_features():
    x = X.clone()
    x[1, 0] = float("inf")
    x[3, 1] = -float("inf")
    with pytest.raises(GraphValidationError, match=r"features contain 2 NaN/inf value\(s\) in 2 node\(s\); first bad node is 1"):
        _graph(x=x)


def test_negative_labels():
    with pytest.raises(GraphValidationError, match=r"labels must be >= 0; node 2 has label -1"):
        _graph(y=torch.tensor([0, 1, -1, 1]))


def test_labels_not_below_num_classes():
    with pytest.raises(GraphValidationError, match=r"labels must be in \[0, 2\); node 3 has label 2"):
        _graph(y=torch.tensor([0, 1, 0, 2]))


def test_edge_index_out_of_range():
    with pytest.raises(GraphValidationError, match=r"node index outside \[0, 4\); first is edge 1 = \(2, 4\)"):
        _graph(edge_index=torch.tensor([[0, 2, 1], [1, 4, 2]]))


def test_negative_edge_index():
    with pytest.raises(GraphValidationError, match=r"outside \[0, 4\); first is edge 0 = \(-1, 1\)"):
        _graph(edge_index=torch.tensor([[-1], [1]]))


def test_features_1d():
    with pytest.raises(GraphValidationError, match=r"features must have shape \[num_nodes, num_features\], got \(4,\)"):
        _graph(x=torch.zeros(4))


def test_edge_index_three_rows():
    with pytest.raises(GraphValidationError, match=r"edge_index must have shape \[2, num_edges\], got \(3, 3\)"):
        _graph(edge_index=torch.zeros(3, 3, dtype=torch.long))


def test_labels_wrong_length():
    with pytest.raises(GraphValidationError, match=r"labels must have shape \[4\] \(one per node\), got \(5,\)"):
        _graph(y=torch.tensor([0, 1, 0, 1, 0]))


def test_float_edge_index():
    with pytest.raises(GraphValidationError, match="edge_index must be an integer tensor, got torch.float32"):
        _graph(edge_index=EDGES.float())


def test_float_labels():
    with pytest.raises(GraphValidationError, match="labels must be an integer tensor, got torch.float32"):
        _graph(y=Y.float())


# ---- splits --------------------------------------------------------------------------------------
def test_class_too_small_for_split(tiny_graph):
    with pytest.raises(SplitError, match=r"class 0 has 3 node\(s\) but the split needs 50 \(20 train \+ 30 val per class\)"):
        make_split(tiny_graph, seed=0)


def test_class_too_small_for_custom_split(tiny_graph):
    with pytest.raises(SplitError, match=r"class 1 has 0 node\(s\) but the split needs 2"):
        cpf_split(torch.zeros(6, dtype=torch.long), 2, train_per_class=1, val_per_class=1)


def test_empty_split(tiny_graph):
    g = tiny_graph.clone()
    g.train_mask = torch.tensor([[True, False], [True, True], [False, True], [False, False], [False, False], [False, False]])
    g.val_mask = torch.tensor([[False, False]] * 2 + [[True, False]] + [[False, True]] * 2 + [[False, False]])
    g.test_mask = ~(g.train_mask | g.val_mask)
    g.test_mask[:, 1] = False  # column 1 has no test node
    assert make_split(g, seed=0).sizes() == {"train": 2, "val": 1, "test": 3}
    with pytest.raises(SplitError, match="split 'test' is empty"):
        make_split(g, seed=1)


@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.2, 1.5])
def test_inductive_ratio_out_of_range(ratio):
    split = cpf_split(torch.arange(20) % 2, 2, train_per_class=2, val_per_class=2)
    with pytest.raises(SplitError, match=rf"test_ind_ratio must be in \(0, 1\), got {ratio}"):
        split.inductive(ratio)


def test_inductive_ratio_leaves_empty_part():
    split = cpf_split(torch.arange(20) % 2, 2, train_per_class=2, val_per_class=2)  # 12 test nodes
    with pytest.raises(SplitError, match=r"test_ind_ratio=0.01 of 12 test nodes leaves an empty test_ind or test_tran"):
        split.inductive(0.01)


# ---- files ---------------------------------------------------------------------------------------
def test_missing_files_list_expected_and_searched(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("a-photo", root=tmp_path)
    msg = str(err.value)
    spec = get_spec("a-photo")
    assert "dataset 'a-photo' not found" in msg
    for rel in spec.candidates:
        assert f"'{rel}'" in msg  # expected files
        assert f"'{tmp_path / rel}'" in msg  # searched paths
    assert "amazon_photo/amazon_photo.npz" in msg


def test_missing_npz_path(tmp_path):
    path = tmp_path / "nowhere" / "graph.npz"
    with pytest.raises(DatasetNotFoundError, match=f"CPF-format file '{path}' does not exist"):
        load_dataset(str(path))


def test_corrupt_npz_random_bytes(tmp_path):
    path = tmp_path / "cora.npz"
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(DataFormatError) as err:
        load_dataset("cora", root=tmp_path)
    assert f"{path}: not a readable .npz archive" in str(err.value)
    assert "pickled objects" not in str(err.value)  # random bytes are not a pickle


def test_npy_file_named_npz(tmp_path):
    path = tmp_path / "graph.npz"
    with open(path, "wb") as f:
        np.save(f, np.arange(10))
    with pytest.raises(DataFormatError, match="not a readable .npz archive"):
        load_dataset(str(path))


def test_truncated_npz(data_root, tmp_path):
    blob = (Path(data_root) / "cora" / "cora.npz").read_bytes()
    path = tmp_path / "cora" / "cora.npz"
    path.parent.mkdir()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataFormatError, match=f"{path}: not a readable .npz archive"):
        load_dataset("cora", root=tmp_path)


class _Canary:
    """Unpickling this object creates a directory: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def test_npz_with_object_array_is_never_unpickled(tmp_path):
    canary = tmp_path / "unpickled"
    path = tmp_path / "evil.npz"
    np.savez(path, labels=np.array([_Canary(canary), 1], dtype=object), adj_shape=np.array([2, 2]))
    with pytest.raises(DataFormatError, match="pickled objects, which vqgraph never loads"):
        load_dataset(str(path))
    assert not canary.exists()
    # the canary works: loading with pickle allowed would have run it
    with np.load(path, allow_pickle=True) as f:
        f["labels"]
    assert canary.is_dir()


def test_npz_missing_required_key(data_root, tmp_path):
    with np.load(Path(data_root) / "cora" / "cora.npz") as f:
        arrays = {k: f[k] for k in f.files if k != "labels"}
    path = tmp_path / "nolabels.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataFormatError, match=r"missing array\(s\) \['labels'\]"):
        load_cpf_npz(path)


def test_npz_missing_key_small(tmp_path):
    path = tmp_path / "small.npz"
    np.savez(path, adj_data=np.ones(1))
    with pytest.raises(DataFormatError) as err:
        read_npz(path, CPF_KEYS)
    msg = str(err.value)
    assert "missing array(s)" in msg and "'labels'" in msg and "'attr_shape'" in msg
    assert "found ['adj_data']" in msg


def test_npz_inconsistent_sizes(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(
        path,
        adj_data=np.ones(2), adj_indices=np.array([1, 0]), adj_indptr=np.array([0, 1, 2]), adj_shape=np.array([2, 2]),
        attr_data=np.ones(3), attr_indices=np.array([0, 0, 0]), attr_indptr=np.array([0, 1, 2, 3]),
        attr_shape=np.array([3, 1]), labels=np.array([0, 1]),
    )  # fmt: skip
    with pytest.raises(DataFormatError, match=r"2 nodes in the adjacency but 3 feature rows and 2 labels"):
        load_cpf_npz(path)


def test_unknown_dataset_name():
    with pytest.raises(KeyError) as err:  # a KeyError, and one of ours, printed without quotes
        load_dataset("coraa")
    msg = err.value.args[0]
    assert isinstance(err.value, VQGraphError) and str(err.value) == msg
    assert "unknown dataset 'coraa'" in msg
    for name in KNOWN_DATASETS:
        assert name in msg


def test_download_failure_leaves_nothing(tmp_path):
    """Offline (the suite blocks the network), download=True fails cleanly and atomically."""
    with pytest.raises(DatasetNotFoundError, match="Download from https://.*pubmed.npz into .* failed"):
        load_dataset("pubmed", root=tmp_path, download=True)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_copy_of_real_file_is_fine(data_root, tmp_path):
    """Control for the file cases above: an intact copy in the same place loads."""
    (tmp_path / "cora").mkdir()
    shutil.copyfile(Path(data_root) / "cora" / "cora.npz", tmp_path / "cora" / "cora.npz")
    assert load_dataset("cora", root=tmp_path).num_nodes == 2485
