"""The VQGraph teacher: a GNN encoder whose node representations pass through a graph tokenizer.

    x --encoder--> h --centre--> z --quantizer--> q --feature decoder--> x_hat   (feature reconstruction)
                                                  q --edge decoder--> s          (structure reconstruction)
    classify_from="continuous" (default):  relu(h) --graph layer--> logits
    classify_from="quantized"  (paper):    relu(s) --graph layer--> logits

The quantizer is ``vector_quantize_pytorch.VectorQuantize`` with a cosine codebook, EMA updates,
commitment loss, the plain straight-through estimator (``rotation_trick=False``), optional
k-means initialisation and dead-code restart (``dead_code_threshold``). With
``use_tokenizer=False`` the same network runs without quantizer and decoders (the plain GNN).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqgraph.losses import code_logits, edge_recon_dense, edge_recon_sampled
from vqgraph.data.sparse import SPARSE_INPUTS, sparse_mse
from vqgraph.models.encoders import CONVS, NORMS, ConvSpec, GNNEncoder, layer_rows, resolve_conv
from vqgraph.models.quantizer import CountsRestarts, make_quantizer, quantize_chunks
from vqgraph.utils.settings import check_fields, choice, ranged

EDGE_RECON = ("sampled", "dense")
TOKENIZE = ("inner", "all")
CLASSIFY_FROM = ("continuous", "quantized")
DENSE_MAX_NODES = 50_000  # the dense structure loss is for small graphs (paper parity) only


@dataclass(frozen=True)
class TeacherConfig:
    """Teacher architecture and tokenizer settings (flat, each with its default)."""

    conv: str = choice("gcn", CONVS)  # encoder kind: gcn | sage | sage_gcn | gat | appnp | gcnii
    hidden_channels: int = ranged(64, ge=1)  # width of every graph layer
    num_layers: int = ranged(1, ge=1)  # graph layers before the quantizer (one more follows it)
    dropout: float = ranged(0.5, ge=0, lt=1)  # dropout before every graph layer after the first
    input_dropout: float = ranged(0.5, ge=0, lt=1)  # dropout on input features (before the first graph layer)
    norm: str = choice("none", NORMS)  # none | batch | layer, after every graph layer
    use_tokenizer: bool = True  # False: the plain GNN (no quantizer, no decoders)
    codebook_size: int = ranged(2048, ge=1)  # K codes
    code_dim: Optional[int] = ranged(None, ge=1)  # code width (None: hidden_channels, no projection)
    decay: float = ranged(0.8, ge=0, le=1)  # EMA decay of the codebook (1: the codebook never moves)
    commitment_weight: float = ranged(0.25, ge=0)  # weight of ||h - sg(q)||^2
    kmeans_init: bool = False  # initialise the codebook by k-means on the first batch
    dead_code_threshold: float = ranged(0.5, ge=0)  # restart codes whose EMA usage falls below this (0: off)
    feature_recon_weight: float = ranged(1e-3, ge=0)  # weight of the feature reconstruction MSE
    edge_recon_weight: float = ranged(0.03, ge=0)  # weight of the structure reconstruction loss
    edge_recon: str = choice("sampled", EDGE_RECON)  # sampled (O(E)) | dense (the paper's N x N form)
    edge_recon_samples: Optional[int] = ranged(100_000, ge=1)  # positive edges per step for "sampled" (None: all)
    quantize_chunk: int = ranged(65_536, ge=1)  # nodes per quantizer call: bounds its N x K similarity memory
    classify_from: str = choice("continuous", CLASSIFY_FROM)  # continuous: classifier reads h; quantized: reads decoded codes (paper)
    tokenize: str = choice("inner", TOKENIZE)  # mini-batch: inner: the seeds and their sampled 1-hop neighbours | all: every sampled node
    sparse_input: str = choice("auto", SPARSE_INPUTS)  # full batch, gcn/gat/appnp/gcnii: features held sparse (auto: at most 10% non-zeros)
    deep_weight_decay: Optional[float] = ranged(None, ge=0)  # weight decay of gcnii's GCN2Conv layers (None: train.weight_decay)

    def __post_init__(self):
        check_fields(self)
        if self.sparse_input == "on" and not self.encoder_spec.sparse_features:
            takers = tuple(kind for kind, spec in CONVS.items() if spec.sparse_features)
            raise ValueError(f"sparse_input='on' needs an encoder that starts with a linear map of the features "
                             f"{takers}; {self.conv!r} aggregates them first (use 'auto' or 'off')")

    @property
    def encoder_spec(self) -> ConvSpec:
        """What the encoder kind ``conv`` is and can do (its adjacency, sparse features, depth)."""
        return resolve_conv(self.conv)

    def to_dict(self) -> dict:
        return asdict(self)


class TeacherLosses(NamedTuple):
    commitment: Tensor
    feature_recon: Tensor
    edge_recon: Tensor


class TeacherOutput(NamedTuple):
    """What one teacher forward pass returns.

    logits [N, C]; z [N, code_dim] the pre-quantization representation in code space (what
    soft code assignments are computed from); codes [N] code indices (-1 without tokenizer);
    losses the unweighted-by-caller tokenizer losses (already multiplied by their weights).
    """

    logits: Tensor
    z: Tensor
    codes: Tensor
    losses: TeacherLosses


class VQGraphTeacher(CountsRestarts, nn.Module):
    """GNN teacher with the structure-aware tokenizer. Call as ``model(x, adj, edge_index)``.

    ``adj`` comes from :meth:`adjacency` (the encoder kind's own); ``edge_index`` are the
    (directed, both directions) edges the structure loss reconstructs; ``num_targets`` restricts
    the output to the first rows (seed nodes of a sampled subgraph); ``num_tokenized`` restricts
    the tokenizer (quantizer, decoders and their losses) to the first rows (a sampled subgraph's
    seeds and 1-hop neighbours: the rows the classifier reads at the seeds; the others' codes are
    -1 and their decoded codes 0); ``skip_tokenizer`` skips the quantizer when the logits do not
    depend on it (``classify_from="continuous"``), e.g. for a validation pass (``codes`` are then -1).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        config: TeacherConfig = TeacherConfig(),
        agree_chunks: Optional[Callable[[int], int]] = None,
    ):
        super().__init__()
        self.config = config
        self.agree_chunks = agree_chunks  # set: the codebook's EMA statistics are summed over ranks
        self.in_channels, self.num_classes = in_channels, num_classes
        hidden = config.hidden_channels
        self.encoder = GNNEncoder(
            config.conv, in_channels, hidden, config.num_layers, config.dropout, config.norm, config.input_dropout
        )
        self.quantizer = None
        if config.use_tokenizer:
            # centre representations before the cosine codebook: GNN outputs of non-negative
            # features share one dominant direction (all cosines near 0.9), which leaves soft
            # code assignments nearly uniform; batch statistics in training, running ones after
            self.center = nn.BatchNorm1d(hidden, affine=False)
            self.quantizer = make_quantizer(
                hidden, config.codebook_size, config.code_dim, config.decay, config.commitment_weight,
                config.kmeans_init, config.dead_code_threshold,
                sync_codebook=agree_chunks is not None,  # EMA statistics summed over ranks (sharded mini-batches)
            )
            self.feature_decoder = nn.Linear(hidden, in_channels)
            self.edge_decoder = nn.Linear(hidden, hidden)
        # the classifier: one more graph layer straight to class scores (its weight is the linear head)
        self.head_conv = self.encoder.spec.build(hidden, num_classes)
        self.dropout = nn.Dropout(config.dropout)

    def param_groups(self, weight_decay: float) -> list:
        """The optimiser's parameter groups: every parameter with ``weight_decay``, except that
        with ``deep_weight_decay`` set, the GCN2Conv layers of a ``gcnii`` encoder take that
        (GCNII regularises its deep layers more strongly than its linear input and output)."""
        deep = self.config.deep_weight_decay
        if deep is None or not self.encoder.spec.deep:
            return [{"params": list(self.parameters()), "weight_decay": weight_decay}]
        inner = {id(p) for conv in self.encoder.convs[1:] for p in conv.parameters()}
        return [{"params": [p for p in self.parameters() if id(p) in inner], "weight_decay": deep},
                {"params": [p for p in self.parameters() if id(p) not in inner], "weight_decay": weight_decay}]

    def adjacency(self, edge_index: Tensor, num_nodes: int):
        """The adjacency this teacher's graph layers take (its encoder kind's), from directed
        edges ``source -> target``: a ``torch.sparse_csr`` matrix, or ``edge_index`` for GAT."""
        return self.encoder.adjacency(edge_index, num_nodes)

    @property
    def codebook(self) -> Tensor:
        """The codebook [K, code_dim] (a buffer: EMA-updated, not a parameter)."""
        if self.quantizer is None:
            raise AttributeError("this teacher has no tokenizer (use_tokenizer=False)")
        return self.quantizer.codebook

    @property
    def code_dim(self) -> int:
        return self.config.code_dim or self.config.hidden_channels

    def forward(
        self,
        x: Tensor,
        adj,
        edge_index: Optional[Tensor] = None,
        num_targets: Optional[int] = None,
        skip_tokenizer: bool = False,
        num_tokenized: Optional[int] = None,
    ) -> TeacherOutput:
        if self.config.edge_recon == "dense" and self.training and x.size(0) > DENSE_MAX_NODES:
            raise ValueError(
                f"edge_recon='dense' builds an N x N matrix ({x.size(0)}^2 floats, "
                f"{4 * x.size(0) ** 2 / 2**30:.1f} GiB); use edge_recon='sampled' above {DENSE_MAX_NODES} nodes"
            )
        h = self.encoder(x, adj)
        zero = h.new_zeros(())
        if self.quantizer is None or (skip_tokenizer and self.config.classify_from == "continuous"):
            no_codes = torch.full((h.size(0),), -1, dtype=torch.long, device=h.device)
            z, codes, losses, s = h, no_codes, TeacherLosses(zero, zero, zero), h
        else:
            n = h.size(0) if num_tokenized is None else num_tokenized
            inner = h[:n]
            centred = self.center(inner)
            z = self.quantizer.project_in(centred)
            q, codes, commitment = self._quantize(centred)
            feature = zero
            if self.config.feature_recon_weight and x.layout == torch.sparse_csr:  # full batch: n is every row
                feature = sparse_mse(x, q, self.feature_decoder.weight, self.feature_decoder.bias)
            elif self.config.feature_recon_weight:
                feature = F.mse_loss(self.feature_decoder(q), x[:n])
            s = self.edge_decoder(q)
            edge = zero
            if self.config.edge_recon_weight and edge_index is not None and self.training:
                if n < h.size(0):  # the pairs among the tokenized rows
                    edge_index = edge_index[:, (edge_index < n).all(0)]
                if self.config.edge_recon == "dense":
                    edge = edge_recon_dense(s, edge_index, n)
                else:
                    edge = edge_recon_sampled(s, edge_index, n, self.config.edge_recon_samples)
            losses = TeacherLosses(
                commitment, self.config.feature_recon_weight * feature, self.config.edge_recon_weight * edge
            )
            if n < h.size(0):  # the rest: no code; the classifier reads zeros there (no seed does)
                rest = h.size(0) - n
                z = torch.cat([z, z.new_zeros(rest, z.size(1))])
                codes = torch.cat([codes, codes.new_full((rest,), -1)])
                if self.config.classify_from == "quantized":
                    s = torch.cat([s, s.new_zeros(rest, s.size(1))])
        if self.config.classify_from == "continuous":
            s = h
        logits = self.head_conv(self.dropout(torch.relu(s)), adj)
        if num_targets is not None:
            logits, z, codes = logits[:num_targets], z[:num_targets], codes[:num_targets]
        return TeacherOutput(logits, z, codes, losses)

    def _quantize(self, h: Tensor):
        """The quantizer over ``quantize_chunk`` rows at a time (one EMA step per chunk). With a
        synced codebook every rank must make as many quantizer calls: ``agree_chunks`` (given by
        the trainer, e.g. the maximum over ranks) turns this rank's count into the common one."""
        synced = self.agree_chunks is not None and self.training
        return quantize_chunks(self.quantizer, h, self.config.quantize_chunk, self.agree_chunks if synced else None)

    # ---- layer-wise inference hooks (driven by vqgraph.models.inference.infer_layerwise) -----
    @property
    def num_graph_layers(self) -> int:
        """Graph layers of the network: the encoder's, then the classifier's."""
        return len(self.encoder.convs) + 1

    @torch.no_grad()
    def inference_per_layer(self, i: int, h: Tensor, adj_rows, rows: range, gather,
                            first_rows: Optional[Tensor] = None) -> Tensor:
        """Evaluation-mode output of graph layer ``i`` at the target ``rows`` from the inputs ``h``
        of all N nodes (every neighbour; PyG's ``BasicGNN.inference_per_layer`` pattern).

        Encoder layers return their normalised output (after the ReLU between layers); the last
        layer (``i == num_graph_layers - 1``) is the classifier and returns logits. ``adj_rows``
        is the adjacency into ``rows`` (:meth:`~vqgraph.models.encoders.ConvSpec.rows`);
        ``gather`` concatenates every rank's row block (identity in one process). ``first_rows``:
        layer 0's output at ``rows``, which the layers of a deep encoder (``gcnii``) also read.
        """
        if i == len(self.encoder.convs):
            return layer_rows(self.head_conv, h, adj_rows, rows, gather)
        out = self.encoder.norms[i](layer_rows(self.encoder.convs[i], h, adj_rows, rows, gather, first_rows))
        return torch.relu(out) if i < len(self.encoder.convs) - 1 else out

    @torch.no_grad()
    def tokenize_rows(self, h: Tensor, skip_tokenizer: bool = False):
        """Per-node part between encoder and classifier, for encoder outputs ``h`` of some rows:
        ``(z, codes, classifier input)`` (``codes`` -1 when the tokenizer is skipped)."""
        if self.quantizer is None or (skip_tokenizer and self.config.classify_from == "continuous"):
            z, codes, s = h, torch.full((h.size(0),), -1, dtype=torch.long, device=h.device), h
        else:
            centred = self.center(h)
            z = self.quantizer.project_in(centred)
            q, codes, _ = self._quantize(centred)
            s = self.edge_decoder(q)
        if self.config.classify_from == "continuous":
            s = h
        return z, codes, torch.relu(s)

    def code_logits(self, z: Tensor) -> Tensor:
        """Similarity of representations ``z`` to every code, by the quantizer's own metric."""
        return code_logits(z, self.codebook, "cosine")
