"""Distillation of a teacher into a graph-free MLP student: ``mlp``, ``glnn`` and ``vqgraph``.

Per batch of global node ids ``idx``:

* ``label``: cross-entropy on the labelled training nodes in the batch;
* ``soft_label``: KL(teacher soft labels || student), teacher logits divided by
  ``teacher_temperature``, by default the temperature that calibrates the teacher on validation
  nodes (temperature scaling): a flat target transfers little, and the entropy is logged;
* ``soft_token`` (``vqgraph`` only): ``tau^2 * KL(softmax(t/tau) || softmax(s/tau))`` where
  ``t = code_logits(teacher z[idx], codebook)`` and ``s = code_logits(student z, codebook)``:
  the same similarity on both sides, the frozen teacher codebook, rows aligned by global id.
  Nothing of size N x K is ever built.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.splits import NodeSplit, Setting
from vqgraph.losses import calibrate_temperature, code_logits, entropy
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.targets import TeacherTargets
from vqgraph.training import loop
from vqgraph.training.evaluation import Evaluator
from vqgraph.training.loop import Share, TrainConfig

METHODS = ("mlp", "glnn", "vqgraph")


@dataclass(frozen=True)
class DistillConfig:
    """What the student learns from, and how much (flat, each with its default)."""

    method: str = "vqgraph"  # mlp (labels) | glnn (+ soft labels) | vqgraph (+ soft codes)
    label_weight: float = 1.0  # cross-entropy on labelled training nodes
    soft_label_weight: float = 1.0  # KL to the teacher's soft labels (glnn, vqgraph)
    teacher_temperature: Optional[float] = None  # divides teacher logits; None: calibrated on val nodes
    soft_token_weight: float = 1.0  # beta: weight of the soft code-assignment KL (vqgraph)
    token_temperature: float = 0.1  # tau of the code-assignment softmaxes (cosine scores in [-1, 1])
    select_by: str = "val"  # val: validation-selected (honest) | test: the paper's protocol, for comparison only
    code_cache_mb: float = 1024.0  # teacher soft codes (N x K floats) are precomputed once if they fit, else per batch

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.select_by not in ("val", "test"):
            raise ValueError(f"select_by must be 'val' or 'test', got {self.select_by!r}")
        if (self.teacher_temperature is not None and self.teacher_temperature <= 0) or self.token_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        if self.code_cache_mb < 0:
            raise ValueError(f"code_cache_mb must be >= 0, got {self.code_cache_mb}")

    def check_learns(self) -> None:
        """Raise ValueError if no loss term of the method has a non-zero weight (checked by
        ``fit_student`` and by complete experiment configs, not per preset layer)."""
        weights = {"label_weight": self.label_weight, "soft_label_weight": self.soft_label_weight * self.uses_soft_labels,
                   "soft_token_weight": self.soft_token_weight * self.uses_soft_tokens}
        if not any(weights.values()):
            raise ValueError(f"method {self.method!r} has no loss term with a non-zero weight: {weights}")

    @property
    def uses_soft_labels(self) -> bool:
        return self.method in ("glnn", "vqgraph") and self.soft_label_weight > 0

    @property
    def uses_soft_tokens(self) -> bool:
        return self.method == "vqgraph"

    def to_dict(self) -> dict:
        return asdict(self)


def student_defaults(method: str = "vqgraph") -> StudentConfig:
    """The student's architecture defaults: distilled students (``glnn``, ``vqgraph``)
    batch-normalise their hidden layer (GLNN's mean validation accuracy on Cora 82.48 -> 83.14,
    A-computer 84.20 -> 87.73, seeds 0-4), the label-only ``mlp`` does not (Cora seeds 0-9:
    61.76 against 63.95)."""
    return StudentConfig(norm="none" if method == "mlp" else "batch")


def student_train_defaults(method: str = "vqgraph") -> TrainConfig:
    """The student's optimisation defaults, for ``fit_student`` and for experiment configs.

    No weight decay for the distilled students (decay flattens what distillation transfers:
    GLNN on Cora seed 0, 73.4 with 5e-4 against 76.2 without), except for the label-only
    ``mlp``, which overfits its 20 labels per class without it (Cora seeds 0-6: 54.4% against
    58.0%); 5e-3 is GLNN's MLP setting.
    """
    return TrainConfig(lr=0.01, weight_decay=5e-3 if method == "mlp" else 0.0, patience=50, batch_size=4096)


class DistillLosses(NamedTuple):
    label: Tensor
    soft_label: Tensor
    soft_token: Tensor


def label_loss(logits: Tensor, y: Tensor, labelled: Tensor, share: Share, weight: float = 1.0) -> Tensor:
    """Cross-entropy on the ``labelled`` rows, averaged over the labelled rows of the global batch."""
    ce = F.cross_entropy(logits[labelled], y[labelled], reduction="sum")
    return weight * share.mean(ce, share.labelled)


class CodebookDistiller:
    """Computes :class:`DistillLosses` for a batch of global node ids against teacher targets."""

    def __init__(self, targets: TeacherTargets, config: DistillConfig, device="cpu", teacher_temperature: float = 1.0):
        if config.uses_soft_tokens and targets.codebook is None:
            raise ValueError("method 'vqgraph' needs a teacher with a tokenizer (its targets have no codebook)")
        self.config = config
        self.temperature = teacher_temperature
        self.teacher_logits = targets.logits.to(device)
        self.teacher_z = targets.z.to(device)
        self.codebook = targets.codebook.to(device) if targets.codebook is not None else None
        self.metric = targets.metric
        self._codes_cache = None
        if config.uses_soft_tokens and config.soft_token_weight:
            n, k = targets.num_nodes, targets.codebook.size(0)
            if 4 * n * k <= config.code_cache_mb * 2**20:  # teacher targets are fixed: compute them once
                parts = [self._soft_codes(chunk) for chunk in torch.arange(n, device=self.teacher_z.device).split(8192)]
                self._codes_cache = tuple(torch.cat(p) for p in zip(*parts))

    def teacher_probs(self, idx: Tensor) -> Tensor:
        return F.softmax(self.teacher_logits[idx] / self.temperature, dim=-1)

    def teacher_code_logits(self, idx: Tensor, scale: float = 1.0) -> Tensor:
        return code_logits(self.teacher_z[idx], self.codebook, self.metric, scale)

    @torch.no_grad()
    def _soft_codes(self, idx: Tensor):
        log_t = F.log_softmax(self.teacher_code_logits(idx, 1.0 / self.config.token_temperature), dim=-1)
        t = log_t.exp()
        return t, (t * log_t).sum(-1)

    def teacher_soft_codes(self, idx: Tensor):
        """Teacher soft code assignments of nodes ``idx`` at temperature tau [B, K], and the
        per-node sum of t log t [B] (the constant part of the KL)."""
        if self._codes_cache is not None:
            return self._codes_cache[0][idx], self._codes_cache[1][idx]
        return self._soft_codes(idx)

    def __call__(self, out, idx: Tensor, y: Tensor, labelled: Tensor, share: Optional[Share] = None) -> DistillLosses:
        """``out``: student output for nodes ``idx`` (global ids); ``labelled``: bool mask of
        the batch rows whose label ``y`` may be used (training nodes). ``share``: the global
        batch these rows are a slice of (default: they are the whole batch)."""
        cfg = self.config
        share = share or Share(idx.numel(), int(labelled.sum()))
        zero = out.logits.new_zeros(())
        label = label_loss(out.logits, y, labelled, share, cfg.label_weight) if cfg.label_weight else zero
        soft_label = zero
        if cfg.uses_soft_labels:
            kl = F.kl_div(F.log_softmax(out.logits, dim=-1), self.teacher_probs(idx), reduction="sum")
            soft_label = cfg.soft_label_weight * share.mean(kl, share.rows)
        soft_token = zero
        if cfg.uses_soft_tokens and cfg.soft_token_weight:
            tau = cfg.token_temperature
            t, t_log_t = self.teacher_soft_codes(idx)
            log_s = F.log_softmax(code_logits(out.z, self.codebook, self.metric, 1.0 / tau), dim=-1)
            kl = share.mean((t_log_t - (t * log_s).sum(-1)).sum(), share.rows)  # KL(t || s), batch mean
            soft_token = cfg.soft_token_weight * tau * tau * kl
        return DistillLosses(label, soft_label, soft_token)


class DistillObjective:
    """The student's objective for :func:`vqgraph.training.loop.fit`.

    Trains on the features of the labelled nodes (``mlp``) or of every observed node (``glnn``,
    ``vqgraph``; inductively the hidden test nodes never enter training), ``batch_size`` nodes at
    a time. Each rank takes its slice of the same global batch; a last batch too small for batch
    norm (two rows per rank) joins the one before.
    """

    terms = DistillLosses._fields

    def __init__(self, data: Data, split: NodeSplit, distiller: Optional[CodebookDistiller], config: DistillConfig,
                 batch_norm: bool, train: TrainConfig, order: torch.Generator):
        me = distributed.world()
        self.device, self.order = distributed.local_device(train.device), order
        self.distiller, self.label_weight = distiller, config.label_weight
        self.x, self.y = data.x.to(self.device), data.y.to(self.device)
        self.is_train = torch.zeros(data.num_nodes, dtype=torch.bool, device=self.device)
        self.is_train[split.train_idx] = True
        fit_idx = split.train_idx if config.method == "mlp" else split.observed_idx
        self.fit_idx = fit_idx.to(self.device)
        self.batch_size = train.batch_size or self.fit_idx.numel()
        self.min_rows = 2 * me.world_size if batch_norm else 1
        if min(self.fit_idx.numel(), self.batch_size) < self.min_rows:
            raise ValueError(
                f"a batch-normalised student needs at least {self.min_rows} training nodes and a batch size of at "
                f"least {self.min_rows} ({me.world_size} process(es)); got {self.fit_idx.numel()} nodes, batch size "
                f"{self.batch_size}"
            )
        # the anchor in losses() gives every parameter a gradient: DDP need not search for unused ones
        self.find_unused_parameters = False

    def batches(self, epoch: int):
        order = self.fit_idx[torch.randperm(self.fit_idx.numel(), generator=self.order).to(self.device)]
        for batch in distributed.global_batches(order, self.batch_size, self.min_rows):
            yield loop.sharded(batch, self.is_train)

    def losses(self, net, batch) -> Dict[str, Tensor]:
        idx, share = batch
        out = net(self.x[idx])
        if self.distiller is not None:
            losses = self.distiller(out, idx, self.y[idx], self.is_train[idx], share)
        else:
            zero = out.logits.new_zeros(())
            losses = DistillLosses(label_loss(out.logits, self.y[idx], self.is_train[idx], share, self.label_weight), zero, zero)
        # every output takes part in the backward pass even when its terms are off (e.g. the code
        # term alone): each parameter gets a gradient, as DDP expects, and weight decay reaches all
        anchor = 0.0 * sum(t.sum() for t in out if t is not None)
        return DistillLosses(losses.label + anchor, losses.soft_label, losses.soft_token)._asdict()

    def epoch_metrics(self) -> Dict[str, float]:
        return {}


class StudentResult(NamedTuple):
    model: MLPStudent
    metrics: Dict[str, float]
    history: List[Dict[str, float]]


@torch.no_grad()
def predict_rows(model: MLPStudent, x: Tensor, rows: range, chunk: int = 65_536) -> Tensor:
    """Evaluation-mode logits of ``rows``, ``chunk`` rows at a time (bounded activation memory)."""
    model.eval()
    starts = range(rows.start, rows.stop, chunk)
    parts = [model(x[start : min(start + chunk, rows.stop)]).logits for start in starts]
    return torch.cat(parts) if parts else x.new_zeros(0, model.num_classes)


def make_distiller(data: Data, split: NodeSplit, targets: Optional[TeacherTargets], distill: DistillConfig, device):
    """The distiller of a method (None for ``mlp``), its soft labels calibrated on validation
    nodes (temperature scaling) unless ``distill.teacher_temperature`` is set."""
    if distill.method == "mlp":
        return None
    if targets is None:
        raise ValueError(f"method {distill.method!r} needs teacher targets")
    targets.check_matches(data, split)
    temperature = distill.teacher_temperature
    if temperature is None:
        temperature = calibrate_temperature(targets.logits[split.val_idx], data.y[split.val_idx])
    return CodebookDistiller(targets, distill, device, temperature)


@torch.no_grad()
def target_stats(distiller: CodebookDistiller, fit_idx: Tensor) -> Dict[str, float]:
    """How sharp the targets are: the teacher temperature, the mean entropy of the soft labels
    and (``vqgraph``) of the soft code assignments of up to 4,096 nodes, and their mean top probability."""
    row_entropy = [entropy(distiller.teacher_probs(part)) * part.numel() for part in fit_idx.split(65_536)]
    stats = {
        "targets/teacher_temperature": distiller.temperature,
        "targets/soft_label_entropy": float(sum(row_entropy) / fit_idx.numel()),
    }
    if distiller.config.uses_soft_tokens:
        probs = distiller.teacher_soft_codes(fit_idx[: min(4096, fit_idx.numel())])[0]
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
) -> StudentResult:
    """Train an MLP student on ``data`` with ``split`` (either setting).

    The student sees features of observed nodes only (all nodes transductively; inductively the
    hidden test nodes never enter training). Labels are used on ``split.train_idx`` only. The
    teacher terms use every observed node, ``train.batch_size`` nodes at a time (soft code
    assignments are computed per batch: B x K, never N x K beyond one batch). ``train`` defaults
    to :func:`student_train_defaults` of the method. Selection: ``distill.select_by`` (``val``
    by default; ``test`` is the paper's protocol, for comparison only).
    """
    split.check_graph(data)
    distill.check_learns()
    train = train or student_train_defaults(distill.method)
    me = distributed.init(train.device)  # torchrun: join the job; else a world of one
    code_dim = targets.z.size(1) if distill.uses_soft_tokens and targets is not None else None
    model, streams = loop.build(train, lambda: MLPStudent(data.num_features, data.num_classes, student, code_dim), True)
    distiller = make_distiller(data, split, targets, distill, distributed.local_device(train.device))
    objective = DistillObjective(data, split, distiller, distill, student.norm == "batch", train, streams.order)
    evaluator = Evaluator.for_split(objective.y, split)
    eval_rows = distributed.row_ranges(data.num_nodes, me.world_size)[me.rank]  # this rank's share of inference
    test_key = "test/acc" if split.setting is Setting.TRANSDUCTIVE else "test_tran/acc"
    monitor = "val/acc" if distill.select_by == "val" else test_key
    evaluate = lambda m: evaluator(predict_rows(m, objective.x, eval_rows), eval_rows)  # noqa: E731
    fitted = loop.fit(model, objective, evaluate, train, monitor, log, desc=f"student {distill.method}")
    start = time.perf_counter()
    logits = predict_rows(model, objective.x, eval_rows)
    infer_seconds = distributed.all_reduce_max(time.perf_counter() - start)
    metrics = evaluator(logits, eval_rows)
    metrics.update(best_epoch=fitted.best_epoch, epochs=len(fitted.history), train_s=fitted.train_seconds,
                   infer_s=infer_seconds, selected_by=monitor)
    if distiller is not None:
        metrics.update(target_stats(distiller, objective.fit_idx))
    return StudentResult(model, metrics, fitted.history)
