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
from tqdm.auto import tqdm

from vqgraph import distributed
from vqgraph.artifacts import TeacherTargets
from vqgraph.data.splits import NodeSplit, Setting
from vqgraph.losses import calibrate_temperature, code_logits, entropy
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.training.selection import BestCheckpoint, end_epoch
from vqgraph.training.teacher import TrainConfig, sharded_accuracies

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

    @property
    def uses_soft_labels(self) -> bool:
        return self.method in ("glnn", "vqgraph") and self.soft_label_weight > 0

    @property
    def uses_soft_tokens(self) -> bool:
        return self.method == "vqgraph"

    def to_dict(self) -> dict:
        return asdict(self)


class DistillLosses(NamedTuple):
    label: Tensor
    soft_label: Tensor
    soft_token: Tensor

    @property
    def total(self) -> Tensor:
        return self.label + self.soft_label + self.soft_token


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

    def __call__(self, out, idx: Tensor, y: Tensor, labelled: Tensor) -> DistillLosses:
        """``out``: student output for nodes ``idx`` (global ids); ``labelled``: bool mask of
        the batch rows whose label ``y`` may be used (training nodes)."""
        cfg = self.config
        zero = out.logits.new_zeros(())
        label = zero
        if cfg.label_weight and bool(labelled.any()):
            label = cfg.label_weight * F.cross_entropy(out.logits[labelled], y[labelled])
        soft_label = zero
        if cfg.uses_soft_labels:
            log_p = F.log_softmax(out.logits, dim=-1)
            soft_label = cfg.soft_label_weight * F.kl_div(log_p, self.teacher_probs(idx), reduction="batchmean")
        soft_token = zero
        if cfg.uses_soft_tokens and cfg.soft_token_weight:
            tau = cfg.token_temperature
            t, t_log_t = self.teacher_soft_codes(idx)
            log_s = F.log_softmax(code_logits(out.z, self.codebook, self.metric, 1.0 / tau), dim=-1)
            kl = (t_log_t - (t * log_s).sum(-1)).mean()  # KL(t || s), batch mean
            soft_token = cfg.soft_token_weight * tau * tau * kl
        return DistillLosses(label, soft_label, soft_token)


class StudentResult(NamedTuple):
    model: MLPStudent
    metrics: Dict[str, float]
    history: List[Dict[str, float]]


def evaluation_metrics(logits: Tensor, y: Tensor, split: NodeSplit, rows: Optional[range] = None) -> Dict[str, float]:
    """``<set>/acc`` for every evaluation set; inductive adds ``test_prod/acc`` = 0.8 tran + 0.2 ind.

    ``logits`` are those of all nodes, or of this rank's ``rows`` only (counts are then summed
    over ranks).
    """
    rows = range(logits.size(0)) if rows is None else rows
    metrics = sharded_accuracies(logits.argmax(-1), rows, y, split.index_dict())
    if split.setting is Setting.INDUCTIVE:
        metrics["test_prod/acc"] = 0.8 * metrics["test_tran/acc"] + 0.2 * metrics["test_ind/acc"]
    return metrics


@torch.no_grad()
def _predict(model: MLPStudent, x: Tensor, rows: range, chunk: int = 65_536) -> Tensor:
    """Evaluation-mode logits of ``rows``, ``chunk`` rows at a time (bounded activation memory)."""
    model.eval()
    starts = range(rows.start, rows.stop, chunk)
    parts = [model(x[start : min(start + chunk, rows.stop)]).logits for start in starts]
    return torch.cat(parts) if parts else x.new_zeros(0, model.num_classes)


def fit_student(
    data: Data,
    split: NodeSplit,
    targets: Optional[TeacherTargets],
    student: StudentConfig = StudentConfig(),
    distill: DistillConfig = DistillConfig(),
    train: TrainConfig = TrainConfig(lr=0.01, weight_decay=0.0, patience=50, batch_size=4096),
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
) -> StudentResult:
    """Train an MLP student on ``data`` with ``split`` (either setting).

    The student sees features of observed nodes only (all nodes transductively; inductively the
    hidden test nodes never enter training). Labels are used on ``split.train_idx`` only. The
    teacher terms use every observed node, ``train.batch_size`` nodes at a time (soft code
    assignments are computed per batch: B x K, never N x K beyond one batch). Selection:
    ``distill.select_by`` (``val`` by default).
    """
    split.check_graph(data)
    if distill.method != "mlp":
        if targets is None:
            raise ValueError(f"method {distill.method!r} needs teacher targets")
        targets.check_matches(data, split)
    me = distributed.init(train.device)  # torchrun: join the job; else a world of one
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(train.seed)  # the epoch permutation: identical on every rank
    device = distributed.local_device(train.device)
    code_dim = targets.z.size(1) if distill.uses_soft_tokens else None
    model = MLPStudent(data.num_features, data.num_classes, student, code_dim).to(device)
    if me.rank > 0:  # same initial weights everywhere, its own dropout masks per rank
        torch.manual_seed(train.seed + 7919 * me.rank)
    # a projection without the code term gets no gradient: DDP must be told to expect that
    net = distributed.wrap_ddp(model, code_dim is not None and not distill.soft_token_weight)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    distiller, temperature = None, None
    if distill.method != "mlp":
        temperature = distill.teacher_temperature
        if temperature is None:  # temperature scaling on validation nodes: calibrated soft labels
            temperature = calibrate_temperature(targets.logits[split.val_idx], data.y[split.val_idx])
        distiller = CodebookDistiller(targets, distill, device, temperature)
    x, y = data.x.to(device), data.y.to(device)
    is_train = torch.zeros(data.num_nodes, dtype=torch.bool, device=device)
    is_train[split.train_idx] = True
    # nodes whose features the student trains on: labelled nodes (mlp) or every observed node
    fit_idx = split.train_idx if distill.method == "mlp" else split.observed_idx
    fit_idx = fit_idx.to(device)
    batch_size = train.batch_size or fit_idx.numel()
    # batch norm needs two rows per rank in every training batch: a shorter last batch joins the one before
    min_rows = 2 * me.world_size if student.norm == "batch" else 1
    if min(fit_idx.numel(), batch_size) < min_rows:
        raise ValueError(
            f"a batch-normalised student needs at least {min_rows} training nodes and a batch size of at least "
            f"{min_rows} ({me.world_size} process(es)); got {fit_idx.numel()} nodes, batch size {batch_size}"
        )
    eval_rows = distributed.row_ranges(data.num_nodes, me.world_size)[me.rank]  # this rank's share of inference
    monitor = "val/acc" if distill.select_by == "val" else ("test/acc" if split.setting is Setting.TRANSDUCTIVE else "test_tran/acc")
    best = BestCheckpoint(monitor, train.patience)
    history: List[Dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(
        range(train.max_epochs), desc=f"student {distill.method}", disable=not (train.progress and me.is_main), leave=False
    )
    for epoch in bar:
        net.train()
        sums = torch.zeros(4, dtype=torch.float64)
        steps = 0
        order = fit_idx[torch.randperm(fit_idx.numel(), generator=gen).to(device)]
        for batch in distributed.global_batches(order, batch_size, min_rows):
            # every rank takes its slice of the same global batch; each loss term is scaled so
            # that DDP's mean of the ranks' gradients is the gradient of the global batch mean
            idx = distributed.shard(batch, me.rank, me.world_size)
            out = net(x[idx])
            zero = out.logits.new_zeros(())
            if idx.numel() == 0:  # fewer seeds than ranks: take part in the gradient average with zeros
                losses = DistillLosses(zero, zero, zero)
            elif distiller is None:
                losses = DistillLosses(F.cross_entropy(out.logits, y[idx]), zero, zero)
            else:
                losses = distiller(out, idx, y[idx], is_train[idx])
            # every output takes part in the backward pass, even when a slice holds no labelled node
            # and the other terms are off (DDP also expects a gradient for every parameter)
            anchor = 0.0 * sum(t.sum() for t in out if t is not None)
            losses = DistillLosses(losses.label + anchor, losses.soft_label, losses.soft_token)
            if me.world_size > 1 and idx.numel():
                rows_scale = idx.numel() * me.world_size / batch.numel()
                label_scale = rows_scale  # mlp: every row is labelled
                if distiller is not None:  # the label term averages over the labelled rows of the batch
                    labelled = int(is_train[batch].sum())
                    label_scale = int(is_train[idx].sum()) * me.world_size / labelled if labelled else 0.0
                losses = DistillLosses(losses.label * label_scale, losses.soft_label * rows_scale, losses.soft_token * rows_scale)
            opt.zero_grad()
            losses.total.backward()
            opt.step()
            steps += 1
            sums += torch.stack([t.detach().double().cpu() for t in (losses.total, *losses)])
        distributed.broadcast_buffers(model)  # e.g. batch-norm statistics: rank 0's everywhere
        sums = distributed.all_reduce_sum(sums) / me.world_size
        metrics = {key: float(v) / steps for key, v in zip(("train/loss", "loss/label", "loss/soft_label", "loss/soft_token"), sums)}
        logits = _predict(model, x, eval_rows)
        metrics.update(evaluation_metrics(logits, y, split, eval_rows))
        if end_epoch(epoch, metrics, history, best, model, log if me.is_main else None, bar):
            break
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best.best_state)
    t0 = time.perf_counter()
    logits = _predict(model, x, eval_rows)
    infer_seconds = distributed.all_reduce_max(time.perf_counter() - t0)
    metrics = evaluation_metrics(logits, y, split, eval_rows)
    metrics.update(
        best_epoch=best.best_epoch,
        epochs=len(history),
        train_s=train_seconds,
        infer_s=infer_seconds,
        selected_by=monitor,
    )
    if distiller is not None:
        with torch.no_grad():
            metrics["targets/teacher_temperature"] = temperature
            row_entropy = [entropy(distiller.teacher_probs(part)) * part.numel() for part in fit_idx.split(65_536)]
            metrics["targets/soft_label_entropy"] = float(sum(row_entropy) / fit_idx.numel())
            if distill.uses_soft_tokens:
                sample = fit_idx[: min(4096, fit_idx.numel())]
                probs = distiller.teacher_soft_codes(sample)[0]
                metrics["targets/soft_token_entropy"] = float(entropy(probs))
                metrics["targets/soft_token_max_prob"] = float(probs.max(-1).values.mean())
    return StudentResult(model, metrics, history)
