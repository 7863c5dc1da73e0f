"""A graph tokenizer on its own: a codebook learned on a frozen teacher's node representations.

    z (frozen) --standardise--> --map--> u --quantizer--> q --feature decoder--> x_hat   (feature reconstruction)
                                                          q --edge decoder--> s          (structure reconstruction)

The objectives are the joint teacher's tokenizer's (:class:`~vqgraph.models.teacher.VQGraphTeacher`):
the same quantizer (:func:`~vqgraph.models.quantizer.make_quantizer`: cosine codebook, EMA,
commitment loss, straight-through, dead-code restart), the feature reconstruction MSE and the
structure loss sampled in O(E) (:func:`~vqgraph.losses.edge_recon_sampled`), with the teacher's
default weights. What the teacher's GNN encoder is to its tokenizer, the map is here: a learned
linear map of the standardised ``z`` into code space (``projection="linear"``), through which the
commitment and reconstruction losses shape the codes; with ``projection="identity"`` the
standardised ``z`` is quantized as it is (the codebook then only follows its EMA: an online
spherical k-means). :func:`vqgraph.fit_tokenizer` trains it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqgraph.losses import code_logits, edge_recon_sampled
from vqgraph.models.quantizer import CountsRestarts, make_quantizer, quantize_chunks
from vqgraph.models.teacher import TeacherLosses
from vqgraph.utils.settings import check_fields, choice, ranged

PROJECTIONS = ("linear", "identity")
STD_FLOOR = 1e-6  # a constant column of z is centred, not divided by ~0


@dataclass(frozen=True)
class TokenizerConfig:
    """Settings of a post-hoc graph tokenizer (flat, each with its default: the joint teacher's,
    :class:`~vqgraph.models.teacher.TeacherConfig`, where it has the same setting)."""

    codebook_size: int = ranged(2048, ge=1)  # K codes
    code_dim: Optional[int] = ranged(None, ge=1)  # code width (None: z's width)
    projection: str = choice("linear", PROJECTIONS)  # linear: a learned map into code space | identity: z itself
    standardize: bool = True  # centre and scale z per column by the training nodes' statistics (the teacher centres h)
    decay: float = ranged(0.8, ge=0, le=1)  # EMA decay of the codebook (1: the codebook never moves)
    commitment_weight: float = ranged(0.25, ge=0)  # weight of ||u - sg(q)||^2
    kmeans_init: bool = False  # initialise the codebook by k-means on the first batch
    dead_code_threshold: float = ranged(0.5, ge=0)  # restart codes whose EMA usage falls below this (0: off)
    feature_recon_weight: float = ranged(1e-3, ge=0)  # weight of the feature reconstruction MSE
    edge_recon_weight: float = ranged(0.03, ge=0)  # weight of the sampled structure reconstruction loss
    edge_recon_samples: Optional[int] = ranged(100_000, ge=1)  # positive edges per step (None: all)
    quantize_chunk: int = ranged(65_536, ge=1)  # nodes per quantizer call: bounds its N x K similarity memory

    def __post_init__(self):
        check_fields(self)
        if self.projection == "identity" and self.code_dim is not None:
            raise ValueError(f"code_dim={self.code_dim} needs projection='linear': with projection='identity' the codes "
                             "live in z's own width (leave code_dim unset)")
        map_learns = self.projection == "linear" and self.commitment_weight > 0
        if not (map_learns or self.feature_recon_weight or self.edge_recon_weight):
            raise ValueError(f"feature_recon_weight=0 and edge_recon_weight=0 with projection={self.projection!r} and "
                             f"commitment_weight={self.commitment_weight:g}: no loss term has a gradient (the "
                             "optimiser would have nothing to train); set a weight > 0")

    def to_dict(self) -> dict:
        return asdict(self)


class TokenizerOutput(NamedTuple):
    """z [N, code_dim]: the representation in code space (what code assignments are computed
    from); codes [N]: code indices; losses: the joint teacher's three tokenizer losses
    (:class:`~vqgraph.models.teacher.TeacherLosses`), each already multiplied by its weight."""

    z: Tensor
    codes: Tensor
    losses: TeacherLosses


class GraphTokenizer(CountsRestarts, nn.Module):
    """Quantizer and decoders over frozen representations. Call as ``model(z, x, edge_index)``.

    Args:
        in_channels: width of the teacher's representations ``z``.
        num_features: width of the node features the feature decoder reconstructs.
        config: :class:`TokenizerConfig`.

    ``z`` [B, in_channels] and ``x`` [B, num_features] are rows of the same B nodes; ``edge_index``
    [2, E] their edges in those row numbers (both directions), which the structure loss
    reconstructs in training. The standardisation's statistics are buffers, set once by
    :meth:`standardize_by` (the training nodes'): until then ``z`` passes unchanged.
    """

    def __init__(self, in_channels: int, num_features: int, config: TokenizerConfig = TokenizerConfig()):
        super().__init__()
        self.config, self.in_channels, self.num_features = config, in_channels, num_features
        code_dim = config.code_dim or in_channels
        self.register_buffer("shift", torch.zeros(in_channels))
        self.register_buffer("scale", torch.ones(in_channels))
        self.project = nn.Identity()
        if config.projection == "linear":
            self.project = nn.Linear(in_channels, code_dim)
            with torch.no_grad():  # start from z's own geometry: the identity, or an orthogonal map
                if code_dim == in_channels:
                    nn.init.eye_(self.project.weight)
                else:
                    nn.init.orthogonal_(self.project.weight)
                self.project.bias.zero_()
        self.quantizer = make_quantizer(code_dim, config.codebook_size, None, config.decay, config.commitment_weight,
                                        config.kmeans_init, config.dead_code_threshold)
        self.feature_decoder = nn.Linear(code_dim, num_features)
        self.edge_decoder = nn.Linear(code_dim, code_dim)

    @property
    def code_dim(self) -> int:
        return self.config.code_dim or self.in_channels

    @property
    def codebook(self) -> Tensor:
        """The codebook [K, code_dim] (a buffer: EMA-updated, not a parameter)."""
        return self.quantizer.codebook

    @torch.no_grad()
    def standardize_by(self, z: Tensor) -> None:
        """Set the standardisation to the column means and standard deviations of ``z`` (the
        training nodes' representations); nothing with ``config.standardize=False``."""
        if self.config.standardize:
            self.shift.copy_(z.mean(0))
            self.scale.copy_(z.std(0, unbiased=False).clamp_min(STD_FLOOR))

    def encode(self, z: Tensor) -> Tensor:
        """The representations in code space [B, code_dim]: standardised, then mapped."""
        return self.project((z - self.shift) / self.scale)

    def forward(self, z: Tensor, x: Optional[Tensor] = None, edge_index: Optional[Tensor] = None,
                generator: Optional[torch.Generator] = None) -> TokenizerOutput:
        """Codes of the rows ``z`` and, given ``x`` and ``edge_index``, the weighted losses
        (``generator``: the structure loss's random pairs; default torch's global generator).
        In evaluation mode the codebook does not move."""
        u = self.encode(z)
        if self.training:
            q, codes, commitment = quantize_chunks(self.quantizer, u, self.config.quantize_chunk)
        else:  # the nearest codes by code_logits, the commitment in the quantizer's form (it has none in eval)
            codes = self.nearest_codes(u)
            q = self.codebook[codes]
            commitment = self.config.commitment_weight * F.mse_loss(q, F.normalize(u, dim=-1))
        zero = u.new_zeros(())
        feature = edge = zero
        if self.config.feature_recon_weight and x is not None:
            feature = F.mse_loss(self.feature_decoder(q), x)
        if self.config.edge_recon_weight and edge_index is not None:
            s = self.edge_decoder(q)
            edge = edge_recon_sampled(s, edge_index, u.size(0), self.config.edge_recon_samples, generator)
        losses = TeacherLosses(commitment, self.config.feature_recon_weight * feature,
                               self.config.edge_recon_weight * edge)
        return TokenizerOutput(u, codes, losses)

    def nearest_codes(self, z: Tensor) -> Tensor:
        """The nearest code [B] of each row of code-space ``z`` by :meth:`code_logits`, over
        ``quantize_chunk`` rows at a time (the quantizer's own choice, without its EMA bookkeeping)."""
        return torch.cat([self.code_logits(part).argmax(-1) for part in z.split(self.config.quantize_chunk)])

    def code_logits(self, z: Tensor) -> Tensor:
        """Similarity of code-space representations ``z`` (from :meth:`encode`) to every code."""
        return code_logits(z, self.codebook, "cosine")
