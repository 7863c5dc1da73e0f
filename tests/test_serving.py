"""Graph-free serving: the student artifact, the predict API and its checks, export to torch.export and ONNX."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from vqgraph.data import FeatureTransform
from vqgraph.losses import code_logits
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving import Predictor, load_exported
from vqgraph.errors import ArtifactMismatchError
from vqgraph.targets import TeacherTargets

F, C, D, K = 12, 4, 6, 20


def _predictor(norm="standard", codes=True, seed=0):
    torch.manual_seed(seed)
    model = MLPStudent(F, C, StudentConfig(hidden_channels=16, dropout=0.5), D if codes else None).eval()
    raw = torch.rand(50, F) * 3
    transform = FeatureTransform.fit(raw, norm)
    codebook = torch.randn(K, D) if codes else None
    return Predictor(model, transform, codebook, "cosine", meta={"dataset": "toy"}), raw


def test_predict_matches_the_model_on_transformed_features_and_the_shared_similarity():
    predictor, raw = _predictor()
    out = predictor.predict(raw)
    with torch.no_grad():
        ref = predictor.model(predictor.transform(raw))
    assert torch.allclose(out.probs, torch.softmax(ref.logits, -1), atol=1e-6)
    assert torch.equal(out.labels, ref.logits.argmax(-1))
    # codes: the same similarity as the teacher's quantizer, against the frozen codebook
    assert torch.equal(out.codes, code_logits(ref.z, predictor.codebook, "cosine").argmax(-1))
    assert out.codes.min() >= 0 and out.codes.max() < K
    assert torch.allclose(out.probs.sum(-1), torch.ones(raw.size(0)))


def test_batching_does_not_change_predictions():
    predictor, raw = _predictor()
    whole = predictor.predict(raw, batch_size=10_000)
    for batch_size in (1, 7, 49):
        part = predictor.predict(raw, batch_size=batch_size)
        assert torch.allclose(part.probs, whole.probs, atol=1e-6)
        assert torch.equal(part.codes, whole.codes) and torch.equal(part.labels, whole.labels)


def test_student_without_codebook_reports_code_minus_one():
    predictor, raw = _predictor(norm="row", codes=False)
    out = predictor.predict(raw)
    assert (out.codes == -1).all() and out.probs.shape == (raw.size(0), C)


def _trained_like_student(norm: str, codes: bool, metric: str, num_layers: int = 3):
    """A student whose batch-norm statistics and affine weights are not the identity (what folding must honour)."""
    torch.manual_seed(1)
    model = MLPStudent(F, C, StudentConfig(hidden_channels=16, num_layers=num_layers, norm=norm), D if codes else None)
    with torch.no_grad():
        for layer_norm in model.norms:
            for name in ("weight", "bias"):
                if hasattr(layer_norm, name):
                    getattr(layer_norm, name).copy_(torch.randn_like(getattr(layer_norm, name)))
            if hasattr(layer_norm, "running_var"):  # statistics of the scale of the inputs' (row-normalised ones are small)
                layer_norm.running_mean.copy_(torch.randn_like(layer_norm.running_mean) * 0.01)
                layer_norm.running_var.copy_(torch.rand_like(layer_norm.running_var) * 0.01 + 0.001)
    return model.eval(), (torch.randn(K, D) * 0.3 if codes else None)


@pytest.mark.parametrize("backend", ["fused", "onnxruntime"])
@pytest.mark.parametrize("norm,transform,codes,metric,layers", [
    ("batch", "standard", True, "cosine", 3), ("batch", "row", True, "euclidean", 3), ("layer", "row", False, "cosine", 3),
    ("none", "none", True, "cosine", 3), ("layer", "standard", True, "euclidean", 3),
    ("none", "standard", False, "cosine", 1), ("none", "row", False, "cosine", 1),  # linear students
])
def test_lean_backends_equal_the_eager_module(backend, norm, transform, codes, metric, layers, monkeypatch):
    from vqgraph.serving import predictor as serving  # where the Predictor reads them

    # the 300 rows take onnxruntime's many-thread session, the chunks of 1 and 7 its one-thread one
    monkeypatch.setattr(serving, "SMALL_BATCH", 8)
    model, codebook = _trained_like_student(norm, codes, metric, layers)
    raw = torch.randn(300, F) * 3
    fitted = FeatureTransform.fit(raw, transform)
    eager = Predictor(model, fitted, codebook, metric, backend="eager").predict(raw)
    lean = Predictor(model, fitted, codebook, metric, backend=backend)
    assert lean.backend == backend
    out = lean.predict(raw)
    assert torch.allclose(out.probs, eager.probs, atol=1e-5) and out.probs.dtype == torch.float32
    assert torch.equal(out.labels, eager.labels) and torch.equal(out.codes, eager.codes)
    assert out.labels.dtype == out.codes.dtype == torch.long
    if codes:
        assert out.codes.unique().numel() > 1  # codes of several kinds: the folded scores rank them as the eager ones do
    for batch_size in (1, 7):  # one-row and ragged chunks, of a tensor that requires grad
        part = lean.predict(raw[:20].clone().requires_grad_(True), batch_size=batch_size)
        assert torch.equal(part.labels, eager.labels[:20]) and torch.equal(part.codes, eager.codes[:20])


@pytest.mark.parametrize("norm,transform,codes", [("layer", "row", False), ("batch", "standard", True)])
def test_the_onnxruntime_graph_is_a_valid_onnx_model_written_without_the_onnx_package(norm, transform, codes):
    """The backend's protobuf bytes (vqgraph.serving.onnx_graph) read by the onnx package itself: its
    checker passes, and the graph has the operators, weights and signature the fused student has."""
    import onnx
    from onnx import numpy_helper

    from vqgraph.serving.fused import FusedStudent, onnx_model

    model, codebook = _trained_like_student(norm, codes, "cosine")
    fitted = FeatureTransform.fit(torch.randn(30, F), transform)
    fused = FusedStudent.from_serving(Predictor(model, fitted, codebook, backend="eager").module)
    proto = onnx.load_from_string(onnx_model(fused))
    onnx.checker.check_model(proto, full_check=True)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Gemm") == len(fused.weights) + 1 and ("LayerNormalization" in ops) == (norm == "layer")
    assert ("Abs" in ops) == (transform == "row") and ops.count("ArgMax") == 1 + codes
    weights = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    assert np.array_equal(weights["head_w"], fused.head_weight.numpy()) and weights["minus1" if not codes else "c"].ndim < 2
    assert [i.name for i in proto.graph.input] == ["features"] and [o.name for o in proto.graph.output] == [
        "probs", "labels", "codes"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert (dims[0].dim_param, dims[1].dim_value) == ("batch", F)
    norm_node = [n for n in proto.graph.node if n.op_type in ("LayerNormalization", "Softmax")][0]
    assert onnx.helper.get_attribute_value(norm_node.attribute[0]) == -1  # a negative int64 attribute


def test_backend_choice_and_errors(monkeypatch):
    predictor, raw = _predictor()
    assert predictor.backend == "onnxruntime"  # installed here (the test extras): auto takes it
    with pytest.raises(ValueError, match="unknown backend 'tvm'"):
        Predictor(predictor.model, backend="tvm")
    from vqgraph.serving import predictor as serving  # where the Predictor reads them

    monkeypatch.setattr(serving, "onnx_session", lambda fused, threads=None: None)  # as without onnxruntime
    assert Predictor(predictor.model, predictor.transform, predictor.codebook).backend == "fused"
    with pytest.raises(ImportError, match="needs the 'onnxruntime' package: pip install onnxruntime"):
        Predictor(predictor.model, predictor.transform, predictor.codebook, backend="onnxruntime")


def test_artifact_roundtrip_and_numpy_input(tmp_path):
    predictor, raw = _predictor()
    path = predictor.save(tmp_path / "student.pt")
    loaded = Predictor.load(path)
    assert loaded.meta == {"dataset": "toy"} and loaded.transform.kind == "standard"
    a, b = predictor.predict(raw), loaded.predict(raw.numpy().astype(np.float64))
    assert torch.allclose(a.probs, b.probs, atol=1e-6) and torch.equal(a.codes, b.codes)
    assert not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize(
    "bad, error, words",
    [
        (torch.rand(5, F + 1), ValueError, f"[num_nodes, {F}]"),
        (torch.rand(F), ValueError, "1-D"),
        (torch.rand(2, 3, F), ValueError, "shape"),
        (torch.full((3, F), float("nan")), ValueError, "NaN"),
        (torch.tensor([[0.0] * F, [float("inf")] * F]), ValueError, "first: row 1"),
        (torch.ones(3, F, dtype=torch.bool), TypeError, "bool"),
        (torch.ones(3, F, dtype=torch.complex64), TypeError, "complex64"),
        ("not features", TypeError, "features must be"),
    ],
)
def test_predict_rejects_bad_input_with_a_clear_error(bad, error, words):
    predictor, _ = _predictor()
    with pytest.raises(error, match=None) as info:
        predictor.predict(bad)
    assert words in str(info.value)


def test_integer_features_are_accepted_and_empty_input_gives_empty_output():
    predictor, _ = _predictor()
    counts = torch.randint(0, 3, (4, F))
    assert torch.allclose(predictor.predict(counts).probs, predictor.predict(counts.float()).probs)
    empty = predictor.predict(torch.empty(0, F))
    assert empty.probs.shape == (0, C) and empty.codes.shape == (0,)
    with pytest.raises(ValueError, match="batch_size"):
        predictor.predict(torch.rand(2, F), batch_size=0)


def test_load_rejects_missing_corrupt_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Predictor.load(tmp_path / "nope.pt")
    (tmp_path / "corrupt.pt").write_bytes(b"\x00not a torch file")
    with pytest.raises(ArtifactMismatchError, match="not a readable student artifact"):
        Predictor.load(tmp_path / "corrupt.pt")
    targets = TeacherTargets(torch.zeros(3, C), torch.zeros(3, D), torch.zeros(3, dtype=torch.long), None)
    targets.save(tmp_path / "teacher.pt")
    with pytest.raises(ArtifactMismatchError, match="not a vqgraph student artifact"):
        Predictor.load(tmp_path / "teacher.pt")


def test_codebook_width_must_match_the_projection():
    model = MLPStudent(F, C, StudentConfig(hidden_channels=16), D)
    with pytest.raises(ValueError, match="codebook width 5"):
        Predictor(model, codebook=torch.randn(K, 5))
    with pytest.raises(ValueError, match="no projection"):
        Predictor(MLPStudent(F, C, StudentConfig(hidden_channels=16)), codebook=torch.randn(K, D))


def test_torch_export_equals_eager_and_runs_without_vqgraph(tmp_path):
    predictor, raw = _predictor()
    path = predictor.export(tmp_path / "student.pt2")
    assert not list(tmp_path.glob(".*tmp*"))
    exported = load_exported(path)
    for rows in (1, 3, raw.size(0)):
        eager = predictor.predict(raw[:rows])
        probs, labels, codes = exported(raw[:rows])
        assert torch.allclose(probs, eager.probs, atol=1e-6)
        assert torch.equal(labels, eager.labels) and torch.equal(codes, eager.codes)
    # a fresh interpreter in which importing vqgraph or torch_geometric fails still runs it
    np.save(tmp_path / "x.npy", raw.numpy())
    script = textwrap.dedent(
        f"""
        import sys, json, importlib.abc
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("vqgraph", "torch_geometric"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import numpy, torch
        module = torch.export.load({str(path)!r}).module()
        probs, labels, codes = module(torch.from_numpy(numpy.load({str(tmp_path / 'x.npy')!r})))
        print(json.dumps({{"labels": labels.tolist(), "codes": codes.tolist()}}))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    standalone = json.loads(done.stdout.strip().splitlines()[-1])
    eager = predictor.predict(raw)
    assert standalone == {"labels": eager.labels.tolist(), "codes": eager.codes.tolist()}


def test_onnx_export_equals_eager_and_prints_only_relevant_warnings(tmp_path, monkeypatch, caplog):
    import warnings

    import onnxruntime as ort  # the dev extra installs onnx, onnxscript and onnxruntime

    predictor, raw = _predictor(norm="row")
    export = torch.onnx.export

    def export_with_a_relevant_warning(*args, **kwargs):
        warnings.warn("a relevant warning", UserWarning)
        return export(*args, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", export_with_a_relevant_warning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = predictor.export(tmp_path / "student.onnx", format="onnx")
    messages = [str(w.message) for w in caught]
    assert "a relevant warning" in messages and not any("LeafSpec" in m for m in messages)
    # the exporter's log lines about torchvision's operators, which a student never uses
    assert not [r for r in caplog.records if "torchvision" in r.getMessage()]
    assert [p.name for p in tmp_path.iterdir()] == ["student.onnx"]  # one self-contained file
    session = ort.InferenceSession(str(path))
    for rows in (1, raw.size(0)):
        probs, labels, codes = session.run(None, {"features": raw[:rows].numpy()})
        eager = predictor.predict(raw[:rows])
        np.testing.assert_allclose(probs, eager.probs.numpy(), atol=1e-6)
        assert (labels == eager.labels.numpy()).all() and (codes == eager.codes.numpy()).all()


def test_unknown_export_format_is_named(tmp_path):
    predictor, _ = _predictor()
    with pytest.raises(ValueError, match="'tflite'"):
        predictor.export(tmp_path / "m", format="tflite")


@pytest.mark.parametrize("fmt, suffix", [("torch_export", ".pt2"), ("onnx", ".onnx")])
def test_export_cli_checks_the_export_against_eager(tmp_path, capsys, fmt, suffix):
    from experiments import export as export_cli

    predictor, _ = _predictor()
    artifact = predictor.save(tmp_path / "student.pt")
    assert export_cli.main([str(artifact), "--format", fmt]) == 0
    assert (tmp_path / f"student{suffix}").is_file()
    assert "labels and codes equal" in capsys.readouterr().out


def test_export_cli_fails_on_nan_and_reports_a_damaged_artifact_in_one_line(tmp_path, capsys, monkeypatch):
    from experiments import export as export_cli

    predictor, _ = _predictor()
    artifact = predictor.save(tmp_path / "student.pt")

    def exported_nan(path):  # an export whose probabilities are NaN: max |dprob| is nan, which must fail
        module = load_exported(path)
        return lambda x: (torch.full_like(module(x)[0], float("nan")), *module(x)[1:])

    monkeypatch.setattr(export_cli, "load_exported", exported_nan)
    with pytest.raises(SystemExit, match=re.escape("disagrees with the eager student: max |dprob| nan, finite probabilities False")):
        export_cli.main([str(artifact)])
    payload = torch.load(artifact, weights_only=True)
    payload["codebook"][0, 0] = float("nan")
    torch.save(payload, tmp_path / "nan.pt")
    assert export_cli.main([str(tmp_path / "nan.pt")]) == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'nan.pt'}: field 'codebook' holds 1 NaN/inf values (a damaged artifact)\n"


def test_export_cli_refuses_a_folder_or_the_student_itself_as_out(tmp_path, capsys):
    """``--out FOLDER`` was a traceback after the export; ``--out`` the student replaced it silently."""
    from experiments import export as export_cli

    predictor, _ = _predictor()
    artifact = predictor.save(tmp_path / "student.pt")
    before = artifact.read_bytes()
    for out, words in ((tmp_path, "is a folder: give the exported file's path"),
                       (artifact, "is the student artifact itself: the export would replace it")):
        with pytest.raises(SystemExit) as exit_:
            export_cli.main([str(artifact), "--out", str(out)])
        assert exit_.value.code == 2 and f"error: --out {out} {words}" in capsys.readouterr().err
    assert artifact.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["student.pt"]
