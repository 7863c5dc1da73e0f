"""Leaving nothing behind: what a failed attempt (a download, a reader's first run) created under
a folder, and the folders above it that it created, are removed; nothing that existed before is
touched."""

from __future__ import annotations

from pathlib import Path


def snapshot(folder: Path):
    """Files and folders under ``folder``, and the folders above it that do not exist yet."""
    below = set(folder.rglob("*")) if folder.exists() else set()
    missing_above = [p for p in (folder, *folder.parents) if not p.exists()]  # deepest first
    return below, missing_above


def prune(folder: Path, taken) -> None:
    """Remove what an attempt added under ``folder`` (files, then folders, deepest first) and the
    folders above it that it created; nothing that existed before is touched."""
    before, missing_above = taken  # what snapshot(folder) returned before the attempt
    new = set(folder.rglob("*")) - before if folder.exists() else set()
    for path in (p for p in new if p.is_file() or p.is_symlink()):
        path.unlink(missing_ok=True)
    for path in sorted((p for p in new if p.is_dir()), key=lambda p: len(p.parts), reverse=True) + missing_above:
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def guarded(folder: Path, make):
    """``make()``; if it fails in any way (an interrupt included), what it added under ``folder`` is removed."""
    taken = snapshot(folder)
    try:
        return make()
    except BaseException:
        prune(folder, taken)
        raise
