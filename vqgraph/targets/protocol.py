"""Which graph each node's teacher outputs come from, for every teacher: observed nodes from the
observed graph (``split.observed_graph(data)``: in the inductive setting the hidden test nodes
and their edges are absent), hidden test nodes from the full graph (:func:`outputs_by_protocol`);
and the built-in teacher's outputs by it (:func:`node_outputs`)."""

from __future__ import annotations

from typing import Callable, List, NamedTuple, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.splits import NodeSplit
from vqgraph.models.inference import infer_layerwise
from vqgraph.models.teacher import VQGraphTeacher


def outputs_by_protocol(data: Data, split: NodeSplit, run: Callable[[Data], Sequence[Optional[Tensor]]],
                        observed: Optional[Data] = None) -> List[Optional[Tensor]]:
    """Per-node outputs of all N nodes by global id, on the CPU.

    ``run(graph)`` returns outputs with one row per node of ``graph`` (None for an output it does
    not give); it is called on the observed graph (``observed``: ``split.observed_graph(data)``,
    built here if not given), whose rows fill the observed nodes, and, when the split hides test
    nodes, on the full graph, whose rows fill the hidden ones.
    """
    graph = split.observed_graph(data) if observed is None else observed
    parts = run(graph)
    n = data.num_nodes
    out = [None if p is None else torch.empty((n,) + tuple(p.shape[1:]), dtype=p.dtype) for p in parts]
    for whole, part in zip(out, parts):
        if part is not None:
            whole[graph.n_id] = part.cpu()
    hidden = split.test_ind_idx
    if hidden.numel():
        for whole, part in zip(out, run(data)):
            if part is not None:
                whole[hidden] = part[hidden].cpu()
    return out


class NodeOutputs(NamedTuple):
    """A teacher's outputs for every node by global id: logits [N, C], z [N, D], codes [N]."""

    logits: Tensor
    z: Tensor
    codes: Tensor


@torch.no_grad()
def node_outputs(model: VQGraphTeacher, data: Data, split: NodeSplit, observed: Optional[Data] = None) -> NodeOutputs:
    """The built-in teacher's outputs for every node by global id (:func:`outputs_by_protocol`;
    ``observed``: ``split.observed_graph(data)`` if already built). Layer-wise, sharded over ranks
    (:func:`vqgraph.models.inference.infer_layerwise`); every rank returns all N rows."""
    device = next(model.parameters()).device
    model.eval()

    def run(graph: Data):
        adj = model.adjacency(graph.edge_index, graph.num_nodes).to(device)
        logits, z, codes, _ = infer_layerwise(model, graph.x.to(device), adj)
        return logits, z, codes

    return NodeOutputs(*outputs_by_protocol(data, split, run, observed))
