"""The content-addressed teacher cache: a teacher is found by a hash of everything that determines it.

``<cache>/<key>/teacher.pt`` holds a teacher's targets (:class:`~vqgraph.targets.TeacherTargets`);
``<cache>/<key>/checkpoint.pt`` its training state while it trains. :func:`teacher_key` hashes
the dataset, setting, seed and the ``data``, ``teacher`` and ``train`` sections (keys that do not
change the result left out), so every run that needs the same teacher reuses one entry.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from vqgraph import distributed
from vqgraph.app.config import ExperimentConfig, to_dict
from vqgraph.app.task import Task
from vqgraph.data.sparse import density
from vqgraph.errors import ArtifactMismatchError
from vqgraph.targets import TeacherTargets
from vqgraph.training import fit_teacher
from vqgraph.training.loop import NOT_RESULT_KEYS
from vqgraph.training.teacher import sparse_teacher

# keys added later, with the value that reproduces what came before: left out of the hash at that value
LATER_KEYS = {"train": {"optimizer": "adam", "ema": 0.0},
              "teacher": {"deep_weight_decay": None, "tokenize": "all", "sparse_input": "off"},
              "data": {"val_split": "shared"}}


def observed_density(task: Task) -> float:
    """The share of non-zero features over the nodes the teacher trains on (the observed ones),
    which decides ``sparse_input="auto"``."""
    return density(task.split.observed_rows(task.data.x))


def teacher_key(dataset: str, setting: str, seed: int, cfg: ExperimentConfig, x=None) -> str:
    """Hash of everything that determines a teacher (the device and progress bar excluded).
    Given the features the teacher trains on ``x`` (or their density), ``teacher.sparse_input``
    counts by its effect (``auto`` on dense features is ``off``: the same teacher, the same entry)."""
    train = {k: v for k, v in to_dict(cfg.train).items() if k not in NOT_RESULT_KEYS}
    teacher, data = to_dict(cfg.teacher), to_dict(cfg.data)
    if x is not None:
        teacher["sparse_input"] = "on" if sparse_teacher(cfg.teacher, cfg.train, x) else "off"
    for section, values in (("train", train), ("teacher", teacher), ("data", data)):
        for key, default in LATER_KEYS[section].items():  # added later, at their default: earlier caches stay valid
            if key in values and values[key] == default:
                del values[key]
    if train.get("batch_size") is None:  # the tokenizer sees every node of a full batch either way
        teacher.pop("tokenize", None)
    blob = json.dumps(
        {"dataset": dataset, "setting": setting, "seed": seed, "data": data,
         "teacher": teacher, "train": train},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def identity(sections: Dict[str, Any], **extra) -> Dict[str, Any]:
    """A flat ``{"section.key": value}`` of what determines a run (JSON values; the keys of
    :data:`~vqgraph.training.loop.NOT_RESULT_KEYS` left out): a checkpoint's identity."""
    flat = {f"{name}.{k}": v for name, values in sections.items() for k, v in values.items()
            if k not in NOT_RESULT_KEYS}
    return json.loads(json.dumps({**flat, **extra}))


def teacher_identity(cfg: ExperimentConfig, dataset: str, setting: str, seed: int) -> Dict[str, Any]:
    """The identity of a teacher's training checkpoint (:func:`identity` of its sections)."""
    return identity({"data": to_dict(cfg.data), "teacher": to_dict(cfg.teacher), "train": to_dict(cfg.train)},
                    dataset=dataset, setting=setting, seed=seed)


def _read_entry(artifact: Path, task: Task) -> Optional[TeacherTargets]:
    """The targets of a cache entry, or None when there is none or it is unusable (reported)."""
    if not artifact.is_file():
        return None
    try:
        targets = TeacherTargets.load(artifact)
        targets.check_matches(task.data, task.split)
    except ArtifactMismatchError as err:
        warnings.warn(f"teacher cache entry {artifact} is unusable and will be retrained: {err}", stacklevel=3)
        return None
    return targets


def cached_teacher(task: Task, cfg: ExperimentConfig, seed: int, cache: Path, log=None,
                   fresh: bool = False, say=None) -> Tuple[TeacherTargets, Path, float]:
    """The teacher's targets from ``cache`` (by :func:`teacher_key`), else trained and saved there.

    Returns ``(targets, artifact path, training seconds)`` (0 for a cache hit). Rank 0 decides
    whether the cache is hit, so that every rank takes the same path; it alone writes. An entry
    that cannot be read (truncated, corrupt, not a teacher artifact) or that was made for another
    graph or split is reported with its path and treated as missing: the teacher is retrained
    and the entry replaced. Training checkpoints to ``checkpoint.pt`` beside the entry and resumes
    from it (``fresh``: start over). ``say(text)``, when given, hears which of the two it is."""
    data, split = task.data, task.split
    artifact = cache / teacher_key(data.name, split.setting.value, seed, cfg, observed_density(task)) / "teacher.pt"
    targets = _read_entry(artifact, task) if distributed.world().is_main else None
    hit = distributed.broadcast_object(targets is not None)
    if say is not None:
        kind, entry = cfg.teacher.conv, artifact.parent
        say(f"teacher: {kind} from the cache ({entry})" if hit
            else f"teacher: training {kind} (at most {cfg.train.max_epochs} epochs; cached in {entry})")
    if hit:
        if not distributed.world().is_main:
            targets = TeacherTargets.load(artifact)
        return targets, artifact, 0.0
    who = teacher_identity(cfg, data.name, split.setting.value, seed)
    checkpoint = cfg.train.checkpoint(artifact.with_name("checkpoint.pt"), who, fresh)
    result = fit_teacher(data, split, cfg.teacher, cfg.train, log=log, checkpoint=checkpoint,
                         record={"data": to_dict(cfg.data)})
    if distributed.world().is_main:
        result.targets.save(artifact)
    return result.targets, artifact, result.metrics["train_s"]
