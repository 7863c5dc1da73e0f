"""The targets artifact: the hand-over from a teacher to distillation, saved as one file.

For every node, by global id: the teacher's logits, its representation ``z`` (the built-in
teacher's: pre-quantization, in code space; ``[N, 0]`` when the teacher gave none) and its code
index (-1 without a codebook); plus the codebook, the config, the metrics, the split and graph
fingerprints and a format version. Soft code assignments (N x K) are not stored: the student
computes them per batch with :func:`vqgraph.losses.code_logits` from ``z`` and the codebook.
Saved with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors and plain
containers only: nothing is unpickled), written atomically. Targets are made by
:func:`~vqgraph.targets.targets_from_outputs`, which checks them at the door.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.errors import ArtifactMismatchError
from vqgraph.losses import METRICS
from vqgraph.utils.io import artifact_field, artifact_tensor, atomic_torch_save, read_artifact

FORMAT_VERSION = 1


def graph_fingerprint(data: Data) -> str:
    """A short hash of a graph's structure, labels and features (so a change of feature
    normalisation is a different graph too)."""
    digest = hashlib.sha256(f"{data.num_nodes}:{tuple(data.x.shape)}".encode())
    for tensor in (data.edge_index, data.y, data.x):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class TeacherTargets:
    """Per-node teacher outputs indexed by global node id (N rows each).

    Made by :func:`~vqgraph.targets.targets_from_outputs` (any teacher's saved outputs),
    :func:`~vqgraph.targets.targets_from_model` (any PyG-style model) or the built-in teacher's
    :func:`~vqgraph.training.fit_teacher`, all through the same checks; read back by :meth:`load`.

    Attributes:
        logits: [N, C] teacher logits. z: [N, D] the teacher's representations; ``[N, 0]`` when
            it gave none (``z=None`` here: soft labels only, :attr:`has_z` is False).
        codes: [N] code indices (-1 for no code; ``None`` here: all -1). codebook: [K, D] or None.
        metric: the similarity the quantizer used (``code_logits(z, codebook, metric)``).
    """

    logits: Tensor
    z: Optional[Tensor] = None
    codes: Optional[Tensor] = None
    codebook: Optional[Tensor] = None
    metric: str = "cosine"
    config: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    graph_fingerprint: str = ""
    split_fingerprint: str = ""
    setting: str = ""
    dataset: str = ""

    def __post_init__(self):
        n = self.logits.size(0)
        if self.z is None:  # soft labels only: a representation of width 0 (moves, indexes and saves as any)
            self.z = self.logits.new_zeros(n, 0)
        if self.codes is None:
            self.codes = torch.full((n,), -1, dtype=torch.long)

    @property
    def num_nodes(self) -> int:
        return self.logits.size(0)

    @property
    def has_z(self) -> bool:
        """Whether the teacher gave a representation (``z`` has columns)."""
        return self.z.size(1) > 0

    def require_z(self, user: str) -> Tensor:
        """The representation ``z`` [N, D], for ``user`` (what needs it: named in the error).

        Raises:
            ValueError: these targets have none (made with ``representation=None`` or ``z=None``).
        """
        if not self.has_z:
            raise ValueError(
                f"{user} needs the teacher's representation z, and these teacher targets have none (made with "
                "representation=None or z=None). Make them with one: targets_from_model(model, data, split, "
                "representation='<submodule name>', e.g. 'convs.0') or targets_from_outputs(logits, data, split, "
                "z=...); the code term needs a codebook too, which fit_tokenizer(targets, data, split) learns from z")
        return self.z

    def check_matches(self, data: Data, split=None) -> None:
        """Raise :class:`ArtifactMismatchError` unless these targets were made for ``data`` (and ``split``)."""
        if self.num_nodes != data.num_nodes:
            raise ArtifactMismatchError(
                f"teacher targets have {self.num_nodes} rows but the graph has {data.num_nodes} nodes"
            )
        if self.graph_fingerprint and self.graph_fingerprint != graph_fingerprint(data):
            raise ArtifactMismatchError(
                f"teacher targets were made for another graph (fingerprint {self.graph_fingerprint}, "
                f"this graph {graph_fingerprint(data)}; dataset {self.dataset!r}; features normalised otherwise make "
                "another graph too): pass the graph they were made for, or make them anew for this one"
            )
        if split is not None and self.split_fingerprint and self.split_fingerprint != split.fingerprint():
            raise ArtifactMismatchError(
                f"teacher targets were made for another split (setting {self.setting!r}, fingerprint "
                f"{self.split_fingerprint}; this split: {split.setting.value}, {split.fingerprint()}): pass the split "
                "they were made with (same seed and setting), or make them anew for this split"
            )

    def save(self, path) -> Path:
        """Write the targets to ``path`` atomically (tensors and plain containers; ``tensors.z`` is
        ``[N, 0]`` for targets without a representation). Returns the path."""
        path = Path(path)
        payload = {
            "format_version": FORMAT_VERSION,
            "tensors": {"logits": self.logits, "z": self.z, "codes": self.codes, "codebook": self.codebook},
            "meta": {
                "metric": self.metric,
                "config": self.config,
                "metrics": self.metrics,
                "graph_fingerprint": self.graph_fingerprint,
                "split_fingerprint": self.split_fingerprint,
                "setting": self.setting,
                "dataset": self.dataset,
            },
        }
        atomic_torch_save(payload, path)
        return path

    @classmethod
    def load(cls, path) -> "TeacherTargets":
        """Read targets written by :meth:`save`, checked whole before use: the tensors' dtypes,
        shapes against each other (N rows each, ``z`` as wide as the codebook), finite values,
        codes inside the codebook (-1 without one), a known metric and the recorded fields' types.
        Anything else is an :class:`ArtifactMismatchError` naming the path and the field."""
        path = Path(path)
        payload = read_artifact(path, "teacher")
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactMismatchError(f"{path}: format version {version!r}, this vqgraph reads {FORMAT_VERSION}")
        tensors = artifact_field(payload, "tensors", dict, path)
        meta = artifact_field(payload, "meta", dict, path)
        unknown = sorted(f"tensors.{k}" for k in set(tensors) - {"logits", "z", "codes", "codebook"})
        unknown += sorted(f"meta.{k}" for k in set(meta) - set(_META_TYPES))
        if unknown:
            raise ArtifactMismatchError(f"{path}: not a teacher artifact (unexpected fields {unknown})")
        for key, types in _META_TYPES.items():
            if key in meta:  # an artifact written before a key existed: its default
                artifact_field(meta, key, types, path, "meta")
        if meta.get("metric", "cosine") not in METRICS:
            raise ArtifactMismatchError(f"{path}: field 'meta.metric' is {meta['metric']!r}; known: {METRICS} "
                                        "(a damaged artifact)")
        return cls(**_checked_tensors(tensors, path), **meta)


_META_TYPES = {"metric": str, "config": dict, "metrics": dict, "graph_fingerprint": str, "split_fingerprint": str,
               "setting": str, "dataset": str}


def _checked_tensors(tensors: dict, path: Path) -> Dict[str, Optional[Tensor]]:
    """The tensors of a teacher artifact, if they fit together (see :meth:`TeacherTargets.load`)."""
    fields = {key: artifact_field(tensors, key, Tensor, path, "tensors") for key in ("logits", "z", "codes")}
    logits = artifact_tensor(fields["logits"], path, "tensors.logits", "float", (None, None))
    n = logits.size(0)
    if n == 0 or logits.size(1) == 0:
        raise ArtifactMismatchError(f"{path}: field 'tensors.logits' is empty {list(logits.shape)} (a damaged artifact)")
    z = artifact_tensor(fields["z"], path, "tensors.z", "float", (n, None))
    codes = artifact_tensor(fields["codes"], path, "tensors.codes", torch.long, (n,))
    codebook = artifact_field(tensors, "codebook", (Tensor, type(None)), path, "tensors")
    if codebook is not None and z.size(1) == 0:
        raise ArtifactMismatchError(f"{path}: field 'tensors.codebook' is set but 'tensors.z' has no columns "
                                    "(a codebook needs the representation it quantizes; a damaged artifact)")
    if codebook is None:
        low = high = -1
    else:
        artifact_tensor(codebook, path, "tensors.codebook", "float", (None, z.size(1)))
        low, high = 0, codebook.size(0) - 1
    if bool(((codes < low) | (codes > high)).any()):
        bad = int(((codes < low) | (codes > high)).sum())
        wanted = "-1 (there is no codebook)" if codebook is None else f"in [0, {high}] (the codebook has {high + 1} codes)"
        raise ArtifactMismatchError(f"{path}: field 'tensors.codes' has {bad} indices that are not {wanted} "
                                    "(a damaged artifact)")
    return {"logits": logits, "z": z, "codes": codes, "codebook": codebook}
