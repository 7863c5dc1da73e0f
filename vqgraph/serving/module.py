"""The served computation: features in, ``(probs, labels, codes)`` out (what gets exported), and
what a student module must be to be served (:func:`student_shape`)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from vqgraph.data.transform import FeatureTransform
from vqgraph.losses import code_logits
from vqgraph.models.custom import split_output
from vqgraph.models.student import MLPStudent


class Prediction(NamedTuple):
    """probs [B, C] class probabilities; labels [B] arg-max classes; codes [B] index of the
    nearest teacher code (-1 for students without a codebook)."""

    probs: Tensor
    labels: Tensor
    codes: Tensor


class StudentShape(NamedTuple):
    """What serving knows of a student module: its feature width, number of classes and the
    width of its representation ``z`` (None when it returns logits only)."""

    in_channels: int
    num_classes: int
    code_dim: Optional[int]


def _width(model: nn.Module, given: Optional[int], name: str) -> int:
    own = getattr(model, name, None)
    own = None if isinstance(own, bool) or not isinstance(own, int) else own
    if given is not None and (isinstance(given, bool) or not isinstance(given, int) or given < 1):
        raise ValueError(f"Predictor: {name} must be an integer >= 1, got {given!r}")
    if own is not None and given is not None and own != given:
        raise ValueError(f"Predictor: {name}={given} but the {type(model).__name__} says {name}={own}")
    if own is None and given is None:
        raise ValueError(f"Predictor: {type(model).__name__} has no integer attribute {name!r}: pass "
                         f"Predictor(model, ..., {name}=...)")
    return own if given is None else given


def student_shape(model, in_channels: Optional[int] = None, num_classes: Optional[int] = None) -> StudentShape:
    """The shape of a student: an :class:`MLPStudent`'s from its attributes; any other module's
    from its attributes ``in_channels`` and ``num_classes`` (or the arguments), checked by one
    call on a [2, in_channels] batch of zeros in evaluation mode, which also gives ``z``'s width."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"Predictor needs a student module (an nn.Module whose forward(x) returns logits, "
                        f"(logits, z) or a StudentOutput), got {type(model).__name__}")
    width, classes = _width(model, in_channels, "in_channels"), _width(model, num_classes, "num_classes")
    if isinstance(model, MLPStudent):
        return StudentShape(width, classes, model.code_dim)
    probe = next(iter(model.parameters()), next(iter(model.buffers()), torch.zeros(0)))
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(2, width, device=probe.device))
    except Exception as err:
        raise ValueError(f"Predictor: {type(model).__name__} failed on features [2, {width}] (in_channels={width}): "
                         f"{type(err).__name__}: {err}") from err
    logits, z = split_output(out)
    if tuple(logits.shape) != (2, classes):
        raise ValueError(f"Predictor: {type(model).__name__} returned logits {list(logits.shape)} for 2 rows; "
                         f"expected [2, {classes}] (num_classes={classes})")
    if z is not None and (z.dim() != 2 or z.size(0) != 2):
        raise ValueError(f"Predictor: {type(model).__name__} returned z {list(z.shape)} for 2 rows; expected [2, D]")
    return StudentShape(width, classes, None if z is None else z.size(1))


class ServingModule(nn.Module):
    """Features in, ``(probs, labels, codes)`` out: normalisation, student and code assignment in
    one module, which is what gets exported. Always in eval mode (no dropout).

    ``student`` is an :class:`MLPStudent` or any module whose ``forward(x)`` returns logits,
    ``(logits, z)`` or a ``StudentOutput``; ``in_channels`` defaults to ``student.in_channels``."""

    def __init__(self, student: nn.Module, transform: FeatureTransform, codebook: Optional[Tensor], metric: str,
                 in_channels: Optional[int] = None):
        super().__init__()
        self.student = student.eval()
        self.norm_kind = transform.kind
        width = in_channels if in_channels is not None else student.in_channels
        self.register_buffer("mean", transform.mean if transform.mean is not None else torch.zeros(width))
        self.register_buffer("std", transform.std if transform.std is not None else torch.ones(width))
        has_codes = codebook is not None
        self.register_buffer("codebook", codebook if has_codes else torch.zeros(0, 1))
        self.has_codes = has_codes
        self.metric = metric

    def train(self, mode: bool = True):  # a serving module never trains
        return super().train(False)

    def forward(self, x: Tensor):
        x = FeatureTransform(self.norm_kind, self.mean, self.std)(x)  # the buffers travel with exports
        logits, z = split_output(self.student(x))
        probs = torch.softmax(logits, dim=-1)
        labels = probs.argmax(dim=-1)
        if self.has_codes:
            codes = code_logits(z, self.codebook, self.metric).argmax(dim=-1)
        else:
            codes = torch.full_like(labels, -1)
        return probs, labels, codes
