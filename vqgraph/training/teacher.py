"""Training the VQGraph teacher, full-batch or mini-batch, in either setting through one loop.

The teacher trains on ``split.observed_graph(data)``: in the inductive setting hidden nodes and
their edges are absent, so nothing about them can reach training. After training, the state
with the best validation accuracy is restored; observed nodes are encoded on the observed
graph and hidden nodes on the full graph, and every output is stored by global node id.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Callable, Dict, List, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data
from tqdm.auto import tqdm

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
    return float((logits.argmax(-1) == y).float().mean()) if y.numel() else float("nan")


def codebook_stats(codes: Tensor, codebook_size: int) -> Dict[str, float]:
    """Fraction of codes in use and perplexity (exp of the entropy of code usage)."""
    codes = codes[codes >= 0]
    if codes.numel() == 0:
        return {"used_frac": 0.0, "perplexity": 0.0}
    counts = torch.bincount(codes, minlength=codebook_size).float()
    p = counts / counts.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used_frac": float((counts > 0).sum()) / codebook_size, "perplexity": float(ent.exp())}


def _loss(out, y, train_rows) -> tuple:
    ce = F.cross_entropy(out.logits[train_rows], y)
    total = ce + out.losses.commitment + out.losses.feature_recon + out.losses.edge_recon
    return total, ce


@torch.no_grad()
def _infer(model: VQGraphTeacher, graph: Data, adj) -> tuple:
    model.eval()
    out = model(graph.x, adj)
    return out.logits, out.z, out.codes


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
    torch.manual_seed(train.seed)
    gen = torch.Generator().manual_seed(train.seed)
    device = torch.device(train.device)
    graph = split.observed_graph(data)
    train_rows = split.to_local(split.train_idx)
    val_rows = split.to_local(split.val_idx)
    model = VQGraphTeacher(data.num_features, data.num_classes, config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)
    adj = prepare_adjacency(config.conv, graph.edge_index, graph.num_nodes)
    x, y, edge_index = graph.x.to(device), graph.y.to(device), graph.edge_index.to(device)
    adj = adj.to(device)
    batcher = None
    if train.batch_size is not None:
        hops = config.num_layers + 1
        fanouts = list(train.fanouts)[:hops] + [list(train.fanouts)[-1]] * max(0, hops - len(train.fanouts))
        batcher = NeighborBatcher(graph, fanouts, train.batch_size)

    best = BestCheckpoint("val/acc", train.patience)
    history: List[Dict[str, float]] = []
    start = time.perf_counter()
    bar = tqdm(range(train.max_epochs), desc=f"teacher {config.conv}", disable=not train.progress, leave=False)
    for epoch in bar:
        model.train()
        sums = {"train/loss": 0.0, "loss/ce": 0.0, "loss/commit": 0.0, "loss/feature_recon": 0.0, "loss/edge_recon": 0.0}
        seen_codes = []
        steps = 0
        if batcher is None:
            batches = [(x, adj, edge_index, None, train_rows, y[train_rows])]
        else:
            batches = (
                (
                    b.x.to(device),
                    prepare_adjacency(config.conv, b.edge_index, b.num_nodes).to(device),
                    b.edge_index.to(device),
                    b.batch_size,
                    slice(None),
                    b.y[: b.batch_size].to(device),
                )
                for b in batcher(train_rows, shuffle=True, generator=gen)
            )
        for bx, badj, bedges, num_targets, rows, by in batches:
            out = model(bx, badj, bedges, num_targets)
            total, ce = _loss(out, by, rows)
            opt.zero_grad()
            total.backward()
            opt.step()
            steps += 1
            for key, value in zip(sums, (total, ce, *out.losses)):
                sums[key] += float(value.detach())
            seen_codes.append(out.codes.detach().cpu())
        metrics = {key: value / steps for key, value in sums.items()}
        model.eval()
        with torch.no_grad():
            logits = model(x, adj, skip_tokenizer=True).logits
        metrics["train/acc"] = accuracy(logits[train_rows], y[train_rows])
        metrics["val/acc"] = accuracy(logits[val_rows], y[val_rows])
        if model.quantizer is not None:
            stats = codebook_stats(torch.cat(seen_codes), config.codebook_size)
            metrics["codebook/used_frac"], metrics["codebook/perplexity"] = stats["used_frac"], stats["perplexity"]
        if end_epoch(epoch, metrics, history, best, model, log, bar):
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
    hidden (inductive test) nodes from the full graph."""
    device = next(model.parameters()).device
    kind = model.config.conv
    graph = split.observed_graph(data)
    adj = prepare_adjacency(kind, graph.edge_index, graph.num_nodes).to(device)
    logits_o, z_o, codes_o = _infer(model, Data(x=graph.x.to(device)), adj)
    n = data.num_nodes
    logits = torch.empty(n, logits_o.size(1))
    z = torch.empty(n, z_o.size(1))
    codes = torch.empty(n, dtype=torch.long)
    logits[graph.n_id], z[graph.n_id], codes[graph.n_id] = logits_o.cpu(), z_o.cpu(), codes_o.cpu()
    hidden = split.test_ind_idx
    if hidden.numel():
        adj_full = prepare_adjacency(kind, data.edge_index, n).to(device)
        logits_f, z_f, codes_f = _infer(model, Data(x=data.x.to(device)), adj_full)
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
