"""Training one student: :func:`fit_student` builds the teacher's side (:func:`make_distiller`:
calibrated, optionally smoothed soft labels and the code term's teacher moments), then trains the
student through the one loop and evaluates it."""

from __future__ import annotations

import time
from dataclasses import fields
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.graph import ensure_graph
from vqgraph.data.sparse import use_sparse
from vqgraph.data.splits import NodeSplit, Setting
from vqgraph.data.transform import FeatureTransform
from vqgraph.losses import calibrate_temperature, entropy
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving.predictor import Predictor
from vqgraph.targets import TeacherTargets, smooth_soft_labels
from vqgraph.training import loop
from vqgraph.training.checkpoint import Checkpoint
from vqgraph.training.distill.config import DistillConfig, method_defaults
from vqgraph.training.distill.objective import DistillObjective, fit_nodes
from vqgraph.training.distill.terms import CodebookDistiller
from vqgraph.evaluation import Evaluator
from vqgraph.training.loop import TrainConfig


class StudentResult(NamedTuple):
    """A trained student and what serving it needs.

    ``model``; ``metrics`` (final accuracies, timings, target statistics); ``history`` (one row
    per epoch); ``transform``, the feature normalisation the training data carried
    (``data.feature_transform``, set by :func:`~vqgraph.data.graph.normalize_features`; the
    identity if none); ``codebook`` [K, D] and ``metric``, the teacher's, when the student learned
    codes (the code term; a projection trained by the similarity term alone is not aligned with
    the codebook, so it serves no codes). :meth:`predictor` serves raw features through them.
    """

    model: nn.Module
    metrics: Dict[str, float]
    history: List[Dict[str, float]]
    transform: FeatureTransform = FeatureTransform()
    codebook: Optional[Tensor] = None
    metric: str = "cosine"

    @classmethod
    def trained(cls, model: nn.Module, metrics, history, data: Data, targets: Optional[TeacherTargets],
                distill: DistillConfig) -> "StudentResult":
        """The result of training ``model`` on ``data``: the transform read from
        ``data.feature_transform``, and recorded on the model too (``model.feature_transform``:
        ``Predictor(model)`` without a transform then warns)."""
        transform = getattr(data, "feature_transform", None)
        transform = transform if isinstance(transform, FeatureTransform) else FeatureTransform()
        model.feature_transform = transform
        learned_codes = targets is not None and distill.uses_soft_tokens
        codebook = targets.codebook if learned_codes else None
        return cls(model, metrics, history, transform, codebook, targets.metric if targets is not None else "cosine")

    def predictor(self, **kwargs) -> Predictor:
        """A :class:`~vqgraph.serving.Predictor` of this student that serves RAW features exactly as
        training saw them (its transform, codebook and metric); ``kwargs`` go to ``Predictor``
        (``device``, ``backend``, ``meta``; ``codebook=None`` drops the codes)."""
        return Predictor(self.model, **{"transform": self.transform, "codebook": self.codebook,
                                        "metric": self.metric, **kwargs})


@torch.no_grad()
def predict_rows(model: MLPStudent, x: Tensor, rows: range, chunk: int = 65_536) -> Tensor:
    """Evaluation-mode logits of ``rows``, ``chunk`` rows at a time (bounded activation memory)."""
    model.eval()
    starts = range(rows.start, rows.stop, chunk)
    parts = [model(x[start : min(start + chunk, rows.stop)]).logits for start in starts]
    return torch.cat(parts) if parts else torch.zeros(0, model.num_classes, device=x.device)


def make_distiller(data: Data, split: NodeSplit, targets: Optional[TeacherTargets], distill: DistillConfig, device):
    """The distiller of a method (None for ``mlp``), its soft labels calibrated on the teacher's
    validation nodes (temperature scaling) unless ``distill.teacher_temperature`` is set."""
    if distill.method == "mlp":
        return None
    if targets is None:
        raise ValueError(f"method {distill.method!r} needs teacher targets")
    targets.check_matches(data, split)
    if distill.uses_projection:  # the code term and the similarity term read the teacher's z
        targets.require_z(f"method {distill.method!r}" if distill.uses_soft_tokens else "distill.similarity_weight")
    temperature = distill.teacher_temperature
    if temperature is None:
        calibration = split.for_teacher().val_idx  # a part of the targets: never the student's selection nodes
        temperature = calibrate_temperature(targets.logits[calibration], data.y[calibration])
    soft_labels = None
    if distill.smooth_hops or distill.smooth_labels:
        soft_labels = smooth_soft_labels(
            F.softmax(targets.logits.float() / temperature, dim=-1), split.observed_edges(data.edge_index), distill.smooth_hops,
            distill.smooth_alpha, data.y if distill.smooth_labels else None, split.train_mask)
    return CodebookDistiller(targets, distill, device, temperature, fit_nodes(split, distill), soft_labels)


@torch.no_grad()
def target_stats(distiller: CodebookDistiller, fit_idx: Tensor) -> Dict[str, float]:
    """How sharp the targets are: the teacher temperature, the mean entropy of the soft labels
    and (``vqgraph``) of the soft code assignments of up to 4,096 nodes, and their mean top probability."""
    row_entropy = [entropy(distiller.teacher.probs(part)) * part.numel() for part in fit_idx.split(65_536)]
    stats = {
        "targets/teacher_temperature": distiller.temperature,
        "targets/soft_label_entropy": float(sum(row_entropy) / fit_idx.numel()),
    }
    if distiller.config.uses_soft_tokens and distiller.config.code_target == "soft":
        sample = fit_idx[: min(4096, fit_idx.numel())]
        probs = distiller.teacher.soft_codes(sample, distiller.config.token_temperature)[0]
        stats["targets/soft_token_entropy"] = float(entropy(probs))
        stats["targets/soft_token_max_prob"] = float(probs.max(-1).values.mean())
    return stats


def fit_student(
    data: Data,
    split: NodeSplit,
    targets: Optional[TeacherTargets],
    student: StudentConfig = StudentConfig(),
    distill: DistillConfig = DistillConfig(),
    train: Optional[TrainConfig] = None,
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
    checkpoint: Optional[Checkpoint] = None,
) -> StudentResult:
    """Train an MLP student on ``data`` with ``split`` (either setting).

    The student sees features of observed nodes only (all nodes transductively; inductively the
    hidden test nodes never enter training). Labels are used on ``split.train_idx`` only. The
    teacher terms use the observed nodes (inductively less the validation nodes, unless
    ``distill.val_targets="fit"``), ``train.batch_size`` nodes at a time (soft code
    assignments are computed per batch: B x K, never N x K beyond one batch). ``train`` defaults
    to the method's (:func:`~.config.method_defaults`). The epoch is selected on
    ``distill.select_by`` (``val`` by default; ``test`` is the paper's protocol, for comparison
    only). ``checkpoint``: save the training state there and resume from it.
    """
    data = ensure_graph(data, "fit_student")
    split.check_graph(data)
    distill.check_learns()
    unread = sorted({f.name for f in fields(distill)} - {f.name for f in fields(DistillConfig)})
    if unread:  # e.g. an experiment's distill section: its grid and ensemble are arranged around fit_student
        raise TypeError(f"fit_student trains one student from a DistillConfig; {type(distill).__name__} also sets "
                        f"{unread}, which it would ignore: pass its for_student() or use "
                        "vqgraph.app.run.fit_selected_student")
    train = train or method_defaults(distill.method).train
    distiller = make_distiller(data, split, targets, distill, distributed.local_device(train.device))
    return _fit(data, split, targets, distiller, student, distill, train, log, checkpoint)


def _fit(data, split, targets, distiller, student, distill, train, log=None, checkpoint=None) -> StudentResult:
    """One student with ``train`` on ``distiller``'s targets (None: labels only)."""
    me = distributed.init(train.device)  # torchrun: join the job; else a world of one
    code_dim = targets.z.size(1) if distill.uses_projection and targets is not None else None
    model, streams = loop.build(train, lambda: MLPStudent(data.num_features, data.num_classes, student, code_dim), True)
    objective = DistillObjective(data, split, distiller, distill, student.norm == "batch", train, streams.order,
                                 use_sparse(student.sparse_input, data.x))
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
    if distiller is not None:
        metrics.update(target_stats(distiller, objective.fit_idx))
    return StudentResult.trained(model, metrics, fitted.history, data, targets, distill)
