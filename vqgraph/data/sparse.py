"""Mostly-zero feature matrices (bag-of-words) held as compressed rows, for a sparse first layer.

A citation or co-purchase graph's features are often thousands of word indicators of which 1%
are set. :class:`SparseRows` keeps such a matrix as CSR and hands out row batches as
``torch.sparse_csr`` tensors, so a first linear layer costs O(non-zeros x width) instead of
O(rows x features x width). :func:`use_sparse` decides by density.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Union

import torch
from torch import Tensor

SPARSE_INPUTS = ("auto", "on", "off")
SPARSE_MAX_DENSITY = 0.1  # "auto": features with at most this fraction of non-zeros are held sparse


def density(x: Tensor) -> float:
    """Fraction of non-zero entries of a dense matrix."""
    return float(torch.count_nonzero(x)) / max(1, x.numel())


def use_sparse(choice: str, x: Union[Tensor, float]) -> bool:
    """Whether features ``x`` (or a known density of them) go sparse: ``on``, ``off``, or ``auto``
    (density at most :data:`SPARSE_MAX_DENSITY`: Cora 1.3% and Citeseer 0.9% are, the Amazon
    graphs' 35% not)."""
    if choice not in SPARSE_INPUTS:
        raise ValueError(f"sparse_input must be one of {SPARSE_INPUTS}, got {choice!r}")
    share = x if isinstance(x, float) else density(x)
    return choice == "on" or (choice == "auto" and share <= SPARSE_MAX_DENSITY)


@contextlib.contextmanager
def _quiet():
    """torch warns that sparse CSR support is in beta at every construction."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
        yield


def _csr(crow: Tensor, col: Tensor, values: Tensor, shape) -> Tensor:
    with _quiet():
        return torch.sparse_csr_tensor(crow, col, values, size=shape)


def to_csr(x: Tensor) -> Tensor:
    """A dense matrix as a ``torch.sparse_csr`` tensor."""
    with _quiet():
        return x.to_sparse_csr()


class SparseRows:
    """The rows of a ``torch.sparse_csr`` matrix; ``rows[idx]`` (a tensor of row ids, or a
    slice of consecutive rows) is a ``torch.sparse_csr`` tensor of those rows in that order."""

    def __init__(self, csr: Tensor):
        self.csr = csr

    @classmethod
    def from_dense(cls, x: Tensor) -> "SparseRows":
        return cls(to_csr(x))

    @property
    def shape(self):
        return self.csr.shape

    def size(self, dim: int) -> int:
        return self.csr.size(dim)

    @property
    def device(self) -> torch.device:
        return self.csr.device

    def to(self, device) -> "SparseRows":
        return SparseRows(self.csr.to(device))

    def __getitem__(self, idx: Union[Tensor, slice]) -> Tensor:
        if isinstance(idx, slice):
            start, stop, step = idx.indices(self.csr.size(0))
            if step != 1:
                raise ValueError(f"SparseRows takes slices of consecutive rows, got step {step}")
            return csr_rows(self.csr, start, stop)
        full = self.csr.crow_indices()
        idx = idx.to(full.device)
        starts = full[idx]
        counts = full[idx + 1] - starts
        crow = torch.zeros(idx.numel() + 1, dtype=full.dtype, device=full.device)
        torch.cumsum(counts, 0, out=crow[1:])
        # position of each kept entry in the full arrays: its row's start plus its rank within the row
        pos = torch.repeat_interleave(starts - crow[:-1], counts) + torch.arange(int(crow[-1]), device=crow.device)
        return _csr(crow, self.csr.col_indices()[pos], self.csr.values()[pos], (idx.numel(), self.csr.size(1)))

    def square_mean(self, idx: Tensor) -> float:
        """Mean of the squared entries of rows ``idx`` (zeros included)."""
        return float(self[idx].values().pow(2).sum()) / max(1, idx.numel() * self.csr.size(1))


def sparse_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Dropout on the stored entries of a ``torch.sparse_csr`` tensor (its zeros stay zero, as
    under dense dropout)."""
    if not training or p <= 0:
        return x
    values = x.values()
    keep = torch.rand_like(values) >= p
    return _csr(x.crow_indices(), x.col_indices(), values * keep / (1.0 - p), x.shape)


def csr_rows(x: Tensor, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of a ``torch.sparse_csr`` tensor (which has no slicing of its own)."""
    if start == 0 and stop == x.size(0):
        return x
    crow = x.crow_indices()
    first, last = int(crow[start]), int(crow[stop])
    return _csr(crow[start:stop + 1] - first, x.col_indices()[first:last], x.values()[first:last],
                (stop - start, x.size(1)))


def sparse_linear(x: Tensor, weight: Tensor, bias: Tensor, dropout: float = 0.0, training: bool = False) -> Tensor:
    """``F.linear(dropout(x), weight, bias)`` for a ``torch.sparse_csr`` ``x``: dropout on its
    stored entries, one sparse-dense product (and one for the weight's gradient)."""
    x = sparse_dropout(x, dropout, training)
    if x.requires_grad:  # a gradient for the features themselves: autograd's own product
        return torch.addmm(bias, x, weight.t())
    return _SparseLinear.apply(x, weight, bias)


class _SparseLinear(torch.autograd.Function):
    """``x W^T + b`` for CSR ``x`` whose weight gradient ``(x^T g)^T`` reads ``x^T`` as COO (the
    row of each stored entry repeated, the index pair swapped) instead of converting ``x`` to
    a transposed CSR each step, as autograd's product does: the same sums, less sorting."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
        ctx.x = x
        return torch.addmm(bias, x, weight.t())

    @staticmethod
    def backward(ctx, grad: Tensor):
        x = ctx.x
        crow = x.crow_indices()
        rows = torch.repeat_interleave(torch.arange(x.size(0), device=grad.device), crow[1:] - crow[:-1])
        with _quiet():
            x_t = torch.sparse_coo_tensor(torch.stack([x.col_indices(), rows]), x.values(), (x.size(1), x.size(0)),
                                          check_invariants=False)
        weight_grad = torch.sparse.mm(x_t, grad).t() if ctx.needs_input_grad[1] else None
        bias_grad = grad.sum(0) if ctx.needs_input_grad[2] else None
        return None, weight_grad, bias_grad


def sparse_mse(x: Tensor, h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    """``F.mse_loss(F.linear(h, weight, bias), x.to_dense())`` for a ``torch.sparse_csr`` ``x``
    [N, F] without the N x F reconstruction: with ``r = h W^T + b``, the sum of squared errors is
    ``sum r^2 - 2 sum x * r + sum x^2``, where ``sum r^2`` needs only the [D, D] Gram matrix of
    ``W`` and ``sum x * r`` only the non-zeros (``x W`` is one sparse-dense product). Exact up
    to float rounding, gradients included; cost O(N D^2 + F D^2 + nnz D)."""
    n, f = x.shape
    wb = weight.t() @ bias  # [D]
    squares = ((h @ (weight.t() @ weight)) * h).sum() + 2 * (h @ wb).sum() + n * bias.pow(2).sum()
    xw = torch.sparse.mm(x, weight)  # [N, D]
    cross = (xw * h).sum() + (x.values() * bias[x.col_indices()]).sum()
    return (squares - 2 * cross + x.values().pow(2).sum()) / (n * f)
