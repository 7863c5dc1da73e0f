"""What a student learns from (:class:`DistillConfig`) and the one place for a method's defaults
(:func:`method_defaults`: the student's architecture, its distillation terms and its training)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import NamedTuple, Optional, Tuple

from vqgraph.data.splits import Setting
from vqgraph.models.student import StudentConfig
from vqgraph.training.loop import TrainConfig

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
        if self.smooth_hops < 0 or not 0.0 <= self.smooth_alpha <= 1.0:
            raise ValueError(f"need smooth_hops >= 0 and 0 <= smooth_alpha <= 1, got {self.smooth_hops}, "
                             f"{self.smooth_alpha}")
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
