"""The lab's studies behind docs/results.md (the headline grid, label baselines, code fit,
validation halves, teacher tables) and the behaviour snapshot, each run as
``python -m experiments.studies.NAME``."""
