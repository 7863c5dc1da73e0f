"""Normalisation layers by name, shared by the encoders and the student (torch alone: the
student, and so serving, imports no graph library)."""

from __future__ import annotations

from typing import Callable, Dict

from torch import nn

NORMS: Dict[str, Callable[[int], nn.Module]] = {
    "none": lambda c: nn.Identity(),
    "batch": nn.BatchNorm1d,
    "layer": nn.LayerNorm,
}
