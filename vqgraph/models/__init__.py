"""Models: GNN encoders, the VQGraph teacher (GNN + graph tokenizer), the post-hoc graph tokenizer."""

from vqgraph.models.encoders import CONVS, GNNEncoder, prepare_adjacency, resolve_conv
from vqgraph.models.teacher import TeacherConfig, TeacherLosses, TeacherOutput, VQGraphTeacher
from vqgraph.models.tokenizer import GraphTokenizer, TokenizerConfig

__all__ = [
    "CONVS",
    "GNNEncoder",
    "GraphTokenizer",
    "TeacherConfig",
    "TeacherLosses",
    "TeacherOutput",
    "TokenizerConfig",
    "VQGraphTeacher",
    "prepare_adjacency",
    "resolve_conv",
]
