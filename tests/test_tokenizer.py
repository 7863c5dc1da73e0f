"""The teacher's graph tokenizer (VectorQuantize, cosine codebook, EMA), its config, encoders and
structure losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import APPNP, GATConv, GCNConv, SAGEConv

import vqgraph.models.teacher as teacher_module
from vqgraph.data import make_csbm
from vqgraph.losses import code_logits, edge_recon_dense, edge_recon_sampled
from vqgraph.models import TeacherConfig, VQGraphTeacher, prepare_adjacency
from vqgraph.models.encoders import CONVS, APPNPLayer

NUM_FEATURES, NUM_CLASSES = 16, 3


@pytest.fixture(scope="module")
def graph():
    return make_csbm(num_nodes=300, num_classes=NUM_CLASSES, avg_degree=8, num_features=NUM_FEATURES, seed=0)


def make_teacher(graph, seed=0, **overrides):
    """A small teacher without dropout (deterministic forwards) and its adjacency."""
    kwargs = dict(hidden_channels=16, codebook_size=64, dropout=0.0, input_dropout=0.0)
    kwargs.update(overrides)
    config = TeacherConfig(**kwargs)
    torch.manual_seed(seed)
    model = VQGraphTeacher(graph.num_features, graph.num_classes, config)
    adj = prepare_adjacency(config.conv, graph.edge_index, graph.num_nodes)
    return model, adj


def encode(model, graph, adj):
    """What the teacher feeds its quantizer (captured in an eval-mode forward, so that the test
    does not depend on what sits between the encoder and the quantizer)."""
    captured = []
    handle = model.quantizer.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach()))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(graph.x, adj)
    finally:
        handle.remove()
        model.train(was_training)
    assert len(captured) == 1
    return captured[0]


# ---- codes are codebook rows, chosen by code_logits ---------------------------------------------
def test_eval_quantized_vectors_are_normalised_codebook_rows(graph):
    model, adj = make_teacher(graph)
    model.eval()
    h = encode(model, graph, adj)
    with torch.no_grad():
        q, idx, loss = model.quantizer(h)
    assert q.shape == h.shape and idx.shape == (graph.num_nodes,)
    assert idx.dtype == torch.long
    expected = F.normalize(model.codebook[idx], dim=-1)
    assert torch.allclose(q, expected, atol=1e-5, rtol=0)
    # the rows are not all the same code (else the comparison above says little)
    assert torch.unique(idx).numel() > 1
    assert float(loss) == 0.0  # no commitment loss outside training


@pytest.mark.parametrize("code_dim", [None, 8])
def test_code_choice_is_argmax_of_code_logits(graph, code_dim):
    model, adj = make_teacher(graph, code_dim=code_dim)
    model.eval()
    h = encode(model, graph, adj)
    with torch.no_grad():
        _, idx, _ = model.quantizer(h)
        z = model.quantizer.project_in(h)
        logits = code_logits(z, model.codebook, "cosine")
    assert z.size(1) == model.code_dim == (code_dim or 16)
    assert logits.shape == (graph.num_nodes, 64)
    assert torch.equal(logits.argmax(-1), idx)
    # the teacher's own helper and its forward agree with the same function
    with torch.no_grad():
        out = model(graph.x, adj)
    assert torch.equal(out.codes, idx)
    assert torch.allclose(out.z, z)
    assert torch.equal(model.code_logits(out.z).argmax(-1), idx)


def test_code_logits_metrics():
    z = torch.tensor([[3.0, 0.0], [0.0, -2.0]])
    codebook = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    cos = code_logits(z, codebook, "cosine")
    s = 1 / math.sqrt(2)
    assert torch.allclose(cos, torch.tensor([[1.0, 0.0, s], [0.0, -1.0, -s]]))
    euc = code_logits(z, codebook, "euclidean")
    assert torch.allclose(euc, -torch.tensor([[4.0, 13.0, 5.0], [5.0, 16.0, 10.0]]))
    with pytest.raises(ValueError, match="metric"):
        code_logits(z, codebook, "dot")
    with pytest.raises(ValueError, match="width"):
        code_logits(z, torch.ones(3, 5))


# ---- EMA and dead-code restart ------------------------------------------------------------------
def test_ema_moves_used_codes_only(graph):
    model, adj = make_teacher(graph, decay=0.8)
    h = encode(model, graph, adj)
    before = model.codebook.clone()
    model.train()
    with torch.no_grad():
        _, idx, _ = model.quantizer(h)
    after = model.codebook
    used = torch.zeros(64, dtype=torch.bool)
    used[idx] = True
    assert 0 < int(used.sum()) < 64, "need both used and unused codes for this test"
    change = (after - before).abs().amax(-1)
    assert bool((change[used] > 1e-4).all()), "every selected code moves towards its inputs"
    # unused codes keep their direction: the EMA re-normalises every row, which may flip the last
    # bit of a float32 (1 ulp ~ 6e-8), so "unchanged" is checked to 1e-6, far below the moves above
    assert float(change[~used].max()) <= 1e-6


def _run_training_forwards(model, h, steps):
    model.train()
    ever = torch.zeros(model.config.codebook_size, dtype=torch.bool)
    for _ in range(steps):
        with torch.no_grad():
            _, idx, _ = model.quantizer(h)
        ever[idx] = True
    return ever


@pytest.mark.parametrize("threshold", [0.0, 0.5])
def test_dead_codes_restart_only_with_threshold(graph, threshold):
    # cluster sizes start at 1 and decay by 0.8 per unused step: after 4 steps 0.41 < 0.5
    model, adj = make_teacher(graph, decay=0.8, dead_code_threshold=threshold)
    h = encode(model, graph, adj)
    inputs = F.normalize(model.quantizer.project_in(h).detach(), dim=-1)
    before = model.codebook.clone()
    ever = _run_training_forwards(model, h, steps=4)
    never = ~ever
    assert int(never.sum()) >= 5, "need unused codes for this test"
    after = model.codebook
    change = (after[never] - before[never]).abs().amax(-1)
    closest_before = (F.normalize(before[never], dim=-1) @ inputs.t()).amax(-1)
    closest_after = (F.normalize(after[never], dim=-1) @ inputs.t()).amax(-1)
    assert float(closest_before.max()) < 0.99, "unused codes start away from every input"
    if threshold > 0:
        assert bool((change > 1e-2).all()), "every dead code is replaced"
        assert bool((closest_after > 1 - 1e-5).all()), "replacements are input vectors"
    else:
        assert float(change.max()) <= 1e-6
        assert torch.allclose(closest_after, closest_before, atol=1e-5)


@pytest.mark.parametrize("threshold", [0.0, 0.5, 1.0, 3.0])
def test_restarted_codes_are_counted(graph, threshold):
    # each call's count against the library's rule, recomputed here: after the EMA step
    # (usage <- decay * usage + (1 - decay) * this call's counts) every code under the threshold
    # restarts, at most as many as there are inputs
    model, adj = make_teacher(graph, decay=0.8, dead_code_threshold=threshold)
    h = encode(model, graph, adj)
    model.train()
    book, total = model.quantizer._codebook, 0
    for _ in range(6):
        before = book.cluster_size.clone().view(-1)
        with torch.no_grad():
            _, idx, _ = model._quantize(h)
        counts = torch.bincount(idx.view(-1), minlength=model.config.codebook_size).float()
        expired = int(((0.8 * before + 0.2 * counts) < threshold).sum()) if threshold > 0 else 0
        total += min(expired, h.size(0))
        assert model.restarts == total
    assert (total > 0) == (threshold > 0)
    model.eval()  # no restart outside training, none counted
    with torch.no_grad():
        model._quantize(h)
    assert model.restarts == total


# ---- commitment loss and straight-through gradients ---------------------------------------------
def test_commitment_loss_and_straight_through_gradient(graph):
    # the classifier reads the quantized vectors, so the logits reach the encoder only through the
    # quantizer's straight-through estimator
    model, adj = make_teacher(graph, commitment_weight=0.25, classify_from="quantized")
    encoder_params = list(model.encoder.parameters())
    assert encoder_params

    model.train()
    out = model(graph.x, adj, graph.edge_index)
    assert float(out.losses.commitment.detach()) > 0
    assert out.losses.commitment.requires_grad
    out.logits.sum().backward()  # a loss on the logits only: no commitment or reconstruction term
    grads = [p.grad for p in encoder_params]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0

    # without the straight-through estimator (eval mode gathers codebook rows) nothing reaches the
    # encoder from the logits: the gradients above came through the quantizer's estimator
    model.zero_grad(set_to_none=True)
    model.eval()
    out = model(graph.x, adj, graph.edge_index)
    assert float(out.losses.commitment.detach()) == 0.0
    out.logits.sum().backward()
    assert all(p.grad is None or float(p.grad.abs().sum()) == 0 for p in encoder_params)
    assert any(p.grad is not None for p in model.head_conv.parameters())  # the backward did run


# ---- config validation --------------------------------------------------------------------------
def test_unknown_conv_lists_choices():
    with pytest.raises(ValueError) as err:
        TeacherConfig(conv="transformer")
    message = str(err.value)
    assert "transformer" in message
    for name in ("appnp", "gat", "gcn", "gcnii", "sage", "sage_gcn"):
        assert name in message


def test_unknown_norm_rejected():
    with pytest.raises(ValueError, match="norm") as err:
        TeacherConfig(norm="group")
    assert "batch" in str(err.value) and "layer" in str(err.value)


def test_unknown_edge_recon_rejected():
    with pytest.raises(ValueError, match="edge_recon") as err:
        TeacherConfig(edge_recon="full")
    assert "dense" in str(err.value) and "sampled" in str(err.value)


@pytest.mark.parametrize("key", ["hidden_channels", "num_layers", "codebook_size"])
def test_non_positive_sizes_rejected(key):
    with pytest.raises(ValueError, match=key):
        TeacherConfig(**{key: 0})


def test_valid_config_round_trips_to_dict():
    config = TeacherConfig(conv="sage", norm="layer", edge_recon="dense", codebook_size=8)
    assert TeacherConfig(**config.to_dict()) == config


# ---- encoders through the resolver --------------------------------------------------------------
@pytest.mark.parametrize(
    "conv, layer_type", [("gcn", GCNConv), ("sage", SAGEConv), ("gat", GATConv), ("appnp", APPNPLayer)]
)
def test_resolver_builds_the_named_layers(graph, conv, layer_type):
    model, adj = make_teacher(graph, conv=conv, num_layers=3)
    assert len(model.encoder.convs) == 3
    assert all(type(layer) is layer_type for layer in model.encoder.convs)
    assert type(model.head_conv) is layer_type
    model.eval()
    with torch.no_grad():
        out = model(graph.x, adj)
    assert out.logits.shape == (graph.num_nodes, NUM_CLASSES)
    assert bool(torch.isfinite(out.logits).all())


def test_adjacency_kind_follows_the_conv(graph):
    assert prepare_adjacency("gat", graph.edge_index, graph.num_nodes) is graph.edge_index
    for conv in ("gcn", "sage", "appnp"):
        adj = prepare_adjacency(conv, graph.edge_index, graph.num_nodes)
        assert adj.layout == torch.sparse_csr and adj.shape == (graph.num_nodes, graph.num_nodes)
    # gcn adds self-loops to its normalised adjacency, sage takes the plain one
    assert prepare_adjacency("gcn", graph.edge_index, graph.num_nodes)._nnz() == graph.num_edges + graph.num_nodes
    assert prepare_adjacency("sage", graph.edge_index, graph.num_nodes)._nnz() == graph.num_edges


@pytest.mark.parametrize("conv", ["gcn", "sage", "sage_gcn", "appnp"])
def test_sparse_adjacency_is_message_passing_along_edges(graph, conv):
    """The sparse adjacency gives what PyG computes from ``edge_index`` (source -> target); the
    edges are made directed so that a transposed adjacency would be caught."""
    keep = torch.rand(graph.num_edges, generator=torch.Generator().manual_seed(0)) < 0.5
    edges = graph.edge_index[:, keep]
    torch.manual_seed(0)
    layer = CONVS[conv].build(NUM_FEATURES, 4)
    x = torch.randn(graph.num_nodes, NUM_FEATURES, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        got = layer(x, prepare_adjacency(conv, edges, graph.num_nodes))
        if conv == "gcn":
            reference = GCNConv(NUM_FEATURES, 4)
            reference.load_state_dict(layer.state_dict())
            want = reference(x, edges)
        elif conv == "sage":
            want = layer(x, edges)
        elif conv == "sage_gcn":  # the "gcn" aggregator: one weight on the mean of self and in-neighbours
            looped = torch.cat([edges, torch.arange(graph.num_nodes).repeat(2, 1)], dim=1)
            want = layer(x, looped)
            assert not layer.root_weight
        else:
            want = APPNP(K=10, alpha=0.1)(layer.lin(x), edges)
        transposed = layer(x, prepare_adjacency(conv, edges.flip(0), graph.num_nodes))
    assert torch.allclose(got, want, atol=1e-5)
    assert not torch.allclose(transposed, want, atol=1e-3)


@pytest.mark.parametrize("norm, norm_type", [("batch", nn.BatchNorm1d), ("layer", nn.LayerNorm), ("none", nn.Identity)])
def test_norm_modules(graph, norm, norm_type):
    model, _ = make_teacher(graph, norm=norm, num_layers=2)
    assert len(model.encoder.norms) == 2
    assert all(type(m) is norm_type for m in model.encoder.norms)
    count = sum(isinstance(m, nn.BatchNorm1d) for m in model.encoder.modules())
    assert count == (2 if norm == "batch" else 0)


def test_without_tokenizer_codes_are_minus_one(graph):
    model, adj = make_teacher(graph, use_tokenizer=False)
    assert model.quantizer is None
    with pytest.raises(AttributeError):
        model.codebook
    model.train()
    out = model(graph.x, adj, graph.edge_index)
    assert out.codes.shape == (graph.num_nodes,)
    assert bool((out.codes == -1).all())
    assert out.logits.shape == (graph.num_nodes, NUM_CLASSES)
    assert all(float(loss.detach()) == 0.0 for loss in out.losses)
    out.logits.sum().backward()
    assert any(float(p.grad.abs().sum()) > 0 for p in model.encoder.parameters())


def test_num_targets_keeps_first_rows(graph):
    model, adj = make_teacher(graph)
    model.eval()
    with torch.no_grad():
        full = model(graph.x, adj)
        part = model(graph.x, adj, num_targets=10)
    assert part.logits.shape == (10, NUM_CLASSES) and part.codes.shape == (10,) and part.z.size(0) == 10
    assert torch.allclose(part.logits, full.logits[:10])
    assert torch.equal(part.codes, full.codes[:10])


# ---- structure losses ---------------------------------------------------------------------------
def _undirected(pairs):
    edges = torch.tensor(pairs).t()
    return torch.cat([edges, edges.flip(0)], 1)


def test_edge_recon_dense_two_blocks_by_hand():
    # scores z z^T are 1 inside {0,1} and {2,3}, 0 across; the adjacency differs only on the diagonal
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    loss = edge_recon_dense(z, _undirected([(0, 1), (2, 3)]), 4)
    assert float(loss) == pytest.approx(math.sqrt(4 / 16), abs=1e-6)


def test_edge_recon_dense_min_max_by_hand():
    # z z^T = [[4,2,0,0],[2,1,0,0],[0,0,1,0],[0,0,0,0]], min-max scaled by 1/4; edges 0-1, 2-3:
    # squared errors 1 + .25 + .25 + .0625 (1,1) + .0625 (2,2) + 1 + 1 = 3.625 over 16 entries
    z = torch.tensor([[2.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    loss = edge_recon_dense(z, _undirected([(0, 1), (2, 3)]), 4)
    assert float(loss) == pytest.approx(math.sqrt(3.625 / 16), abs=1e-6)
    # a graph whose adjacency matches the scores better gets a lower loss
    better = edge_recon_dense(z, _undirected([(0, 1)]), 4)
    assert float(better) < float(loss)


def _community_embedding(y, num_classes, scale=4.0):
    onehot = F.one_hot(y, num_classes).float()
    return scale * (onehot - 1.0 / num_classes)  # dot: + inside a class, - across


def test_edge_recon_sampled_prefers_aligned_embeddings():
    data = make_csbm(num_nodes=400, num_classes=10, avg_degree=6, homophily=1.0, num_features=2, seed=3)
    z = _community_embedding(data.y, 10)
    shuffled = z[torch.randperm(data.num_nodes, generator=torch.Generator().manual_seed(0))]
    random = torch.randn(data.num_nodes, 10, generator=torch.Generator().manual_seed(1))

    def loss(emb):
        return float(edge_recon_sampled(emb, data.edge_index, data.num_nodes, generator=torch.Generator().manual_seed(7)))

    aligned = loss(z)
    assert aligned < loss(shuffled) and aligned < loss(random)
    # the same generator seed gives the same negative samples; a subsample is also finite
    assert loss(z) == aligned
    def sub(emb):  # 50 of the edges: still prefers the aligned embedding
        return float(edge_recon_sampled(emb, data.edge_index, data.num_nodes, 50, generator=torch.Generator().manual_seed(7)))

    assert sub(z) < sub(shuffled) and sub(z) != aligned
    empty = edge_recon_sampled(z.requires_grad_(), torch.empty(2, 0, dtype=torch.long), data.num_nodes)
    assert empty.requires_grad and float(empty.detach()) == 0.0


@pytest.mark.parametrize("kind", ["dense", "sampled"])
def test_structure_loss_inside_teacher(graph, kind, monkeypatch):
    weight = 0.5
    model, adj = make_teacher(graph, edge_recon=kind, edge_recon_weight=weight)
    captured = {}
    model.edge_decoder.register_forward_hook(lambda mod, inp, out: captured.__setitem__("s", out))
    real = teacher_module.edge_recon_sampled

    def spy(z, *args, **kwargs):  # the sampled loss draws negatives from torch's global generator
        captured["z"], captured["sampled"] = z.detach(), real(z, *args, **kwargs)
        return captured["sampled"]

    monkeypatch.setattr(teacher_module, "edge_recon_sampled", spy)
    model.train()
    torch.manual_seed(11)
    out = model(graph.x, adj, graph.edge_index)
    edge = out.losses.edge_recon
    assert edge.requires_grad and float(edge.detach()) > 0
    s = captured["s"].detach()
    if kind == "dense":
        expected = edge_recon_dense(s, graph.edge_index, graph.num_nodes)
        assert float(edge.detach()) == pytest.approx(weight * float(expected), rel=1e-5)
    else:
        # the loss of the decoded codes, weighted (the negative draws are the spy's own call)
        assert torch.equal(captured["z"], s)
        assert float(edge.detach()) == pytest.approx(weight * float(captured["sampled"].detach()), rel=1e-6)
    edge.backward()
    assert float(model.edge_decoder.weight.grad.abs().sum()) > 0
    # not computed outside training or without edges
    model.eval()
    with torch.no_grad():
        assert float(model(graph.x, adj, graph.edge_index).losses.edge_recon) == 0.0
    model.train()
    assert float(model(graph.x, adj, None).losses.edge_recon.detach()) == 0.0


def test_gcnii_encoder_is_gcn2conv_message_passing_along_edges(graph):
    """The GCNII encoder on the package's sparse adjacency gives what PyG's GCN2Conv computes
    from ``edge_index`` with its own normalisation: a linear input layer, then GCN2Conv layers
    of growing depth, each mixing in the first layer's output (initial residual)."""
    from torch_geometric.nn import GCN2Conv

    from vqgraph.models.encoders import GNNEncoder, NodeLinear

    torch.manual_seed(0)
    encoder = GNNEncoder("gcnii", NUM_FEATURES, 8, num_layers=3).eval()
    assert type(encoder.convs[0]) is NodeLinear and all(type(c) is GCN2Conv for c in encoder.convs[1:])
    assert len(encoder.convs) == 4 and encoder.convs[1].beta > encoder.convs[3].beta  # identity weight grows with depth
    with torch.no_grad():
        got = encoder(graph.x, prepare_adjacency("gcnii", graph.edge_index, graph.num_nodes))
        first = h = torch.relu(encoder.convs[0].lin(graph.x))
        for i, conv in enumerate(encoder.convs[1:], start=1):
            reference = GCN2Conv(8, conv.alpha, layer=i, theta=0.5, normalize=True)
            reference.load_state_dict(conv.state_dict())
            h = reference(h, first, graph.edge_index)
            h = torch.relu(h) if i < 3 else h
    assert torch.allclose(got, h, atol=1e-5)


def test_gcnii_deep_layers_take_their_own_weight_decay(graph):
    model, _ = make_teacher(graph, conv="gcnii", num_layers=3, deep_weight_decay=0.01)
    deep, rest = model.param_groups(5e-4)
    assert deep["weight_decay"] == 0.01 and rest["weight_decay"] == 5e-4
    assert len(deep["params"]) == 3  # one shared weight per GCN2Conv layer
    assert len(deep["params"]) + len(rest["params"]) == len(list(model.parameters()))
    plain, _ = make_teacher(graph, conv="gcn", deep_weight_decay=0.01)  # only gcnii has deep layers
    assert [g["weight_decay"] for g in plain.param_groups(5e-4)] == [5e-4]
    with pytest.raises(ValueError, match="deep_weight_decay must be >= 0"):
        TeacherConfig(deep_weight_decay=-1.0)
