"""The method chosen on validation: what a graph without a preset recipe trains by default.

A preset's recipe (``vqgraph/presets/<dataset>.yaml``) was chosen on validation over seeds of
that graph. A graph without one (a user's own file, a ``pyg:`` dataset, the heterophilic graphs)
gets method ``auto``: :func:`run_choice` trains every :data:`CANDIDATES` student on the same
teacher kind and seed, picks the one with the best validation accuracy, and trains it as the
run. On graphs whose neighbours disagree (Texas, Cornell, Wisconsin) the label-only ``mlp`` is
10 to 18 points above every distilled student, and validation sees it
(docs/results.md, "A default that fits the graph").

The candidates are compared on validation nodes that neither the teacher nor their own targets
have seen: each candidate trains with ``data.val_split=halves`` (the teacher selects its epoch and
temperature on one half of each class's validation nodes, the student on the other). With the
shared protocol a transductive student fits the teacher's outputs on the very nodes the teacher
was selected on, which flatters distillation against ``mlp``. The chosen method is then trained
again with the run's own protocol (the teacher on all validation nodes), in the run's folder; the
candidates' runs stay in ``<out>/choice/<candidate>/``, so that a second call reuses them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from vqgraph import distributed
from vqgraph.app.config import AUTO_METHOD, parse_overrides
from vqgraph.app.records import write_json
from vqgraph.app.run import RunSpec, check_device, check_output, run_experiment
from vqgraph.errors import ConfigError
from vqgraph.utils.io import remove_if_empty

CHOICE_PROTOCOL = "data.val_split=halves"


@dataclass(frozen=True)
class Candidate:
    """One method :func:`run_choice` may choose: a name (its folder and its line in the record),
    a method and that method's own ``section.key=value`` overrides."""

    name: str
    method: str
    overrides: Tuple[str, ...] = ()


# in order: a tie on validation goes to the earlier (the simpler) one
CANDIDATES = (
    Candidate("mlp", "mlp"),
    Candidate("glnn", "glnn"),
    # the presets' inductive recipe (experiments/results/recipe_inductive.md)
    Candidate("vqgraph+adversarial", "vqgraph",
              ("distill.adversarial_weight=0.1", "distill.adversarial_eps=0.3", "distill.label_weight=0")),
)


def _keys(overrides: Sequence[str]) -> set:
    return {f"{section}.{key}" for section, values in parse_overrides(overrides).items() for key in values}


def candidate_spec(spec: RunSpec, candidate: Candidate, protocol: Optional[str] = CHOICE_PROTOCOL) -> RunSpec:
    """``spec`` (method ``auto``) as ``candidate``'s run: the candidate's method and overrides,
    then the run's own overrides (which win where both set a key), then ``protocol`` (which
    replaces the run's ``data.val_split``, if it sets one); ``protocol=None``: the run's own."""
    given = _keys(spec.overrides)
    own = [item for item in candidate.overrides if item.split("=", 1)[0] not in given]
    overrides = [*own, *spec.overrides]
    if protocol is not None:
        key = protocol.split("=", 1)[0]
        overrides = [item for item in overrides if item.split("=", 1)[0] != key] + [protocol]
    return dataclasses.replace(spec, method=candidate.method, overrides=tuple(overrides))


def check_candidates(spec: RunSpec, candidates: Sequence[Candidate] = CANDIDATES) -> None:
    """Build every candidate's config and the chosen run's, so that a bad override is an error
    before any training (:class:`~vqgraph.errors.ConfigError` naming the candidate)."""
    if not candidates:
        raise ConfigError("method auto needs at least one candidate")
    names = [candidate.name for candidate in candidates]
    if len(set(names)) != len(names):
        raise ConfigError(f"method auto: candidate names must be unique, got {names}")
    for candidate in candidates:
        for protocol in (CHOICE_PROTOCOL, None):
            try:
                candidate_spec(spec, candidate, protocol).config()
            except ConfigError as err:
                raise ConfigError(f"method auto, candidate {candidate.name!r}: {err}") from err


def choose(scores: Dict[str, float]) -> str:
    """The name with the highest score; the first in order on a tie."""
    return max(scores, key=lambda name: (scores[name], -list(scores).index(name)))


def run_choice(spec: RunSpec, out: Path, cache: Path, data_root=None, wandb: str = "off", project: str = "vqgraph",
               fresh: bool = False, download: bool = False, candidates: Sequence[Candidate] = CANDIDATES,
               chosen_by: str = "method auto") -> Optional[dict]:
    """Choose the method of ``spec`` (method ``auto``) on validation and train it.

    Each of ``candidates`` is trained by :func:`~vqgraph.app.run.run_experiment` with
    ``data.val_split=halves`` in ``out/choice/<name>/`` (a finished one is reused); the one with
    the highest ``val/acc`` (on the student's half; the first on a tie) is then trained with the
    run's own overrides in ``out``. Its ``results.json`` gains ``choice``: every candidate's
    method, overrides and validation accuracy, the chosen one and the protocol. Returns those
    results on rank 0 (None on the others, as :func:`run_experiment`).

    Raises:
        ConfigError: ``spec`` is not of method ``auto``, a candidate's config is invalid, or the
            device or ``out`` is refused (:func:`~vqgraph.app.run.check_output`), before any training.
    """
    if spec.method != AUTO_METHOD:
        raise ConfigError(f"run_choice: the spec's method is {spec.method!r}, not {AUTO_METHOD!r}")
    check_candidates(spec, candidates)
    check_device(candidate_spec(spec, candidates[0], None).config())
    out = check_output(out, cache)  # before any candidate trains under it
    scores = {}
    for candidate in candidates:
        own = candidate_spec(spec, candidate)
        folder = out / "choice" / candidate.name
        try:
            results = run_experiment(own, folder, cache, data_root, wandb, project, fresh, download,
                                     f"a candidate of {chosen_by} ({CHOICE_PROTOCOL})")
        except Exception:  # leave no empty folders behind: the caller removes `out` when it is empty
            for made in (folder, folder.parent):
                remove_if_empty(made)
            raise
        scores[candidate.name] = distributed.broadcast_object(results["metrics"]["val/acc"] if results else None)
    name = choose(scores)
    chosen = next(candidate for candidate in candidates if candidate.name == name)
    ranking = ", ".join(f"{other} {scores[other]:.4f}" for other in sorted(scores, key=lambda n: -scores[n]))
    why = (f"{chosen_by}: {name} chosen on validation among {', '.join(scores)} (val/acc on the student's half "
           f"of validation, {CHOICE_PROTOCOL}: {ranking})")
    results = run_experiment(candidate_spec(spec, chosen, None), out, cache, data_root, wandb, project, fresh,
                             download, why)
    if results is None:
        return None
    results["choice"] = {
        "chosen": name, "protocol": CHOICE_PROTOCOL, "ties": "the first candidate in order",
        "candidates": {c.name: {"method": c.method, "overrides": list(c.overrides), "val/acc": scores[c.name],
                                "run": f"choice/{c.name}"} for c in candidates},
    }
    write_json(out / "results.json", {k: v for k, v in results.items() if k != "reused"})
    return results
