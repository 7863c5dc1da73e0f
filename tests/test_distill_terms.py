"""The optional distillation terms (representation similarity, adversarial features) and held-out validation targets."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch

from vqgraph.data import make_csbm, make_split
from vqgraph.models import TeacherConfig
from vqgraph.models.student import MLPStudent, StudentConfig, StudentOutput
from vqgraph.training import DistillConfig, TrainConfig, fit_student, fit_teacher
from vqgraph.training.distill import DistillObjective, TermInputs, fit_nodes, teacher_side
from vqgraph.training.loop import Share
from distill_helpers import SetUp

TRAIN = TrainConfig(max_epochs=3, patience=None, progress=False)


@pytest.fixture(scope="module")
def graph():
    return make_csbm(num_nodes=300, num_classes=3, num_features=16, homophily=0.9, feature_signal=1.0, seed=0)


@pytest.fixture(scope="module")
def inductive(graph):
    split = make_split(graph, seed=0, setting="inductive", train_per_class=10, val_per_class=10)
    cfg = TeacherConfig(hidden_channels=16, codebook_size=32)
    return split, fit_teacher(graph, split, cfg, TrainConfig(max_epochs=10, progress=False)).targets


def test_validation_targets_are_held_out_inductively_and_fitted_transductively(graph, inductive):
    split, _ = inductive
    held = fit_nodes(split, DistillConfig())
    assert not torch.isin(split.val_idx, held).any() and not torch.isin(split.test_ind_idx, held).any()
    assert held.numel() == split.observed_idx.numel() - split.val_idx.numel()
    assert torch.equal(fit_nodes(split, DistillConfig(val_targets="fit")), split.observed_idx)
    tran = make_split(graph, seed=0, train_per_class=10, val_per_class=10)
    assert torch.equal(fit_nodes(tran, DistillConfig()), tran.observed_idx)
    assert torch.equal(fit_nodes(tran, DistillConfig(method="mlp")), tran.train_idx)
    with pytest.raises(ValueError, match="val_targets"):
        DistillConfig(val_targets="maybe")


def test_held_out_validation_targets_never_reach_the_student(graph, inductive):
    split, targets = inductive
    other = copy.copy(targets)
    other.logits = targets.logits.clone()
    other.z = targets.z.clone()
    other.logits[split.val_idx] = torch.randn(split.val_idx.numel(), targets.logits.size(1)) * 10
    other.z[split.val_idx] = torch.randn(split.val_idx.numel(), targets.z.size(1))
    cfg = DistillConfig(teacher_temperature=1.0)  # calibration reads validation logits: fix it
    student = StudentConfig(hidden_channels=8)
    a = fit_student(graph, split, targets, student, cfg, TRAIN)
    b = fit_student(graph, split, other, student, cfg, TRAIN)
    for (name, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(va, vb), name
    # ... while a student that fits them is moved by them
    c = fit_student(graph, split, targets, student, replace(cfg, val_targets="fit"), TRAIN)
    d = fit_student(graph, split, other, student, replace(cfg, val_targets="fit"), TRAIN)
    assert not torch.equal(c.model.classifier.weight, d.model.classifier.weight)


def test_similarity_term_is_zero_for_the_teachers_geometry_and_positive_otherwise(graph, inductive):
    _, targets = inductive
    cfg = DistillConfig(method="glnn", similarity_weight=2.0, similarity_rows=40)
    terms = SetUp(targets, cfg)
    idx, logits = torch.arange(60), torch.zeros(60, targets.logits.size(1))
    # the cosine geometry is all that counts: any positive rescaling of the teacher's rows is exact
    scaled = targets.z[idx] * torch.rand(60, 1).add(0.5)
    assert float(terms.weighted("similarity", idx, logits, scaled)) == pytest.approx(0.0, abs=1e-6)
    z = torch.randn(60, targets.z.size(1), requires_grad=True)
    loss = terms.weighted("similarity", idx, logits, z)
    with torch.no_grad():
        s, t = torch.nn.functional.normalize(z[:40], dim=-1), torch.nn.functional.normalize(targets.z[:40], dim=-1)
        expected = 2.0 * float((s @ s.t() - t @ t.t()).pow(2).mean())
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    loss.backward()
    assert z.grad[:40].abs().sum() > 0 and z.grad[40:].abs().sum() == 0  # only the first similarity_rows rows
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillConfig(method="mlp", similarity_weight=1.0)


def test_fit_student_trains_with_the_extra_terms_and_logs_them(graph, inductive):
    split, targets = inductive
    cfg = DistillConfig(method="glnn", similarity_weight=1.0, adversarial_weight=0.5)
    result = fit_student(graph, split, targets, StudentConfig(hidden_channels=8), cfg, replace(TRAIN, max_epochs=20))
    history = result.history
    assert result.model.projection is not None  # the similarity term needs the projection, even for glnn
    assert history[0]["loss/similarity"] > 0 and history[0]["loss/adversarial"] > 0
    assert history[-1]["loss/similarity"] < history[0]["loss/similarity"]
    total = sum(history[0][f"loss/{k}"] for k in ("label", "soft_label", "soft_token", "similarity", "adversarial"))
    assert history[0]["train/loss"] == pytest.approx(total, rel=1e-6)
    assert "loss/similarity" not in fit_student(graph, split, targets, StudentConfig(hidden_channels=8),
                                                DistillConfig(method="glnn"), TRAIN).history[0]


def test_adversarial_perturbation_stays_in_its_ball_raises_the_loss_and_moves_no_statistics(graph, inductive):
    split, targets = inductive
    cfg = DistillConfig(method="glnn", adversarial_weight=1.0, adversarial_eps=0.5, adversarial_steps=4)
    teacher = teacher_side(graph, split, targets, cfg, "cpu")
    objective = DistillObjective(graph, split, teacher, cfg, cfg.loss_terms(), True, TRAIN,
                                 torch.Generator().manual_seed(0), targets=targets)
    adversarial = objective.loss_terms[-1]
    assert objective.terms == ("label", "soft_label", "soft_token", "adversarial") and adversarial.augments
    torch.manual_seed(0)
    model = MLPStudent(graph.num_features, graph.num_classes, StudentConfig(hidden_channels=8, norm="batch"))
    model.train()
    idx = objective.fit_idx[:64]
    x, labelled = objective.x[idx], objective.is_train[idx]
    inputs = TermInputs(idx, x, objective.seen_y[idx], labelled, Share(64, int(labelled.sum())), teacher)
    stats = copy.deepcopy(model.norms[0].state_dict())
    delta = adversarial.augment(model, inputs) - x
    assert model.training  # restored after the attack
    for key, value in model.norms[0].state_dict().items():
        assert torch.equal(value, stats[key]), key
    radius = adversarial.radius
    assert radius == pytest.approx(0.5 * float(objective.x[objective.fit_idx].pow(2).mean().sqrt()))
    assert float(delta.abs().max()) <= radius * (1 + 1e-6) and float(delta.abs().max()) > 0.5 * radius
    model.eval()
    with torch.no_grad():
        fit_loss = lambda features: adversarial.fit_loss(inputs.replace(out=model(features)))  # noqa: E731
        clean, attacked = fit_loss(x), fit_loss(x + delta)
        random = fit_loss(x + (torch.rand(x.shape) * 2 - 1) * radius)
    assert float(attacked) > float(random) > 0 and float(attacked) > float(clean)


def test_the_label_only_baseline_chooses_its_weight_decay_on_validation(graph):
    from vqgraph.app.config import DistillSection, ExperimentConfig
    from vqgraph.app.run import fit_selected_student
    from vqgraph.training.distill import MLP_WEIGHT_DECAYS

    split = make_split(graph, seed=0, train_per_class=10, val_per_class=10)
    train = TrainConfig(max_epochs=30, patience=None, progress=False)
    student = StudentConfig(hidden_channels=8)
    singles = {wd: fit_student(graph, split, None, student, DistillConfig(method="mlp"), replace(train, weight_decay=wd))
               for wd in (0.0, 50.0)}
    assert singles[0.0].metrics["val/acc"] > singles[50.0].metrics["val/acc"]  # decay 50 starves the model
    for order in ((50.0, 0.0), (0.0, 50.0)):
        logged = []
        cfg = ExperimentConfig(student=student, distill=DistillSection(method="mlp", weight_decays=order),
                               student_train=train)
        chosen = fit_selected_student(graph, split, None, cfg, log=lambda row, epoch: logged.append(epoch))
        assert chosen.metrics["selected/weight_decay"] == 0.0
        assert chosen.metrics["val/acc"] == singles[0.0].metrics["val/acc"]
        assert chosen.metrics["test/acc"] == singles[0.0].metrics["test/acc"]
        assert chosen.history == singles[0.0].history and logged == list(range(len(chosen.history)))
    assert ExperimentConfig.defaults(method="mlp").distill.weight_decays == MLP_WEIGHT_DECAYS
    assert ExperimentConfig.defaults(method="glnn").distill.weight_decays == ()
    assert ExperimentConfig.defaults(method="mlp").with_overrides(["distill.weight_decays="]).distill.weight_decays == ()
    with pytest.raises(ValueError, match="weight_decays"):
        DistillSection(weight_decays=(-1.0,))
    with pytest.raises(TypeError, match=r"also sets \['teacher_kinds', 'teachers', 'weight_decays'\]"):
        fit_student(graph, split, None, student, DistillSection(method="mlp", weight_decays=(0.0, 50.0)), train)


def test_the_neighbour_term_draws_observed_neighbours_only_and_vanishes_on_agreement(graph, inductive):
    split, targets = inductive
    cfg = DistillConfig(method="glnn", neighbour_weight=1.0)
    teacher = teacher_side(graph, split, targets, cfg, "cpu")
    objective = DistillObjective(graph, split, teacher, cfg, cfg.loss_terms(), True, TRAIN,
                                 torch.Generator().manual_seed(0), targets=targets)
    neighbour = objective.loss_terms[-1]
    assert objective.terms == ("label", "soft_label", "soft_token", "neighbour") and neighbour.augments
    observed = split.observed_edges(graph.edge_index)
    pairs = set(map(tuple, observed.t().tolist()))
    idx = objective.fit_idx
    inputs = TermInputs(idx, objective.x[idx], objective.seen_y[idx], objective.is_train[idx],
                        Share(idx.numel(), 0), teacher)
    torch.manual_seed(0)
    drawn = set()
    for _ in range(20):
        rows = neighbour.augment(None, inputs)
        # each row's drawn features are those of an observed neighbour (its own when it has none)
        match = (rows[:, None, :] == graph.x[None, :, :]).all(-1)
        for i, node in enumerate(idx.tolist()):
            candidates = set(match[i].nonzero().flatten().tolist())
            if neighbour.has[i]:
                assert any((node, j) in pairs for j in candidates), node
                drawn |= {j for j in candidates if (node, j) in pairs}
            else:
                assert node in candidates
    assert drawn and not split.hidden_mask[list(drawn)].any()  # hidden nodes are never drawn ...
    assert not torch.isin(torch.tensor(sorted(drawn)), split.val_idx).any()  # ... nor held-out validation nodes
    logits = torch.randn(idx.numel(), graph.num_classes)
    same = inputs.replace(out=StudentOutput(logits, None), augmented=StudentOutput(logits, None))
    assert float(neighbour(same)) == 0.0
    other = inputs.replace(out=StudentOutput(logits, None), augmented=StudentOutput(logits.flip(0), None))
    assert float(neighbour(other)) > 0.0
    history = fit_student(graph, split, targets, StudentConfig(hidden_channels=8), cfg, TRAIN).history
    assert history[0]["loss/neighbour"] > 0
    assert "loss/neighbour" not in fit_student(graph, split, targets, StudentConfig(hidden_channels=8),
                                               DistillConfig(method="glnn"), TRAIN).history[0]
