"""Candidates for the student's serving path: latency, throughput and agreement with the eager module.

    python -m experiments.bench.serving [--threads T] [--out FILE.json]

On features of arxiv-like's size (169,343 nodes, 128 features, 40 classes), a width-256
two-layer student, without codes (``glnn``'s head) and with a 2,048-code codebook and batch
norm (``vqgraph``'s), each candidate computes ``(probs, labels, codes)``:

* ``eager``: the :class:`~vqgraph.serving.ServingModule` (the reference);
* ``fused``: :class:`~vqgraph.serving.fused.FusedStudent` (weights folded once, one addmm per layer);
* ``fused+torchscript``: that module scripted, frozen and optimised for inference;
* ``fused+torch.compile``: that module compiled (inductor, dynamic batch size);
* ``fused+onnxruntime``: the fused graph in onnxruntime (:func:`~vqgraph.serving.fused.onnx_session`).

Latency: median of 2,000 calls on 10 random rows (after 200 warm-up calls); throughput: every
row in batches of 8,192 (the best of 3 passes). Agreement: the largest probability difference
to ``eager`` and whether labels and codes are equal, on the first 4,096 rows. A candidate that cannot be built here
(no compiler, no onnxruntime) is reported as skipped with its error.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path


def _candidates(module):
    import torch

    from vqgraph.serving.fused import FusedStudent, onnx_session

    fused = FusedStudent.from_serving(module)
    yield "eager", lambda: module
    yield "fused", lambda: fused

    def script():
        scripted = torch.jit.script(fused)
        scripted.eval()
        return torch.jit.optimize_for_inference(torch.jit.freeze(scripted))

    yield "fused+torchscript", script
    yield "fused+torch.compile", lambda: torch.compile(fused, dynamic=True)

    def ort():
        session = onnx_session(fused)
        if session is None:
            raise ImportError("onnx / onnxruntime not installed")
        return lambda x: tuple(torch.from_numpy(a) for a in session.run(None, {"features": x.numpy()}))

    yield "fused+onnxruntime", ort


def bench(threads: int) -> dict:
    import torch

    from vqgraph.data.graph import FeatureTransform
    from vqgraph.models.student import MLPStudent, StudentConfig
    from vqgraph.serving import ServingModule

    torch.set_num_threads(threads)
    n, f, c = 169_343, 128, 40
    x = torch.randn(n, f, generator=torch.Generator().manual_seed(0))
    rows = []
    for head, norm, codes in (("no codes", "none", False), ("2,048 codes", "batch", True)):
        torch.manual_seed(0)
        student = MLPStudent(f, c, StudentConfig(hidden_channels=256, norm=norm), 256 if codes else None).eval()
        codebook = torch.randn(2048, 256) if codes else None
        module = ServingModule(student, FeatureTransform(), codebook, "cosine").eval()
        with torch.inference_mode():
            reference = module(x[:4096])
        for name, build in _candidates(module):
            row = {"student": head, "candidate": name}
            try:
                fn = build()
                with torch.inference_mode():
                    out = [torch.as_tensor(t) for t in fn(x[:4096])]
                    fn(x[:8192])  # compile / warm the large shape too
            except Exception as err:  # noqa: BLE001 - a candidate that cannot run here is reported
                rows.append({**row, "skipped": f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"})
                continue
            row["max_prob_diff"] = float((out[0] - reference[0]).abs().max())
            row["labels_equal"] = bool(torch.equal(out[1], reference[1]))
            row["codes_equal"] = bool(torch.equal(out[2], reference[2]))
            row["latency_ms"] = _latency(fn, x)
            row["nodes_per_s"] = _throughput(fn, x)
            rows.append(row)
            print(f"{head:>12} {name:>20} {row['latency_ms']:>9.4f} {row['nodes_per_s'] / 1e6:>9.2f} "
                  f"{row['max_prob_diff']:>10.1e} {str(row['labels_equal'] and row['codes_equal']):>6}", flush=True)
    return {"rows": rows}


def _latency(fn, x, repeats: int = 2000, warmup: int = 200) -> float:
    import torch

    gen, times = torch.Generator().manual_seed(1), []
    with torch.inference_mode():
        for r in range(warmup + repeats):
            batch = x[torch.randint(x.size(0), (10,), generator=gen)]
            t0 = time.perf_counter()
            fn(batch)
            if r >= warmup:
                times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def _throughput(fn, x, batch_size: int = 8192, passes: int = 3) -> float:
    """Rows per second over all of ``x``, the best of ``passes`` passes."""
    import torch

    best = float("inf")
    with torch.inference_mode():
        for _ in range(passes):
            t0 = time.perf_counter()
            for part in x.split(batch_size):
                fn(part)
            best = min(best, time.perf_counter() - t0)
    return x.size(0) / best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.serving", description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None, help="torch and onnxruntime threads (default: every core)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    from experiments.common import report_json

    threads = args.threads or os.cpu_count() or 1
    print(f"{'student':>12} {'candidate':>20} {'10 rows ms':>9} {'M rows/s':>9} {'max diff':>10} {'equal':>6}")
    result = bench(threads)
    for row in result["rows"]:
        if "skipped" in row:
            print(f"{row['student']:>12} {row['candidate']:>20} skipped: {row['skipped']}")
    report_json(result, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
