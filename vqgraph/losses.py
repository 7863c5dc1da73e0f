"""Similarities and losses shared by the teacher's tokenizer and the distilled student.

:func:`code_logits` is THE similarity between node representations and codebook rows: the
teacher's quantizer picks codes by it and the student is trained against it, so both sides
use one function (the official code compares cosine teacher scores with Euclidean student ones).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

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
    if metric == "cosine":
        return F.normalize(z, dim=-1) @ (F.normalize(codebook, dim=-1) * scale).t()
    if metric == "euclidean":
        return torch.cdist(z, codebook).pow(2).mul(-scale)
    raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")


class _RowLogSumExp(torch.autograd.Function):
    """``logsumexp`` over the last dim that keeps its softmax for the backward pass: one exp
    over the [B, K] scores instead of torch's two (forward, then again in backward)."""

    @staticmethod
    def forward(ctx, scores: Tensor) -> Tensor:
        top = scores.amax(dim=-1, keepdim=True)
        probs = (scores - top).exp_()
        total = probs.sum(dim=-1, keepdim=True)
        ctx.save_for_backward(probs.div_(total))
        return (top + total.log()).squeeze(-1)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (probs,) = ctx.saved_tensors
        return probs * grad.unsqueeze(-1)


def row_logsumexp(scores: Tensor) -> Tensor:
    """``torch.logsumexp(scores, dim=-1)`` of finite scores, with a cheaper backward (the code
    term's [B, K] scores, K up to thousands, make this the student's largest elementwise cost)."""
    return _RowLogSumExp.apply(scores)


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
