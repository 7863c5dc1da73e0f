"""What a student learns from (:class:`DistillConfig`) and the one place for a method's defaults
(:func:`method_defaults`: the student's architecture, its distillation terms and its training)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, NamedTuple, Optional, Tuple

from vqgraph.data.splits import Setting
from vqgraph.models.student import StudentConfig
from vqgraph.training.distill.base import LossTerm
from vqgraph.training.distill.terms import (
    CODE_TERMS,
    AdversarialFeatures,
    LabelCE,
    NeighbourAgreement,
    RepresentationSimilarity,
    Smoothing,
    SoftLabelKL,
)
from vqgraph.training.loop import TrainConfig
from vqgraph.utils.settings import check_fields, choice, ranged

METHODS = ("mlp", "glnn", "vqgraph")
VAL_TARGETS = ("auto", "fit", "held_out")
CODE_TARGETS = ("soft", "index", "class")
SELECT_BY = ("val", "test")
PROPAGATE = ("none", "cs")


@dataclass(frozen=True)
class DistillConfig:
    """What the student learns from, and how much (flat, each with its default)."""

    method: str = choice("vqgraph", METHODS)  # mlp (labels) | glnn (+ soft labels) | vqgraph (+ soft codes)
    label_weight: float = ranged(1.0, ge=0)  # cross-entropy on labelled training nodes
    soft_label_weight: float = ranged(1.0, ge=0)  # KL to the teacher's soft labels (glnn, vqgraph)
    teacher_temperature: Optional[float] = ranged(None, gt=0)  # divides teacher logits; None: calibrated on val nodes
    soft_token_weight: float = ranged(1.0, ge=0)  # beta: weight of the soft code-assignment KL (vqgraph)
    token_temperature: float = ranged(0.1, gt=0)  # tau of the code-assignment softmaxes (cosine scores in [-1, 1])
    code_target: str = choice("soft", CODE_TARGETS)  # soft: KL over soft code assignments | index: CE to the teacher's code | class: its class mix
    select_by: str = choice("val", SELECT_BY)  # val: validation-selected (honest) | test: the paper's protocol, for comparison only
    val_targets: str = choice("auto", VAL_TARGETS)  # fit | held_out: train on validation nodes' targets? (auto: held_out inductively)
    similarity_weight: float = ranged(0.0, ge=0)  # in-batch representation-similarity term (NOSMOG); glnn and vqgraph
    similarity_rows: int = ranged(1024, ge=2)  # rows of each batch the similarity matrices span
    adversarial_weight: float = ranged(0.0, ge=0)  # loss on PGD-perturbed features (NOSMOG's weight is 0.1)
    adversarial_eps: float = ranged(0.1, ge=0)  # L-inf radius, in units of the features' root mean square
    adversarial_steps: int = ranged(3, ge=1)  # projected gradient ascent steps per batch
    smooth_hops: int = ranged(0, ge=0)  # soft labels mixed with reliable neighbours' over the observed graph, hops rounds (0: off)
    smooth_alpha: float = ranged(0.5, ge=0, le=1)  # weight of the neighbours' mean in each round
    smooth_labels: bool = False  # the training nodes enter the smoothing as their one-hot labels
    neighbour_weight: float = ranged(0.0, ge=0)  # agreement of the student's predictions on observed neighbours (0: off)
    propagate: str = choice("none", PROPAGATE)  # cs: soft labels Corrected & Smoothed with the training labels over the observed graph
    cs_correct_alpha: float = ranged(0.979, ge=0, le=1)  # C&S Correct: weight of the spread residuals each round (0: no Correct step)
    cs_correct_hops: int = ranged(50, ge=1)  # rounds of the Correct step
    cs_smooth_alpha: float = ranged(0.756, ge=0, le=1)  # C&S Smooth: weight of the neighbours each round (0: no Smooth step)
    cs_smooth_hops: int = ranged(50, ge=1)  # rounds of the Smooth step

    def __post_init__(self):
        check_fields(self)
        if self.similarity_weight and self.method == "mlp":
            raise ValueError("similarity_weight needs a teacher: use method 'glnn' or 'vqgraph'")
        if self.propagate != "none" and self.method == "mlp":
            raise ValueError(f"propagate={self.propagate!r} transforms the teacher's soft labels, and method 'mlp' has "
                             "none: use method 'glnn' or 'vqgraph', or propagate='none'")

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

    def loss_terms(self) -> List[LossTerm]:
        """The built-in loss terms these settings ask for, new objects in the order of their sum
        (:mod:`.terms`): ``label``, ``soft_label`` (with the smoothing of the soft labels, if
        asked) and ``soft_token`` always (weight 0 where the method does not use them), then
        ``similarity``, ``adversarial`` and ``neighbour`` when their weights are not 0."""
        label = LabelCE(self.label_weight)
        smoothing = Smoothing(self.smooth_hops, self.smooth_alpha, self.smooth_labels) \
            if self.smooth_hops or self.smooth_labels else None
        soft_label = SoftLabelKL(self.soft_label_weight if self.uses_soft_labels else 0.0, smoothing)
        code = CODE_TERMS[self.code_target](self.soft_token_weight if self.uses_soft_tokens else 0.0,
                                            self.token_temperature)
        terms: List[LossTerm] = [label, soft_label, code]
        if self.similarity_weight:
            terms.append(RepresentationSimilarity(self.similarity_weight, self.similarity_rows))
        if self.adversarial_weight:
            terms.append(AdversarialFeatures(self.adversarial_weight, self.adversarial_eps, self.adversarial_steps,
                                             (label, soft_label)))
        if self.neighbour_weight:
            terms.append(NeighbourAgreement(self.neighbour_weight))
        return terms

    def to_dict(self) -> dict:
        return asdict(self)


MLP_WEIGHT_DECAYS = (5e-4, 5e-3, 5e-2)


class MethodDefaults(NamedTuple):
    """A method's defaults: the student's architecture, its distillation and its optimisation, and
    the weight decays to choose among on validation (``()``: ``train.weight_decay`` alone). A
    student is trained with one weight decay; choosing among several is the application layer's
    (:func:`vqgraph.app.run.fit_selected_student`)."""

    student: StudentConfig
    distill: DistillConfig
    train: TrainConfig
    weight_decays: Tuple[float, ...] = ()


def method_defaults(method: str = "vqgraph") -> MethodDefaults:
    """The defaults of ``method``, for ``fit_student`` and for experiment configs.

    * student: distilled students (``glnn``, ``vqgraph``) batch-normalise their hidden layer,
      the label-only ``mlp`` does not;
    * distill: the ``mlp`` chooses its weight decay on validation among
      :data:`MLP_WEIGHT_DECAYS`, as a linear baseline chooses its penalty (the right strength
      depends on the graph's features); the distilled methods train one student;
    * train: no weight decay for the distilled students (decay flattens what distillation
      transfers); the ``mlp`` takes 5e-3 (GLNN's MLP setting) and, taking one step an epoch
      (its labelled nodes), a patience of 200 epochs.

    The measurements behind each choice are in docs/results.md, "The student's defaults".
    """
    if method == "mlp":  # one step an epoch (the labelled nodes): patience in steps
        return MethodDefaults(StudentConfig(norm="none"), DistillConfig(method=method),
                              TrainConfig(lr=0.01, weight_decay=5e-3, max_epochs=2000, patience=200, batch_size=4096),
                              MLP_WEIGHT_DECAYS)
    return MethodDefaults(StudentConfig(norm="batch"), DistillConfig(method=method),
                          TrainConfig(lr=0.01, weight_decay=0.0, patience=50, batch_size=4096))
