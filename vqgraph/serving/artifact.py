"""The student artifact (``student.pt``): what :meth:`Predictor.save` writes, and its check.

:func:`read_student` reads the file with ``torch.load(weights_only=True)`` and checks it whole
before anything is built from it: every recorded field's type and value (widths, the student's
architecture, the transform kind and the similarity known), every tensor's dtype, shape (the
weights' against the recorded widths, the transform's statistics against the feature width, the
codebook's against the projection's) and finiteness. A file that fails is one
:class:`~vqgraph.errors.ArtifactMismatchError` naming the path and the field.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import torch
from torch import Tensor, nn

from vqgraph.data.transform import FEATURE_NORMS, FeatureTransform
from vqgraph.errors import ArtifactMismatchError
from vqgraph.losses import METRICS
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving.module import StudentShape
from vqgraph.utils.io import artifact_field, artifact_tensor, read_artifact

STUDENT_FORMAT = "vqgraph-student"
STUDENT_FORMAT_VERSION = 1


class StudentArtifact(NamedTuple):
    """A checked student artifact: what a :class:`~vqgraph.serving.Predictor` is built from."""

    in_channels: int
    num_classes: int
    config: StudentConfig
    code_dim: Optional[int]
    state_dict: Dict[str, Tensor]
    transform: FeatureTransform
    codebook: Optional[Tensor]
    metric: str
    meta: Dict[str, Any]

    def build(self) -> MLPStudent:
        model = MLPStudent(self.in_channels, self.num_classes, self.config, self.code_dim)
        model.load_state_dict(self.state_dict)
        return model.eval()


def student_payload(model: MLPStudent, transform: FeatureTransform, codebook: Optional[Tensor], metric: str,
                    meta: Dict[str, Any]) -> dict:
    """The artifact's content (tensors and plain containers only)."""
    return {
        "format": STUDENT_FORMAT,
        "format_version": STUDENT_FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "student": model.config.to_dict(),
        "in_channels": model.in_channels,
        "num_classes": model.num_classes,
        "code_dim": model.code_dim,
        "transform": {
            "kind": transform.kind,
            "mean": None if transform.mean is None else transform.mean.cpu(),
            "std": None if transform.std is None else transform.std.cpu(),
        },
        "codebook": None if codebook is None else codebook.detach().cpu(),
        "metric": metric,
        "meta": meta,
    }


def read_student(path) -> StudentArtifact:
    """The student artifact at ``path``, checked whole (see the module's docstring)."""
    path = Path(path)
    payload = read_artifact(path, "student")
    if payload.get("format") != STUDENT_FORMAT:
        raise ArtifactMismatchError(f"{path}: not a vqgraph student artifact")
    if payload.get("format_version") != STUDENT_FORMAT_VERSION:
        raise ArtifactMismatchError(f"{path}: student format version {payload.get('format_version')!r}, "
                                    f"this vqgraph reads {STUDENT_FORMAT_VERSION}")
    widths = {}
    for key in ("in_channels", "num_classes", "code_dim"):
        value = artifact_field(payload, key, (int, type(None)) if key == "code_dim" else int, path)
        if value is not None and value < 1:
            raise ArtifactMismatchError(f"{path}: field {key!r} must be >= 1, got {value} (a damaged artifact)")
        widths[key] = value
    config = _student_config(payload, path)
    state = artifact_field(payload, "state_dict", dict, path)
    if config.num_layers > len(state):  # each layer has a weight; and nothing this large is built
        raise ArtifactMismatchError(f"{path}: field 'student.num_layers' is {config.num_layers} but 'state_dict' "
                                    f"holds {len(state)} tensors (a damaged artifact)")
    try:
        with torch.device("meta"):  # the expected weights' shapes and dtypes; nothing allocated
            reference = MLPStudent(widths["in_channels"], widths["num_classes"], config, widths["code_dim"])
    except ValueError as err:
        raise ArtifactMismatchError(f"{path}: field 'student' does not fit the recorded widths: {err}") from err
    expected = reference.state_dict()
    if set(state) != set(expected):
        raise ArtifactMismatchError(f"{path}: field 'state_dict' holds the weights {sorted(state)}, the recorded "
                                    f"architecture has {sorted(expected)} (a damaged artifact)")
    for key, ref in expected.items():
        artifact_tensor(state[key], path, f"state_dict.{key}", ref.dtype, tuple(ref.shape))
    transform = _transform(payload, widths["in_channels"], path)
    codebook = artifact_field(payload, "codebook", (Tensor, type(None)), path)
    if codebook is not None:
        if widths["code_dim"] is None:
            raise ArtifactMismatchError(f"{path}: field 'codebook' is set but the student has no projection into "
                                        "code space (code_dim None; a damaged artifact)")
        artifact_tensor(codebook, path, "codebook", torch.float32, (None, widths["code_dim"]))
        if codebook.size(0) == 0:
            raise ArtifactMismatchError(f"{path}: field 'codebook' has no codes (a damaged artifact)")
    metric = artifact_field(payload, "metric", str, path)
    if metric not in METRICS:
        raise ArtifactMismatchError(f"{path}: field 'metric' is {metric!r}; known: {METRICS} (a damaged artifact)")
    meta = artifact_field(payload, "meta", dict, path)
    return StudentArtifact(widths["in_channels"], widths["num_classes"], config, widths["code_dim"], state,
                           transform, codebook, metric, meta)


def _student_config(payload: dict, path: Path) -> StudentConfig:
    """The recorded architecture: known keys (a key added later may be missing: its default),
    each of its field's type, finite, in the ranges :class:`StudentConfig` accepts."""
    recorded = artifact_field(payload, "student", dict, path)
    fields = {f.name: f for f in dataclasses.fields(StudentConfig)}
    unknown = sorted(set(recorded) - set(fields), key=str)
    if unknown:
        raise ArtifactMismatchError(f"{path}: field 'student' has unknown keys {unknown} (a damaged artifact)")
    for key, value in recorded.items():
        kind = type(fields[key].default)
        types = (int, float) if kind is float else kind
        artifact_field(recorded, key, types, path, "student")
        if kind is float and not math.isfinite(value):
            raise ArtifactMismatchError(f"{path}: field 'student.{key}' is {value} (a damaged artifact)")
    try:
        return StudentConfig(**recorded)
    except (TypeError, ValueError) as err:
        raise ArtifactMismatchError(f"{path}: field 'student' is not a valid architecture: {err}") from err


def _transform(payload: dict, width: int, path: Path) -> FeatureTransform:
    """The recorded feature normalisation: a known kind; for ``standard`` finite statistics of the
    feature width (positive scales), for the others none."""
    recorded = artifact_field(payload, "transform", dict, path)
    kind = artifact_field(recorded, "kind", str, path, "transform")
    if kind not in FEATURE_NORMS:
        raise ArtifactMismatchError(f"{path}: field 'transform.kind' is {kind!r}; known: {FEATURE_NORMS} "
                                    "(a damaged artifact)")
    stats = [artifact_field(recorded, key, (Tensor, type(None)), path, "transform") for key in ("mean", "std")]
    if kind != "standard":
        if any(s is not None for s in stats):
            raise ArtifactMismatchError(f"{path}: field 'transform' of kind {kind!r} has statistics "
                                        "(a damaged artifact)")
        return FeatureTransform(kind)
    mean, std = (artifact_tensor(s, path, f"transform.{key}", torch.float32, (width,))
                 for s, key in zip(stats, ("mean", "std")))
    if not bool((std > 0).all()):
        raise ArtifactMismatchError(f"{path}: field 'transform.std' has scales <= 0 (a damaged artifact)")
    return FeatureTransform(kind, mean, std)


def check_parts(model: nn.Module, shape: StudentShape, transform: FeatureTransform, codebook: Optional[Tensor],
                metric: str) -> None:
    """The parts of a predictor fit together (``shape``: :func:`~vqgraph.serving.module.student_shape`
    of ``model``): a ``ValueError`` (``TypeError`` for a wrong kind of object) naming the first that
    does not."""
    if not isinstance(transform, FeatureTransform) or transform.kind not in FEATURE_NORMS:
        kind = transform.kind if isinstance(transform, FeatureTransform) else type(transform).__name__
        raise ValueError(f"unknown feature transform {kind!r}; a FeatureTransform of kind {FEATURE_NORMS}")
    if transform.kind == "standard":
        for name, stat in (("mean", transform.mean), ("std", transform.std)):
            if not isinstance(stat, Tensor) or tuple(stat.shape) != (shape.in_channels,):
                got = list(stat.shape) if isinstance(stat, Tensor) else type(stat).__name__
                raise ValueError(f"the feature transform's {name} has shape {got}, the student reads "
                                 f"{shape.in_channels} features")
            if not bool(torch.isfinite(stat).all()):
                raise ValueError(f"the feature transform's {name} holds NaN/inf values")
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose from {METRICS}")
    if codebook is not None:
        if shape.code_dim is None:
            raise ValueError("a codebook was given but the student has no projection into code space"
                             + ("" if isinstance(model, MLPStudent) else
                                f" ({type(model).__name__}'s forward returns logits only, no (logits, z))"))
        if not isinstance(codebook, Tensor) or codebook.dim() != 2 or codebook.size(0) == 0:
            raise ValueError(f"the codebook must be a [K, {shape.code_dim}] tensor, got "
                             f"{list(codebook.shape) if isinstance(codebook, Tensor) else type(codebook).__name__}")
        if codebook.size(1) != shape.code_dim:
            raise ValueError(f"codebook width {codebook.size(1)} != the student's code width {shape.code_dim}")
        if not bool(torch.isfinite(codebook).all()):
            raise ValueError("the codebook holds NaN/inf values")
    for name, value in model.state_dict().items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise ValueError(f"the student's {name} holds NaN/inf values")
