"""Data layer: loaders for the CPF, OGB, heterophilic and synthetic graphs, and the split object.

Names are imported on first use (:mod:`vqgraph.utils.lazy`): ``vqgraph.data.transform``, which
serving reads, comes without the graph library.
"""

from vqgraph.utils.lazy import lazy_exports

_LAZY = {
    "vqgraph.data.datasets": (
        "DATA_ENV",
        "KNOWN_DATASETS",
        "DatasetSpec",
        "dataset_info",
        "get_spec",
        "load_dataset",
        "resolve_data_root",
        "resolve_data_roots",
    ),
    "vqgraph.data.graph": (
        "build_graph",
        "canonical_edges",
        "check_features",
        "check_graph",
        "ensure_graph",
        "normalize_features",
        "num_undirected_edges",
    ),
    "vqgraph.data.prepare": ("prepare_graph",),
    "vqgraph.data.splits": ("NodeSplit", "Setting", "cpf_split", "make_split"),
    "vqgraph.data.synthetic": ("degree_stats", "make_csbm", "make_dcsbm"),
    "vqgraph.data.transform": ("FEATURE_NORMS", "FeatureTransform"),
}
__getattr__, __dir__ = lazy_exports(__name__, _LAZY)

__all__ = [
    "DATA_ENV",
    "DatasetSpec",
    "FEATURE_NORMS",
    "FeatureTransform",
    "KNOWN_DATASETS",
    "NodeSplit",
    "Setting",
    "build_graph",
    "canonical_edges",
    "check_features",
    "check_graph",
    "cpf_split",
    "dataset_info",
    "degree_stats",
    "ensure_graph",
    "get_spec",
    "load_dataset",
    "make_csbm",
    "make_dcsbm",
    "make_split",
    "normalize_features",
    "num_undirected_edges",
    "prepare_graph",
    "resolve_data_root",
    "resolve_data_roots",
]
