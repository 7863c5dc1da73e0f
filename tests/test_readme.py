"""The README's Python example runs exactly as written (so it stays true)."""

from __future__ import annotations

import re

import torch
from conftest import REPO


def _snippet(heading: str, page: str = "README.md") -> str:
    text = (REPO / page).read_text()
    section = text.split(heading, 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, f"no python block under {heading!r}"
    return match.group(1)


def test_python_example_runs(data_root, monkeypatch, capsys):
    monkeypatch.setenv("VQGRAPH_DATA", str(data_root))
    code = _snippet("## From Python")
    assert 8 <= len([line for line in code.splitlines() if line.strip()]) <= 20
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    teacher, student = namespace["teacher"], namespace["student"]
    assert 0.6 < teacher.metrics["test/acc"] <= 1.0  # a real teacher was trained on Cora
    assert 0.4 < student.metrics["test/acc"] <= 1.0
    assert "test/acc" in capsys.readouterr().out


def test_serving_example_runs_after_the_python_example(data_root, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VQGRAPH_DATA", str(data_root))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_snippet("## From Python").replace("max_epochs=200", "max_epochs=5"), "README.md", "exec"), namespace)
    exec(compile(_snippet("## Serving"), "README.md", "exec"), namespace)
    out, probs, codes = namespace["out"], namespace["probs"], namespace["codes"]
    assert (tmp_path / "student.pt").is_file() and (tmp_path / "student.pt2").is_file()
    assert torch.allclose(probs, out.probs, atol=1e-6) and torch.equal(codes, out.codes)
    assert out.codes.min() >= 0  # a vqgraph student: every node has a code
    student, data = namespace["student"], namespace["data"]  # raw features served as training saw them
    student.model.eval()
    with torch.no_grad():
        assert torch.equal(out.labels, student.model(data.x[:10]).logits.argmax(-1))


def test_own_graph_example_runs(capsys):
    namespace: dict = {}
    exec(compile(_snippet("## Your own graph", "docs/data.md"), "docs/data.md", "exec"), namespace)
    mine, data = namespace["mine"], namespace["data"]
    assert mine.edge_index.size(1) * 2 == data.edge_index.size(1) and data.x.dtype == torch.float32
    assert data.num_classes == 4 and 0.4 < namespace["student"].metrics["test/acc"] <= 1.0
    assert "test/acc" in capsys.readouterr().out


def test_distil_your_own_gnn_runs_and_serves_raw_features(data_root, monkeypatch, tmp_path):
    monkeypatch.setenv("VQGRAPH_DATA", str(data_root))
    monkeypatch.chdir(tmp_path)
    code = _snippet("## Distil your own GNN")
    assert len([line for line in code.splitlines() if line.strip()]) <= 15
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    targets, student, data = namespace["targets"], namespace["student"], namespace["data"]
    assert targets.codebook is not None and targets.codes.min() >= 0  # the tokenizer gave codes
    assert 0.6 < targets.metrics["test/acc"] <= 1.0  # the user's GNN learned Cora
    assert 0.6 < student.metrics["test/acc"] <= 1.0
    import vqgraph

    served = vqgraph.Predictor.load(tmp_path / "my_student.pt").predict(vqgraph.load_dataset("cora").x)
    student.model.eval()
    with torch.no_grad():
        assert torch.equal(served.labels, student.model(data.x).logits.argmax(-1))
