"""The one training loop, shared by the teacher and the student.

The loop owns the epoch: the optimiser step, the sums of the loss terms, the all-reduce of
those sums, the buffers broadcast from rank 0, model selection, early stopping and restoring
the selected state. What differs between teacher and student is an *objective* and an
*evaluator*:

* an objective yields an epoch's batches (:meth:`Objective.batches`) and returns a batch's named
  loss terms (:meth:`Objective.losses`); the loss is their sum;
* an evaluator maps the model to metrics such as ``{"train/acc", "val/acc", ...}``
  (:class:`~vqgraph.evaluation.Evaluator` computes them).

Distributed arithmetic is settled once, in the batches: every rank takes its contiguous slice of
the same global batch, and the batch's :class:`Share` carries the global counts, so that an
objective that divides a sum over its rows by the global count (:meth:`Share.mean`) makes
DistributedDataParallel's gradient mean over ranks the gradient of the global batch. In a world
of one process a share is the whole batch and every division is the plain mean. (The teacher's
tokenizer terms are the exception, by design: each rank's means over its own sampled subgraph;
see docs/distributed.md.)
"""

from __future__ import annotations

import contextlib
import copy
import functools
import operator
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, Iterable, List, NamedTuple, Optional, Protocol, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from vqgraph import distributed
from vqgraph.errors import DivergenceError
from vqgraph.training.checkpoint import Checkpoint, kill_hook
from vqgraph.training.selection import BestCheckpoint, end_epoch
from vqgraph.utils.settings import check_fields, choice, ranged

OPTIMIZERS = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
RANK_SEED_STRIDE = 7919  # rank r > 0 of a sharded job draws its own streams from seed + 7919 r
SAMPLE_SEED_OFFSET = 104729  # rank 0's sampling stream in a sharded job


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by teacher and student training."""

    lr: float = ranged(0.01, gt=0)
    weight_decay: float = ranged(5e-4, ge=0)
    max_epochs: int = ranged(500, ge=1)
    patience: Optional[int] = ranged(100, ge=0)  # epochs without a better val/acc before stopping (None: never)
    batch_size: Optional[int] = ranged(None, ge=1)  # None: full-batch; else seed nodes per mini-batch
    fanouts: Sequence[int] = ranged((15, 10), ge=1, also=(-1,), nonempty=True)  # neighbours per hop in mini-batch mode (last value repeats; -1: all)
    optimizer: str = choice("adam", tuple(OPTIMIZERS))  # adam: L2 penalty in the gradient | adamw: decoupled weight decay (feature-scale free)
    device: str = "cpu"
    seed: int = ranged(0, ge=0, lt=2**32)
    progress: bool = True  # progress over epochs: a tqdm bar on a terminal, a plain line every 30 s off one
    checkpoint_epochs: int = ranged(10, ge=0)  # when a checkpoint path is given: save every this many epochs (0: by time only)
    checkpoint_minutes: float = ranged(10.0, ge=0)  # ... and at least this often (0: by epochs only)
    deterministic: bool = True  # deterministic kernels while training: the same result at any CPU thread count
    ema: float = ranged(0.0, ge=0, lt=1)  # decay of a moving average of the weights, evaluated and selected instead of the live ones (0: off)

    def __post_init__(self):
        check_fields(self)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fanouts"] = list(self.fanouts)
        return out

    def checkpoint(self, path, identity: Dict[str, Any], fresh: bool = False) -> Checkpoint:
        """A :class:`Checkpoint` at ``path`` on this config's schedule."""
        return Checkpoint(path, identity, self.checkpoint_epochs, self.checkpoint_minutes, fresh)


# TrainConfig keys that do not change what a run computes (left out of cache keys and checkpoint identities)
NOT_RESULT_KEYS = ("device", "progress", "checkpoint_epochs", "checkpoint_minutes", "deterministic")


class Share(NamedTuple):
    """What a rank's slice of a global batch needs to normalise its losses by the global batch.

    Attributes:
        rows: rows (nodes) in the global batch.
        labelled: labelled rows in the global batch.
        shards: ranks the batch is split over (1 when every rank holds the whole batch).
    """

    rows: int
    labelled: int
    shards: int = 1

    def mean(self, total: Tensor, count: int) -> Tensor:
        """``total`` (a sum over this rank's rows) divided by the global ``count``, times the
        number of shards: DDP's mean over ranks of these is the global batch's mean. A count of
        0 gives 0 (the term still takes part in the backward pass)."""
        return total / max(count, 1) * self.shards


def sharded(batch: Tensor, labelled: Optional[Tensor] = None) -> tuple:
    """This rank's slice of a global ``batch`` of node ids and its :class:`Share`; ``labelled``
    is a bool mask over all nodes (None: every row is labelled)."""
    me = distributed.world()
    count = batch.numel() if labelled is None else int(labelled[batch].sum())
    return distributed.shard(batch, me.rank, me.world_size), Share(batch.numel(), count, me.world_size)


class Streams(NamedTuple):
    """Seeded random streams of a run: ``order`` permutes the seed nodes (identical on every
    rank), ``sample`` draws neighbourhoods (the rank's own in a sharded job)."""

    order: torch.Generator
    sample: torch.Generator


def build(train: TrainConfig, make_model: Callable[[], nn.Module], per_rank: bool) -> tuple:
    """Seed, build the model on this rank's device and return ``(model, streams)``.

    The model's initial weights come from ``train.seed`` on every rank. With ``per_rank`` (ranks
    see different data), rank r > 0 then reseeds torch's global generator (dropout masks) and
    takes its own sampling stream; without it every rank runs the same computation.
    """
    me = distributed.world()
    torch.manual_seed(train.seed)
    order = torch.Generator().manual_seed(train.seed)
    model = make_model().to(distributed.local_device(train.device))
    sample = order
    if per_rank and me.world_size > 1:
        if me.rank > 0:
            torch.manual_seed(train.seed + RANK_SEED_STRIDE * me.rank)
        offset = RANK_SEED_STRIDE * me.rank if me.rank > 0 else SAMPLE_SEED_OFFSET
        sample = torch.Generator().manual_seed(train.seed + offset)
    return model, Streams(order, sample)


class Objective(Protocol):
    """What the loop trains: batches of an epoch and the named loss terms of a batch."""

    terms: Sequence[str]  # names of the loss terms, logged as loss/<name>
    find_unused_parameters: bool  # some parameters get no gradient (DDP must be told)

    def batches(self, epoch: int) -> Iterable[Any]: ...

    def losses(self, net: nn.Module, batch: Any) -> Dict[str, Tensor]: ...

    def epoch_metrics(self) -> Dict[str, float]: ...

    # optional: def epoch_extras(self) -> Dict[str, Any]: non-scalars for the logger only (histograms)


def check_finite(epoch: int, metrics: Dict[str, float], history: List[Dict[str, float]], model: nn.Module,
                 first: Optional[str] = None) -> None:
    """Raise :class:`DivergenceError` if an epoch's mean loss terms (already reduced over ranks,
    so every rank agrees) or the model's parameters are not finite, naming the epoch, the term
    (``first``, the first to break within the epoch, when given) and its last finite value."""
    bad = [k for k, v in metrics.items() if not torch.isfinite(torch.tensor(v))]
    if bad:
        key = first if first in bad else next((k for k in bad if k != "train/loss"), bad[0])  # a term, not the sum
        last = next(((e, h[key]) for e, h in reversed(list(enumerate(history))) if key in h), None)
        before = f"last finite value {last[1]:.6g} at epoch {last[0]}" if last else "no finite value before it"
        raise DivergenceError(f"training diverged at epoch {epoch}: {key} = {metrics[key]} ({before}); "
                              "lower the learning rate or that term's weight")
    for name, param in model.named_parameters():
        if not torch.isfinite(param).all():
            raise DivergenceError(f"training diverged at epoch {epoch}: parameter {name!r} is not finite after the "
                                  f"epoch's steps (train/loss {metrics.get('train/loss')}); lower the learning rate")


class FitResult(NamedTuple):
    best_epoch: int
    history: List[Dict[str, float]]
    train_seconds: float


PLAIN_INTERVAL = 30.0  # seconds between the plain status lines shown when stderr is not a terminal


def progress(iterable, desc: str, enabled: bool):
    """A tqdm bar on a terminal; off a terminal (log files, CI, ``nohup``; also Jupyter, whose
    stderr is not a terminal) a plain status line every :data:`PLAIN_INTERVAL` seconds
    (:class:`PlainProgress`); nothing when disabled."""
    if enabled and not _on_terminal(sys.stderr):
        return PlainProgress(iterable, desc)
    return tqdm(iterable, desc=desc, disable=True if not enabled else None, leave=False, file=sys.stderr, mininterval=1.0)


def _on_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class PlainProgress:
    """:func:`progress` off a terminal: iterates ``iterable`` and, every :data:`PLAIN_INTERVAL`
    seconds of ``clock``, prints one line on stderr: the step (the epoch, for a range of epochs),
    the last loss and the best value so far of each other metric given to :meth:`set_postfix`
    (as tqdm's), and the time elapsed."""

    disable = True  # as tqdm's attribute: no bar is drawn (plain lines instead)

    def __init__(self, iterable, desc: str, clock: Callable[[], float] = time.monotonic):
        self.iterable, self.desc, self.clock = iterable, desc, clock
        self.loss: Optional[str] = None
        self.best: Dict[str, float] = {}

    def set_postfix(self, loss=None, **metrics) -> None:
        if loss is not None:
            self.loss = str(loss)
        for key, value in metrics.items():
            self.best[key] = max(self.best.get(key, float("-inf")), float(value))

    def __iter__(self):
        epochs = isinstance(self.iterable, range)
        total = self.iterable.stop if epochs else (len(self.iterable) if hasattr(self.iterable, "__len__") else "?")
        start = last = self.clock()
        for n, item in enumerate(self.iterable, 1):
            yield item
            now = self.clock()
            if now - last >= PLAIN_INTERVAL:
                last = now
                step = f"epoch {item + 1}/{total}" if epochs else f"{n}/{total}"
                parts = [f"{self.desc}: {step}"] + ([f"loss {self.loss}"] if self.loss is not None else [])
                parts += [f"best {key} {value:.4f}" for key, value in self.best.items()]
                print(", ".join(parts + [f"{now - start:.0f} s elapsed"]), file=sys.stderr, flush=True)


def fit(
    model: nn.Module,
    objective: Objective,
    evaluate: Callable[[nn.Module], Dict[str, float]],
    train: TrainConfig,
    monitor: str = "val/acc",
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
    desc: str = "train",
    checkpoint: Optional[Checkpoint] = None,
    streams: Optional[Streams] = None,
) -> FitResult:
    """Train ``model`` on ``objective`` with ``train.optimizer`` for at most ``train.max_epochs`` epochs.

    After each epoch the metrics are the epoch's mean loss terms (``train/loss``,
    ``loss/<term>``), ``evaluate(model)`` (model in eval mode) and the objective's own epoch
    metrics; the state with the best ``monitor`` value is kept and restored at the end, and
    training stops after ``train.patience`` epochs without improvement. ``log(metrics, epoch)``
    is called on rank 0 after every epoch. A non-finite loss term or parameter raises
    :class:`DivergenceError` at the end of its epoch.

    With ``checkpoint`` (:class:`~vqgraph.training.checkpoint.Checkpoint`), the loop saves its
    whole state (with the random ``streams`` of :func:`build`) on the checkpoint's schedule,
    resumes from a saved state of the same configuration, and removes the file at the end: a
    killed run, run again, ends as the uninterrupted one would have.
    """
    with deterministic_algorithms(train.deterministic):
        return _fit(model, objective, evaluate, train, monitor, log, desc, checkpoint, streams)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool = True):
    """Within the block, torch uses deterministic kernels (``warn_only``: an op without one warns
    rather than fails, as some do on GPUs); the previous mode comes back after it.

    Without it, on a CPU with several threads, kernels of the backward pass reduce in an order
    that depends on scheduling, so two runs from the same seed drift apart over epochs; in this
    mode they agree bit for bit, and at one thread the results are the same as without it. The
    measurements: docs/design.md, "Determinism".
    """
    if not enabled:
        yield
        return
    before, before_warn = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before, warn_only=before_warn)


def _fit(model, objective, evaluate, train, monitor, log, desc, checkpoint, streams) -> FitResult:
    me = distributed.world()
    net = distributed.wrap_ddp(model, objective.find_unused_parameters)
    params = model.param_groups(train.weight_decay) if hasattr(model, "param_groups") else model.parameters()
    opt = OPTIMIZERS[train.optimizer](params, lr=train.lr, weight_decay=train.weight_decay)
    best = BestCheckpoint(monitor, train.patience)
    averaged = WeightAverage(model, train.ema) if train.ema else None
    history: List[Dict[str, float]] = []
    first = 0
    saved = checkpoint.load() if checkpoint is not None else None
    if saved is not None:
        first, history = checkpoint.restore(saved, model, opt, best, streams, averaged)
    start = time.perf_counter()
    bar = progress(range(first, train.max_epochs), desc, train.progress and me.is_main)
    for epoch in bar:
        net.train()
        metrics, first_bad = _train_epoch(net, opt, objective, epoch, averaged)
        check_finite(epoch, metrics, history, model, first_bad)
        distributed.broadcast_buffers(model)  # rank 0's codebook and running statistics everywhere
        judged = averaged.ready(model) if averaged is not None else model  # what is evaluated and kept
        judged.eval()
        metrics.update(evaluate(judged))
        metrics.update(objective.epoch_metrics())
        extras = objective.epoch_extras() if hasattr(objective, "epoch_extras") else None
        stop = end_epoch(epoch, metrics, history, best, judged, log if me.is_main else None, bar, extras)
        if checkpoint is not None and not stop and epoch + 1 < train.max_epochs and checkpoint.due(epoch):
            checkpoint.save(epoch, model, opt, best, history, streams, averaged)
        kill_hook(desc, epoch)
        if stop:
            break
    seconds = time.perf_counter() - start
    model.load_state_dict(best.best_state)
    if checkpoint is not None:
        checkpoint.remove()
    return FitResult(best.best_epoch, history, seconds)


class WeightAverage:
    """An exponential moving average of a model's parameters (``decay`` per optimiser step), in a
    copy of the model: ``update`` after each step; ``ready(model)`` copies the live buffers (batch
    norm statistics, a codebook) into the copy and returns it for evaluation. The first update
    after construction starts from the live weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay, self.model = decay, copy.deepcopy(model)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        for mine, live in zip(self.model.parameters(), model.parameters()):
            mine.lerp_(live.detach(), 1.0 - self.decay)

    @torch.no_grad()
    def ready(self, model: nn.Module) -> nn.Module:
        for mine, live in zip(self.model.buffers(), model.buffers()):
            mine.copy_(live)
        return self.model


def _train_epoch(net: nn.Module, opt: torch.optim.Optimizer, objective: Objective, epoch: int,
                 averaged: Optional[WeightAverage] = None) -> tuple:
    """One pass over the objective's batches: the mean of every loss term over steps and ranks,
    and the name of the first term that was not finite on this rank (None if all were)."""
    keys = ["train/loss"] + [f"loss/{name}" for name in objective.terms]
    sums, steps, first_bad = None, 0, None
    for batch in objective.batches(epoch):
        named = objective.losses(net, batch)
        if list(named) != list(objective.terms):
            raise ValueError(f"objective returned loss terms {list(named)}, declared {list(objective.terms)}")
        terms = list(named.values())
        total = functools.reduce(operator.add, terms)
        opt.zero_grad()
        total.backward()
        opt.step()
        if averaged is not None:
            averaged.update(net.module if hasattr(net, "module") else net)
        steps += 1
        row = torch.stack([t.detach().double().cpu() for t in (total, *terms)])
        if first_bad is None and not torch.isfinite(row).all():
            first_bad = next((k for k, finite in zip(keys[1:], torch.isfinite(row[1:])) if not finite), keys[0])
        sums = row if sums is None else sums + row
    sums = distributed.all_reduce_sum(sums) / distributed.world().world_size
    return {key: float(value) / steps for key, value in zip(keys, sums)}, first_bad
