"""What the experiment commands share: the arguments that name a run, seeds, and printing results."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from vqgraph.app.choice import CANDIDATES, candidate_spec, check_candidates
from vqgraph.app.config import AUTO_METHOD, SECTIONS, ExperimentConfig, canonical_dataset, parse_overrides, recipe
from vqgraph.errors import ConfigError
from vqgraph.app.records import write_json
from vqgraph.app.run import RunSpec
from vqgraph.models.encoders import CONVS
from vqgraph.training import METHODS
from vqgraph.utils.settings import describe_fields
from vqgraph.utils.io import atomic_write_text


MAX_SEEDS = 10_000  # a grid's seeds: more is a typo (0-99999999999), not an experiment


def parse_seeds(text: str) -> List[int]:
    """``"0-4"`` -> ``[0, 1, 2, 3, 4]``; ``"0,3"`` -> ``[0, 3]``: distinct seeds in ``[0, 2**32)``.

    Raises:
        argparse.ArgumentTypeError: anything else (``3-1``, ``-1``, ``0,0``, ``a``), naming it.
    """
    wrong = argparse.ArgumentTypeError(f"--seeds {text!r}: write a range FIRST-LAST (0-4, FIRST <= LAST) or a list "
                                       f"(0,3,7) of at most {MAX_SEEDS} distinct seeds in [0, 2**32)")
    try:
        ends = [int(v) for v in text.split("-")] if "-" in text else None
        seeds = [int(v) for v in text.split(",")] if ends is None else None
    except ValueError:
        raise wrong from None
    if ends is not None:
        if len(ends) != 2 or not 0 <= ends[0] <= ends[1] < 2**32 or ends[1] - ends[0] >= MAX_SEEDS:
            raise wrong
        return list(range(ends[0], ends[1] + 1))
    if len(set(seeds)) != len(seeds) or len(seeds) > MAX_SEEDS or not all(0 <= seed < 2**32 for seed in seeds):
        raise wrong
    return seeds


def seeds_argument(text: str) -> str:
    """``--seeds`` as an argparse type: checked by :func:`parse_seeds` at parsing, kept as written."""
    parse_seeds(text)
    return text


def add_run_arguments(parser: argparse.ArgumentParser, method: bool = True) -> None:
    """The arguments that name a run (dataset, setting, teacher, seed, ...) and its config."""
    parser.add_argument("--dataset", required=True, help="dataset name or path of a CPF-format .npz")
    parser.add_argument("--setting", default="transductive", choices=["transductive", "inductive"])
    if method:
        parser.add_argument("--method", default=None, choices=[*METHODS, AUTO_METHOD],
                            help="distillation method (default: the preset's recipe for the setting, else auto: "
                                 "chosen on validation among mlp, glnn and vqgraph + adversarial)")
    parser.add_argument("--teacher", default=None, choices=sorted(CONVS),
                        help="teacher kind (default: the preset's recipe for the setting, else gcn)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-root", default=None,
                        help="data root, or several separated by ':' searched in order (default: $VQGRAPH_DATA, "
                             "else ./datasets)")
    parser.add_argument("--download", action="store_true",
                        help="fetch a missing dataset from its public source into the first data root")
    parser.add_argument("--config", default=None, help="YAML preset (default: vqgraph/presets/<dataset>.yaml)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                        help="config overrides (repeatable)")
    parser.add_argument("--device", default=None, help="torch device")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.epilog = config_keys_help()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def config_keys_help() -> str:
    """The configuration keys ``--set`` takes, one line each, grouped by section, with their
    default (the package's, for method vqgraph; a dataset's preset and the method change some)
    and their valid values."""
    defaults = ExperimentConfig.defaults()
    lines = ["configuration keys (--set SECTION.KEY=VALUE): default, then valid values; the dataset's preset",
             "(vqgraph/presets/<dataset>.yaml) and the method (student, distill, student_train) change some defaults;",
             "teacher.conv, distill.method and *.seed are set by --teacher, --method and --seed"]
    for section, cls in SECTIONS.items():
        lines.append(f"  {section}:")
        for key, _, valid in describe_fields(cls):
            value = getattr(getattr(defaults, section), key)
            value = ",".join(map(str, value)) if isinstance(value, tuple) else value
            lines.append(f"    {section}.{key}={value}".ljust(44) + f"  {valid}")
    return "\n".join(lines)


def _sets(given: Dict[str, Dict[str, str]], key: str) -> bool:
    section, _, name = key.partition(".")
    return name in given.get(section, {})


def parse_run(parser: argparse.ArgumentParser, argv=None) -> Tuple[argparse.Namespace, RunSpec, ExperimentConfig]:
    """Parse ``argv`` (arguments of :func:`add_run_arguments` and the script's own) into the
    arguments, the run and its config; a bad config key or value is a usage error naming it."""
    args = parser.parse_args(argv)
    args.dataset = canonical_dataset(args.dataset)  # Cora -> cora: the name its preset and recipe are found by
    try:
        chosen = recipe(args.dataset, args.setting, args.config)
        named = getattr(args, "method", None)
        given = parse_overrides(args.set)  # a key given twice, differently, is an error
        # the recipe's own overrides come with its method only; the command line's replace them
        ours = [item for item in chosen["set"] if not _sets(given, item.split("=", 1)[0])]
        overrides = args.set if named else [*ours, *args.set]
        spec = RunSpec(args.dataset, args.setting, named or chosen["method"], args.teacher or chosen["teacher"],
                       args.seed, tuple(overrides), args.config, args.device, args.quiet)
        args.recipe = not named and bool(chosen["set"])  # the run is the preset's recipe, not the plain method
        if spec.method == AUTO_METHOD:  # every candidate's config is checked before any training
            check_candidates(spec)
            return args, spec, candidate_spec(spec, CANDIDATES[0], None).config()
        return args, spec, spec.config()
    except ConfigError as err:
        parser.error(str(err))


def emit(text: str, path: Optional[Path] = None) -> None:
    """Print a table and, given ``path``, write it there too (atomically)."""
    print(text)
    if path is not None:
        atomic_write_text(path, text)


def report_json(payload: Dict[str, Any], path: Optional[Path] = None) -> None:
    """A benchmark's figures: printed as one JSON line and, given ``path``, written there with
    the environment they were measured in (torch, threads, CPU)."""
    from vqgraph.utils.profiling import environment

    if path is not None:
        write_json(path, {"environment": environment(), **payload})
    print(json.dumps(payload))
