"""Loaders on the real datasets: exact figures, canonical form, fixed splits, data-root resolution."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import connected_components

from vqgraph.data import DATA_ENV, canonical_edges, load_dataset, num_undirected_edges, resolve_data_root

# name: (nodes, undirected edges, features, classes), after CPF standardisation (largest component)
CPF_FIGURES = {
    "cora": (2485, 5069, 1433, 7),
    "citeseer": (2110, 3668, 3703, 6),
    "a-computer": (13381, 245778, 767, 10),
    "a-photo": (7487, 119043, 745, 8),
}

# name: (nodes, undirected edges, features, classes, class counts, train/val/test per split),
# all from shared/data/<name>/SOURCE.md (beside the repository)
HETERO_FIGURES = {
    "texas": (183, 279, 1703, 5, [33, 1, 18, 101, 30], (87, 59, 37)),
    "cornell": (183, 277, 1703, 5, [38, 16, 30, 82, 17], (87, 59, 37)),
    "wisconsin": (251, 450, 1703, 5, [10, 70, 118, 32, 21], (120, 80, 51)),
    "actor": (7600, 26659, 932, 5, [853, 1337, 1630, 1815, 1965], (3648, 2432, 1520)),
    "chameleon": (2277, 31371, 2325, 5, [456, 460, 453, 521, 387], (1092, 729, 456)),
    "squirrel": (5201, 198353, 2089, 5, [1042, 1040, 1039, 1040, 1040], (2496, 1664, 1041)),
}


# ---- canonical form on a graph built in code --------------------------------------------------------
def test_build_graph_canonicalises_tiny_graph(tiny_graph, assert_canonical):
    assert_canonical(tiny_graph, num_nodes=6, num_edges=7, num_features=3, num_classes=2)
    pairs = {(int(a), int(b)) for a, b in tiny_graph.edge_index.t()}
    undirected = {(0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (3, 5), (4, 5)}
    assert pairs == undirected | {(b, a) for a, b in undirected}
    assert num_undirected_edges(tiny_graph) == 7
    assert tiny_graph.name == "tiny"
    # float64 input becomes float32 with the same values
    expected = (torch.arange(18, dtype=torch.float64).view(6, 3) / 10).float()
    assert torch.equal(tiny_graph.x, expected)


def test_canonical_edges_is_idempotent_and_order_free(tiny_graph):
    ei = tiny_graph.edge_index
    assert torch.equal(canonical_edges(ei, 6), ei)
    shuffled = ei[:, torch.randperm(ei.size(1), generator=torch.Generator().manual_seed(1))].flip(0)
    assert torch.equal(canonical_edges(shuffled, 6), ei)
    assert canonical_edges(torch.tensor([[3, 3], [3, 3]]), 6).shape == (2, 0)


# ---- CPF family ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CPF_FIGURES))
def test_cpf_figures_and_canonical_form(name, load_real, assert_canonical):
    nodes, edges, feats, classes = CPF_FIGURES[name]
    data = load_real(name)
    assert_canonical(data, num_nodes=nodes, num_edges=edges, num_features=feats, num_classes=classes)
    assert data.name == name
    assert num_undirected_edges(data) == edges
    assert set(torch.unique(data.y).tolist()) == set(range(classes))
    assert "train_mask" not in data  # CPF sets have no fixed split
    # standardised: one connected component
    n = data.num_nodes
    adj = sp.coo_matrix((np.ones(data.edge_index.size(1)), data.edge_index.numpy()), shape=(n, n))
    assert connected_components(adj, directed=False)[0] == 1


def test_cora_matches_independent_standardisation(data_root, load_real):
    """Rows are the raw file's largest-component nodes in their original order."""
    raw = np.load(Path(data_root) / "cora" / "cora.npz")
    n = int(raw["adj_shape"][0])
    adj = sp.csr_matrix((raw["adj_data"], raw["adj_indices"], raw["adj_indptr"]), shape=(n, n))
    adj = ((adj + adj.T) > 0).astype(np.int8).tolil()
    adj.setdiag(0)
    adj = adj.tocsr()
    adj.eliminate_zeros()
    _, comp = connected_components(adj, directed=False)
    keep = np.flatnonzero(comp == np.argmax(np.bincount(comp)))
    feats = sp.csr_matrix(
        (raw["attr_data"], raw["attr_indices"], raw["attr_indptr"]), shape=tuple(raw["attr_shape"])
    )
    data = load_real("cora")
    assert torch.equal(data.y, torch.from_numpy(raw["labels"][keep].astype(np.int64)))
    assert np.array_equal(data.x.numpy(), feats[keep].toarray().astype(np.float32))
    sub = adj[keep][:, keep].tocoo()
    expected = {(int(a), int(b)) for a, b in zip(sub.row, sub.col)}
    assert {(int(a), int(b)) for a, b in data.edge_index.t()} == expected


def test_cpf_npz_by_file_path(data_root, load_real, tmp_path, assert_canonical):
    copy = tmp_path / "my_copy_of_cora.npz"
    shutil.copyfile(Path(data_root) / "cora" / "cora.npz", copy)
    data = load_dataset(str(copy))
    assert_canonical(data, *CPF_FIGURES["cora"])
    assert data.name == "my_copy_of_cora"
    ref = load_real("cora")
    assert torch.equal(data.x, ref.x)
    assert torch.equal(data.y, ref.y)
    assert torch.equal(data.edge_index, ref.edge_index)


def test_aliases_load_the_same_dataset(data_root, load_real):
    photo = load_dataset("Amazon_Photo", root=data_root)
    assert photo.name == "a-photo"
    assert torch.equal(photo.edge_index, load_real("a-photo").edge_index)


# ---- heterophilic family -------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(HETERO_FIGURES))
def test_heterophilic_figures_masks_and_canonical_form(name, load_real, assert_canonical):
    nodes, edges, feats, classes, counts, split = HETERO_FIGURES[name]
    data = load_real(name)
    assert_canonical(data, num_nodes=nodes, num_edges=edges, num_features=feats, num_classes=classes)
    assert torch.bincount(data.y, minlength=classes).tolist() == counts
    for key in ("train_mask", "val_mask", "test_mask"):
        assert data[key].shape == (nodes, 10)
        assert data[key].dtype == torch.bool
    sizes = torch.stack([data.train_mask.sum(0), data.val_mask.sum(0), data.test_mask.sum(0)], dim=1)
    assert sizes.tolist() == [list(split)] * 10
    overlap = data.train_mask.int() + data.val_mask.int() + data.test_mask.int()
    assert int(overlap.max()) == 1  # disjoint in every split
    assert len({tuple(data.train_mask[:, s].nonzero().view(-1).tolist()) for s in range(10)}) == 10


def test_heterophilic_masks_are_the_files_masks(data_root, load_real):
    raw = np.load(Path(data_root) / "texas" / "texas.npz")
    data = load_real("texas")
    for key in ("train", "val", "test"):
        assert np.array_equal(data[f"{key}_mask"].numpy(), raw[f"{key}_masks"].T.astype(bool))


def test_cornell_has_its_own_features(load_real):
    """The Geom-GCN Cornell feature file is Texas's; the loaded Cornell must not be."""
    cornell, texas = load_real("cornell"), load_real("texas")
    assert cornell.x.shape == texas.x.shape
    assert not torch.equal(cornell.x, texas.x)
    assert not torch.equal(cornell.y, texas.y)


# ---- data root resolution ------------------------------------------------------------------------
def _cora_tree(base: Path, data_root: Path) -> Path:
    (base / "cora").mkdir(parents=True)
    shutil.copyfile(Path(data_root) / "cora" / "cora.npz", base / "cora" / "cora.npz")
    return base


def test_resolve_data_root_order(tmp_path, monkeypatch):
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_data_root() == Path("datasets")
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "env"))
    assert resolve_data_root() == tmp_path / "env"
    assert resolve_data_root("") == tmp_path / "env"
    assert resolve_data_root(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_root(str(tmp_path / "arg")) == tmp_path / "arg"


def test_explicit_root_beats_env(data_root, tmp_path, monkeypatch, load_real):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    data = load_dataset("cora", root=data_root)
    assert torch.equal(data.edge_index, load_real("cora").edge_index)


def test_env_beats_cwd_datasets(data_root, tmp_path, monkeypatch):
    # ./datasets holds a corrupt cora; $VQGRAPH_DATA holds the real one and must win
    (tmp_path / "datasets" / "cora").mkdir(parents=True)
    (tmp_path / "datasets" / "cora" / "cora.npz").write_bytes(b"not an npz")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_ENV, str(data_root))
    assert load_dataset("cora").num_nodes == CPF_FIGURES["cora"][0]


def test_cwd_datasets_is_the_fallback(data_root, tmp_path, monkeypatch):
    _cora_tree(tmp_path / "datasets", data_root)
    monkeypatch.delenv(DATA_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    assert load_dataset("cora").num_nodes == CPF_FIGURES["cora"][0]
    # and without ./datasets nothing is found
    monkeypatch.chdir(tmp_path / "datasets")
    with pytest.raises(FileNotFoundError):
        load_dataset("cora")
