"""A user's own student module, as the package trains and serves students (:class:`StudentWrapper`).

Any ``nn.Module`` whose ``forward(x)`` maps dense features [B, F] to class scores [B, C], or to
``(logits [B, C], hidden [B, H])`` (its representation, which the code term and the similarity
term need), becomes a student: the wrapper returns :class:`~vqgraph.models.student.StudentOutput`
as :class:`~vqgraph.models.student.MLPStudent` does, and projects ``hidden`` into the teacher's
code space with one linear layer when asked for a ``code_dim`` that ``H`` is not.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor, nn

from vqgraph.models.student import StudentOutput


def split_output(output) -> Tuple[Tensor, Optional[Tensor]]:
    """``(logits, hidden)`` of a student module's output: a tensor (logits alone), or a pair
    (a tuple, a list or a :class:`StudentOutput`) whose second item may be None. Training
    (:class:`StudentWrapper`) and serving (:mod:`vqgraph.serving.module`) read outputs this one way."""
    if isinstance(output, Tensor):
        return output, None
    if isinstance(output, (tuple, list)) and len(output) == 2 and isinstance(output[0], Tensor) \
            and (output[1] is None or isinstance(output[1], Tensor)):
        return output[0], output[1]
    raise TypeError(f"a student's forward(x) must return logits [B, C], or a pair (logits, hidden [B, H]) such as a "
                    f"StudentOutput; got {_describe(output)}")


def _describe(value) -> str:
    if isinstance(value, (tuple, list)):
        return f"a {type(value).__name__} of {len(value)}: ({', '.join(_describe(v) for v in value[:3])})"
    return f"Tensor {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__


def check_output(output, rows: int, num_classes: int, where: str) -> Tuple[Tensor, Optional[Tensor]]:
    """``split_output(output)`` if the logits are [rows, num_classes] and finite and the hidden
    representation (if any) is a finite [rows, H]; else ValueError saying what to change."""
    logits, hidden = split_output(output)
    if logits.dim() != 2 or logits.size(0) != rows:
        raise ValueError(f"{where}: the student's logits have shape {list(logits.shape)} for {rows} input rows; "
                         f"forward(x) must return class scores of shape [B, C] = [{rows}, {num_classes}]")
    if logits.size(1) != num_classes:
        raise ValueError(f"{where}: the student returns {logits.size(1)} class scores per row, the graph has "
                         f"{num_classes} classes: give its last layer out_features=data.num_classes ({num_classes})")
    if hidden is not None and (hidden.dim() != 2 or hidden.size(0) != rows):
        raise ValueError(f"{where}: the student's representation (the second item of its output) has shape "
                         f"{list(hidden.shape)}; it must be [B, H] = [{rows}, H]")
    for what, value in (("logits", logits), ("representation", hidden)):
        if value is not None and not bool(torch.isfinite(value.detach()).all()):
            raise ValueError(f"{where}: the student's {what} are not finite on these rows; check its "
                             "initialisation and forward")
    return logits, hidden


@torch.no_grad()
def probe(module: nn.Module, x: Tensor, num_classes: int) -> Optional[int]:
    """Run ``module`` once on the rows ``x`` in evaluation mode (its mode restored after) and
    return the width H of its representation (None if it returns logits only); its outputs are
    checked by :func:`check_output`."""
    was_training = module.training
    module.eval()
    try:
        _, hidden = check_output(module(x), x.size(0), num_classes, "the student's first forward pass")
    finally:
        module.train(was_training)
    return None if hidden is None else hidden.size(1)


class StudentWrapper(nn.Module):
    """A user's student ``module`` with the student interface: ``model(x) -> StudentOutput(logits, z)``.

    Args:
        module: maps features [B, F] to logits [B, C], or to ``(logits, hidden [B, H])``.
        in_channels: F. num_classes: C.
        hidden_channels: H, the width of the module's representation (None: it returns logits only).
        code_dim: the width D of the teacher's code space when ``z`` is wanted (None: ``z`` is None).
            ``z`` is ``hidden`` itself when ``H == D``, else ``projection(hidden)``, a linear layer.

    Attributes:
        inner: the module. in_channels, num_classes. code_dim: the width of ``z``, or None.
        projection: the ``nn.Linear`` from ``hidden`` to code space, or None.
    """

    def __init__(self, module: nn.Module, in_channels: int, num_classes: int, hidden_channels: Optional[int] = None,
                 code_dim: Optional[int] = None):
        super().__init__()
        if code_dim is not None and hidden_channels is None:
            raise ValueError("a student with a code space needs a representation: return (logits, hidden) from "
                             "its forward")
        self.inner = module
        self.in_channels, self.num_classes = in_channels, num_classes
        self.hidden_channels, self._code_dim = hidden_channels, code_dim
        project = code_dim is not None and hidden_channels != code_dim
        self.projection = nn.Linear(hidden_channels, code_dim) if project else None

    @property
    def code_dim(self) -> Optional[int]:
        """The width of ``z`` (the teacher's code space), or None when the student returns no ``z``."""
        return self._code_dim

    def forward(self, x: Tensor) -> StudentOutput:
        """``x``: dense features [B, F]."""
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"student expects features of shape [batch, {self.in_channels}], got {tuple(x.shape)}")
        logits, hidden = split_output(self.inner(x))
        if self._code_dim is None:
            return StudentOutput(logits, None)
        return StudentOutput(logits, self.projection(hidden) if self.projection is not None else hidden)
