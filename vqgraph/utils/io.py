"""Files written atomically, a run folder's lock, and artifacts read without unpickling."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
import tempfile
import warnings
import zipfile
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
    if path.is_dir():
        raise ArtifactMismatchError(f"{kind} artifact {path} is a folder, not a file: give the file's path")
    if not path.is_file():
        raise FileNotFoundError(f"{kind} artifact {path} does not exist")
    if path.stat().st_size == 0:
        raise ArtifactMismatchError(f"{path}: not a readable {kind} artifact: the file is empty (0 bytes; still "
                                    "being written, or a failed copy)")
    try:
        with zipfile.ZipFile(path) as archive:
            packed = compressed_member(archive)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as err:
        raise ArtifactMismatchError(f"{path}: not a readable {kind} artifact: not a zip archive as torch.save "
                                    f"writes ({err})") from err
    if packed is not None:
        raise ArtifactMismatchError(f"{path}: not a readable {kind} artifact: its member {packed!r} is compressed, "
                                    "which torch.save never writes (it could expand to any size: a crafted file)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ArtifactMismatchError(f"{path}: not a readable {kind} artifact: {err}") from err
    if not isinstance(payload, dict):
        raise ArtifactMismatchError(f"{path}: not a vqgraph {kind} artifact")
    return payload


def compressed_member(archive: zipfile.ZipFile) -> Optional[str]:
    """The name of the first compressed member of ``archive``, or None. torch writes every member
    stored, so that the file's size bounds what reading it allocates; a compressed member of a
    few kilobytes could expand to gigabytes (a zip bomb) before any check sees it."""
    return next((info.filename for info in archive.infolist() if info.compress_type != zipfile.ZIP_STORED), None)


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


def _open(fd: int, mode: str):
    """The file object every atomic write goes through (tests make it fail as a full disk would)."""
    return os.fdopen(fd, mode)


def _atomic_write(path, mode: str, write) -> None:
    """``write(file)`` into a temporary file beside ``path``, then rename: never a half-written
    file. A full disk or an exceeded quota is a :class:`NotWritableError` naming the folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with _open(fd, mode) as out:
            write(out)
        _publish(tmp, path)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            quota = " (disk quota exceeded)" if err.errno == errno.EDQUOT else ""
            raise NotWritableError(f"no space left on device for {path.parent}{quota}: {path.name} was not written "
                                   "(nothing half-written was kept); free some space or choose another folder") from err
        raise


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: never a half-written file."""
    _atomic_write(path, "wb", lambda out: torch.save(obj, out))


def atomic_write_text(path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    _atomic_write(path, "w", lambda out: out.write(text))


LOCK_NAME = ".vqgraph.lock"


def _lock_holder(lock: Path) -> tuple:
    """``(pid, host)`` written in ``lock``; ``(None, None)`` when it cannot be read."""
    try:
        pid, host = lock.read_text().split(maxsplit=1)
        return int(pid), host.strip()
    except (OSError, ValueError):
        return None, None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _caller_level() -> int:
    """The ``stacklevel`` that points :func:`folder_lock`'s warning at the code that took the lock,
    past contextlib's frames (``__enter__``, ``ExitStack.enter_context``), not at contextlib."""
    level, frame = 2, sys._getframe(2)  # 0: here, 1: folder_lock
    while frame is not None and frame.f_code.co_filename == contextlib.__file__:
        level, frame = level + 1, frame.f_back
    return level


def _create_whole(path: Path, text: str) -> None:
    """Create ``path`` holding ``text``, or raise ``FileExistsError``: written beside it first and
    hard-linked into place (atomic, and never visible empty to a process that reads it at once)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        try:
            os.link(tmp, path)  # fails if the path exists
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links: create exclusively, then write
            with os.fdopen(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644), "w") as out:
                out.write(text)
    finally:
        os.unlink(tmp)


@contextlib.contextmanager
def folder_lock(folder, what: str = "run folder"):
    """Hold ``folder``'s lock file (created atomically, holding this process's pid and host)
    while the block runs, so that two runs never write one folder at once; removed at the end.
    A lock left by a dead process of this host is taken over with a warning; a live one is a
    :class:`NotWritableError` naming the folder and the process."""
    lock = Path(folder) / LOCK_NAME
    mine = f"{os.getpid()} {socket.gethostname()}\n"
    for attempt in range(2):
        try:
            _create_whole(lock, mine)
        except FileExistsError:
            pid, host = _lock_holder(lock)
            if attempt or pid is None or host != socket.gethostname() or _alive(pid):
                holder = f"process {pid} on {host}" if pid is not None else "another process"
                raise NotWritableError(f"{what} {folder} is in use by {holder} (lock file {lock}): wait for that run "
                                       "to end, or choose another folder; remove the lock file only if no run is "
                                       "writing there") from None
            warnings.warn(f"{lock}: taking over the lock of process {pid}, which is no longer running",
                          stacklevel=_caller_level())
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        break
    try:
        yield lock
    finally:
        if _lock_holder(lock) == (os.getpid(), socket.gethostname()):
            lock.unlink()
