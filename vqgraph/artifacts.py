"""Teacher targets: the hand-over from the teacher to distillation, saved as one artifact.

For every node, by global id: the teacher's logits, its pre-quantization representation ``z``
(in code space) and its code index; plus the codebook, the config, the metrics, the split and
graph fingerprints and a format version. Soft code assignments (N x K) are not stored: the
student computes them per batch with :func:`vqgraph.losses.code_logits` from ``z`` and the
codebook. Saved with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors and
plain containers only: nothing is unpickled), written atomically.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.errors import VQGraphError

FORMAT_VERSION = 1


class ArtifactMismatchError(VQGraphError, ValueError):
    """A saved artifact does not match the graph, split or format it is used with."""


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

    Attributes:
        logits: [N, C] teacher logits. z: [N, D] pre-quantization representations.
        codes: [N] code indices (-1 if the teacher has no tokenizer). codebook: [K, D] or None.
        metric: the similarity the quantizer used (``code_logits(z, codebook, metric)``).
    """

    logits: Tensor
    z: Tensor
    codes: Tensor
    codebook: Optional[Tensor]
    metric: str = "cosine"
    config: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    graph_fingerprint: str = ""
    split_fingerprint: str = ""
    setting: str = ""
    dataset: str = ""

    @property
    def num_nodes(self) -> int:
        return self.logits.size(0)

    def check_matches(self, data: Data, split=None) -> None:
        """Raise :class:`ArtifactMismatchError` unless these targets were made for ``data`` (and ``split``)."""
        if self.num_nodes != data.num_nodes:
            raise ArtifactMismatchError(
                f"teacher targets have {self.num_nodes} rows but the graph has {data.num_nodes} nodes"
            )
        if self.graph_fingerprint and self.graph_fingerprint != graph_fingerprint(data):
            raise ArtifactMismatchError(
                f"teacher targets were made for another graph (fingerprint {self.graph_fingerprint}, "
                f"this graph {graph_fingerprint(data)}; dataset {self.dataset!r})"
            )
        if split is not None and self.split_fingerprint and self.split_fingerprint != split.fingerprint():
            raise ArtifactMismatchError(
                f"teacher targets were made for another split (setting {self.setting!r}, fingerprint "
                f"{self.split_fingerprint}; this split: {split.setting.value}, {split.fingerprint()})"
            )

    def save(self, path) -> Path:
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
        path = Path(path)
        payload = read_artifact(path, "teacher")
        version = payload.get("format_version")
        if version != FORMAT_VERSION:
            raise ArtifactMismatchError(f"{path}: format version {version!r}, this vqgraph reads {FORMAT_VERSION}")
        return cls(**payload["tensors"], **payload["meta"])


def read_artifact(path: Path, kind: str) -> dict:
    """The payload of a vqgraph artifact (a dict of tensors and plain containers), read with
    ``torch.load(weights_only=True)``; clear errors for a missing or unreadable file."""
    if not path.is_file():
        raise FileNotFoundError(f"{kind} artifact {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ArtifactMismatchError(f"{path}: not a readable {kind} artifact: {err}") from err
    if not isinstance(payload, dict):
        raise ArtifactMismatchError(f"{path}: not a vqgraph {kind} artifact")
    return payload


def _publish(tmp: str, path: Path) -> None:
    """Give a temporary file the permissions a plain ``open`` would have, then rename it."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    os.replace(tmp, path)


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        _publish(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
