"""Method ``auto`` measured: the method chosen on validation against each fixed candidate.

    python -m experiments.studies.choice --datasets texas cornell --settings transductive --seeds 0-9 \
        --runs experiments/results/choice_runs --cache runs/cache/teachers --out experiments/results/choice

For each (dataset, setting, seed) and each candidate of :data:`vqgraph.app.choice.CANDIDATES`:
its run with halved validation (``RUNS/choice/<candidate>/<run>``: what ``auto`` looks at) and its
run with the graph's own protocol (``RUNS/fixed/<candidate>/<run>``: what ``auto`` trains once it
has chosen, and what a user who always picks that candidate gets). ``auto``'s result for a seed
is the fixed run of the candidate it chooses (:func:`vqgraph.app.choice.choose` on the halved
runs' ``val/acc``): the run ``python -m experiments.run --method auto`` ends with, without
training it twice. Finished runs are reused; ``--runs`` keeps each run's ``results.json``.

Writes ``OUT.md``: per graph and setting, how often each candidate is chosen, the mean test
accuracy (``test_ind`` inductively) of ``auto``, of each fixed candidate and of the oracle (the
best candidate on test, seed by seed: a bound no rule on validation can pass), and ``auto``
minus each fixed candidate, paired by seed (wins / ties / losses).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
from pathlib import Path
from typing import Dict, List

from experiments.common import emit, parse_seeds, seeds_argument
from vqgraph.app.choice import CANDIDATES, CHOICE_PROTOCOL, candidate_spec, choose
from vqgraph.app.config import AUTO_METHOD
from vqgraph.app.grid import finished_run
from vqgraph.app.records import markdown_table, win_tie_loss
from vqgraph.app.run import RunSpec
from vqgraph.errors import VQGraphError


def score_key(setting: str) -> str:
    return "test_ind/acc" if setting == "inductive" else "test/acc"


def seed_row(args, dataset: str, setting: str, seed: int) -> Dict:
    """One seed: every candidate's halved validation and fixed test, and the chosen one."""
    spec = RunSpec(dataset, setting, AUTO_METHOD, args.teacher, seed, tuple(args.set), quiet=True)
    val, test = {}, {}
    for candidate in CANDIDATES:
        for kind, protocol in (("choice", CHOICE_PROTOCOL), ("fixed", None)):
            own = candidate_spec(spec, candidate, protocol)
            folder = args.runs / kind / candidate.name / own.name
            results = finished_run(own, folder, args.cache, args.data_root)
            if protocol:
                val[candidate.name] = results["metrics"]["val/acc"]
            else:
                test[candidate.name] = results["metrics"][score_key(setting)]
    return {"val": val, "test": test, "chosen": choose(val)}


def paired(auto: List[float], other: List[float]) -> str:
    diffs = [a - b for a, b in zip(auto, other)]
    wins, ties, losses = win_tie_loss(diffs)
    return f"{100 * statistics.mean(diffs):+.2f} ({wins}/{ties}/{losses})"


def block_rows(dataset: str, setting: str, rows: List[Dict]) -> List[List]:
    """The table's lines for one graph and setting."""
    names = [c.name for c in CANDIDATES]
    auto = [r["test"][r["chosen"]] for r in rows]
    oracle = [max(r["test"].values()) for r in rows]
    counts = ", ".join(f"{name} {sum(r['chosen'] == name for r in rows)}" for name in names)
    cells = [dataset, setting, len(rows), counts, f"{100 * statistics.mean(auto):.2f}"]
    for name in names:
        fixed = [r["test"][name] for r in rows]
        cells.append(f"{100 * statistics.mean(fixed):.2f}, {paired(auto, fixed)}")
    return [cells + [f"{100 * statistics.mean(oracle):.2f}"]]


def validation_rows(dataset: str, setting: str, rows: List[Dict]) -> List[List]:
    names = [c.name for c in CANDIDATES]
    return [[dataset, setting] + [f"{100 * statistics.mean(r['val'][n] for r in rows):.2f}" for n in names]]


def render(command: str, blocks: Dict) -> str:
    names = [c.name for c in CANDIDATES]
    lines, vals = [], []
    for (dataset, setting), rows in blocks.items():
        lines += block_rows(dataset, setting, rows)
        vals += validation_rows(dataset, setting, rows)
    candidates = "; ".join(f"`{c.name}`: method `{c.method}`" + (f" with {', '.join(f'`{o}`' for o in c.overrides)}"
                                                                  if c.overrides else "") for c in CANDIDATES)
    return (f"# Method `auto`: the method chosen on validation\n\nCommand: `{command}`\n\n"
            f"Candidates, in tie order: {candidates}. Test accuracy in % (`test_ind` inductively), mean over "
            "seeds; `auto` is the fixed run of the candidate chosen on the halved-validation runs' `val/acc`; "
            "each candidate column: its mean, then `auto` minus it paired by seed, points (wins/ties/losses); "
            "oracle: the best candidate on test, seed by seed.\n\n"
            + markdown_table(["dataset", "setting", "seeds", "chosen (times)", "auto",
                              *[f"always {n}" for n in names], "oracle"], lines)
            + "\nWhat `auto` looked at: mean validation accuracy on the student's half (teacher selected on "
              "the other half), %.\n\n"
            + markdown_table(["dataset", "setting", *names], vals))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.choice", description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--settings", nargs="+", default=["transductive"], choices=["transductive", "inductive"])
    parser.add_argument("--seeds", default="0-9", type=seeds_argument)
    parser.add_argument("--teacher", default="gcn")
    parser.add_argument("--runs", type=Path, default=Path("runs/choice"))
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"))
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE",
                        help="config overrides of every run (repeatable)")
    parser.add_argument("--out", type=Path, default=None, help="write OUT.md")
    args = parser.parse_args(argv)
    command = "python -m experiments.studies.choice " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv))
    blocks = {}
    try:
        for dataset in args.datasets:
            for setting in args.settings:
                blocks[(dataset, setting)] = [seed_row(args, dataset, setting, seed) for seed in parse_seeds(args.seeds)]
    except VQGraphError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    emit(render(command, blocks), args.out.with_suffix(".md") if args.out else None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
