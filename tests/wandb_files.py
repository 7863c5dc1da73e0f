"""Read what an offline W&B run wrote, without the service: history rows, summary, config.

An offline run keeps its records in ``run-<id>.wandb``: a LevelDB-style log (32 KiB blocks,
7-byte record headers: crc32, length, type) after a 7-byte ``:W&B`` file header, each record a
``wandb_internal_pb2.Record`` protobuf. Used by the tests, and handy for checking a run before
``wandb sync``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any, Dict, Iterator, List

_BLOCK = 32768
_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path) -> Iterator[Any]:
    """Yield the protobuf records of a ``.wandb`` file in order."""
    from wandb.proto import wandb_internal_pb2

    raw = Path(path).read_bytes()
    if raw[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B run file (bad header {raw[:4]!r})")
    pos, pending = _HEADER, b""
    while pos + _HEADER <= len(raw):
        left = _BLOCK - pos % _BLOCK
        if left < _HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + _HEADER])
        pos += _HEADER
        chunk, pos = raw[pos : pos + length], pos + length
        if kind == _FULL:
            yield wandb_internal_pb2.Record.FromString(chunk)
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield wandb_internal_pb2.Record.FromString(pending + chunk)
            pending = b""


def _items(items) -> Dict[str, Any]:
    """Record items as a dict; a value W&B flattened into parts (a histogram's ``_type``, ``bins``
    and ``values``; an image's ``path``, ...) is put back together under its first key."""
    out: Dict[str, Any] = {}
    for item in items:
        value = json.loads(item.value_json)
        if item.key or len(item.nested_key) == 1:
            out[item.key or item.nested_key[0]] = value
            continue
        node = out.setdefault(item.nested_key[0], {})
        for part in item.nested_key[1:-1]:
            node = node.setdefault(part, {})
        node[item.nested_key[-1]] = value
    return out


def read_offline_run(run_dir) -> Dict[str, Any]:
    """``{"history": [row, ...], "summary": {...}, "config": {...}}`` of an offline run folder."""
    files = sorted(Path(run_dir).glob("run-*.wandb"))
    if not files:
        raise FileNotFoundError(f"no run-*.wandb file in {run_dir}")
    history: List[Dict[str, Any]] = []
    summary: Dict[str, Any] = {}
    config: Dict[str, Any] = {}
    for record in iter_records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "history":
            history.append(_items(record.history.item))
        elif kind == "summary":
            summary.update(_items(record.summary.update))
        elif kind == "config":
            config.update({k: v.get("value", v) if isinstance(v, dict) else v for k, v in _items(record.config.update).items()})
        elif kind == "run" and record.run.config.update:
            config.update(
                {k: v.get("value", v) if isinstance(v, dict) else v for k, v in _items(record.run.config.update).items()}
            )
    return {"history": history, "summary": summary, "config": config}
