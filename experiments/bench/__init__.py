"""The lab's benchmarks behind docs/speed.md and docs/distributed.md, each run as
``python -m experiments.bench.NAME`` (code_term, distributed, memory, serving, serving_import, synthetic,
teacher, wide_features)."""
