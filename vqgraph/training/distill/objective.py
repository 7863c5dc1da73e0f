"""The student's objective for the one training loop: which nodes it trains on, its batches, and
the loss terms of a batch (:mod:`.base`: built-in and a user's, in the order the loop logs them).

``val_targets`` decides whether the student fits the validation nodes' teacher targets. Held
out (the inductive default), validation accuracy measures how the student generalises to nodes
it never trained on, as the hidden test nodes are; fitted (the transductive default, where the
student fits every test node's targets too), it measures fit to the teacher.
"""

from __future__ import annotations

from typing import Callable, Dict, Optional, Sequence

import torch
from torch import Tensor
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.sparse import SparseRows
from vqgraph.data.splits import NodeSplit
from vqgraph.training import loop
from vqgraph.training.distill.base import LossTerm, TeacherSide, TermContext, TermInputs, check_value
from vqgraph.training.distill.config import DistillConfig
from vqgraph.training.loop import TrainConfig


class DistillObjective:
    """The student's objective for :func:`vqgraph.training.loop.fit`.

    Trains on the features of the labelled nodes (``mlp``) or of the observed nodes (``glnn``,
    ``vqgraph``; inductively the hidden test nodes never enter training, nor, by default, the
    validation nodes: :func:`fit_nodes`), ``batch_size`` nodes at a time. Each rank takes its
    slice of the same global batch; a last batch too small for batch norm (two rows per rank)
    joins the one before. The ``terms`` (the built-in ones of ``config``, then a user's) are set
    up here, in order, and summed in that order every batch; ``user`` counts the trailing user
    terms, whose outputs are checked (a scalar; finite on the first batch). ``check(out, rows)``
    checks the student's outputs on the first batch (a user's module).
    """

    def __init__(self, data: Data, split: NodeSplit, teacher: Optional[TeacherSide], config: DistillConfig,
                 terms: Sequence[LossTerm], batch_norm: bool, train: TrainConfig, order: torch.Generator,
                 sparse: bool = False, targets=None, user: int = 0, check: Optional[Callable] = None):
        me = distributed.world()
        self.device, self.order, self.teacher = distributed.local_device(train.device), order, teacher
        self.loss_terms, self.user, self.check, self.first = list(terms), user, check, True
        self.terms = tuple(term.name for term in self.loss_terms)
        self.augmenting = [term for term in self.loss_terms if term.weight and term.augments]
        # sparse: the features as CSR rows; a batch is then a sparse tensor (vqgraph.data.sparse)
        self.x = SparseRows.from_dense(data.x).to(self.device) if sparse else data.x.to(self.device)
        self.y = data.y.to(self.device)
        self.is_train = split.train_mask.to(self.device)
        self.seen_y = torch.where(self.is_train, self.y, torch.full_like(self.y, -1))  # what the terms may read
        self.fit_idx = fit_nodes(split, config).to(self.device)
        self.batch_size = train.batch_size or self.fit_idx.numel()
        self.min_rows = 2 * me.world_size if batch_norm else 1
        if min(self.fit_idx.numel(), self.batch_size) < self.min_rows:
            raise ValueError(
                f"a batch-normalised student needs at least {self.min_rows} training nodes and a batch size of at "
                f"least {self.min_rows} ({me.world_size} process(es)); got {self.fit_idx.numel()} nodes, batch size "
                f"{self.batch_size}"
            )
        self.context = TermContext(data, split, self.fit_idx, self.x, targets, teacher, self.device)
        for term in self.loss_terms:
            term.setup(self.context)
        # the anchor in losses() gives every output's parameters a gradient: DDP need not search for
        # unused ones, unless a user's module has parameters that reach no output (check given)
        self.find_unused_parameters = check is not None

    def batches(self, epoch: int):
        order = self.fit_idx[torch.randperm(self.fit_idx.numel(), generator=self.order).to(self.device)]
        for batch in distributed.global_batches(order, self.batch_size, self.min_rows):
            yield loop.sharded(batch, self.is_train)

    def losses(self, net, batch) -> Dict[str, Tensor]:
        idx, share = batch
        inputs = TermInputs(idx, self.x[idx], self.seen_y[idx], self.is_train[idx], share, self.teacher)
        extra = []
        if self.augmenting:  # the batch and the added rows in one forward pass (one DDP step); added rows are dense
            x = inputs.x.to_dense() if inputs.x.layout == torch.sparse_csr else inputs.x
            inputs = inputs.replace(x=x)
            extra = [term.augment(net, inputs) for term in self.augmenting]
            out_all = net(torch.cat([x, *extra]))
            out = type(out_all)(*(t[: idx.numel()] if t is not None else None for t in out_all))
        else:
            out_all = out = net(inputs.x)
        if self.first and self.check is not None:
            self.check(out, idx.numel())
        inputs = inputs.replace(out=out)
        named = self._terms(inputs, out_all, [e.size(0) for e in extra])
        # every output takes part in the backward pass even when its terms are off (e.g. the code
        # term alone): each parameter gets a gradient, as DDP expects, and weight decay reaches all
        anchor = 0.0 * sum(t.sum() for t in out_all if t is not None)
        named[self.terms[0]] = named[self.terms[0]] + anchor
        self.first = False
        return named

    def _terms(self, inputs: TermInputs, out_all, added: Sequence[int]) -> Dict[str, Tensor]:
        """Each term's weighted value on ``inputs`` (0 for a term of weight 0), in order; an
        augmenting term sees the outputs of its ``added`` rows, which follow the batch's in ``out_all``."""
        named, start, added = {}, inputs.idx.numel(), list(added)
        for i, term in enumerate(self.loss_terms):
            if not term.weight:
                named[term.name] = inputs.out.logits.new_zeros(())
                continue
            seen = inputs
            if term.augments:
                stop = start + added.pop(0)
                seen = inputs.replace(augmented=type(out_all)(*(t[start:stop] if t is not None else None
                                                                  for t in out_all)))
                start = stop
            value = term(seen)
            if i >= len(self.loss_terms) - self.user:
                value = check_value(term, value, self.first)
            named[term.name] = term.weight * value
        return named

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
