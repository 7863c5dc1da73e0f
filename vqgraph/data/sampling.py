"""Neighbour sampling for mini-batch GNN training.

PyG's ``NeighborLoader`` needs ``pyg-lib`` or ``torch-sparse``. :class:`NeighborBatcher` uses it
when one of them is installed and otherwise :class:`NeighborSampler`, a vectorised pure-torch
sampler. Both yield ``Data`` batches in PyG's layout: ``n_id`` (global ids, seed nodes first),
``edge_index`` (local ids, neighbour -> target), ``batch_size``, and the sliced ``x`` and ``y``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data


def pyg_sampler_available() -> bool:
    import torch_geometric.typing as pyg_typing

    return bool(getattr(pyg_typing, "WITH_PYG_LIB", False) or getattr(pyg_typing, "WITH_TORCH_SPARSE", False))


class NeighborSampler:
    """Uniform neighbour sampling without replacement, ``fanouts[i]`` neighbours at hop ``i``.

    Args:
        edge_index: directed edges ``source -> target`` [2, E] (both directions for undirected graphs).
        num_nodes: N.
        fanouts: neighbours per node per hop; ``-1`` takes every neighbour.
    """

    def __init__(self, edge_index: Tensor, num_nodes: int, fanouts: Sequence[int]):
        target, source = edge_index[1], edge_index[0]
        order = torch.argsort(target, stable=True)
        self.col = source[order]  # neighbours of each target, grouped by target
        self.rowptr = torch.zeros(num_nodes + 1, dtype=torch.long)
        self.rowptr[1:] = torch.cumsum(torch.bincount(target, minlength=num_nodes), 0)
        self.num_nodes = num_nodes
        self.fanouts = [int(f) for f in fanouts]
        self._local = torch.full((num_nodes,), -1, dtype=torch.long)  # global -> local, reset per batch

    def _sample_hop(self, frontier: Tensor, fanout: int, generator) -> tuple:
        start = self.rowptr[frontier]
        deg = self.rowptr[frontier + 1] - start
        seg = torch.repeat_interleave(torch.arange(frontier.numel()), deg)
        seg_start = torch.repeat_interleave(torch.cumsum(deg, 0) - deg, deg)
        offset = torch.arange(seg.numel()) - seg_start
        if fanout >= 0:
            # random order within each segment: sort by (segment, uniform key), keep the first `fanout`
            key = seg.double() + torch.rand(seg.numel(), generator=generator, dtype=torch.float64)
            perm = torch.argsort(key)
            seg, offset = seg[perm], offset[perm]
            keep = (torch.arange(seg.numel()) - seg_start) < fanout
            seg, offset = seg[keep], offset[keep]
        neighbours = self.col[start[seg] + offset]
        return neighbours, seg

    def sample(self, seeds: Tensor, generator: Optional[torch.Generator] = None, return_counts: bool = False) -> tuple:
        """Sample the computation subgraph of ``seeds``; returns ``(n_id, edge_index)`` (local ids).

        ``n_id`` lists the seeds, then the nodes first reached at hop 1, 2, ...; with
        ``return_counts`` a third item gives those group sizes (PyG's ``num_sampled_nodes``), so a
        model can compute block-wise (layer l only for the nodes within ``L - 1 - l`` hops).
        """
        local = self._local
        n_id: List[Tensor] = [seeds]
        local[seeds] = torch.arange(seeds.numel())
        count = seeds.numel()
        frontier = seeds
        rows, cols = [], []
        for fanout in self.fanouts:
            if frontier.numel() == 0:
                break
            neighbours, seg = self._sample_hop(frontier, fanout, generator)
            new = torch.unique(neighbours[local[neighbours] < 0])
            local[new] = torch.arange(count, count + new.numel())
            count += new.numel()
            n_id.append(new)
            rows.append(local[neighbours])  # source (neighbour)
            cols.append(local[frontier[seg]])  # target
            frontier = new
        counts = [part.numel() for part in n_id]
        n_id = torch.cat(n_id)
        local[n_id] = -1
        edge_index = torch.stack([torch.cat(rows), torch.cat(cols)]) if rows else torch.empty(2, 0, dtype=torch.long)
        return (n_id, edge_index, counts) if return_counts else (n_id, edge_index)


class NeighborBatcher:
    """Mini-batches of seed nodes with their sampled neighbourhoods.

    Uses PyG's ``NeighborLoader`` when ``pyg-lib`` or ``torch-sparse`` is installed (or
    ``use_pyg=True``), else :class:`NeighborSampler`. Call it with the seed nodes of an epoch.
    """

    def __init__(self, data: Data, fanouts: Sequence[int], batch_size: int, use_pyg: Optional[bool] = None):
        self.data, self.fanouts, self.batch_size = data, [int(f) for f in fanouts], int(batch_size)
        self.use_pyg = pyg_sampler_available() if use_pyg is None else use_pyg
        self.sampler = None if self.use_pyg else NeighborSampler(data.edge_index, data.num_nodes, self.fanouts)
        self._loader = None

    def __call__(self, input_nodes: Tensor, shuffle: bool = True, generator: Optional[torch.Generator] = None):
        order = input_nodes[torch.randperm(input_nodes.numel(), generator=generator)] if shuffle else input_nodes
        for batch in order.split(self.batch_size):
            yield self.sample(batch, generator)

    def sample(self, seeds: Tensor, generator: Optional[torch.Generator] = None) -> Data:
        """The sampled computation subgraph of ``seeds`` (seed nodes first)."""
        data = self.data
        if self.use_pyg:  # PyG's sampler (pyg-lib / torch-sparse) on these seeds, its own RNG
            if self._loader is None:
                from torch_geometric.loader import NeighborLoader

                self._loader = NeighborLoader(data, num_neighbors=self.fanouts, batch_size=self.batch_size)
            out = self._loader.collate_fn(seeds)  # input_nodes=None: index i is node i
            return out if isinstance(out, Data) else self._loader.filter_fn(out)
        n_id, edge_index, counts = self.sampler.sample(seeds, generator, return_counts=True)
        return Data(x=data.x[n_id], y=data.y[n_id], edge_index=edge_index, n_id=n_id, batch_size=seeds.numel(),
                    num_sampled_nodes=counts)
