"""Fitting a graph tokenizer on a frozen teacher's representations: :func:`fit_tokenizer`.

Any teacher's targets with a representation ``z`` (the package's own, or a user's GNN through
``vqgraph.targets_from_model``) get a codebook, codes and code-space ``z`` this way, so the
student's code term works for every teacher. The epoch loop is :func:`vqgraph.training.loop.fit`
(checkpoints, determinism, the divergence guard, progress); this module gives it the
:class:`TokenizerObjective` and an evaluation-mode loss to select on. Only what the split lets
training see enters training: the observed nodes' ``z`` and features and the edges among them
(``split.observed_graph``); the hidden (inductive test) nodes are coded after training, from
their own ``z``, as the teacher codes them.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, NamedTuple, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.splits import NodeSplit, graph_and_split
from vqgraph.models.tokenizer import GraphTokenizer, TokenizerConfig
from vqgraph.targets import TeacherTargets
from vqgraph.training import loop
from vqgraph.training.checkpoint import Checkpoint
from vqgraph.training.loop import TrainConfig
from vqgraph.training.teacher import ENTROPY_ROWS, codebook_health, codebook_stats

# full batch; no weight decay (it would shrink the map toward 0, which a cosine codebook does not see);
# at most 200 epochs, stopping 20 after the lowest evaluation loss (on Cora's GCN teacher the loss
# falls from 0.039 to 0.028 in 50 epochs, then to 0.027 by epoch 300)
TOKENIZER_TRAIN = TrainConfig(lr=0.01, weight_decay=0.0, max_epochs=200, patience=20)
MONITOR = "eval/neg_loss"  # the loop keeps the highest: minus the evaluation-mode loss


class TokenizerBatch(NamedTuple):
    z: Tensor  # [B, D] the teacher's representations (frozen)
    x: Tensor  # [B, F] the nodes' features
    edge_index: Tensor  # [2, E] their edges, in row numbers


class TokenizerObjective:
    """The tokenizer's (already weighted) losses over the observed graph, one full batch per
    epoch, and the codebook's health per epoch (``codebook/...``, as the teacher logs it)."""

    terms = ("commit", "feature_recon", "edge_recon")

    def __init__(self, batch: TokenizerBatch, model: GraphTokenizer):
        config = model.config
        self.batch, self.model = batch, model
        # parameters without a gradient: the decoders of a zero weight; the map of "identity" has none
        self.find_unused_parameters = not (config.feature_recon_weight and config.edge_recon_weight)
        self._codes: Optional[Tensor] = None
        self._z: Optional[Tensor] = None
        self._usage: Optional[Tensor] = None

    def batches(self, epoch: int):
        yield self.batch

    def losses(self, net, batch: TokenizerBatch) -> Dict[str, Tensor]:
        out = net(batch.z, batch.x, batch.edge_index)
        self._codes = out.codes.detach().cpu()
        self._z = out.z[:ENTROPY_ROWS].detach().clone()
        commit, feature_recon, edge_recon = out.losses
        return {"commit": commit, "feature_recon": feature_recon, "edge_recon": edge_recon}

    def epoch_metrics(self) -> Dict[str, float]:
        """Codebook health over the epoch (:func:`~vqgraph.training.teacher.codebook_health`)."""
        restarts, self.model.restarts = self.model.restarts, 0
        metrics, self._usage = codebook_health(self._codes, self._z, self.model.codebook, restarts)
        return metrics

    def epoch_extras(self) -> Dict[str, Tensor]:
        """``codebook/usage``: the nodes each code held over the epoch (a histogram on W&B)."""
        return {"codebook/usage": self._usage} if self._usage is not None else {}


def check_tokenizer_inputs(targets: TeacherTargets, data: Data, split: NodeSplit, config: TokenizerConfig,
                           train: TrainConfig) -> None:
    """Refuse what :func:`fit_tokenizer` cannot fit, naming the argument and the fix."""
    if not isinstance(targets, TeacherTargets):
        raise TypeError(f"fit_tokenizer: targets must be a TeacherTargets, got {type(targets).__name__}")
    targets.require_z("fit_tokenizer")  # the codebook is learned on the teacher's representation
    if "tokenizer" in targets.config:  # its z is a tokenizer's map of the teacher's, not the teacher's own
        raise ValueError("fit_tokenizer: these targets were already made by fit_tokenizer (their config has a "
                         "'tokenizer' entry, and their z is that tokenizer's map of the teacher's representation): "
                         "fit the new tokenizer on the teacher's own targets, the ones you passed the first time")
    targets.check_matches(data, split)
    z = targets.z
    if z.dim() != 2 or z.size(0) != data.num_nodes or z.size(1) == 0:
        raise ValueError(f"fit_tokenizer: targets.z must be [num_nodes={data.num_nodes}, width >= 1], "
                         f"got {tuple(z.shape)}")
    if not z.is_floating_point():
        raise ValueError(f"fit_tokenizer: targets.z must be floating point, got {z.dtype}")
    observed = split.observed_idx
    bad = ~torch.isfinite(z[observed]).all(1)
    if bool(bad.any()):
        rows = observed[bad][:5].tolist()
        raise ValueError(f"fit_tokenizer: targets.z has non-finite values in {int(bad.sum())} training row(s), "
                         f"e.g. nodes {rows}: fix the teacher's representation (NaN or inf) first")
    if config.codebook_size > observed.numel():
        raise ValueError(f"fit_tokenizer: config.codebook_size={config.codebook_size} is larger than the "
                         f"{observed.numel()} nodes training sees: most codes could never be used; "
                         f"choose codebook_size <= {observed.numel()}")
    if train.batch_size is not None:
        raise ValueError(f"fit_tokenizer trains full batch (the structure loss samples the observed edges): "
                         f"leave train.batch_size unset (got {train.batch_size})")


def fit_tokenizer(
    targets: TeacherTargets,
    data: Data,
    split: NodeSplit,
    config: TokenizerConfig = TokenizerConfig(),
    train: TrainConfig = TOKENIZER_TRAIN,
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
    checkpoint: Optional[Checkpoint] = None,
) -> TeacherTargets:
    """Learn a graph tokenizer on the frozen representations ``targets.z`` and return the targets
    with its codebook.

    The tokenizer (:class:`~vqgraph.models.tokenizer.GraphTokenizer`) trains on the observed nodes
    and edges of ``split`` only, with the joint teacher's tokenizer objectives (commitment,
    feature reconstruction, sampled structure reconstruction), through the one training loop.

    Selection: after every epoch the tokenizer's loss is computed in evaluation mode (the
    codebook frozen, the structure loss's random pairs drawn the same every epoch) over the
    observed graph, and the epoch with the lowest one is kept (``eval/loss``; training stops
    ``train.patience`` epochs after it). No label is read: the codebook is unsupervised, and
    every observed node already trains it, so there are no held-out nodes to validate on; the
    evaluation-mode loss, unlike the training one, is not moved by the EMA step and the dead-code
    restarts of the same epoch, and it favours the state that fits the observed graph best
    rather than whichever state the last restart left.

    Args:
        targets: a teacher's targets with ``z`` [N, D] (any width), made for ``data`` and ``split``.
        config: :class:`~vqgraph.models.tokenizer.TokenizerConfig` (defaults: the joint teacher's).
        train: optimisation (:data:`TOKENIZER_TRAIN`: Adam, lr 0.01, no weight decay, 200 epochs,
            patience 20); full batch only.
        log: called as ``log(metrics, epoch)`` after every epoch (``codebook/...`` as the teacher's).
        checkpoint: save the training state there on its schedule and resume from it.

    Returns:
        A copy of ``targets``: ``z`` [N, code_dim] the tokenizer's code-space representation,
        ``codes`` [N] each node's nearest code (cosine), ``codebook`` [K, code_dim], ``metric``
        ``"cosine"``; ``config["tokenizer"]`` and ``config["tokenizer_train"]`` recorded; in
        ``metrics``, ``codebook/used_frac`` and ``codebook/perplexity`` of the new codes over all
        N nodes and ``tokenizer/...`` (codes used, usage, the selected epoch's loss parts).

    Raises:
        ArtifactMismatchError: the targets were made for another graph or split.
        ValueError: targets without ``z``, a non-finite ``z`` row, a codebook larger than the
            training nodes, a mini-batch ``train``.
    """
    data = graph_and_split(data, split, "fit_tokenizer")
    check_tokenizer_inputs(targets, data, split, config, train)
    distributed.init(train.device)  # torchrun: join the job (every rank computes the same full batch)
    device = distributed.local_device(train.device)
    graph = split.observed_graph(data)  # rows relabelled; graph.n_id: their global ids
    batch = TokenizerBatch(targets.z[graph.n_id].float().to(device), graph.x.float().to(device),
                           graph.edge_index.to(device))
    model, streams = loop.build(train, lambda: GraphTokenizer(batch.z.size(1), data.num_features, config), False)
    model.standardize_by(batch.z)
    objective = TokenizerObjective(batch, model)
    fitted = loop.fit(model, objective, lambda m: evaluation_loss(m, batch, train.seed), train, MONITOR, log,
                      desc="tokenizer", checkpoint=checkpoint, streams=streams)
    return _coded_targets(model, targets, config, train, fitted, device)


@torch.no_grad()
def evaluation_loss(model: GraphTokenizer, batch: TokenizerBatch, seed: int) -> Dict[str, float]:
    """The tokenizer's loss parts in evaluation mode over ``batch`` (``eval/...``), the structure
    loss's random pairs drawn from ``seed`` (the same every epoch), and :data:`MONITOR`."""
    generator = torch.Generator(device=batch.z.device).manual_seed(seed)
    losses = model(batch.z, batch.x, batch.edge_index, generator=generator).losses
    parts = {f"eval/{name}": float(value) for name, value in zip(TokenizerObjective.terms, losses)}
    total = sum(parts.values())
    return {"eval/loss": total, **parts, MONITOR: -total}


@torch.no_grad()
def _coded_targets(model: GraphTokenizer, targets: TeacherTargets, config: TokenizerConfig, train: TrainConfig,
                   fitted, device) -> TeacherTargets:
    """``targets`` with the selected tokenizer's code-space z, codes and codebook for all N nodes."""
    model.eval()
    out = model(targets.z.float().to(device))
    z, codes = out.z.cpu(), out.codes.cpu()
    best = fitted.history[fitted.best_epoch]
    stats = codebook_stats(codes, config.codebook_size)
    metrics = {k: v for k, v in targets.metrics.items() if not k.startswith(("codebook/", "tokenizer/"))}
    metrics.update({"codebook/used_frac": stats["used_frac"], "codebook/perplexity": stats["perplexity"],
                    "tokenizer/codes_used": int((torch.bincount(codes, minlength=config.codebook_size) > 0).sum()),
                    "tokenizer/used_frac": stats["used_frac"], "tokenizer/perplexity": stats["perplexity"],
                    "tokenizer/best_epoch": fitted.best_epoch, "tokenizer/epochs": len(fitted.history),
                    "tokenizer/train_s": fitted.train_seconds})
    metrics.update({f"tokenizer/{key.split('/', 1)[1]}": best[key] for key in best if key.startswith("eval/")
                    and key != MONITOR})
    recorded = {**targets.config, "tokenizer": config.to_dict(), "tokenizer_train": train.to_dict()}
    return dataclasses.replace(targets, z=z, codes=codes, codebook=model.codebook.detach().cpu().clone(),
                               metric="cosine", config=recorded, metrics=metrics)
