"""Layer-wise inference of a PyG ``BasicGNN`` over one-hop batches, for a graph too large for one
full forward pass, and the forward hook that captures a submodule's output in either mode.

PyG's ``BasicGNN.inference`` takes a ``NeighborLoader`` (which needs pyg-lib or torch-sparse);
:func:`infer_basic_gnn` runs the same ``inference_per_layer`` over batches built here with the
package's own sampler: every node in turn is a seed, with all of its incoming edges (fan-out -1,
one hop). A layer's output for the seeds is then exact for convolutions that aggregate over a
node's incoming edges alone (:data:`EXACT_CONVS`); a GCN's edge normalisation also reads the
source's degree, which a one-hop batch does not hold, so it is refused.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.nn import EdgeConv, GATConv, GATv2Conv, GINConv, PNAConv, SAGEConv
from torch_geometric.nn.models.basic_gnn import BasicGNN

from vqgraph.data.sampling import NeighborSampler

EXACT_CONVS = (SAGEConv, GINConv, GATConv, GATv2Conv, PNAConv, EdgeConv)
LAYERWISE_MODULES = "convs.<i> (and their submodules), norms.<i>, act, lin"  # what inference_per_layer calls


class Capture:
    """A forward hook on ``module`` keeping each call's output (the first ``rows`` rows when
    ``rows`` is set: the seeds of a layer-wise batch of ``nodes`` nodes) and the ``layer`` it
    ran in. :meth:`result` is the representation [n, D] of one pass, or an error naming ``name``.
    """

    def __init__(self, module: nn.Module, name: str, where: str):
        self.name, self.where = name, where
        self.layer: Optional[int] = None  # set by a layer-wise pass
        self.rows: Optional[int] = None
        self.nodes: Optional[int] = None
        self.calls: List[Tuple[Optional[int], Tensor]] = []
        self.handle = module.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        if not isinstance(output, Tensor) or output.dim() != 2:
            what = f"shape {list(output.shape)}" if isinstance(output, Tensor) else type(output).__name__
            raise ValueError(f"{self.where}: representation {self.name!r} returned {what}, not one row per node "
                             "[nodes, D]: name a submodule whose output is a 2-D tensor (e.g. 'convs.0')")
        if self.rows is not None:
            if output.size(0) not in (self.nodes, self.rows):
                raise ValueError(f"{self.where}: representation {self.name!r} gave {output.size(0)} rows in a "
                                 f"layer-wise batch of {self.rows} seeds and {self.nodes} nodes: not a per-node "
                                 "output a layer-wise pass can capture; name a module of "
                                 f"{LAYERWISE_MODULES}, or leave batch_size unset")
            output = output[: self.rows]  # a view of the batch's rows: copied below, never kept whole
        self.calls.append((self.layer, output.detach().to("cpu", copy=True)))

    def result(self, num_nodes: int) -> Tensor:
        """The captured representation of the pass just run [num_nodes, D] (calls then cleared)."""
        calls, self.calls = self.calls, []
        layers = sorted({layer for layer, _ in calls}, key=lambda layer: -1 if layer is None else layer)
        if not calls:
            where = "a layer-wise pass" if self.layer is not None else "the forward pass"
            extra = f" (inference_per_layer calls {LAYERWISE_MODULES})" if self.layer is not None else ""
            raise ValueError(f"{self.where}: representation {self.name!r} was not called by {where}{extra}: "
                             "name a submodule on the path from the features to the logits")
        if self.layer is None and len(calls) > 1:
            raise ValueError(f"{self.where}: representation {self.name!r} ran {len(calls)} times in one forward "
                             "pass (a module shared by several layers, such as 'act'): name a module called once, "
                             "such as 'convs.0'")
        if len(layers) > 1:
            raise ValueError(f"{self.where}: representation {self.name!r} ran in layers {layers} of the layer-wise "
                             "pass (a module shared by several layers, such as 'act'): name a module of one layer, "
                             "such as 'convs.0'")
        z = torch.cat([out for _, out in calls])
        if z.size(0) != num_nodes:
            raise ValueError(f"{self.where}: representation {self.name!r} gave {z.size(0)} rows for a graph of "
                             f"{num_nodes} nodes: name a submodule whose output has one row per node")
        return z

    def remove(self) -> None:
        self.handle.remove()


def layerwise_problem(model: nn.Module) -> Optional[str]:
    """Why ``model``'s outputs cannot be computed exactly over one-hop batches, or None."""
    if not isinstance(model, BasicGNN):
        return (f"a {type(model).__name__} is not a PyG BasicGNN (torch_geometric.nn.models.GraphSAGE, GIN, GAT, "
                "PNA, EdgeCNN)")
    if model.jk_mode not in (None, "last"):
        return f"its jumping knowledge jk={model.jk_mode!r} needs every layer at once (PyG's inference takes jk=None or 'last')"
    for i, conv in enumerate(model.convs):
        if not isinstance(conv, EXACT_CONVS):
            return (f"convs.{i} is a {type(conv).__name__}; a one-hop batch gives exact outputs only for convolutions "
                    f"that aggregate over a node's incoming edges alone ({', '.join(c.__name__ for c in EXACT_CONVS)}; "
                    "a GCN also normalises each edge by its source's degree, which the batch does not hold)")
    for i, norm in enumerate(model.norms):
        if not per_node_in_eval(norm):
            return (f"norms.{i} is a {type(norm).__name__}, whose evaluation-mode output depends on the other nodes "
                    "of a pass (use batch_norm with running statistics or a per-node layer norm)")
    return None


def per_node_in_eval(norm: nn.Module) -> bool:
    """Whether a normalisation layer treats each node alone in evaluation mode."""
    inner = getattr(norm, "module", norm)  # PyG's BatchNorm wraps torch's
    if isinstance(norm, nn.Identity) or isinstance(inner, nn.LayerNorm):
        return True
    if isinstance(inner, nn.modules.batchnorm._BatchNorm):
        return bool(inner.track_running_stats)
    return getattr(norm, "mode", None) == "node"  # PyG's LayerNorm(mode="node")


def one_hop_batches(graph: Data, batch_size: int) -> List[Tuple[Tensor, Tensor, int]]:
    """``(n_id, edge_index, batch_size)`` of each batch: ``batch_size`` seeds in node order, then
    their in-neighbours (``n_id``: graph rows, seeds first), with every edge into a seed (local ids)."""
    sampler = NeighborSampler(graph.edge_index, graph.num_nodes, [-1])
    seeds = torch.arange(graph.num_nodes).split(batch_size)
    return [(*sampler.sample(batch), batch.numel()) for batch in seeds]


@torch.no_grad()
def infer_basic_gnn(model: BasicGNN, graph: Data, batch_size: int, device: torch.device,
                    capture: Optional[Capture] = None) -> Tensor:
    """``model``'s evaluation-mode outputs of every node of ``graph`` [n, out], one layer at a
    time over :func:`one_hop_batches` (``BasicGNN.inference_per_layer``): the layer inputs of all
    nodes stay on the CPU, one batch at a time goes to ``device``. ``capture`` records its
    module's output for the seeds of each batch."""
    batches = one_hop_batches(graph, batch_size)
    h = graph.x
    for layer in range(model.num_layers):
        parts = []
        for n_id, edge_index, size in batches:
            if capture is not None:
                capture.layer, capture.rows, capture.nodes = layer, size, n_id.numel()
            out = model.inference_per_layer(layer, h[n_id].to(device), edge_index.to(device), size)
            parts.append(out.to("cpu", copy=True))  # the seeds' rows alone (``out`` may view the batch's)
        h = torch.cat(parts)
    return h
