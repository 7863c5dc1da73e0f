"""Graph-free serving: a trained student predicts for new nodes from their features alone.

A *student artifact* holds everything prediction needs and nothing of the graph: the MLP's
weights and architecture, the feature normalisation it was trained with, and (for ``vqgraph``
students) the frozen teacher codebook with its similarity, so that predictions come with the
code each node is assigned to. It is written atomically and read with
``torch.load(weights_only=True)``: tensors and plain containers only, nothing is unpickled.
A student of the user's own (any module whose ``forward(x)`` returns logits, ``(logits, z)`` or a
``StudentOutput``) is saved as an exported program instead (:mod:`vqgraph.serving.program`):
loaded in a process without its class, it serves the same.

    predictor = result.predictor()                # fit_student's result: transform and codebook inside
    predictor = Predictor.load("runs/cora-.../student.pt")
    out = predictor.predict(raw_features)        # probs [B, C], labels [B], codes [B]
    predictor.export("student.pt2")              # torch.export: runs without vqgraph

:func:`load_exported` reads an exported file back with torch alone, only if our exporter wrote
it (checked before torch reads it: :mod:`vqgraph.serving.archive`). :mod:`vqgraph.serving.artifact`
holds the artifact's format and its check. This module imports no graph library: a serving
process imports torch and vqgraph's serving modules only.
"""

from __future__ import annotations

import copy
import numbers
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Optional

import torch
from torch import Tensor, nn

from vqgraph.data.transform import FeatureTransform
from vqgraph.models.student import MLPStudent
from vqgraph.serving.artifact import check_parts, read_student, student_payload
from vqgraph.serving.export import export_module
from vqgraph.serving.fused import FusedStudent, onnx_session
from vqgraph.serving.module import Prediction, ServingModule, StudentShape, student_shape
from vqgraph.serving.program import Program, is_program, program_record, read_program
from vqgraph.utils.devices import device_problem
from vqgraph.utils.io import atomic_torch_save

BACKENDS = ("auto", "onnxruntime", "fused", "eager")
SMALL_BATCH = 4096  # rows up to which onnxruntime runs on one thread (faster there; docs/speed.md)


class Predictor:
    """Prediction from features alone, with input checks and batching.

    Args:
        model: the trained student: an :class:`~vqgraph.models.student.MLPStudent`, or any
            ``nn.Module`` whose ``forward(x)`` returns logits [B, C], ``(logits, z)`` or a
            ``StudentOutput`` (``z`` [B, D]: what codes are computed from).
        transform: the feature normalisation it was trained with (default: none; a student that
            ``fit_student`` trained on normalised data warns then: ``result.predictor()`` passes it).
        codebook: the frozen teacher codebook [K, D] (``vqgraph`` students), or None.
        metric: the similarity of the codebook (``code_logits``'s ``metric``).
        device: where to run (default: where the model's parameters are).
        meta: free-form information kept in the artifact (dataset, method, metrics...).
        backend: what computes predictions (the outputs agree within float rounding):
            ``eager`` the :class:`ServingModule` (the reference, what :meth:`export` writes);
            ``fused`` its :class:`FusedStudent` (weights prepared once, fewer kernels);
            ``onnxruntime`` that fused graph run by onnxruntime (CPU; needs ``onnxruntime``,
            ``pip install vqgraph[onnx]``); ``auto`` (default) onnxruntime when
            installed and the device is the CPU, else ``fused``. Students other than
            ``MLPStudent`` run ``eager`` (``auto`` picks it). ``predictor.backend`` names the one
            in use (``exported`` for a program read by :meth:`load`). docs/speed.md gives the
            latencies that chose this order.
        path: the artifact it was read from (:meth:`load` sets it; shown by ``repr``).
        in_channels, num_classes: the student's widths, for a module without these attributes.

    Raises:
        TypeError: ``model`` is not a module, or its forward returns something else.
        ValueError: a width is neither an attribute nor given; the parts do not fit together
            (transform, codebook, metric, non-finite weights); a backend the student cannot use.
    """

    def __init__(
        self,
        model: nn.Module,
        transform: Optional[FeatureTransform] = None,
        codebook: Optional[Tensor] = None,
        metric: str = "cosine",
        device=None,
        meta: Optional[Dict[str, Any]] = None,
        backend: str = "auto",
        path=None,
        in_channels: Optional[int] = None,
        num_classes: Optional[int] = None,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
        shape = student_shape(model, in_channels, num_classes)
        if transform is None:
            _warn_if_trained_on_other_features(model)
        transform = transform if transform is not None else FeatureTransform()
        check_parts(model, shape, transform, codebook, metric)
        if not isinstance(model, MLPStudent) and backend in ("fused", "onnxruntime"):
            raise ValueError(f"backend {backend!r} folds an MLPStudent's layers; a {type(model).__name__} runs "
                             "backend='eager' (which 'auto' picks)")
        device = _device(device) if device is not None else _module_device(model)
        module = ServingModule(model, transform, codebook, metric, shape.in_channels).to(device)
        self._setup(model, module, shape, transform, codebook, metric, device, meta, path)
        self.backend, self._run = self._runner(backend)

    def _setup(self, model, module, shape: StudentShape, transform, codebook, metric, device, meta, path,
               student: Optional[str] = None) -> None:
        self.model, self.module, self.shape = model, module, shape
        self.transform, self.codebook, self.metric = transform, codebook, metric
        self.student = student or type(model).__name__  # the student's class name (repr, exported record)
        self.device, self.meta = device, dict(meta or {})
        self.path = None if path is None else Path(path)

    @classmethod
    def _from_program(cls, program: Program, device, backend: str, path) -> "Predictor":
        """A predictor whose backend is the exported program (transform and codebook inside it)."""
        if backend != "auto":
            raise ValueError(f"{path} is an exported program, which runs as it is (backend 'exported'); "
                             f"backend={backend!r} needs an MLPStudent's weights artifact (student.pt)")
        self = cls.__new__(cls)
        device = device if device is not None else torch.device("cpu")
        self._setup(None, program.module.to(device), program.shape, program.transform, program.codebook,
                    program.metric, device, program.meta, path, program.student)
        self.backend, self._run = "exported", self.module
        return self

    def _runner(self, backend: str):
        """``(name, function)``: the function maps a float32 chunk on the device to the three outputs."""
        if backend == "eager" or not isinstance(self.model, MLPStudent):
            return "eager", self.module
        fused = FusedStudent.from_serving(self.module).to(self.device)
        session = None
        if backend == "onnxruntime" or (backend == "auto" and self.device.type == "cpu"):
            if backend == "onnxruntime" and self.device.type != "cpu":
                raise ValueError(f"backend 'onnxruntime' runs on the CPU; this predictor's device is {self.device}")
            session = onnx_session(fused)
            if session is None and backend == "onnxruntime":
                raise ImportError("backend 'onnxruntime' needs the 'onnxruntime' package: pip install onnxruntime "
                                  "(or use backend='fused')")
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
        if isinstance(self.model, MLPStudent):
            config = self.model.config
            student = f"num_layers={config.num_layers}, hidden_channels={config.hidden_channels}"
        else:
            student = f"student={self.student!r}"
        return (f"Predictor(in_channels={self.in_channels}, num_classes={self.num_classes}, {student}, "
                f"codebook={codes}, transform={self.transform.kind!r}, backend={self.backend!r}, "
                f"device={str(self.device)!r}{where})")

    @property
    def in_channels(self) -> int:
        return self.shape.in_channels

    @property
    def num_classes(self) -> int:
        return self.shape.num_classes

    def check_features(self, x) -> Tensor:
        """``x`` as a float32 tensor of shape [B, in_channels]; a clear error otherwise. A PyG
        ``Data`` stands for its features ``x``; a sparse tensor is densified."""
        pyg = sys.modules.get("torch_geometric.data")  # a Data exists only if PyG was imported: never import it here
        if pyg is not None and isinstance(x, pyg.Data):
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
        """Write the student (atomically) for :meth:`load`: an ``MLPStudent`` as the student artifact
        (weights, transform, codebook; what ``experiments.run`` writes as ``student.pt``); any other
        student as an exported program (:meth:`export`'s ``torch_export`` file: transform, student
        and codebook inside, this predictor's widths, similarity and ``meta`` in its manifest; never
        a pickle), which a process without the student's class loads and serves the same.

        Raises:
            ValueError: torch.export cannot trace the student.
            ArtifactMismatchError: its program uses an operator the loader does not take (nothing
                is written).
            TypeError: ``meta`` of an exported student is not JSON.
        """
        path = Path(path)
        if not isinstance(self.model, MLPStudent):
            return self.export(path)
        atomic_torch_save(student_payload(self.model, self.transform, self.codebook, self.metric, self.meta), path)
        return path

    @classmethod
    def load(cls, path, device=None, backend: str = "auto") -> "Predictor":
        """Read what :meth:`save` or :meth:`export` (``torch_export``) wrote, checked whole before
        anything is built: a student artifact (``experiments.run``'s ``student.pt``;
        :func:`~vqgraph.serving.artifact.read_student`) or an exported program, served as it is
        (``backend`` ``exported``; :func:`~vqgraph.serving.program.read_program`)."""
        device = None if device is None else _device(device)
        if is_program(Path(path)):
            return cls._from_program(read_program(path), device, backend, path)
        artifact = read_student(path)
        model = artifact.build()
        if device is not None:
            model = model.to(device)
        return cls(model, artifact.transform, artifact.codebook, artifact.metric, device=device, meta=artifact.meta,
                   backend=backend, path=path)

    # -- export -----------------------------------------------------------------------------

    def export(self, path, format: str = "torch_export", example_batch: int = 16) -> Path:
        """A standalone model file that needs torch only (``torch_export``, read it with
        :meth:`load`, :func:`load_exported` or ``torch.export.load(path).module()``) or an ONNX
        runtime (``onnx``, needs the ``onnx`` and ``onnxscript`` packages). Both take float32
        features [B, F] of any batch size and return ``(probs, labels, codes)``. Written atomically.
        """
        if self.model is None and self.device.type == "cpu":  # a loaded program: exporting leaves it as it is
            module = self.module
        else:  # the served model stays where it is, as it is
            module = copy.deepcopy(self.module).cpu().eval()
        record = None
        if format == "torch_export":
            record = program_record(self.shape, self.transform, self.codebook, self.metric, self.student, self.meta)
        return export_module(module, path, format, self.in_channels, example_batch, record)


def _device(device) -> torch.device:
    """``device`` as a torch device usable here; a ValueError in one line otherwise (before any work)."""
    problem = device_problem(device, fix="device='cpu'")
    if problem:
        raise ValueError(f"device {str(device)!r}: {problem}")
    return torch.device(device)


def _module_device(model: nn.Module) -> torch.device:
    """Where ``model``'s first parameter (or buffer) is; the CPU for a module without either."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def _warn_if_trained_on_other_features(model: nn.Module) -> None:
    """``fit_student`` records the data's transform on its student (``model.feature_transform``);
    serving that student without one would treat raw features as normalised ones: a warning."""
    recorded = getattr(model, "feature_transform", None)
    if isinstance(recorded, FeatureTransform) and recorded.kind != "none":
        warnings.warn(
            f"Predictor: this {type(model).__name__} was trained on features normalised by {recorded.kind!r} "
            "(model.feature_transform, recorded by fit_student) but no transform was given, so predict() takes "
            "its input as normalised already. To serve raw features use result.predictor() (or "
            "Predictor(model, transform=model.feature_transform)); to serve normalised ones, say so with "
            "transform=FeatureTransform()", UserWarning, stacklevel=3)
