"""vqgraph: distil graph neural networks into graph-free MLPs through a structure-aware codebook."""

from vqgraph.data import (
    KNOWN_DATASETS,
    NodeSplit,
    Setting,
    cpf_split,
    dataset_info,
    load_dataset,
    make_csbm,
    make_dcsbm,
    make_split,
    normalize_features,
    prepare_graph,
    resolve_data_root,
)
from vqgraph.errors import (
    DataFormatError,
    DatasetNotFoundError,
    DivergenceError,
    GraphValidationError,
    SplitError,
    VQGraphError,
)
from vqgraph.models import TeacherConfig, VQGraphTeacher
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving import Prediction, Predictor, load_exported
from vqgraph.targets import TeacherTargets, ensemble_targets
from vqgraph.training import DistillConfig, TrainConfig, fit_student, fit_teacher

__version__ = "0.1.0"

__all__ = [
    "KNOWN_DATASETS",
    "DistillConfig",
    "MLPStudent",
    "Prediction",
    "Predictor",
    "load_exported",
    "StudentConfig",
    "TeacherConfig",
    "TeacherTargets",
    "TrainConfig",
    "VQGraphTeacher",
    "ensemble_targets",
    "fit_student",
    "fit_teacher",
    "normalize_features",
    "DataFormatError",
    "DatasetNotFoundError",
    "DivergenceError",
    "GraphValidationError",
    "NodeSplit",
    "Setting",
    "SplitError",
    "VQGraphError",
    "cpf_split",
    "dataset_info",
    "load_dataset",
    "make_csbm",
    "make_dcsbm",
    "make_split",
    "prepare_graph",
    "resolve_data_root",
]
