"""The sha256 of the known dataset files: kept once in vqgraph/data/checksums.py, stated the same in
datasets/README.md, checked when a known dataset is loaded. A file that differs is loaded with a
warning naming it and both sums (a copy changed on purpose stays usable; nobody compares results
on another file without being told)."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

import vqgraph
from vqgraph.data.checksums import SHA256, sha256_of
from vqgraph.data.datasets import KNOWN_DATASETS

README = Path(__file__).resolve().parents[1] / "datasets" / "README.md"
ROW = re.compile(r"^\| `([\w/]+\.npz)`[^|]*\| `([0-9a-f]{64})` \|$", flags=re.M)


def test_the_readme_states_the_checksums_the_code_checks():
    assert dict(ROW.findall(README.read_text())) == SHA256


def test_every_listed_file_is_a_known_dataset_file():
    candidates = {rel for spec in KNOWN_DATASETS.values() for rel in spec.candidates}
    assert set(SHA256) <= candidates


def test_the_files_the_project_is_tested_with_load_without_a_warning(data_root):
    for rel, digest in SHA256.items():
        if (data_root / rel).is_file():
            assert sha256_of(data_root / rel) == digest, rel
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        vqgraph.load_dataset("cora", root=data_root)


def test_a_known_dataset_file_that_differs_loads_with_a_warning_naming_it(data_root, tmp_path):
    """Re-saved uncompressed: the same arrays, other bytes (as a user's re-encoded copy would be)."""
    with np.load(data_root / "cora" / "cora.npz") as f:
        arrays = {key: f[key] for key in f.files}
    path = tmp_path / "npz" / "cora.npz"  # any of the dataset's places under the root is checked
    path.parent.mkdir()
    np.savez_compressed(path, **arrays)
    with pytest.warns(UserWarning) as caught:
        data = vqgraph.load_dataset("cora", root=tmp_path)
    message = str(caught[0].message)
    assert message.startswith(f"{path}: sha256 {sha256_of(path)} differs from {SHA256['cora/cora.npz']}, listed for "
                              "cora/cora.npz in datasets/README.md")
    assert "It is loaded anyway" in message and "download=True" in message
    assert data.num_nodes == 2485  # the same graph: only the bytes differ
    shutil.copy(data_root / "cora" / "cora.npz", path)  # the listed file: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        vqgraph.load_dataset("cora", root=tmp_path)


def test_a_corrupt_known_file_is_one_error_without_a_checksum_warning(data_root, tmp_path):
    path = tmp_path / "cora" / "cora.npz"
    path.parent.mkdir()
    path.write_bytes((data_root / "cora" / "cora.npz").read_bytes()[:1000])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        with pytest.raises(vqgraph.DataFormatError, match="not a readable .npz archive"):
            vqgraph.load_dataset("cora", root=tmp_path)
