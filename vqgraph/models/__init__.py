"""Models: GNN encoders, the VQGraph teacher (GNN + graph tokenizer), the post-hoc graph tokenizer, the MLP student.

Names are imported on first use (:mod:`vqgraph.utils.lazy`): the student, which serving reads,
comes without the graph library and the quantizer.
"""

from vqgraph.utils.lazy import lazy_exports

_LAZY = {
    "vqgraph.models.encoders": ("CONVS", "GNNEncoder", "prepare_adjacency", "resolve_conv"),
    "vqgraph.models.norms": ("NORMS",),
    "vqgraph.models.student": ("MLPStudent", "StudentConfig", "StudentOutput"),
    "vqgraph.models.teacher": ("TeacherConfig", "TeacherLosses", "TeacherOutput", "VQGraphTeacher"),
    "vqgraph.models.tokenizer": ("GraphTokenizer", "TokenizerConfig"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "CONVS",
    "GNNEncoder",
    "GraphTokenizer",
    "MLPStudent",
    "NORMS",
    "StudentConfig",
    "StudentOutput",
    "TeacherConfig",
    "TeacherLosses",
    "TeacherOutput",
    "TokenizerConfig",
    "VQGraphTeacher",
    "prepare_adjacency",
    "resolve_conv",
]
