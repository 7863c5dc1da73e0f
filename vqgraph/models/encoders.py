"""GNN encoders built from PyG layers, with one resolver from names to layer classes.

Each encoder kind is a :class:`ConvSpec`: how to build one layer, how its adjacency is
prepared (:meth:`ConvSpec.prepare`) and what it can do (its flags). Full-batch runs pass a
``torch.sparse_csr`` adjacency, so message passing is a sparse matrix product whose memory is
O(E + N * width) and never materialises one message per edge; GAT needs per-edge attention and
takes ``edge_index``.

``gcnii`` (GCNII, Chen et al. 2020) is a deep encoder: a linear map of the features, then
``num_layers`` ``GCN2Conv`` layers, each mixing the propagated representation with that first
one (initial residual, weight ``alpha``) and its own weight with the identity (``theta / l``);
its classifier is linear.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor, nn
from torch_geometric.nn import APPNP, GATConv, GCN2Conv, GCNConv, SAGEConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import add_self_loops, remove_self_loops, to_torch_csr_tensor

from vqgraph.data.sparse import csr_rows, sparse_dropout
from vqgraph.models.norms import NORMS

Adjacency = Tensor  # torch.sparse_csr adj_t [N, N], or edge_index [2, E] for GAT


class APPNPLayer(nn.Module):
    """A linear map followed by APPNP's personalised-PageRank propagation (K steps, teleport alpha)."""

    def __init__(self, in_channels: int, out_channels: int, K: int = 10, alpha: float = 0.1):
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels)
        self.prop = APPNP(K=K, alpha=alpha, normalize=False)

    def reset_parameters(self):
        self.lin.reset_parameters()

    def forward(self, x: Tensor, adj: Adjacency) -> Tensor:
        return self.prop(self.lin(x), adj)


class NodeLinear(nn.Module):
    """A per-node linear map called as a graph layer (``layer(x, adj)``, ``adj`` unused): GCNII's
    input and output layers."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.lin = nn.Linear(in_channels, out_channels)

    def reset_parameters(self):
        self.lin.reset_parameters()

    def forward(self, x: Tensor, adj: Optional[Adjacency] = None) -> Tensor:
        return self.lin(x)


GCNII_ALPHA, GCNII_THETA = 0.1, 0.5  # initial-residual weight and identity-mapping strength (the paper's Cora values)


def _gcnii_layers(hidden_channels: int, num_layers: int) -> List[nn.Module]:
    return [GCN2Conv(hidden_channels, GCNII_ALPHA, GCNII_THETA, layer=layer, shared_weights=True, normalize=False)
            for layer in range(1, num_layers + 1)]


@dataclass(frozen=True)
class ConvSpec:
    """How to build one layer of an encoder kind, what adjacency it takes and what it can do.

    Attributes:
        build: ``build(in_channels, out_channels) -> nn.Module`` called as ``layer(x, adj)``.
        adjacency: ``"gcn_norm"`` (symmetric normalisation with self-loops, as values of a sparse
            matrix), ``"plain"`` (unweighted sparse matrix), ``"self_loops"`` (unweighted, with
            self-loops), or ``"edge_index"``.
        sparse_features: the first layer starts with a linear map of the features, so it takes
            them sparse as they are (others aggregate the raw features first).
        deep: the layers after the first also read the first layer's output (GCNII's initial
            residual): built by :class:`GNNEncoder` with their depth, trained full-batch only.
    """

    build: Callable[[int, int], nn.Module]
    adjacency: str
    sparse_features: bool = False
    deep: bool = False

    def prepare(self, edge_index: Tensor, num_nodes: int) -> Adjacency:
        """The adjacency this kind of layer takes, from directed edges ``source -> target``."""
        if self.adjacency == "edge_index":
            return edge_index
        weight = None
        if self.adjacency == "gcn_norm":
            edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=True)
        elif self.adjacency == "self_loops":
            edge_index, _ = add_self_loops(remove_self_loops(edge_index)[0], num_nodes=num_nodes)
        # adj_t[target, source]: PyG's transposed-adjacency convention
        with warnings.catch_warnings():  # torch's one-time "sparse CSR is beta" notices
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            return to_torch_csr_tensor(edge_index.flip(0), weight, size=(num_nodes, num_nodes))

    def rows(self, adj: Adjacency, rows: range) -> Adjacency:
        """The part of a full-graph adjacency (from :meth:`prepare`) whose targets are ``rows``:
        a ``[len(rows), N]`` sparse matrix, or for GAT the edges into ``rows`` with target ids
        made local. Sources keep their global ids; GCN weights keep the full graph's degrees."""
        if self.adjacency == "edge_index":
            keep = (adj[1] >= rows.start) & (adj[1] < rows.stop)
            return torch.stack([adj[0, keep], adj[1, keep] - rows.start])
        crow = adj.crow_indices()
        start, stop = int(crow[rows.start]), int(crow[rows.stop])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*[Ss]parse.*")
            return torch.sparse_csr_tensor(
                crow[rows.start : rows.stop + 1] - start,
                adj.col_indices()[start:stop],
                adj.values()[start:stop],
                size=(len(rows), adj.size(1)),
            )


def _gat(in_channels: int, out_channels: int, heads: int = 4) -> nn.Module:
    if out_channels % heads:
        heads = 1
    return GATConv(in_channels, out_channels // heads, heads=heads)


CONVS: Dict[str, ConvSpec] = {
    "gcn": ConvSpec(lambda i, o: GCNConv(i, o, normalize=False), "gcn_norm", sparse_features=True),
    "sage": ConvSpec(lambda i, o: SAGEConv(i, o, aggr="mean"), "plain"),
    # GraphSAGE with the "gcn" aggregator (DGL's aggregator_type="gcn", GLNN's teacher): one
    # weight on the mean over the node and its neighbours
    "sage_gcn": ConvSpec(lambda i, o: SAGEConv(i, o, aggr="mean", root_weight=False), "self_loops"),
    "gat": ConvSpec(_gat, "edge_index", sparse_features=True),
    "appnp": ConvSpec(APPNPLayer, "gcn_norm", sparse_features=True),
    # GCNII: ``build`` makes its linear input and output layers; the GCN2Conv stack between them
    # is added by GNNEncoder (each layer needs its depth and the first layer's output)
    "gcnii": ConvSpec(NodeLinear, "gcn_norm", sparse_features=True, deep=True),
}

def _resolve(table: dict, name: str, what: str):
    try:
        return table[name.lower()]
    except KeyError:
        raise ValueError(f"could not resolve {what} {name!r} among choices {sorted(table)}") from None


def resolve_conv(name: str) -> ConvSpec:
    return _resolve(CONVS, name, "encoder")


def prepare_adjacency(kind: str, edge_index: Tensor, num_nodes: int) -> Adjacency:
    """The adjacency an encoder of ``kind`` takes, from directed edges ``source -> target``
    (:meth:`ConvSpec.prepare`; a model's own is ``VQGraphTeacher.adjacency``)."""
    return resolve_conv(kind).prepare(edge_index, num_nodes)


class GNNEncoder(nn.Module):
    """``num_layers`` graph layers of width ``hidden_channels``: dropout, layer, norm (and ReLU
    between layers). For ``gcnii``: a linear input layer, then ``num_layers`` GCN2Conv layers.

    The first layer's dropout is ``input_dropout`` (on the features). The output is the last
    layer's pre-activation, not dropped out: the quantizer that follows sees clean vectors
    spread over the whole sphere (after a ReLU, every cosine similarity would be positive).

    Shapes: ``x`` [N, in_channels], ``adj`` from :func:`prepare_adjacency` -> [N, hidden_channels].
    """

    def __init__(
        self,
        conv: str,
        in_channels: int,
        hidden_channels: int,
        num_layers: int = 1,
        dropout: float = 0.5,
        norm: str = "none",
        input_dropout: float = 0.0,
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        spec = resolve_conv(conv)
        self.kind, self.spec = conv.lower(), spec
        make_norm = _resolve(NORMS, norm, "norm")
        if spec.deep:
            layers = [spec.build(in_channels, hidden_channels), *_gcnii_layers(hidden_channels, num_layers)]
        else:
            dims = [in_channels] + [hidden_channels] * num_layers
            layers = [spec.build(a, b) for a, b in zip(dims[:-1], dims[1:])]
        self.convs = nn.ModuleList(layers)
        self.norms = nn.ModuleList(make_norm(hidden_channels) for _ in layers)
        self.dropout = nn.Dropout(dropout)
        self.input_dropout = nn.Dropout(input_dropout)

    def adjacency(self, edge_index: Tensor, num_nodes: int) -> Adjacency:
        """The adjacency this encoder takes, from directed edges ``source -> target``."""
        return self.spec.prepare(edge_index, num_nodes)

    def reset_parameters(self):
        for module in list(self.convs) + list(self.norms):
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()

    def forward(self, x: Tensor, adj: Adjacency) -> Tensor:
        last, first = len(self.convs) - 1, None
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms)):
            if i == 0 and x.layout == torch.sparse_csr:  # sparse features (kinds with spec.sparse_features)
                x = sparse_dropout(x, self.input_dropout.p, self.training)
            else:
                x = self.input_dropout(x) if i == 0 else self.dropout(x)
            x = norm(conv(x, first, adj) if isinstance(conv, GCN2Conv) else conv(x, adj))
            if i < last:
                x = torch.relu(x)
            if i == 0:
                first = x
        return x


# ---- layer-wise inference over a block of target rows -----------------------------------------
def layer_rows(layer: nn.Module, h: Tensor, adj_rows: Adjacency, rows: range, gather,
               first_rows: Optional[Tensor] = None) -> Tensor:
    """One graph layer's output at the target ``rows`` only, from the inputs ``h`` of all N nodes.

    ``gather(block)`` concatenates every rank's row block (identity in a world of size 1): APPNP
    propagates K times and needs the whole vector between steps. ``first_rows``: the encoder's
    first-layer output at ``rows`` (GCNII's initial residual).
    """
    h_rows = csr_rows(h, rows.start, rows.stop) if h.layout == torch.sparse_csr else h[rows.start : rows.stop]
    if isinstance(layer, NodeLinear):
        return layer(h_rows)
    if isinstance(layer, GCN2Conv):
        if first_rows is None:
            raise ValueError("a GCN2Conv layer needs the first layer's output at the rows (first_rows)")
        return layer(h, first_rows, adj_rows)
    if isinstance(layer, SAGEConv):
        return layer((h, h_rows), adj_rows)
    if isinstance(layer, GATConv):
        if rows.start == 0:
            return layer((h, h_rows), adj_rows)
        # GATConv adds a self-loop (i, i) for i < len(rows): put the target rows first among the sources
        src = (adj_rows[0] - rows.start) % h.size(0)
        return layer((torch.roll(h, -rows.start, 0), h_rows), torch.stack([src, adj_rows[1]]))
    if isinstance(layer, APPNPLayer):
        from torch_geometric.utils import spmm

        start = layer.lin(h_rows)  # APPNP: x_{k+1} = (1 - alpha) A x_k + alpha x_0
        x_rows, alpha = start, layer.prop.alpha
        for _ in range(layer.prop.K):
            x_rows = spmm(adj_rows, gather(x_rows), reduce="sum")
            x_rows = x_rows * (1 - alpha)
            x_rows = x_rows + alpha * start
        return x_rows
    return layer(h, adj_rows)
