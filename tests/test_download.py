"""Downloading a dataset, against a local HTTP server on 127.0.0.1 (the suite has no internet):
one download into the first data root, reused afterwards; a cut-off or malformed download
leaves nothing; the command line's --download switch, and its short error without it."""

from __future__ import annotations

import dataclasses
import http.server
import io
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import vqgraph
from experiments import run as run_cli
from vqgraph import DatasetNotFoundError
from vqgraph.data.datasets import KNOWN_DATASETS


def cpf_bytes() -> bytes:
    """A small graph in the CPF .npz layout (3 classes of 60 nodes: enough for the CPF split)."""
    g = vqgraph.make_csbm(num_nodes=180, num_classes=3, num_features=12, seed=0)
    n = g.num_nodes
    ei = g.edge_index.numpy()
    adj = sp.csr_matrix((np.ones(ei.shape[1]), (ei[0], ei[1])), shape=(n, n))
    attr = sp.csr_matrix(g.x.numpy())
    buf = io.BytesIO()
    np.savez(buf, adj_data=adj.data, adj_indices=adj.indices, adj_indptr=adj.indptr, adj_shape=np.array(adj.shape),
             attr_data=attr.data, attr_indices=attr.indices, attr_indptr=attr.indptr, attr_shape=np.array(attr.shape),
             labels=g.y.numpy())
    return buf.getvalue()


# the served "cora" is a small CPF file, not CPF's cora.npz: its checksum warning is expected here
# (test_a_downloaded_file_that_is_not_the_listed_one_is_kept_with_a_warning checks it)
pytestmark = pytest.mark.filterwarnings("ignore:.*listed for cora/cora.npz:UserWarning")

SERVED = {}  # name -> bytes, served at /file/<name>


@pytest.fixture(scope="module")
def server():
    body = cpf_bytes()
    hits = {"count": 0}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            hits["count"] += 1
            if self.path.startswith("/cut"):  # announces the whole file, sends half of it, hangs up
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if self.path.startswith("/file/"):  # a file a test put in SERVED
                payload = SERVED[self.path[len("/file/"):]]
            else:
                payload = body if self.path.startswith("/good/") else b"this is not an npz file"
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", hits
    httpd.shutdown()
    httpd.server_close()


def serve_cora_from(monkeypatch, url: str) -> None:
    monkeypatch.setitem(KNOWN_DATASETS, "cora", dataclasses.replace(KNOWN_DATASETS["cora"], url=url))


def files_under(root: Path):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_download_once_into_the_first_root_then_reuse(server, monkeypatch, tmp_path):
    base, hits = server
    serve_cora_from(monkeypatch, f"{base}/good/cora.npz")
    roots = f"{tmp_path / 'first'}:{tmp_path / 'second'}"
    with pytest.raises(DatasetNotFoundError, match="download=True"):
        vqgraph.load_dataset("cora", root=roots)  # no download unless asked
    before = hits["count"]
    data = vqgraph.load_dataset("cora", root=roots, download=True)
    assert data.num_nodes == 180 and data.num_classes == 3 and hits["count"] == before + 1
    assert files_under(tmp_path / "first") == ["cora/cora.npz"] and not (tmp_path / "second").exists()
    again = vqgraph.load_dataset("cora", root=roots, download=True)  # found: no second request
    assert hits["count"] == before + 1 and again.num_nodes == 180


@pytest.mark.parametrize("path, message", [("/cut/cora.npz", "cut off|IncompleteRead"), ("/junk/cora.npz", "nothing was kept")])
def test_a_cut_or_malformed_download_leaves_nothing(server, monkeypatch, tmp_path, path, message):
    base, _ = server
    serve_cora_from(monkeypatch, f"{base}{path}")
    with pytest.raises(DatasetNotFoundError, match=message):
        vqgraph.load_dataset("cora", root=tmp_path / "root", download=True)
    assert files_under(tmp_path / "root") == []  # no partial file, no temporary file


def test_command_line_download_switch(server, monkeypatch, tmp_path, capsys):
    base, _ = server
    serve_cora_from(monkeypatch, f"{base}/good/cora.npz")
    root = tmp_path / "data"
    argv = ["--dataset", "cora", "--method", "glnn", "--teacher", "gcn", "--data-root", str(root), "--quiet",
            "--set", "train.max_epochs=3", "student_train.max_epochs=3", "--cache", str(tmp_path / "cache"),
            "--out", str(tmp_path / "run")]
    assert run_cli.main(argv) == 1  # missing, no switch: one line naming the switch and the folders
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:") and "Traceback" not in err
    assert "--download" in err and str(root / "cora" / "cora.npz") in err
    assert not (tmp_path / "run").exists()
    assert run_cli.main(argv + ["--download"]) == 0
    assert (root / "cora" / "cora.npz").is_file() and (tmp_path / "run" / "results.json").is_file()


def test_a_heterophilic_download_is_checked_by_its_reader(server, monkeypatch, tmp_path, data_root):
    base, _ = server
    SERVED["texas.npz"] = (data_root / "texas" / "texas.npz").read_bytes()
    monkeypatch.setitem(KNOWN_DATASETS, "texas", dataclasses.replace(KNOWN_DATASETS["texas"], url=f"{base}/file/texas.npz"))
    data = vqgraph.load_dataset("texas", root=tmp_path, download=True)
    assert data.num_nodes == 183 and data.train_mask.shape == (183, 10)
    assert files_under(tmp_path) == ["texas/texas.npz"]


def test_a_failed_download_leaves_no_folder_it_created(monkeypatch, tmp_path):
    """A failing source (no network here: urlopen and ogb's download_url are replaced) used to
    leave an empty datasets/cora/ behind; now the folders the attempt made are removed, and those
    that existed before are kept."""
    import urllib.request

    import ogb.utils.url

    def refuse(*args, **kwargs):
        raise OSError("fake source: connection refused")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(ogb.utils.url, "download_url", refuse)
    for name in ("cora", "texas", "ogbn-arxiv"):
        with pytest.raises(DatasetNotFoundError, match="failed \\(nothing was kept\\): OSError: fake source"):
            vqgraph.load_dataset(name, root=tmp_path / "new" / "root", download=True)
        assert not (tmp_path / "new").exists(), name
    existing = tmp_path / "data"
    (existing / "cora").mkdir(parents=True)
    (existing / "cora" / "notes.txt").write_text("mine")
    with pytest.raises(DatasetNotFoundError):
        vqgraph.load_dataset("cora", root=existing, download=True)
    assert files_under(existing) == ["cora/notes.txt"]
    with pytest.raises(DatasetNotFoundError):
        vqgraph.load_dataset("citeseer", root=existing, download=True)
    assert sorted(p.name for p in existing.iterdir()) == ["cora"]  # no empty citeseer/


def test_a_downloaded_file_that_is_not_the_listed_one_is_kept_with_a_warning(server, monkeypatch, tmp_path):
    base, _ = server
    serve_cora_from(monkeypatch, f"{base}/good/cora.npz")  # a valid CPF file, but not CPF's cora.npz
    with pytest.warns(UserWarning, match=r"cora\.npz: sha256 \w+ differs from 068e22d9\w+, listed for cora/cora\.npz"):
        assert vqgraph.load_dataset("cora", root=tmp_path, download=True).num_nodes == 180
