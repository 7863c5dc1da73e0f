"""The vector quantizer as the package uses it, shared by the joint teacher and the post-hoc tokenizer.

``vector_quantize_pytorch.VectorQuantize`` (pinned 1.32) with a cosine codebook, EMA updates,
commitment loss, the plain straight-through estimator (``rotation_trick=False``), optional
k-means initialisation and dead-code restart, whose restarts are counted; and a call over
chunks of rows, which bounds the N x K similarity memory of a large graph.
"""

from __future__ import annotations

import types
from typing import Callable, Optional

import torch
from torch import Tensor
from vector_quantize_pytorch import VectorQuantize


def _counting_replace(book, batch_samples, batch_mask, seq_mask=None):
    """The codebook's dead-code replacement, counting the codes it replaces into
    ``book.vqgraph_restarts``: per codebook head, the dead codes, at most as many as there are
    samples (the library then replaces a random subset and defers the rest)."""
    for ind, mask in enumerate(batch_mask):
        samples = batch_samples[ind] if seq_mask is None else batch_samples[ind][seq_mask[ind]]
        if samples.numel():
            book.vqgraph_restarts += min(int(mask.sum()), samples.shape[0])
    return type(book).replace(book, batch_samples, batch_mask, seq_mask=seq_mask)


def make_quantizer(dim: int, codebook_size: int, code_dim: Optional[int], decay: float, commitment_weight: float,
                   kmeans_init: bool, dead_code_threshold: float, sync_codebook: bool = False) -> VectorQuantize:
    """A cosine, EMA-updated ``VectorQuantize`` of inputs of width ``dim`` (codes of width
    ``code_dim``; None: ``dim``, no projection), its dead-code restarts counted
    (:class:`CountsRestarts`). ``sync_codebook``: the EMA statistics are summed over ranks."""
    quantizer = VectorQuantize(
        dim=dim,
        codebook_size=codebook_size,
        codebook_dim=code_dim,
        decay=decay,
        commitment_weight=commitment_weight,
        use_cosine_sim=True,
        kmeans_init=kmeans_init,
        threshold_ema_dead_code=dead_code_threshold,
        rotation_trick=False,
        sync_codebook=sync_codebook,
    )
    book = quantizer._codebook  # vector-quantize-pytorch 1.32 (pinned): count its restarts
    book.replace = types.MethodType(_counting_replace, book)
    book.vqgraph_restarts = 0
    return quantizer


class CountsRestarts:
    """For a module whose ``quantizer`` comes from :func:`make_quantizer` (or is None): the dead
    codes it restarted, read and reset as ``module.restarts``."""

    @property
    def restarts(self) -> int:
        """Dead codes the quantizer restarted (in training) since this was last set to 0."""
        return self.quantizer._codebook.vqgraph_restarts if self.quantizer is not None else 0

    @restarts.setter
    def restarts(self, value: int) -> None:
        if self.quantizer is not None:
            self.quantizer._codebook.vqgraph_restarts = value


def quantize_chunks(quantizer: VectorQuantize, h: Tensor, chunk: int,
                    agree_chunks: Optional[Callable[[int], int]] = None) -> tuple:
    """``quantizer`` over ``chunk`` rows of ``h`` at a time (one EMA step per chunk): ``(q, codes,
    commitment)``, the commitment the row-weighted mean of the chunks'. With a synced codebook
    every rank must make as many quantizer calls: ``agree_chunks`` (e.g. the maximum over ranks)
    turns this rank's count into the common one, and the rows are split into that many parts."""
    pieces = -(-h.size(0) // chunk)
    if agree_chunks is not None:
        pieces = agree_chunks(pieces)
    if pieces <= 1:
        q, codes, commitment = quantizer(h)
        return q, codes, commitment.sum()
    parts = [quantizer(part) for part in (h.tensor_split(pieces) if agree_chunks is not None else h.split(chunk))]
    q = torch.cat([p[0] for p in parts])
    codes = torch.cat([p[1] for p in parts])
    commitment = sum(p[2].sum() * p[0].size(0) for p in parts) / h.size(0)
    return q, codes, commitment
