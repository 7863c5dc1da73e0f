"""Similarities and losses shared by the teacher's tokenizer and the distilled student.

:func:`code_logits` is THE similarity between node representations and codebook rows: the
teacher's quantizer picks codes by it and the student is trained against it, so both sides
use one function (the official code compares cosine teacher scores with Euclidean student ones).
"""

from __future__ import annotations

import weakref
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

METRICS = ("cosine", "euclidean")


def code_logits(z: Tensor, codebook: Tensor, metric: str = "cosine", scale: float = 1.0) -> Tensor:
    """Similarity of each row of ``z`` [B, D] to each code of ``codebook`` [K, D] -> [B, K].

    ``cosine``: dot product of l2-normalised vectors (in [-1, 1]); ``euclidean``: negative
    squared distance. ``scale`` multiplies the result (``1 / tau`` for a softmax at temperature
    tau; applied to the K x D side, so it costs nothing per node). Computed per batch: callers
    never need the full N x K matrix.
    """
    if z.size(-1) != codebook.size(-1):
        raise ValueError(f"code_logits: representation width {z.size(-1)} != code width {codebook.size(-1)}")
    if metric == "euclidean":  # exact distances (the quantizer's choice), not the affine form's rounding
        return torch.cdist(z, codebook).pow(2).mul(-scale)
    weight, _ = code_map(codebook, metric, scale)
    return F.normalize(z, dim=-1) @ weight.t()


def code_map(codebook: Tensor, metric: str = "cosine", scale: float = 1.0) -> Tuple[Tensor, Optional[Tensor]]:
    """The code logits as an affine map: ``(weight [K, D], bias [K] or None)`` with
    ``code_logits(z, codebook, metric, scale) = z' @ weight.T + bias + r(z)``.

    ``cosine``: ``z'`` is the unit ``z``, ``weight`` the scaled unit codes, no bias, ``r = 0``;
    ``euclidean``: ``-scale |z - c|^2 = 2 scale z.c - scale |c|^2 - scale |z|^2``, so ``z'`` is
    ``z`` itself and ``r(z) = -scale |z|^2``, the same for every code (it leaves a softmax over
    codes and their arg-max). Training's code term and serving's folded code head use it.
    """
    if metric == "cosine":
        return F.normalize(codebook, dim=-1) * scale, None
    if metric == "euclidean":
        return 2 * scale * codebook, -scale * codebook.pow(2).sum(-1)
    raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")


class ScoreBuffer:
    """One reusable [B, K] buffer for the scores of :func:`linear_logsumexp`.

    On a CPU, a fresh tensor of this size (32 MiB for 4,096 rows of 2,048 codes) is new pages
    from the operating system each time, whose first touch the product writing them pays for
    (``experiments.bench_code_term`` times the forms). The buffer is lent to one forward pass
    and comes back with its backward pass, or when that graph is freed without one (at once
    when no gradient is needed); a call made while it is lent out allocates its own. Writing
    into the buffer bumps the version of the scores an unfinished graph saved, so autograd
    refuses a stale backward instead of reading overwritten scores.
    """

    def __init__(self):
        self._data: Optional[Tensor] = None
        self._holder = None  # None: free; else a weak reference to the borrower (or True)

    @property
    def lent(self) -> bool:
        return self._holder is not None and (self._holder is True or self._holder() is not None)

    def borrow(self, rows: int, cols: int, like: Tensor, holder=None) -> Optional[Tensor]:
        """A [rows, cols] view of the buffer (grown if needed), or None while it is lent out.
        ``holder``: an object whose end gives the buffer back (default: only :meth:`give_back`)."""
        if self.lent:
            return None
        data = self._data
        if data is None or data.numel() < rows * cols or data.device != like.device or data.dtype != like.dtype:
            data = self._data = like.new_empty(rows * cols)
        self._holder = True if holder is None else weakref.ref(holder)
        return data[: rows * cols].view(rows, cols)

    def give_back(self, holder=None) -> None:
        """End the loan (given ``holder``: only if the buffer is lent to it)."""
        if holder is None or (self._holder not in (None, True) and self._holder() is holder):
            self._holder = None


class _LinearLogSumExp(torch.autograd.Function):
    """``logsumexp(x @ weight.T + bias, dim=-1)`` with one [B, K] buffer for the whole pass:
    the scores are shifted and exponentiated in place and kept for backward, which multiplies
    them straight into the gradients (``softmax @ weight`` for ``x``): no [B, K] gradient of the
    scores is formed."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Optional[Tensor], buffer: Optional[ScoreBuffer]) -> Tensor:
        out = buffer.borrow(x.size(0), weight.size(0), x, holder=ctx) if buffer is not None else None
        probs, top, total = _exp_scores(x, weight, bias, out)
        ctx.save_for_backward(x, weight, probs, total)
        ctx.buffer = buffer if out is not None else None
        return (top + total.log()).squeeze(-1)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        x, weight, probs, total = ctx.saved_tensors
        row = grad.unsqueeze(-1) / total  # d lse / d scores = probs / total, per row
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = (probs @ weight).mul_(row)
        if ctx.needs_input_grad[1]:
            grad_weight = probs.t() @ (x * row)
        if ctx.needs_input_grad[2]:
            grad_bias = probs.t() @ row.squeeze(-1)
        if ctx.buffer is not None:
            ctx.buffer.give_back(ctx)
        return grad_x, grad_weight, grad_bias, None


def linear_logsumexp(x: Tensor, weight: Tensor, bias: Optional[Tensor] = None,
                     buffer: Optional[ScoreBuffer] = None) -> Tensor:
    """``torch.logsumexp(x @ weight.T + bias, dim=-1)`` for ``x`` [B, D], ``weight`` [K, D],
    ``bias`` [K] (optional), computed in one [B, K] buffer (``buffer``: reused across calls).

    The code term's log-sum-exp over K codes, K up to thousands, is the student's largest cost:
    torch's form allocates three [B, K] tensors per step (scores, shifted scores, their
    gradient) and exponentiates twice; this one exponentiates once and, with a
    :class:`ScoreBuffer`, allocates none.
    """
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias)):
        return _LinearLogSumExp.apply(x, weight, bias, buffer)
    out = buffer.borrow(x.size(0), weight.size(0), x) if buffer is not None else None
    _, top, total = _exp_scores(x, weight, bias, out)
    if out is not None:
        buffer.give_back()
    return (top + total.log()).squeeze(-1)


def _exp_scores(x: Tensor, weight: Tensor, bias: Optional[Tensor], out: Optional[Tensor]) -> tuple:
    """``exp(scores - row max)`` written into ``out`` (a fresh tensor if None), the row max, the row sums."""
    scores = torch.mm(x, weight.t(), out=out)
    if bias is not None:
        scores.add_(bias)
    top = scores.amax(dim=-1, keepdim=True)
    probs = scores.sub_(top).exp_()
    return probs, top, probs.sum(dim=-1, keepdim=True)


def edge_recon_dense(z: Tensor, edge_index: Tensor, num_nodes: int) -> Tensor:
    """The paper's structure loss: sqrt-MSE between the dense adjacency and min-max normalised
    inner products ``z z^T``. Memory O(N^2): small graphs only (parity with the paper)."""
    adj = torch.zeros(num_nodes, num_nodes, device=z.device)
    adj[edge_index[0], edge_index[1]] = 1.0
    scores = z @ z.t()
    scores = (scores - scores.min()) / (scores.max() - scores.min()).clamp_min(1e-12)
    return torch.sqrt(F.mse_loss(scores, adj))


def edge_recon_sampled(z: Tensor, edge_index: Tensor, num_nodes: int, num_samples: int = None, generator=None) -> Tensor:
    """Binary cross-entropy of inner products on observed edges against as many random node
    pairs (negative samples). Uses ``num_samples`` random edges (default all); memory O(E)."""
    num_edges = edge_index.size(1)
    if num_edges == 0:
        return z.sum() * 0.0
    if num_samples is not None and num_samples < num_edges:
        pick = torch.randint(num_edges, (num_samples,), device=z.device, generator=generator)
        edge_index = edge_index[:, pick]
    count = edge_index.size(1)
    neg = torch.randint(num_nodes, (2, count), device=z.device, generator=generator)
    pos_score = (z[edge_index[0]] * z[edge_index[1]]).sum(-1)
    neg_score = (z[neg[0]] * z[neg[1]]).sum(-1)
    return F.binary_cross_entropy_with_logits(pos_score, torch.ones_like(pos_score)) + F.binary_cross_entropy_with_logits(
        neg_score, torch.zeros_like(neg_score)
    )


def entropy(probs: Tensor) -> Tensor:
    """Mean entropy (nats) of the rows of a probability matrix."""
    return -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean()


def calibrate_temperature(logits: Tensor, y: Tensor, low: float = 1e-3, high: float = 10.0, steps: int = 241) -> float:
    """Temperature scaling (Guo et al., 2017): the T in a log-spaced grid that minimises the
    negative log-likelihood of ``softmax(logits / T)`` for labels ``y`` (use validation nodes)."""
    if y.numel() == 0:
        raise ValueError("calibrate_temperature: no labelled nodes to calibrate on")
    grid = torch.logspace(torch.log10(torch.tensor(low)), torch.log10(torch.tensor(high)), steps)
    nll = torch.stack([F.cross_entropy(logits / t, y) for t in grid])
    return float(grid[int(torch.argmin(nll))])
