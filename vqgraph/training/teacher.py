"""Training the VQGraph teacher, full-batch or mini-batch, in either setting.

The teacher trains on ``split.observed_graph(data)``: in the inductive setting hidden nodes and
their edges are absent, so nothing about them can reach training. The epoch loop is
:func:`vqgraph.training.loop.fit`; this module gives it the :class:`TeacherObjective` (cross-
entropy on the labelled nodes plus the tokenizer's commitment and reconstruction losses) and a
validation pass. After training, the state with the best validation accuracy is restored and
the outputs of every node are computed (:func:`vqgraph.targets.node_outputs`) and made, with
the metrics and the configuration, into the targets artifact by
:func:`vqgraph.targets.targets_from_outputs`, the door every teacher's targets pass.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.sampling import NeighborBatcher
from vqgraph.data.sparse import to_csr, use_sparse
from vqgraph.data.splits import NodeSplit, graph_and_split
from vqgraph.evaluation import Evaluator
from vqgraph.losses import code_logits, entropy
from vqgraph.models.inference import infer_layerwise
from vqgraph.models.teacher import TeacherConfig, VQGraphTeacher
from vqgraph.targets import NodeOutputs, TeacherTargets, node_outputs, targets_from_outputs
from vqgraph.training import loop
from vqgraph.training.checkpoint import Checkpoint
from vqgraph.training.loop import Share, Streams, TrainConfig


class TeacherResult(NamedTuple):
    model: VQGraphTeacher
    targets: TeacherTargets
    metrics: Dict[str, float]
    history: List[Dict[str, float]]


ENTROPY_ROWS = 2048  # nodes of the last batch whose soft code assignments give codebook/assign_entropy
SOFT_TAU = 0.1  # their temperature: DistillConfig.token_temperature's default


def usage_stats(counts: Tensor) -> Dict[str, float]:
    """Fraction of codes in use and perplexity (exp of the entropy of code usage), from the
    number of nodes assigned to each code [K]."""
    codebook_size = counts.numel()
    if int(counts.sum()) == 0:
        return {"used_frac": 0.0, "perplexity": 0.0}
    counts = counts.float()
    p = counts / counts.sum()
    ent = -(p[p > 0] * p[p > 0].log()).sum()
    return {"used_frac": float((counts > 0).sum()) / codebook_size, "perplexity": float(ent.exp())}


def codebook_stats(codes: Tensor, codebook_size: int) -> Dict[str, float]:
    """:func:`usage_stats` of code indices (entries of -1, no code, are ignored)."""
    return usage_stats(torch.bincount(codes[codes >= 0], minlength=codebook_size))


def codebook_health(codes: Tensor, z: Tensor, codebook: Tensor, restarts: int) -> tuple:
    """An epoch's codebook health, as the W&B codebook dashboard reads it: ``(metrics, usage)``,
    ``usage`` [K] the nodes per code over ``codes`` (the epoch's code indices, -1 ignored; summed
    over ranks), ``metrics`` its ``codebook/used_frac`` and ``codebook/perplexity``
    (:func:`usage_stats`), the dead codes ``restarts``, and ``codebook/assign_entropy``: the mean
    entropy (nats) of the soft code assignments of the rows ``z`` at temperature :data:`SOFT_TAU`
    (cosine), what a student's code term would match."""
    used = distributed.all_reduce_sum(torch.bincount(codes[codes >= 0], minlength=codebook.size(0)))
    stats = usage_stats(used)
    with torch.no_grad():
        soft = F.softmax(code_logits(z, codebook, "cosine", 1.0 / SOFT_TAU), dim=-1)
    return {"codebook/used_frac": stats["used_frac"], "codebook/perplexity": stats["perplexity"],
            "codebook/restarts": float(restarts), "codebook/assign_entropy": float(entropy(soft))}, used


class TeacherBatch(NamedTuple):
    x: Tensor
    adj: Tensor
    edge_index: Tensor
    num_targets: Optional[int]  # seed nodes first (mini-batch); None: every row (full batch)
    rows: object  # rows of the output whose labels are y
    y: Tensor
    share: Share
    num_tokenized: Optional[int] = None  # rows the tokenizer sees (teacher.tokenize="inner"); None: all


def inner_rows(batch: Data) -> int:
    """The seeds and their 1-hop neighbours in a sampled subgraph (rows first in PyG's layout):
    the rows whose representation the classifier reads at the seeds."""
    counts = getattr(batch, "num_sampled_nodes", None)
    if counts is None:
        raise ValueError("teacher.tokenize='inner' needs the sampled subgraph's num_sampled_nodes (seeds, hop 1, ...)")
    return int(sum(counts[:2]))


def sparse_teacher(config: TeacherConfig, train: TrainConfig, x: Tensor) -> bool:
    """Whether the teacher trains on sparse features: full batch, an encoder kind that takes them
    (``ConvSpec.sparse_features``), and ``teacher.sparse_input`` (``auto``: by density)."""
    return (train.batch_size is None and config.encoder_spec.sparse_features
            and use_sparse(config.sparse_input, x))


class TeacherObjective:
    """Cross-entropy on labelled nodes + the tokenizer's (already weighted) losses.

    Full batch: the observed graph, every rank the whole of it. Mini-batch
    (``train.batch_size``): the same global batches of training seeds on every rank, each rank
    sampling the neighbourhoods of its slice of them. The cross-entropy is normalised by the
    global batch (:class:`~vqgraph.training.loop.Share`); the tokenizer terms are each rank's
    means over its own subgraph.
    """

    terms = ("ce", "commit", "feature_recon", "edge_recon")

    def __init__(self, graph: Data, train_rows: Tensor, model: VQGraphTeacher, train: TrainConfig, streams: Streams):
        config = model.config
        self.model, self.config, self.batch_size, self.streams = model, config, train.batch_size, streams
        self.device = distributed.local_device(train.device)
        self.train_rows = train_rows
        self.x, self.y, self.edge_index = (t.to(self.device) for t in (graph.x, graph.y, graph.edge_index))
        if sparse_teacher(config, train, graph.x):  # a full batch of bag-of-words features: kept sparse
            self.x = to_csr(self.x)
        self.adj = model.adjacency(graph.edge_index, graph.num_nodes).to(self.device)
        # decoders whose loss weight is 0 get no gradient
        self.find_unused_parameters = config.use_tokenizer and not (config.feature_recon_weight and config.edge_recon_weight)
        self.batcher = None
        if train.batch_size is not None:
            if config.encoder_spec.deep:
                raise ValueError(f"teacher.conv={config.conv!r} trains full-batch only (its {config.num_layers + 1} "
                                 "hops would sample most of the graph): leave train.batch_size unset")
            hops, fanouts = config.num_layers + 1, list(train.fanouts)
            self.batcher = NeighborBatcher(graph, fanouts[:hops] + [fanouts[-1]] * max(0, hops - len(fanouts)), train.batch_size)
        self._codes: List[Tensor] = []
        self._z: Optional[Tensor] = None  # up to ENTROPY_ROWS representations of the last batch
        self._usage: Optional[Tensor] = None  # [K] nodes per code over the last epoch

    def batches(self, epoch: int):
        if self.batcher is None:
            n = self.train_rows.numel()
            yield TeacherBatch(self.x, self.adj, self.edge_index, None, self.train_rows, self.y[self.train_rows], Share(n, n))
            return
        world_size = distributed.world().world_size
        order = self.train_rows[torch.randperm(self.train_rows.numel(), generator=self.streams.order)]
        batches = distributed.global_batches(order, self.batch_size, world_size)
        if batches and batches[-1].numel() < world_size:
            raise ValueError(f"{order.numel()} training seed(s) cannot be shared by {world_size} ranks")
        for batch in batches:
            mine, share = loop.sharded(batch)
            b = self.batcher.sample(mine, self.streams.sample)
            adj = self.model.adjacency(b.edge_index, b.num_nodes).to(self.device)
            x, edges, y = b.x.to(self.device), b.edge_index.to(self.device), b.y[: b.batch_size].to(self.device)
            tokenized = inner_rows(b) if self.config.tokenize == "inner" else None
            yield TeacherBatch(x, adj, edges, b.batch_size, slice(None), y, share, tokenized)

    def losses(self, net, batch: TeacherBatch) -> Dict[str, Tensor]:
        out = net(batch.x, batch.adj, batch.edge_index, batch.num_targets, num_tokenized=batch.num_tokenized)
        self._codes.append(out.codes.detach().cpu())
        self._z = out.z[:ENTROPY_ROWS].detach().clone()  # not a view of all z
        ce = F.cross_entropy(out.logits[batch.rows], batch.y, reduction="sum")
        commit, feature_recon, edge_recon = out.losses
        ce = batch.share.mean(ce, batch.share.labelled)
        return {"ce": ce, "commit": commit, "feature_recon": feature_recon, "edge_recon": edge_recon}

    def epoch_metrics(self) -> Dict[str, float]:
        """Codebook health over the epoch's batches: the share of codes used and the usage
        perplexity (counts summed over ranks), the dead codes restarted, and the mean entropy
        (nats) of the soft code assignments of the last batch's nodes at the distillation's
        default temperature (0.1): what a student's code term would match."""
        codes, self._codes = torch.cat(self._codes), []
        if not self.config.use_tokenizer:
            return {}
        restarts, self.model.restarts = self.model.restarts, 0
        metrics, self._usage = codebook_health(codes, self._z, self.model.codebook, restarts)
        return metrics

    def epoch_extras(self) -> Dict[str, Tensor]:
        """What a dashboard plots beside the scalars, not kept in the history: ``codebook/usage``,
        the number of nodes each code held over the epoch (a histogram on W&B)."""
        return {"codebook/usage": self._usage} if self._usage is not None else {}


def fit_teacher(
    data: Data,
    split: NodeSplit,
    config: TeacherConfig = TeacherConfig(),
    train: TrainConfig = TrainConfig(),
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
    checkpoint: Optional[Checkpoint] = None,
    record: Optional[Mapping[str, Any]] = None,
) -> TeacherResult:
    """Train a teacher on ``data`` with ``split`` (either setting) and compute its targets.

    Args:
        log: called as ``log(metrics, epoch)`` after every epoch (e.g. a W&B logger).
        checkpoint: save the training state there on its schedule and resume from it
            (:class:`~vqgraph.training.checkpoint.Checkpoint`; ``train.checkpoint(path, identity)``).
        record: entries added to the targets' ``config`` after ``teacher`` and ``train`` (for
            example ``{"data": ...}``, how the graph was prepared), saved with the artifact.

    Returns:
        TeacherResult(model with the best-validation state, targets for all N nodes by global
        id, final metrics, per-epoch history).
    """
    data = graph_and_split(data, split, "fit_teacher")
    me = distributed.init(train.device)  # torchrun: join the job; else a world of one
    sharded = train.batch_size is not None and me.world_size > 1
    if me.world_size > 1 and train.batch_size is None and me.is_main:
        warnings.warn(
            f"full-batch teacher training under {me.world_size} processes repeats the same step on every "
            "rank; set train.batch_size to shard the seed nodes over ranks"
        )
    agree = distributed.max_over_ranks if sharded else None  # a synced codebook: as many quantizer calls per rank
    model, streams = loop.build(train, lambda: VQGraphTeacher(data.num_features, data.num_classes, config, agree), sharded)
    graph = split.observed_graph(data)
    objective = TeacherObjective(graph, split.to_local(split.train_idx), model, train, streams)
    selection = split.for_teacher()  # the teacher's validation nodes (all of them unless halved)
    evaluator = Evaluator(objective.y, {"train": objective.train_rows, "val": split.to_local(selection.val_idx)})
    eval_rows = distributed.row_ranges(graph.num_nodes, me.world_size)[me.rank]

    def evaluate(model: VQGraphTeacher) -> Dict[str, float]:
        out = infer_layerwise(model, objective.x, objective.adj, skip_tokenizer=True, all_rows=False)
        return evaluator(out.logits, eval_rows)

    fitted = loop.fit(model, objective, evaluate, train, log=log, desc=f"teacher {config.conv}", checkpoint=checkpoint,
                      streams=streams)
    outputs = node_outputs(model, data, split, graph)
    metrics = teacher_metrics(outputs, config, data, split)
    metrics.update(best_epoch=fitted.best_epoch, epochs=len(fitted.history), train_s=fitted.train_seconds)
    metrics["epoch_s"] = fitted.train_seconds / len(fitted.history)
    recorded = {"teacher": config.to_dict(), "train": train.to_dict(), **(record or {})}
    codebook = model.codebook.detach().cpu().clone() if model.quantizer is not None else None
    targets = targets_from_outputs(outputs.logits, data, split, outputs.z, codes=outputs.codes, codebook=codebook,
                                   metric="cosine", config=recorded, metrics=metrics)
    return TeacherResult(model, targets, metrics, fitted.history)


def teacher_metrics(outputs: NodeOutputs, config: TeacherConfig, data: Data, split: NodeSplit) -> Dict[str, float]:
    """Accuracy of the teacher's logits (all N nodes: a local computation) on every evaluation set
    of ``split`` (:meth:`~vqgraph.evaluation.Evaluator.for_teacher`; inductive: ``test_prod/acc``
    too), plus codebook stats. With validation halved, ``val/acc`` is on the teacher's half and
    ``val_student/acc`` on the student's."""
    metrics = Evaluator.for_teacher(data.y, split)(outputs.logits)
    if config.use_tokenizer:
        stats = codebook_stats(outputs.codes, config.codebook_size)
        metrics["codebook/used_frac"], metrics["codebook/perplexity"] = stats["used_frac"], stats["perplexity"]
    return metrics
