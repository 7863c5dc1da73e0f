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
from torch_geometric.data import Data

from vqgraph.data.graph import FeatureTransform
from vqgraph.losses import code_logits
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.utils.io import ArtifactMismatchError, atomic_torch_save, read_artifact

STUDENT_FORMAT = "vqgraph-student"
STUDENT_FORMAT_VERSION = 1
EXPORT_FORMATS = ("torch_export", "onnx")
BACKENDS = ("auto", "onnxruntime", "fused", "eager")
SMALL_BATCH = 4096  # rows up to which onnxruntime runs on one thread (faster there; docs/speed.md)


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


class FusedStudent(nn.Module):
    """:class:`ServingModule`'s outputs from fewer, larger kernels: its weights prepared once.

    Built from a serving module by :meth:`from_serving` (the module itself is left as it is):

    * a batch norm (evaluation mode: an affine map of running statistics) is folded into the
      linear layer before it, and a ``standard`` feature transform into the first layer;
    * the classifier and the code assignment share one matrix: the nearest code is the arg-max of
      ``code_logits(projection(h), codebook)``, and for the cosine metric (a positive per-row scale
      of ``z . c / |c|``) and the euclidean one (``2 z . c - |c|^2``, ``|z|^2`` being the same for
      every code) that score is linear in ``h``, so the projection and the codebook fold into
      ``[K, hidden]`` weights beside the classifier's;
    * each layer is one ``addmm`` (bias and product in one kernel) with an in-place ReLU.

    Dropout is the identity in evaluation. A layer norm or a ``row`` transform stays an operation
    (it depends on the row). Outputs equal the serving module's within float rounding: the code
    is the arg-max of the same scores up to a positive per-row factor, so a node whose two best
    codes tie to rounding may take the other one.
    """

    def __init__(self, layers, norms, head_weight: Tensor, head_bias: Tensor, num_classes: int, norm_kind: str,
                 has_codes: bool):
        super().__init__()
        self.weights = nn.ParameterList(nn.Parameter(w, requires_grad=False) for w, _ in layers)
        self.biases = nn.ParameterList(nn.Parameter(b, requires_grad=False) for _, b in layers)
        self.norms = nn.ModuleList(norms)
        self.register_buffer("head_weight", head_weight)
        self.register_buffer("head_bias", head_bias)
        self.num_classes, self.norm_kind, self.has_codes = num_classes, norm_kind, has_codes
        self.in_channels = (layers[0][0] if layers else head_weight).size(0)  # weights are [in, out]
        self.train(False)

    @classmethod
    @torch.no_grad()
    def from_serving(cls, module: ServingModule) -> "FusedStudent":
        student = module.student
        layers, norms = [], []
        for i, (linear, norm) in enumerate(zip(student.layers, student.norms)):
            w, b = linear.weight.detach().clone(), linear.bias.detach().clone()
            if i == 0:
                w, b = _fold_standard(module, w, b)
            if isinstance(norm, nn.BatchNorm1d):  # g (y - mu) / sqrt(var + eps) + beta
                scale = norm.weight / (norm.running_var + norm.eps).sqrt()
                w, b = w * scale.unsqueeze(1), (b - norm.running_mean) * scale + norm.bias
                norm = nn.Identity()
            layers.append((w.t().contiguous(), b))  # [in, out]: x @ w is one addmm
            norms.append(copy.deepcopy(norm))
        head_w, head_b = student.classifier.weight, student.classifier.bias
        if not layers:  # a linear student: its classifier reads the (standardised) features
            head_w, head_b = _fold_standard(module, head_w.detach().clone(), head_b.detach().clone())
        if module.has_codes:
            proj = student.projection
            if module.metric == "cosine":
                codes = torch.nn.functional.normalize(module.codebook, dim=-1)
                code_w, code_b = codes @ proj.weight, codes @ proj.bias
            elif module.metric == "euclidean":
                code_w = 2 * module.codebook @ proj.weight
                code_b = 2 * module.codebook @ proj.bias - module.codebook.pow(2).sum(-1)
            else:
                raise ValueError(f"unknown metric {module.metric!r}")
            head_w, head_b = torch.cat([head_w, code_w]), torch.cat([head_b, code_b])
        return cls(layers, norms, head_w.t().contiguous().clone(), head_b.clone(), student.num_classes,
                   module.norm_kind, module.has_codes)

    def train(self, mode: bool = True):  # serving only
        return super().train(False)

    def forward(self, x: Tensor):
        if self.norm_kind == "row":
            x = x / x.abs().sum(dim=1, keepdim=True).clamp_min(1e-12)
        for w, b, norm in zip(self.weights, self.biases, self.norms):
            x = norm(torch.addmm(b, x, w)).relu_()
        out = torch.addmm(self.head_bias, x, self.head_weight)
        probs = torch.softmax(out[:, : self.num_classes], dim=-1)
        labels = probs.argmax(dim=-1)
        codes = out[:, self.num_classes:].argmax(dim=-1) if self.has_codes else torch.full_like(labels, -1)
        return probs, labels, codes


def _fold_standard(module: ServingModule, w: Tensor, b: Tensor):
    """A linear map on standardised features as one on raw ones: W ((x - m) / s) + b =
    (W / s) x + (b - W (m / s)) (unchanged for other normalisations)."""
    if module.norm_kind != "standard":
        return w, b
    return w / module.std, b - w @ (module.mean / module.std)


def onnx_session(fused: FusedStudent, threads: Optional[int] = None):
    """An onnxruntime session computing ``fused``'s outputs, or None when ``onnx`` or
    ``onnxruntime`` is not installed. The graph is written node by node from the fused weights
    (one Gemm per layer, ReLU, Softmax, ArgMax: milliseconds, no exporter); inputs and outputs
    are numpy arrays: ``session.run(None, {"features": x})`` -> ``[probs, labels, codes]``."""
    try:
        import onnx
        import onnxruntime
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    inits, nodes = [], []

    def const(name: str, value) -> str:
        inits.append(numpy_helper.from_array(torch.as_tensor(value).detach().cpu().numpy(), name))
        return name

    x, axis1 = "features", const("axis1", torch.tensor([1]))
    if fused.norm_kind == "row":
        nodes += [helper.make_node("Abs", [x], ["abs"]),
                  helper.make_node("ReduceSum", ["abs", axis1], ["rowsum"], keepdims=1),
                  helper.make_node("Max", ["rowsum", const("tiny", torch.tensor(1e-12))], ["scale"]),
                  helper.make_node("Div", [x, "scale"], ["x0"])]
        x = "x0"
    for i, (w, b, norm) in enumerate(zip(fused.weights, fused.biases, fused.norms)):
        nodes.append(helper.make_node("Gemm", [x, const(f"w{i}", w), const(f"b{i}", b)], [f"lin{i}"]))
        x = f"lin{i}"
        if isinstance(norm, nn.LayerNorm):
            inputs = [x, const(f"ln_w{i}", norm.weight), const(f"ln_b{i}", norm.bias)]
            nodes.append(helper.make_node("LayerNormalization", inputs, [f"ln{i}"], axis=-1, epsilon=norm.eps))
            x = f"ln{i}"
        nodes.append(helper.make_node("Relu", [x], [f"h{i}"]))
        x = f"h{i}"
    c, width = torch.tensor([fused.num_classes]), torch.tensor([fused.head_weight.size(1)])
    zero = const("zero", torch.tensor([0]))
    nodes += [helper.make_node("Gemm", [x, const("head_w", fused.head_weight), const("head_b", fused.head_bias)], ["out"]),
              helper.make_node("Slice", ["out", zero, const("c", c), axis1], ["logits"]),
              helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
              helper.make_node("ArgMax", ["probs"], ["labels"], axis=1, keepdims=0)]
    if fused.has_codes:
        nodes += [helper.make_node("Slice", ["out", "c", const("width", width), axis1], ["scores"]),
                  helper.make_node("ArgMax", ["scores"], ["codes"], axis=1, keepdims=0)]
    else:
        nodes += [helper.make_node("Shape", ["labels"], ["n"]),
                  helper.make_node("Expand", [const("minus1", torch.tensor(-1, dtype=torch.long)), "n"], ["codes"])]
    graph = helper.make_graph(
        nodes, "vqgraph_student",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", fused.in_channels])],
        [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", fused.num_classes]),
         helper.make_tensor_value_info("labels", TensorProto.INT64, ["batch"]),
         helper.make_tensor_value_info("codes", TensorProto.INT64, ["batch"])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


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
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; choose from {BACKENDS}")
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

    @torch.inference_mode()
    def predict(self, x, batch_size: int = 8192) -> Prediction:
        """Class probabilities, predicted classes and code indices for the rows of ``x``.

        ``x`` [B, F] (tensor, sparse tensor, array, or a PyG ``Data`` whose ``x`` it is) is processed ``batch_size`` rows at a time; outputs are on
        the CPU.
        """
        x = self.check_features(x)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if x.size(0) == 0:
            empty = torch.empty(0, dtype=torch.long)
            return Prediction(torch.empty(0, self.num_classes), empty, empty)
        if x.size(0) <= batch_size:  # one chunk: nothing to concatenate
            return Prediction(*(t.cpu() for t in self._run(x.to(self.device))))
        parts = [self._run(chunk.to(self.device)) for chunk in x.split(batch_size)]
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
    def load(cls, path, device=None, backend: str = "auto") -> "Predictor":
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
        return cls(model, transform, codebook, metric, device=device, meta=meta, backend=backend)

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
        module = copy.deepcopy(self.module).cpu().eval()  # the served model stays where it is, as it is
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
