"""Any GNN made into targets: :func:`targets_from_model` runs a model called as
``model(x, edge_index)`` (or through ``forward=``) by the package's protocol, observed nodes on
the observed graph and hidden test nodes on the full graph (:func:`~.protocol.outputs_by_protocol`),
captures a named submodule's output as the representation ``z`` (a forward hook), and hands the
outputs to :func:`~.outputs.targets_from_outputs`: the same door as every other teacher."""

from __future__ import annotations

import copy
import difflib
from typing import Any, Callable, Optional, Tuple

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from vqgraph.data.splits import NodeSplit, graph_and_split
from vqgraph.targets.artifact import TeacherTargets
from vqgraph.targets.layerwise import Capture, infer_basic_gnn, layerwise_problem
from vqgraph.targets.outputs import check_logits, node_rows, targets_from_outputs
from vqgraph.targets.protocol import outputs_by_protocol
from vqgraph.utils.devices import device_problem

WHERE = "targets_from_model"
FORWARD_EXAMPLE = "forward=lambda model, graph: model(graph.x, graph.edge_index, graph.edge_weight)"
SOFTMAX_FIX = ("the model ends in a softmax: return the scores before it, or pass "
               "forward=lambda model, graph: model(graph.x, graph.edge_index).clamp_min(1e-30).log()")

Forward = Callable[[nn.Module, Data], Any]


def find_module(model: nn.Module, name: Optional[str]) -> Optional[nn.Module]:
    """The submodule ``name`` of ``model`` (as in ``model.named_modules()``), None for None."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise TypeError(f"{WHERE}: representation must be a submodule's name (str) or None, got {type(name).__name__}")
    modules = dict(model.named_modules())
    if name and name in modules:
        return modules[name]
    names = [key for key in modules if key]
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"did you mean {close}? " if close else ""
    raise ValueError(f"{WHERE}: the model has no submodule {name!r} (representation names one as "
                     f"model.named_modules() does); {hint}its submodules include {names[:8]}")


def run_device(model: nn.Module, device) -> torch.device:
    """Where the model runs: its parameters' (and buffers') device, which ``device`` may only restate."""
    own = {t.device for t in (*model.parameters(), *model.buffers())}
    if len(own) > 1:
        raise ValueError(f"{WHERE}: the model's parameters are on several devices {sorted(map(str, own))}; "
                         "targets_from_model runs a model on one device: move it (model.to(device))")
    here = own.pop() if own else torch.device("cpu")
    if device is None:
        return here
    problem = device_problem(device, fix="device='cpu'")
    if problem:
        raise ValueError(f"{WHERE}: device={device!r}: {problem}")
    device = torch.device(device)
    if here.type != device.type or None not in (here.index, device.index) and here.index != device.index:
        raise ValueError(f"{WHERE}: device={str(device)!r} but the model's parameters are on {here}: move the model "
                         "there (model.to(device)) or leave device unset")
    return here


def call_model(model: nn.Module, graph: Data, device: torch.device, forward: Optional[Forward]) -> Tuple[Any, Any]:
    """``(logits, z or None)`` of one pass of ``model`` over ``graph`` (moved to ``device``)."""
    if forward is not None:
        out = forward(model, copy.copy(graph).to(device))  # a shallow copy: the caller's graph stays put
        if isinstance(out, (tuple, list)) and len(out) == 2:
            return out[0], out[1]
        if not isinstance(out, Tensor):
            raise TypeError(f"{WHERE}: forward(model, graph) returned {type(out).__name__}; it returns logits "
                            "[nodes, C] or (logits, z)")
        return out, None
    try:
        out = model(graph.x.to(device), graph.edge_index.to(device))
    except TypeError as error:
        raise TypeError(f"{WHERE}: model(x, edge_index) failed ({error}); a model that needs more than "
                        "(x, edge_index), such as edge weights, edge features or a batch vector, is called through "
                        f"forward(model, graph) -> logits: {FORWARD_EXAMPLE}") from error
    if not isinstance(out, Tensor):
        raise TypeError(f"{WHERE}: model(x, edge_index) returned {type(out).__name__}, not logits [nodes, C]: "
                        "pass forward=lambda model, graph: model(graph.x, graph.edge_index)[0] (or return "
                        "(logits, z) from it)")
    return out, None


def model_runner(model: nn.Module, data: Data, capture: Optional[Capture], device: torch.device,
                 batch_size: Optional[int], forward: Optional[Forward]) -> Callable[[Data], tuple]:
    """``run(graph) -> (logits, z or None)`` on the CPU, checked: one row per node of ``graph``,
    finite, logits of the graph's classes and not probabilities."""

    def run(graph: Data):
        which = "the full graph" if graph.num_nodes == data.num_nodes else "the observed graph"
        if batch_size is not None:
            logits, z = infer_basic_gnn(model, graph, batch_size, device, capture), None
        else:
            logits, z = call_model(model, graph, device, forward)
        if capture is not None:
            if z is not None:
                raise ValueError(f"{WHERE}: forward returned (logits, z) and representation names a module too: "
                                 "give z one way")
            z = capture.result(graph.num_nodes)
        logits = check_logits(logits, graph.num_nodes, data.num_classes, WHERE, "the model's logits", SOFTMAX_FIX, which)
        z = None if z is None else node_rows(z, "the representation z", graph.num_nodes, WHERE, which)
        return logits, z

    return run


def check_call(model: Any, batch_size: Any, forward: Any) -> None:
    """The arguments of :func:`targets_from_model` besides the data, checked before any pass."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"{WHERE}: model must be a torch.nn.Module, got {type(model).__name__}")
    if forward is not None and not callable(forward):
        raise TypeError(f"{WHERE}: forward must be a function forward(model, graph) -> logits, got "
                        f"{type(forward).__name__}")
    if batch_size is None:
        return
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"{WHERE}: batch_size must be a positive int (seed nodes per layer-wise batch) or None, "
                         f"got {batch_size!r}")
    if forward is not None:
        raise ValueError(f"{WHERE}: batch_size (layer-wise inference through BasicGNN.inference_per_layer) and "
                         "forward (your own full-graph pass) exclude each other: give one")
    problem = layerwise_problem(model)
    if problem:
        raise ValueError(f"{WHERE}: batch_size asks for layer-wise inference, but {problem}; leave batch_size unset "
                         "for one full-graph pass")


@torch.no_grad()
def targets_from_model(
    model: nn.Module,
    data: Data,
    split: NodeSplit,
    representation: Optional[str] = None,
    *,
    batch_size: Optional[int] = None,
    device=None,
    forward: Optional[Forward] = None,
) -> TeacherTargets:
    """The targets of a trained GNN of your own: its logits for every node, and the output of
    its submodule ``representation`` as the representation ``z``.

    Nodes are by global id, as the built-in teacher's: the observed nodes' outputs come from the
    observed graph (``split.observed_graph(data)``), the hidden test nodes' (inductive setting)
    from the full graph. The model runs in evaluation mode without gradients; its training mode
    is restored afterwards (on an error too). Outputs end on the CPU.

    Args:
        model: a module called as ``model(x, edge_index)`` returning logits [nodes, C].
        representation: the name of a submodule (as in ``model.named_modules()``, e.g.
            ``"convs.0"``) whose output [nodes, D] is captured by a forward hook as ``z``; it must
            run once per pass. None: soft labels only.
        batch_size: layer-wise inference for a PyG ``BasicGNN`` (GraphSAGE, GIN, GAT, PNA,
            EdgeCNN; jk None or ``"last"``): ``batch_size`` seed nodes at a time with all their
            incoming edges, one layer after the other, so no pass holds the whole graph's
            activations on ``device``. None: one full-graph pass.
        device: where the model runs; default (and the only choice): its parameters' device.
        forward: ``forward(model, graph) -> logits`` or ``(logits, z)`` for a model that needs
            more than ``(x, edge_index)`` (edge weights, edge features, ...); ``graph`` is the
            observed or the full graph on ``device``, with all its attributes.

    Returns:
        :class:`~vqgraph.targets.TeacherTargets` (:func:`~vqgraph.targets.targets_from_outputs`
        of the outputs), ``config`` naming the model class, the representation and the inference.

    Raises:
        TypeError: the model needs more than ``(x, edge_index)`` (use ``forward``).
        ValueError: an unknown submodule, outputs of the wrong row or class count, NaN/inf,
            probabilities rather than logits, a model layer-wise inference cannot run exactly.
    """
    check_call(model, batch_size, forward)
    data = graph_and_split(data, split, WHERE)
    module = find_module(model, representation)
    device = run_device(model, device)
    capture = Capture(module, representation, WHERE) if module is not None else None
    was_training = model.training
    model.eval()
    try:
        logits, z = outputs_by_protocol(data, split, model_runner(model, data, capture, device, batch_size, forward))
    finally:
        model.train(was_training)
        if capture is not None:
            capture.remove()
    inference = "full graph" if batch_size is None else f"layer-wise, batch_size {batch_size}"
    record = {"model": {"class": type(model).__name__, "representation": representation, "inference": inference}}
    return targets_from_outputs(logits, data, split, z, config=record)
