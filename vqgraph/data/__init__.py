"""Data layer: loaders for the CPF, OGB, heterophilic and synthetic graphs, and the split object."""

from vqgraph.data.datasets import (
    DATA_ENV,
    KNOWN_DATASETS,
    DatasetSpec,
    dataset_info,
    get_spec,
    load_dataset,
    resolve_data_root,
    resolve_data_roots,
)
from vqgraph.data.graph import (
    FeatureTransform,
    build_graph,
    canonical_edges,
    check_features,
    check_graph,
    ensure_graph,
    normalize_features,
    num_undirected_edges,
)
from vqgraph.data.prepare import prepare_graph
from vqgraph.data.splits import NodeSplit, Setting, cpf_split, make_split
from vqgraph.data.synthetic import degree_stats, make_csbm, make_dcsbm

__all__ = [
    "DATA_ENV",
    "KNOWN_DATASETS",
    "DatasetSpec",
    "FeatureTransform",
    "NodeSplit",
    "Setting",
    "build_graph",
    "canonical_edges",
    "check_features",
    "check_graph",
    "cpf_split",
    "dataset_info",
    "get_spec",
    "load_dataset",
    "make_csbm",
    "make_dcsbm",
    "degree_stats",
    "make_split",
    "normalize_features",
    "num_undirected_edges",
    "prepare_graph",
    "ensure_graph",
    "resolve_data_root",
    "resolve_data_roots",
]
