"""Any teacher into targets (issue 30): ``targets_from_model`` on a plain PyG model trained by the
user's own code (full-graph and layer-wise, the representation hook, the inductive protocol),
``targets_from_outputs`` for saved outputs (checked at the door, saved and loaded), targets without
a representation, the built-in teacher's targets made through the same door, and every bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import GCN, GraphSAGE

from vqgraph import (
    DistillConfig,
    Evaluator,
    TeacherConfig,
    TeacherTargets,
    TrainConfig,
    fit_student,
    fit_teacher,
    fit_tokenizer,
    make_csbm,
    make_split,
    targets_from_model,
    targets_from_outputs,
)
from vqgraph.errors import ArtifactMismatchError
from vqgraph.targets import graph_fingerprint, node_outputs

N, C, F_IN, HIDDEN = 300, 3, 16, 32


@pytest.fixture(scope="module")
def graph():
    return make_csbm(num_nodes=N, num_classes=C, avg_degree=8, num_features=F_IN, seed=0, name="csbm-own")


@pytest.fixture(scope="module", params=["transductive", "inductive"])
def split(request, graph):
    return make_split(graph, seed=0, setting=request.param)


@pytest.fixture(scope="module")
def ind_split(graph):
    return make_split(graph, seed=0, setting="inductive")


def train_briefly(model: nn.Module, graph, split, epochs: int = 30) -> nn.Module:
    """The user's own training loop: cross-entropy on the training nodes of the observed graph."""
    torch.manual_seed(0)
    observed = split.observed_graph(graph)
    rows = split.to_local(split.train_idx)
    optimiser = torch.optim.Adam(model.parameters(), lr=0.01)
    for _ in range(epochs):
        optimiser.zero_grad()
        F.cross_entropy(model(observed.x, observed.edge_index)[rows], observed.y[rows]).backward()
        optimiser.step()
    return model


def sage(graph, split, **kwargs) -> GraphSAGE:
    torch.manual_seed(0)
    return train_briefly(GraphSAGE(F_IN, HIDDEN, 2, out_channels=C, **kwargs), graph, split)


@pytest.fixture(scope="module")
def model(graph, split):
    return sage(graph, split)


@torch.no_grad()
def manual(model, x, edge_index):
    """A manual evaluation-mode forward: the logits and the first layer's output (convs.0)."""
    model.eval()
    return model(x, edge_index), model.convs[0](x, edge_index)


# ---- targets_from_model -------------------------------------------------------------------------
def test_the_hook_representation_is_the_hidden_output_of_a_manual_forward(graph, split, model):
    model.train().zero_grad(set_to_none=True)
    targets = targets_from_model(model, graph, split, "convs.0")
    assert model.training and all(p.grad is None for p in model.parameters())  # its mode restored; no gradient
    observed = split.observed_graph(graph)
    logits, hidden = manual(model, observed.x, observed.edge_index)
    assert torch.equal(targets.logits[observed.n_id], logits)
    assert torch.equal(targets.z[observed.n_id], hidden) and targets.z.shape == (N, HIDDEN) and targets.has_z
    assert targets.codebook is None and bool((targets.codes == -1).all())
    assert targets.graph_fingerprint == graph_fingerprint(graph) and targets.split_fingerprint == split.fingerprint()
    assert targets.metrics == Evaluator.for_teacher(graph.y, split)(targets.logits)
    assert targets.config["model"] == {"class": "GraphSAGE", "representation": "convs.0", "inference": "full graph"}
    assert targets.logits.device.type == "cpu" and not targets.logits.requires_grad


def test_inductive_hidden_rows_come_from_the_full_graph_and_observed_rows_from_the_observed_graph(graph, ind_split):
    model = sage(graph, ind_split)
    targets = targets_from_model(model, graph, ind_split, "convs.0")
    observed = ind_split.observed_graph(graph)
    full_logits, full_hidden = manual(model, graph.x, graph.edge_index)
    observed_logits, observed_hidden = manual(model, observed.x, observed.edge_index)
    hidden = ind_split.test_ind_idx
    assert torch.equal(targets.logits[hidden], full_logits[hidden]) and torch.equal(targets.z[hidden], full_hidden[hidden])
    assert torch.equal(targets.logits[observed.n_id], observed_logits)
    assert torch.equal(targets.z[observed.n_id], observed_hidden)
    # the protocol matters: an observed neighbour of a hidden node sees another graph than the full one
    assert not torch.allclose(targets.logits[observed.n_id], full_logits[observed.n_id])


@pytest.mark.parametrize("representation", ["convs.0", "convs.0.lin_l", "act"])
def test_layerwise_inference_equals_the_full_graph_pass(graph, split, model, representation):
    full = targets_from_model(model, graph, split, representation)
    layerwise = targets_from_model(model, graph, split, representation, batch_size=37)
    assert torch.allclose(layerwise.logits, full.logits, atol=1e-5)
    assert torch.allclose(layerwise.z, full.z, atol=1e-5) and layerwise.z.shape == full.z.shape
    assert layerwise.config["model"]["inference"] == "layer-wise, batch_size 37"


def test_layerwise_inference_never_runs_the_whole_graph_at_once(graph, split, model, monkeypatch):
    seen = []
    forward = model.convs[0].forward
    monkeypatch.setattr(model.convs[0], "forward", lambda x, edge_index: seen.append(x.size(0)) or forward(x, edge_index))
    targets_from_model(model, graph, split, batch_size=10)
    assert len(seen) >= N // 10 and max(seen) < N / 2  # 10 seeds and their in-neighbours at a time, never all N nodes


def test_a_model_that_needs_edge_weights_runs_through_forward(graph, ind_split):
    torch.manual_seed(0)
    weighted = graph.clone()
    weighted.edge_weight = torch.rand(graph.edge_index.size(1))
    model = GCN(F_IN, HIDDEN, 2, out_channels=C).eval()
    call = lambda m, g: m(g.x, g.edge_index, g.edge_weight)  # noqa: E731
    targets = targets_from_model(model, weighted, ind_split, "convs.0", forward=call)
    observed = ind_split.observed_graph(weighted)
    with torch.no_grad():
        expected = model(observed.x, observed.edge_index, observed.edge_weight)
    assert torch.equal(targets.logits[observed.n_id], expected)
    assert not model.training  # the user's evaluation mode, kept


def test_forward_may_return_logits_and_z(graph, split, model):
    call = lambda m, g: (m(g.x, g.edge_index), m.convs[0](g.x, g.edge_index))  # noqa: E731
    own = targets_from_model(model, graph, split, forward=call)
    hooked = targets_from_model(model, graph, split, "convs.0")
    assert torch.equal(own.z, hooked.z) and torch.equal(own.logits, hooked.logits)


def test_a_glnn_student_trains_on_targets_of_a_model_without_z(graph, split, model, tmp_path):
    targets = TeacherTargets.load(targets_from_model(model, graph, split).save(tmp_path / "teacher.pt"))
    assert not targets.has_z and targets.z.shape == (N, 0)
    train = TrainConfig(max_epochs=5, patience=None, progress=False, seed=0)
    result = fit_student(graph, split, targets, distill=DistillConfig(method="glnn"), train=train)
    assert result.metrics["epochs"] == 5 and 0.0 <= result.metrics["val/acc"] <= 1.0
    assert result.metrics["targets/teacher_temperature"] > 0


# ---- targets_from_outputs -----------------------------------------------------------------------
def test_saved_outputs_round_trip_through_save_and_load(graph, split, tmp_path):
    torch.manual_seed(0)
    logits, z, codebook = torch.randn(N, C), torch.randn(N, 8), torch.randn(5, 8)
    made = targets_from_outputs(logits.double().numpy(), graph, split, z, codebook=codebook, config={"from": "jax"})
    nearest = F.normalize(z, dim=-1) @ F.normalize(codebook, dim=-1).t()
    assert torch.equal(made.codes, nearest.argmax(-1)) and made.logits.dtype == torch.float32
    loaded = TeacherTargets.load(made.save(tmp_path / "t.pt"))
    for key in ("logits", "z", "codes", "codebook"):
        assert torch.equal(getattr(loaded, key), getattr(made, key)), key
    assert (loaded.config, loaded.metrics, loaded.metric) == ({"from": "jax"}, made.metrics, "cosine")
    assert (loaded.graph_fingerprint, loaded.split_fingerprint) == (graph_fingerprint(graph), split.fingerprint())
    loaded.check_matches(graph, split)
    soft_only = TeacherTargets.load(targets_from_outputs(logits, graph, split).save(tmp_path / "soft.pt"))
    assert not soft_only.has_z and soft_only.codebook is None and bool((soft_only.codes == -1).all())


def test_log_probabilities_are_accepted_as_logits(graph, split):
    log_probs = torch.randn(N, C).log_softmax(-1)
    assert torch.equal(targets_from_outputs(log_probs, graph, split).logits, log_probs)


def test_the_built_in_teacher_makes_its_targets_through_targets_from_outputs(graph, ind_split):
    config = TeacherConfig(hidden_channels=16, codebook_size=16)
    result = fit_teacher(graph, ind_split, config, TrainConfig(lr=0.01, max_epochs=3, patience=None, progress=False))
    built_in = result.targets
    outputs = node_outputs(result.model, graph, ind_split)
    again = targets_from_outputs(outputs.logits, graph, ind_split, outputs.z, codes=outputs.codes,
                                 codebook=result.model.codebook, config=built_in.config, metrics=built_in.metrics)
    for key in ("logits", "z", "codes", "codebook"):
        assert torch.equal(getattr(again, key), getattr(built_in, key)), key
    for key in ("metric", "config", "metrics", "graph_fingerprint", "split_fingerprint", "setting", "dataset"):
        assert getattr(again, key) == getattr(built_in, key), key
    accuracy = targets_from_outputs(outputs.logits, graph, ind_split, outputs.z).metrics  # the default metrics
    assert accuracy == {k: v for k, v in built_in.metrics.items() if k in accuracy} and "test_ind/acc" in accuracy


# ---- targets without z --------------------------------------------------------------------------
def test_targets_without_z_say_what_needs_it_and_how_to_get_it(graph, split):
    targets = TeacherTargets(torch.randn(N, C))  # the constructor too: z=None is soft labels only
    assert not targets.has_z and targets.z.shape == (N, 0) and bool((targets.codes == -1).all())
    with pytest.raises(ValueError, match=r"fit_tokenizer needs .*representation z.* representation='<submodule name>'"):
        targets.require_z("fit_tokenizer")


@pytest.mark.parametrize("distill, user", [(DistillConfig(method="vqgraph"), "method 'vqgraph'"),
                                            (DistillConfig(method="glnn", similarity_weight=1.0),
                                             "distill.similarity_weight")])
def test_the_code_and_similarity_terms_refuse_targets_without_z_naming_the_fix(graph, split, distill, user):
    targets = targets_from_outputs(torch.randn(N, C), graph, split)
    with pytest.raises(ValueError, match=rf"{user} needs the teacher's representation z.*targets_from_model"):
        fit_student(graph, split, targets, distill=distill, train=TrainConfig(max_epochs=1, progress=False))


def test_an_artifact_with_a_codebook_but_no_z_is_refused(graph, split, tmp_path):
    path = targets_from_outputs(torch.randn(N, C), graph, split).save(tmp_path / "t.pt")
    payload = torch.load(path, weights_only=True)
    payload["tensors"]["codebook"] = torch.randn(4, 0)
    torch.save(payload, path)
    with pytest.raises(ArtifactMismatchError, match=r"'tensors.codebook' is set but 'tensors.z' has no columns"):
        TeacherTargets.load(path)


@pytest.mark.parametrize("door", ["targets_from_outputs", "targets_from_model", "fit_tokenizer", "fit_student",
                                  "fit_teacher"])
def test_a_graph_split_or_targets_of_the_wrong_type_is_refused_at_every_door(graph, split, model, door):
    """Every entry point checks the graph and the split it is given the same way, before any use
    (a dict of index tensors used to fail inside with ``'dict' object has no attribute ...``)."""
    targets = targets_from_outputs(torch.randn(N, C), graph, split, z=torch.randn(N, 4))
    train = TrainConfig(max_epochs=1, progress=False)
    call = {
        "targets_from_outputs": lambda g, s: targets_from_outputs(targets.logits, g, s),
        "targets_from_model": lambda g, s: targets_from_model(model, g, s),
        "fit_tokenizer": lambda g, s: fit_tokenizer(targets, g, s),
        "fit_student": lambda g, s: fit_student(g, s, targets, distill=DistillConfig(method="glnn"), train=train),
        "fit_teacher": lambda g, s: fit_teacher(g, s, TeacherConfig(), train),
    }[door]
    with pytest.raises(TypeError, match=rf"^{door}: split must be a vqgraph.NodeSplit \(vqgraph.make_split\(data, "
                                        r"seed=...\); your own ids: NodeSplit\(num_nodes, .*got dict$"):
        call(graph, split.index_dict())
    with pytest.raises(TypeError, match=rf"^{door}: data must be a torch_geometric.data.Data graph .*got tuple$"):
        call((graph.x, graph.edge_index), split)
    if door == "fit_student":
        with pytest.raises(TypeError, match=r"fit_student: targets must be a TeacherTargets .*got dict"):
            fit_student(graph, split, {"logits": targets.logits}, distill=DistillConfig(method="glnn"), train=train)


# ---- bad inputs: targets_from_outputs -------------------------------------------------------------
def _probabilities():
    return torch.randn(N, C).softmax(-1)


def _nan_row(rows=N, cols=C):
    value = torch.randn(rows, cols)
    value[17, 1] = float("nan")
    return value


OUTPUT_CASES = {
    "list": (dict(logits=[[0.0] * C] * N), TypeError, r"logits must be a torch.Tensor or a numpy array, got list"),
    "1-d": (dict(logits=torch.randn(N)), ValueError, rf"logits must be 2-D \[{N}, \*\] \(one row per node\)"),
    "rows": (dict(logits=torch.randn(N - 1, C)), ValueError, rf"logits has {N - 1} rows but the graph has {N} nodes"),
    "columns": (dict(logits=torch.randn(N, C + 1)), ValueError, rf"logits has {C + 1} columns but the graph has {C} classes"),
    "integers": (dict(logits=torch.zeros(N, C, dtype=torch.long)), TypeError, r"logits must be floating point, got torch.int64"),
    "nan": (dict(logits=_nan_row()), ValueError, rf"logits row 17 holds NaN or inf \(1 of {N} rows do\)"),
    "probabilities": (dict(logits=_probabilities()), ValueError,
                      r"every row of logits is non-negative and sums to 1: these are probabilities.*pass the logits, "
                      r"or the probabilities' log"),
    "z-rows": (dict(z=torch.randn(N + 2, 4)), ValueError, rf"z has {N + 2} rows but the graph has {N} nodes"),
    "z-nan": (dict(z=_nan_row(N, 4)), ValueError, r"z row 17 holds NaN or inf"),
    "z-empty": (dict(z=torch.randn(N, 0)), ValueError, r"z has no columns"),
    "codebook-without-z": (dict(codebook=torch.randn(4, 4)), ValueError, r"a codebook needs the representation it quantizes"),
    "codebook-width": (dict(z=torch.randn(N, 4), codebook=torch.randn(5, 3)), ValueError,
                       r"codebook must be \[K, 4\] \(K >= 1 codes as wide as z\), got shape \[5, 3\]"),
    "codes-range": (dict(z=torch.randn(N, 4), codebook=torch.randn(5, 4), codes=torch.full((N,), 5)), ValueError,
                    r"codes row 0 is 5, outside \[0, 4\] \(the codebook has 5 codes\)"),
    "codes-without-codebook": (dict(codes=torch.zeros(N, dtype=torch.long)), ValueError,
                               r"codes row 0 is 0, but without a codebook every code is -1"),
    "codes-float": (dict(z=torch.randn(N, 4), codebook=torch.randn(5, 4), codes=torch.zeros(N)), ValueError,
                    r"codes must be integers of shape \[300\]"),
    "metric": (dict(metric="dot"), ValueError, r"metric must be one of \('cosine', 'euclidean'\), got 'dot'"),
    "metrics-list": (dict(metrics=[0.5]), TypeError, r"metrics must be a mapping"),
}


@pytest.mark.parametrize("name", list(OUTPUT_CASES))
def test_bad_saved_outputs_are_refused_naming_the_argument_and_row(graph, split, name):
    changes, error, message = OUTPUT_CASES[name]
    kwargs = {"logits": torch.randn(N, C), "data": graph, "split": split, **changes}
    with pytest.raises(error, match=f"^targets_from_outputs: {message}"):
        targets_from_outputs(**kwargs)


# ---- bad inputs: targets_from_model ---------------------------------------------------------------
class Wrapped(nn.Module):
    """A GraphSAGE whose outputs pass through ``after`` (a broken model of the user's)."""

    def __init__(self, inner: nn.Module, after):
        super().__init__()
        self.inner, self.after = inner, after

    def forward(self, x, edge_index):
        return self.after(self.inner(x, edge_index))


class NeedsWeights(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(F_IN, C)

    def forward(self, x, edge_index, edge_weight):
        return self.lin(x)


class Pair(nn.Module):
    def forward(self, x):
        return x, x


class PairModel(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin, self.pair = nn.Linear(F_IN, C), Pair()

    def forward(self, x, edge_index):
        return self.pair(self.lin(x))[0]


def _with_nan(out):
    out = out.clone()
    out[5] = float("nan")
    return out


MODEL_CASES = {
    "unknown-submodule": (lambda m: m, dict(representation="convs.2"), ValueError,
                          r"the model has no submodule 'convs.2'.*did you mean \[.*'convs.0'.*its submodules include"),
    "needs-more-args": (lambda m: NeedsWeights(), {}, TypeError,
                        r"model\(x, edge_index\) failed \(.*edge_weight.*\); a model that needs more than \(x, edge_index\).*"
                        r"forward=lambda model, graph"),
    "wrong-rows": (lambda m: Wrapped(m, lambda out: out[:-1]), {}, ValueError,
                   r"the model's logits has (299 rows but the full|269 rows but the observed) graph has (300|270) nodes"),
    "wrong-columns": (lambda m: Wrapped(m, lambda out: out[:, :2]), {}, ValueError,
                      rf"the model's logits has 2 columns but the graph has {C} classes"),
    "non-finite": (lambda m: Wrapped(m, _with_nan), {}, ValueError, r"the model's logits row 5 holds NaN or inf \(1 of (300|270) rows do, rows of the (full|observed) graph\)"),
    "softmax": (lambda m: Wrapped(m, lambda out: out.softmax(-1)), {}, ValueError,
                r"every row of the model's logits is non-negative and sums to 1: these are probabilities.*ends in a softmax"),
    "tuple-output": (lambda m: Wrapped(m, lambda out: (out, out)), {}, TypeError,
                     r"model\(x, edge_index\) returned tuple, not logits \[nodes, C\]"),
    "not-called": (lambda m: m, dict(representation="norms.1"), ValueError,
                   r"representation 'norms.1' was not called by the forward pass"),
    "called-twice": (lambda m: GraphSAGE(F_IN, HIDDEN, 3, out_channels=C), dict(representation="act"), ValueError,
                     r"representation 'act' ran 2 times in one forward pass"),
    "not-per-node": (lambda m: PairModel(), dict(representation="pair"), ValueError,
                     r"representation 'pair' returned tuple, not one row per node"),
    "layerwise-not-called": (lambda m: m, dict(representation="dropout", batch_size=64), ValueError,
                             r"representation 'dropout' was not called by a layer-wise pass"),
    "layerwise-not-basic-gnn": (lambda m: Wrapped(m, lambda out: out), dict(batch_size=64), ValueError,
                                r"batch_size asks for layer-wise inference, but a Wrapped is not a PyG BasicGNN"),
    "layerwise-gcn": (lambda m: GCN(F_IN, HIDDEN, 2, out_channels=C), dict(batch_size=64), ValueError,
                      r"batch_size asks for layer-wise inference, but convs.0 is a GCNConv; a one-hop batch gives exact outputs only for"),
    "layerwise-jk": (lambda m: GraphSAGE(F_IN, HIDDEN, 2, out_channels=C, jk="cat"), dict(batch_size=64), ValueError,
                     r"batch_size asks for layer-wise inference, but its jumping knowledge jk='cat' needs every layer at once"),
    "layerwise-graph-norm": (lambda m: GraphSAGE(F_IN, HIDDEN, 2, out_channels=C, norm="graph_norm"),
                             dict(batch_size=64), ValueError, r"batch_size asks for layer-wise inference, but norms.0 is a GraphNorm, whose evaluation-mode output"),
    "batch-size": (lambda m: m, dict(batch_size=0), ValueError, r"batch_size must be a positive int"),
    "batch-size-and-forward": (lambda m: m, dict(batch_size=8, forward=lambda m, g: m(g.x, g.edge_index)), ValueError,
                               r"batch_size .* and forward .* exclude each other"),
    "device": (lambda m: m, dict(device="cuda:7" if not torch.cuda.is_available() else "meta"), ValueError,
               r"device='(cuda:7|meta)': "),
    "device-mismatch": (lambda m: GraphSAGE(F_IN, HIDDEN, 2, out_channels=C).to("meta"), dict(device="cpu"), ValueError,
                        r"device='cpu' but the model's parameters are on meta: move the model there"),
    "not-a-module": (lambda m: (lambda x, e: x), {}, TypeError, r"model must be a torch.nn.Module, got function"),
}


@pytest.mark.parametrize("name", list(MODEL_CASES))
def test_bad_models_are_refused_clearly_and_keep_their_mode(graph, split, model, name):
    make, kwargs, error, message = MODEL_CASES[name]
    bad = make(model)
    if isinstance(bad, nn.Module):
        bad.train().zero_grad(set_to_none=True)
    with pytest.raises(error, match=f"^targets_from_model: {message}"):
        targets_from_model(bad, graph, split, **kwargs)
    if isinstance(bad, nn.Module):
        assert bad.training  # restored on the error too
        assert all(p.grad is None for p in bad.parameters())
