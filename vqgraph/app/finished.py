"""Finished runs: how the configuration a finished run recorded in its ``results.json`` differs
from the one asked for now, so that a finished run is reused only when it is the same run."""

from __future__ import annotations

import dataclasses
import functools
import json
from pathlib import Path
from typing import Dict, List, Optional

from vqgraph.app.cache import observed_density
from vqgraph.app.task import DataConfig, prepare_task
from vqgraph.errors import ConfigError
from vqgraph.training.teacher import sparse_teacher

DISPLAY_ONLY = ("progress", "checkpoint_epochs", "checkpoint_minutes")  # change how a run is shown and saved, not it
IDENTITY = ("dataset", "setting", "method", "teacher_kind", "seed")  # recorded beside the config's sections


def config_changes(result: Dict, spec, data_root=None) -> List[str]:
    """How the config a finished run recorded differs from the one ``spec`` would use now, as
    ``section.key: was -> now`` lines. Keys the run did not record (added to the code since) are
    not compared, nor are the progress display and the checkpoint schedule (:data:`DISPLAY_ONLY`),
    nor ``teacher.tokenize`` of a full-batch teacher (its tokenizer sees every node either way, as
    :func:`~vqgraph.app.cache.teacher_key` says); ``teacher.sparse_input`` is compared by its
    effect on the run's features (``auto`` against ``off`` on dense ones is no change)."""
    cfg = spec.config()
    current = json.loads(json.dumps(cfg.to_dict()))  # through JSON, as the run recorded it
    recorded = result.get("config", {})
    inert = {("teacher", "tokenize")} if current.get("train", {}).get("batch_size") is None else set()
    inert |= {(section, key) for section in ("train", "student_train") for key in DISPLAY_ONLY}
    changes = [
        (section, key, recorded[section][key], now)
        for section, values in current.items()
        for key, now in values.items()
        if key in recorded.get(section, {}) and recorded[section][key] != now and (section, key) not in inert
    ]
    if any((section, key) == ("teacher", "sparse_input") and "auto" in (was, now) for section, key, was, now in changes):
        # auto acts by the features' density: the same teacher as the value it resolves to
        share = _density(spec.dataset, spec.setting, spec.seed, json.dumps(current["data"], sort_keys=True), data_root)
        effect = lambda value: "on" if sparse_teacher(dataclasses.replace(cfg.teacher, sparse_input=value),  # noqa: E731
                                                      cfg.train, share) else "off"
        changes = [c for c in changes if c[:2] != ("teacher", "sparse_input") or effect(c[2]) != effect(c[3])]
    return [f"{section}.{key}: {was!r} -> {now!r}" for section, key, was, now in changes]


RECORD_KEYS = ("method", "metrics", "teacher_metrics", "config")  # what every record of experiments.run holds


def read_record(path: Path) -> Dict:
    """The record of a student run (``results.json`` of :func:`~vqgraph.app.run.run_experiment`) at
    ``path``; a ValueError saying what else it is (not JSON, a teacher's record, another object)."""
    recorded = json.loads(Path(path).read_text())  # not JSON: a JSONDecodeError, a ValueError
    if isinstance(recorded, dict) and all(key in recorded for key in RECORD_KEYS):
        return recorded
    if isinstance(recorded, dict) and "artifact" in recorded and "method" not in recorded:
        raise ValueError("it is a teacher's record (written by experiments.train_teacher), not a student run's")
    missing = [key for key in RECORD_KEYS if not isinstance(recorded, dict) or key not in recorded]
    raise ValueError(f"it lacks the keys {missing} of a student run's record")


@functools.lru_cache(maxsize=64)
def _density(dataset: str, setting: str, seed: int, data_json: str, data_root) -> float:
    """The observed features' density of a run's task (loaded once per dataset, setting, seed)."""
    return observed_density(prepare_task(dataset, setting, seed, DataConfig(**json.loads(data_json)), data_root))


def finished_results(out: Path, config: Dict, spec, data_root=None, fresh: bool = False) -> Optional[Dict]:
    """The results of the finished run in ``out`` when it is the run ``spec`` asks for (``config``:
    the run's identity and sections, as :func:`~vqgraph.app.run.run_experiment` records them);
    None when there is none, or with ``fresh`` (its ``results.json`` is then removed, so that the
    folder holds no finished run until the new one is). A finished run of another configuration
    is a ConfigError naming the folder and what differs, never silently overwritten."""
    path = Path(out) / "results.json"
    if not path.is_file():
        return None
    try:
        recorded = read_record(path)
        was = recorded["config"]
        changes = [f"{key}: {was[key]!r} -> {config[key]!r}" for key in IDENTITY if key in was and was[key] != config[key]]
        changes += config_changes(recorded, spec, data_root)
        what = "a finished run of another configuration"
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        recorded, what, changes = None, f"a {path.name} that is not a run's record", [f"{type(err).__name__}: {err}"]
    if fresh:
        path.unlink()
        return None
    if changes:
        raise ConfigError(f"output folder {out} holds {what} ({'; '.join(changes)}): choose another --out, "
                          "or pass --fresh to replace it")
    return recorded
