"""experiments.speed.latency: the served teacher computes what the full-graph teacher computes."""

from __future__ import annotations

import torch

from experiments.speed import latency
from vqgraph.data import make_csbm
from vqgraph.models.encoders import prepare_adjacency


def test_blockwise_full_neighbourhood_sage_equals_full_graph_sage():
    data = make_csbm(num_nodes=300, num_edges=900, num_features=16, num_classes=4, seed=3)
    torch.manual_seed(0)
    model = latency.SAGE(16, 32, 4, num_layers=3).eval()
    with torch.no_grad():
        full = model(data.x, prepare_adjacency("sage", data.edge_index, data.num_nodes))
        server = latency.NeighbourhoodServer(data, model, fanout=-1, num_layers=3)
        idx = torch.tensor([5, 17, 250, 3])
        served = server(idx)
    assert torch.allclose(served, full[idx], atol=1e-5)
    # block-wise: fewer nodes computed at each deeper layer, the seeds last
    assert server.last["nodes"] > idx.numel() and server.last["edges"] > 0


def test_hop_sizes_shrink_towards_the_seeds():
    assert latency.hop_sizes([10, 40, 200, 900], num_layers=3) == [250, 50, 10]
    assert latency.hop_sizes([10, 40], num_layers=3) == [50, 50, 10]  # the neighbourhood ended early
