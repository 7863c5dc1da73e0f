"""The student's soft-code KL, forward and backward, in four forms, interleaved in one run.

    python -m experiments.bench.code_term [--nodes 20000] [--codes 2048] [--dim 64] [--batch 4096] [--repeats 12]

- ``cached``: the teacher's soft assignments stored N x K once and gathered per batch (the
  package's form until the mean-code form, while N x K fitted its cache);
- ``per-batch``: the teacher's softmax recomputed per batch (that form when N x K did not fit);
- ``mean codes``: ``sum t log t - t . l + logsumexp(l)`` with ``t . l`` from the teacher's mean
  code per node (N x D), the log-sum-exp torch's (three fresh [B, K] tensors a step);
- ``one buffer``: the same sum, its log-sum-exp :func:`vqgraph.losses.linear_logsumexp` with a
  :class:`vqgraph.losses.ScoreBuffer`, what :class:`vqgraph.training.distill.terms.SoftCodeKL`
  computes now.

Prints the median milliseconds per batch of each (the first two repeats are warm-up), checks
that the four give the same value, and times the two [B, D] x [D, K] products alone (the
scores and the representation's gradient, into reused memory): the floor of an exact code
term. Cosine codes, temperature 0.1, random representations.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from vqgraph.losses import ScoreBuffer, code_logits, linear_logsumexp


def code_term_forms(n: int, codes: int, dim: int, batch: int, tau: float = 0.1):
    """The four ``(name, form(z, idx))`` of the module docstring, on random teacher
    representations and codes, and ``products(z)``: the two products alone."""
    teacher_z, codebook = torch.randn(n, dim), torch.randn(codes, dim)
    log_t = F.log_softmax(code_logits(teacher_z, codebook, "cosine", 1 / tau), -1)
    t_all = log_t.exp()
    t_log_t = (t_all * log_t).sum(-1)
    mean_code = t_all @ (F.normalize(codebook, dim=-1) / tau)

    def cached(z, idx):
        log_s = F.log_softmax(code_logits(z, codebook, "cosine", 1 / tau), -1)
        return (t_log_t[idx] - (t_all[idx] * log_s).sum(-1)).sum()

    def per_batch(z, idx):
        with torch.no_grad():
            lt = F.log_softmax(code_logits(teacher_z[idx], codebook, "cosine", 1 / tau), -1)
            t = lt.exp()
        log_s = F.log_softmax(code_logits(z, codebook, "cosine", 1 / tau), -1)
        return ((t * lt).sum(-1) - (t * log_s).sum(-1)).sum()

    def mean_codes(z, idx):
        logits = code_logits(z, codebook, "cosine", 1 / tau)
        return (t_log_t[idx] - (F.normalize(z, dim=-1) * mean_code[idx]).sum(-1) + torch.logsumexp(logits, -1)).sum()

    weight, buffer = F.normalize(codebook, dim=-1) / tau, ScoreBuffer()

    def one_buffer(z, idx):
        unit = F.normalize(z, dim=-1)
        return (t_log_t[idx] - (unit * mean_code[idx]).sum(-1) + linear_logsumexp(unit, weight, None, buffer)).sum()

    scores = torch.empty(batch, codes)

    def products(z):  # not a loss: the two products every exact form computes
        torch.mm(z.detach(), weight.t(), out=scores)
        return scores @ weight

    forms = [("cached", cached), ("per-batch", per_batch), ("mean codes", mean_codes), ("one buffer", one_buffer)]
    return forms, products


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.bench.code_term", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20_000)
    parser.add_argument("--codes", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=64, help="code width (the default teacher's hidden width)")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=12)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    n = args.nodes
    forms, products = code_term_forms(n, args.codes, args.dim, args.batch)
    times = {name: [] for name, _ in forms}
    for rep in range(args.repeats):
        idx = torch.randperm(n)[: args.batch]
        z = torch.randn(args.batch, args.dim, requires_grad=True)
        for name, form in forms if rep % 2 else forms[::-1]:
            start = time.perf_counter()
            form(z, idx).backward()
            times[name].append(time.perf_counter() - start)
            z.grad = None
        start = time.perf_counter()
        products(z)
        times.setdefault("products", []).append(time.perf_counter() - start)
    with torch.no_grad():
        values = [float(form(z, idx)) for _, form in forms]
    assert max(values) - min(values) <= 1e-4 * abs(values[0]), f"the forms disagree: {values}"
    medians = {name: 1e3 * statistics.median(ts[2:]) for name, ts in times.items()}
    print(f"{n:,} nodes, {args.codes} codes of width {args.dim}, batch {args.batch}, {args.threads} thread(s); "
          "ms per batch, forward and backward (median): "
          + ", ".join(f"{name} {ms:.1f}" for name, ms in medians.items()))
    print(f"one buffer against mean codes: {medians['mean codes'] / medians['one buffer']:.2f}x, against cached: "
          f"{medians['cached'] / medians['one buffer']:.2f}x, against per-batch: "
          f"{medians['per-batch'] / medians['one buffer']:.2f}x; the two products alone {medians['products']:.1f} ms "
          f"({2 * 2 * args.batch * args.dim * args.codes / medians['products'] / 1e6:.0f} GFLOP/s); teacher-side "
          f"memory {4 * n * args.dim / 2**20:.0f} MiB (N x D) instead of {4 * n * args.codes / 2**20:.0f} MiB (N x K)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
