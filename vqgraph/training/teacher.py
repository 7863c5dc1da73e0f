"""Training the VQGraph teacher, full-batch or mini-batch, in either setting through one loop.

The teacher trains on ``split.observed_graph(data)``: in the inductive setting hidden nodes and
their edges are absent, so nothing about them can reach training. After training, the state
with the best validation accuracy is restored; observed nodes are encoded on the observed
graph and hidden nodes on the full graph, and every output is stored by global node id.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from tqdm.auto import tqdm

from vqgraph import distributed
from vqgraph.artifacts import TeacherTargets, graph_fingerprint
from vqgraph.data.splits import NodeSplit
from vqgraph.models.encoders import prepare_adjacency
from vqgraph.models.teacher import TeacherConfig, VQGraphTeacher
from vqgraph.sampling import NeighborBatcher
from vqgraph.training.selection import BestCheckpoint, end_epoch


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by teacher and student training."""

    lr: float = 0.01
    weight_decay: float = 5e-4
    max_epochs: int = 500
    patience: Optional[int] = 100  # epochs without a better val/acc before stopping (None: never)
    batch_size: Optional[int] = None  # None: full-batch; else seed nodes per mini-batch
    fanouts: Sequence[int] = (15, 10)  # neighbours per hop in mini-batch mode (last value repeats)
    device: str = "cpu"
    seed: int = 0
    progress: bool = True  # tqdm progress bar over epochs

    def __post_init__(self):
        if self.lr <= 0 or self.max_epochs < 1:
            raise ValueError(f"need lr > 0 and max_epochs >= 1, got lr={self.lr}, max_epochs={self.max_epochs}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if not self.fanouts or not all(isinstance(f, int) and f >= -1 and f != 0 for f in self.fanouts):
            raise ValueError(f"fanouts must be a non-empty list of positive ints (or -1: all), got {self.fanouts!r}")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["fanouts"] = list(self.fanouts)
        return out


class TeacherResult(NamedTuple):
    model: VQGraphTeacher
    targets: TeacherTargets
    metrics: Dict[str, float]
    history: List[Dict[str, float]]


def accuracy(logits: Tensor, y: Tensor) -> float:
    """Fraction of rows whose arg-max is ``y`` (correct / total in double, NaN for no rows)."""
    return int((logits.argmax(-1) == y).sum()) / y.numel() if y.numel() else float("nan")


def sharded_accuracies(pred: Tensor, rows: range, y: Tensor, sets: Dict[str, Tensor]) -> Dict[str, float]:
    """``<set>/acc`` for every index set of ``sets`` when this rank holds the predicted classes
    ``pred`` of the rows ``rows`` only: correct counts are summed over ranks (one all-reduce)."""
    counts = []
    for idx in sets.values():
        idx = idx.to(pred.device)
        mine = idx[(idx >= rows.start) & (idx < rows.stop)]
        correct = (pred[mine - rows.start] == y[mine].to(pred.device)).sum()
        counts.append(torch.stack([correct.double().cpu(), torch.tensor(float(mine.numel()), dtype=torch.float64)]))
    totals = distributed.all_reduce_sum(torch.stack(counts)) if counts else torch.zeros(0, 2)
    return {
        f"{key}/acc": float(c / n) if n > 0 else float("nan") for key, (c, n) in zip(sets, totals.tolist())
    }


def codebook_stats(codes: Tensor, codebook_size: int) -> Dict[str, float]:
    """Fraction of codes in use and perplexity (exp of the entropy of code usage)."""
    return usage_stats(torch.bincount(codes[codes >= 0], minlength=codebook_size))


def usage_stats(counts: Tensor) -> Dict[str, float]:
    """:func:`codebook_stats` from the number of nodes assigned to each code [K]."""
    codebook_size = counts.numel()
    if int(counts.sum()) == 0:
        return {"used_frac": 0.0, "perplexity": 0.0}
    counts = counts.float()
    p = counts / counts.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used_frac": float((counts > 0).sum()) / codebook_size, "perplexity": float(ent.exp())}


def _loss(out, y, train_rows, scale: float = 1.0) -> tuple:
    """Total loss and its cross-entropy; ``scale`` weights the cross-entropy of a rank's share of
    a global batch so that DDP's mean over ranks is the global batch's mean."""
    ce = F.cross_entropy(out.logits[train_rows], y) * scale  # x 1.0 is exact: one process is unchanged
    total = ce + out.losses.commitment + out.losses.feature_recon + out.losses.edge_recon
    return total, ce


def _sharded_batches(batcher: NeighborBatcher, seeds: Tensor, batch_size: int, gen, sample_gen, conv: str, device):
    """One epoch of mini-batches: the same global batches on every rank (``gen``), each rank
    sampling the neighbourhoods of its slice of them (``sample_gen``). A last batch with fewer
    seeds than ranks joins the one before, so that no rank is ever left without seeds."""
    me = distributed.world()
    batches = distributed.global_batches(seeds[torch.randperm(seeds.numel(), generator=gen)], batch_size, me.world_size)
    if batches and batches[-1].numel() < me.world_size:
        raise ValueError(f"{seeds.numel()} training seed(s) cannot be shared by {me.world_size} ranks")
    for batch in batches:
        mine = distributed.shard(batch, me.rank, me.world_size)
        b = batcher.sample(mine, sample_gen)
        scale = mine.numel() * me.world_size / batch.numel()
        yield (
            b.x.to(device),
            prepare_adjacency(conv, b.edge_index, b.num_nodes).to(device),
            b.edge_index.to(device),
            b.batch_size,
            slice(None),
            b.y[: b.batch_size].to(device),
            scale,
        )


def fit_teacher(
    data: Data,
    split: NodeSplit,
    config: TeacherConfig = TeacherConfig(),
    train: TrainConfig = TrainConfig(),
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
) -> TeacherResult:
    """Train a teacher on ``data`` with ``split`` (either setting) and compute its targets.

    Args:
        log: called as ``log(metrics, epoch)`` after every epoch (e.g. a W&B logger).

    Returns:
        TeacherResult(model with the best-validation state, targets for all N nodes by global
        id, final metrics, per-epoch history).
    """
    split.check_graph(data)
    me = distributed.init(train.device)  # torchrun: join the job; else a world of one
    sharded = train.batch_size is not None and me.world_size > 1
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(train.seed)  # the epoch permutation: identical on every rank
    device = distributed.local_device(train.device)
    graph = split.observed_graph(data)
    train_rows = split.to_local(split.train_idx)
    val_rows = split.to_local(split.val_idx)
    model = VQGraphTeacher(data.num_features, data.num_classes, config, sync_codebook=sharded).to(device)
    # full-batch: every rank runs the same step (same seed, same dropout), so the job equals one
    # process; mini-batch: ranks see different seeds and draw their own dropout masks and samples
    sample_gen = gen
    if sharded and me.rank > 0:
        torch.manual_seed(train.seed + 7919 * me.rank)
        sample_gen = torch.Generator().manual_seed(train.seed + 7919 * me.rank)
    elif sharded:
        sample_gen = torch.Generator().manual_seed(train.seed + 104729)
    if me.world_size > 1 and train.batch_size is None and me.is_main:
        warnings.warn(
            f"full-batch teacher training under {me.world_size} processes repeats the same step on every "
            "rank; set train.batch_size to shard the seed nodes over ranks"
        )
    # decoders whose loss weight is 0 get no gradient: DDP must be told to expect that
    net = distributed.wrap_ddp(model, config.use_tokenizer and not (config.feature_recon_weight and config.edge_recon_weight))
    opt = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    adj = prepare_adjacency(config.conv, graph.edge_index, graph.num_nodes)
    x, y, edge_index = graph.x.to(device), graph.y.to(device), graph.edge_index.to(device)
    adj = adj.to(device)
    batcher = None
    if train.batch_size is not None:
        hops = config.num_layers + 1
        fanouts = list(train.fanouts)[:hops] + [list(train.fanouts)[-1]] * max(0, hops - len(train.fanouts))
        batcher = NeighborBatcher(graph, fanouts, train.batch_size)
    eval_rows = distributed.row_ranges(graph.num_nodes, me.world_size)[me.rank]
    eval_sets = {"train": train_rows, "val": val_rows}

    best = BestCheckpoint("val/acc", train.patience)
    history: List[Dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(
        range(train.max_epochs), desc=f"teacher {config.conv}", disable=not (train.progress and me.is_main), leave=False
    )
    for epoch in bar:
        net.train()
        sums = torch.zeros(5, dtype=torch.float64)
        seen_codes = []
        steps = 0
        if batcher is None:
            batches = [(x, adj, edge_index, None, train_rows, y[train_rows], 1.0)]
        else:
            batches = _sharded_batches(batcher, train_rows, train.batch_size, gen, sample_gen, config.conv, device)
        for bx, badj, bedges, num_targets, rows, by, scale in batches:
            out = net(bx, badj, bedges, num_targets)
            total, ce = _loss(out, by, rows, scale)
            opt.zero_grad()
            total.backward()
            opt.step()
            steps += 1
            sums += torch.stack([v.detach().double().cpu() for v in (total, ce, *out.losses)])
            seen_codes.append(out.codes.detach().cpu())
        distributed.broadcast_buffers(model)  # rank 0's codebook and running statistics everywhere
        sums = distributed.all_reduce_sum(sums) / me.world_size
        keys = ("train/loss", "loss/ce", "loss/commit", "loss/feature_recon", "loss/edge_recon")
        metrics = {key: float(value) / steps for key, value in zip(keys, sums)}
        model.eval()
        logits = model.infer_layerwise(x, adj, skip_tokenizer=True, all_rows=False).logits
        metrics.update(sharded_accuracies(logits.argmax(-1), eval_rows, y, eval_sets))
        if model.quantizer is not None:
            codes = torch.cat(seen_codes)
            used = distributed.all_reduce_sum(torch.bincount(codes[codes >= 0], minlength=config.codebook_size))
            stats = usage_stats(used)  # code usage over the global batches
            metrics["codebook/used_frac"], metrics["codebook/perplexity"] = stats["used_frac"], stats["perplexity"]
        if end_epoch(epoch, metrics, history, best, model, log if me.is_main else None, bar):
            break
    train_seconds = time.perf_counter() - start
    model.load_state_dict(best.best_state)
    targets = compute_targets(model, data, split)
    metrics = evaluate_targets(targets, data, split)
    metrics.update({"best_epoch": best.best_epoch, "epochs": len(history), "train_s": train_seconds})
    metrics["epoch_s"] = train_seconds / len(history)
    targets.metrics = metrics
    targets.config = {"teacher": config.to_dict(), "train": train.to_dict()}
    targets.dataset = str(getattr(data, "name", ""))
    return TeacherResult(model, targets, metrics, history)


@torch.no_grad()
def compute_targets(model: VQGraphTeacher, data: Data, split: NodeSplit) -> TeacherTargets:
    """Teacher outputs for every node by global id: observed nodes from the observed graph,
    hidden (inductive test) nodes from the full graph. Layer-wise, sharded over ranks
    (:meth:`VQGraphTeacher.infer_layerwise`); every rank returns all N rows."""
    device = next(model.parameters()).device
    kind = model.config.conv
    graph = split.observed_graph(data)
    adj = prepare_adjacency(kind, graph.edge_index, graph.num_nodes).to(device)
    model.eval()
    logits_o, z_o, codes_o, _ = model.infer_layerwise(graph.x.to(device), adj)
    n = data.num_nodes
    logits = torch.empty(n, logits_o.size(1))
    z = torch.empty(n, z_o.size(1))
    codes = torch.empty(n, dtype=torch.long)
    logits[graph.n_id], z[graph.n_id], codes[graph.n_id] = logits_o.cpu(), z_o.cpu(), codes_o.cpu()
    hidden = split.test_ind_idx
    if hidden.numel():
        adj_full = prepare_adjacency(kind, data.edge_index, n).to(device)
        logits_f, z_f, codes_f, _ = model.infer_layerwise(data.x.to(device), adj_full)
        logits[hidden], z[hidden], codes[hidden] = logits_f[hidden].cpu(), z_f[hidden].cpu(), codes_f[hidden].cpu()
    codebook = model.codebook.detach().cpu().clone() if model.quantizer is not None else None
    return TeacherTargets(
        logits=logits,
        z=z,
        codes=codes,
        codebook=codebook,
        metric="cosine",
        graph_fingerprint=graph_fingerprint(data),
        split_fingerprint=split.fingerprint(),
        setting=split.setting.value,
    )


def evaluate_targets(targets: TeacherTargets, data: Data, split: NodeSplit) -> Dict[str, float]:
    """Accuracy of the teacher's logits on every evaluation set of ``split``, plus codebook stats."""
    metrics = {f"{key}/acc": accuracy(targets.logits[idx], data.y[idx]) for key, idx in split.index_dict().items()}
    if targets.codebook is not None:
        stats = codebook_stats(targets.codes, targets.codebook.size(0))
        metrics["codebook/used_frac"], metrics["codebook/perplexity"] = stats["used_frac"], stats["perplexity"]
    return metrics
