"""vqgraph: distil graph neural networks into graph-free MLPs through a structure-aware codebook."""

from vqgraph.data import (
    KNOWN_DATASETS,
    NodeSplit,
    Setting,
    cpf_split,
    dataset_info,
    load_dataset,
    make_csbm,
    make_split,
    resolve_data_root,
)
from vqgraph.errors import (
    DataFormatError,
    DatasetNotFoundError,
    GraphValidationError,
    SplitError,
    VQGraphError,
)

__version__ = "0.1.0"

__all__ = [
    "KNOWN_DATASETS",
    "DataFormatError",
    "DatasetNotFoundError",
    "GraphValidationError",
    "NodeSplit",
    "Setting",
    "SplitError",
    "VQGraphError",
    "cpf_split",
    "dataset_info",
    "load_dataset",
    "make_csbm",
    "make_split",
    "resolve_data_root",
]
