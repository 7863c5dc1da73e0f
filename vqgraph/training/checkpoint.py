"""Epoch checkpoints of the training loop: resume a killed run where it stopped, bit-identically.

A checkpoint holds everything the rest of a run draws on: the model's state (weights and
buffers, so the codebook and the quantizer's EMA statistics), the optimiser's state, the best
state so far with its epoch and the early-stopping counter, the metric history, and every random
state (torch's global generator, which drives dropout, sampling noise and code restarts; the
loop's epoch-permutation and neighbour-sampling generators), per rank. Rank 0 gathers the other
ranks' random states and writes the file atomically; every rank reads it back with
``torch.load(weights_only=True)``, so nothing in it is unpickled.

A checkpoint records the identity of its run (the config that determines the result); resuming
with another identity is refused, naming the differing keys, unless the caller starts over
(``fresh``). A file that cannot be read is reported and ignored (the run starts over). The loop
removes the checkpoint when training ends.
"""

from __future__ import annotations

import os
import signal
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch import nn

from vqgraph import distributed
from vqgraph.errors import ArtifactMismatchError, CheckpointMismatchError
from vqgraph.utils.io import artifact_field, artifact_tensor, atomic_torch_save, read_artifact

FORMAT = "vqgraph-checkpoint"
FORMAT_VERSION = 1
KILL_ENV = "VQGRAPH_KILL_AFTER_EPOCH"  # tests only: "<desc prefix>:<epoch>" kills the process after that epoch


@dataclass
class Checkpoint:
    """Where and how often :func:`vqgraph.training.loop.fit` saves its state.

    Args:
        path: the checkpoint file (rank 0 writes it; every rank must be able to read it).
        identity: flat ``{key: value}`` of what determines the run; a checkpoint with another
            identity is refused.
        every_epochs: save after every this many epochs (0: only by time).
        every_minutes: and whenever this many minutes passed since the last save (0: only by epochs).
        fresh: ignore and remove an existing checkpoint: start over.
    """

    path: Path
    identity: Dict[str, Any] = field(default_factory=dict)
    every_epochs: int = 10
    every_minutes: float = 10.0
    fresh: bool = False

    def __post_init__(self):
        self.path = Path(self.path)
        if self.every_epochs < 0 or self.every_minutes < 0:
            raise ValueError(f"checkpoint every_epochs and every_minutes must be >= 0, got {self.every_epochs}, "
                             f"{self.every_minutes}")
        self._last_save = time.monotonic()

    def due(self, epoch: int) -> bool:
        by_epoch = self.every_epochs > 0 and (epoch + 1) % self.every_epochs == 0
        by_time = self.every_minutes > 0 and time.monotonic() - self._last_save >= 60 * self.every_minutes
        return distributed.broadcast_object(by_epoch or by_time)  # every rank takes part in the gather

    def for_candidate(self, name: str) -> "Checkpoint":
        """The checkpoint of one of several trainings of a run (e.g. one weight decay of a grid)."""
        path = self.path.with_name(f"{self.path.stem}-{name}{self.path.suffix}")
        return Checkpoint(path, {**self.identity, "candidate": name}, self.every_epochs, self.every_minutes, self.fresh)

    # ---- state ---------------------------------------------------------------------------------
    def save(self, epoch: int, model: nn.Module, opt: torch.optim.Optimizer, best, history: List[Dict[str, float]],
             streams, averaged=None) -> None:
        """Write the state after ``epoch`` (rank 0; the other ranks' random states gathered to it)."""
        rngs = distributed.gather_objects(_rng_state(streams))
        if distributed.world().is_main:
            payload = {
                "format": FORMAT, "format_version": FORMAT_VERSION, "identity": self.identity, "epoch": epoch,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "best": {"value": best.best_value, "epoch": best.best_epoch, "metrics": best.best_metrics,
                         "state": best.best_state, "since": best._since},
                "history": history, "rng": rngs, "world_size": distributed.world().world_size,
            }
            if averaged is not None:  # the moving average of the weights (TrainConfig.ema)
                payload["averaged"] = averaged.model.state_dict()
            atomic_torch_save(payload, self.path)
        self._last_save = time.monotonic()

    def load(self) -> Optional[dict]:
        """The saved state to resume from, or None (no checkpoint, an unreadable one, or ``fresh``)."""
        me = distributed.world()
        if self.fresh:
            if me.is_main and self.path.exists():
                self.path.unlink()
            distributed.broadcast_object(None)  # the file is gone on every rank's view before anyone looks
            return None
        exists = distributed.broadcast_object(self.path.is_file())
        if not exists:
            return None
        try:
            payload = read_artifact(self.path, "checkpoint")
            if payload.get("format") != FORMAT or payload.get("format_version") != FORMAT_VERSION:
                raise ArtifactMismatchError(f"{self.path}: not a vqgraph checkpoint of format {FORMAT_VERSION}")
            _check_payload(payload, self.path)
        except ArtifactMismatchError as err:
            if me.is_main:
                warnings.warn(f"checkpoint {self.path} is unusable and is ignored (training starts over): {err}",
                              stacklevel=3)
            return None
        differ = sorted(k for k in set(self.identity) | set(payload["identity"])
                        if self.identity.get(k) != payload["identity"].get(k))
        if differ:
            lines = "; ".join(f"{k}: {payload['identity'].get(k)!r} (checkpoint) vs {self.identity.get(k)!r} (now)"
                              for k in differ)
            raise CheckpointMismatchError(f"{self.path} was written by another configuration ({lines}); start over "
                                          "with --fresh (fresh=True) or use another output folder")
        if payload["world_size"] != me.world_size:
            raise CheckpointMismatchError(f"{self.path} was written by {payload['world_size']} process(es), this run "
                                          f"has {me.world_size}: resume with as many")
        return payload

    def restore(self, payload: dict, model: nn.Module, opt: torch.optim.Optimizer, best, streams,
                averaged=None) -> tuple:
        """Put ``payload`` back into the run (and into ``averaged``, the moving average of the
        weights, when the run keeps one); returns ``(first epoch to train, history)``."""
        try:
            model.load_state_dict(payload["model"])
            opt.load_state_dict(payload["optimizer"])
            if averaged is not None:
                averaged.model.load_state_dict(payload["averaged"])
        except (RuntimeError, ValueError, KeyError) as err:  # same identity, other tensors: a damaged file
            detail = " ".join(str(err).split())  # one line
            raise CheckpointMismatchError(f"{self.path} does not fit the model it would resume ({detail}); start "
                                          "over with --fresh (fresh=True)") from err
        b = payload["best"]
        best.best_value, best.best_epoch, best.best_metrics = b["value"], b["epoch"], b["metrics"]
        best.best_state, best._since = b["state"], b["since"]
        _set_rng_state(payload["rng"][distributed.world().rank], streams)
        return payload["epoch"] + 1, list(payload["history"])

    def remove(self) -> None:
        distributed.barrier()
        if distributed.world().is_main and self.path.exists():
            self.path.unlink()


def _check_payload(payload: dict, path: Path) -> None:
    """A checkpoint's fields of the right types, its tensors dense and finite (model, optimiser,
    best state), one random state per rank: else :class:`ArtifactMismatchError` naming the field."""
    artifact_field(payload, "identity", dict, path)
    for key in ("epoch", "world_size"):
        if artifact_field(payload, key, int, path) < (0 if key == "epoch" else 1):
            raise ArtifactMismatchError(f"{path}: field {key!r} is {payload[key]} (a damaged checkpoint)")
    artifact_field(payload, "history", list, path)
    best = artifact_field(payload, "best", dict, path)
    for key in ("value", "epoch", "metrics", "state", "since"):
        artifact_field(best, key, object, path, "best")
    optimizer = artifact_field(payload, "optimizer", dict, path)
    states = {"model": artifact_field(payload, "model", dict, path),
              "optimizer.state": artifact_field(optimizer, "state", dict, path, "optimizer"),
              "best.state": artifact_field(best, "state", (dict, type(None)), path, "best") or {},
              "averaged": artifact_field(payload, "averaged", dict, path) if "averaged" in payload else {}}
    for section, state in states.items():
        for key, value in _tensors(state):
            artifact_tensor(value, path, f"{section}.{key}", None, tuple(value.shape))
    rng = artifact_field(payload, "rng", list, path)
    if len(rng) != payload["world_size"] or not all(isinstance(r, dict) and isinstance(r.get("torch"), torch.Tensor)
                                                    for r in rng):
        raise ArtifactMismatchError(f"{path}: field 'rng' is not one random state per rank (a damaged checkpoint)")


def _tensors(state: dict, prefix: str = ""):
    """Every ``(dotted key, tensor)`` of a nested state dict."""
    for key, value in state.items():
        if isinstance(value, dict):
            yield from _tensors(value, f"{prefix}{key}.")
        elif isinstance(value, torch.Tensor):
            yield f"{prefix}{key}", value


def _rng_state(streams) -> Dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if streams is not None:
        state["order"] = streams.order.get_state()
        if streams.sample is not streams.order:
            state["sample"] = streams.sample.get_state()
    return state


def _set_rng_state(state: Dict[str, Any], streams) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if streams is not None:
        streams.order.set_state(state["order"])
        if "sample" in state:
            streams.sample.set_state(state["sample"])


def kill_hook(desc: str, epoch: int) -> None:
    """Tests only: ``VQGRAPH_KILL_AFTER_EPOCH=<prefix>:<epoch>`` ends this process with SIGKILL
    after that epoch of a training whose description starts with ``prefix`` (after every rank
    has passed the epoch, so a checkpoint written at it is complete)."""
    target = os.environ.get(KILL_ENV)
    if not target:
        return
    prefix, _, at = target.rpartition(":")
    if desc.startswith(prefix) and epoch == int(at):
        distributed.barrier()
        os.kill(os.getpid(), signal.SIGKILL)
