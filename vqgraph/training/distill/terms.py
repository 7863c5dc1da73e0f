"""The built-in loss terms of distillation, each a :class:`~.base.LossTerm` (the mechanism a user's
term goes through too), built from :class:`~.config.DistillConfig` by
:meth:`~.config.DistillConfig.loss_terms` in this order, which is the order of their sum:

* ``label`` (:class:`LabelCE`): cross-entropy on the labelled training nodes in the batch;
* ``soft_label`` (:class:`SoftLabelKL`): KL(teacher soft labels || student), teacher logits
  divided by ``teacher_temperature``, by default the temperature that calibrates the teacher on
  validation nodes (temperature scaling): a flat target transfers little. Its setup smooths the
  soft labels over the graph when asked (:class:`Smoothing`): a transform of the targets, not a
  batch term, so it replaces ``context.soft_labels`` and every later term reads the smoothed ones;
* ``soft_token`` (``vqgraph`` only), the code term, in the form ``code_target`` names
  (:data:`CODE_TERMS`):

  - ``soft`` (:class:`SoftCodeKL`, the paper's): ``tau^2 * KL(softmax(t/tau) || softmax(s/tau))``
    where ``t = code_logits(teacher z[idx], codebook)`` and ``s = code_logits(student z, codebook)``:
    the same similarity on both sides, the frozen teacher codebook, rows aligned by global id.
    The logits are affine in the codes (:func:`vqgraph.losses.code_map`), so the teacher's side
    enters through its mean code per node (N x D, computed once): nothing N x K is built.
  - ``index`` (:class:`IndexCodeCE`): ``tau^2 * CE(softmax(s/tau), teacher code)``, the
    teacher's nearest code as a hard target (its soft assignment is nearly flat).
  - ``class`` (:class:`ClassMixKL`): ``KL(P[teacher code] || softmax(student logits))``, where
    ``P[k]`` is the mean teacher soft label of the training nodes the teacher assigns to code
    ``k`` (smoothed towards their overall mean by one node's weight).

Optional terms, present only with a non-zero weight, for any distilled method (training only):

* ``similarity`` (:class:`RepresentationSimilarity`, NOSMOG's representation-similarity
  distillation): the mean squared difference between the cosine similarities of the student's
  projected representations and of the teacher's ``z`` over pairs of batch rows;
* ``adversarial`` (:class:`AdversarialFeatures`, NOSMOG's adversarial feature augmentation): the
  label and soft-label terms again, on features perturbed by a few steps of projected gradient
  ascent (its :meth:`~.base.LossTerm.augment` adds the perturbed rows to the batch's forward pass);
* ``neighbour`` (:class:`NeighbourAgreement`, neighbourhood alignment in the spirit of Graph-MLP
  and G2MLP): the student's class distributions on a node and on one of its observed neighbours,
  drawn anew each batch, pulled together (the graph is read in training only).

``label``, ``soft_label`` and ``soft_token`` are always in the list (weight 0 when the method does
not use them, logged as 0), so every method logs the same three names.
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.nn.parallel import DistributedDataParallel

from vqgraph.losses import ScoreBuffer, code_logits, code_map, linear_logsumexp
from vqgraph.targets import smooth_soft_labels
from vqgraph.training.distill.base import LossTerm, TeacherSide, TermContext, TermInputs


class LabelCE(LossTerm):
    """``label``: cross-entropy on the labelled rows, averaged over the labelled rows of the global batch."""

    name = "label"

    def __call__(self, inputs: TermInputs) -> Tensor:
        logits, labelled = inputs.out.logits, inputs.labelled
        return inputs.mean(F.cross_entropy(logits[labelled], inputs.y[labelled], reduction="sum"), "labelled")


class Smoothing(NamedTuple):
    """KRD-style neighbour targets (:func:`vqgraph.targets.smooth_soft_labels`): ``hops`` rounds of
    mixing each node's soft labels with its reliable neighbours' (weight ``alpha``) over the
    observed graph; with ``labels`` the training nodes enter as their one-hot labels."""

    hops: int
    alpha: float
    labels: bool


class SoftLabelKL(LossTerm):
    """``soft_label``: KL(teacher soft labels || softmax(logits)), averaged over the rows of the
    global batch. ``smoothing``: its setup replaces the soft labels by smoothed ones (whatever
    the weight: the code term's class mixes read them too)."""

    name = "soft_label"
    needs = ("soft_labels",)

    def __init__(self, weight: float = 1.0, smoothing: Optional[Smoothing] = None):
        super().__init__(weight)
        self.smoothing = smoothing

    def setup(self, context: TermContext) -> None:
        if self.smoothing is None or context.teacher is None:
            return
        teacher, split, data = context.teacher, context.split, context.data
        probs = F.softmax(teacher.logits.cpu().float() / teacher.temperature, dim=-1)  # after any transform of the targets
        context.soft_labels = smooth_soft_labels(
            probs, split.observed_edges(data.edge_index), self.smoothing.hops, self.smoothing.alpha,
            data.y if self.smoothing.labels else None, split.train_mask)

    def __call__(self, inputs: TermInputs) -> Tensor:
        kl = F.kl_div(F.log_softmax(inputs.out.logits, dim=-1), inputs.soft_labels, reduction="sum")
        return inputs.mean(kl)


class CodeTerm(LossTerm):
    """The code term (``soft_token``) in any of its forms (:data:`CODE_TERMS`), built as
    ``form(weight, tau)`` with ``tau`` the temperature of the code softmaxes. Off (weight 0, as
    for ``glnn`` and ``mlp``), its setup prepares nothing: the targets may have no codebook."""

    name = "soft_token"
    needs = ("z", "codebook")

    def __init__(self, weight: float = 1.0, tau: float = 0.1):
        super().__init__(weight)
        self.tau = tau


class SoftCodeKL(CodeTerm):
    """The ``soft`` code term: ``tau^2 KL(t || softmax(l))``, ``l = code_logits(z, codebook) / tau``,
    ``t`` the teacher's soft assignment, from the teacher's moments (computed once, in setup)."""

    def setup(self, context: TermContext) -> None:
        if not self.weight:
            return
        self.teacher = teacher = context.teacher
        chunks = torch.arange(teacher.num_nodes, device=teacher.z.device).split(8192)
        self.weights, self.bias = code_map(teacher.codebook, teacher.metric, 1.0 / self.tau)
        self.moments = tuple(torch.cat(p) for p in zip(*(self._moments(c) for c in chunks)))
        self._scores = ScoreBuffer()  # the student's [B, K] code scores, one buffer for every step

    @torch.no_grad()
    def _moments(self, idx: Tensor):
        """What the KL needs of the teacher's soft assignments ``t`` of nodes ``idx``: the code
        logits are affine in the codes, so ``t . l`` for any student logits ``l`` needs only
        ``t``'s mean code (and, for ``euclidean``, its mean squared code norm). Returns
        ``(sum t log t [B], mean code [B, D], mean squared norm [B])``, the mean code of
        ``cosine`` taken over the scaled unit codes."""
        t, t_log_t = self.teacher.soft_codes(idx, self.tau)
        codebook = self.teacher.codebook
        if self.teacher.metric == "cosine":
            return t_log_t, t @ self.weights, t.new_zeros(t.size(0))
        return t_log_t, t @ codebook, t @ codebook.pow(2).sum(-1)

    def kl(self, z: Tensor, idx: Tensor) -> Tensor:
        """``KL(t || softmax(l))`` per row, computed as ``sum t log t - t . l + logsumexp(l)``
        (``sum t = 1``), with ``t . l`` from the teacher's moments: no [B, K] teacher matrix is
        gathered or multiplied, nothing N x K is stored."""
        scale = 1.0 / self.tau
        t_log_t, mean_code, mean_square = (part[idx] for part in self.moments)
        if self.teacher.metric == "cosine":
            unit = F.normalize(z, dim=-1)
            return t_log_t - (unit * mean_code).sum(-1) + linear_logsumexp(unit, self.weights, None, self._scores)
        # -scale |z|^2, common to every code, leaves the KL (it is in both t . l and logsumexp(l))
        t_dot_l = scale * (2 * (z * mean_code).sum(-1) - mean_square)
        return t_log_t - t_dot_l + linear_logsumexp(z, self.weights, self.bias, self._scores)

    def __call__(self, inputs: TermInputs) -> Tensor:
        return self.tau * self.tau * inputs.mean(self.kl(inputs.out.z, inputs.idx).sum())


class IndexCodeCE(CodeTerm):
    """The ``index`` code term: ``tau^2 CE(softmax(code_logits(z) / tau), teacher code)``."""

    def setup(self, context: TermContext) -> None:
        if self.weight:
            self.teacher, self.codes = context.teacher, context.teacher.codes()

    def __call__(self, inputs: TermInputs) -> Tensor:
        t = self.teacher
        log_s = F.log_softmax(code_logits(inputs.out.z, t.codebook, t.metric, 1.0 / self.tau), dim=-1)
        ce = F.nll_loss(log_s, self.codes[inputs.idx], reduction="sum")
        return self.tau * self.tau * inputs.mean(ce)


class ClassMixKL(CodeTerm):
    """The ``class`` code term: KL(class mix of the teacher's code || softmax(student logits)),
    the mixes formed in setup from the nodes the student trains on (``context.fit_idx``; ``tau``
    is not read: the class mix has no code softmax)."""

    needs = ("codebook", "soft_labels")

    def setup(self, context: TermContext) -> None:
        if self.weight:
            self.codes = context.teacher.codes()
            self.classes = self._class_mix(context.teacher, context.fit_idx.to(context.teacher.device))

    @torch.no_grad()
    def _class_mix(self, teacher: TeacherSide, fit_idx: Tensor) -> Tensor:
        """[K, C]: per code, the mean teacher soft label of the ``fit_idx`` nodes assigned to it,
        with one pseudo-node of their overall mean (a code no training node uses gets that mean)."""
        probs = torch.cat([teacher.probs(part) for part in fit_idx.split(65_536)])
        codes = self.codes[fit_idx]
        k = teacher.codebook.size(0)
        totals = probs.new_zeros(k, probs.size(1)).index_add_(0, codes, probs)
        counts = torch.bincount(codes, minlength=k).to(probs.dtype)
        return (totals + probs.mean(0)) / (counts + 1.0).unsqueeze(1)

    def __call__(self, inputs: TermInputs) -> Tensor:
        kl = F.kl_div(F.log_softmax(inputs.out.logits, dim=-1), self.classes[self.codes[inputs.idx]], reduction="sum")
        return inputs.mean(kl)


# the code term's forms, by DistillConfig.code_target, each built as ``form(weight, tau)``
CODE_TERMS = {"soft": SoftCodeKL, "index": IndexCodeCE, "class": ClassMixKL}


def similarity_gap(student_z: Tensor, teacher_z: Tensor, idx: Tensor, rows: int) -> Tensor:
    """The mean squared difference of in-batch cosine similarities, student against teacher, over
    the first ``rows`` rows of this rank's slice (a batch is a random draw). Pairs never cross
    ranks: under DDP this is a per-rank mean, like the teacher's tokenizer terms."""
    rows = min(idx.numel(), rows)
    if rows == 0:
        return student_z.sum() * 0.0
    s = F.normalize(student_z[:rows], dim=-1)
    t = F.normalize(teacher_z[idx[:rows]], dim=-1)
    return (s @ s.t() - t @ t.t()).pow(2).mean()


class RepresentationSimilarity(LossTerm):
    """``similarity``: :func:`similarity_gap` of the student's ``z`` against the teacher's, over the
    first ``rows`` rows of the batch."""

    name = "similarity"
    needs = ("z",)

    def __init__(self, weight: float = 1.0, rows: int = 1024):
        super().__init__(weight)
        self.rows = rows

    def __call__(self, inputs: TermInputs) -> Tensor:
        return similarity_gap(inputs.out.z, inputs.teacher.z, inputs.idx, self.rows)


def adversarial_perturbation(net, x: Tensor, fit_loss: Callable[[Tensor], Tensor], eps: float, steps: int) -> Tensor:
    """Projected gradient ascent on ``fit_loss`` of the student's logits (NOSMOG's adversarial
    augmentation): a random start in the L-inf ball of radius ``eps``, ``steps`` signed steps of
    a quarter radius. The model runs in evaluation mode here (no batch-norm statistics move)."""
    model = net.module if isinstance(net, DistributedDataParallel) else net  # the attack's passes are not DDP steps
    delta = (torch.rand(x.shape, device=x.device) * 2 - 1) * eps
    model.eval()
    try:
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = fit_loss(model(x + delta).logits)
            (grad,) = torch.autograd.grad(loss, delta)
            delta = (delta.detach() + 0.25 * eps * grad.sign()).clamp(-eps, eps)
    finally:
        model.train()
    return delta.detach()


class AdversarialFeatures(LossTerm):
    """``adversarial``: the ``repeats`` terms (label and soft-label, each with its own weight) on
    the batch's features perturbed against them in an L-inf ball of radius ``eps`` times the
    training features' root mean square (:func:`adversarial_perturbation`, ``steps`` steps)."""

    name = "adversarial"

    def __init__(self, weight: float, eps: float, steps: int, repeats: Sequence[LossTerm]):
        super().__init__(weight)
        self.eps, self.steps, self.repeats = eps, steps, tuple(repeats)

    def setup(self, context: TermContext) -> None:
        x, fit_idx = context.x, context.fit_idx  # the radius in units of the features' root mean square
        square_mean = x.square_mean(fit_idx) if hasattr(x, "square_mean") else float(x[fit_idx].pow(2).mean())
        self.radius = self.eps * square_mean ** 0.5

    def fit_loss(self, inputs: TermInputs) -> Tensor:
        """The weighted sum of the repeated terms on ``inputs`` (0 for a term of weight 0)."""
        zero = inputs.out.logits.new_zeros(())
        parts = [term.weight * term(inputs) if term.weight else zero for term in self.repeats]
        total = parts[0]
        for part in parts[1:]:
            total = total + part
        return total

    def augment(self, net, inputs: TermInputs) -> Tensor:
        """The perturbed features ``x + delta`` of the batch (``inputs.x`` dense)."""
        delta = adversarial_perturbation(
            net, inputs.x, lambda logits: self.fit_loss(inputs.replace(out=_Logits(logits))), self.radius, self.steps)
        return inputs.x + delta

    def __call__(self, inputs: TermInputs) -> Tensor:
        return self.fit_loss(inputs.replace(out=inputs.augmented))


class _Logits(NamedTuple):
    """The attack's view of a student output: its logits alone (the repeated terms read no more)."""

    logits: Tensor
    z: Optional[Tensor] = None


class NeighbourAgreement(LossTerm):
    """``neighbour``: for each row with an observed neighbour, one neighbour drawn uniformly each
    batch (torch's generator, as dropout); the term is the symmetric KL between the student's class
    distributions on the row and on that neighbour, averaged over the global batch's rows. Its
    :meth:`augment` adds the neighbours' features to the forward pass. Only observed edges between
    nodes the student trains on are read: hidden nodes are never drawn, nor validation nodes whose
    targets are held out (pulled towards their neighbours, they would measure the graph's help,
    which hidden nodes never get)."""

    name = "neighbour"

    def setup(self, context: TermContext) -> None:
        edges = context.split.observed_edges(context.data.edge_index).to(context.device)
        fit = torch.zeros(context.data.num_nodes, dtype=torch.bool, device=context.device)
        fit[context.fit_idx] = True  # held-out validation nodes stay out: their accuracy must not see the graph
        edges = edges[:, fit[edges[0]] & fit[edges[1]] & (edges[0] != edges[1])]  # a self-loop is no neighbour
        order = torch.argsort(edges[0], stable=True)
        self.col = edges[1, order]
        self.degree = torch.bincount(edges[0], minlength=context.data.num_nodes)
        self.start = torch.cumsum(self.degree, 0) - self.degree
        self.x = context.x

    def augment(self, net, inputs: TermInputs) -> Tensor:
        """The features [B, F] (dense) of one observed neighbour of each row (the row's own where it has none)."""
        degree = self.degree[inputs.idx]
        self.has = degree > 0
        if not self.col.numel():
            picked = inputs.idx
        else:
            draw = torch.minimum((torch.rand(degree.shape, device=degree.device) * degree).long(), degree - 1)
            where = (self.start[inputs.idx] + draw.clamp(min=0)).clamp(max=self.col.numel() - 1)
            picked = torch.where(self.has, self.col[where], inputs.idx)
        rows = self.x[picked]
        return rows.to_dense() if rows.layout == torch.sparse_csr else rows

    def __call__(self, inputs: TermInputs) -> Tensor:
        own = F.log_softmax(inputs.out.logits, dim=-1)
        other = F.log_softmax(inputs.augmented.logits, dim=-1)
        both = (own.exp() * (own - other)).sum(-1) + (other.exp() * (other - own)).sum(-1)
        return inputs.mean(0.5 * both[self.has].sum())
