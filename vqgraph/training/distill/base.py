"""The loss-term mechanism of distillation: :class:`LossTerm` (a named, weighted term), what it sees
once before training (:class:`TermContext`) and on every batch (:class:`TermInputs`), the teacher's
side of the targets (:class:`TeacherSide`), and the checks of a term's declaration.

Every term of a student's objective goes through it: the built-in ones (:mod:`.terms`, built from
:class:`~.config.DistillConfig`) and a user's (``fit_student(..., terms=[...])``), summed in that
order and logged as ``loss/<name>``. How to write one: docs/extending.md.
"""

from __future__ import annotations

import copy
import math
import numbers
from typing import Iterable, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from vqgraph.losses import code_logits
from vqgraph.training.loop import Share

BUILTIN_TERMS = ("label", "soft_label", "soft_token", "similarity", "adversarial", "neighbour")  # names a user's term may not take
NEEDS = ("soft_labels", "z", "codebook")  # what a term may declare it needs (LossTerm.needs)


class TeacherSide:
    """The teacher's targets on the training device, as the terms read them (global node ids).

    Attributes:
        logits: [N, C] the teacher's logits. z: [N, D] its representations, or None (targets
            without one: ``TeacherTargets.has_z`` False).
        codebook: [K, D] or None. metric: the similarity of the codebook (``code_logits``).
        temperature: divides the logits in the soft labels (calibrated on validation nodes by default).
        calibrated: the temperature applied before a transform of the targets made them (their
            logits are then the transformed probabilities' log, read at temperature 1); None: none.
    """

    def __init__(self, targets, device, temperature: float, calibrated: Optional[float] = None):
        self.temperature, self.calibrated = temperature, calibrated
        self.num_nodes = targets.num_nodes
        self.logits = targets.logits.to(device)
        self.z = targets.z.to(device) if targets.has_z else None  # targets without z hold it as [N, 0]
        self.codebook = targets.codebook.to(device) if targets.codebook is not None else None
        self.metric = targets.metric
        self.device, self._codes, self._device_codes = device, targets.codes, None
        self._soft_labels: Optional[Tensor] = None

    @property
    def soft_labels(self) -> Optional[Tensor]:
        """[N, C] soft labels that replace ``softmax(logits / temperature)`` (None: not replaced)."""
        return self._soft_labels

    @soft_labels.setter
    def soft_labels(self, probs: Tensor) -> None:
        rows = (self.num_nodes, self.logits.size(1))
        if not isinstance(probs, Tensor) or tuple(probs.shape) != rows or not probs.is_floating_point():
            shape = tuple(probs.shape) if isinstance(probs, Tensor) else type(probs).__name__
            raise ValueError(f"soft labels must be a float tensor of shape [N, C] = {list(rows)}, got {shape}")
        sums = probs.detach().double().sum(-1)
        off = int((sums - 1).abs().argmax()) if sums.numel() else 0
        wrong = ("a value that is not finite" if not bool(torch.isfinite(probs).all()) else
                 "a negative value" if bool((probs < 0).any()) else
                 f"row {off} summing to {float(sums[off]):.4g}" if sums.numel() and abs(float(sums[off]) - 1) > 1e-3
                 else None)
        if wrong:
            raise ValueError(f"soft labels must be class probabilities (finite, >= 0, each row summing to 1), got "
                             f"{wrong}: pass softmax(logits / T, dim=-1), not logits")
        self._soft_labels = probs.to(self.device)

    def probs(self, idx: Tensor) -> Tensor:
        """The soft labels of nodes ``idx`` [B, C]."""
        if self._soft_labels is not None:
            return self._soft_labels[idx]
        return F.softmax(self.logits[idx] / self.temperature, dim=-1)

    def codes(self) -> Tensor:
        """[N]: each node's nearest code, on the device."""
        if self._device_codes is None:
            self._device_codes = self._codes.to(self.device)
        return self._device_codes

    @torch.no_grad()
    def soft_codes(self, idx: Tensor, tau: float):
        """Soft code assignments of nodes ``idx`` at temperature ``tau`` [B, K], and the per-node
        sum of t log t [B] (the constant part of a KL to them)."""
        log_t = F.log_softmax(code_logits(self.z[idx], self.codebook, self.metric, 1.0 / tau), dim=-1)
        t = log_t.exp()
        return t, (t * log_t).sum(-1)


class TermContext:
    """What a term's :meth:`LossTerm.setup` sees, once before training.

    Attributes:
        data: the graph as given to ``fit_student``. split: its :class:`~vqgraph.NodeSplit`.
        fit_idx: [M] global ids of the nodes the student trains on, on ``device``.
        x: the features of all nodes as the student trains on them, on ``device`` ([N, F]; for an
            MLP student with sparse features a :class:`~vqgraph.data.sparse.SparseRows`).
        targets: the :class:`~vqgraph.TeacherTargets` given (None for ``mlp``).
        teacher: the targets on ``device`` as terms read them (:class:`TeacherSide`; None for ``mlp``).
        device: the training device.
    """

    def __init__(self, data, split, fit_idx: Tensor, x, targets, teacher: Optional[TeacherSide], device):
        self.data, self.split, self.fit_idx, self.x = data, split, fit_idx, x
        self.targets, self.teacher, self.device = targets, teacher, device

    @property
    def soft_labels(self) -> Optional[Tensor]:
        """[N, C] the teacher's soft labels of every node, as the terms will read them (None without a
        teacher). Assign [N, C] class probabilities to replace them: the setups of later terms and
        every batch's :attr:`TermInputs.soft_labels` then see yours (the built-in smoothing does so)."""
        if self.teacher is None:
            return None
        if self.teacher.soft_labels is not None:
            return self.teacher.soft_labels
        return torch.cat([self.teacher.probs(part) for part in torch.arange(self.teacher.num_nodes,
                                                                             device=self.device).split(65_536)])

    @soft_labels.setter
    def soft_labels(self, probs: Tensor) -> None:
        if self.teacher is None:
            raise ValueError("no soft labels to replace: method 'mlp' trains without teacher targets")
        self.teacher.soft_labels = probs


class TermInputs:
    """What a term sees on every batch (this process's rows of the global batch).

    Attributes:
        idx: [B] global node ids. x: [B, F] their features as the student saw them (a
            ``torch.sparse_csr`` tensor when an MLP student holds sparse features and no term augments).
        out: the student's outputs of these rows, ``out.logits`` [B, C] and ``out.z`` [B, D] (its
            representation in the teacher's code space; None when no term needs it).
        y: [B] labels, -1 on every row that is not a labelled training node. labelled: [B] bool.
        share: the global batch these rows are a slice of (:class:`~vqgraph.training.Share`).
        teacher: the :class:`TeacherSide` (None for ``mlp``).
        augmented: the student's outputs of the rows this term's :meth:`LossTerm.augment` added.
    """

    def __init__(self, idx: Tensor, x: Tensor, y: Tensor, labelled: Tensor, share: Share,
                 teacher: Optional[TeacherSide] = None, out=None, augmented=None):
        self.idx, self.x, self.y, self.labelled, self.share = idx, x, y, labelled, share
        self.teacher, self.out, self.augmented = teacher, out, augmented
        self._read: dict = {}  # what the teacher's side gave for these rows, shared with every copy (replace)

    @property
    def soft_labels(self) -> Optional[Tensor]:
        """[B, C] the teacher's soft labels of these rows (None without a teacher)."""
        if self.teacher is None:
            return None
        if "soft_labels" not in self._read:  # once per batch, however many terms read it
            self._read["soft_labels"] = self.teacher.probs(self.idx)
        return self._read["soft_labels"]

    @property
    def teacher_z(self) -> Optional[Tensor]:
        """[B, D] the teacher's representations of these rows (None if the targets have none)."""
        return None if self.teacher is None or self.teacher.z is None else self.teacher.z[self.idx]

    @property
    def codes(self) -> Optional[Tensor]:
        """[B] the teacher's code of each row (None without a codebook)."""
        return None if self.codebook is None else self.teacher.codes()[self.idx]

    @property
    def codebook(self) -> Optional[Tensor]:
        """[K, D] the teacher's codebook (None without one)."""
        return None if self.teacher is None else self.teacher.codebook

    def mean(self, total: Tensor, rows: str = "all") -> Tensor:
        """``total``, a sum over this process's rows, divided by the number of rows of the GLOBAL
        batch (``rows="all"``) or of its labelled rows (``"labelled"``): under ``torchrun`` the
        mean over processes of these is the global batch's mean, as for the built-in terms."""
        if rows not in ("all", "labelled"):
            raise ValueError(f"TermInputs.mean: rows must be 'all' or 'labelled', got {rows!r}")
        return self.share.mean(total, self.share.rows if rows == "all" else self.share.labelled)

    def replace(self, **changes) -> "TermInputs":
        """A copy with ``changes``, sharing the teacher's rows read for this batch (unless ``idx`` changes)."""
        new = copy.copy(self)
        for key, value in changes.items():
            setattr(new, key, value)
        if "idx" in changes:
            new._read = {}
        return new


class LossTerm:
    """A named, weighted loss term of distillation: subclass it, set ``name`` and implement
    ``__call__``; pass instances as ``fit_student(..., terms=[MyTerm(weight=0.1)])``.

    Each batch, ``weight * term(inputs)`` is added to the loss (after the built-in terms) and logged
    as ``loss/<name>``; a term of weight 0 is not called (logged as 0).

    Attributes:
        name: an identifier, unique among the terms and not a built-in term's name (:data:`BUILTIN_TERMS`).
        weight: finite, >= 0.
        needs: what the term reads beyond the student's logits, checked before training (for a
            term of non-zero weight): ``"soft_labels"`` (a teacher: method ``glnn`` or ``vqgraph``),
            ``"z"`` (the student's representation in the teacher's code space, and the teacher's
            ``z``: the MLP student then gets its projection; a custom student must return
            ``(logits, hidden)``), ``"codebook"`` (the teacher's codebook and codes).
    """

    name: str = ""
    needs: Sequence[str] = ()

    def __init__(self, weight: float = 1.0, name: Optional[str] = None):
        self.weight = weight
        if name is not None:
            self.name = name

    def setup(self, context: TermContext) -> None:
        """Called once before training, for every term in order (at weight 0 too); may prepare
        per-node tables or replace ``context.soft_labels``."""

    def augment(self, net, inputs: TermInputs) -> Optional[Tensor]:
        """Optional: extra input rows [B', F] (dense) to run through the student in the batch's
        forward pass; their outputs reach :meth:`__call__` as ``inputs.augmented``. None: no rows."""
        return None

    def __call__(self, inputs: TermInputs) -> Tensor:
        """The UNWEIGHTED term of this batch: a scalar tensor (normalise sums with :meth:`TermInputs.mean`)."""
        raise NotImplementedError(f"loss term {self.name!r} ({type(self).__name__}) does not implement __call__")

    @property
    def augments(self) -> bool:
        """Whether this term adds rows to the forward pass (overrides :meth:`augment`)."""
        return type(self).augment is not LossTerm.augment

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight!r})"


def check_terms(terms: Iterable[LossTerm]) -> List[LossTerm]:
    """A user's terms as a list, each declaration checked: a :class:`LossTerm`, an identifier name
    that no built-in or other term has, a finite weight >= 0, known needs, ``__call__`` implemented.
    Raises TypeError or ValueError naming the term (``terms[i]``) and what to do."""
    if isinstance(terms, LossTerm) or isinstance(terms, (str, bytes)) or not isinstance(terms, Iterable):
        raise TypeError(f"terms must be a list of vqgraph.LossTerm instances, got {type(terms).__name__}: "
                        "pass terms=[MyTerm(weight=...)]")
    checked, names = list(terms), {}
    for i, term in enumerate(checked):
        where = f"terms[{i}]"
        if not isinstance(term, LossTerm):
            raise TypeError(f"{where} is a {type(term).__name__}, not a vqgraph.LossTerm: subclass LossTerm, set its "
                            "name and implement __call__(inputs) -> scalar tensor")
        _check_declaration(term, where)
        if term.name in names:
            raise ValueError(f"terms[{names[term.name]}] and {where} are both named {term.name!r}: each term's name "
                             "must be unique (it is logged as loss/<name>)")
        names[term.name] = i
    return checked


def _check_declaration(term: LossTerm, where: str) -> None:
    name = getattr(term, "name", None)
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"{where}.name must be an identifier (letters, digits and _, logged as loss/<name>), got "
                         f"{name!r}: set name = 'my_term' in the class or pass name=")
    if name in BUILTIN_TERMS:
        raise ValueError(f"{where}.name {name!r} is a built-in term's name {BUILTIN_TERMS}: choose another")
    weight = getattr(term, "weight", None)
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not math.isfinite(weight) or weight < 0:
        raise ValueError(f"{where} ({name!r}): weight must be a finite number >= 0, got {weight!r}"
                         + ("" if hasattr(term, "weight") else " (call super().__init__(weight) in its __init__)"))
    needs = getattr(term, "needs", ())
    if not isinstance(needs, (tuple, list)) or not all(need in NEEDS for need in needs):
        raise ValueError(f"{where} ({name!r}): needs must be a tuple of {NEEDS}, got {needs!r}")
    if type(term).__call__ is LossTerm.__call__:
        raise TypeError(f"{where} ({name!r}): {type(term).__name__} does not implement __call__(inputs) -> "
                        "scalar tensor")


def check_value(term: LossTerm, value, first: bool) -> Tensor:
    """``value``, the unweighted output of a user's ``term``, if it is a floating scalar tensor
    (and, on the first batch, finite); else ValueError naming the term."""
    if not isinstance(value, Tensor) or value.dim() != 0 or not value.is_floating_point():
        got = f"shape {list(value.shape)}, {value.dtype}" if isinstance(value, Tensor) else type(value).__name__
        raise ValueError(f"loss term {term.name!r} ({type(term).__name__}) must return a floating scalar tensor (a sum "
                         f"normalised with inputs.mean(...)), got {got}")
    if first and not bool(torch.isfinite(value.detach())):
        raise ValueError(f"loss term {term.name!r} ({type(term).__name__}) returned {float(value.detach())} on the "
                         "first batch: check its arithmetic (a log of 0, a division by an empty count)")
    return value


def check_needs(terms: Sequence[LossTerm], teacher: Optional[TeacherSide], method: str, targets=None) -> None:
    """Refuse a term of non-zero weight whose needs the teacher's ``targets`` cannot meet, naming
    the term, what is missing and the fix (a missing ``z`` through ``targets.require_z``, the one
    check of it)."""
    for term in terms:
        for need in term.needs if term.weight else ():
            if teacher is None:
                raise ValueError(f"loss term {term.name!r} needs the teacher's {need}, but method {method!r} trains on "
                                 "labels only: use method 'glnn' (soft_label_weight=0 for labels alone) with targets")
            if need == "z" and teacher.z is None:
                targets.require_z(f"loss term {term.name!r}")  # raises, naming how to make targets with z
            if need == "codebook" and teacher.codebook is None:
                raise ValueError(f"loss term {term.name!r} needs the teacher's codebook, and these targets have none "
                                 "(a teacher without tokenizer): fit one with vqgraph.fit_tokenizer, or use method "
                                 "'glnn'")
