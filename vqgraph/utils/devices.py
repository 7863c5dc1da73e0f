"""Whether a torch device can be used on this machine, said in one line (commands and serving)."""

from __future__ import annotations

from typing import Optional

import torch


def device_problem(name, fix: str = "--device cpu") -> Optional[str]:
    """Why torch device ``name`` cannot be used here, or None when it can; ``fix`` is the advice
    given for an unavailable accelerator (``--device cpu`` for the commands)."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        return "not a torch device; use cpu, cuda, cuda:N or mps"
    if device.type == "cuda":
        built = f"built with CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        if not torch.cuda.is_available():
            return f"CUDA is not available (torch {torch.__version__}, {built}); use {fix}"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"this machine has {count} CUDA device(s): use cuda:0 to cuda:{count - 1}"
    elif device.type == "cpu" and device.index not in (None, 0):
        return "the CPU has no device index (torch would use the one CPU device): use cpu"
    elif device.type == "mps" and not torch.backends.mps.is_available():
        return f"Apple's MPS is not available on this machine; use {fix}"
    elif device.type not in ("cpu", "cuda", "mps"):
        return f"device type {device.type!r} is not one vqgraph trains on; use cpu, cuda, cuda:N or mps"
    return None
