"""Teacher targets: the hand-over from any teacher to distillation.

A teacher becomes targets through one door, :func:`targets_from_outputs` (its logits, and
optionally its representation ``z``, codes and codebook, for every node by global id, checked
whole): a model of your own through :func:`targets_from_model` (PyG-style ``model(x,
edge_index)``, full-graph or layer-wise), outputs saved elsewhere directly, the built-in teacher
through :func:`~vqgraph.training.fit_teacher`. Modules by job:

* :mod:`~vqgraph.targets.artifact`: :class:`TeacherTargets`, its file, the graph fingerprint;
* :mod:`~vqgraph.targets.outputs`: :func:`targets_from_outputs` and its checks;
* :mod:`~vqgraph.targets.protocol`: which graph each node's outputs come from; the built-in
  teacher's :func:`node_outputs`;
* :mod:`~vqgraph.targets.from_model`, :mod:`~vqgraph.targets.layerwise`: :func:`targets_from_model`;
* :mod:`~vqgraph.targets.ensemble`: :func:`ensemble_targets`, :func:`smooth_soft_labels`;
* :mod:`~vqgraph.targets.propagate`: :func:`correct_and_smooth` (teacher-side propagation, C&S).
"""

from vqgraph.targets.artifact import FORMAT_VERSION, TeacherTargets, graph_fingerprint
from vqgraph.targets.ensemble import ensemble_targets, smooth_soft_labels
from vqgraph.targets.from_model import targets_from_model
from vqgraph.targets.outputs import targets_from_outputs
from vqgraph.targets.propagate import correct_and_smooth
from vqgraph.targets.protocol import NodeOutputs, node_outputs, outputs_by_protocol

__all__ = [
    "FORMAT_VERSION",
    "NodeOutputs",
    "TeacherTargets",
    "correct_and_smooth",
    "ensemble_targets",
    "graph_fingerprint",
    "node_outputs",
    "outputs_by_protocol",
    "smooth_soft_labels",
    "targets_from_model",
    "targets_from_outputs",
]
