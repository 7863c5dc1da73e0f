"""Standalone model files of a serving module: ``torch_export`` (read back with torch alone,
:func:`load_exported`) and ``onnx``."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

EXPORT_FORMATS = ("torch_export", "onnx")


def export_module(module: nn.Module, path, format: str, in_channels: int, example_batch: int = 16) -> Path:
    """Write ``module`` (features [B, ``in_channels``] in, any batch size) to ``path`` in
    ``format``, atomically."""
    if format not in EXPORT_FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose from {EXPORT_FORMATS}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(max(2, example_batch), in_channels)
    batch = torch.export.Dim("batch", min=1)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        if format == "torch_export":
            program = torch.export.export(module, (example,), dynamic_shapes={"x": {0: batch}})
            torch.export.save(program, str(tmp))
        else:
            _export_onnx(module, example, tmp)
        tmp.replace(path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def _export_onnx(module: nn.Module, example: Tensor, path: Path) -> None:
    try:
        import onnx  # noqa: F401
    except ImportError as err:
        raise ImportError("ONNX export needs the 'onnx' and 'onnxscript' packages: pip install onnx onnxscript") from err
    program = torch.onnx.export(
        module,
        (example,),
        input_names=["features"],
        output_names=["probs", "labels", "codes"],
        dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}},
        dynamo=True,
        verbose=False,
    )
    program.save(str(path), external_data=False)  # one self-contained file


def load_exported(path) -> nn.Module:
    """An exported student (``format="torch_export"``) as a callable module, with torch alone."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported student {path} does not exist")
    module = torch.export.load(str(path)).module()
    return module.requires_grad_(False)  # serving: no autograd graph behind the outputs
