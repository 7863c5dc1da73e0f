"""Layer-wise inference of a teacher over row blocks, sharded over ranks (one code path for a
single process and for ``torchrun`` jobs: the collectives of :mod:`vqgraph.distributed`)."""

from __future__ import annotations

import functools

import torch
from torch import Tensor

from vqgraph import distributed
from vqgraph.models.teacher import TeacherLosses, TeacherOutput, VQGraphTeacher


@torch.no_grad()
def infer_layerwise(model: VQGraphTeacher, x: Tensor, adj, skip_tokenizer: bool = False,
                    all_rows: bool = True) -> TeacherOutput:
    """A teacher's evaluation-mode outputs for all N nodes, one layer at a time, sharded over ranks.

    Each rank computes its contiguous block of rows of every graph layer
    (:meth:`~vqgraph.models.VQGraphTeacher.inference_per_layer`) from the previous layer's outputs
    of all nodes (every neighbour, no sampling); the blocks are then gathered. The per-node part
    (quantizer, decoders: :meth:`~vqgraph.models.VQGraphTeacher.tokenize_rows`) runs on the
    rank's rows only. ``adj`` is the whole graph's adjacency
    (:meth:`~vqgraph.models.VQGraphTeacher.adjacency`). In a world of size 1 this is the
    full-graph forward pass. Returns a ``TeacherOutput`` of all N rows on every rank, or with
    ``all_rows=False`` of this rank's block only (``row_ranges(N, world_size)[rank]``).
    """
    if model.training:
        raise RuntimeError("infer_layerwise runs in evaluation mode: call model.eval() first")
    me = distributed.world()
    blocks = distributed.row_ranges(x.size(0), me.world_size)
    rows, sizes = blocks[me.rank], [len(b) for b in blocks]
    gather = functools.partial(distributed.all_gather_rows, sizes=sizes)
    adj_rows = adj if len(rows) == x.size(0) else model.encoder.spec.rows(adj, rows)
    h, last, first = x, model.num_graph_layers - 1, None
    for i in range(last):
        out = model.inference_per_layer(i, h, adj_rows, rows, gather, first)
        first = out if i == 0 else first  # layer 0's rows: the initial residual of a deep encoder's layers
        h = gather(out) if i < last - 1 else None
    z, codes, head_input = model.tokenize_rows(out, skip_tokenizer)
    logits = model.inference_per_layer(last, gather(head_input), adj_rows, rows, gather)
    if all_rows:
        logits, z, codes = gather(logits), gather(z), gather(codes)
    zero = logits.new_zeros(())
    return TeacherOutput(logits, z, codes, TeacherLosses(zero, zero, zero))
