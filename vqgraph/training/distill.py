"""Distillation of a teacher into a graph-free MLP student: ``mlp``, ``glnn`` and ``vqgraph``.

Per batch of global node ids ``idx``:

* ``label``: cross-entropy on the labelled training nodes in the batch;
* ``soft_label``: KL(teacher soft labels || student), teacher logits divided by
  ``teacher_temperature``, by default the temperature that calibrates the teacher on validation
  nodes (temperature scaling): a flat target transfers little, and the entropy is logged;
* ``soft_token`` (``vqgraph`` only), by ``code_target``:

  - ``soft`` (the paper's): ``tau^2 * KL(softmax(t/tau) || softmax(s/tau))`` where
    ``t = code_logits(teacher z[idx], codebook)`` and ``s = code_logits(student z, codebook)``:
    the same similarity on both sides, the frozen teacher codebook, rows aligned by global id.
    The logits are affine in the codes, so the teacher's side enters through its mean code per
    node (N x D, computed once): nothing of size N x K is ever built or gathered.
  - ``index``: ``tau^2 * CE(softmax(s/tau), teacher code)``, the teacher's nearest code as a
    hard target (its soft assignment is nearly flat: the nearest codes are almost tied).
  - ``class``: ``KL(P[teacher code] || softmax(student logits))``, where ``P[k]`` is the mean
    teacher soft label of the training nodes the teacher assigns to code ``k`` (smoothed towards
    their overall mean by one node's weight): what the codebook knows of classes, as a target.

Optional terms, off by default (weight 0), for any distilled method (training only: inference
stays graph-free):

* ``similarity`` (NOSMOG's representation-similarity distillation): the mean squared difference
  between the cosine similarities of the student's projected representations and of the
  teacher's ``z`` over pairs of batch rows (up to ``similarity_rows`` rows of each batch);
* ``adversarial`` (NOSMOG's adversarial feature augmentation): the label and soft-label losses
  again, on features perturbed by a few steps of projected gradient ascent within an L-inf ball
  of radius ``adversarial_eps`` times the features' root mean square.

``val_targets`` decides whether the student fits the validation nodes' teacher targets. Held
out (the inductive default), validation accuracy measures how the student generalises to nodes
it never trained on, as the hidden test nodes are; fitted (the transductive default, where the
student fits every test node's targets too), it measures fit to the teacher.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor
from torch_geometric.data import Data

from vqgraph import distributed
from vqgraph.data.graph import ensure_graph
from vqgraph.data.sparse import SparseRows, use_sparse
from vqgraph.data.splits import NodeSplit, Setting
from vqgraph.evaluation import Evaluator
from vqgraph.losses import ScoreBuffer, calibrate_temperature, code_logits, entropy, linear_logsumexp
from vqgraph.models.encoders import resolve_conv
from vqgraph.models.student import MLPStudent, StudentConfig
from vqgraph.targets import TeacherTargets, smooth_soft_labels
from vqgraph.training import loop
from vqgraph.training.checkpoint import Checkpoint
from vqgraph.training.loop import Share, TrainConfig

METHODS = ("mlp", "glnn", "vqgraph")
VAL_TARGETS = ("auto", "fit", "held_out")
CODE_TARGETS = ("soft", "index", "class")


@dataclass(frozen=True)
class DistillConfig:
    """What the student learns from, and how much (flat, each with its default)."""

    method: str = "vqgraph"  # mlp (labels) | glnn (+ soft labels) | vqgraph (+ soft codes)
    label_weight: float = 1.0  # cross-entropy on labelled training nodes
    soft_label_weight: float = 1.0  # KL to the teacher's soft labels (glnn, vqgraph)
    teacher_temperature: Optional[float] = None  # divides teacher logits; None: calibrated on val nodes
    soft_token_weight: float = 1.0  # beta: weight of the soft code-assignment KL (vqgraph)
    token_temperature: float = 0.1  # tau of the code-assignment softmaxes (cosine scores in [-1, 1])
    code_target: str = "soft"  # soft: KL over soft code assignments | index: CE to the teacher's code | class: its class mix
    select_by: str = "val"  # val: validation-selected (honest) | test: the paper's protocol, for comparison only
    val_targets: str = "auto"  # fit | held_out: train on validation nodes' targets? (auto: held_out inductively)
    similarity_weight: float = 0.0  # in-batch representation-similarity term (NOSMOG); glnn and vqgraph
    similarity_rows: int = 1024  # rows of each batch the similarity matrices span
    adversarial_weight: float = 0.0  # loss on PGD-perturbed features (NOSMOG's weight is 0.1)
    adversarial_eps: float = 0.1  # L-inf radius, in units of the features' root mean square
    adversarial_steps: int = 3  # projected gradient ascent steps per batch
    weight_decays: Tuple[float, ...] = ()  # one student each, the best on select_by kept; (): student_train's
    teachers: int = 1  # teachers whose soft labels the targets average (ensemble_targets; experiments.run trains them)
    teacher_kinds: Tuple[str, ...] = ()  # encoder kinds of teachers 2..N (each with its preset block); (): the first's
    smooth_hops: int = 0  # soft labels mixed with reliable neighbours' over the observed graph, hops rounds (0: off)
    smooth_alpha: float = 0.5  # weight of the neighbours' mean in each round
    smooth_labels: bool = False  # the training nodes enter the smoothing as their one-hot labels

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        if self.select_by not in ("val", "test"):
            raise ValueError(f"select_by must be 'val' or 'test', got {self.select_by!r}")
        if (self.teacher_temperature is not None and self.teacher_temperature <= 0) or self.token_temperature <= 0:
            raise ValueError("temperatures must be > 0")
        if self.val_targets not in VAL_TARGETS:
            raise ValueError(f"val_targets must be one of {VAL_TARGETS}, got {self.val_targets!r}")
        if self.code_target not in CODE_TARGETS:
            raise ValueError(f"code_target must be one of {CODE_TARGETS}, got {self.code_target!r}")
        for key in ("similarity_weight", "adversarial_weight", "adversarial_eps"):
            if getattr(self, key) < 0:
                raise ValueError(f"{key} must be >= 0, got {getattr(self, key)}")
        if self.similarity_rows < 2 or self.adversarial_steps < 1:
            raise ValueError(f"need similarity_rows >= 2 and adversarial_steps >= 1, got {self.similarity_rows}, "
                             f"{self.adversarial_steps}")
        if self.teachers < 1:
            raise ValueError(f"teachers must be >= 1, got {self.teachers}")
        if self.teacher_kinds and len(self.teacher_kinds) != self.teachers - 1:
            raise ValueError(f"teacher_kinds names {len(self.teacher_kinds)} kind(s) for teachers 2..N: set "
                             f"teachers={len(self.teacher_kinds) + 1} (it is {self.teachers})")
        for kind in self.teacher_kinds:
            resolve_conv(kind)
        if self.smooth_hops < 0 or not 0.0 <= self.smooth_alpha <= 1.0:
            raise ValueError(f"need smooth_hops >= 0 and 0 <= smooth_alpha <= 1, got {self.smooth_hops}, "
                             f"{self.smooth_alpha}")
        if any(wd < 0 for wd in self.weight_decays):
            raise ValueError(f"weight_decays must be >= 0, got {self.weight_decays}")
        if self.similarity_weight and self.method == "mlp":
            raise ValueError("similarity_weight needs a teacher: use method 'glnn' or 'vqgraph'")

    def check_learns(self) -> None:
        """Raise ValueError if no loss term of the method has a non-zero weight (checked by
        ``fit_student`` and by complete experiment configs, not per preset layer)."""
        weights = {"label_weight": self.label_weight, "soft_label_weight": self.soft_label_weight * self.uses_soft_labels,
                   "soft_token_weight": self.soft_token_weight * self.uses_soft_tokens,
                   "similarity_weight": self.similarity_weight}
        if not any(weights.values()):
            raise ValueError(f"method {self.method!r} has no loss term with a non-zero weight: {weights}")

    @property
    def uses_soft_labels(self) -> bool:
        return self.method in ("glnn", "vqgraph") and self.soft_label_weight > 0

    @property
    def uses_soft_tokens(self) -> bool:
        return self.method == "vqgraph"

    @property
    def uses_projection(self) -> bool:
        """The student projects its hidden layer into the teacher's code space."""
        return self.uses_soft_tokens or self.similarity_weight > 0

    def fits_val(self, setting: Setting) -> bool:
        """Whether the student trains on the validation nodes' teacher targets in ``setting``."""
        if self.val_targets == "auto":
            return setting is Setting.TRANSDUCTIVE
        return self.val_targets == "fit"

    def extra_terms(self) -> tuple:
        """Names of the optional loss terms in use, in the order the objective returns them."""
        return tuple(name for name in ("similarity", "adversarial") if getattr(self, f"{name}_weight") > 0)

    def to_dict(self) -> dict:
        return asdict(self)


def student_defaults(method: str = "vqgraph") -> StudentConfig:
    """The student's architecture defaults: distilled students (``glnn``, ``vqgraph``)
    batch-normalise their hidden layer (GLNN's mean validation accuracy on Cora 82.48 -> 83.14,
    A-computer 84.20 -> 87.73, seeds 0-4), the label-only ``mlp`` does not (Cora seeds 0-9:
    61.76 against 63.95)."""
    return StudentConfig(norm="none" if method == "mlp" else "batch")


MLP_WEIGHT_DECAYS = (5e-4, 5e-3, 5e-2)


def distill_defaults(method: str = "vqgraph") -> DistillConfig:
    """The method's distillation defaults. The label-only ``mlp`` chooses its weight decay on
    validation among :data:`MLP_WEIGHT_DECAYS`, as a linear baseline chooses its penalty: the
    right strength depends on the graph's features (Cora's 5e-3 starves A-computer's
    row-normalised features: 11% test accuracy; see docs/results.md)."""
    return DistillConfig(method=method, weight_decays=MLP_WEIGHT_DECAYS if method == "mlp" else ())


def student_train_defaults(method: str = "vqgraph") -> TrainConfig:
    """The student's optimisation defaults, for ``fit_student`` and for experiment configs.

    No weight decay for the distilled students (decay flattens what distillation transfers:
    GLNN on Cora seed 0, 73.4 with 5e-4 against 76.2 without), except for the label-only
    ``mlp``, which overfits its 20 labels per class without it (Cora seeds 0-6: 54.4% against
    58.0%); 5e-3 is GLNN's MLP setting, and :func:`distill_defaults` has the ``mlp`` choose among
    several on validation. The ``mlp`` takes one step an epoch, so its patience is 200 epochs
    (validation accuracy over seeds 0-4 with row-normalised features: Cora 64.10 against 63.24
    at patience 50, Citeseer 58.56 against 58.33).
    """
    if method == "mlp":  # one step an epoch (the labelled nodes): patience in steps
        return TrainConfig(lr=0.01, weight_decay=5e-3, max_epochs=2000, patience=200, batch_size=4096)
    return TrainConfig(lr=0.01, weight_decay=0.0, patience=50, batch_size=4096)


class DistillLosses(NamedTuple):
    label: Tensor
    soft_label: Tensor
    soft_token: Tensor


def label_loss(logits: Tensor, y: Tensor, labelled: Tensor, share: Share, weight: float = 1.0) -> Tensor:
    """Cross-entropy on the ``labelled`` rows, averaged over the labelled rows of the global batch."""
    ce = F.cross_entropy(logits[labelled], y[labelled], reduction="sum")
    return weight * share.mean(ce, share.labelled)


class CodebookDistiller:
    """Computes :class:`DistillLosses` for a batch of global node ids against teacher targets."""

    def __init__(self, targets: TeacherTargets, config: DistillConfig, device="cpu", teacher_temperature: float = 1.0,
                 fit_idx: Optional[Tensor] = None, soft_labels: Optional[Tensor] = None):
        if config.uses_soft_tokens and targets.codebook is None:
            raise ValueError("method 'vqgraph' needs a teacher with a tokenizer (its targets have no codebook)")
        self.config = config
        self.temperature = teacher_temperature
        self.teacher_logits = targets.logits.to(device)
        # [N, C] soft labels that replace softmax(teacher logits / temperature) (smoothed ones: make_distiller)
        self.soft_labels = soft_labels.to(device) if soft_labels is not None else None
        self.teacher_z = targets.z.to(device)
        self.codebook = targets.codebook.to(device) if targets.codebook is not None else None
        self.metric = targets.metric
        self._moments = None
        code_term = config.uses_soft_tokens and config.soft_token_weight
        if code_term and config.code_target != "soft":
            self.teacher_codes = targets.codes.to(device)
        if code_term and config.code_target == "class":
            if fit_idx is None:
                raise ValueError("code_target 'class' needs the training nodes (fit_idx) to form each code's class mix")
            self.code_classes = self._code_class_mix(fit_idx.to(device))
        if code_term and config.code_target == "soft":  # the teacher's side is fixed: its moments, once
            chunks = torch.arange(targets.num_nodes, device=self.teacher_z.device).split(8192)
            self._moments = tuple(torch.cat(p) for p in zip(*(self._code_moments(c) for c in chunks)))
            self._code_map = self._student_code_map()
            self._scores = ScoreBuffer()  # the student's [B, K] code scores, one buffer for every step

    @torch.no_grad()
    def _code_class_mix(self, fit_idx: Tensor) -> Tensor:
        """[K, C]: per code, the mean teacher soft label of the ``fit_idx`` nodes assigned to it,
        with one pseudo-node of their overall mean (a code no training node uses gets that mean)."""
        probs = torch.cat([self.teacher_probs(part) for part in fit_idx.split(65_536)])
        codes = self.teacher_codes[fit_idx]
        k = self.codebook.size(0)
        totals = probs.new_zeros(k, probs.size(1)).index_add_(0, codes, probs)
        counts = torch.bincount(codes, minlength=k).to(probs.dtype)
        return (totals + probs.mean(0)) / (counts + 1.0).unsqueeze(1)

    def teacher_probs(self, idx: Tensor) -> Tensor:
        if self.soft_labels is not None:
            return self.soft_labels[idx]
        return F.softmax(self.teacher_logits[idx] / self.temperature, dim=-1)

    def teacher_code_logits(self, idx: Tensor, scale: float = 1.0) -> Tensor:
        return code_logits(self.teacher_z[idx], self.codebook, self.metric, scale)

    @torch.no_grad()
    def teacher_soft_codes(self, idx: Tensor):
        """Teacher soft code assignments of nodes ``idx`` at temperature tau [B, K], and the
        per-node sum of t log t [B] (the constant part of the KL)."""
        log_t = F.log_softmax(self.teacher_code_logits(idx, 1.0 / self.config.token_temperature), dim=-1)
        t = log_t.exp()
        return t, (t * log_t).sum(-1)

    @torch.no_grad()
    def _code_moments(self, idx: Tensor):
        """What the KL needs of the teacher's soft assignments ``t`` of nodes ``idx``: the code
        logits are affine in the codes, so ``t . l`` for any student logits ``l`` needs only
        ``t``'s mean code (and, for ``euclidean``, its mean squared code norm). Returns
        ``(sum t log t [B], mean code [B, D], mean squared norm [B])``, the mean code of
        ``cosine`` taken over the scaled unit codes."""
        scale = 1.0 / self.config.token_temperature
        t, t_log_t = self.teacher_soft_codes(idx)
        if self.metric == "cosine":
            return t_log_t, t @ (F.normalize(self.codebook, dim=-1) * scale), t.new_zeros(t.size(0))
        return t_log_t, t @ self.codebook, t @ self.codebook.pow(2).sum(-1)

    def _student_code_map(self) -> tuple:
        """``(weight [K, D], bias [K] or None)`` with ``l = z' @ weight.T + bias`` the student's
        code logits at temperature tau, up to a per-row constant (``z'``: the unit ``z`` for
        ``cosine``, ``z`` itself for ``euclidean``, whose constant is ``-|z|^2 / tau``)."""
        scale = 1.0 / self.config.token_temperature
        if self.metric == "cosine":
            return F.normalize(self.codebook, dim=-1) * scale, None
        return 2 * scale * self.codebook, -scale * self.codebook.pow(2).sum(-1)

    def soft_code_kl(self, z: Tensor, idx: Tensor) -> Tensor:
        """``KL(t || softmax(l))`` per row, ``l = code_logits(z, codebook) / tau``, computed as
        ``sum t log t - t . l + logsumexp(l)`` (``sum t = 1``), with ``t . l`` from the teacher's
        moments: no [B, K] teacher matrix is gathered or multiplied, nothing N x K is stored."""
        scale = 1.0 / self.config.token_temperature
        t_log_t, mean_code, mean_square = (part[idx] for part in self._moments)
        weight, bias = self._code_map
        if self.metric == "cosine":
            unit = F.normalize(z, dim=-1)
            return t_log_t - (unit * mean_code).sum(-1) + linear_logsumexp(unit, weight, None, self._scores)
        # l = -scale |z - c|^2 = 2 scale z.c - scale |c|^2 - scale |z|^2: the last part, common to
        # every code, leaves the KL (it is in both t . l and logsumexp(l))
        t_dot_l = scale * (2 * (z * mean_code).sum(-1) - mean_square)
        return t_log_t - t_dot_l + linear_logsumexp(z, weight, bias, self._scores)

    def __call__(self, out, idx: Tensor, y: Tensor, labelled: Tensor, share: Optional[Share] = None) -> DistillLosses:
        """``out``: student output for nodes ``idx`` (global ids); ``labelled``: bool mask of
        the batch rows whose label ``y`` may be used (training nodes). ``share``: the global
        batch these rows are a slice of (default: they are the whole batch)."""
        cfg = self.config
        share = share or Share(idx.numel(), int(labelled.sum()))
        label, soft_label = self.label_terms(out.logits, idx, y, labelled, share)
        soft_token = out.logits.new_zeros(())
        if cfg.uses_soft_tokens and cfg.soft_token_weight:
            soft_token = cfg.soft_token_weight * self.code_term(out, idx, share)
        return DistillLosses(label, soft_label, soft_token)

    def code_term(self, out, idx: Tensor, share: Share) -> Tensor:
        """The unweighted code term of ``config.code_target`` (batch mean over the global batch)."""
        tau = self.config.token_temperature
        if self.config.code_target == "class":
            kl = F.kl_div(F.log_softmax(out.logits, dim=-1), self.code_classes[self.teacher_codes[idx]], reduction="sum")
            return share.mean(kl, share.rows)
        if self.config.code_target == "index":
            log_s = F.log_softmax(code_logits(out.z, self.codebook, self.metric, 1.0 / tau), dim=-1)
            ce = F.nll_loss(log_s, self.teacher_codes[idx], reduction="sum")
            return tau * tau * share.mean(ce, share.rows)
        return tau * tau * share.mean(self.soft_code_kl(out.z, idx).sum(), share.rows)

    def label_terms(self, logits: Tensor, idx: Tensor, y: Tensor, labelled: Tensor, share: Share):
        """The weighted ``label`` and ``soft_label`` terms of :meth:`__call__` (0 when off)."""
        cfg, zero = self.config, logits.new_zeros(())
        label = label_loss(logits, y, labelled, share, cfg.label_weight) if cfg.label_weight else zero
        soft_label = zero
        if cfg.uses_soft_labels:
            kl = F.kl_div(F.log_softmax(logits, dim=-1), self.teacher_probs(idx), reduction="sum")
            soft_label = cfg.soft_label_weight * share.mean(kl, share.rows)
        return label, soft_label

    def fit_loss(self, logits: Tensor, idx: Tensor, y: Tensor, labelled: Tensor, share: Share) -> Tensor:
        """The label and soft-label terms of :meth:`__call__`, summed (what the adversarial term repeats)."""
        label, soft_label = self.label_terms(logits, idx, y, labelled, share)
        return label + soft_label

    def similarity(self, student_z: Tensor, idx: Tensor) -> Tensor:
        """Mean squared difference of in-batch cosine similarities, student against teacher, over
        the first ``similarity_rows`` rows of this rank's slice (a batch is a random draw). Pairs
        never cross ranks: under DDP this is a per-rank mean, like the teacher's tokenizer terms."""
        rows = min(idx.numel(), self.config.similarity_rows)
        if rows == 0:
            return student_z.sum() * 0.0
        s = F.normalize(student_z[:rows], dim=-1)
        t = F.normalize(self.teacher_z[idx[:rows]], dim=-1)
        return self.config.similarity_weight * (s @ s.t() - t @ t.t()).pow(2).mean()


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
        """Projected gradient ascent on the label and soft-label losses (NOSMOG's adversarial
        augmentation): a random start in the L-inf ball, ``adversarial_steps`` signed steps of a
        quarter radius. The model runs in evaluation mode here (no batch-norm statistics move)."""
        model = getattr(net, "module", net)  # the attack's passes are not DDP steps
        eps = self.adversarial_eps
        delta = (torch.rand(x.shape, device=x.device) * 2 - 1) * eps
        model.eval()
        try:
            for _ in range(self.config.adversarial_steps):
                delta.requires_grad_(True)
                loss = self._fit_loss(model(x + delta).logits, idx, y, labelled, share)
                (grad,) = torch.autograd.grad(loss, delta)
                delta = (delta.detach() + 0.25 * eps * grad.sign()).clamp(-eps, eps)
        finally:
            model.train()
        return delta.detach()

    def epoch_metrics(self) -> Dict[str, float]:
        return {}


class StudentResult(NamedTuple):
    model: MLPStudent
    metrics: Dict[str, float]
    history: List[Dict[str, float]]


def fit_nodes(split: NodeSplit, config: DistillConfig) -> Tensor:
    """The nodes a student trains on: labelled nodes (``mlp``), else every observed node, less
    the validation nodes when ``config.fits_val`` says they are held out."""
    if config.method == "mlp":
        return split.train_idx
    if config.fits_val(split.setting):
        return split.observed_idx
    observed = split.observed_idx
    return observed[~torch.isin(observed, split.val_idx)]


@torch.no_grad()
def predict_rows(model: MLPStudent, x: Tensor, rows: range, chunk: int = 65_536) -> Tensor:
    """Evaluation-mode logits of ``rows``, ``chunk`` rows at a time (bounded activation memory)."""
    model.eval()
    starts = range(rows.start, rows.stop, chunk)
    parts = [model(x[start : min(start + chunk, rows.stop)]).logits for start in starts]
    return torch.cat(parts) if parts else torch.zeros(0, model.num_classes, device=x.device)


def make_distiller(data: Data, split: NodeSplit, targets: Optional[TeacherTargets], distill: DistillConfig, device):
    """The distiller of a method (None for ``mlp``), its soft labels calibrated on the teacher's
    validation nodes (temperature scaling) unless ``distill.teacher_temperature`` is set."""
    if distill.method == "mlp":
        return None
    if targets is None:
        raise ValueError(f"method {distill.method!r} needs teacher targets")
    targets.check_matches(data, split)
    temperature = distill.teacher_temperature
    if temperature is None:
        calibration = split.for_teacher().val_idx  # a part of the targets: never the student's selection nodes
        temperature = calibrate_temperature(targets.logits[calibration], data.y[calibration])
    soft_labels = None
    if distill.smooth_hops or distill.smooth_labels:
        soft_labels = smooth_soft_labels(
            F.softmax(targets.logits.float() / temperature, dim=-1), observed_edges(data, split), distill.smooth_hops,
            distill.smooth_alpha, data.y if distill.smooth_labels else None, split.train_mask)
    return CodebookDistiller(targets, distill, device, temperature, fit_nodes(split, distill), soft_labels)


def observed_edges(data: Data, split: NodeSplit) -> Tensor:
    """The edges training may see, by global id: inductively none that touches a hidden node."""
    if split.setting is Setting.TRANSDUCTIVE:
        return data.edge_index
    hidden = split.hidden_mask
    return data.edge_index[:, ~(hidden[data.edge_index[0]] | hidden[data.edge_index[1]])]


@torch.no_grad()
def target_stats(distiller: CodebookDistiller, fit_idx: Tensor) -> Dict[str, float]:
    """How sharp the targets are: the teacher temperature, the mean entropy of the soft labels
    and (``vqgraph``) of the soft code assignments of up to 4,096 nodes, and their mean top probability."""
    row_entropy = [entropy(distiller.teacher_probs(part)) * part.numel() for part in fit_idx.split(65_536)]
    stats = {
        "targets/teacher_temperature": distiller.temperature,
        "targets/soft_label_entropy": float(sum(row_entropy) / fit_idx.numel()),
    }
    if distiller.config.uses_soft_tokens and distiller.config.code_target == "soft":
        probs = distiller.teacher_soft_codes(fit_idx[: min(4096, fit_idx.numel())])[0]
        stats["targets/soft_token_entropy"] = float(entropy(probs))
        stats["targets/soft_token_max_prob"] = float(probs.max(-1).values.mean())
    return stats


def fit_student(
    data: Data,
    split: NodeSplit,
    targets: Optional[TeacherTargets],
    student: StudentConfig = StudentConfig(),
    distill: DistillConfig = DistillConfig(),
    train: Optional[TrainConfig] = None,
    log: Optional[Callable[[Dict[str, float], int], None]] = None,
    checkpoint: Optional[Checkpoint] = None,
) -> StudentResult:
    """Train an MLP student on ``data`` with ``split`` (either setting).

    The student sees features of observed nodes only (all nodes transductively; inductively the
    hidden test nodes never enter training). Labels are used on ``split.train_idx`` only. The
    teacher terms use the observed nodes (inductively less the validation nodes, unless
    ``distill.val_targets="fit"``), ``train.batch_size`` nodes at a time (soft code
    assignments are computed per batch: B x K, never N x K beyond one batch). ``train`` defaults
    to :func:`student_train_defaults` of the method. Selection: ``distill.select_by`` (``val``
    by default; ``test`` is the paper's protocol, for comparison only), of the epoch and, given
    ``distill.weight_decays``, of the weight decay (one student each, from the same seed; the
    first wins ties; ``metrics["selected/weight_decay"]`` names it, ``log`` sees its epochs).
    ``checkpoint``: save the training state there and resume from it (with a weight-decay grid,
    one file per candidate; a candidate that finished before a crash is trained again, identically).
    """
    data = ensure_graph(data, "fit_student")
    split.check_graph(data)
    distill.check_learns()
    made_by = targets.config.get("ensemble", 1) if targets is not None else distill.teachers
    if made_by != distill.teachers:
        raise ValueError(f"distill.teachers={distill.teachers} but the targets come from {made_by} teacher(s): "
                         "average several with vqgraph.ensemble_targets")
    train = train or student_train_defaults(distill.method)
    # the teacher's side (calibration, smoothing, code moments) once for every candidate
    distiller = make_distiller(data, split, targets, distill, distributed.local_device(train.device))
    if not distill.weight_decays:
        return _fit_once(data, split, targets, distiller, student, distill, train, log, checkpoint)
    best, seconds = None, 0.0
    for weight_decay in distill.weight_decays:
        own = checkpoint.for_candidate(f"wd{weight_decay:g}") if checkpoint is not None else None
        result = _fit_once(data, split, targets, distiller, student, distill, replace(train, weight_decay=weight_decay),
                           None, own)
        seconds += result.metrics["train_s"]
        monitor = result.metrics["selected_by"]
        if best is None or result.metrics[monitor] > best.metrics[monitor]:
            best = result
            best.metrics["selected/weight_decay"] = weight_decay
    best.metrics["train_s"] = seconds
    for epoch, row in enumerate(best.history if log is not None else ()):
        log(row, epoch)
    return best


def _fit_once(data, split, targets, distiller, student, distill, train, log=None, checkpoint=None) -> StudentResult:
    """One student of :func:`fit_student`, with ``train.weight_decay``, on ``distiller``'s targets."""
    me = distributed.init(train.device)  # torchrun: join the job; else a world of one
    code_dim = targets.z.size(1) if distill.uses_projection and targets is not None else None
    model, streams = loop.build(train, lambda: MLPStudent(data.num_features, data.num_classes, student, code_dim), True)
    objective = DistillObjective(data, split, distiller, distill, student.norm == "batch", train, streams.order,
                                 use_sparse(student.sparse_input, data.x))
    evaluator = Evaluator.for_split(objective.y, split.for_student())  # validation: the student's part
    eval_rows = distributed.row_ranges(data.num_nodes, me.world_size)[me.rank]  # this rank's share of inference
    test_key = "test/acc" if split.setting is Setting.TRANSDUCTIVE else "test_tran/acc"
    monitor = "val/acc" if distill.select_by == "val" else test_key
    evaluate = lambda m: evaluator(predict_rows(m, objective.x, eval_rows), eval_rows)  # noqa: E731
    fitted = loop.fit(model, objective, evaluate, train, monitor, log, desc=f"student {distill.method}",
                      checkpoint=checkpoint, streams=streams)
    start = time.perf_counter()
    logits = predict_rows(model, objective.x, eval_rows)
    infer_seconds = distributed.all_reduce_max(time.perf_counter() - start)
    metrics = evaluator(logits, eval_rows)
    metrics.update(best_epoch=fitted.best_epoch, epochs=len(fitted.history), train_s=fitted.train_seconds,
                   infer_s=infer_seconds, selected_by=monitor)
    if distiller is not None:
        metrics.update(target_stats(distiller, objective.fit_idx))
    return StudentResult(model, metrics, fitted.history)
