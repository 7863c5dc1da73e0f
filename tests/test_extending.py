"""docs/extending.md runs as written: its blocks in order, on Cora, with fewer epochs."""

from __future__ import annotations

import re

import torch
from conftest import REPO


def test_extending_blocks_run_in_order(data_root, monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("VQGRAPH_DATA", str(data_root))
    monkeypatch.chdir(tmp_path)
    text = (REPO / "docs" / "extending.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.S)
    assert len(blocks) == 4  # the shared set-up, your own student, your own term, saved outputs
    namespace: dict = {}
    for i, block in enumerate(blocks):
        code = block.replace("max_epochs=100", "max_epochs=10")
        exec(compile(code, f"docs/extending.md block {i}", "exec"), namespace)
    result, saved, targets = namespace["result"], namespace["saved"], namespace["targets"]
    assert torch.equal(saved.logits, targets.logits)  # the saved outputs came back as they were
    assert saved.codebook is not None and saved.codes.min() >= 0  # fit_tokenizer gave the code term its codes
    assert 0.3 < result.metrics["test/acc"] <= 1.0
    out = capsys.readouterr().out
    assert "z width" in out and "student test/acc" in out
