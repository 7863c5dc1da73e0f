"""Standalone model files of a serving module: ``torch_export`` (read back with torch alone,
:func:`load_exported`) and ``onnx``."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from vqgraph.errors import ArtifactMismatchError
from vqgraph.serving.archive import add_manifest, read_exported
from vqgraph.serving.program import program_module

EXPORT_FORMATS = ("torch_export", "onnx")


def export_module(module: nn.Module, path, format: str, in_channels: int, example_batch: int = 16,
                  predictor: Optional[Dict[str, Any]] = None) -> Path:
    """Write ``module`` (features [B, ``in_channels``] in, any batch size) to ``path`` in
    ``format``, atomically; a ``torch_export`` file carries ``predictor`` in its manifest and is
    read back through the loader's checks before it takes ``path`` (nothing unreadable is kept).

    Raises:
        ValueError: torch.export cannot trace ``module`` (naming why).
        ArtifactMismatchError: the written program would be refused by the loader (an operator
            outside :data:`~vqgraph.serving.archive.OPERATORS`, constants, ...).
    """
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {EXPORT_FORMATS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(max(2, example_batch), in_channels)
    batch = torch.export.Dim("batch", min=1)
    # a name of its own per call (two processes saving one path never share it), ending as torch
    # expects of the format (.pt2 for torch.export, whatever the final name)
    suffix = ".pt2" if format == "torch_export" else ".onnx"
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    tmp = Path(name)
    try:
        if format == "torch_export":
            program = _trace(module, example, batch)
            torch.export.save(program, str(tmp))
            add_manifest(tmp, predictor)  # what load_exported checks the file against
            _read_back(tmp, path)
        else:
            _export_onnx(module, example, tmp)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _read_back(tmp: Path, path: Path) -> None:
    try:
        read_exported(tmp)
    except ArtifactMismatchError as err:
        why = str(err).replace(f"{tmp}: ", "", 1).split("; load_exported reads only")[0]
        raise ArtifactMismatchError(f"{path} was not written: its program would not load ({why}); the loader "
                                    "takes the operators of vqgraph/serving/archive.py's OPERATORS only") from err


def _trace(module: nn.Module, example: Tensor, batch):
    try:
        return torch.export.export(module, (example,), dynamic_shapes={"x": {0: batch}})
    except Exception as err:  # torch.export's many kinds of failure: one error naming the module
        student = type(getattr(module, "student", module)).__name__
        lines = str(err).strip().splitlines() or [""]
        raise ValueError(f"torch.export cannot trace {student} ({type(err).__name__}: {lines[0][:300]}); a student "
                         "that is not an MLPStudent is saved as an exported program, never pickled: make its forward "
                         "traceable (no Python branch on tensor values, no tensors created from Python numbers)") \
            from err


def _export_onnx(module: nn.Module, example: Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError as err:
        raise ImportError("ONNX export needs the 'onnx' and 'onnxscript' packages: pip install onnx onnxscript") from err
    registration = logging.getLogger("torch.onnx._internal.exporter._registration")
    registration.addFilter(_irrelevant_onnx_log)
    try:
        with warnings.catch_warnings():  # exactly the exporter's irrelevant warning; others pass
            warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    category=FutureWarning)
            program = torch.onnx.export(
                module,
                (example,),
                input_names=["features"],
                output_names=["probs", "labels", "codes"],
                dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}},
                dynamo=True,
                verbose=False,
            )
    finally:
        registration.removeFilter(_irrelevant_onnx_log)
    program.save(str(path), external_data=False)  # one self-contained file


def _irrelevant_onnx_log(record: logging.LogRecord) -> bool:
    """False for the exporter's lines about torchvision's operators (a student uses none)."""
    return not record.getMessage().startswith("torchvision is not installed. Skipping torchvision::")


def load_exported(path) -> nn.Module:
    """An exported student (``format="torch_export"``) as a callable module, with torch alone.

    Only files written by :meth:`~vqgraph.serving.Predictor.export` are read: the file is checked
    whole before torch reads it (:mod:`vqgraph.serving.archive`: no pickles, only our operators,
    nothing that would run code), and torch reads the checked bytes. Anything else is an
    ``ArtifactMismatchError`` naming the path. (ONNX files are data, a graph of standard
    operators: onnxruntime runs no Python from them.)"""
    path = Path(path)
    if path.is_dir():
        raise ArtifactMismatchError(f"exported student {path} is a folder, not a file: give the .pt2 file's path")
    if not path.is_file():
        raise FileNotFoundError(f"exported student {path} does not exist")
    return program_module(read_exported(path))  # serving: no autograd graph behind the outputs
