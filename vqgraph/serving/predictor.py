"""Graph-free serving: a trained student predicts for new nodes from their features alone.

A *student artifact* holds everything prediction needs and nothing of the graph: the MLP's
weights and architecture, the feature normalisation it was trained with, and (for ``vqgraph``
students) the frozen teacher codebook with its similarity, so that predictions come with the
code each node is assigned to. It is written atomically and read with
``torch.load(weights_only=True)``: tensors and plain containers only, nothing is unpickled.

    predictor = Predictor.load("runs/cora-.../student.pt")
    out = predictor.predict(features)            # probs [B, C], labels [B], codes [B]
    predictor.export("student.pt2")              # torch.export: runs without vqgraph

:func:`load_exported` reads an exported file back with torch alone, only if our exporter wrote
it (checked before torch reads it: :mod:`vqgraph.serving.archive`). :mod:`vqgraph.serving.artifact`
holds the artifact's format and its check.
"""

from __future__ import annotations

import copy
import numbers
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph.data.graph import FeatureTransform
from vqgraph.models.student import MLPStudent
from vqgraph.serving.artifact import check_parts, read_student, student_payload
from vqgraph.serving.export import export_module
from vqgraph.serving.fused import FusedStudent, onnx_session
from vqgraph.serving.module import Prediction, ServingModule
from vqgraph.utils.devices import device_problem
from vqgraph.utils.io import atomic_torch_save

BACKENDS = ("auto", "onnxruntime", "fused", "eager")
SMALL_BATCH = 4096  # rows up to which onnxruntime runs on one thread (faster there; docs/speed.md)


class Predictor:
    """Prediction from features alone, with input checks and batching.

    Args:
        model: a trained :class:`~vqgraph.models.student.MLPStudent`.
        transform: the feature normalisation it was trained with (default: none).
        codebook: the frozen teacher codebook [K, D] (``vqgraph`` students), or None.
        metric: the similarity of the codebook (``code_logits``'s ``metric``).
        device: where to run (default: where the model's parameters are).
        meta: free-form information kept in the artifact (dataset, method, metrics...).
        backend: what computes predictions (the outputs agree within float rounding):
            ``eager`` the :class:`ServingModule` (the reference, what :meth:`export` writes);
            ``fused`` its :class:`FusedStudent` (weights prepared once, fewer kernels);
            ``onnxruntime`` that fused graph run by onnxruntime (CPU; needs ``onnx`` and
            ``onnxruntime``, ``pip install vqgraph[onnx]``); ``auto`` (default) onnxruntime when
            installed and the device is the CPU, else ``fused``. ``predictor.backend`` names the
            one in use. docs/speed.md gives the latencies that chose this order.
        path: the artifact it was read from (:meth:`load` sets it; shown by ``repr``).
    """

    def __init__(
        self,
        model: MLPStudent,
        transform: Optional[FeatureTransform] = None,
        codebook: Optional[Tensor] = None,
        metric: str = "cosine",
        device=None,
        meta: Optional[Dict[str, Any]] = None,
        backend: str = "auto",
        path=None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        transform = transform if transform is not None else FeatureTransform()
        check_parts(model, transform, codebook, metric)
        device = _device(device) if device is not None else next(model.parameters()).device
        self.model, self.transform, self.codebook, self.metric = model, transform, codebook, metric
        self.path = None if path is None else Path(path)
        self.meta = dict(meta or {})
        self.module = ServingModule(model, transform, codebook, metric).to(device)
        self.device = device
        self.backend, self._run = self._runner(backend)

    def _runner(self, backend: str):
        """``(name, function)``: the function maps a float32 chunk on the device to the three outputs."""
        if backend == "eager":
            return "eager", self.module
        fused = FusedStudent.from_serving(self.module).to(self.device)
        session = None
        if backend == "onnxruntime" or (backend == "auto" and self.device.type == "cpu"):
            if backend == "onnxruntime" and self.device.type != "cpu":
                raise ValueError(f"backend 'onnxruntime' runs on the CPU; this predictor's device is {self.device}")
            session = onnx_session(fused)
            if session is None and backend == "onnxruntime":
                raise ImportError("backend 'onnxruntime' needs the 'onnx' and 'onnxruntime' packages: "
                                  "pip install onnx onnxruntime (or use backend='fused')")
        if session is None:
            return "fused", fused
        # a few rows: one thread (no pool to wake, no contention with torch's); many: every thread
        small = onnx_session(fused, threads=1) if torch.get_num_threads() > 1 else session

        def run(x: Tensor):
            chosen = small if x.size(0) <= SMALL_BATCH else session
            return tuple(torch.from_numpy(a) for a in chosen.run(None, {"features": x.detach().contiguous().numpy()}))

        return "onnxruntime", run

    def __repr__(self) -> str:
        codes = "none" if self.codebook is None else f"{self.codebook.size(0)} x {self.codebook.size(1)} ({self.metric})"
        where = "" if self.path is None else f", path={str(self.path)!r}"
        config = self.model.config
        return (f"Predictor(in_channels={self.in_channels}, num_classes={self.num_classes}, "
                f"num_layers={config.num_layers}, hidden_channels={config.hidden_channels}, codebook={codes}, "
                f"transform={self.transform.kind!r}, backend={self.backend!r}, device={str(self.device)!r}{where})")

    @property
    def in_channels(self) -> int:
        return self.model.in_channels

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    def check_features(self, x) -> Tensor:
        """``x`` as a float32 tensor of shape [B, in_channels]; a clear error otherwise. A PyG
        ``Data`` stands for its features ``x``; a sparse tensor is densified."""
        if isinstance(x, Data):
            if getattr(x, "x", None) is None:
                raise ValueError("predict: the Data object has no features (data.x)")
            x = x.x
        if isinstance(x, Tensor) and x.layout != torch.strided:
            x = x.to_dense()
        elif not isinstance(x, Tensor) and callable(getattr(x, "toarray", None)):  # a scipy sparse matrix
            x = x.toarray()
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
        if x.numel() and not bool(torch.isfinite(x.sum(dim=1)).all()) and not bool(torch.isfinite(x).all()):
            bad = ~torch.isfinite(x)
            rows = bad.any(dim=1).nonzero().flatten()
            raise ValueError(
                f"features contain {int(bad.sum())} NaN/inf values in {rows.numel()} rows (first: row {int(rows[0])})"
            )
        return x

    def _check_outputs(self, probs: Tensor, x: Tensor) -> None:
        """Finite features whose values overflow inside the student give NaN probabilities,
        served as label 0 otherwise: a ValueError naming the rows."""
        bad = ~torch.isfinite(probs).all(dim=1)
        if bool(bad.any()):
            rows = bad.nonzero().flatten()
            raise ValueError(f"the student's output is NaN/inf for {rows.numel()} rows (first: row {int(rows[0])}; "
                             f"largest |feature| {float(x.abs().max()):.3g}): the features are too large for float32 "
                             "arithmetic; scale them as the training features were")

    @torch.inference_mode()
    def predict(self, x, batch_size: int = 8192) -> Prediction:
        """Class probabilities, predicted classes and code indices for the rows of ``x``.

        ``x`` [B, F] (tensor, sparse tensor, array, or a PyG ``Data`` whose ``x`` it is) is processed ``batch_size`` rows at a time; outputs are on
        the CPU.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        batch_size = int(batch_size)  # a numpy integer too
        x = self.check_features(x)
        if x.size(0) == 0:
            empty = torch.empty(0, dtype=torch.long)
            return Prediction(torch.empty(0, self.num_classes), empty, empty)
        if x.size(0) <= batch_size:  # one chunk: nothing to concatenate
            out = Prediction(*(t.cpu() for t in self._run(x.to(self.device))))
        else:
            parts = [self._run(chunk.to(self.device)) for chunk in x.split(batch_size)]
            out = Prediction(*(torch.cat([p[i] for p in parts]).cpu() for i in range(3)))
        self._check_outputs(out.probs, x)
        return out

    # -- artifact ---------------------------------------------------------------------------

    def save(self, path) -> Path:
        """Write the student artifact (atomically)."""
        path = Path(path)
        atomic_torch_save(student_payload(self.model, self.transform, self.codebook, self.metric, self.meta), path)
        return path

    @classmethod
    def load(cls, path, device=None, backend: str = "auto") -> "Predictor":
        """Read a student artifact written by :meth:`save` (``experiments.run`` writes ``student.pt``),
        checked whole before anything is built (:func:`~vqgraph.serving.artifact.read_student`)."""
        device = None if device is None else _device(device)
        artifact = read_student(path)
        model = artifact.build()
        if device is not None:
            model = model.to(device)
        return cls(model, artifact.transform, artifact.codebook, artifact.metric, device=device, meta=artifact.meta,
                   backend=backend, path=path)

    # -- export -----------------------------------------------------------------------------

    def export(self, path, format: str = "torch_export", example_batch: int = 16) -> Path:
        """A standalone model file that needs torch only (``torch_export``, read it with
        :func:`load_exported` or ``torch.export.load(path).module()``) or an ONNX runtime
        (``onnx``, needs the ``onnx`` and ``onnxscript`` packages). Both take float32 features
        [B, F] of any batch size and return ``(probs, labels, codes)``. Written atomically.
        """
        module = copy.deepcopy(self.module).cpu().eval()  # the served model stays where it is, as it is
        return export_module(module, path, format, self.in_channels, example_batch)


def _device(device) -> torch.device:
    """``device`` as a torch device usable here; a ValueError in one line otherwise (before any work)."""
    problem = device_problem(device, fix="device='cpu'")
    if problem:
        raise ValueError(f"device {str(device)!r}: {problem}")
    return torch.device(device)
