"""experiments.val_halves: the two halves of validation are disjoint, cover it, and split each class."""

from __future__ import annotations

import torch

from experiments.val_halves import halves


def test_halves_split_every_class_of_validation_in_two():
    y = torch.arange(60) % 3
    val = torch.arange(0, 60, 2)  # 30 validation nodes, 10 per class
    a, b = halves(y, val, 3, seed=0)
    assert torch.equal(torch.sort(torch.cat([a, b])).values, val) and not set(a.tolist()) & set(b.tolist())
    assert torch.bincount(y[a], minlength=3).tolist() == [5, 5, 5] == torch.bincount(y[b], minlength=3).tolist()
    assert torch.equal(halves(y, val, 3, seed=0)[0], a) and not torch.equal(halves(y, val, 3, seed=1)[0], a)
