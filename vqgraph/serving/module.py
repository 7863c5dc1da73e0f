"""The served computation: features in, ``(probs, labels, codes)`` out (what gets exported)."""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from vqgraph.data.graph import FeatureTransform
from vqgraph.losses import code_logits
from vqgraph.models.student import MLPStudent


class Prediction(NamedTuple):
    """probs [B, C] class probabilities; labels [B] arg-max classes; codes [B] index of the
    nearest teacher code (-1 for students without a codebook)."""

    probs: Tensor
    labels: Tensor
    codes: Tensor


class ServingModule(nn.Module):
    """Features in, ``(probs, labels, codes)`` out: normalisation, MLP and code assignment in one
    module, which is what gets exported. Always in eval mode (no dropout)."""

    def __init__(self, student: MLPStudent, transform: FeatureTransform, codebook: Optional[Tensor], metric: str):
        super().__init__()
        self.student = student.eval()
        self.norm_kind = transform.kind
        width = student.in_channels
        self.register_buffer("mean", transform.mean if transform.mean is not None else torch.zeros(width))
        self.register_buffer("std", transform.std if transform.std is not None else torch.ones(width))
        has_codes = codebook is not None and student.projection is not None
        self.register_buffer("codebook", codebook if has_codes else torch.zeros(0, 1))
        self.has_codes = has_codes
        self.metric = metric

    def train(self, mode: bool = True):  # a serving module never trains
        return super().train(False)

    def forward(self, x: Tensor):
        x = FeatureTransform(self.norm_kind, self.mean, self.std)(x)  # the buffers travel with exports
        out = self.student(x)
        probs = torch.softmax(out.logits, dim=-1)
        labels = probs.argmax(dim=-1)
        if self.has_codes:
            codes = code_logits(out.z, self.codebook, self.metric).argmax(dim=-1)
        else:
            codes = torch.full_like(labels, -1)
        return probs, labels, codes
