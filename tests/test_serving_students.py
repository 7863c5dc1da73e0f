"""Serving any student: a module of the user's own (logits, ``(logits, z)`` or a ``StudentOutput``),
saved as an exported program and served in a process without its class; the exported program's
record checked on load; and the lean serving path (no torch_geometric, no vector_quantize_pytorch)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch
from conftest import REPO
from torch import nn

from vqgraph.data.transform import FeatureTransform
from vqgraph.errors import ArtifactMismatchError
from vqgraph.losses import code_logits
from vqgraph.models.student import MLPStudent, StudentConfig, StudentOutput
from vqgraph.serving import Predictor

F, C, D, K = 12, 4, 6, 20


class ResMLP(nn.Module):
    """A residual MLP of the user's own: layer norm, GELU, skip connections, a head and a projection."""

    def __init__(self, in_channels=F, num_classes=C, hidden=16, code_dim=D, blocks=2):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.inp = nn.Linear(in_channels, hidden)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, hidden), nn.GELU(),
                                                  nn.Dropout(0.3)) for _ in range(blocks))
        self.head = nn.Linear(hidden, num_classes)
        self.proj = nn.Linear(hidden, code_dim) if code_dim else None

    def forward(self, x):
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return StudentOutput(self.head(h), self.proj(h) if self.proj is not None else None)


class LogitsOnly(nn.Module):
    """No width attributes; returns a bare logits tensor."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(F, 8), nn.Tanh(), nn.Linear(8, C))

    def forward(self, x):
        return self.net(x)


def _resmlp_predictor(norm="standard", codes=True, seed=0):
    torch.manual_seed(seed)
    raw = torch.rand(60, F) * 3
    model = ResMLP(code_dim=D if codes else None)
    predictor = Predictor(model, FeatureTransform.fit(raw, norm), torch.randn(K, D) if codes else None,
                          meta={"dataset": "toy", "seed": seed})
    return predictor, raw


def _reference(model, transform, codebook, raw):
    """Labels and codes computed by hand, in evaluation mode."""
    model.eval()
    with torch.no_grad():
        out = model(transform(raw))
    logits, z = (out, None) if isinstance(out, torch.Tensor) else out
    codes = code_logits(z, codebook, "cosine").argmax(-1) if codebook is not None else torch.full((raw.size(0),), -1)
    return logits.argmax(-1), codes


def _blocked_run(body: str, *blocked: str):
    """Run ``body`` in a fresh interpreter where importing any of ``blocked`` fails; its last stdout
    line as JSON."""
    script = textwrap.dedent(f"""
        import sys, json, importlib.abc
        BLOCKED = {blocked!r}
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
    """) + textwrap.dedent(body)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**__import__("os").environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("norm,codes", [("standard", True), ("row", False), ("none", True)])
def test_a_residual_mlp_serves_as_its_forward_computes(norm, codes):
    predictor, raw = _resmlp_predictor(norm, codes)
    assert predictor.backend == "eager" and predictor.in_channels == F and predictor.num_classes == C
    out = predictor.predict(raw)
    labels, want_codes = _reference(predictor.model, predictor.transform, predictor.codebook, raw)
    assert torch.equal(out.labels, labels) and torch.equal(out.codes, want_codes)
    assert repr(predictor).startswith(f"Predictor(in_channels={F}, num_classes={C}, student='ResMLP', ")


def test_logits_only_and_pair_returning_modules_take_their_widths_from_the_arguments():
    torch.manual_seed(0)
    raw = torch.rand(30, F)
    bare = LogitsOnly()
    out = Predictor(bare, in_channels=F, num_classes=C).predict(raw)
    assert torch.equal(out.labels, bare(raw).argmax(-1)) and (out.codes == -1).all()

    class Pair(LogitsOnly):
        def forward(self, x):
            return self.net(x), self.net[0](x)[:, :D]

    pair = Pair()
    codebook = torch.randn(K, D)
    out = Predictor(pair, codebook=codebook, in_channels=F, num_classes=C).predict(raw)
    assert torch.equal(out.codes, code_logits(pair(raw)[1], codebook, "cosine").argmax(-1))


def test_a_residual_mlp_saved_loads_in_a_process_without_its_class(tmp_path):
    predictor, raw = _resmlp_predictor()
    path = predictor.save(tmp_path / "resmlp.pt2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resmlp.pt2"]  # one file, no temporary left
    with zipfile.ZipFile(path) as archive:  # an exported program: no pickle of the module anywhere
        assert not [n for n in archive.namelist() if n.endswith(".pkl") and "sample_inputs" not in n]
    np.save(tmp_path / "x.npy", raw.numpy())
    served = _blocked_run(f"""
        import numpy
        from vqgraph import Predictor
        predictor = Predictor.load({str(path)!r})
        out = predictor.predict(numpy.load({str(tmp_path / 'x.npy')!r}))
        print(json.dumps({{"labels": out.labels.tolist(), "codes": out.codes.tolist(), "backend": predictor.backend,
                          "meta": predictor.meta, "student": predictor.student,
                          "transform": predictor.transform.kind, "classes": predictor.num_classes,
                          "has_class": any(isinstance(v, type) and v.__name__ == "ResMLP"
                                           for m in list(sys.modules.values())
                                           for v in list(getattr(m, "__dict__", {{}}).values()))}}))
    """, "test_serving_students", "tests", "torch_geometric", "vector_quantize_pytorch")
    eager = predictor.predict(raw)
    assert served == {"labels": eager.labels.tolist(), "codes": eager.codes.tolist(), "backend": "exported",
                      "meta": {"dataset": "toy", "seed": 0}, "student": "ResMLP", "transform": "standard",
                      "classes": C, "has_class": False}


def test_a_loaded_program_checks_its_input_and_saves_again(tmp_path):
    predictor, raw = _resmlp_predictor()
    loaded = Predictor.load(predictor.save(tmp_path / "a.pt2"))
    assert loaded.model is None and loaded.codebook.shape == (K, D) and torch.equal(loaded.codebook, predictor.codebook)
    assert torch.equal(loaded.transform.mean, predictor.transform.mean)
    with pytest.raises(ValueError, match=rf"features must have shape \[num_nodes, {F}\], got \(3, {F + 1}\)"):
        loaded.predict(torch.rand(3, F + 1))
    with pytest.raises(ValueError, match="NaN/inf"):
        loaded.predict(torch.full((2, F), float("nan")))
    again = Predictor.load(loaded.save(tmp_path / "b.pt2"))
    a, b = predictor.predict(raw), again.predict(raw, batch_size=7)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.codes, b.codes)
    assert torch.allclose(a.probs, b.probs, atol=1e-6)
    assert repr(again).endswith(f"backend='exported', device='cpu', path={str(tmp_path / 'b.pt2')!r})")


def test_an_mlp_students_export_loads_as_a_predictor_too(tmp_path):
    torch.manual_seed(0)
    raw = torch.rand(40, F)
    model = MLPStudent(F, C, StudentConfig(hidden_channels=16, norm="batch"), D).eval()
    predictor = Predictor(model, FeatureTransform.fit(raw, "row"), torch.randn(K, D), backend="eager")
    loaded = Predictor.load(predictor.export(tmp_path / "student.pt2"))
    a, b = predictor.predict(raw), loaded.predict(raw)
    assert loaded.backend == "exported" and loaded.student == "MLPStudent"
    assert torch.equal(a.labels, b.labels) and torch.equal(a.codes, b.codes)


def test_a_student_module_that_cannot_be_served_is_one_clear_error():
    torch.manual_seed(0)

    class Dict(LogitsOnly):
        def forward(self, x):
            return {"logits": self.net(x)}

    cases = [
        (lambda: Predictor(LogitsOnly()), ValueError,
         "Predictor: LogitsOnly has no integer attribute 'in_channels': pass Predictor(model, ..., in_channels=...)"),
        (lambda: Predictor(LogitsOnly(), in_channels=F), ValueError, "has no integer attribute 'num_classes'"),
        (lambda: Predictor(ResMLP(), in_channels=F + 1), ValueError,
         f"Predictor: in_channels={F + 1} but the ResMLP says in_channels={F}"),
        (lambda: Predictor(LogitsOnly(), in_channels=F, num_classes=C + 1), ValueError,
         f"Predictor: LogitsOnly returned logits [2, {C}] for 2 rows; expected [2, {C + 1}] (num_classes={C + 1})"),
        (lambda: Predictor(LogitsOnly(), in_channels=F + 2, num_classes=C), ValueError,
         f"Predictor: LogitsOnly failed on features [2, {F + 2}] (in_channels={F + 2}): RuntimeError"),
        (lambda: Predictor(Dict(), in_channels=F, num_classes=C), TypeError,
         "a student's forward(x) must return logits [B, C], or a pair (logits, hidden [B, H]) such as a StudentOutput; "
         "got dict"),
        (lambda: Predictor(LogitsOnly(), codebook=torch.randn(K, D), in_channels=F, num_classes=C), ValueError,
         "a codebook was given but the student has no projection into code space (LogitsOnly's forward returns "
         "logits only, no (logits, z))"),
        (lambda: Predictor(ResMLP(), codebook=torch.randn(K, D + 1)), ValueError,
         f"codebook width {D + 1} != the student's code width {D}"),
        (lambda: Predictor(ResMLP(), backend="fused"), ValueError,
         "backend 'fused' folds an MLPStudent's layers; a ResMLP runs backend='eager' (which 'auto' picks)"),
        (lambda: Predictor(ResMLP(), in_channels=0), ValueError, "Predictor: in_channels must be an integer >= 1, got 0"),
    ]
    for make, error, words in cases:
        with pytest.raises(error) as info:
            make()
        assert words in str(info.value), str(info.value)


def test_a_custom_students_save_refuses_what_it_cannot_write_safely(tmp_path):
    """An untraceable forward, an operator the loader does not take, a meta that is not JSON: one
    error each, and nothing on disk."""
    torch.manual_seed(0)

    class Branchy(ResMLP):
        def forward(self, x):
            out = super().forward(x)
            if out.logits.sum() > 0:  # a branch on a tensor's value: torch.export cannot trace it
                return out
            return StudentOutput(-out.logits, out.z)

    class Sorting(ResMLP):
        def forward(self, x):
            out = super().forward(x)
            return StudentOutput(out.logits.cumsum(dim=1), out.z)  # cumsum: not an operator the loader takes

    with pytest.raises(ValueError, match=r"torch.export cannot trace Branchy \(.*\); a student that is not an "
                                         "MLPStudent is saved as an exported program, never pickled"):
        Predictor(Branchy()).save(tmp_path / "branchy.pt2")
    with pytest.raises(ArtifactMismatchError, match=r"sorting.pt2 was not written: its program would not load \(its "
                                                    r"program calls 'torch.ops.aten.cumsum.default'"):
        Predictor(Sorting()).save(tmp_path / "sorting.pt2")
    with pytest.raises(TypeError, match=r"an exported student keeps meta as JSON: meta\['weights'\] is a Tensor"):
        Predictor(ResMLP(), meta={"weights": torch.ones(2)}).save(tmp_path / "meta.pt2")
    assert list(tmp_path.iterdir()) == []


def _rewrite_record(src, dst, change):
    """A copy of the ``.pt2`` ``src`` whose manifest's predictor record went through ``change``."""
    with zipfile.ZipFile(src) as archive, zipfile.ZipFile(dst, "w") as out:
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename.endswith("extra/vqgraph.json"):
                manifest = json.loads(data)
                change(manifest)
                data = json.dumps(manifest).encode()
            out.writestr(info, data)
    return dst


def test_a_damaged_program_record_is_refused_naming_the_field(tmp_path):
    predictor, _ = _resmlp_predictor()
    good = predictor.save(tmp_path / "good.pt2")
    cases = [
        (lambda m: m.pop("predictor"), "an exported student without the predictor's record (written by "
                                       "Predictor.export of an older vqgraph): run it with vqgraph.load_exported(path)"),
        (lambda m: m["predictor"].update(in_channels=F + 1), "the program's buffer 'mean' is [12] torch.float32, its "
                                                             "record says [13] float32"),
        (lambda m: m["predictor"].update(num_classes=C + 1), "the program returns [2, 4], [2], [2] for 2 rows; its "
                                                             "record says [2, 5] probabilities"),
        (lambda m: m["predictor"].update(transform="zscore"), "the predictor's record field 'transform' is 'zscore'"),
        (lambda m: m["predictor"].update(codes=True), "the predictor's record field 'codes' must be an integer >= 0"),
        (lambda m: m["predictor"].update(codes=K + 1), "the program's buffer 'codebook' is [20, 6] torch.float32, its "
                                                       "record says [21, 6] float32"),
        (lambda m: m["predictor"].update(extra=1), "the predictor's record has the keys"),
        (lambda m: m.update(predictor=[1]), "its manifest's 'predictor' entry is not a mapping"),
    ]
    for i, (change, words) in enumerate(cases):
        with pytest.raises(ArtifactMismatchError) as info:
            Predictor.load(_rewrite_record(good, tmp_path / f"bad{i}.pt2", change))
        assert words in str(info.value), str(info.value)
        assert str(tmp_path / f"bad{i}.pt2") in str(info.value)
    with pytest.raises(ValueError, match="is an exported program, which runs as it is"):
        Predictor.load(good, backend="onnxruntime")


@pytest.mark.parametrize("kind", ["mlp", "resmlp"])
def test_serving_imports_neither_the_graph_library_nor_the_quantizer(tmp_path, kind):
    """``from vqgraph import Predictor``, ``Predictor.load`` and ``predict``, in a fresh process where
    importing torch_geometric or vector_quantize_pytorch fails: neither is in ``sys.modules``."""
    if kind == "mlp":
        model = MLPStudent(F, C, StudentConfig(hidden_channels=16, norm="batch"), D).eval()
        predictor = Predictor(model, FeatureTransform.fit(torch.rand(20, F), "row"), torch.randn(K, D))
        path = predictor.save(tmp_path / "student.pt")
    else:
        predictor, _ = _resmlp_predictor()
        path = predictor.save(tmp_path / "student.pt2")
    raw = torch.rand(9, F)
    np.save(tmp_path / "x.npy", raw.numpy())
    served = _blocked_run(f"""
        import numpy
        from vqgraph import Predictor
        out = Predictor.load({str(path)!r}).predict(numpy.load({str(tmp_path / 'x.npy')!r}))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch_geometric", "vector_quantize_pytorch"))
        print(json.dumps({{"labels": out.labels.tolist(), "heavy": heavy}}))
    """, "torch_geometric", "vector_quantize_pytorch")
    assert served == {"labels": predictor.predict(raw).labels.tolist(), "heavy": []}
