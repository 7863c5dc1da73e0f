"""The graph-free student: an MLP on node features with a projection into the teacher's code space."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional

import torch
from torch import Tensor, nn

from vqgraph.data.sparse import SPARSE_INPUTS, sparse_linear
from vqgraph.models.encoders import NORMS
from vqgraph.utils.settings import check_fields, choice, ranged


@dataclass(frozen=True)
class StudentConfig:
    """MLP student architecture (flat, each with its default)."""

    hidden_channels: int = ranged(128, ge=1)  # width of every hidden layer
    num_layers: int = ranged(2, ge=1)  # linear layers, the classifier included (1: a linear model; only without code projection)
    dropout: float = ranged(0.6, ge=0, lt=1)  # dropout before every linear layer after the first
    input_dropout: float = ranged(0.0, ge=0, lt=1)  # dropout on input features
    norm: str = choice("none", NORMS)  # none | batch | layer, after every hidden layer
    sparse_input: str = choice("auto", SPARSE_INPUTS)  # features held sparse in training (auto: at most 10% non-zeros); same model either way

    def __post_init__(self):
        check_fields(self)

    def to_dict(self) -> dict:
        return asdict(self)


class StudentOutput(NamedTuple):
    """logits [B, C]; z [B, code_dim] the hidden representation projected into code space
    (None when the student has no projection)."""

    logits: Tensor
    z: Optional[Tensor]


class MLPStudent(nn.Module):
    """MLP on node features; needs no graph. ``model(x) -> StudentOutput(logits, z)``.

    Args:
        in_channels: feature width F. num_classes: C.
        code_dim: width of the teacher's codes; ``None`` builds no projection (``mlp``/``glnn``).
            A projection needs a hidden layer (``num_layers >= 2``); without one, ``num_layers=1``
            is a linear model (multinomial logistic regression).
    """

    def __init__(self, in_channels: int, num_classes: int, config: StudentConfig = StudentConfig(), code_dim=None):
        super().__init__()
        if code_dim and config.num_layers < 2:
            raise ValueError(f"a student that projects into code space needs num_layers >= 2 (a hidden layer), got "
                             f"{config.num_layers}")
        self.config = config
        self.in_channels, self.num_classes = in_channels, num_classes
        dims = [in_channels] + [config.hidden_channels] * (config.num_layers - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = nn.ModuleList(NORMS[config.norm](config.hidden_channels) for _ in self.layers)
        self.classifier = nn.Linear(dims[-1], num_classes)
        self.projection = nn.Linear(config.hidden_channels, code_dim) if code_dim else None
        self.dropout = nn.Dropout(config.dropout)
        self.input_dropout = nn.Dropout(config.input_dropout)

    @property
    def code_dim(self) -> Optional[int]:
        """The width of ``z`` (the teacher's code space), or None without a projection."""
        return self.projection.out_features if self.projection is not None else None

    def forward(self, x: Tensor) -> StudentOutput:
        """``x``: dense features [B, F], or a ``torch.sparse_csr`` tensor of them (the first layer
        is then one sparse-dense product; the same function of the features)."""
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"student expects features of shape [batch, {self.in_channels}], got {tuple(x.shape)}")
        for i, (layer, norm) in enumerate(zip(self.layers, self.norms)):
            if i == 0 and x.layout == torch.sparse_csr:
                x = sparse_linear(x, layer.weight, layer.bias, self.input_dropout.p, self.training)
            else:
                x = layer(self.input_dropout(x) if i == 0 else self.dropout(x))
            x = torch.relu(norm(x))
        z = self.projection(x) if self.projection is not None else None
        if not self.layers:  # a linear model: the classifier reads the features
            if x.layout == torch.sparse_csr:
                return StudentOutput(sparse_linear(x, self.classifier.weight, self.classifier.bias,
                                                   self.input_dropout.p, self.training), z)
            return StudentOutput(self.classifier(self.input_dropout(x)), z)
        return StudentOutput(self.classifier(self.dropout(x)), z)
