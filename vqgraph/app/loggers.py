"""Weights & Biases logging that never blocks: ``off``, ``offline`` or ``online``.

``online`` without an API key, or when the service cannot be reached in time, falls back to
``offline`` (the run is kept on disk; ``wandb sync`` uploads it later). ``wandb`` is imported
only when a logger is enabled.
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

MODES = ("off", "offline", "online")


def _has_api_key() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path.home() / ".netrc"
    try:
        return netrc.is_file() and "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


def _no_offline_network() -> None:
    """Offline runs must not touch the network: turn off wandb's own usage telemetry, which
    (wandb 0.31) probes the server from a background thread unless the process-wide mode is
    offline. Best effort: the hook is private and may move between wandb versions."""
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):
        pass


class WandbLogger:
    """A W&B run (or nothing, in mode ``off``). Use as a context manager or call :meth:`finish`.

    Args:
        mode: ``off`` | ``offline`` | ``online``.
        project, group, job_type, name: W&B run placement (group runs by dataset/setting/method).
        config: the run's full configuration (logged once).
        dir: where W&B writes its files (``<dir>/wandb/...``).
    """

    def __init__(
        self,
        mode: str = "off",
        project: str = "vqgraph",
        group: Optional[str] = None,
        job_type: Optional[str] = None,
        name: Optional[str] = None,
        config: Optional[Mapping[str, Any]] = None,
        dir: Optional[Path] = None,
        tags=(),
    ):
        if mode not in MODES:
            raise ValueError(f"unknown W&B mode {mode!r}; choose from {MODES}")
        self.mode = mode
        self.run = None
        self._stages = set()
        if mode == "off":
            return
        import wandb

        if mode == "online" and not _has_api_key():
            warnings.warn("W&B: no API key found; logging offline (upload later with `wandb sync`)")
            mode = "offline"
        self.mode = mode
        if mode == "offline":
            _no_offline_network()
        if dir is not None:
            Path(dir).mkdir(parents=True, exist_ok=True)
        kwargs = dict(
            project=project,
            group=group,
            job_type=job_type,
            name=name,
            config=dict(config or {}),
            dir=str(dir) if dir is not None else None,
            tags=list(tags),
            reinit="finish_previous",
        )
        try:
            self.run = wandb.init(mode=mode, settings=wandb.Settings(init_timeout=60, silent=True), **kwargs)
        except Exception as err:  # service unreachable, auth error: never fail the experiment for it
            if mode == "offline":
                raise
            warnings.warn(f"W&B online init failed ({err}); logging offline")
            self.mode = "offline"
            _no_offline_network()
            self.run = wandb.init(mode="offline", settings=wandb.Settings(silent=True), **kwargs)

    @property
    def enabled(self) -> bool:
        return self.run is not None

    @property
    def run_dir(self) -> Optional[Path]:
        return Path(self.run.dir).parent if self.run is not None else None

    def log_metrics(self, metrics: Mapping[str, float], step: Optional[int] = None, prefix: str = "") -> None:
        if self.run is None:
            return
        clean = {f"{prefix}{k}": v for k, v in metrics.items() if isinstance(v, (int, float))}
        for key, value in metrics.items():  # per-item counts (a tensor or array): a histogram of them
            if hasattr(value, "shape") and len(value.shape) == 1:
                clean[f"{prefix}{key}"] = self.histogram(value)
        if step is not None:  # each stage has its own x-axis: "epoch", "teacher/epoch", ...
            clean[f"{prefix}epoch"] = step
            if prefix and prefix not in self._stages:
                self.run.define_metric(f"{prefix}*", step_metric=f"{prefix}epoch")
                self._stages.add(prefix)
        self.run.log(clean)

    @staticmethod
    def histogram(values, bins: int = 64):
        """A ``wandb.Histogram`` of ``values`` (a tensor or array of numbers)."""
        import numpy as np
        import wandb

        array = values.detach().cpu().numpy() if hasattr(values, "detach") else np.asarray(values)
        return wandb.Histogram(np_histogram=np.histogram(array, bins=bins))

    def log_table(self, key: str, columns, rows) -> None:
        """A W&B table (for example a results table) under ``key``."""
        if self.run is None:
            return
        import wandb

        self.run.log({key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def log_image(self, key: str, path: Path, caption: str = "") -> None:
        """An image file (PNG) under ``key``."""
        if self.run is None:
            return
        import wandb

        self.run.log({key: wandb.Image(str(path), caption=caption or None)})

    def stage(self, prefix: str) -> "_Stage":
        """A ``log(metrics, epoch)`` callable that logs under ``prefix`` with its own epoch axis."""
        return _Stage(self, prefix)

    # the training loop hands non-scalar extras (a histogram's counts) only to a log that says it takes them
    takes_extras = True

    def __call__(self, metrics: Mapping[str, float], step: int, extras: Optional[Mapping[str, Any]] = None) -> None:
        self.log_metrics({**metrics, **(extras or {})}, step)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        if self.run is None:
            return
        for key, value in metrics.items():
            self.run.summary[key] = value

    def log_artifact(self, path: Path, name: str, type: str, metadata: Optional[Dict[str, Any]] = None) -> None:
        if self.run is None:
            return
        import wandb

        # W&B allows letters, digits, dashes, underscores and dots in artifact names ("pyg:Amazon/Photo" is not)
        artifact = wandb.Artifact(name=re.sub(r"[^\w.-]", "-", name), type=type, metadata=dict(metadata or {}))
        artifact.add_file(str(path))
        self.run.log_artifact(artifact)

    def finish(self) -> None:
        """End the run; an offline one says, once, where its files are and how to upload them."""
        if self.run is not None:
            folder = self.run_dir
            self.run.finish()
            self.run = None
            if self.mode == "offline":
                print(f"W&B: offline run saved in {folder}; upload it with: wandb sync {folder}", file=sys.stderr,
                      flush=True)

    def __enter__(self) -> "WandbLogger":
        return self

    def __exit__(self, *exc) -> None:
        self.finish()


class _Stage:
    """:meth:`WandbLogger.stage`: logs under a prefix, extras (histograms) included."""

    takes_extras = True

    def __init__(self, logger: WandbLogger, prefix: str):
        self.logger, self.prefix = logger, prefix

    def __call__(self, metrics: Mapping[str, float], epoch: int, extras: Optional[Mapping[str, Any]] = None) -> None:
        self.logger.log_metrics({**metrics, **(extras or {})}, epoch, self.prefix)
