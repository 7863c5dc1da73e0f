"""The student's objective for the one training loop: which nodes it trains on, its batches, and
the loss terms of a batch (:mod:`.terms`), in the order the loop logs them.

``val_targets`` decides whether the student fits the validation nodes' teacher targets. Held
out (the inductive default), validation accuracy measures how the student generalises to nodes
it never trained on, as the hidden test nodes are; fitted (the transductive default, where the
student fits every test node's targets too), it measures fit to the teacher.
"""

from __future__ import annotations

from typing import Dict, Optional

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.sparse import SparseRows
from vqgraph.data.splits import NodeSplit
from vqgraph.training import loop
from vqgraph.training.distill.config import DistillConfig
from vqgraph.training.distill.terms import CodebookDistiller, DistillLosses, adversarial_perturbation, label_loss
from vqgraph.training.loop import Share, TrainConfig


class DistillObjective:
    """The student's objective for :func:`vqgraph.training.loop.fit`.

    Trains on the features of the labelled nodes (``mlp``) or of the observed nodes (``glnn``,
    ``vqgraph``; inductively the hidden test nodes never enter training, nor, by default, the
    validation nodes: :func:`fit_nodes`), ``batch_size`` nodes at a time. Each rank takes its
    slice of the same global batch; a last batch too small for batch norm (two rows per rank)
    joins the one before.
    """

    def __init__(self, data: Data, split: NodeSplit, distiller: Optional[CodebookDistiller], config: DistillConfig,
                 batch_norm: bool, train: TrainConfig, order: torch.Generator, sparse: bool = False):
        me = distributed.world()
        self.device, self.order = distributed.local_device(train.device), order
        self.distiller, self.config, self.label_weight = distiller, config, config.label_weight
        self.terms = DistillLosses._fields + config.extra_terms()
        # sparse: the features as CSR rows; a batch is then a sparse tensor (vqgraph.data.sparse)
        self.x = SparseRows.from_dense(data.x).to(self.device) if sparse else data.x.to(self.device)
        self.y = data.y.to(self.device)
        self.is_train = split.train_mask.to(self.device)
        self.fit_idx = fit_nodes(split, config).to(self.device)
        if config.adversarial_weight:  # the radius in units of the training features' root mean square
            square_mean = self.x.square_mean(self.fit_idx) if sparse else float(self.x[self.fit_idx].pow(2).mean())
            self.adversarial_eps = config.adversarial_eps * square_mean ** 0.5
        self.batch_size = train.batch_size or self.fit_idx.numel()
        self.min_rows = 2 * me.world_size if batch_norm else 1
        if min(self.fit_idx.numel(), self.batch_size) < self.min_rows:
            raise ValueError(
                f"a batch-normalised student needs at least {self.min_rows} training nodes and a batch size of at "
                f"least {self.min_rows} ({me.world_size} process(es)); got {self.fit_idx.numel()} nodes, batch size "
                f"{self.batch_size}"
            )
        # the anchor in losses() gives every parameter a gradient: DDP need not search for unused ones
        self.find_unused_parameters = False

    def batches(self, epoch: int):
        order = self.fit_idx[torch.randperm(self.fit_idx.numel(), generator=self.order).to(self.device)]
        for batch in distributed.global_batches(order, self.batch_size, self.min_rows):
            yield loop.sharded(batch, self.is_train)

    def losses(self, net, batch) -> Dict[str, Tensor]:
        idx, share = batch
        x, y, labelled = self.x[idx], self.y[idx], self.is_train[idx]
        adversarial = self.config.adversarial_weight > 0
        if adversarial:  # clean and perturbed rows in one forward pass (one DDP step); perturbations are dense
            x = x.to_dense() if x.layout == torch.sparse_csr else x
            out_all = net(torch.cat([x, x + self.perturbation(net, x, idx, y, labelled, share)]))
            out = type(out_all)(*(t[: idx.numel()] if t is not None else None for t in out_all))
        else:
            out_all = out = net(x)
        if self.distiller is not None:
            losses = self.distiller(out, idx, y, labelled, share)
        else:
            zero = out.logits.new_zeros(())
            losses = DistillLosses(label_loss(out.logits, y, labelled, share, self.label_weight), zero, zero)
        # every output takes part in the backward pass even when its terms are off (e.g. the code
        # term alone): each parameter gets a gradient, as DDP expects, and weight decay reaches all
        anchor = 0.0 * sum(t.sum() for t in out_all if t is not None)
        named = DistillLosses(losses.label + anchor, losses.soft_label, losses.soft_token)._asdict()
        if self.config.similarity_weight:
            named["similarity"] = self.distiller.similarity(out.z, idx)
        if adversarial:
            perturbed = out_all.logits[idx.numel():]
            named["adversarial"] = self.config.adversarial_weight * self._fit_loss(perturbed, idx, y, labelled, share)
        return named

    def _fit_loss(self, logits: Tensor, idx: Tensor, y: Tensor, labelled: Tensor, share: Share) -> Tensor:
        if self.distiller is not None:
            return self.distiller.fit_loss(logits, idx, y, labelled, share)
        return label_loss(logits, y, labelled, share, self.label_weight)

    def perturbation(self, net, x: Tensor, idx: Tensor, y: Tensor, labelled: Tensor, share: Share) -> Tensor:
        """The adversarial term's perturbation of ``x`` (:func:`~.terms.adversarial_perturbation`)
        against the label and soft-label losses of these rows."""
        return adversarial_perturbation(net, x, lambda logits: self._fit_loss(logits, idx, y, labelled, share),
                                        self.adversarial_eps, self.config.adversarial_steps)

    def epoch_metrics(self) -> Dict[str, float]:
        return {}


def fit_nodes(split: NodeSplit, config: DistillConfig) -> Tensor:
    """The nodes a student trains on: labelled nodes (``mlp``), else every observed node, less
    the validation nodes when ``config.fits_val`` says they are held out."""
    if config.method == "mlp":
        return split.train_idx
    if config.fits_val(split.setting):
        return split.observed_idx
    observed = split.observed_idx
    return observed[~torch.isin(observed, split.val_idx)]
