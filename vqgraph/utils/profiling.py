"""Peak-memory and timing helpers for benchmarks (figures, never assertions)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from typing import Dict, List


def peak_rss_gib() -> float:
    """Peak resident memory of this process so far, in GiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def current_rss_gib() -> float:
    import psutil

    return psutil.Process(os.getpid()).memory_info().rss / 2**30


def run_isolated(module: str, args: List[str]) -> Dict:
    """Run ``python -m module args`` in a fresh process and parse the JSON line it prints last.

    A fresh process per measurement makes ``ru_maxrss`` the peak of that measurement alone.
    """
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{module} {' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    """The CPU's model name (Linux ``/proc/cpuinfo``), else what ``platform`` knows."""
    import platform

    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> Dict:
    """What a measurement ran on: torch version and threads, Python, CPU model, core count."""
    import platform

    import torch

    return {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
    }
