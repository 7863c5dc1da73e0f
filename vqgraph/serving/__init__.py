"""Graph-free serving: a trained student predicts for new nodes from their features alone.

Modules by job: :mod:`.predictor` (:class:`Predictor`), :mod:`.artifact` (the student artifact and
its check), :mod:`.module` (:class:`ServingModule`, the served computation), :mod:`.fused` (the
folded and onnxruntime backends), :mod:`.export` (standalone model files, :func:`load_exported`),
:mod:`.program` (a student of any class saved as an exported program, and its reader) and
:mod:`.archive` (the check of an exported ``.pt2`` before torch reads it). None of them imports
torch_geometric or vector_quantize_pytorch: a serving process loads torch and these only.
"""

from vqgraph.serving.export import EXPORT_FORMATS, load_exported
from vqgraph.serving.module import Prediction, ServingModule
from vqgraph.serving.predictor import BACKENDS, Predictor

__all__ = ["BACKENDS", "EXPORT_FORMATS", "Prediction", "Predictor", "ServingModule", "load_exported"]
