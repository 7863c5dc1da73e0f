"""``python -m experiments.speed``: the inference cost of graph-free students against GNN teachers.

The command (:mod:`~experiments.speed.command`) and its machinery: the graphs, models and timers
of one measurement (:mod:`~experiments.speed.latency`) and the accuracy-latency plot
(:mod:`~experiments.speed.accuracy`)."""

from experiments.speed.command import main

__all__ = ["main"]
