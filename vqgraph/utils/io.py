"""Files written atomically and artifacts read without unpickling."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor

from vqgraph.errors import ArtifactMismatchError, NotWritableError


def ensure_writable(folder, what: str) -> Path:
    """Create ``folder`` if needed and check that a file can be written in it, so that a run
    fails before training, not after it; raises :class:`NotWritableError` naming ``what``."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-check.", suffix=".tmp")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise NotWritableError(f"{what} {folder} cannot be written: {err.strerror or err}") from err
    return folder


def remove_if_empty(folder) -> None:
    """Remove ``folder`` if it exists and holds nothing (what a failed run's checks created)."""
    try:
        Path(folder).rmdir()
    except OSError:
        pass


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


def artifact_field(fields: Any, key: str, types, path: Path, section: str = "") -> Any:
    """``fields[key]`` of the artifact ``path`` if it is there and an instance of ``types`` (a
    ``bool`` is no ``int`` here); else :class:`ArtifactMismatchError` naming the path and field."""
    name = f"{section}.{key}" if section else key
    if not isinstance(fields, Mapping) or key not in fields:
        raise ArtifactMismatchError(f"{path}: field {name!r} is missing (a damaged artifact)")
    value = fields[key]
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        wanted = " or ".join("None" if t is type(None) else t.__name__ for t in types)
        raise ArtifactMismatchError(f"{path}: field {name!r} must be {wanted}, got {type(value).__name__} "
                                    "(a damaged artifact)")
    return value


def artifact_tensor(value: Any, path: Path, name: str, dtype=None, shape: Sequence[Optional[int]] = (),
                    finite: bool = True) -> Tensor:
    """``value``, the field ``name`` of the artifact ``path``, if it is a dense tensor of ``dtype``
    (``"float"``: any floating type; None: any) and ``shape`` (one entry per dimension, None for
    any size), with only finite values when ``finite``; else :class:`ArtifactMismatchError`."""
    if not isinstance(value, Tensor) or value.layout != torch.strided:
        raise ArtifactMismatchError(f"{path}: field {name!r} must be a dense tensor, got {type(value).__name__} "
                                    "(a damaged artifact)")
    if not (value.is_floating_point() if dtype == "float" else dtype in (None, value.dtype)):
        expected = "a floating type" if dtype == "float" else dtype
        raise ArtifactMismatchError(f"{path}: field {name!r} has dtype {value.dtype}, expected {expected} "
                                    "(a damaged artifact)")
    if len(shape) != value.dim() or any(want is not None and want != got for want, got in zip(shape, value.shape)):
        expected = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ArtifactMismatchError(f"{path}: field {name!r} has shape {list(value.shape)}, expected {expected} "
                                    "(a damaged artifact)")
    if finite and value.is_floating_point() and value.numel() and not bool(torch.isfinite(value).all()):
        bad = int((~torch.isfinite(value)).sum())
        raise ArtifactMismatchError(f"{path}: field {name!r} holds {bad} NaN/inf values (a damaged artifact)")
    return value


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
