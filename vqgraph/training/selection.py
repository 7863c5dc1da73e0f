"""Model selection: keep the state with the best monitored metric, stop after ``patience`` epochs.

The monitor is a metric key such as ``"val/acc"``; selection never looks at test metrics
unless a caller asks for a test key explicitly (the paper's protocol, for comparison only).
"""

from __future__ import annotations

import copy
from typing import Dict, Optional


class BestCheckpoint:
    """Tracks the epoch with the highest ``monitor`` value (the earliest on ties) and its state."""

    def __init__(self, monitor: str = "val/acc", patience: Optional[int] = None):
        self.monitor, self.patience = monitor, patience
        self.best_value = float("-inf")
        self.best_epoch = -1
        self.best_metrics: Dict[str, float] = {}
        self.best_state = None
        self._since = 0

    def update(self, epoch: int, metrics: Dict[str, float], model=None) -> bool:
        """Record ``metrics`` of ``epoch``; returns True when training should stop."""
        if self.monitor not in metrics:
            raise KeyError(f"monitored metric {self.monitor!r} missing; got {sorted(metrics)}")
        value = metrics[self.monitor]
        if value > self.best_value:
            self.best_value, self.best_epoch, self.best_metrics = value, epoch, dict(metrics)
            if model is not None:
                self.best_state = copy.deepcopy(model.state_dict())
            self._since = 0
        else:
            self._since += 1
        return self.patience is not None and self._since >= self.patience


def end_epoch(epoch: int, metrics: Dict[str, float], history: list, best: BestCheckpoint, model, log=None, bar=None,
              extras: Optional[Dict] = None) -> bool:
    """Record an epoch's metrics (history, logger, progress bar, selection); True means stop.
    ``extras`` (for example a histogram's counts) go only to a logger whose ``takes_extras`` is
    true, as ``log(metrics, epoch, extras)``; a plain ``log(metrics, epoch)`` sees floats only."""
    history.append(metrics)
    if log is not None:
        if extras and getattr(log, "takes_extras", False):
            log(metrics, epoch, extras)
        else:
            log(metrics, epoch)
    if bar is not None:
        bar.set_postfix(loss=f"{metrics['train/loss']:.3f}", **{best.monitor: f"{metrics[best.monitor]:.3f}"})
    return best.update(epoch, metrics, model)
