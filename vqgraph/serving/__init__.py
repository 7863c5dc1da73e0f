"""Graph-free serving: a trained student predicts for new nodes from their features alone.

Modules by job: :mod:`.predictor` (:class:`Predictor`), :mod:`.artifact` (the student artifact and
its check), :mod:`.module` (:class:`ServingModule`, the served computation), :mod:`.fused` (the
folded and onnxruntime backends), :mod:`.export` (standalone model files, :func:`load_exported`)
and :mod:`.archive` (the check of an exported ``.pt2`` before torch reads it).
"""

from vqgraph.serving.export import EXPORT_FORMATS, load_exported
from vqgraph.serving.module import Prediction, ServingModule
from vqgraph.serving.predictor import BACKENDS, Predictor

__all__ = ["BACKENDS", "EXPORT_FORMATS", "Prediction", "Predictor", "ServingModule", "load_exported"]
