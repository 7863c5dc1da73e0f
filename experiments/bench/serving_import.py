"""What a serving process pays before its first answer: import, load, first predict, each run in a fresh process.

    python -m experiments.bench.serving_import [--repo PATH] [--runs 7] [--out FILE.json]

A student the size of Cora's ``vqgraph`` one (1,433 features, 7 classes, a hidden layer of 128 with
batch norm, a projection to 64 and a 2,048-code codebook, row-normalised features) is saved once as
``student.pt`` by the checkout under test (``--repo``, default this one). Then ``--runs`` fresh
interpreters each time, in this order, ``import torch``; ``from vqgraph import Predictor``;
``Predictor.load(path)`` (default backend: onnxruntime when installed); ``predict`` on 10 raw rows;
and report which of torch_geometric and vector_quantize_pytorch got imported. Printed: the median of
each step and of their sum, in seconds (and the whole process's wall time, interpreter start
included). Run it on another checkout to compare: ``--repo ../main``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[2]
STEPS = ("torch", "vqgraph", "load", "first_predict")
HEAVY = ("torch_geometric", "vector_quantize_pytorch")

_MAKE = """
import torch
from vqgraph.data.graph import FeatureTransform
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.serving import Predictor
torch.manual_seed(0)
model = MLPStudent(1433, 7, StudentConfig(hidden_channels=128, norm="batch"), 64).eval()
Predictor(model, FeatureTransform("row"), torch.randn(2048, 64), backend="eager").save({path!r})
torch.save(torch.rand(10, 1433).round(), {features!r})
"""

_SERVE = """
import json, sys, time
t0 = time.perf_counter()
import torch
t1 = time.perf_counter()
from vqgraph import Predictor
t2 = time.perf_counter()
predictor = Predictor.load({path!r})
t3 = time.perf_counter()
out = predictor.predict(torch.load({features!r}))
t4 = time.perf_counter()
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"torch": t1 - t0, "vqgraph": t2 - t1, "load": t3 - t2, "first_predict": t4 - t3,
                  "backend": predictor.backend, "heavy": heavy, "labels": out.labels.tolist()}}))
"""


def _python(code: str, repo: Path, threads: int) -> str:
    env = {**os.environ, "PYTHONPATH": str(repo), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=repo, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"error: the child process failed under {repo}:\n{done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""


def bench(repo: Path, runs: int, threads: int) -> dict:
    """Each step's seconds per run and their medians, in fresh processes of ``repo``'s code."""
    with tempfile.TemporaryDirectory(prefix="vqgraph-serving-import-") as tmp:
        path, features = str(Path(tmp) / "student.pt"), str(Path(tmp) / "x.pt")
        _python(_MAKE.format(path=path, features=features), repo, threads)
        rows = []
        for _ in range(runs):
            start = time.perf_counter()
            row = json.loads(_python(_SERVE.format(path=path, features=features, heavy=HEAVY), repo, threads))
            row["process"] = time.perf_counter() - start
            row["total"] = sum(row[step] for step in STEPS)
            rows.append(row)
        size = Path(path).stat().st_size
    medians = {key: statistics.median(row[key] for row in rows) for key in (*STEPS, "total", "process")}
    return {"repo": os.path.relpath(repo),  # relative to where it ran: no machine path in results
            "runs": runs, "threads": threads, "student_bytes": size,
            "backend": rows[0]["backend"], "heavy_imported": rows[0]["heavy"], "median_s": medians, "rows": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.serving_import",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=HERE, help="the checkout whose vqgraph is measured (default: this one)")
    parser.add_argument("--runs", type=int, default=7, help="fresh processes (default 7)")
    parser.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the children (default 1)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.runs < 1 or not (args.repo / "vqgraph" / "__init__.py").is_file():
        parser.error(f"--runs must be >= 1 and --repo a checkout holding vqgraph/ (got {args.runs}, {args.repo})")

    from experiments.common import report_json

    result = bench(args.repo.resolve(), args.runs, args.threads)
    m = result["median_s"]
    print(f"{result['repo']}: student.pt {result['student_bytes'] / 1e3:.0f} kB, backend {result['backend']}, "
          f"imported {', '.join(result['heavy_imported']) or 'neither torch_geometric nor vector_quantize_pytorch'}")
    print(f"median of {args.runs} fresh processes (s): import torch {m['torch']:.3f}, from vqgraph import Predictor "
          f"{m['vqgraph']:.3f}, Predictor.load {m['load']:.3f}, first predict {m['first_predict']:.3f}; "
          f"sum {m['total']:.3f} (process {m['process']:.3f})")
    report_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
