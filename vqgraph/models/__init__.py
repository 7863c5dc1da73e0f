"""Models: GNN encoders, the VQGraph teacher (GNN + graph tokenizer)."""

from vqgraph.models.encoders import CONVS, GNNEncoder, prepare_adjacency, resolve_conv
from vqgraph.models.teacher import TeacherConfig, TeacherLosses, TeacherOutput, VQGraphTeacher

__all__ = [
    "CONVS",
    "GNNEncoder",
    "TeacherConfig",
    "TeacherLosses",
    "TeacherOutput",
    "VQGraphTeacher",
    "prepare_adjacency",
    "resolve_conv",
]
