"""Training one student: :func:`fit_student` prepares the teacher's side of the targets
(:func:`teacher_side`: soft labels calibrated on the teacher's validation nodes), builds the
student (an MLP from a :class:`StudentConfig`, or a user's module in a
:class:`~vqgraph.models.custom.StudentWrapper`: :func:`student_builder`) and the loss terms (the
config's built-in ones, then the user's: :mod:`.base`), then trains it through the one loop and
evaluates it."""

from __future__ import annotations

import copy
import time
from dataclasses import fields
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence, Union

import torch
from torch import Tensor, nn
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.sparse import use_sparse
from vqgraph.data.splits import NodeSplit, Setting, graph_and_split
from vqgraph.data.transform import FeatureTransform
from vqgraph.losses import calibrate_temperature, entropy
from vqgraph.models.custom import StudentWrapper, check_output, probe
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving.predictor import Predictor
from vqgraph.targets import TeacherTargets, correct_and_smooth
from vqgraph.training import loop
from vqgraph.training.checkpoint import Checkpoint
from vqgraph.training.distill.base import LossTerm, TeacherSide, check_needs, check_terms
from vqgraph.training.distill.config import DistillConfig, method_defaults
from vqgraph.training.distill.objective import DistillObjective
from vqgraph.evaluation import Evaluator
from vqgraph.training.loop import TrainConfig


class StudentResult(NamedTuple):
    """A trained student and what serving it needs.

    ``model``; ``metrics`` (final accuracies, timings, target statistics); ``history`` (one row
    per epoch); ``transform``, the feature normalisation the training data carried
    (``data.feature_transform``, set by :func:`~vqgraph.data.graph.normalize_features`; the
    identity if none); ``codebook`` [K, D] and ``metric``, the teacher's, when the student learned
    codes (a term that fits ``z`` to the codebook: the ``soft`` or ``index`` code term; a projection
    trained by the similarity term alone, or by none, is not aligned with the codebook, so it
    serves no codes). :meth:`predictor` serves raw features through them.
    """

    model: nn.Module
    metrics: Dict[str, float]
    history: List[Dict[str, float]]
    transform: FeatureTransform = FeatureTransform()
    codebook: Optional[Tensor] = None
    metric: str = "cosine"

    @classmethod
    def trained(cls, model: nn.Module, metrics, history, data: Data, targets: Optional[TeacherTargets],
                terms: Sequence[LossTerm]) -> "StudentResult":
        """The result of training ``model`` on ``data`` with ``terms``: the transform read from
        ``data.feature_transform``, and recorded on the model too (``model.feature_transform``:
        ``Predictor(model)`` without a transform then warns); the codebook when a term of non-zero
        weight fitted the student's ``z`` to it (needs ``z`` and ``codebook``: the ``soft`` and
        ``index`` code terms, not ``class``, which reads no ``z``, nor a code term of weight 0)."""
        transform = getattr(data, "feature_transform", None)
        transform = transform if isinstance(transform, FeatureTransform) else FeatureTransform()
        model.feature_transform = transform
        learned_codes = targets is not None and any(term.weight and {"z", "codebook"} <= set(term.needs)
                                                    for term in terms)
        codebook = targets.codebook if learned_codes else None
        return cls(model, metrics, history, transform, codebook, targets.metric if targets is not None else "cosine")

    def predictor(self, **kwargs) -> Predictor:
        """A :class:`~vqgraph.serving.Predictor` of this student that serves RAW features exactly as
        training saw them (its transform, codebook and metric); ``kwargs`` go to ``Predictor``
        (``device``, ``backend``, ``meta``; ``codebook=None`` drops the codes)."""
        return Predictor(self.model, **{"transform": self.transform, "codebook": self.codebook,
                                        "metric": self.metric, **kwargs})


@torch.no_grad()
def predict_rows(model: nn.Module, x: Tensor, rows: range, chunk: int = 65_536) -> Tensor:
    """Evaluation-mode logits of ``rows``, ``chunk`` rows at a time (bounded activation memory)."""
    model.eval()
    starts = range(rows.start, rows.stop, chunk)
    parts = [model(x[start : min(start + chunk, rows.stop)]).logits for start in starts]
    return torch.cat(parts) if parts else torch.zeros(0, model.num_classes, device=x.device)


def teacher_side(data: Data, split: NodeSplit, targets: Optional[TeacherTargets], distill: DistillConfig,
                 device) -> Optional[TeacherSide]:
    """The teacher's targets on ``device`` as the terms read them (None for ``mlp``), their soft
    labels calibrated on the teacher's validation nodes (temperature scaling) unless
    ``distill.teacher_temperature`` is set. With ``distill.propagate="cs"`` those calibrated soft
    labels are corrected and smoothed over the observed graph
    (:func:`~vqgraph.targets.correct_and_smooth`) and read as they come out (temperature 1)."""
    if distill.method == "mlp":
        return None
    if targets is None:
        raise ValueError(f"method {distill.method!r} needs teacher targets")
    if not isinstance(targets, TeacherTargets):
        raise TypeError(f"fit_student: targets must be a TeacherTargets (from targets_from_model, targets_from_outputs "
                        f"or fit_teacher(...).targets), got {type(targets).__name__}")
    targets.check_matches(data, split)
    if distill.uses_projection:  # the code term and the similarity term read the teacher's z
        targets.require_z(f"method {distill.method!r}" if distill.uses_soft_tokens else "distill.similarity_weight")
    temperature = distill.teacher_temperature
    if temperature is None:
        calibration = split.for_teacher().val_idx  # a part of the targets: never the student's selection nodes
        temperature = calibrate_temperature(targets.logits[calibration], data.y[calibration])
    if distill.propagate == "none":
        return TeacherSide(targets, device, temperature)
    propagated = correct_and_smooth(targets, data, split, correct_alpha=distill.cs_correct_alpha,
                                    correct_hops=distill.cs_correct_hops, smooth_alpha=distill.cs_smooth_alpha,
                                    smooth_hops=distill.cs_smooth_hops, temperature=temperature)
    return TeacherSide(propagated, device, 1.0, calibrated=temperature)


@torch.no_grad()
def target_stats(teacher: TeacherSide, distill: DistillConfig, fit_idx: Tensor) -> Dict[str, float]:
    """How sharp the targets are: the teacher temperature, the mean entropy of the soft labels
    and (``vqgraph``) of the soft code assignments of up to 4,096 nodes, and their mean top probability."""
    row_entropy = [entropy(teacher.probs(part)) * part.numel() for part in fit_idx.split(65_536)]
    stats = {
        "targets/teacher_temperature": teacher.temperature if teacher.calibrated is None else teacher.calibrated,
        "targets/soft_label_entropy": float(sum(row_entropy) / fit_idx.numel()),
    }
    if distill.uses_soft_tokens and distill.code_target == "soft" and teacher.codebook is not None \
            and teacher.z is not None:
        sample = fit_idx[: min(4096, fit_idx.numel())]
        probs = teacher.soft_codes(sample, distill.token_temperature)[0]
        stats["targets/soft_token_entropy"] = float(entropy(probs))
        stats["targets/soft_token_max_prob"] = float(probs.max(-1).values.mean())
    return stats


class StudentPlan(NamedTuple):
    """How to build a student: ``make`` (called by :func:`vqgraph.training.loop.build` after seeding),
    whether it batch-normalises (the minimum rows of a batch), whether its features stay sparse,
    and the check of its outputs on the first batch (None for the package's MLP)."""

    make: Callable[[], nn.Module]
    batch_norm: bool
    sparse: bool
    check: Optional[Callable] = None


def student_builder(student: Union[StudentConfig, nn.Module], data: Data, code_dim: Optional[int],
                    z_terms: Sequence[str]) -> StudentPlan:
    """The :class:`StudentPlan` of ``student``. A module is copied (the given one is never trained),
    run once on two rows to read its output widths and wrapped (:class:`StudentWrapper`); it gets
    dense features. ``code_dim``: the teacher's code width when the student's ``z`` is wanted;
    ``z_terms``: the terms in use that need it (a module returning logits only is refused)."""
    if isinstance(student, StudentConfig):
        return StudentPlan(lambda: MLPStudent(data.num_features, data.num_classes, student, code_dim),
                           student.norm == "batch", use_sparse(student.sparse_input, data.x))
    num_classes = data.num_classes

    def make() -> StudentWrapper:
        module = _copied(student)
        hidden = probe(module, data.x[:2].to(_device_of(module)), num_classes)
        if hidden is None and z_terms:
            raise ValueError(f"loss term(s) {list(z_terms)} need the student's representation z, and your module "
                             "returns logits only: return (logits, hidden) from its forward (hidden [B, H], e.g. its "
                             "last hidden layer; it is projected into the teacher's code space), or turn the term(s) "
                             "off (e.g. method 'glnn')")
        return StudentWrapper(module, data.num_features, num_classes, hidden, code_dim if hidden is not None else None)

    batch_norm = any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in student.modules())
    check = lambda out, rows: check_output(out, rows, num_classes, "the first training batch")  # noqa: E731
    return StudentPlan(make, batch_norm, False, check)


def _copied(module: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(module)
    except Exception as error:  # a module holding a lock, a file, a generator...
        raise TypeError(f"fit_student trains a copy of your student module and could not copy this "
                        f"{type(module).__name__} ({type(error).__name__}: {error}): make it copyable with "
                        "copy.deepcopy") from error


def _device_of(module: nn.Module):
    first = next(module.parameters(), None)
    return first.device if first is not None else torch.device("cpu")


def fit_student(
    data: Data,
    split: NodeSplit,
    targets: Optional[TeacherTargets],
    student: Union[StudentConfig, nn.Module] = StudentConfig(),
    distill: DistillConfig = DistillConfig(),
    train: Optional[TrainConfig] = None,
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
    checkpoint: Optional[Checkpoint] = None,
    terms: Sequence[LossTerm] = (),
) -> StudentResult:
    """Train a graph-free student on ``data`` with ``split`` (either setting).

    The student sees features of observed nodes only (all nodes transductively; inductively the
    hidden test nodes never enter training). Labels are used on ``split.train_idx`` only. The
    teacher terms use the observed nodes (inductively less the validation nodes, unless
    ``distill.val_targets="fit"``), ``train.batch_size`` nodes at a time (soft code
    assignments are computed per batch: B x K, never N x K beyond one batch). ``train`` defaults
    to the method's (:func:`~.config.method_defaults`). The epoch is selected on
    ``distill.select_by`` (``val`` by default; ``test`` is the paper's protocol, for comparison
    only). ``checkpoint``: save the training state there and resume from it.

    Args:
        student: a :class:`StudentConfig` (the package's MLP), or your own ``nn.Module`` whose
            ``forward(x)`` maps dense features [B, F] to logits [B, C], or to ``(logits, hidden
            [B, H])`` (needed by the code and similarity terms; projected into the teacher's code
            space by a linear layer when ``H`` differs from its width). A COPY of the module is
            trained (yours is left as it was); the result's ``model`` is a
            :class:`~vqgraph.models.custom.StudentWrapper` around the trained copy (``.inner``).
        terms: your own :class:`~vqgraph.LossTerm` instances, summed after the built-in terms and
            logged as ``loss/<name>`` (docs/extending.md).

    Raises:
        TypeError, ValueError: a bad term declaration or output, a term whose needs the method,
            the targets or the student cannot meet, a module whose outputs are not logits [B, C].
    """
    data = graph_and_split(data, split, "fit_student")
    extra = check_terms(terms)
    if not any(term.weight for term in extra):  # a user's term may be all the student learns from
        distill.check_learns()
    unread = sorted({f.name for f in fields(distill)} - {f.name for f in fields(DistillConfig)})
    if unread:  # e.g. an experiment's distill section: its grid and ensemble are arranged around fit_student
        raise TypeError(f"fit_student trains one student from a DistillConfig; {type(distill).__name__} also sets "
                        f"{unread}, which it would ignore: pass its for_student() or use "
                        "vqgraph.app.run.fit_selected_student")
    if not isinstance(student, (StudentConfig, nn.Module)):
        raise TypeError(f"student must be a StudentConfig or an nn.Module (your own student), got "
                        f"{type(student).__name__}")
    train = train or method_defaults(distill.method).train
    return _fit(data, split, targets, student, distill, train, extra, log, checkpoint)


def _fit(data, split, targets, student, distill, train, extra, log=None, checkpoint=None) -> StudentResult:
    """One student with ``train`` on the built-in terms of ``distill`` and the ``extra`` ones."""
    me = distributed.init(train.device)  # torchrun: join the job; else a world of one
    teacher = teacher_side(data, split, targets, distill, distributed.local_device(train.device))
    terms = distill.loss_terms() + extra
    check_needs(terms, teacher, distill.method, targets)
    z_terms = [term.name for term in terms if term.weight and "z" in term.needs]
    wants_z = (distill.uses_projection or z_terms) and teacher is not None and teacher.z is not None
    plan = student_builder(student, data, teacher.z.size(1) if wants_z else None, z_terms)
    model, streams = loop.build(train, plan.make, True)
    objective = DistillObjective(data, split, teacher, distill, terms, plan.batch_norm, train, streams.order,
                                 plan.sparse, targets, len(extra), plan.check)
    evaluator = Evaluator.for_split(objective.y, split.for_student())  # validation: the student's part
    eval_rows = distributed.row_ranges(data.num_nodes, me.world_size)[me.rank]  # this rank's share of inference
    test_key = "test/acc" if split.setting is Setting.TRANSDUCTIVE else "test_tran/acc"
    monitor = "val/acc" if distill.select_by == "val" else test_key
    evaluate = lambda m: evaluator(predict_rows(m, objective.x, eval_rows), eval_rows)  # noqa: E731
    fitted = loop.fit(model, objective, evaluate, train, monitor, log, desc=f"student {distill.method}",
                      checkpoint=checkpoint, streams=streams)
    start = time.perf_counter()
    logits = predict_rows(model, objective.x, eval_rows)
    infer_seconds = distributed.all_reduce_max(time.perf_counter() - start)
    metrics = evaluator(logits, eval_rows)
    metrics.update(best_epoch=fitted.best_epoch, epochs=len(fitted.history), train_s=fitted.train_seconds,
                   infer_s=infer_seconds, selected_by=monitor)
    if teacher is not None:
        metrics.update(target_stats(teacher, distill, objective.fit_idx))
    return StudentResult.trained(model, metrics, fitted.history, data, targets, terms)
