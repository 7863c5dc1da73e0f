"""Graph-free serving: a trained student predicts for new nodes from their features alone.

A *student artifact* holds everything prediction needs and nothing of the graph: the MLP's
weights and architecture, the feature normalisation it was trained with, and (for ``vqgraph``
students) the frozen teacher codebook with its similarity, so that predictions come with the
code each node is assigned to. It is written atomically and read with
``torch.load(weights_only=True)``: tensors and plain containers only, nothing is unpickled.

    predictor = Predictor.load("runs/cora-.../student.pt")
    out = predictor.predict(features)            # probs [B, C], labels [B], codes [B]
    predictor.export("student.pt2")              # torch.export: runs without vqgraph

:func:`load_exported` reads an exported file back with torch alone.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional

import torch
from torch import Tensor, nn

from vqgraph.data.graph import FeatureTransform
from vqgraph.losses import code_logits
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.utils.io import ArtifactMismatchError, atomic_torch_save, read_artifact

STUDENT_FORMAT = "vqgraph-student"
STUDENT_FORMAT_VERSION = 1
EXPORT_FORMATS = ("torch_export", "onnx")


class Prediction(NamedTuple):
    """probs [B, C] class probabilities; labels [B] arg-max classes; codes [B] index of the
    nearest teacher code (-1 for students without a codebook)."""

    probs: Tensor
    labels: Tensor
    codes: Tensor


class ServingModule(nn.Module):
    """Features in, ``(probs, labels, codes)`` out: normalisation, MLP and code assignment in one
    module, which is what gets exported. Always in eval mode (no dropout)."""

    def __init__(self, student: MLPStudent, transform: FeatureTransform, codebook: Optional[Tensor], metric: str):
        super().__init__()
        self.student = student.eval()
        self.norm_kind = transform.kind
        width = student.in_channels
        self.register_buffer("mean", transform.mean if transform.mean is not None else torch.zeros(width))
        self.register_buffer("std", transform.std if transform.std is not None else torch.ones(width))
        has_codes = codebook is not None and student.projection is not None
        self.register_buffer("codebook", codebook if has_codes else torch.zeros(0, 1))
        self.has_codes = has_codes
        self.metric = metric

    def train(self, mode: bool = True):  # a serving module never trains
        return super().train(False)

    def forward(self, x: Tensor):
        x = FeatureTransform(self.norm_kind, self.mean, self.std)(x)  # the buffers travel with exports
        out = self.student(x)
        probs = torch.softmax(out.logits, dim=-1)
        labels = probs.argmax(dim=-1)
        if self.has_codes:
            codes = code_logits(out.z, self.codebook, self.metric).argmax(dim=-1)
        else:
            codes = torch.full_like(labels, -1)
        return probs, labels, codes


class Predictor:
    """Prediction from features alone, with input checks and batching.

    Args:
        model: a trained :class:`~vqgraph.models.student.MLPStudent`.
        transform: the feature normalisation it was trained with (default: none).
        codebook: the frozen teacher codebook [K, D] (``vqgraph`` students), or None.
        metric: the similarity of the codebook (``code_logits``'s ``metric``).
        device: where to run (default: where the model's parameters are).
        meta: free-form information kept in the artifact (dataset, method, metrics...).
    """

    def __init__(
        self,
        model: MLPStudent,
        transform: Optional[FeatureTransform] = None,
        codebook: Optional[Tensor] = None,
        metric: str = "cosine",
        device=None,
        meta: Optional[Dict[str, Any]] = None,
    ):
        if codebook is not None and model.projection is None:
            raise ValueError("a codebook was given but the student has no projection into code space")
        if codebook is not None and codebook.size(1) != model.projection.out_features:
            raise ValueError(
                f"codebook width {codebook.size(1)} != the student's code width {model.projection.out_features}"
            )
        device = torch.device(device) if device is not None else next(model.parameters()).device
        transform = transform if transform is not None else FeatureTransform()
        self.model, self.transform, self.codebook, self.metric = model, transform, codebook, metric
        self.meta = dict(meta or {})
        self.module = ServingModule(model, transform, codebook, metric).to(device)
        self.device = device

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def check_features(self, x) -> Tensor:
        """``x`` as a float32 tensor of shape [B, in_channels]; a clear error otherwise."""
        if not isinstance(x, Tensor):
            try:
                x = torch.as_tensor(x)
            except Exception as err:
                raise TypeError(f"features must be a tensor or array, got {type(x).__name__}: {err}") from err
        if not (x.is_floating_point() or x.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)):
            raise TypeError(f"features must be real numbers, got dtype {x.dtype}")
        if x.dim() == 1:
            raise ValueError(
                f"features must be 2-D [num_nodes, {self.in_channels}], got a 1-D tensor of length {x.numel()} "
                "(for one node pass x.unsqueeze(0))"
            )
        if x.dim() != 2 or x.size(1) != self.in_channels:
            raise ValueError(f"features must have shape [num_nodes, {self.in_channels}], got {tuple(x.shape)}")
        x = x.to(torch.float32)
        bad = ~torch.isfinite(x)
        if bool(bad.any()):
            rows = bad.any(dim=1).nonzero().flatten()
            raise ValueError(
                f"features contain {int(bad.sum())} NaN/inf values in {rows.numel()} rows (first: row {int(rows[0])})"
            )
        return x

    @torch.inference_mode()
    def predict(self, x, batch_size: int = 8192) -> Prediction:
        """Class probabilities, predicted classes and code indices for the rows of ``x``.

        ``x`` [B, F] (tensor or array) is processed ``batch_size`` rows at a time; outputs are on
        the CPU.
        """
        x = self.check_features(x)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        parts = [self.module(chunk.to(self.device)) for chunk in x.split(batch_size)] if x.size(0) else []
        if not parts:
            empty = torch.empty(0, dtype=torch.long)
            return Prediction(torch.empty(0, self.num_classes), empty, empty)
        return Prediction(*(torch.cat([p[i] for p in parts]).cpu() for i in range(3)))

    # -- artifact ---------------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write the student artifact (atomically)."""
        model = self.model
        payload = {
            "format": STUDENT_FORMAT,
            "format_version": STUDENT_FORMAT_VERSION,
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "student": model.config.to_dict(),
            "in_channels": model.in_channels,
            "num_classes": model.num_classes,
            "code_dim": model.projection.out_features if model.projection is not None else None,
            "transform": {
                "kind": self.transform.kind,
                "mean": None if self.transform.mean is None else self.transform.mean.cpu(),
                "std": None if self.transform.std is None else self.transform.std.cpu(),
            },
            "codebook": None if self.codebook is None else self.codebook.detach().cpu(),
            "metric": self.metric,
            "meta": self.meta,
        }
        path = Path(path)
        atomic_torch_save(payload, path)
        return path

    @classmethod
    def load(cls, path, device=None) -> "Predictor":
        """Read a student artifact written by :meth:`save` (``experiments.run`` writes ``student.pt``)."""
        path = Path(path)
        payload = read_artifact(path, "student")
        if payload.get("format") != STUDENT_FORMAT:
            raise ArtifactMismatchError(f"{path}: not a vqgraph student artifact")
        if payload.get("format_version") != STUDENT_FORMAT_VERSION:
            raise ArtifactMismatchError(
                f"{path}: student format version {payload.get('format_version')!r}, "
                f"this vqgraph reads {STUDENT_FORMAT_VERSION}"
            )
        try:
            model = MLPStudent(
                payload["in_channels"], payload["num_classes"], StudentConfig(**payload["student"]), payload["code_dim"]
            )
            model.load_state_dict(payload["state_dict"])
            t = payload["transform"]
            transform = FeatureTransform(t["kind"], t["mean"], t["std"])
            codebook, metric, meta = payload["codebook"], payload["metric"], payload["meta"]
        except (KeyError, TypeError, RuntimeError) as err:  # a key missing, or weights of another shape
            raise ArtifactMismatchError(f"{path}: a damaged student artifact ({type(err).__name__}: {err})") from err
        model.eval()
        if device is not None:
            model = model.to(device)
        return cls(model, transform, codebook, metric, device=device, meta=meta)

    # -- export -----------------------------------------------------------------------------

    def export(self, path, format: str = "torch_export", example_batch: int = 16) -> Path:
        """A standalone model file that needs torch only (``torch_export``, read it with
        :func:`load_exported` or ``torch.export.load(path).module()``) or an ONNX runtime
        (``onnx``, needs the ``onnx`` and ``onnxscript`` packages). Both take float32 features
        [B, F] of any batch size and return ``(probs, labels, codes)``. Written atomically.
        """
        if format not in EXPORT_FORMATS:
            raise ValueError(f"unknown export format {format!r}; choose from {EXPORT_FORMATS}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        module = copy.deepcopy(self.module).cpu()  # the served model stays where it is
        example = torch.rand(max(2, example_batch), self.in_channels)
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
