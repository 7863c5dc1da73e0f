"""Settings are checked where they are read: every config field's range, preset files, flags
that name config keys, canonical dataset names, the keys in --help, and fuzzing of the reader."""

from __future__ import annotations

import dataclasses
import math
import re
import tempfile
import time
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments import reproduce as reproduce_cli
from experiments import run as run_cli
from experiments import sweep as sweep_cli
from experiments import train_teacher as teacher_cli
from experiments.common import parse_run, parse_seeds
from vqgraph.app.config import PRESET_DIR, SECTIONS, DistillSection, ExperimentConfig, recipe
from vqgraph.app.run import RunSpec
from vqgraph.app.task import DataConfig
from vqgraph.errors import ConfigError
from vqgraph.models.encoders import CONVS
from vqgraph.models.student import StudentConfig
from vqgraph.models.teacher import TeacherConfig
from vqgraph.training.distill import METHODS, DistillConfig
from vqgraph.training.loop import TrainConfig
from vqgraph.utils.settings import RULE, Rule

CLASSES = (DataConfig, TeacherConfig, TrainConfig, StudentConfig, DistillConfig, DistillSection)
FREE_STRINGS = {"device"}  # any torch device


def _rule(cls, name) -> Rule:
    return next(f for f in dataclasses.fields(cls) if f.name == name).metadata.get(RULE)


def _item(hint):
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union:
        hint = next(a for a in args if a is not type(None))
    return typing.get_args(hint)[0] if typing.get_origin(hint) in (tuple, list, typing.Sequence.__origin__) else hint


def test_every_number_and_choice_declares_its_valid_values_where_it_is_defined():
    for cls in CLASSES:
        for name, hint in typing.get_type_hints(cls).items():
            item = _item(hint)
            rule = _rule(cls, name)
            if item in (int, float):
                assert rule is not None and Rule() != rule, f"{cls.__name__}.{name} declares no range"
            elif item is str and name not in FREE_STRINGS:
                assert rule is not None and rule.choices, f"{cls.__name__}.{name} declares no choices"


@pytest.mark.parametrize("override, words", [
    ("train.patience=-1", "train.patience must be >= 0, got -1"),
    ("student_train.patience=-5", "student_train.patience must be >= 0, got -5"),
    ("distill.soft_label_weight=-1", "distill.soft_label_weight must be >= 0 and finite, got -1.0"),
    ("teacher.feature_recon_weight=-0.5", "teacher.feature_recon_weight must be >= 0 and finite, got -0.5"),
    ("train.lr=nan", "train.lr must be > 0 and finite, got nan"),
    ("distill.label_weight=inf", "distill.label_weight must be >= 0 and finite, got inf"),
    ("teacher.dropout=1.5", "teacher.dropout must be in [0, 1), got 1.5"),
    ("student.input_dropout=-0.1", "student.input_dropout must be in [0, 1), got -0.1"),
    ("student.hidden_channels=0", "student.hidden_channels must be >= 1, got 0"),
    ("teacher.hidden_channels=0", "teacher.hidden_channels must be >= 1, got 0"),
    ("teacher.decay=5", "teacher.decay must be in [0, 1], got 5.0"),
    ("teacher.code_dim=0", "teacher.code_dim must be >= 1, got 0"),
    ("train.seed=-1", "train.seed must be in [0, 4294967296), got -1"),
    ("data.test_ind_ratio=nan", "data.test_ind_ratio must be in (0, 1), got nan"),
    ("distill.smooth_alpha=1.5", "distill.smooth_alpha must be in [0, 1], got 1.5"),
    ("distill.weight_decays=0.1,-1", "distill.weight_decays must be a list of numbers, each >= 0 and finite, got (0.1, -1.0)"),
    ("train.fanouts=", "train.fanouts must be a non-empty list of integers, each >= 1 or -1, got ()"),
    ("distill.code_target=hard", "distill.code_target must be one of ('soft', 'index', 'class'), got 'hard'"),
])
def test_a_value_out_of_its_declared_range_is_refused_naming_key_value_and_range(override, words):
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_preset("cora", "gcn", "vqgraph", [override])
    assert str(err.value) == words


@pytest.mark.parametrize("make, words", [
    (lambda: TrainConfig(lr=float("nan")), "lr must be > 0 and finite, got nan"),
    (lambda: TrainConfig(patience=-1), "patience must be >= 0, got -1"),
    (lambda: TrainConfig(lr="0.1"), "lr must be a number, got '0.1'"),
    (lambda: TrainConfig(max_epochs=True), "max_epochs must be an integer, got True"),
    (lambda: TeacherConfig(decay=5.0), "decay must be in [0, 1], got 5.0"),
    (lambda: TeacherConfig(conv="transformer"), "conv must be one of"),
    (lambda: StudentConfig(dropout=1.5), "dropout must be in [0, 1), got 1.5"),
    (lambda: DistillConfig(label_weight=-1.0), "label_weight must be >= 0 and finite, got -1.0"),
    (lambda: DataConfig(val_per_class=0), "val_per_class must be >= 1, got 0"),
    (lambda: DistillSection(teachers=0), "teachers must be >= 1, got 0"),
])
def test_library_use_is_checked_by_the_same_declarations(make, words):
    with pytest.raises(ConfigError, match=words.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        make()


def test_valid_values_at_the_edges_of_their_ranges_are_accepted():
    config = ExperimentConfig.from_preset("cora", "gcn", "vqgraph", [
        "train.patience=0", "teacher.decay=1", "teacher.dropout=0", "distill.smooth_alpha=1", "train.fanouts=-1,5",
        "distill.teacher_temperature=none", "distill.label_weight=0"])
    assert config.train.patience == 0 and config.teacher.decay == 1.0 and config.train.fanouts == (-1, 5)
    assert ExperimentConfig.from_preset("cora", overrides=["train.patience=none"]).train.patience is None


def test_a_bad_value_stops_the_command_before_any_data_is_read(tmp_path, capsys):
    # the data root is empty: had the run gone as far as loading, it would end with exit code 1
    argv = ["--dataset", "cora", "--method", "glnn", "--data-root", str(tmp_path / "empty"), "--out",
            str(tmp_path / "run"), "--set", "train.patience=-1"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli.main(argv)
    assert exit_info.value.code == 2 and "train.patience must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ---- preset files ----------------------------------------------------------------------------------
@pytest.mark.parametrize("text, words", [
    ("teacher:\n  dropout: 0.1\n", "top-level key 'teacher' is neither a teacher kind"),
    ("gnc:\n  teacher:\n    dropout: 0.1\n", "top-level key 'gnc' is neither a teacher kind"),
    ("gcn:\n  teacher:\n    dropout: 0.1\n    dropout: 0.2\n", "duplicate key 'dropout' on lines 3 and 4"),
    ("gcn:\n  train: {lr: 0.1}\ngcn:\n  train: {lr: 0.2}\n", "duplicate key 'gcn' on lines 1 and 3"),
    ("gcn:\n  teacher:\n    conv: sage\n", "gcn.teacher.conv cannot be set in a preset"),
    ("gcn:\n  glnn:\n    distill: {method: vqgraph}\n", "gcn.glnn.distill.method cannot be set in a preset"),
    ("gcn:\n  train: {seed: 3}\n", "gcn.train.seed cannot be set in a preset"),
    ("sage:\n  teacher: {dropot: 0.1}\n", "unknown config key 'sage.teacher.dropot'"),  # another kind's block too
    ("gcn:\n  glnn:\n    vqgraph: {}\n", "unknown config section 'gcn.glnn.vqgraph'"),
    ("gcn:\n  teacher: 0.5\n", "section gcn.teacher must be a mapping"),
    ("gcn:\n  train:\n    lr: -0.1\n", "gcn.train.lr must be > 0 and finite, got -0.1"),
    # a YAML string where a number or boolean belongs used to be parsed silently ("no" became false)
    ('gcn:\n  teacher:\n    use_tokenizer: "no"\n', "gcn.teacher.use_tokenizer: expected true or false, got the string "
                                                   "'no': write it without quotes"),
    ('gcn:\n  train:\n    lr: "0.1"\n', "gcn.train.lr: expected a number, got the string '0.1'"),
    ("gcn:\n  train:\n    fanouts: '5,10'\n", "gcn.train.fanouts: expected a list, got the string '5,10'"),
    # the recipe block used to be read only for the run's setting: a misspelt setting was ignored
    ("recipe:\n  transductiv: {method: glnn}\n", "recipe must be a mapping of settings (transductive, inductive)"),
    ("recipe:\n  inductive: {teacher: 5}\n", "recipe.inductive.teacher must be one of ("),
    ("recipe:\n  transductive: {set: [train.lr=abc]}\n", "recipe.transductive.set: train.lr: expected a number, got 'abc'"),
    ("recipe:\n  transductive: {set: [train.lr=0.1, train.lr=0.2]}\n",
     "recipe.transductive.set: train.lr is set twice, to '0.1' and '0.2': give it once"),
    # an empty file used to stand silently for "no preset", replacing the dataset's packaged one
    ("", "the preset is empty (no YAML document); write {} for a preset that sets nothing"),
    ("# all settings commented out\n", "the preset is empty"),
    ("[" * 100_000 + "]" * 100_000, "not valid YAML (nested too deeply)"),  # was a RecursionError
])
def test_a_misplaced_misspelt_or_repeated_preset_key_is_refused_naming_the_file(tmp_path, text, words):
    preset = tmp_path / "mine.yaml"
    preset.write_text(text)
    with pytest.raises(ConfigError) as err:
        ExperimentConfig.from_preset("cora", "gcn", "glnn", preset=preset)
    assert str(err.value).startswith(f"{preset}: ") and words in str(err.value)


def test_a_preset_that_is_not_utf8_or_an_alias_bomb_is_one_short_error_naming_the_file(tmp_path):
    """Bytes that are not UTF-8 were a UnicodeDecodeError traceback; an alias bomb (10**9 items sharing
    a few lists) in the recipe block used to be skipped, and is now refused without being expanded."""
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"gcn:\n  train:\n    lr: \xff\xfe\n")
    with pytest.raises(ConfigError, match=re.escape(f"{binary}: not a text file in UTF-8 (invalid start byte at byte 22)")):
        ExperimentConfig.from_preset("cora", preset=binary)
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("recipe:\n  x0: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"  x{i}: &{b} [{', '.join(['*' + a] * 10)}]\n" for i, (a, b) in enumerate(zip("abcdefgh", "bcdefghi"), 1)))
    for read in (lambda: ExperimentConfig.from_preset("cora", "gcn", "glnn", preset=bomb), lambda: recipe("cora", preset=bomb)):
        started = time.monotonic()
        with pytest.raises(ConfigError) as err:
            read()
        assert time.monotonic() - started < 5 and len(str(err.value)) < 2000
        assert str(err.value).startswith(f"{bomb}: recipe must be a mapping of settings (transductive, inductive)")
    lists = tmp_path / "lists.yaml"  # the same bomb where a number belongs
    lists.write_text("gcn:\n  train:\n    lr: &a [x, x, x, x, x, x, x, x, x, x]\n    patience: [" + ", ".join(["*a"] * 10) + "]\n")
    with pytest.raises(ConfigError, match=re.escape(f"{lists}: gcn.train.lr: expected a number, got ['x', 'x',")):
        ExperimentConfig.from_preset("cora", preset=lists)


def test_the_packaged_presets_load_for_every_block_and_method():
    for path in sorted(PRESET_DIR.glob("*.yaml")):
        kinds = [kind for kind in yaml.safe_load(path.read_text()) if kind != "recipe"]
        assert kinds, path
        for kind in kinds:
            for method in METHODS:
                config = ExperimentConfig.from_preset(path.stem, kind, method)
                assert config.teacher.conv == kind and config.distill.method == method


# ---- flags and canonical names ---------------------------------------------------------------------
@pytest.mark.parametrize("flags, words", [
    (["--seed", "0", "--set", "train.seed=5"], "train.seed=5 contradicts the run's seed 0 (--seed): give it once, as --seed 5"),
    (["--set", "student_train.seed=2"], "student_train.seed=2 contradicts the run's seed 0 (--seed)"),
    (["--teacher", "gcn", "--set", "teacher.conv=sage"], "teacher.conv=sage contradicts the run's teacher 'gcn' (--teacher"),
    (["--set", "teacher.conv=sage"], "teacher.conv=sage contradicts the run's teacher 'gcn' (--teacher, or the preset's recipe"),
    (["--method", "glnn", "--set", "distill.method=vqgraph"], "distill.method=vqgraph contradicts the run's method 'glnn'"),
    (["--device", "cpu", "--set", "train.device=meta"], "train.device=meta contradicts the run's device 'cpu' (--device)"),
    (["--quiet", "--set", "student_train.progress=true"], "student_train.progress=true contradicts the run's progress"),
    # a key given twice used to keep the last value silently
    (["--set", "train.lr=0.1", "--set", "train.lr=0.2"], "train.lr is set twice, to '0.1' and '0.2': give it once"),
    (["--set", "distill.weight_decays=0.1,,0.2"], "distill.weight_decays: an empty item in the list '0.1,,0.2'"),
])
def test_flags_and_set_that_disagree_are_a_usage_error_naming_both(capsys, flags, words):
    with pytest.raises(SystemExit) as exit_info:
        parse_run(run_cli.build_parser(), ["--dataset", "cora", *flags])
    assert exit_info.value.code == 2 and words in capsys.readouterr().err


def test_a_flag_restated_by_set_is_accepted_and_the_run_is_named_after_what_it_trains():
    _, spec, config = parse_run(run_cli.build_parser(), ["--dataset", "cora", "--teacher", "sage", "--seed", "3", "--set",
                                                         "teacher.conv=sage", "train.seed=3", "distill.method=glnn"])
    assert spec.teacher == "sage" and spec.method == "glnn" and spec.name == "cora-transductive-glnn-sage-s3"
    assert config.teacher.conv == "sage" and config.train.seed == config.student_train.seed == 3
    assert dataclasses.replace(spec, teacher="gcn").config().teacher.conv == "gcn"  # an ensemble member of its own kind
    assert spec.overrides == ()  # the restatements are dropped
    contradicted = RunSpec("cora", seed=2, overrides=("train.seed=5",))  # grids build specs, then check their configs
    with pytest.raises(ConfigError, match=r"train.seed=5 contradicts the run's seed 2 \(--seed\)"):
        contradicted.config()
    with pytest.raises(ConfigError, match=r"teacher.conv=sage contradicts the teacher named \('gcn'\)"):
        ExperimentConfig.from_preset("cora", "gcn", "glnn", ["teacher.conv=sage"])  # the library refuses it too


def test_set_replaces_the_recipes_own_override_of_a_key_and_a_repeated_equal_value_is_accepted(tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("recipe:\n  transductive: {method: glnn, set: [train.lr=0.1, train.patience=7]}\n")
    _, spec, config = parse_run(run_cli.build_parser(), ["--dataset", "cora", "--config", str(preset), "--set",
                                                         "train.lr=0.3", "--set", "train.lr=0.3"])
    assert spec.overrides == ("train.patience=7", "train.lr=0.3", "train.lr=0.3") and config.train.lr == 0.3


@pytest.mark.parametrize("path", ["cora.npz", "elsewhere/citeseer.npz"])
def test_a_file_named_after_a_dataset_gets_no_packaged_preset(path):
    """A user's own graph saved as cora.npz used to get cora's preset (row-normalised features,
    teacher dropout 0.8, the glnn recipe) silently; design.md: a graph without preset gets gcn,
    method auto and no overrides (the config parse_run returns is its first candidate's)."""
    args, spec, config = parse_run(run_cli.build_parser(), ["--dataset", path])
    assert spec.method == "auto" and spec.teacher == "gcn" and not args.recipe
    assert config.data.feature_norm == DataConfig().feature_norm and config.teacher.dropout == TeacherConfig().dropout
    assert config == ExperimentConfig.from_preset(path, "gcn", "mlp")
    assert ExperimentConfig.from_preset("cora", "gcn", "vqgraph").data.feature_norm == "row"  # the name keeps it


@pytest.mark.parametrize("seeds", ["3-1", "-1", "0,0", "a", "0-4-5", "0-99999999999", str(2**32)])
def test_grid_seeds_that_are_not_a_range_or_a_list_of_distinct_seeds_are_a_usage_error(capsys, seeds):
    """'3-1' used to run an empty grid, '0,0' to count seed 0 twice in mean and std, '-1' and 'a' were
    ValueError tracebacks, '0-99999999999' built a list of 10**11 seeds."""
    for main, extra in ((reproduce_cli.main, []), (sweep_cli.main, ["--variants", "ref:"])):
        with pytest.raises(SystemExit) as exit_info:
            main(["--datasets", "synthetic", "--seeds", seeds, *extra])
        assert exit_info.value.code == 2
        assert f"argument --seeds: --seeds {seeds!r}: write a range FIRST-LAST" in capsys.readouterr().err
    assert parse_seeds("0-2") == [0, 1, 2] and parse_seeds("7,3") == [7, 3]


def test_reproduce_keeps_every_set_flag_and_refuses_a_key_given_twice(capsys):
    """A second --set used to replace the first silently (argparse's default store)."""
    with pytest.raises(SystemExit) as exit_info:
        reproduce_cli.main(["--datasets", "synthetic", "--seeds", "0", "--set", "train.lr=0.1", "--set", "train.lr=0.2"])
    assert exit_info.value.code == 2 and "train.lr is set twice, to '0.1' and '0.2'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["Cora", "CORA", "cora"])
def test_a_dataset_name_is_canonical_before_its_preset_and_recipe_are_chosen(name):
    args, spec, config = parse_run(run_cli.build_parser(), ["--dataset", name, "--setting", "inductive"])
    assert args.dataset == spec.dataset == "cora" and spec.name == "cora-inductive-vqgraph-gcn-s0"
    assert config.data.feature_norm == "row" and config.teacher.dropout == 0.8  # cora's preset
    assert config.distill.adversarial_weight == 0.1 and args.recipe  # cora's inductive recipe
    assert RunSpec("photo").dataset == "a-photo" and RunSpec("pyg:Amazon/Photo").dataset == "pyg:Amazon/Photo"
    _, teacher_spec, _ = parse_run(teacher_cli.build_parser(), ["--dataset", name])
    assert teacher_spec.dataset == "cora"


@pytest.mark.parametrize("cli", [run_cli, teacher_cli])
def test_help_lists_every_section_key_default_and_range(cli):
    text = cli.build_parser().format_help()
    defaults = ExperimentConfig.defaults()
    for section, cls in SECTIONS.items():
        assert f"  {section}:\n" in text
        for f in dataclasses.fields(cls):
            assert f"    {section}.{f.name}=" in text, f"{section}.{f.name}"
    assert "    train.lr=0.01" in text and "> 0 and finite" in text and f"train.max_epochs={defaults.train.max_epochs}" in text
    assert "teacher.dropout=0.5" in text and "in [0, 1)" in text and "one of ('none', 'row', 'standard')" in text


# ---- fuzzing the reader ------------------------------------------------------------------------------
KEYS = [f"{section}.{f.name}" for section, cls in SECTIONS.items() for f in dataclasses.fields(cls)]
VALUES = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1", "1.5", "5", "none", "true", "no", "", "[]", "[1,2]",
                     "1e999", "-0", "0x10", "1_0", "gcn", "sage", "row", "halves", "-1,5", "3,x", "9" * 30]),
    st.integers(-10**6, 10**6).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=8))
PAIRS = st.tuples(st.sampled_from(KEYS), VALUES).map("=".join)
ITEMS = st.tuples(st.integers(0, 5), PAIRS, st.text(max_size=12)).map(lambda t: t[2] if t[0] == 0 else t[1])  # 1 in 6: any text
OVERRIDES = st.lists(ITEMS, max_size=4)


def _assert_in_range(config: ExperimentConfig) -> None:
    """Every field of every section of a config that was accepted is of its type and in its range."""
    for section, cls in SECTIONS.items():
        part = getattr(config, section)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            value, rule, item = getattr(part, f.name), f.metadata.get(RULE) or Rule(), _item(hints[f.name])
            for one in (value if isinstance(value, tuple) else () if value is None else (value,)):
                assert isinstance(one, item) or (item is float and type(one) is int), (section, f.name, value)
                assert not isinstance(one, float) or math.isfinite(one) or one in rule.also, (section, f.name, value)
                assert rule.holds(one), (section, f.name, value)


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(OVERRIDES)
def test_fuzz_any_override_list_gives_a_config_in_range_or_a_config_error(overrides):
    try:
        config = ExperimentConfig.from_preset("cora", "gcn", "vqgraph", overrides)
    except ConfigError:
        return
    _assert_in_range(config)


SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**5), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(["row", "sage", "none", "nan", "1e3", "[1, 2]"]), st.lists(st.integers(-2, 5), max_size=3))
NAMES = st.sampled_from([*SECTIONS, *METHODS, *CONVS, "recipe", "studnet", "lr", "dropout", "seed", "conv", 3])
SECTION_BODY = st.dictionaries(st.sampled_from(KEYS).map(lambda k: k.split(".", 1)[1]) | NAMES, SCALARS, max_size=3)
SECTION_LAYERS = st.lists(st.one_of(*[  # {section: {key of that section: value}}
    st.dictionaries(st.sampled_from([f.name for f in dataclasses.fields(cls)]), SCALARS, min_size=1, max_size=3)
    .map(lambda body, section=section: (section, body)) for section, cls in SECTIONS.items()]), max_size=3).map(dict)
REALISTIC = st.dictionaries(st.sampled_from(["gcn", "sage"]),  # teacher kind -> sections and a method block
                            st.tuples(SECTION_LAYERS, SECTION_LAYERS).map(lambda p: {**p[0], "glnn": p[1]}), max_size=2)
PRESETS = REALISTIC | st.recursive(st.dictionaries(NAMES, SECTION_BODY | SCALARS, max_size=3),
                       lambda inner: st.dictionaries(NAMES, inner, max_size=3), max_leaves=8)


def _preset_texts():
    structured = PRESETS.map(lambda tree: yaml.safe_dump(tree, sort_keys=False))
    doubled = st.tuples(structured, structured).map(lambda pair: pair[0] + pair[1])  # often a key twice
    return st.one_of(REALISTIC.map(yaml.safe_dump), REALISTIC.map(yaml.safe_dump), structured, doubled,
                     st.text(max_size=40))


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(_preset_texts(), st.sampled_from(["gcn", "sage"]), st.sampled_from(METHODS))
def test_fuzz_any_preset_text_gives_a_config_in_range_or_a_config_error(text, teacher, method):
    with tempfile.TemporaryDirectory() as folder:
        preset = Path(folder) / "fuzz.yaml"
        preset.write_text(text)
        try:
            config = ExperimentConfig.from_preset("graph.npz", teacher, method, preset=preset)
        except ConfigError as err:
            assert str(err).startswith(str(preset)) or "distill" in str(err) or "student.num_layers" in str(err)
            return
    _assert_in_range(config)
    assert config.teacher.conv == teacher and config.distill.method == method
