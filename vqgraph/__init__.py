"""vqgraph: distil graph neural networks into graph-free MLPs through a structure-aware codebook.

The names here are what a user calls, holds and catches: loading and splitting graphs, the
teacher and student configs and trainers with their results, the teacher's targets, the one
evaluator, serving, the experiment configuration of the application layer, and every error.
Modules: :mod:`vqgraph.data`, :mod:`vqgraph.models`, :mod:`vqgraph.training`,
:mod:`vqgraph.targets`, :mod:`vqgraph.serving`, :mod:`vqgraph.app` (docs/design.md maps them).
"""

from vqgraph.app.config import DistillSection, ExperimentConfig
from vqgraph.app.run import RunSpec, run_experiment
from vqgraph.data import (
    NodeSplit,
    Setting,
    dataset_info,
    load_dataset,
    make_csbm,
    make_dcsbm,
    make_split,
    normalize_features,
    prepare_graph,
)
from vqgraph.errors import (
    ArtifactMismatchError,
    CheckpointMismatchError,
    ConfigError,
    DataFormatError,
    DatasetNotFoundError,
    DivergenceError,
    GraphValidationError,
    NotWritableError,
    SplitError,
    UnknownDatasetError,
    VQGraphError,
)
from vqgraph.evaluation import Evaluator
from vqgraph.models import GraphTokenizer, TeacherConfig, TokenizerConfig, VQGraphTeacher
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving import Prediction, Predictor, load_exported
from vqgraph.targets import TeacherTargets, ensemble_targets
from vqgraph.training import (
    DistillConfig,
    StudentResult,
    TeacherResult,
    TrainConfig,
    fit_student,
    fit_teacher,
    fit_tokenizer,
    method_defaults,
)

__version__ = "0.1.0"

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
    "GraphTokenizer",
    "GraphValidationError",
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
    "TeacherConfig",
    "TeacherResult",
    "TeacherTargets",
    "TokenizerConfig",
    "TrainConfig",
    "UnknownDatasetError",
    "VQGraphError",
    "VQGraphTeacher",
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
]
