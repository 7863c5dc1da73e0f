"""The application layer: what turns the library into runs a user can name, repeat and compare.

Typed configuration with dataset presets (:mod:`~vqgraph.app.config`), a run's task
(:mod:`~vqgraph.app.task`: load, split, prepare features), run assembly
(:mod:`~vqgraph.app.run`: teacher, student, files), the content-addressed teacher cache
(:mod:`~vqgraph.app.cache`), resumable grids (:mod:`~vqgraph.app.grid`), results records and
tables (:mod:`~vqgraph.app.records`), loggers (:mod:`~vqgraph.app.loggers`) and figures
(:mod:`~vqgraph.app.figures`). It sits above the library's data, models, training, targets and
serving, and below the commands in ``experiments/``; nothing in the library imports it.
"""

from vqgraph.app.config import ExperimentConfig
from vqgraph.app.run import RunSpec, run_experiment
from vqgraph.app.task import DataConfig, Task, prepare_task

__all__ = ["DataConfig", "ExperimentConfig", "RunSpec", "Task", "prepare_task", "run_experiment"]
