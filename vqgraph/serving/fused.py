"""Serving backends: :class:`FusedStudent` (the serving module's weights folded once) and
:func:`onnx_session` (that fused graph written for onnxruntime)."""

from __future__ import annotations

import copy
from typing import Optional

import torch
from torch import Tensor, nn

from vqgraph.losses import code_map
from vqgraph.serving import onnx_graph
from vqgraph.serving.module import ServingModule


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
        if module.has_codes:  # the code logits, affine in z (up to a per-row term), of z = projection(h)
            weight, bias = code_map(module.codebook, module.metric)
            code_w, code_b = weight @ student.projection.weight, weight @ student.projection.bias
            code_b = code_b if bias is None else code_b + bias
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
    """An onnxruntime session computing ``fused``'s outputs (:func:`onnx_model`), or None when
    ``onnxruntime`` is not installed; inputs and outputs are numpy arrays:
    ``session.run(None, {"features": x})`` -> ``[probs, labels, codes]``."""
    try:
        import onnxruntime
    except ImportError:
        return None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(onnx_model(fused), options, providers=["CPUExecutionProvider"])


def onnx_model(fused: FusedStudent) -> bytes:
    """``fused``'s computation as a serialised ONNX model, written node by node from the fused
    weights (one Gemm per layer, ReLU, Softmax, ArgMax: milliseconds, no exporter, and no ``onnx``
    import: :mod:`.onnx_graph`)."""
    inits, nodes = [], []

    def const(name: str, value) -> str:
        inits.append(onnx_graph.tensor(name, torch.as_tensor(value).detach().cpu().numpy()))
        return name

    x, axis1 = "features", const("axis1", torch.tensor([1]))
    if fused.norm_kind == "row":
        nodes += [onnx_graph.node("Abs", [x], ["abs"]),
                  onnx_graph.node("ReduceSum", ["abs", axis1], ["rowsum"], keepdims=1),
                  onnx_graph.node("Max", ["rowsum", const("tiny", torch.tensor(1e-12))], ["scale"]),
                  onnx_graph.node("Div", [x, "scale"], ["x0"])]
        x = "x0"
    for i, (w, b, norm) in enumerate(zip(fused.weights, fused.biases, fused.norms)):
        nodes.append(onnx_graph.node("Gemm", [x, const(f"w{i}", w), const(f"b{i}", b)], [f"lin{i}"]))
        x = f"lin{i}"
        if isinstance(norm, nn.LayerNorm):
            inputs = [x, const(f"ln_w{i}", norm.weight), const(f"ln_b{i}", norm.bias)]
            nodes.append(onnx_graph.node("LayerNormalization", inputs, [f"ln{i}"], axis=-1, epsilon=float(norm.eps)))
            x = f"ln{i}"
        nodes.append(onnx_graph.node("Relu", [x], [f"h{i}"]))
        x = f"h{i}"
    c, width = torch.tensor([fused.num_classes]), torch.tensor([fused.head_weight.size(1)])
    zero = const("zero", torch.tensor([0]))
    nodes += [onnx_graph.node("Gemm", [x, const("head_w", fused.head_weight), const("head_b", fused.head_bias)], ["out"]),
              onnx_graph.node("Slice", ["out", zero, const("c", c), axis1], ["logits"]),
              onnx_graph.node("Softmax", ["logits"], ["probs"], axis=-1),
              onnx_graph.node("ArgMax", ["probs"], ["labels"], axis=1, keepdims=0)]
    if fused.has_codes:
        nodes += [onnx_graph.node("Slice", ["out", "c", const("width", width), axis1], ["scores"]),
                  onnx_graph.node("ArgMax", ["scores"], ["codes"], axis=1, keepdims=0)]
    else:
        nodes += [onnx_graph.node("Shape", ["labels"], ["n"]),
                  onnx_graph.node("Expand", [const("minus1", torch.tensor(-1, dtype=torch.long)), "n"], ["codes"])]
    float32, int64 = onnx_graph.FLOAT, onnx_graph.INT64
    return onnx_graph.model(
        "vqgraph_student", nodes, inits, [onnx_graph.value_info("features", float32, ["batch", fused.in_channels])],
        [onnx_graph.value_info("probs", float32, ["batch", fused.num_classes]),
         onnx_graph.value_info("labels", int64, ["batch"]), onnx_graph.value_info("codes", int64, ["batch"])],
    )
