"""``pyg:CLASS[/NAME]`` datasets, offline: files written in each dataset's raw layout are read by
PyG's own classes; a missing file is reported with the paths PyG expects; fixed split masks are
used, and a dataset without them gets the CPF split."""

from __future__ import annotations

import json

import pytest
import torch

import vqgraph
from experiments import run as run_cli
from test_download import cpf_bytes, server  # noqa: F401 (a fixture)
from vqgraph import DatasetNotFoundError
from vqgraph.data.graph import is_canonical_edges
from vqgraph.errors import UnknownDatasetError


def write_wikics(folder, num_splits: int = 4) -> vqgraph.NodeSplit:
    """WikiCS's raw data.json: features, labels, adjacency lists, 20-odd train/val masks, one test mask."""
    g = vqgraph.make_csbm(num_nodes=150, num_classes=3, num_features=6, seed=1)
    n = g.num_nodes
    links = [[] for _ in range(n)]
    for i, j in g.edge_index.t().tolist():
        if i < j:
            links[i].append(j)  # one direction: PyG symmetrises
    gen = torch.Generator().manual_seed(0)
    test = torch.arange(n) % 2 == 0  # one test mask; each split draws train and val from the rest
    draws = [torch.rand(n, generator=gen) for _ in range(num_splits)]
    train = [(~test & (r < 0.4)).tolist() for r in draws]
    val = [(~test & (r >= 0.4) & (r < 0.8)).tolist() for r in draws]
    test = test.tolist()
    raw = {"features": g.x.tolist(), "labels": g.y.tolist(), "links": links, "train_masks": train,
           "val_masks": val, "test_mask": test, "stopping_masks": train}
    (folder / "raw").mkdir(parents=True)
    (folder / "raw" / "data.json").write_text(json.dumps(raw))
    return g, torch.tensor(train), torch.tensor(val), torch.tensor(test)


def test_a_missing_pyg_dataset_names_the_files_pyg_expects(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        vqgraph.load_dataset("pyg:Amazon/Photo", root=tmp_path)
    expected = tmp_path / "pyg" / "Amazon" / "Photo" / "raw" / "amazon_electronics_photo.npz"
    assert str(expected) in str(err.value) and "--download" in str(err.value)
    assert not any(tmp_path.iterdir())  # the folders PyG made on the way are gone


def test_pyg_amazon_from_raw_files_gets_the_cpf_split(tmp_path):
    raw = tmp_path / "pyg" / "Amazon" / "Photo" / "raw"
    raw.mkdir(parents=True)
    (raw / "amazon_electronics_photo.npz").write_bytes(cpf_bytes())
    data = vqgraph.load_dataset("pyg:Amazon/Photo", root=f"{tmp_path / 'empty'}:{tmp_path}")
    assert data.name == "pyg:Amazon/Photo" and data.num_nodes == 180 and data.num_classes == 3
    assert is_canonical_edges(data.edge_index, data.num_nodes) and "train_mask" not in data
    split = vqgraph.make_split(data, seed=0)
    assert split.train_idx.numel() == 60 and split.val_idx.numel() == 90  # CPF: 20 / 30 per class


def test_pyg_wikics_uses_its_fixed_splits(tmp_path):
    g, train, val, test = write_wikics(tmp_path / "pyg" / "WikiCS")
    data = vqgraph.load_dataset("pyg:WikiCS", root=tmp_path)
    assert torch.equal(data.edge_index, g.edge_index) and torch.allclose(data.x, g.x)
    for seed in (0, 3, 5):  # seed % 4 of the train and validation masks; the one test mask always
        split = vqgraph.make_split(data, seed=seed)
        assert torch.equal(split.train_idx, train[seed % 4].nonzero().view(-1))
        assert torch.equal(split.val_idx, val[seed % 4].nonzero().view(-1))
        assert torch.equal(split.test_idx, test.nonzero().view(-1))


def test_command_line_runs_a_pyg_dataset(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    write_wikics(tmp_path / "pyg" / "WikiCS")
    out = tmp_path / "run"
    argv = ["--dataset", "pyg:WikiCS", "--method", "vqgraph", "--data-root", str(tmp_path), "--quiet", "--cache", str(tmp_path / "cache"),
            "--set", "train.max_epochs=3", "student_train.max_epochs=3", "--out", str(out),
            "--wandb", "offline"]  # its artifacts' names hold no ':' or '/
    assert run_cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["dataset"] == "pyg:WikiCS" and results["method"] == "vqgraph"
    from vqgraph.app.run import RunSpec

    assert RunSpec("pyg:Amazon/Photo").name.startswith("pyg-Amazon-Photo-transductive")


@pytest.mark.parametrize("name, message", [
    ("pyg:NoSuchSet", "no dataset class 'NoSuchSet'"),
    ("pyg:Amazon", "needs a name"),
    ("pyg:WikiCS/x", "takes no name"),
    ("pyg:", "pyg:CLASS or pyg:CLASS/NAME"),
])
def test_bad_pyg_names_are_refused(tmp_path, name, message):
    with pytest.raises(UnknownDatasetError, match=message):
        vqgraph.load_dataset(name, root=tmp_path)


@pytest.mark.parametrize("where, ok", [("good", True), ("cut", False), ("junk", False)])
def test_pyg_download_through_pyg_from_a_local_server(server, monkeypatch, tmp_path, where, ok):  # noqa: F811
    from torch_geometric.datasets import Amazon

    base, _ = server
    monkeypatch.setattr(Amazon, "url", f"{base}/{where}/")
    if ok:
        data = vqgraph.load_dataset("pyg:Amazon/Photo", root=tmp_path, download=True)
        assert data.num_nodes == 180
        assert (tmp_path / "pyg" / "Amazon" / "Photo" / "raw" / "amazon_electronics_photo.npz").is_file()
        return
    with pytest.raises(DatasetNotFoundError, match="nothing new was kept"):
        vqgraph.load_dataset("pyg:Amazon/Photo", root=tmp_path, download=True)
    assert not any(tmp_path.iterdir())  # no partial raw file: a later run does not read half a file


def test_the_root_holding_the_dataset_wins_and_nothing_that_existed_is_removed(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    other = first / "pyg" / "Amazon" / "Computers"  # another dataset of the class, in the first root, empty
    other.mkdir(parents=True)
    raw = second / "pyg" / "Amazon" / "Photo" / "raw"
    raw.mkdir(parents=True)
    (raw / "amazon_electronics_photo.npz").write_bytes(cpf_bytes())
    data = vqgraph.load_dataset("pyg:Amazon/Photo", root=f"{first}:{second}")
    assert data.num_nodes == 180
    assert other.is_dir() and not (first / "pyg" / "Amazon" / "Photo").exists()  # the probe of root a left nothing
    with pytest.raises(DatasetNotFoundError):
        vqgraph.load_dataset("pyg:Amazon/Computers", root=str(first))
    assert other.is_dir()  # a folder that existed before the failed attempt is kept
