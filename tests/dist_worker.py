"""A training job for the multi-process tests, run as ``torchrun ... tests/dist_worker.py`` (or
plain ``python`` for the single-process reference).

    dist_worker.py train OUT.json   # teacher (mini-batch) + student on a tiny graph
    dist_worker.py fail OUT.json    # rank 1 raises while rank 0 waits in a collective

Rank 0 writes ``OUT.json``: the final metrics, the flattened parameters of teacher and student,
and how far every other rank's parameters and buffers are from rank 0's.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace

import torch

from vqgraph import LossTerm, distributed
from vqgraph.data import make_csbm, make_split
from vqgraph.models import TeacherConfig
from vqgraph.models.student import StudentConfig
from vqgraph.training import TrainConfig, fit_teacher
from vqgraph.training.distill import DistillConfig, fit_student


def _flat(module: torch.nn.Module) -> torch.Tensor:
    return torch.cat([t.detach().double().reshape(-1) for t in module.state_dict().values() if t.is_floating_point()])


def _spread(module: torch.nn.Module) -> float:
    """Largest difference between any rank's parameters and buffers and rank 0's."""
    flat = _flat(module)
    me = distributed.world()
    gathered = distributed.all_gather_rows(flat.view(1, -1), [1] * me.world_size)
    return float((gathered - gathered[0]).abs().max())


class ZSquare(LossTerm):
    """A user's term: the squared norm of the student's representation, over the global batch."""

    name = "z_square"
    needs = ("z",)

    def __call__(self, inputs):
        return inputs.mean(inputs.out.z.pow(2).sum())


class ResMLP(torch.nn.Module):
    """A user's student: a residual MLP returning (logits, hidden)."""

    def __init__(self, features: int, classes: int, width: int = 24):
        super().__init__()
        self.inp, self.block, self.out = (torch.nn.Linear(features, width), torch.nn.Linear(width, width),
                                          torch.nn.Linear(width, classes))

    def forward(self, x):
        h = torch.relu(self.inp(x))
        h = h + torch.relu(self.block(h))
        return self.out(h), h


def train(out: str) -> None:
    data = make_csbm(num_nodes=600, num_edges=3000, num_classes=3, num_features=16, seed=0)
    split = make_split(data, seed=0, setting="inductive", train_per_class=40, val_per_class=30)
    # plain SAGE, every neighbour, no dropout: each rank's share of a global batch gives exactly
    # its part of the single-process gradient, so the runs can be compared parameter by parameter
    plain = TeacherConfig(conv="sage", hidden_channels=16, dropout=0.0, input_dropout=0.0, use_tokenizer=False)
    train_cfg = TrainConfig(lr=0.01, max_epochs=6, patience=None, batch_size=32, fanouts=(-1,), progress=False)
    plain_result = fit_teacher(data, split, plain, train_cfg)
    # the tokenizer under sharded mini-batches: synced codebook, dead-code restarts, sampled fan-outs
    # quantize_chunk 120: ranks quantize their subgraphs of different sizes in as many calls
    vq = TeacherConfig(conv="sage", hidden_channels=16, codebook_size=32, dead_code_threshold=2.0, quantize_chunk=120)
    vq_result = fit_teacher(data, split, vq, TrainConfig(max_epochs=4, patience=None, batch_size=25, fanouts=(5, 3), progress=False))
    # full-batch: every rank repeats the single-process step (a warning says so)
    full_result = fit_teacher(data, split, vq, TrainConfig(max_epochs=5, patience=None, progress=False))
    student_cfg = StudentConfig(hidden_channels=32, dropout=0.0)
    student_train = TrainConfig(lr=0.01, weight_decay=0.0, max_epochs=15, patience=None, batch_size=70, progress=False)
    student = fit_student(data, split, plain_result.targets, student_cfg, DistillConfig(method="glnn"), student_train)
    vq_student = fit_student(data, split, full_result.targets, student_cfg, DistillConfig(method="vqgraph"), student_train)
    # the code term alone: no loss term reaches the classifier, which must still get its (zero) gradient
    codes_only = DistillConfig(method="vqgraph", label_weight=0.0, soft_label_weight=0.0)
    tokens_student = fit_student(data, split, full_result.targets, student_cfg, codes_only, replace(student_train, max_epochs=3))
    # and the projection in no term (code weight 0): DDP is not told to look for unused parameters
    no_codes = DistillConfig(method="vqgraph", soft_token_weight=0.0)
    no_code_student = fit_student(data, split, full_result.targets, student_cfg, no_codes, replace(student_train, max_epochs=2))
    # batch norm (buffers kept equal over ranks) and slices without labelled nodes (batches of ~8
    # over 2 ranks, no soft-label term: some ranks' slices carry no loss at all)
    observed = split.observed_idx.numel()  # a last batch of at least 2 rows per rank for batch norm
    small = next(b for b in range(8, 20) if observed % b == 0 or observed % b >= 4)
    bn_student = fit_student(
        data, split, plain_result.targets, StudentConfig(hidden_channels=32, dropout=0.0, norm="batch"),
        DistillConfig(method="glnn", soft_label_weight=0.0), TrainConfig(max_epochs=2, patience=None, batch_size=small, progress=False),
    )
    # the optional terms: per-rank similarity pairs, a per-rank perturbation (the attack runs outside DDP)
    extra = DistillConfig(method="glnn", similarity_weight=1.0, adversarial_weight=0.1)
    extra_student = fit_student(data, split, plain_result.targets, StudentConfig(hidden_channels=32, norm="batch"), extra,
                                replace(student_train, max_epochs=2))
    # a user's term on the MLP, and on a user's student (widths 24 -> the teacher's 16: a projection)
    term_train = replace(student_train, max_epochs=4)
    term_student = fit_student(data, split, full_result.targets, student_cfg, DistillConfig(method="glnn"), term_train,
                               terms=[ZSquare(weight=0.1)])
    torch.manual_seed(0)
    custom = fit_student(data, split, full_result.targets, ResMLP(16, 3), DistillConfig(method="vqgraph"), term_train,
                         terms=[ZSquare(weight=0.1)])
    me = distributed.world()
    payload = {
        "world_size": me.world_size,
        "teacher_metrics": plain_result.metrics,
        "student_metrics": student.metrics,
        "vq_teacher_metrics": vq_result.metrics,
        "full_teacher_metrics": full_result.metrics,
        "vq_student_metrics": vq_student.metrics,
        "teacher_params": _flat(plain_result.model).tolist(),
        "student_params": _flat(student.model).tolist(),
        "full_teacher_state": _flat(full_result.model).tolist(),
        "vq_student_params": _flat(vq_student.model).tolist(),
        "tokens_student_params": _flat(tokens_student.model).tolist(),
        "no_code_student_params": _flat(no_code_student.model).tolist(),
        "term_history": [row["loss/z_square"] for row in term_student.history],
        "term_student_params": _flat(term_student.model).tolist(),
        "custom_history": [[row["loss/z_square"], row["loss/soft_token"]] for row in custom.history],
        "custom_student_params": _flat(custom.model).tolist(),
        "spread": {
            "teacher": _spread(plain_result.model),
            "vq_teacher": _spread(vq_result.model),
            "full_teacher": _spread(full_result.model),
            "student": _spread(student.model),
            "vq_student": _spread(vq_student.model),
            "bn_student": _spread(bn_student.model),
            "tokens_student": _spread(tokens_student.model),
            "no_code_student": _spread(no_code_student.model),
            "extra_terms_student": _spread(extra_student.model),
            "term_student": _spread(term_student.model),
            "custom_student": _spread(custom.model),
            "targets": _spread(torch.nn.ParameterList([torch.nn.Parameter(vq_result.targets.z)])),
            "student_targets": _spread(torch.nn.ParameterList([torch.nn.Parameter(full_result.targets.z)])),
        },
    }
    if me.is_main:
        with open(out, "w") as handle:
            json.dump(payload, handle)


def fail(out: str) -> None:
    me = distributed.init("cpu")
    if me.rank == 1:
        raise ValueError("rank 1 failed on purpose")
    start = time.perf_counter()
    distributed.all_reduce_sum(torch.ones(1))  # rank 1 never joins: torchrun must end this rank
    with open(out, "w") as handle:
        json.dump({"waited_s": time.perf_counter() - start}, handle)


@distributed.entry_point
def main() -> int:
    scenario, out = sys.argv[1], sys.argv[2]
    {"train": train, "fail": fail}[scenario](out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
