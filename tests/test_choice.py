"""Method ``auto``: the method chosen on validation for a graph without a preset recipe
(vqgraph/app/choice.py): candidates on halved validation, the winner trained as the run."""

from __future__ import annotations

import json

import pytest

from experiments import run as run_cli
from experiments.common import parse_run
from vqgraph.app.choice import CANDIDATES, Candidate, candidate_spec, check_candidates, choose, run_choice
from vqgraph.app.config import recipe
from vqgraph.app.run import RunSpec, run_experiment
from vqgraph.errors import ConfigError

FAST = ("train.max_epochs=3", "student_train.max_epochs=3", "teacher.codebook_size=16", "teacher.hidden_channels=16")


def test_choose_takes_the_best_score_and_the_first_on_a_tie():
    assert choose({"mlp": 0.5, "glnn": 0.7, "vq": 0.6}) == "glnn"
    assert choose({"mlp": 0.7, "glnn": 0.7, "vq": 0.6}) == "mlp"
    assert choose({"mlp": 0.6, "glnn": 0.7, "vq": 0.7}) == "glnn"


@pytest.mark.parametrize("dataset", ["cora", "citeseer", "a-computer", "a-photo"])
def test_the_distilled_candidate_is_the_presets_inductive_recipe(dataset):
    # one list in two places (the presets' YAML, CANDIDATES): a recipe change must reach auto too
    chosen = recipe(dataset, "inductive")
    assert (CANDIDATES[2].method, CANDIDATES[2].overrides) == (chosen["method"], tuple(chosen["set"]))


def test_a_candidates_run_takes_its_overrides_then_the_users_then_the_protocol():
    spec = RunSpec("synthetic", method="auto", overrides=("distill.adversarial_eps=0.5", "data.val_split=shared",
                                                          "student.dropout=0.1"))
    adversarial = CANDIDATES[2]
    own = candidate_spec(spec, adversarial)
    assert own.method == "vqgraph"
    assert own.overrides == ("distill.adversarial_weight=0.1", "distill.label_weight=0", "distill.adversarial_eps=0.5",
                             "student.dropout=0.1", "data.val_split=halves")
    # the user's eps wins; halves replaces the user's protocol
    cfg = own.config()
    assert (cfg.distill.adversarial_weight, cfg.distill.adversarial_eps, cfg.data.val_split) == (0.1, 0.5, "halves")
    assert cfg.distill.label_weight == 0.0  # the presets' inductive recipe
    final = candidate_spec(spec, adversarial, None).config()  # the chosen run: the user's own protocol
    assert final.data.val_split == "shared" and final.student.dropout == 0.1
    assert candidate_spec(spec, CANDIDATES[0]).config().distill.adversarial_weight == 0.0


def test_a_bad_override_for_one_candidate_is_refused_before_training_naming_it(capsys, tmp_path):
    spec = RunSpec("synthetic", method="auto", overrides=("student.num_layers=1",))
    with pytest.raises(ConfigError, match=r"method auto, candidate 'vqgraph\+adversarial': .*num_layers"):
        check_candidates(spec)
    with pytest.raises(ConfigError, match="names must be unique"):
        check_candidates(RunSpec("synthetic", method="auto"), [Candidate("a", "mlp"), Candidate("a", "glnn")])
    with pytest.raises(ConfigError, match="not 'auto'"):
        run_choice(RunSpec("synthetic", method="glnn"), tmp_path / "o", tmp_path / "c")
    # the command line: a usage error, nothing trained
    with pytest.raises(SystemExit):
        run_cli.main(["--dataset", "synthetic", "--out", str(tmp_path / "run"), "--set", "student.num_layers=1"])
    assert "candidate 'vqgraph+adversarial'" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_graph_without_preset_gets_auto_and_a_recipe_may_name_it(tmp_path):
    parser = run_cli.build_parser()
    _, spec, cfg = parse_run(parser, ["--dataset", "synthetic"])
    assert spec.method == "auto" and spec.teacher == "gcn"
    _, spec, _ = parse_run(parser, ["--dataset", "cora", "--method", "auto"])
    assert spec.method == "auto"
    preset = tmp_path / "p.yaml"
    preset.write_text("recipe:\n  transductive:\n    method: auto\n")
    assert recipe("mygraph", "transductive", preset)["method"] == "auto"


def test_auto_trains_every_candidate_on_halves_and_the_best_as_the_run(tmp_path, capsys):
    out, cache = tmp_path / "run", tmp_path / "cache"
    argv = ["--dataset", "synthetic", "--out", str(out), "--cache", str(cache), "--set", *FAST]
    assert run_cli.main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    choice = results["choice"]
    scores = {}
    for candidate in CANDIDATES:  # each candidate's run, on halved validation, under choice/
        ran = json.loads((out / "choice" / candidate.name / "results.json").read_text())
        assert ran["method"] == candidate.method and ran["config"]["data"]["val_split"] == "halves"
        assert choice["candidates"][candidate.name]["val/acc"] == ran["metrics"]["val/acc"]
        scores[candidate.name] = ran["metrics"]["val/acc"]
    assert choice["chosen"] == choose(scores)
    chosen = next(c for c in CANDIDATES if c.name == choice["chosen"])
    assert results["method"] == chosen.method and results["config"]["data"]["val_split"] == "shared"
    assert f"{chosen.name} chosen on validation among mlp, glnn, vqgraph+adversarial" in results["chosen_by"]
    assert "teacher gcn and method auto" in capsys.readouterr().err.splitlines()[0]
    assert (out / "student.pt").is_file()
    # the run is the chosen candidate's plain run: the same metrics as that run trained alone
    alone = run_experiment(candidate_spec(RunSpec("synthetic", method="auto", overrides=FAST), chosen, None),
                           tmp_path / "alone", cache)
    assert alone["metrics"] == results["metrics"]
    # a second call trains nothing: every run is reused, and the record is the same
    assert run_cli.main(argv) == 0
    line = capsys.readouterr().out
    assert "reused" in line and f"[auto: {chosen.name}, the best on validation of 3]" in line
    again = json.loads((out / "results.json").read_text())
    assert again["choice"] == choice and again["metrics"] == results["metrics"]
