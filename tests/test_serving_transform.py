"""Serving keeps its preprocessing: ``normalize_features`` records its transform on the data,
``fit_student`` hands it (and the codebook) to its result, and ``result.predictor()`` serves raw
features exactly as training saw them, in a new process too; ``experiments.run`` writes its
``student.pt`` through the same path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from conftest import REPO
from test_readme import _snippet

import vqgraph
from vqgraph import DistillConfig, FeatureTransform, Predictor, StudentConfig, StudentResult, TeacherConfig, TrainConfig
from vqgraph.losses import code_logits
from vqgraph.models.student import MLPStudent


def _served_in_a_new_process(path, features: np.ndarray, tmp_path) -> dict:
    """Labels and codes of ``Predictor.load(path).predict(features)`` in a fresh interpreter."""
    np.save(tmp_path / "raw.npy", features)
    script = textwrap.dedent(f"""
        import json, numpy
        from vqgraph import Predictor
        out = Predictor.load({str(path)!r}).predict(numpy.load({str(tmp_path / 'raw.npy')!r}))
        print(json.dumps({{"labels": out.labels.tolist(), "codes": out.codes.tolist()}}))
    """)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_readme_flow_saved_serves_raw_features_as_training_saw_them_in_a_new_process(
        data_root, monkeypatch, tmp_path):
    """README's Python flow (row-normalised Cora, a vqgraph student, 5 epochs), saved through
    ``student.predictor()``, loaded in a new process: raw features in, the training-time labels
    and codes out. The README's former serving line (no transform) changed labels silently."""
    monkeypatch.setenv("VQGRAPH_DATA", str(data_root))
    namespace: dict = {}
    exec(compile(_snippet("## From Python").replace("max_epochs=200", "max_epochs=5"), "README.md", "exec"), namespace)
    data, student, teacher = namespace["data"], namespace["student"], namespace["teacher"]
    assert data.feature_transform.kind == "row" and student.transform is data.feature_transform
    assert student.codebook is teacher.targets.codebook and student.metric == teacher.targets.metric
    model = student.model.eval()
    with torch.no_grad():  # the training-time predictions: in process, on the normalised features
        out = model(data.x)
    labels, codes = out.logits.argmax(-1), code_logits(out.z, student.codebook, student.metric).argmax(-1)
    path = student.predictor().save(tmp_path / "student.pt")
    raw = vqgraph.load_dataset("cora").x
    assert not torch.allclose(raw, data.x)
    served = _served_in_a_new_process(path, raw.numpy(), tmp_path)
    assert served["labels"] == labels.tolist()
    assert served["codes"] == codes.tolist() and min(served["codes"]) >= 0
    with pytest.warns(UserWarning, match="trained on features normalised by 'row'"):
        old = Predictor(student.model, codebook=teacher.targets.codebook)  # README's former line
    assert (old.predict(raw).labels != labels).any()  # what it served silently


def test_normalize_features_records_its_transform_and_refuses_a_second_one():
    g = vqgraph.make_csbm(num_nodes=60, num_classes=3, seed=0)
    assert getattr(g, "feature_transform", None) is None
    row = vqgraph.normalize_features(g, "row")
    assert row.feature_transform.kind == "row" and torch.equal(row.x, row.feature_transform(g.x))
    assert getattr(g, "feature_transform", None) is None  # the input is not changed
    standard = vqgraph.normalize_features(g, "standard", fit_idx=torch.arange(30))
    t = standard.feature_transform
    assert torch.allclose(t.mean, g.x[:30].mean(0)) and torch.equal(standard.x, t(g.x))
    assert vqgraph.normalize_features(row, "none") is row  # nothing applied: nothing to record
    from torch_geometric.data import Data

    # 3 nodes and 3 edges: a 3-tuple stored on this Data would pass for a node (and edge) attribute
    small = Data(x=torch.rand(3, 4), edge_index=torch.tensor([[0, 1, 2], [1, 2, 0]]), y=torch.tensor([0, 1, 2]))
    sub = vqgraph.normalize_features(small, "row").subgraph(torch.tensor([0, 2]))
    assert sub.num_nodes == 2 and sub.feature_transform.kind == "row"
    with pytest.raises(ValueError, match=r"normalize_features\(data, 'standard'\): data's features are normalised "
                                         r"already \('row', recorded as data.feature_transform\); normalising twice "
                                         r"is refused, not composed"):
        vqgraph.normalize_features(row, "standard")
    with pytest.raises(ValueError, match="normalising twice is refused"):
        vqgraph.normalize_features(row, "row")


def test_a_student_result_keeps_working_with_three_fields_and_serves_through_its_parts():
    torch.manual_seed(0)
    model = MLPStudent(8, 3, StudentConfig(hidden_channels=8), 4).eval()
    plain = StudentResult(model, {"test/acc": 0.5}, [])
    assert plain.transform.kind == "none" and plain.codebook is None and plain.metric == "cosine"
    served = plain.predictor(backend="eager")
    assert served.transform.kind == "none" and served.codebook is None
    x = torch.rand(10, 8)
    transform, codebook = FeatureTransform.fit(x, "standard"), torch.randn(5, 4)
    full = StudentResult(model, {}, [], transform, codebook, "euclidean")
    out = full.predictor(backend="eager").predict(x)
    with torch.no_grad():
        ref = model(transform(x))
    assert torch.equal(out.labels, ref.logits.argmax(-1))
    assert torch.equal(out.codes, code_logits(ref.z, codebook, "euclidean").argmax(-1))
    assert (full.predictor(codebook=None).predict(x).codes == -1).all()  # kwargs override the parts


def _fit_small(norm: str, method: str = "mlp"):
    g = vqgraph.make_csbm(num_nodes=240, num_classes=3, seed=0)
    data = vqgraph.normalize_features(g, norm) if norm != "none" else g
    split = vqgraph.make_split(data, seed=0)
    train = TrainConfig(max_epochs=2, progress=False)
    return g, vqgraph.fit_student(data, split, None, StudentConfig(hidden_channels=8), DistillConfig(method=method),
                                  train)


def test_fit_student_hands_the_transform_to_its_result_and_a_bare_predictor_warns():
    raw, result = _fit_small("row")
    assert result.transform.kind == "row" and result.model.feature_transform is result.transform
    with pytest.warns(UserWarning, match=r"no transform was given, so predict\(\) takes its input as normalised "
                                         r"already. To serve raw features use result.predictor\(\)"):
        Predictor(result.model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Predictor(result.model, transform=FeatureTransform())  # said so: normalised features will come
        served = result.predictor(backend="eager").predict(raw.x)
        _, untransformed = _fit_small("none")
        assert untransformed.transform.kind == "none"
        Predictor(untransformed.model)  # trained on raw features: nothing to warn about
    with torch.no_grad():
        assert torch.equal(served.labels, result.model.eval()(result.transform(raw.x)).logits.argmax(-1))


@pytest.mark.parametrize("distill, serves_codes", [
    (DistillConfig(method="vqgraph"), True),
    (DistillConfig(method="vqgraph", code_target="index"), True),
    (DistillConfig(method="vqgraph", code_target="class"), False),  # reads the logits: z is never fitted
    (DistillConfig(method="vqgraph", soft_token_weight=0.0), False),
    (DistillConfig(method="glnn", similarity_weight=0.1), False),
])
def test_the_result_serves_codes_only_when_a_term_fitted_z_to_the_codebook(distill, serves_codes):
    """A projection no code term trained gives codes of chance agreement with the teacher's: the
    result serves none then (it used to serve the codebook for every ``vqgraph`` student)."""
    data = vqgraph.make_csbm(num_nodes=240, num_classes=3, seed=0)
    split = vqgraph.make_split(data, seed=0)
    targets = vqgraph.fit_teacher(data, split, TeacherConfig(hidden_channels=16, codebook_size=16),
                                  TrainConfig(max_epochs=3, progress=False)).targets
    result = vqgraph.fit_student(data, split, targets, StudentConfig(hidden_channels=8), distill,
                                 TrainConfig(max_epochs=2, progress=False))
    assert result.model.code_dim == targets.z.size(1)  # the projection is there either way
    codes = result.predictor(backend="eager").predict(data.x).codes
    if serves_codes:
        assert result.codebook is targets.codebook and bool((codes >= 0).all())
    else:
        assert result.codebook is None and bool((codes == -1).all())


@pytest.mark.parametrize("method, extra", [("vqgraph", []), ("glnn", ["distill.similarity_weight=0.1"])])
def test_the_runs_student_file_carries_the_runs_transform_and_the_codebook_of_the_code_term(
        tmp_path, data_root, method, extra):
    """``experiments.run`` builds ``student.pt`` through ``result.predictor()``: the run's
    transform, the codebook for the code term only (a projection trained by the similarity term
    alone serves no codes), as the run wrote it before."""
    from experiments import run as run_cli
    from vqgraph.app.task import DataConfig, prepare_task

    argv = ["--dataset", "cora", "--data-root", str(data_root), "--method", method, "--seed", "0", "--out",
            str(tmp_path / "run"), "--cache", str(tmp_path / "cache"), "--quiet", "--set", "train.max_epochs=3",
            "student_train.max_epochs=3", "teacher.codebook_size=32", *extra]
    assert run_cli.main(argv) == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    loaded = Predictor.load(tmp_path / "run" / "student.pt")
    task = prepare_task("cora", "transductive", 0, DataConfig(**results["config"]["data"]), data_root)
    assert loaded.transform.kind == task.transform.kind == results["config"]["data"]["feature_norm"]
    if method == "vqgraph":
        targets = vqgraph.TeacherTargets.load(results["teacher_artifact"])
        assert torch.equal(loaded.codebook, targets.codebook) and loaded.meta["method"] == "vqgraph"
    else:
        assert loaded.model.projection is not None and loaded.codebook is None
    raw = vqgraph.load_dataset("cora", root=data_root)
    test_idx = vqgraph.make_split(raw, seed=0).test_idx
    served = (loaded.predict(raw.x).labels[test_idx] == raw.y[test_idx]).double().mean().item()
    assert served == pytest.approx(results["metrics"]["test/acc"], abs=1e-6)
