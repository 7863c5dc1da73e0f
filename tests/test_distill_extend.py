"""Extending distillation: a user's loss terms (vqgraph.LossTerm) and a user's student module."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch import nn

import vqgraph
from vqgraph import DistillConfig, LossTerm, StudentConfig, StudentWrapper, TeacherConfig, TrainConfig
from vqgraph.data import make_csbm, make_split

TRAIN = TrainConfig(max_epochs=6, patience=None, progress=False, lr=0.01, weight_decay=0.0)


@pytest.fixture(scope="module")
def task():
    data = make_csbm(num_nodes=300, num_classes=3, num_features=16, homophily=0.9, feature_signal=1.0, seed=0)
    split = make_split(data, seed=0, train_per_class=10, val_per_class=10)
    teacher = vqgraph.fit_teacher(data, split, TeacherConfig(hidden_channels=16, codebook_size=32),
                                  TrainConfig(max_epochs=15, progress=False))
    return data, split, teacher.targets


class ZSquare(LossTerm):
    """The mean squared norm of the student's representation (an L2 penalty on z)."""

    name = "z_square"
    needs = ("z",)

    def __call__(self, inputs):
        return inputs.mean(inputs.out.z.pow(2).sum())


class Mirror(LossTerm):
    """The built-in soft-label term written with the public inputs only."""

    name = "mirror"
    needs = ("soft_labels",)

    def __call__(self, inputs):
        log_p = torch.log_softmax(inputs.out.logits, dim=-1)
        return inputs.mean(nn.functional.kl_div(log_p, inputs.soft_labels, reduction="sum"))


class Returns(LossTerm):
    """A term returning ``make(inputs)``, to test what the mechanism accepts."""

    name = "returns"

    def __init__(self, make, weight=1.0):
        super().__init__(weight)
        self.make = make

    def __call__(self, inputs):
        return self.make(inputs)


class ResMLP(nn.Module):
    """A residual MLP: logits, or (logits, hidden) with ``hidden`` its last hidden layer."""

    def __init__(self, features, classes, width=32, representation=True, norm=False):
        super().__init__()
        self.inp = nn.Linear(features, width)
        self.block = nn.Sequential(nn.Linear(width, width), nn.BatchNorm1d(width) if norm else nn.Identity(), nn.ReLU())
        self.out = nn.Linear(width, classes)
        self.representation = representation

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + self.block(h)
        logits = self.out(h)
        return (logits, h) if self.representation else logits


def test_a_custom_term_changes_training_and_is_logged(task):
    data, split, targets = task
    cfg, student = DistillConfig(method="glnn"), StudentConfig(hidden_channels=16)
    plain = vqgraph.fit_student(data, split, targets, student, cfg, TRAIN)
    runs = {w: vqgraph.fit_student(data, split, targets, student, cfg, TRAIN, terms=[ZSquare(weight=w)]) for w in (0.01, 5.0)}
    assert plain.model.projection is None and runs[5.0].model.projection is not None  # needs z: a projection
    history = runs[5.0].history
    assert list(k for k in history[0] if k.startswith("loss/")) == [
        "loss/label", "loss/soft_label", "loss/soft_token", "loss/z_square"]
    total = sum(history[0][f"loss/{k}"] for k in ("label", "soft_label", "soft_token", "z_square"))
    assert history[0]["train/loss"] == pytest.approx(total, rel=1e-6)
    assert history[-1]["loss/z_square"] < 0.5 * history[0]["loss/z_square"]  # the penalty is what it trains down
    first = runs[0.01].history[0]["loss/z_square"]  # full batch: epoch 0 is one step from the same weights
    assert history[0]["loss/z_square"] == pytest.approx(5.0 / 0.01 * first, rel=1e-5)
    norms = {}
    for weight, run in runs.items():
        with torch.no_grad():
            norms[weight] = float(run.model.eval()(data.x).z.pow(2).sum(-1).mean())
    assert norms[5.0] < 0.8 * norms[0.01]  # the heavier penalty leaves a smaller representation


def test_a_term_written_with_the_public_inputs_is_the_builtin_term(task):
    data, split, targets = task
    builtin = vqgraph.fit_student(data, split, targets, StudentConfig(hidden_channels=16), DistillConfig(method="glnn"),
                                  TRAIN)
    mine = vqgraph.fit_student(data, split, targets, StudentConfig(hidden_channels=16),
                               DistillConfig(method="glnn", soft_label_weight=0.0), TRAIN, terms=[Mirror()])
    assert [h["loss/soft_label"] for h in builtin.history] == [h["loss/mirror"] for h in mine.history]
    assert [h["train/loss"] for h in builtin.history] == [h["train/loss"] for h in mine.history]
    for (name, a), b in zip(builtin.model.state_dict().items(), mine.model.state_dict().values()):
        assert torch.equal(a, b), name


def test_a_term_sees_only_training_labels_and_the_global_batch(task):
    data, split, targets = task
    seen = []

    def look(inputs):
        seen.append((inputs.idx, inputs.y, inputs.labelled, inputs.share, inputs.codes, inputs.teacher_z))
        return inputs.mean(inputs.out.logits.sum() * 0.0)

    train = replace(TRAIN, max_epochs=1, batch_size=100)
    vqgraph.fit_student(data, split, targets, StudentConfig(hidden_channels=16), DistillConfig(), train,
                        terms=[Returns(look)])
    assert len(seen) == 3  # 300 nodes in batches of 100
    for idx, y, labelled, share, codes, teacher_z in seen:
        assert torch.equal(labelled, split.train_mask[idx])
        assert torch.equal(y[labelled], data.y[idx][labelled]) and bool((y[~labelled] == -1).all())
        assert share.rows == 100 and share.labelled == int(labelled.sum())
        assert torch.equal(codes, targets.codes[idx]) and torch.equal(teacher_z, targets.z[idx])
    assert sorted(torch.cat([s[0] for s in seen]).tolist()) == list(range(300))


def test_a_setup_may_replace_the_soft_labels(task):
    data, split, targets = task

    class Uniform(LossTerm):
        name = "uniform_targets"

        def setup(self, context):
            context.soft_labels = torch.full_like(context.soft_labels, 1.0 / data.num_classes)

        def __call__(self, inputs):
            raise AssertionError("a term of weight 0 is never called")

    result = vqgraph.fit_student(data, split, targets, StudentConfig(hidden_channels=16), DistillConfig(method="glnn"),
                                 replace(TRAIN, max_epochs=2), terms=[Uniform(weight=0.0)])
    assert result.metrics["targets/soft_label_entropy"] == pytest.approx(math.log(data.num_classes), rel=1e-6)
    assert all(h["loss/uniform_targets"] == 0.0 for h in result.history)

    class Logits(Uniform):
        def setup(self, context):
            context.soft_labels = context.targets.logits

    with pytest.raises(ValueError, match=r"soft labels must be class probabilities .* got a negative value: "
                                         r"pass softmax\(logits / T, dim=-1\), not logits"):
        vqgraph.fit_student(data, split, targets, StudentConfig(), DistillConfig(method="glnn"), TRAIN,
                            terms=[Logits(weight=0.0)])


class Plain(LossTerm):
    name = "plain"

    def __call__(self, inputs):
        return inputs.out.logits.sum() * 0.0


class NoCall(LossTerm):
    name = "no_call"


class NoSuper(Plain):
    def __init__(self):
        pass


@pytest.mark.parametrize("terms, error, match", [
    (Plain(), TypeError, r"terms must be a list of vqgraph.LossTerm instances, got Plain"),
    ([lambda inputs: 0.0], TypeError, r"terms\[0\] is a function, not a vqgraph.LossTerm"),
    ([Plain(name="my term")], ValueError, r"terms\[0\].name must be an identifier .* got 'my term'"),
    ([Plain(name="")], ValueError, r"terms\[0\].name must be an identifier"),
    ([Plain(name="soft_token")], ValueError, r"terms\[0\].name 'soft_token' is a built-in term's name"),
    ([Plain(), Plain()], ValueError, r"terms\[0\] and terms\[1\] are both named 'plain'"),
    ([Plain(weight=-0.1)], ValueError, r"terms\[0\] \('plain'\): weight must be a finite number >= 0, got -0.1"),
    ([Plain(weight=float("nan"))], ValueError, r"weight must be a finite number >= 0, got nan"),
    ([Plain(weight=float("inf"))], ValueError, r"weight must be a finite number >= 0, got inf"),
    ([Plain(weight=True)], ValueError, r"weight must be a finite number >= 0, got True"),
    ([Plain(weight="0.1")], ValueError, r"weight must be a finite number >= 0, got '0.1'"),
    ([NoSuper()], ValueError, r"got None \(call super\(\).__init__\(weight\) in its __init__\)"),
    ([NoCall()], TypeError, r"terms\[0\] \('no_call'\): NoCall does not implement __call__"),
])
def test_a_bad_term_declaration_is_refused_before_training(task, terms, error, match):
    data, split, targets = task
    with pytest.raises(error, match=match):
        vqgraph.fit_student(data, split, targets, StudentConfig(), DistillConfig(), TRAIN, terms=terms)


def test_a_term_declaring_an_unknown_need_is_refused(task):
    data, split, targets = task
    term = Plain()
    term.needs = ("graph",)
    with pytest.raises(ValueError, match=r"needs must be a tuple of \('soft_labels', 'z', 'codebook'\), got \('graph',\)"):
        vqgraph.fit_student(data, split, targets, StudentConfig(), DistillConfig(), TRAIN, terms=[term])


def test_a_term_whose_needs_cannot_be_met_is_refused(task):
    data, split, targets = task
    no_codebook = vqgraph.fit_teacher(data, split, TeacherConfig(hidden_channels=16, use_tokenizer=False),
                                      TrainConfig(max_epochs=2, progress=False)).targets
    codes = Plain(name="codes")
    codes.needs = ("codebook",)
    with pytest.raises(ValueError, match="loss term 'codes' needs the teacher's codebook, and these targets have none"):
        vqgraph.fit_student(data, split, no_codebook, StudentConfig(), DistillConfig(method="glnn"), TRAIN, terms=[codes])
    with pytest.raises(ValueError, match="loss term 'soft_token' needs the teacher's codebook"):
        vqgraph.fit_student(data, split, no_codebook, StudentConfig(), DistillConfig(method="vqgraph"), TRAIN)
    with pytest.raises(ValueError, match="loss term 'mirror' needs the teacher's soft_labels, but method 'mlp' trains"):
        vqgraph.fit_student(data, split, None, StudentConfig(), DistillConfig(method="mlp"), TRAIN, terms=[Mirror()])
    # a term that needs nothing trains with labels only; at weight 0 its needs are not asked
    result = vqgraph.fit_student(data, split, None, StudentConfig(), DistillConfig(method="mlp"),
                                 replace(TRAIN, max_epochs=1), terms=[Plain(), Mirror(weight=0.0)])
    assert result.history[0]["loss/plain"] == 0.0 and result.history[0]["loss/mirror"] == 0.0


@pytest.mark.parametrize("student", ["mlp", "module"])
def test_a_term_needing_z_is_refused_on_targets_without_z_for_any_student(task, student):
    """Targets without a representation hold ``z`` as [N, 0]: the teacher's side reads that as
    no ``z``, so a term needing it is refused before training (it used to train silently on a
    0-wide projection with a module, and fail inside the term with the MLP)."""
    data, split, targets = task
    soft_only = vqgraph.targets_from_outputs(targets.logits, data, split)
    made = StudentConfig() if student == "mlp" else ResMLP(data.num_features, data.num_classes)
    with pytest.raises(ValueError, match=r"loss term 'z_square' needs the teacher's representation z, and these "
                                         r"teacher targets have none .* targets_from_model\(model, data, split, "
                                         r"representation='<submodule name>'"):
        vqgraph.fit_student(data, split, soft_only, made, DistillConfig(method="glnn"), TRAIN, terms=[ZSquare(0.1)])
    result = vqgraph.fit_student(data, split, soft_only, made, DistillConfig(method="glnn"), replace(TRAIN, max_epochs=1))
    assert result.model.code_dim is None  # no term needs z: no projection, not a 0-wide one


@pytest.mark.parametrize("make, match", [
    (lambda inputs: inputs.out.logits.sum(-1), r"loss term 'returns' \(Returns\) must return a floating scalar tensor "
                                               r".* got shape \[\d+\], torch.float32"),
    (lambda inputs: 0.5, r"must return a floating scalar tensor .* got float"),
    (lambda inputs: inputs.out.logits.sum() * float("nan"), r"loss term 'returns' \(Returns\) returned nan on the "
                                                            r"first batch"),
    (lambda inputs: inputs.mean(inputs.out.logits.sum(), rows="train"), r"rows must be 'all' or 'labelled', got 'train'"),
])
def test_a_term_that_returns_no_finite_scalar_is_named(task, make, match):
    data, split, targets = task
    with pytest.raises(ValueError, match=match):
        vqgraph.fit_student(data, split, targets, StudentConfig(), DistillConfig(), TRAIN, terms=[Returns(make)])


def test_the_only_weighted_term_may_be_the_users(task):
    data, split, _ = task
    labels_off = DistillConfig(method="mlp", label_weight=0.0)
    with pytest.raises(ValueError, match="'mlp' has no loss term"):
        vqgraph.fit_student(data, split, None, StudentConfig(), labels_off, TRAIN, terms=[Plain(weight=0.0)])
    result = vqgraph.fit_student(data, split, None, StudentConfig(), labels_off, replace(TRAIN, max_epochs=1),
                                 terms=[Plain()])
    assert result.history[0]["loss/label"] == 0.0


@pytest.mark.parametrize("method, representation, width", [
    ("glnn", False, 32), ("glnn", True, 32), ("vqgraph", True, 16), ("vqgraph", True, 32)])
def test_a_residual_mlp_student_trains_and_is_left_as_given(task, method, representation, width):
    data, split, targets = task
    torch.manual_seed(0)
    mine = ResMLP(data.num_features, data.num_classes, width, representation)
    before = {k: v.clone() for k, v in mine.state_dict().items()}
    cfg = DistillConfig(method=method, adversarial_weight=0.1 if method == "glnn" else 0.0)
    result = vqgraph.fit_student(data, split, targets, mine, cfg, replace(TRAIN, max_epochs=25, batch_size=128))
    model = result.model
    assert isinstance(model, StudentWrapper) and model.inner is not mine
    assert all(torch.equal(v, before[k]) for k, v in mine.state_dict().items())  # a copy trained, not the given one
    assert (model.in_channels, model.num_classes) == (data.num_features, data.num_classes)
    code_dim = targets.z.size(1) if method == "vqgraph" else None
    assert model.code_dim == code_dim
    assert (model.projection is not None) == (method == "vqgraph" and width != targets.z.size(1))
    assert result.history[-1]["train/loss"] < 0.8 * result.history[0]["train/loss"]
    assert result.metrics["val/acc"] > 0.6  # three well-separated classes
    if method == "vqgraph":
        assert result.history[-1]["loss/soft_token"] < result.history[0]["loss/soft_token"]
    out = model.eval()(data.x[:5])
    assert out.logits.shape == (5, data.num_classes) and (out.z is None) == (code_dim is None)
    if code_dim and width == code_dim:
        assert torch.equal(out.z, model.inner(data.x[:5])[1])  # widths equal: z is the module's own representation


def test_a_student_without_representation_distils_when_no_term_needs_one(task):
    data, split, targets = task
    codes_off = DistillConfig(method="vqgraph", soft_token_weight=0.0)  # vqgraph's other terms, no code term
    result = vqgraph.fit_student(data, split, targets, ResMLP(data.num_features, data.num_classes, representation=False),
                                 codes_off, replace(TRAIN, max_epochs=3))
    assert result.model.code_dim is None and result.model.projection is None
    assert result.model.eval()(data.x[:4]).z is None and result.history[0]["loss/soft_token"] == 0.0


def test_a_custom_student_exports_with_torch_export(task):
    data, split, targets = task
    torch.manual_seed(0)
    result = vqgraph.fit_student(data, split, targets, ResMLP(data.num_features, data.num_classes), DistillConfig(),
                                 replace(TRAIN, max_epochs=2))
    model = result.model.eval()
    program = torch.export.export(model, (data.x[:8],))
    got, expected = program.module()(data.x[:8]), model(data.x[:8])
    assert torch.allclose(got[0], expected.logits) and torch.allclose(got[1], expected.z)


class Wrong(nn.Module):
    def __init__(self, features, out, give=lambda logits: logits):
        super().__init__()
        self.layer, self.give = nn.Linear(features, out), give

    def forward(self, x):
        return self.give(self.layer(x))


@pytest.mark.parametrize("make, error, match", [
    (lambda f, c: ResMLP(f, c, representation=False), ValueError,
     r"loss term\(s\) \['soft_token'\] need the student's representation z, and your module returns logits only: "
     r"return \(logits, hidden\) from its forward"),
    (lambda f, c: Wrong(f, c + 2), ValueError,
     r"the student returns 5 class scores per row, the graph has 3 classes: give its last layer out_features"),
    (lambda f, c: Wrong(f, c, lambda logits: {"logits": logits}), TypeError,
     r"forward\(x\) must return logits \[B, C\], or a pair \(logits, hidden \[B, H\]\) such as a StudentOutput; "
     r"got dict"),
    (lambda f, c: Wrong(f, c, lambda logits: (logits, logits, logits)), TypeError,
     r"got a tuple of 3: \(Tensor \[2, 3\], Tensor \[2, 3\], Tensor \[2, 3\]\)"),
    (lambda f, c: Wrong(f, c, lambda logits: logits[:1]), ValueError, r"logits have shape \[1, 3\] for 2 input rows"),
    (lambda f, c: Wrong(f, c, lambda logits: logits * float("nan")), ValueError, r"logits are not finite"),
    (lambda f, c: StudentConfig, TypeError, r"student must be a StudentConfig or an nn.Module .* got type"),
])
def test_a_bad_custom_student_is_refused_with_the_fix(task, make, error, match):
    data, split, targets = task
    with pytest.raises(error, match=match):
        vqgraph.fit_student(data, split, targets, make(data.num_features, data.num_classes), DistillConfig(), TRAIN)


def test_a_custom_student_checked_again_on_the_first_training_batch(task):
    data, split, targets = task

    class TrainsBadly(ResMLP):
        def forward(self, x):
            logits, h = super().forward(x)
            return (logits * float("nan"), h) if self.training else (logits, h)

    with pytest.raises(ValueError, match="the first training batch: the student's logits are not finite"):
        vqgraph.fit_student(data, split, targets, TrainsBadly(data.num_features, data.num_classes), DistillConfig(),
                            TRAIN)


def test_a_custom_student_with_batch_norm_gets_two_rows_per_batch(task):
    data, split, targets = task
    mine = ResMLP(data.num_features, data.num_classes, norm=True)
    with pytest.raises(ValueError, match="a batch-normalised student needs at least 2 .* batch size 1"):
        vqgraph.fit_student(data, split, targets, mine, DistillConfig(), replace(TRAIN, batch_size=1))
    result = vqgraph.fit_student(data, split, targets, mine, DistillConfig(), replace(TRAIN, max_epochs=1, batch_size=299))
    assert result.history[0]["train/loss"] > 0  # the one-row last batch joined the one before


def test_a_custom_student_gets_dense_features_where_the_mlp_keeps_them_sparse():
    data = make_csbm(num_nodes=200, num_classes=3, num_edges=600, num_features=300, feature_density=0.03, seed=0)
    split = make_split(data, seed=0, train_per_class=10, val_per_class=10)
    layouts = []

    class Sees(ResMLP):
        def forward(self, x):
            layouts.append(x.layout)
            return super().forward(x)

    vqgraph.fit_student(data, split, None, Sees(300, 3), DistillConfig(method="mlp"), replace(TRAIN, max_epochs=1))
    assert layouts and set(layouts) == {torch.strided}


def test_a_student_module_that_cannot_be_copied_is_refused(task):
    import threading

    data, split, targets = task
    mine = ResMLP(data.num_features, data.num_classes)
    mine.lock = threading.Lock()  # a module holding a lock cannot be deep-copied
    with pytest.raises(TypeError, match="fit_student trains a copy of your student module and could not copy this "
                                        "ResMLP .*: make it copyable with copy.deepcopy"):
        vqgraph.fit_student(data, split, targets, mine, DistillConfig(), TRAIN)
