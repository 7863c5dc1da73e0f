"""A served student as an exported program: what :meth:`~vqgraph.serving.Predictor.save` writes for
a student that is not an :class:`~vqgraph.models.student.MLPStudent` (and ``export`` for any), and
its reader for :meth:`~vqgraph.serving.Predictor.load`.

The program is the whole :class:`~vqgraph.serving.module.ServingModule` (feature transform, student
and codebook inside, features in, ``(probs, labels, codes)`` out), so a fresh process serves it
without the student's class. Beside it, the ``.pt2``'s manifest records under ``predictor`` what a
``Predictor`` needs (widths, the transform's kind, the codebook's size and similarity, the free-form
``meta``). Reading checks the archive (:mod:`vqgraph.serving.archive`: no pickles, only known
operators), then this record's every field, the program's buffers against it, and one call of the
program on a batch of zeros; a file that fails is one ``ArtifactMismatchError`` naming the path and
the field.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import torch
from torch import Tensor, nn

from vqgraph.data.transform import FEATURE_NORMS, FeatureTransform
from vqgraph.errors import ArtifactMismatchError
from vqgraph.losses import METRICS
from vqgraph.serving.archive import check_exported
from vqgraph.serving.module import StudentShape

PREDICTOR_KEYS = ("in_channels", "num_classes", "code_dim", "codes", "transform", "metric", "student", "meta")


class Program(NamedTuple):
    """A checked exported student: the program as a module and its record."""

    module: nn.Module
    shape: StudentShape
    transform: FeatureTransform
    codebook: Optional[Tensor]
    metric: str
    student: str  # the class name of the module it was exported from (information only)
    meta: Dict[str, Any]


def program_record(shape: StudentShape, transform: FeatureTransform, codebook: Optional[Tensor], metric: str,
                   student: str, meta: Dict[str, Any]) -> Dict[str, Any]:
    """The manifest's ``predictor`` entry (JSON); ``meta`` must be JSON (a TypeError naming the key otherwise)."""
    for key, value in meta.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError) as err:
            raise TypeError(f"an exported student keeps meta as JSON: meta[{key!r}] is a {type(value).__name__} "
                            f"({err}); pass plain numbers, strings, lists and dicts") from err
    return {"in_channels": shape.in_channels, "num_classes": shape.num_classes,
            "code_dim": shape.code_dim if codebook is not None else None,
            "codes": 0 if codebook is None else codebook.size(0), "transform": transform.kind, "metric": metric,
            "student": student, "meta": dict(meta)}


def is_program(path: Path) -> bool:
    """Whether ``path`` is a ``.pt2`` written by vqgraph's exporter (it has the manifest); not checked."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("/extra/vqgraph.json") for name in archive.namelist())
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def program_module(blob: bytes) -> nn.Module:
    """The checked bytes of a ``.pt2`` as a callable module, without autograd."""
    return torch.export.load(io.BytesIO(blob)).module().requires_grad_(False)


def read_program(path) -> Program:
    """The exported student at ``path``, checked whole (see the module's docstring)."""
    path = Path(path)
    blob, manifest = check_exported(path)
    record = manifest.get("predictor")
    if record is None:
        raise ArtifactMismatchError(f"{path}: an exported student without the predictor's record (written by "
                                    "Predictor.export of an older vqgraph): run it with vqgraph.load_exported(path)")
    record = _record(record, path)
    module = program_module(blob)
    buffers = dict(module.named_buffers())
    width, codes = record["in_channels"], record["codes"]
    transform = FeatureTransform(record["transform"])
    if transform.kind == "standard":
        mean, std = (_buffer(buffers, key, (width,), path) for key in ("mean", "std"))
        if not bool((std > 0).all()):
            raise ArtifactMismatchError(f"{path}: the program's transform std has scales <= 0 (a damaged file)")
        transform = FeatureTransform("standard", mean, std)
    codebook = _buffer(buffers, "codebook", (codes, record["code_dim"]), path) if codes else None
    shape = StudentShape(width, record["num_classes"], record["code_dim"])
    _check_outputs(module, shape, codes, path)
    return Program(module, shape, transform, codebook, record["metric"], record["student"], record["meta"])


def _record(record: Any, path: Path) -> Dict[str, Any]:
    if set(record) != set(PREDICTOR_KEYS):
        raise ArtifactMismatchError(f"{path}: the predictor's record has the keys {sorted(record)}, expected "
                                    f"{sorted(PREDICTOR_KEYS)} (a damaged file)")
    for key in ("in_channels", "num_classes", "code_dim", "codes"):
        value, least = record[key], 0 if key == "codes" else 1
        if not (value is None and key == "code_dim") and (type(value) is not int or value < least):
            raise ArtifactMismatchError(f"{path}: the predictor's record field {key!r} must be an integer >= {least}, "
                                        f"got {value!r} (a damaged file)")
    if record["codes"] and record["code_dim"] is None:
        raise ArtifactMismatchError(f"{path}: the predictor's record has {record['codes']} codes but no code_dim "
                                    "(a damaged file)")
    for key, known in (("transform", FEATURE_NORMS), ("metric", METRICS)):
        if record[key] not in known:
            raise ArtifactMismatchError(f"{path}: the predictor's record field {key!r} is {record[key]!r}; known: "
                                        f"{known} (a damaged file)")
    for key, kind in (("student", str), ("meta", dict)):
        if not isinstance(record[key], kind):
            raise ArtifactMismatchError(f"{path}: the predictor's record field {key!r} must be a {kind.__name__}, "
                                        f"got {type(record[key]).__name__} (a damaged file)")
    return record


def _buffer(buffers: Dict[str, Tensor], key: str, shape: tuple, path: Path) -> Tensor:
    value = buffers.get(key)
    if value is None or tuple(value.shape) != shape or value.dtype != torch.float32:
        got = "none" if value is None else f"{list(value.shape)} {value.dtype}"
        raise ArtifactMismatchError(f"{path}: the program's buffer {key!r} is {got}, its record says {list(shape)} "
                                    "float32 (a damaged file)")
    if not bool(torch.isfinite(value).all()):
        raise ArtifactMismatchError(f"{path}: the program's buffer {key!r} holds NaN/inf values (a damaged file)")
    return value


def _check_outputs(module: nn.Module, shape: StudentShape, codes: int, path: Path) -> None:
    """One call on 2 rows of zeros: probabilities [2, C], labels and codes [2] as the record says."""
    try:
        with torch.no_grad():
            probs, labels, found = module(torch.zeros(2, shape.in_channels))
    except Exception as err:
        raise ArtifactMismatchError(f"{path}: the program does not run on features [2, {shape.in_channels}] "
                                    f"(in_channels of its record): {type(err).__name__}: {err}") from err
    if tuple(probs.shape) != (2, shape.num_classes) or tuple(labels.shape) != (2,) or tuple(found.shape) != (2,):
        raise ArtifactMismatchError(f"{path}: the program returns {list(probs.shape)}, {list(labels.shape)}, "
                                    f"{list(found.shape)} for 2 rows; its record says [2, {shape.num_classes}] "
                                    "probabilities (a damaged file)")
    if not codes and bool((found != -1).any()):
        raise ArtifactMismatchError(f"{path}: the program returns codes but its record has no codebook (a damaged file)")
