"""vqgraph: distil graph neural networks into graph-free MLPs through a structure-aware codebook.

The names here are what a user calls, holds and catches: loading and splitting graphs, the
teacher and student configs and trainers with their results, the teacher's targets, the one
evaluator, serving, the experiment configuration of the application layer, and every error.
Modules: :mod:`vqgraph.data`, :mod:`vqgraph.models`, :mod:`vqgraph.training`,
:mod:`vqgraph.targets`, :mod:`vqgraph.serving`, :mod:`vqgraph.app` (docs/design.md maps them).

Each name is imported on first use (``_LAZY``: the module that defines it), so a serving process
that takes only ``from vqgraph import Predictor`` imports neither torch_geometric nor
vector_quantize_pytorch (:mod:`vqgraph.utils.lazy`).
"""

from vqgraph.utils.lazy import lazy_exports

__version__ = "0.1.0"

_LAZY = {
    "vqgraph.app.config": ("DistillSection", "ExperimentConfig"),
    "vqgraph.app.run": ("RunSpec", "run_experiment"),
    "vqgraph.data.datasets": ("dataset_info", "load_dataset"),
    "vqgraph.data.graph": ("normalize_features",),
    "vqgraph.data.prepare": ("prepare_graph",),
    "vqgraph.data.splits": ("NodeSplit", "Setting", "make_split"),
    "vqgraph.data.synthetic": ("make_csbm", "make_dcsbm"),
    "vqgraph.data.transform": ("FeatureTransform",),
    "vqgraph.errors": (
        "ArtifactMismatchError",
        "CheckpointMismatchError",
        "ConfigError",
        "DataFormatError",
        "DatasetNotFoundError",
        "DivergenceError",
        "GraphValidationError",
        "NotWritableError",
        "SplitError",
        "UnknownDatasetError",
        "VQGraphError",
    ),
    "vqgraph.evaluation": ("Evaluator",),
    "vqgraph.models.custom": ("StudentWrapper",),
    "vqgraph.models.student": ("MLPStudent", "StudentConfig"),
    "vqgraph.models.teacher": ("TeacherConfig", "VQGraphTeacher"),
    "vqgraph.models.tokenizer": ("GraphTokenizer", "TokenizerConfig"),
    "vqgraph.serving.export": ("load_exported",),
    "vqgraph.serving.module": ("Prediction",),
    "vqgraph.serving.predictor": ("Predictor",),
    "vqgraph.targets": (
        "TeacherTargets",
        "correct_and_smooth",
        "ensemble_targets",
        "targets_from_model",
        "targets_from_outputs",
    ),
    "vqgraph.training.distill.base": ("LossTerm", "TermContext", "TermInputs"),
    "vqgraph.training.distill.config": ("DistillConfig", "method_defaults"),
    "vqgraph.training.distill.fit": ("StudentResult", "fit_student"),
    "vqgraph.training.loop": ("TrainConfig",),
    "vqgraph.training.teacher": ("TeacherResult", "fit_teacher"),
    "vqgraph.training.tokenizer": ("fit_tokenizer",),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "ArtifactMismatchError",
    "CheckpointMismatchError",
    "ConfigError",
    "DataFormatError",
    "DatasetNotFoundError",
    "DistillConfig",
    "DistillSection",
    "DivergenceError",
    "Evaluator",
    "ExperimentConfig",
    "FeatureTransform",
    "GraphTokenizer",
    "GraphValidationError",
    "LossTerm",
    "MLPStudent",
    "NodeSplit",
    "NotWritableError",
    "Prediction",
    "Predictor",
    "RunSpec",
    "Setting",
    "SplitError",
    "StudentConfig",
    "StudentResult",
    "StudentWrapper",
    "TeacherConfig",
    "TeacherResult",
    "TeacherTargets",
    "TermContext",
    "TermInputs",
    "TokenizerConfig",
    "TrainConfig",
    "UnknownDatasetError",
    "VQGraphError",
    "VQGraphTeacher",
    "correct_and_smooth",
    "dataset_info",
    "ensemble_targets",
    "fit_student",
    "fit_teacher",
    "fit_tokenizer",
    "load_dataset",
    "load_exported",
    "make_csbm",
    "make_dcsbm",
    "make_split",
    "method_defaults",
    "normalize_features",
    "prepare_graph",
    "run_experiment",
    "targets_from_model",
    "targets_from_outputs",
]
