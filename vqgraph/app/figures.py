"""Figures a run writes beside its ``results.json`` (PNG, for users without W&B; logged as W&B
images when W&B is on). Needs matplotlib (``pip install -e '.[plot]'``); without it no figure
is written and the run says so once.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional

import torch

from vqgraph.targets import TeacherTargets


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        warnings.warn("matplotlib is not installed: no figure is written (pip install -e '.[plot]')", stacklevel=2)
        return False
    return True


def code_summary(targets: TeacherTargets, rows: Optional[torch.Tensor] = None):
    """Per code: how many nodes it holds and the majority class the teacher predicts for them
    (no label is read), over ``rows`` (default every node). Codes sorted by usage, largest first:
    ``(order, counts, majority)``, each [K]; the majority of an unused code is -1."""
    codes = targets.codes if rows is None else targets.codes[rows]
    predicted = targets.logits.argmax(-1) if rows is None else targets.logits[rows].argmax(-1)
    k, c = targets.codebook.size(0), targets.logits.size(1)
    keep = codes >= 0
    table = torch.zeros(k, c, dtype=torch.long).index_put_((codes[keep], predicted[keep]),
                                                          torch.ones(int(keep.sum()), dtype=torch.long), accumulate=True)
    counts = table.sum(1)
    majority = torch.where(counts > 0, table.argmax(1), torch.full_like(counts, -1))
    order = torch.argsort(counts, descending=True, stable=True)
    return order, counts, majority


def codebook_figure(targets: TeacherTargets, path: Path, title: str = "") -> Optional[Path]:
    """Two panels: nodes per code, codes sorted by usage, each bar coloured by the majority class
    the teacher predicts for its nodes; and the used codes projected on their first two principal
    components, coloured the same way, sized by usage. Written atomically; None without matplotlib
    or a codebook."""
    if targets.codebook is None or not have_matplotlib():
        return None
    import matplotlib
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    order, counts, majority = code_summary(targets)
    used = order[counts[order] > 0]
    cmap = matplotlib.colormaps["tab10" if targets.logits.size(1) <= 10 else "tab20"]
    colours = [cmap(int(majority[i]) % cmap.N) for i in used]
    fig = Figure(figsize=(10, 3.8))
    left, right = fig.subplots(1, 2)
    left.bar(range(used.numel()), counts[used].numpy(), width=1.0, color=colours)
    left.set_yscale("log")
    left.set_xlabel(f"code, by usage ({used.numel()} of {counts.numel()} used)")
    left.set_ylabel("nodes")
    left.set_title("code usage, coloured by majority predicted class", fontsize=9)
    vectors = targets.codebook[used].float()
    centred = vectors - vectors.mean(0)
    if used.numel() >= 2:
        _, _, v = torch.linalg.svd(centred, full_matrices=False)
        xy = centred @ v[:2].t()
        sizes = 8 + 60 * (counts[used].float() / counts[used].max()).sqrt()
        right.scatter(xy[:, 0].numpy(), xy[:, 1].numpy(), s=sizes.numpy(), c=colours, alpha=0.8, linewidths=0)
    right.set_title("used codes, first two principal components", fontsize=9)
    right.set_xticks([])
    right.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=100)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
