"""experiments.studies.headline: rows built from the preset's recipe, one ablation per component, configs
run once, held-out seeds apart, resumable."""

from __future__ import annotations

import json
import statistics

import pytest

from experiments.studies import headline

FAST = ["train.max_epochs=3", "student_train.max_epochs=15", "student_train.patience=none",
        "teacher.codebook_size=32", "teacher.hidden_channels=16", "distill.weight_decays=0.0005"]


def _preset(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("recipe:\n"
                    "  transductive: {teacher: gcn, method: vqgraph, set: [distill.adversarial_weight=0.1]}\n"
                    "  inductive:\n    teacher: gcn\n    method: vqgraph\n"
                    "    set: [distill.adversarial_weight=0.1, distill.adversarial_steps=1, student.dropout=0.2]\n")
    return path


def test_rows_follow_the_recipe_and_each_ablation_removes_one_component(tmp_path):
    teacher, rows, ablations = headline.variants("synthetic", "inductive", _preset(tmp_path))
    assert teacher == "gcn"
    by_component = dict(ablations)
    assert set(by_component) == {"code term", "adversarial term", "student.dropout=0.2", "held-out validation targets"}
    own = ("distill.adversarial_weight=0.1", "distill.adversarial_steps=1", "student.dropout=0.2")
    assert by_component["code term"].overrides == own + ("distill.soft_token_weight=0",)
    assert by_component["adversarial term"].overrides == ("student.dropout=0.2",)  # both adversarial keys go
    assert by_component["student.dropout=0.2"].overrides == own[:2]
    assert by_component["held-out validation targets"].overrides == own + ("distill.val_targets=fit",)
    labels = [v.label for v in rows]
    assert labels[:4] == ["mlp", "glnn", "vqgraph", "recipe"] and labels[-1] == "recipe, select_by=test"
    # a plain recipe: removing its only term gives plain vqgraph, which is then run once
    plain = tmp_path / "plain.yaml"
    plain.write_text("recipe:\n  transductive: {teacher: gcn, method: vqgraph, set: [distill.adversarial_weight=0.1]}\n")
    _, rows, ablations = headline.variants("synthetic", "transductive", plain)
    assert dict(ablations)["adversarial term"].key == ("vqgraph", ())
    assert [v.label for v in headline.unique_runs(rows)] == ["mlp", "glnn", "vqgraph", "recipe", "recipe - code term",
                                                            "recipe, select_by=test"]
    assert len({v.folder for v in headline.unique_runs(rows)}) == 6


def test_headline_grid_tables_pair_rows_and_report_held_out_seeds(tmp_path):
    runs, cache, out = tmp_path / "runs", tmp_path / "cache", tmp_path / "hl"
    argv = ["--datasets", "synthetic", "--settings", "transductive", "--seeds", "0-1", "--held-out", "1",
            "--config", str(_preset(tmp_path)), "--set", *FAST, "--runs", str(runs), "--cache", str(cache),
            "--out", str(out)]
    assert headline.main(argv) == 0
    results = sorted(runs.glob("*/*/results.json"))
    assert len(results) == 6 * 2  # six configs (recipe - adversarial term is vqgraph), two seeds
    text, record = out.with_suffix(".md").read_text(), json.loads(out.with_suffix(".json").read_text())
    rows = {row["label"]: row["runs"] for row in record["blocks"][0]["rows"]}
    assert "`recipe - adversarial term` is `vqgraph`" in text
    test = lambda label, seeds: [rows[label][str(s)]["metrics"]["test/acc"] for s in seeds]  # noqa: E731
    diffs = [a - b for a, b in zip(test("recipe", [0, 1]), test("glnn", [0, 1]))]
    line = next(x for x in text.splitlines() if x.startswith("| recipe - glnn |"))
    assert f"{100 * statistics.mean(diffs):+.2f} ± {100 * statistics.stdev(diffs):.2f}" in line
    assert f"| {100 * diffs[1]:+.2f} |" in line  # the held-out column is seed 1 alone
    recipe_row = next(x for x in text.splitlines() if x.startswith("| recipe |"))
    assert recipe_row.rstrip(" |").endswith(f"{100 * test('recipe', [1])[0]:.2f} ± 0.00")
    configs = {p.parent.parent.name: json.loads(p.read_text())["config"]["distill"] for p in results}
    assert sorted(c["select_by"] for c in configs.values()).count("test") == 1
    assert sum(c["soft_token_weight"] == 0 and c["adversarial_weight"] == 0.1 for c in configs.values()) == 1
    assert "## Does the codebook earn its place?" in text and "synthetic" in text.split("earn its place?")[1]
    stamps = {p: p.stat().st_mtime_ns for p in results}
    assert headline.main(argv) == 0  # finished: reused, nothing retrained
    assert {p: p.stat().st_mtime_ns for p in results} == stamps
    with pytest.raises(SystemExit):  # a changed shared override is refused, naming the key
        headline.main([a.replace("max_epochs=15", "max_epochs=16") for a in argv])


def test_candidates_are_paired_with_the_recipe_and_a_recipe_without_codes_says_so(tmp_path):
    preset = tmp_path / "glnn.yaml"
    preset.write_text("recipe:\n  transductive: {teacher: gcn, method: glnn}\n")
    candidates = [headline.parse_candidate("adv=vqgraph, distill.adversarial_weight=0.1"),
                  headline.parse_candidate("same as glnn=glnn")]
    teacher, rows, ablations = headline.variants("synthetic", "transductive", preset, candidates)
    assert ablations == []  # glnn has no code term and no terms of its own
    assert [v.label for v in rows] == ["mlp", "glnn", "vqgraph", "recipe", "adv", "recipe, select_by=test"]
    assert rows[4].overrides == ("distill.adversarial_weight=0.1",)
    # a candidate of one setting is a row of that setting's blocks only
    only = headline.parse_candidate("inductive:wide=glnn,student.hidden_channels=512")
    assert (only.label, only.method, only.setting) == ("wide", "glnn", "inductive")
    _, tran_rows, _ = headline.variants("synthetic", "transductive", preset, [*candidates, only])
    assert "wide" not in [v.label for v in tran_rows]
    both = tmp_path / "both.yaml"
    both.write_text("recipe:\n  transductive: {teacher: gcn, method: glnn}\n  inductive: {teacher: gcn, method: glnn}\n")
    _, ind_rows, _ = headline.variants("synthetic", "inductive", both, [only])
    assert ind_rows[-2] == only  # before the select_by=test row
    assert headline.parse_candidate("a:b=glnn").label == "a:b"  # not a setting: part of the label
    for bad in ["adv", "=vqgraph", "x=gcn,teacher.dropout=0.1", "inductive:=glnn"]:
        with pytest.raises(headline.ConfigError, match="--candidate"):
            headline.parse_candidate(bad)
    # a list value keeps its commas; the ensemble's two overrides are one component
    mixed = headline.parse_candidate("mix=glnn,distill.teachers=3,distill.teacher_kinds=appnp,sage, student.dropout=0.2")
    assert mixed.overrides == ("distill.teachers=3", "distill.teacher_kinds=appnp,sage", "student.dropout=0.2")
    preset.write_text("recipe:\n  transductive:\n    teacher: gcn\n    method: glnn\n"
                      "    set: [distill.teachers=2, distill.teacher_kinds=appnp, distill.teacher_temperature=2.0]\n")
    _, _, ensemble_ablations = headline.variants("synthetic", "transductive", preset)
    assert [(c, v.overrides) for c, v in ensemble_ablations] == [
        ("teacher ensemble", ("distill.teacher_temperature=2.0",)),
        ("distill.teacher_temperature=2.0", ("distill.teachers=2", "distill.teacher_kinds=appnp"))]
    preset.write_text("recipe:\n  transductive: {teacher: gcn, method: glnn}\n")
    # vqgraph beats glnn by 0.5 on 7 of 10 seeds: the verdict reports it as not in the recipe
    gain = {"mlp": -0.1, "glnn": 0.0, "vqgraph": 0.005, "adv": 0.01}
    blocks = {("synthetic", "transductive"): {}}
    for v in headline.unique_runs(rows):
        for seed in range(10):
            delta = gain.get(v.label, 0.0) if v.label != "vqgraph" or seed < 7 else -0.001
            metrics = {"val/acc": 0.8 + delta, "test/acc": 0.7 + delta + seed / 100}
            blocks[("synthetic", "transductive")].setdefault(v.key, {})[seed] = {"metrics": metrics, "teacher_metrics": metrics}
    plans = {("synthetic", "transductive"): (teacher, rows, ablations)}
    text, payload = headline.report(plans, blocks, list(range(10)), [5, 6, 7, 8, 9], [], preset)
    assert "`recipe` is `glnn`" in text
    line = next(x for x in text.splitlines() if x.startswith("| recipe - adv |"))
    assert "-1.00 ± 0.00" in line and "0 / 0 / 10" in line
    verdict = text.split("earn its place?")[1]
    assert "(7/10 won; vqgraph - glnn, not in the recipe) met" in verdict and "on 1 dataset(s)" in verdict
    assert [r["label"] for r in payload["blocks"][0]["rows"]][-2:] == ["adv", "recipe, select_by=test"]
    choice = text.split("## What the transductive recipe was chosen on")[1]
    assert "seeds 0, 1, 2, 3, 4 " in choice and "| recipe, select_by=test |" not in choice
    assert "| glnn = recipe | 80.00 | 80.00 | +0.00 | 0 / 5 / 0 |" in choice  # one row, both names
    adv = next(x for x in choice.splitlines() if x.startswith("| adv |"))
    assert adv == "| adv | 81.00 | 81.00 | +1.00 | 5 / 0 / 0 |"
    assert "| ours, recipe = glnn, transductive, `test` |" in text and "| ours, glnn, transductive" not in text
