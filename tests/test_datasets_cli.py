"""``python -m experiments.datasets``: the dataset listing."""

from __future__ import annotations

import contextlib
import io
import json

import pytest

from experiments.datasets import main
from vqgraph.data import KNOWN_DATASETS

KEYS = {"name", "available", "num_nodes", "num_edges", "num_features", "num_classes", "split_sizes"}
EXPECTED = {
    # name: (nodes, edges, features, classes, split sizes with seed 0)
    "cora": (2485, 5069, 1433, 7, {"train": 140, "val": 210, "test": 2135}),
    "citeseer": (2110, 3668, 3703, 6, {"train": 120, "val": 180, "test": 1810}),
    "a-computer": (13381, 245778, 767, 10, {"train": 200, "val": 300, "test": 12881}),
    "a-photo": (7487, 119043, 745, 8, {"train": 160, "val": 240, "test": 7087}),
    "texas": (183, 279, 1703, 5, {"train": 87, "val": 59, "test": 37}),
    "cornell": (183, 277, 1703, 5, {"train": 87, "val": 59, "test": 37}),
    "wisconsin": (251, 450, 1703, 5, {"train": 120, "val": 80, "test": 51}),
    "actor": (7600, 26659, 932, 5, {"train": 3648, "val": 2432, "test": 1520}),
    "chameleon": (2277, 31371, 2325, 5, {"train": 1092, "val": 729, "test": 456}),
    "squirrel": (5201, 198353, 2089, 5, {"train": 2496, "val": 1664, "test": 1041}),
    "synthetic": (10000, 50000, 128, 5, {"train": 100, "val": 150, "test": 9750}),
}
MISSING_HERE = ("pubmed", "ogbn-arxiv", "ogbn-products")


@pytest.fixture(scope="module")
def listing(data_root):
    """The JSON listing of every dataset, made once per module (capsys is per test, so stdout is
    captured with redirect_stdout here; the other tests use capsys)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--data-root", str(data_root), "--json"])
    assert code == 0
    infos = json.loads(out.getvalue())
    return {info["name"]: info for info in infos}, infos


def test_lists_every_known_dataset_once(listing):
    by_name, infos = listing
    assert [info["name"] for info in infos] == list(KNOWN_DATASETS)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_available_dataset_figures(listing, name):
    info = listing[0][name]
    assert KEYS <= set(info)
    nodes, edges, feats, classes, sizes = EXPECTED[name]
    assert info["available"] is True
    assert (info["num_nodes"], info["num_edges"], info["num_features"], info["num_classes"]) == (
        nodes,
        edges,
        feats,
        classes,
    )
    assert info["split_sizes"] == sizes
    assert "reason" not in info


def test_fixed_split_counts_and_paths(listing, data_root):
    by_name = listing[0]
    for name in ("texas", "cornell", "wisconsin", "actor", "chameleon", "squirrel"):
        assert by_name[name]["family"] == "heterophilic"
        assert by_name[name]["num_fixed_splits"] == 10
        assert by_name[name]["path"] == str(data_root / name / f"{name}.npz")
    assert by_name["cora"]["num_fixed_splits"] == 0
    assert by_name["a-computer"]["path"] == str(data_root / "amazon_computers" / "amazon_computers.npz")
    assert by_name["synthetic"]["path"] == "generated"


@pytest.mark.parametrize("name", MISSING_HERE)
def test_missing_datasets_have_a_reason(listing, data_root, name):
    info = listing[0][name]
    assert info["available"] is False
    assert info["path"] is None
    assert info["reason"].startswith(f"DatasetNotFoundError: dataset {name!r} not found under data root {data_root}")
    assert "Expected one of these files" in info["reason"]


def test_selected_names_and_table(data_root, capsys):
    assert main(["--data-root", str(data_root), "cora", "pubmed"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == f"data root: {data_root}"
    cora = next(line for line in lines if line.startswith("cora "))
    assert cora.split()[1:5] == ["2485", "5069", "1433", "7"]
    assert "140/210/2135" in cora
    pubmed = next(line for line in lines if line.startswith("pubmed "))
    assert "missing" in pubmed and "DatasetNotFoundError" in pubmed
    assert len([line for line in lines if line[:1].isalpha()]) == 4  # root, header, cora, pubmed


def test_json_for_selected_names(data_root, capsys):
    assert main(["--data-root", str(data_root), "--json", "texas"]) == 0
    infos = json.loads(capsys.readouterr().out)
    assert [i["name"] for i in infos] == ["texas"]
    assert infos[0]["available"] is True


def test_unknown_name_is_a_usage_error(data_root, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--data-root", str(data_root), "nosuchset"])
    assert exit_info.value.code == 2
    assert "unknown dataset 'nosuchset'" in capsys.readouterr().err
