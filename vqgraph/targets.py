"""Teacher targets: the hand-over from the teacher to distillation, saved as one artifact.

For every node, by global id: the teacher's logits, its pre-quantization representation ``z``
(in code space) and its code index; plus the codebook, the config, the metrics, the split and
graph fingerprints and a format version. Soft code assignments (N x K) are not stored: the
student computes them per batch with :func:`vqgraph.losses.code_logits` from ``z`` and the
codebook. Saved with ``torch.save`` and read with ``torch.load(weights_only=True)`` (tensors and
plain containers only: nothing is unpickled), written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.splits import NodeSplit
from vqgraph.evaluation import Evaluator
from vqgraph.models.inference import infer_layerwise
from vqgraph.models.teacher import VQGraphTeacher
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


class NodeOutputs(NamedTuple):
    """A teacher's outputs for every node by global id: logits [N, C], z [N, D], codes [N]."""

    logits: Tensor
    z: Tensor
    codes: Tensor


@torch.no_grad()
def node_outputs(model: VQGraphTeacher, data: Data, split: NodeSplit, observed: Optional[Data] = None) -> NodeOutputs:
    """Teacher outputs for every node by global id: observed nodes from the observed graph
    (``observed``: ``split.observed_graph(data)``, built here if not given), hidden (inductive
    test) nodes from the full graph. Layer-wise, sharded over ranks
    (:func:`vqgraph.models.inference.infer_layerwise`); every rank returns all N rows."""
    device = next(model.parameters()).device
    graph = split.observed_graph(data) if observed is None else observed
    adj = model.adjacency(graph.edge_index, graph.num_nodes).to(device)
    model.eval()
    logits_o, z_o, codes_o, _ = infer_layerwise(model, graph.x.to(device), adj)
    n = data.num_nodes
    logits = torch.empty(n, logits_o.size(1))
    z = torch.empty(n, z_o.size(1))
    codes = torch.empty(n, dtype=torch.long)
    logits[graph.n_id], z[graph.n_id], codes[graph.n_id] = logits_o.cpu(), z_o.cpu(), codes_o.cpu()
    hidden = split.test_ind_idx
    if hidden.numel():
        adj_full = model.adjacency(data.edge_index, n).to(device)
        logits_f, z_f, codes_f, _ = infer_layerwise(model, data.x.to(device), adj_full)
        logits[hidden], z[hidden], codes[hidden] = logits_f[hidden].cpu(), z_f[hidden].cpu(), codes_f[hidden].cpu()
    return NodeOutputs(logits, z, codes)


def teacher_targets(model: VQGraphTeacher, outputs: NodeOutputs, data: Data, split: NodeSplit,
                    config: Mapping[str, Any], metrics: Mapping[str, Any]) -> TeacherTargets:
    """The targets artifact of a trained teacher, complete: its :func:`node_outputs`, codebook,
    ``config`` and ``metrics``, and the fingerprints of the graph and split they were made for."""
    codebook = model.codebook.detach().cpu().clone() if model.quantizer is not None else None
    return TeacherTargets(
        logits=outputs.logits,
        z=outputs.z,
        codes=outputs.codes,
        codebook=codebook,
        metric="cosine",
        config=dict(config),
        metrics=dict(metrics),
        graph_fingerprint=graph_fingerprint(data),
        split_fingerprint=split.fingerprint(),
        setting=split.setting.value,
        dataset=str(getattr(data, "name", "")),
    )


def ensemble_targets(members: Sequence[TeacherTargets], data: Optional[Data] = None,
                     split: Optional[NodeSplit] = None) -> TeacherTargets:
    """One set of targets from several teachers of the same graph and split: the soft labels are
    the members' mean class probabilities (stored as their log, so a temperature still applies);
    ``z``, the codes and the codebook are the first member's (the tokenizer the student's code
    term matches). With ``data`` and ``split``, the ensemble's own accuracy is its metrics (on
    the sets a single teacher's are: :meth:`~vqgraph.evaluation.Evaluator.for_teacher`).

    Raises:
        ArtifactMismatchError: the members are of different graphs, splits or class counts.
    """
    if not members:
        raise ValueError("ensemble_targets: no teachers given")
    first = members[0]
    for i, other in enumerate(members[1:], start=1):
        if other.logits.shape != first.logits.shape:
            raise ArtifactMismatchError(f"ensemble_targets: teacher {i} has logits {tuple(other.logits.shape)}, "
                                        f"teacher 0 {tuple(first.logits.shape)}")
        for key in ("graph_fingerprint", "split_fingerprint"):
            if getattr(other, key) != getattr(first, key):
                raise ArtifactMismatchError(f"ensemble_targets: teacher {i} was made for another graph or split "
                                            f"({key} {getattr(other, key)!r}, teacher 0 {getattr(first, key)!r})")
    if len(members) == 1:
        return first
    probs = torch.stack([m.logits.float().softmax(-1) for m in members]).mean(0)
    logits = probs.clamp_min(torch.finfo(probs.dtype).tiny).log()
    metrics: Dict[str, Any] = {"members": len(members)}
    if data is not None and split is not None:
        metrics.update(Evaluator.for_teacher(data.y, split)(logits))
    return dataclasses.replace(first, logits=logits, config={**first.config, "ensemble": len(members)}, metrics=metrics)


@torch.no_grad()
def smooth_soft_labels(probs: Tensor, edge_index: Tensor, hops: int, alpha: float,
                       labels: Optional[Tensor] = None, labelled: Optional[Tensor] = None) -> Tensor:
    """Soft labels mixed with their neighbours', weighted by the neighbours' reliability (a
    training-time target in the spirit of KRD; the student still predicts from features alone).

    ``hops`` rounds of ``Q <- (1 - alpha) * P + alpha * mean_r(Q over neighbours)``, starting from
    ``Q = P``, where ``mean_r`` weighs neighbour ``j`` by its reliability ``1 - H(P_j) / log C``
    (a confident teacher counts more). A node without a neighbour of positive reliability keeps its
    own row. With ``labels`` and a bool mask ``labelled``, the labelled rows of ``P`` are their
    one-hot labels (reliability 1), so the training labels spread to their neighbours as in label
    propagation. Rows stay probability distributions.

    Args:
        probs: [N, C] class probabilities (the calibrated teacher soft labels).
        edge_index: [2, E] edges by global id, only those the training may see (the observed graph).
    """
    if hops < 0 or not 0.0 <= alpha <= 1.0:
        raise ValueError(f"smooth_soft_labels: need hops >= 0 and 0 <= alpha <= 1, got {hops}, {alpha}")
    n, c = probs.shape
    base = probs.float().clone()
    if labels is not None and labelled is not None:
        base[labelled] = F.one_hot(labels[labelled], c).to(base.dtype)
    if hops == 0 or alpha == 0.0 or edge_index.numel() == 0:
        return base
    reliability = 1.0 - (-(base * base.clamp_min(1e-12).log()).sum(-1)) / max(math.log(c), 1e-12)
    reliability = reliability.clamp(0.0, 1.0)
    src, dst = edge_index.to(base.device)
    weight = reliability[src]
    total = torch.zeros(n, dtype=base.dtype, device=base.device).index_add_(0, dst, weight)
    has = (total > 0).unsqueeze(1)
    # one sparse [N, N] matrix of the weights (dst <- src): each round is one sparse-dense product,
    # O(E + N C) memory (an [E, C] gather would be 23 GB per round on ogbn-products)
    mix = torch.sparse_coo_tensor(torch.stack([dst, src]), weight, (n, n), check_invariants=False).coalesce()
    out = base
    for _ in range(hops):
        mean = torch.where(has, torch.sparse.mm(mix, out) / total.clamp_min(1e-12).unsqueeze(1), base)
        out = (1.0 - alpha) * base + alpha * mean
    return out
