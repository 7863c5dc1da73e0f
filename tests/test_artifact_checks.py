"""Damaged artifacts are refused whole, naming the path and the field: student artifacts
(``Predictor.load``), exported ``.pt2`` files (``load_exported``, before torch reads them), teacher
targets and checkpoints; and the ``Predictor``'s own arguments."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqgraph.data import FeatureTransform
from vqgraph.errors import ArtifactMismatchError
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving import Predictor

F, C, D, K = 12, 4, 6, 20
NAN = float("nan")


def _predictor(codes=True, norm="standard"):
    torch.manual_seed(0)
    model = MLPStudent(F, C, StudentConfig(hidden_channels=16), D if codes else None).eval()
    transform = FeatureTransform.fit(torch.rand(50, F), norm)
    return Predictor(model, transform, torch.randn(K, D) if codes else None, "cosine", meta={"dataset": "toy"})


def _poison(tensor, value=NAN):
    tensor = tensor.clone()
    tensor.view(-1)[0] = value
    return tensor


def _set(key, value):
    return lambda p: p.update({key: value})


def _sub(key, sub, value):
    return lambda p: p.update({key: {**p[key], sub: value}})


STUDENT_DAMAGES = {  # name: (damage, the words of the error after "<path>: ")
    "no-transform": (lambda p: p.pop("transform"), "field 'transform' is missing"),
    "wider-features": (_set("in_channels", F + 1),
                       "field 'state_dict.layers.0.weight' has shape [16, 12], expected [16, 13]"),
    "nan-weight": (lambda p: p["state_dict"].update({"layers.0.weight": _poison(p["state_dict"]["layers.0.weight"])}),
                   "field 'state_dict.layers.0.weight' holds 1 NaN/inf values"),
    "inf-bias": (lambda p: p["state_dict"].update({"classifier.bias": _poison(p["state_dict"]["classifier.bias"],
                                                                              float("inf"))}),
                 "field 'state_dict.classifier.bias' holds 1 NaN/inf values"),
    "double-weight": (lambda p: p["state_dict"].update({"classifier.bias": p["state_dict"]["classifier.bias"].double()}),
                      "field 'state_dict.classifier.bias' has dtype torch.float64, expected torch.float32"),
    "missing-weight": (lambda p: p["state_dict"].pop("projection.bias"), "field 'state_dict' holds the weights"),
    "nan-codebook": (lambda p: p.update(codebook=_poison(p["codebook"])), "field 'codebook' holds 1 NaN/inf values"),
    "wide-codebook": (_set("codebook", torch.randn(K, D + 1)), "field 'codebook' has shape [20, 7], expected [*, 6]"),
    "int-codebook": (_set("codebook", torch.zeros(K, D, dtype=torch.long)), "field 'codebook' has dtype torch.int64"),
    "unknown-transform": (_sub("transform", "kind", "zscore"), "field 'transform.kind' is 'zscore'; known: "),
    "short-mean": (_sub("transform", "mean", torch.zeros(5)), "field 'transform.mean' has shape [5], expected [12]"),
    "nan-std": (lambda p: p.update(transform={**p["transform"], "std": _poison(p["transform"]["std"])}),
                "field 'transform.std' holds 1 NaN/inf values"),
    "zero-std": (_sub("transform", "std", torch.zeros(F)), "field 'transform.std' has scales <= 0"),
    "stats-for-row": (_sub("transform", "kind", "row"), "field 'transform' of kind 'row' has statistics"),
    "unknown-metric": (_set("metric", "dot"), "field 'metric' is 'dot'; known: ('cosine', 'euclidean')"),
    "string-classes": (_set("num_classes", "4"), "field 'num_classes' must be int, got str"),
    "bool-width": (_set("in_channels", True), "field 'in_channels' must be int, got bool"),
    "zero-classes": (_set("num_classes", 0), "field 'num_classes' must be >= 1, got 0"),
    "unknown-student-key": (_sub("student", "width", 3), "field 'student' has unknown keys ['width']"),
    "string-hidden": (_sub("student", "hidden_channels", "16"), "field 'student.hidden_channels' must be int, got str"),
    "nan-dropout": (_sub("student", "dropout", NAN), "field 'student.dropout' is nan"),
    "bad-dropout": (_sub("student", "dropout", 1.5), "field 'student' is not a valid architecture: dropout"),
    "linear-with-codes": (_sub("student", "num_layers", 1), "field 'student' does not fit the recorded widths"),
    "meta-list": (_set("meta", [1]), "field 'meta' must be dict, got list"),
    "state-list": (_set("state_dict", []), "field 'state_dict' must be dict, got list"),
}


def _assert_refused(good, damages, name, load):
    """The artifact ``good`` with ``damages[name]`` applied is refused by ``load``, the error
    starting with its path and the damage's words."""
    payload = torch.load(good, weights_only=True)
    damage, words = damages[name]
    damage(payload)
    bad = good.with_name(f"{name}.pt")
    torch.save(payload, bad)
    with pytest.raises(ArtifactMismatchError) as info:
        load(bad)
    assert str(info.value).startswith(f"{bad}: {words}"), str(info.value)


@pytest.mark.parametrize("name", list(STUDENT_DAMAGES))
def test_a_damaged_student_artifact_is_refused_naming_the_path_and_field(tmp_path, name):
    _assert_refused(_predictor().save(tmp_path / "good.pt"), STUDENT_DAMAGES, name, Predictor.load)


def test_a_student_without_codes_and_an_old_artifact_without_a_later_key_still_load(tmp_path):
    plain = Predictor.load(_predictor(codes=False, norm="row").save(tmp_path / "plain.pt"))
    assert plain.codebook is None and plain.transform.kind == "row"
    payload = torch.load(_predictor().save(tmp_path / "old.pt"), weights_only=True)
    del payload["student"]["sparse_input"]  # written before that key existed: its default
    torch.save(payload, tmp_path / "old.pt")
    assert Predictor.load(tmp_path / "old.pt").model.config.sparse_input == "auto"


def test_predictor_arguments_are_checked_with_one_clear_error():
    good = _predictor()
    model, transform, codebook = good.model, good.transform, good.codebook
    cases = [
        (lambda: Predictor(model, FeatureTransform("standard", torch.zeros(5), torch.ones(5)), codebook),
         ValueError, "the feature transform's mean has shape [5], the student reads 12 features"),
        (lambda: Predictor(model, FeatureTransform("standard", _poison(transform.mean), transform.std), codebook),
         ValueError, "the feature transform's mean holds NaN/inf values"),
        (lambda: Predictor(model, FeatureTransform("zscore"), codebook), ValueError, "unknown feature transform 'zscore'"),
        (lambda: Predictor(model, "standard", codebook), ValueError, "unknown feature transform 'str'"),
        (lambda: Predictor(model, transform, _poison(codebook)), ValueError, "the codebook holds NaN/inf values"),
        (lambda: Predictor(model, transform, codebook[0]), ValueError, "the codebook must be a [K, 6] tensor, got [6]"),
        (lambda: Predictor(model, transform, codebook, metric="dot"), ValueError, "unknown metric 'dot'"),
        (lambda: Predictor("student.pt"), TypeError, "Predictor needs a student module (an nn.Module whose forward(x) "
                                                    "returns logits, (logits, z) or a StudentOutput), got str"),
    ]
    for make, error, words in cases:
        with pytest.raises(error) as info:
            make()
        assert words in str(info.value)
    broken = MLPStudent(F, C, StudentConfig(hidden_channels=16), D)
    with torch.no_grad():
        broken.classifier.weight[0, 0] = NAN
    with pytest.raises(ValueError, match="the student's classifier.weight holds NaN/inf values"):
        Predictor(broken, transform, codebook)


@pytest.mark.parametrize("batch_size", [0, -3, 2.5, "64", True, None, np.int64(0)])
def test_a_batch_size_of_a_wrong_type_or_value_is_one_clear_error(batch_size):
    predictor = _predictor()
    with pytest.raises(ValueError, match=r"batch_size must be an integer >= 1, got "):
        predictor.predict(torch.rand(3, F), batch_size=batch_size)
    whole = predictor.predict(torch.rand(3, F), batch_size=np.int64(2))  # a numpy integer is an integer
    assert whole.probs.shape == (3, C)


def test_the_predictor_repr_names_widths_classes_codebook_transform_backend_and_path(tmp_path):
    predictor = _predictor()
    text = repr(predictor)
    assert text.startswith("Predictor(in_channels=12, num_classes=4, num_layers=2, hidden_channels=16, "
                           "codebook=20 x 6 (cosine), transform='standard', backend=")
    assert "path=" not in text
    loaded = Predictor.load(predictor.save(tmp_path / "student.pt"), backend="fused")
    assert repr(loaded).endswith(f"backend='fused', device='cpu', path={str(tmp_path / 'student.pt')!r})")
    assert "codebook=none" in repr(_predictor(codes=False))


# ---- exported .pt2 files: only ours, checked before torch reads them ------------------------------

class _Payload:
    """Unpickling this creates ``path`` (a harmless stand-in for running any code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.mkdir, (self.path,)


def _members(path):
    import zipfile

    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        return names[0].split("/", 1)[0], {n.split("/", 1)[1]: archive.read(n) for n in names}


def _rewrite(path, out, change, manifest=True):
    """A copy of the export ``path`` at ``out`` with ``change(members)`` applied; with ``manifest``
    its manifest recomputed, as whoever crafts a file can do."""
    import hashlib
    import json
    import zipfile

    prefix, members = _members(path)
    change(members)
    if manifest and "extra/vqgraph.json" in members:
        listed = {n: hashlib.sha256(b).hexdigest() for n, b in members.items() if n != "extra/vqgraph.json"}
        members["extra/vqgraph.json"] = json.dumps({**json.loads(members["extra/vqgraph.json"]), "members": listed}).encode()
    with zipfile.ZipFile(out, "w") as archive:
        for name, blob in members.items():
            archive.writestr(f"{prefix}/{name}", blob)
    return out


def _edit_json(name, edit):
    import json

    def change(members):
        value = json.loads(members[name])
        edit(value)
        members[name] = json.dumps(value).encode()
    return change


def _pickled_weight(marker):
    import pickle

    def edit(config):
        config["config"]["student.layers.0.weight"]["use_pickle"] = True

    def change(members):
        _edit_json("data/weights/model_weights_config.json", edit)(members)
        members["data/weights/weight_0"] = pickle.dumps(_Payload(marker), protocol=2)
    return change


def _pickled_sample_inputs(marker):
    import io
    import pickle
    import zipfile

    def change(members):
        inner, out = zipfile.ZipFile(io.BytesIO(members["data/sample_inputs/model.pt"])), io.BytesIO()
        with zipfile.ZipFile(out, "w") as rebuilt:
            for name in inner.namelist():
                blob = pickle.dumps(_Payload(marker), protocol=2) if name.endswith("data.pkl") else inner.read(name)
                rebuilt.writestr(name, blob)
        members["data/sample_inputs/model.pt"] = out.getvalue()
    return change


def _set_first_target(target):
    return _edit_json("models/model.json", lambda p: p["graph_module"]["graph"]["nodes"][0].update(target=target))


CRAFTED = {  # name: (change given the marker path, manifest recomputed, words of the error)
    "pickled weight": (_pickled_weight, True, "weight 'student.layers.0.weight' is stored as a pickle"),
    "pickled sample inputs": (_pickled_sample_inputs, True, "its sample inputs hold a pickled 'posix mkdir'"),
    "foreign operator": (lambda m: _set_first_target("torch.os.mkdir"), True, "its program calls 'torch.os.mkdir'"),
    "guard code": (lambda m: _edit_json("models/model.json", lambda p: p.update(guards_code=[f"mkdir({m!r})"])),
                   True, "its program carries guard code"),
    "symbolic expression": (lambda m: _edit_json("models/model.json", lambda p: p["range_constraints"].update(
        {"__import__('os')": {"min_val": 1, "max_val": None}})), True, "its program constrains symbols other than the batch size"),
    "extra member": (lambda m: lambda members: members.update({"data/aotinductor/model/x.so": b"\x7fELF"}), True,
                     "unexpected member 'data/aotinductor/model/x.so'"),
    "constants": (lambda m: _edit_json("data/constants/model_constants_config.json",
                                       lambda c: c["config"].update(k={"use_pickle": True})), True, "it holds constants"),
    "deeply nested program": (lambda m: lambda members: members.update({"models/model.json": b"[" * 10**5 + b"]" * 10**5}),
                              True, "member 'models/model.json' is not JSON (RecursionError)"),
    "changed weight": (lambda m: lambda members: members.update({"data/weights/weight_0": b"\0" * 768}), False,
                       "member 'data/weights/weight_0' was changed after export"),
    "no manifest": (lambda m: lambda members: members.pop("extra/vqgraph.json"), False,
                    "not written by vqgraph's exporter (no extra/vqgraph.json manifest)"),
}


@pytest.mark.parametrize("name", list(CRAFTED))
def test_a_crafted_pt2_is_refused_before_torch_reads_it_and_never_runs_code(tmp_path, name):
    from vqgraph.serving import load_exported

    good = _predictor().export(tmp_path / "student.pt2")
    marker = tmp_path / "executed"
    make, manifest, words = CRAFTED[name]
    crafted = _rewrite(good, tmp_path / "crafted.pt2", make(marker), manifest)
    with pytest.raises(ArtifactMismatchError) as info:
        load_exported(crafted)
    assert str(info.value).startswith(f"{crafted}: {words}"), str(info.value)
    assert "load_exported reads only files written by Predictor.export" in str(info.value)
    assert not marker.exists()
    if name == "pickled weight":  # the file is a real exploit: torch alone runs it on load
        with pytest.raises(Exception):
            torch.export.load(str(crafted))
        assert marker.exists()
    assert load_exported(good)(torch.rand(2, F))[0].shape == (2, C)  # our own export still loads


@pytest.mark.parametrize("norm,transform,codes,layers", [
    ("batch", "standard", True, 3), ("layer", "row", True, 2), ("none", "none", False, 1), ("batch", "row", False, 2),
])
def test_every_kind_of_student_we_export_passes_the_check_and_equals_eager(tmp_path, norm, transform, codes, layers):
    from vqgraph.serving import load_exported

    torch.manual_seed(0)
    model = MLPStudent(F, C, StudentConfig(hidden_channels=8, num_layers=layers, norm=norm), D if codes else None)
    raw = torch.rand(40, F)
    predictor = Predictor(model.eval(), FeatureTransform.fit(raw, transform), torch.randn(K, D) if codes else None)
    probs, labels, out_codes = load_exported(predictor.export(tmp_path / "student.pt2"))(raw)
    eager = predictor.predict(raw)
    assert torch.allclose(probs, eager.probs, atol=1e-6) and torch.equal(labels, eager.labels)
    assert torch.equal(out_codes, eager.codes)


def test_a_pt2_that_is_no_zip_is_named(tmp_path):
    from vqgraph.serving import load_exported

    (tmp_path / "junk.pt2").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ArtifactMismatchError, match=r"junk.pt2: not a readable .pt2 archive"):
        load_exported(tmp_path / "junk.pt2")


# ---- teacher targets (the teacher cache's entries) and checkpoints --------------------------------

def _targets(codebook=True):
    from vqgraph.targets import TeacherTargets

    torch.manual_seed(0)
    book = torch.randn(K, D) if codebook else None
    codes = torch.randint(0, K, (30,)) if codebook else torch.full((30,), -1)
    return TeacherTargets(torch.randn(30, C), torch.randn(30, D), codes, book, "cosine", {"teacher": {}},
                          {"val/acc": 0.5}, "abc", "def", "transductive", "toy")


def _tensor(key, value):
    return lambda p: p["tensors"].update({key: value(p["tensors"][key]) if callable(value) else value})


TEACHER_DAMAGES = {
    "nan-logits": (_tensor("logits", _poison), "field 'tensors.logits' holds 1 NaN/inf values"),
    "inf-z": (_tensor("z", lambda t: _poison(t, float("inf"))), "field 'tensors.z' holds 1 NaN/inf values"),
    "nan-codebook": (_tensor("codebook", _poison), "field 'tensors.codebook' holds 1 NaN/inf values"),
    "short-z": (_tensor("z", lambda t: t[:-1]), "field 'tensors.z' has shape [29, 6], expected [30, *]"),
    "short-codes": (_tensor("codes", lambda t: t[:-1]), "field 'tensors.codes' has shape [29], expected [30]"),
    "narrow-codebook": (_tensor("codebook", lambda t: t[:, :-1]),
                        "field 'tensors.codebook' has shape [20, 5], expected [*, 6]"),
    "code-past-codebook": (_tensor("codes", lambda t: _poison(t, K)),
                           "field 'tensors.codes' has 1 indices that are not in [0, 19] (the codebook has 20 codes)"),
    "negative-code": (_tensor("codes", lambda t: _poison(t, -1)), "field 'tensors.codes' has 1 indices that are not in"),
    "codes-without-codebook": (_tensor("codebook", None),
                               "field 'tensors.codes' has 30 indices that are not -1 (there is no codebook)"),
    "float-codes": (_tensor("codes", lambda t: t.float()), "field 'tensors.codes' has dtype torch.float32"),
    "int-logits": (_tensor("logits", lambda t: t.long()), "field 'tensors.logits' has dtype torch.int64"),
    "1d-logits": (_tensor("logits", lambda t: t[:, 0]), "field 'tensors.logits' has shape [30], expected [*, *]"),
    "empty-logits": (_tensor("logits", lambda t: t[:0]), "field 'tensors.logits' is empty [0, 4]"),
    "no-z": (lambda p: p["tensors"].pop("z"), "field 'tensors.z' is missing"),
    "unknown-metric": (lambda p: p["meta"].update(metric="dot"), "field 'meta.metric' is 'dot'; known: "),
    "metric-not-text": (lambda p: p["meta"].update(metric=3), "field 'meta.metric' must be str, got int"),
    "config-list": (lambda p: p["meta"].update(config=[]), "field 'meta.config' must be dict, got list"),
    "extra-field": (lambda p: p["meta"].update(owner="x"), "not a teacher artifact (unexpected fields ['meta.owner'])"),
    "tensors-list": (lambda p: p.update(tensors=[]), "field 'tensors' must be dict, got list"),
}


@pytest.mark.parametrize("name", list(TEACHER_DAMAGES))
def test_teacher_targets_that_load_but_do_not_fit_are_refused_naming_the_field(tmp_path, name):
    from vqgraph.targets import TeacherTargets

    _assert_refused(_targets().save(tmp_path / "good.pt"), TEACHER_DAMAGES, name, TeacherTargets.load)


def test_good_teacher_targets_load_unchanged_with_and_without_a_codebook(tmp_path):
    from vqgraph.targets import TeacherTargets

    for codebook in (True, False):
        targets = _targets(codebook)
        loaded = TeacherTargets.load(targets.save(tmp_path / f"t{codebook}.pt"))
        assert torch.equal(loaded.codes, targets.codes) and loaded.metrics == targets.metrics
        assert (loaded.codebook is None) == (not codebook)


def _checkpoint(tmp_path):
    from types import SimpleNamespace

    from vqgraph.training.checkpoint import Checkpoint

    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters())
    model(torch.rand(4, 3)).sum().backward()
    opt.step()
    best = SimpleNamespace(best_value=0.5, best_epoch=1, best_metrics={"val/acc": 0.5}, _since=0,
                           best_state={k: v.clone() for k, v in model.state_dict().items()})
    checkpoint = Checkpoint(tmp_path / "checkpoint.pt", {"train.lr": 0.01})
    checkpoint.save(2, model, opt, best, [{"train/loss": 1.0}], None)
    return checkpoint


CHECKPOINT_DAMAGES = {
    "nan-weight": (lambda p: p["model"].update(weight=_poison(p["model"]["weight"])), "field 'model.weight' holds 1 NaN"),
    "inf-adam-moment": (lambda p: p["optimizer"]["state"][0].update(exp_avg=_poison(p["optimizer"]["state"][0]["exp_avg"],
                                                                                     float("inf"))),
                        "field 'optimizer.state.0.exp_avg' holds 1 NaN/inf values"),
    "nan-best-state": (lambda p: p["best"]["state"].update(bias=_poison(p["best"]["state"]["bias"])),
                       "field 'best.state.bias' holds 1 NaN/inf values"),
    "negative-epoch": (lambda p: p.update(epoch=-1), "field 'epoch' is -1"),
    "epoch-text": (lambda p: p.update(epoch="2"), "field 'epoch' must be int, got str"),
    "no-rng": (lambda p: p.update(rng=[]), "field 'rng' is not one random state per rank"),
    "no-best": (lambda p: p.pop("best"), "field 'best' is missing"),
}


@pytest.mark.parametrize("name", list(CHECKPOINT_DAMAGES))
def test_a_checkpoint_with_damaged_tensors_or_fields_is_reported_and_ignored(tmp_path, name):
    checkpoint = _checkpoint(tmp_path)
    assert checkpoint.load()["epoch"] == 2  # the undamaged one resumes
    payload = torch.load(checkpoint.path, weights_only=True)
    damage, words = CHECKPOINT_DAMAGES[name]
    damage(payload)
    torch.save(payload, checkpoint.path)
    with pytest.warns(UserWarning) as caught:
        assert checkpoint.load() is None  # ignored: training starts over
    message = str(caught[0].message)
    assert message.startswith(f"checkpoint {checkpoint.path} is unusable and is ignored (training starts over): "
                              f"{checkpoint.path}: {words}"), message


def test_a_checkpoint_whose_weights_do_not_fit_the_model_is_named_on_restore(tmp_path):
    from vqgraph.errors import CheckpointMismatchError

    checkpoint = _checkpoint(tmp_path)
    other = torch.nn.Linear(3, 5)
    with pytest.raises(CheckpointMismatchError, match=r"checkpoint.pt does not fit the model it would resume .*--fresh"):
        checkpoint.restore(checkpoint.load(), other, torch.optim.Adam(other.parameters()), None, None)


def test_a_student_file_that_is_a_folder_empty_or_declares_a_huge_depth_is_refused_at_once(tmp_path):
    """A folder was 'does not exist', an empty file an empty message; num_layers=10**7 hung for
    minutes building the reference model."""
    from vqgraph.serving import load_exported

    good = _predictor().save(tmp_path / "student.pt")
    with pytest.raises(ArtifactMismatchError, match=f"student artifact {tmp_path} is a folder, not a file"):
        Predictor.load(tmp_path)
    with pytest.raises(ArtifactMismatchError, match=f"exported student {tmp_path} is a folder, not a file"):
        load_exported(tmp_path)
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ArtifactMismatchError, match=r"empty.pt: not a readable student artifact: the file is empty"):
        Predictor.load(tmp_path / "empty.pt")
    payload = torch.load(good, weights_only=True)
    payload["student"] = {**payload["student"], "num_layers": 10**7}
    torch.save(payload, tmp_path / "deep.pt")
    with pytest.raises(ArtifactMismatchError, match=r"deep.pt: field 'student.num_layers' is 10000000 but "
                                                    r"'state_dict' holds 6 tensors"):
        Predictor.load(tmp_path / "deep.pt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device,words", [("cuda", "CUDA is not available"), ("cuda:1", "CUDA is not available"),
                                          ("", "not a torch device"), ("meta", "device type 'meta' is not one"),
                                          ("cpu:1", "the CPU has no device index")])
def test_a_device_that_cannot_be_used_is_one_clear_error_before_any_work(tmp_path, device, words):
    """``Predictor.load(..., device="cuda")`` without CUDA was torch's AssertionError."""
    good = _predictor().save(tmp_path / "student.pt")
    with pytest.raises(ValueError, match=f"^device {device!r}: {words}"):
        Predictor.load(good, device=device)
    with pytest.raises(ValueError, match=f"^device {device!r}: {words}"):
        Predictor(_predictor().model, device=device)


def test_features_that_overflow_inside_the_student_are_refused_not_served_as_label_0():
    """Finite features of 3e38 gave NaN probabilities served as label 0, silently."""
    predictor = _predictor()
    x = torch.rand(5, F)
    x[3] = 3e38
    for batch_size in (8, 2):
        with pytest.raises(ValueError, match=r"the student's output is NaN/inf for 1 rows \(first: row 3; largest "
                                             r"\|feature\| 3e\+38\): the features are too large"):
            predictor.predict(x, batch_size=batch_size)


def test_scipy_sparse_numpy_float16_and_lists_give_the_dense_float32_answer():
    """A scipy sparse matrix was a TypeError (`sparse array length is ambiguous`)."""
    sparse = pytest.importorskip("scipy.sparse")
    predictor = _predictor()
    x = torch.rand(5, F)
    ref = predictor.predict(x)
    for same in (sparse.csr_matrix(x.numpy()), sparse.coo_matrix(x.numpy()), x.to_sparse(), x.tolist(),
                 x.numpy().astype(np.float64)):
        out = predictor.predict(same)
        assert torch.equal(out.labels, ref.labels) and torch.allclose(out.probs, ref.probs)
    half = predictor.predict(x.numpy().astype(np.float16))  # rounded input: close, not equal
    assert torch.allclose(half.probs, ref.probs, atol=1e-2)


def _deflated(source, out):
    """``source`` rewritten with every member deflated: a few kilobytes for megabytes of zeros."""
    import zipfile

    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(out, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    return out


def test_a_compressed_artifact_a_zip_bomb_is_refused_before_torch_expands_it(tmp_path):
    """A 195 KB deflated file made torch allocate 200 MB (gigabytes with a larger one) before any check."""
    from vqgraph.serving import load_exported
    from vqgraph.utils.io import read_artifact

    torch.save({"a": torch.zeros(1_000_000)}, tmp_path / "big.pt")
    bomb = _deflated(tmp_path / "big.pt", tmp_path / "bomb.pt")
    assert bomb.stat().st_size < (tmp_path / "big.pt").stat().st_size // 50
    for kind in ("student", "teacher", "checkpoint"):
        with pytest.raises(ArtifactMismatchError, match=rf"bomb.pt: not a readable {kind} artifact: its member "
                                                        r"'big/data.pkl' is compressed, which torch.save never writes"):
            read_artifact(bomb, kind)
    predictor = _predictor()
    predictor.save(tmp_path / "student.pt")
    with pytest.raises(ArtifactMismatchError, match="is compressed, which torch.save never writes"):
        Predictor.load(_deflated(tmp_path / "student.pt", tmp_path / "deflated.pt"))
    predictor.export(tmp_path / "student.pt2")
    with pytest.raises(ArtifactMismatchError, match="its member .* is compressed, which torch never writes"):
        load_exported(_deflated(tmp_path / "student.pt2", tmp_path / "deflated.pt2"))
    (tmp_path / "raw.pt").write_bytes(b"\x80\x02}q\x00.")  # a bare pickle: not even opened by torch
    with pytest.raises(ArtifactMismatchError, match="raw.pt: not a readable student artifact: not a zip archive"):
        read_artifact(tmp_path / "raw.pt", "student")
