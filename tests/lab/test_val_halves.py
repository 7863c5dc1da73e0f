"""experiments.studies.val_halves: targets scored on the teacher's half of validation, the other half and test."""

from __future__ import annotations

from experiments.studies import val_halves


def test_one_seed_scores_each_variant_on_both_halves_and_test(data_root, monkeypatch):
    monkeypatch.setattr(val_halves, "VARIANTS", ((0, 0.0), (2, 0.5)))
    monkeypatch.setattr(val_halves, "RunSpec", _short_teacher(val_halves.RunSpec))
    raw, smoothed = val_halves.one_seed("cora", 0, data_root)
    for row in (raw, smoothed):
        assert len(row) == 3 and all(0.0 <= acc <= 100.0 for acc in row)
    assert raw != smoothed  # smoothing moves some argmax


def _short_teacher(spec_cls):
    class Short(spec_cls):
        def config(self):
            cfg = super().config()
            return cfg.with_overrides(["train.max_epochs=20"])
    return Short
