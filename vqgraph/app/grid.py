"""Grids of runs that resume: a finished run is reused only if it was made with the config asked for."""

from __future__ import annotations

import dataclasses
import functools
import json
import warnings
from pathlib import Path
from typing import Dict, List

from vqgraph.app.cache import observed_density
from vqgraph.app.run import RunSpec, run_experiment
from vqgraph.app.task import DataConfig, prepare_task
from vqgraph.errors import CheckpointMismatchError, ConfigError
from vqgraph.training.teacher import sparse_teacher


def _clean_partial(folder: Path) -> None:
    """Remove temporary files a killed run left behind (results are only ever renamed into place)."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink()


def config_changes(result: Dict, spec: RunSpec, data_root=None) -> List[str]:
    """How the config a finished run recorded differs from the one ``spec`` would use now, as
    ``section.key: was -> now`` lines. Keys the run did not record (added to the code since) are
    not compared, nor is ``teacher.tokenize`` of a full-batch teacher (its tokenizer sees every
    node either way, as :func:`~vqgraph.app.cache.teacher_key` says); ``teacher.sparse_input``
    is compared by its effect on the run's features (``auto`` against ``off`` on dense ones is no change)."""
    cfg = spec.config()
    current = json.loads(json.dumps(cfg.to_dict()))  # through JSON, as the run recorded it
    recorded = result.get("config", {})
    inert = {("teacher", "tokenize")} if current.get("train", {}).get("batch_size") is None else set()
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


@functools.lru_cache(maxsize=64)
def _density(dataset: str, setting: str, seed: int, data_json: str, data_root) -> float:
    """The observed features' density of a run's task (loaded once per dataset, setting, seed)."""
    return observed_density(prepare_task(dataset, setting, seed, DataConfig(**json.loads(data_json)), data_root))


def finished_run(spec: RunSpec, folder: Path, cache: Path, data_root=None) -> Dict:
    """The results of ``spec`` in ``folder``: reused if finished, else run there (after removing
    what a killed run left). A finished run whose recorded config differs from ``spec``'s is a
    ConfigError naming the folder and the keys, never silently reused."""
    result = folder / "results.json"
    if result.is_file():
        changes = config_changes(json.loads(result.read_text()), spec, data_root)
        if changes:
            raise ConfigError(f"{folder} finished with another config than this grid's ({'; '.join(changes)}): "
                              "run the grid into another --runs folder, or delete that run")
    else:
        if folder.is_dir():
            _clean_partial(folder)
        try:
            run_experiment(spec, folder, cache, data_root)
        except CheckpointMismatchError as err:  # an unfinished run of another config: the grid's config wins
            warnings.warn(f"{folder}: {err}; that run was unfinished, so it starts over with the grid's config",
                          stacklevel=2)
            run_experiment(spec, folder, cache, data_root, fresh=True)
    return json.loads(result.read_text())
