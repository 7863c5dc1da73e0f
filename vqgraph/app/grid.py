"""Grids of runs that resume: a finished run is reused only if it was made with the config asked for."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict

from vqgraph.app.finished import config_changes, read_record
from vqgraph.app.run import RunSpec, run_experiment
from vqgraph.errors import CheckpointMismatchError, ConfigError

__all__ = ["config_changes", "finished_run"]


def _clean_partial(folder: Path) -> None:
    """Remove temporary files a killed run left behind (results are only ever renamed into place)."""
    for tmp in folder.glob(".*.tmp"):
        tmp.unlink()


def finished_run(spec: RunSpec, folder: Path, cache: Path, data_root=None) -> Dict:
    """The results of ``spec`` in ``folder``: reused if finished, else run there (after removing
    what a killed run left). A finished run whose recorded config differs from ``spec``'s is a
    ConfigError naming the folder and the keys, never silently reused."""
    result = folder / "results.json"
    if result.is_file():
        try:
            recorded = read_record(result)
        except (OSError, ValueError) as err:
            raise ConfigError(f"{folder} holds a results.json that is not a run's record ({type(err).__name__}: "
                              f"{err}): run the grid into another --runs folder, or delete that file") from err
        changes = config_changes(recorded, spec, data_root)
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
