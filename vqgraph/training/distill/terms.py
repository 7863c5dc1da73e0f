"""The student's loss terms, each a unit of its own, and :class:`CodebookDistiller`, which sums them.

Per batch of global node ids ``idx``:

* ``label`` (:func:`label_loss`): cross-entropy on the labelled training nodes in the batch;
* ``soft_label`` (:func:`soft_label_kl`): KL(teacher soft labels || student), teacher logits
  divided by ``teacher_temperature``, by default the temperature that calibrates the teacher on
  validation nodes (temperature scaling): a flat target transfers little;
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

Optional terms, off by default (weight 0), for any distilled method (training only):

* ``similarity`` (:func:`similarity_gap`, NOSMOG's representation-similarity distillation): the
  mean squared difference between the cosine similarities of the student's projected
  representations and of the teacher's ``z`` over pairs of batch rows;
* ``adversarial`` (:func:`adversarial_perturbation`, NOSMOG's adversarial feature augmentation):
  the label and soft-label losses again, on features perturbed by a few steps of projected
  gradient ascent (the objective runs it: it needs the student's forward pass).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from vqgraph.losses import ScoreBuffer, code_logits, code_map, linear_logsumexp
from vqgraph.targets import TeacherTargets
from vqgraph.training.distill.config import DistillConfig
from vqgraph.training.loop import Share


class DistillLosses(NamedTuple):
    label: Tensor
    soft_label: Tensor
    soft_token: Tensor


class TeacherSide:
    """The teacher's targets on the training device, as the terms read them."""

    def __init__(self, targets: TeacherTargets, device, temperature: float, soft_labels: Optional[Tensor] = None):
        self.temperature = temperature
        self.num_nodes = targets.num_nodes
        self.logits = targets.logits.to(device)
        # [N, C] soft labels that replace softmax(teacher logits / temperature) (smoothed ones: make_distiller)
        self.soft_labels = soft_labels.to(device) if soft_labels is not None else None
        self.z = targets.z.to(device)
        self.codebook = targets.codebook.to(device) if targets.codebook is not None else None
        self.metric = targets.metric
        self.device, self._codes = device, targets.codes

    def probs(self, idx: Tensor) -> Tensor:
        """The soft labels of nodes ``idx`` [B, C]."""
        if self.soft_labels is not None:
            return self.soft_labels[idx]
        return F.softmax(self.logits[idx] / self.temperature, dim=-1)

    def codes(self) -> Tensor:
        """[N]: each node's nearest code, on the device."""
        return self._codes.to(self.device)

    @torch.no_grad()
    def soft_codes(self, idx: Tensor, tau: float):
        """Soft code assignments of nodes ``idx`` at temperature ``tau`` [B, K], and the per-node
        sum of t log t [B] (the constant part of a KL to them)."""
        log_t = F.log_softmax(code_logits(self.z[idx], self.codebook, self.metric, 1.0 / tau), dim=-1)
        t = log_t.exp()
        return t, (t * log_t).sum(-1)


def label_loss(logits: Tensor, y: Tensor, labelled: Tensor, share: Share, weight: float = 1.0) -> Tensor:
    """Cross-entropy on the ``labelled`` rows, averaged over the labelled rows of the global batch."""
    ce = F.cross_entropy(logits[labelled], y[labelled], reduction="sum")
    return weight * share.mean(ce, share.labelled)


def soft_label_kl(logits: Tensor, teacher_probs: Tensor, share: Share) -> Tensor:
    """KL(teacher soft labels || softmax(logits)), averaged over the rows of the global batch."""
    kl = F.kl_div(F.log_softmax(logits, dim=-1), teacher_probs, reduction="sum")
    return share.mean(kl, share.rows)


class SoftCodeKL:
    """The ``soft`` code term: ``tau^2 KL(t || softmax(l))``, ``l = code_logits(z, codebook) / tau``,
    ``t`` the teacher's soft assignment, from the teacher's moments (computed once)."""

    def __init__(self, teacher: TeacherSide, tau: float, fit_idx: Optional[Tensor] = None):
        self.teacher, self.tau = teacher, tau
        chunks = torch.arange(teacher.num_nodes, device=teacher.z.device).split(8192)
        self.weight, self.bias = code_map(teacher.codebook, teacher.metric, 1.0 / tau)
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
            return t_log_t, t @ self.weight, t.new_zeros(t.size(0))
        return t_log_t, t @ codebook, t @ codebook.pow(2).sum(-1)

    def kl(self, z: Tensor, idx: Tensor) -> Tensor:
        """``KL(t || softmax(l))`` per row, computed as ``sum t log t - t . l + logsumexp(l)``
        (``sum t = 1``), with ``t . l`` from the teacher's moments: no [B, K] teacher matrix is
        gathered or multiplied, nothing N x K is stored."""
        scale = 1.0 / self.tau
        t_log_t, mean_code, mean_square = (part[idx] for part in self.moments)
        if self.teacher.metric == "cosine":
            unit = F.normalize(z, dim=-1)
            return t_log_t - (unit * mean_code).sum(-1) + linear_logsumexp(unit, self.weight, None, self._scores)
        # -scale |z|^2, common to every code, leaves the KL (it is in both t . l and logsumexp(l))
        t_dot_l = scale * (2 * (z * mean_code).sum(-1) - mean_square)
        return t_log_t - t_dot_l + linear_logsumexp(z, self.weight, self.bias, self._scores)

    def __call__(self, out, idx: Tensor, share: Share) -> Tensor:
        return self.tau * self.tau * share.mean(self.kl(out.z, idx).sum(), share.rows)


class IndexCodeCE:
    """The ``index`` code term: ``tau^2 CE(softmax(code_logits(z) / tau), teacher code)``."""

    def __init__(self, teacher: TeacherSide, tau: float, fit_idx: Optional[Tensor] = None):
        self.teacher, self.tau, self.codes = teacher, tau, teacher.codes()

    def __call__(self, out, idx: Tensor, share: Share) -> Tensor:
        t = self.teacher
        log_s = F.log_softmax(code_logits(out.z, t.codebook, t.metric, 1.0 / self.tau), dim=-1)
        ce = F.nll_loss(log_s, self.codes[idx], reduction="sum")
        return self.tau * self.tau * share.mean(ce, share.rows)


class ClassMixKL:
    """The ``class`` code term: KL(class mix of the teacher's code || softmax(student logits))."""

    def __init__(self, teacher: TeacherSide, tau: float, fit_idx: Optional[Tensor] = None):
        if fit_idx is None:
            raise ValueError("code_target 'class' needs the training nodes (fit_idx) to form each code's class mix")
        self.codes = teacher.codes()
        self.classes = self._class_mix(teacher, fit_idx.to(teacher.device))

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

    def __call__(self, out, idx: Tensor, share: Share) -> Tensor:
        kl = F.kl_div(F.log_softmax(out.logits, dim=-1), self.classes[self.codes[idx]], reduction="sum")
        return share.mean(kl, share.rows)


# the code term's forms, by DistillConfig.code_target: each is built as ``form(teacher, tau, fit_idx)``
# (``fit_idx``: the nodes the student trains on, which only ``class`` reads) and called as
# ``form(out, idx, share)`` for the unweighted term
CODE_TERMS = {"soft": SoftCodeKL, "index": IndexCodeCE, "class": ClassMixKL}


def similarity_gap(student_z: Tensor, teacher_z: Tensor, idx: Tensor, rows: int, weight: float) -> Tensor:
    """``weight`` times the mean squared difference of in-batch cosine similarities, student
    against teacher, over the first ``rows`` rows of this rank's slice (a batch is a random
    draw). Pairs never cross ranks: under DDP this is a per-rank mean, like the teacher's
    tokenizer terms."""
    rows = min(idx.numel(), rows)
    if rows == 0:
        return student_z.sum() * 0.0
    s = F.normalize(student_z[:rows], dim=-1)
    t = F.normalize(teacher_z[idx[:rows]], dim=-1)
    return weight * (s @ s.t() - t @ t.t()).pow(2).mean()


def adversarial_perturbation(net, x: Tensor, fit_loss: Callable[[Tensor], Tensor], eps: float, steps: int) -> Tensor:
    """Projected gradient ascent on ``fit_loss`` of the student's logits (NOSMOG's adversarial
    augmentation): a random start in the L-inf ball of radius ``eps``, ``steps`` signed steps of
    a quarter radius. The model runs in evaluation mode here (no batch-norm statistics move)."""
    model = getattr(net, "module", net)  # the attack's passes are not DDP steps
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


class CodebookDistiller:
    """The teacher terms of a method against its targets: :class:`DistillLosses` for a batch of
    global node ids, and the optional similarity term."""

    def __init__(self, targets: TeacherTargets, config: DistillConfig, device="cpu", teacher_temperature: float = 1.0,
                 fit_idx: Optional[Tensor] = None, soft_labels: Optional[Tensor] = None):
        if config.uses_soft_tokens and targets.codebook is None:
            raise ValueError("method 'vqgraph' needs a teacher with a tokenizer (its targets have no codebook)")
        self.config = config
        self.teacher = TeacherSide(targets, device, teacher_temperature, soft_labels)
        self.code = None  # the code term's form (None: no code term)
        if config.uses_soft_tokens and config.soft_token_weight:
            self.code = CODE_TERMS[config.code_target](self.teacher, config.token_temperature, fit_idx)

    @property
    def temperature(self) -> float:
        return self.teacher.temperature

    def __call__(self, out, idx: Tensor, y: Tensor, labelled: Tensor, share: Optional[Share] = None) -> DistillLosses:
        """``out``: student output for nodes ``idx`` (global ids); ``labelled``: bool mask of
        the batch rows whose label ``y`` may be used (training nodes). ``share``: the global
        batch these rows are a slice of (default: they are the whole batch)."""
        share = share or Share(idx.numel(), int(labelled.sum()))
        label, soft_label = self.label_terms(out.logits, idx, y, labelled, share)
        soft_token = out.logits.new_zeros(())
        if self.code is not None:
            soft_token = self.config.soft_token_weight * self.code(out, idx, share)
        return DistillLosses(label, soft_label, soft_token)

    def label_terms(self, logits: Tensor, idx: Tensor, y: Tensor, labelled: Tensor, share: Share):
        """The weighted ``label`` and ``soft_label`` terms of :meth:`__call__` (0 when off)."""
        cfg, zero = self.config, logits.new_zeros(())
        label = label_loss(logits, y, labelled, share, cfg.label_weight) if cfg.label_weight else zero
        soft_label = zero
        if cfg.uses_soft_labels:
            soft_label = cfg.soft_label_weight * soft_label_kl(logits, self.teacher.probs(idx), share)
        return label, soft_label

    def fit_loss(self, logits: Tensor, idx: Tensor, y: Tensor, labelled: Tensor, share: Share) -> Tensor:
        """The label and soft-label terms of :meth:`__call__`, summed (what the adversarial term repeats)."""
        label, soft_label = self.label_terms(logits, idx, y, labelled, share)
        return label + soft_label

    def similarity(self, student_z: Tensor, idx: Tensor) -> Tensor:
        """The weighted similarity term (:func:`similarity_gap`) against the teacher's ``z``."""
        return similarity_gap(student_z, self.teacher.z, idx, self.config.similarity_rows,
                              self.config.similarity_weight)
