"""The headline grid: teacher, mlp, glnn, vqgraph and each preset's recipe, its ablation and the
paper's test-selected protocol, over seeds, with held-out seeds reported apart.

    python -m experiments.studies.headline --datasets cora citeseer a-computer a-photo \
        --settings transductive inductive --seeds 0-9 --held-out 5-9 \
        [--runs runs/headline] [--out experiments/results/headline] [--config PRESET] [--set ...] \
        [--candidate [SETTING:]LABEL=METHOD[,SECTION.KEY=VALUE...] ...]

For every (dataset, setting) the rows are built from the preset's ``recipe.<setting>`` (teacher,
method, overrides; :func:`vqgraph.app.config.recipe`):

- ``mlp``, ``glnn``, ``vqgraph``: the plain methods with the recipe's teacher (same seeds,
  splits and cached teacher, so every difference is paired);
- ``recipe``: what ``experiments.run`` trains with no ``--method``;
- one ablation per component of the recipe, each removing that component and only it: the
  code term (``distill.soft_token_weight=0``), each optional objective term (its overrides
  dropped), held-out validation targets in the inductive setting (``distill.val_targets=fit``),
  and any other override;
- each ``--candidate [SETTING:]LABEL=METHOD[,SECTION.KEY=VALUE...]``: a variant the recipe was
  chosen among, paired against it (how the choice looked on validation, and on test), in every
  block or only in those of ``SETTING``;
- ``recipe, select_by=test``: the paper's protocol (student checkpoint chosen on test accuracy),
  labelled, for comparison only.

Runs that are the same config (an ablation that equals a plain method) are run once. Each run is
an ``experiments.run`` run in ``<runs>/<variant>/<dataset>-<setting>-<method>-<teacher>-s<seed>/``,
reused when finished (and refused if its config changed), so a killed grid resumes; the seeds
are walked in order, so a partial grid holds whole seeds. The tables give validation and test
accuracy over all seeds, test accuracy over the ``--held-out`` seeds apart (no choice looked at
them), the published anchors, and the paired differences with wins / ties / losses.
``<out>.md`` holds the tables, ``<out>.json`` every run's metrics by seed. ``--config`` names
one preset for every dataset (default: each dataset's own); ``--set`` overrides go under every
row's own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shlex
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from experiments.common import parse_seeds
from vqgraph.app.config import AUTO_METHOD, recipe
from vqgraph.app.grid import finished_run
from vqgraph.app.records import markdown_table, mean_std, win_tie_loss
from vqgraph.app.run import RunSpec
from vqgraph.data.splits import Setting
from vqgraph.errors import ConfigError
from vqgraph.training.distill import METHODS
from vqgraph.training.loop import progress
from vqgraph.utils.io import atomic_write_text

SETTINGS = tuple(s.value for s in Setting)
# Published test accuracy (%), CPF split (shared/METHOD.md): the anchors of the accuracy targets.
ANCHORS = {
    "transductive": {
        "NOSMOG, published, validation-selected": {"cora": 83.04, "citeseer": 73.78, "a-computer": 84.04, "a-photo": 93.36},
        "VQGraph, published, test-selected": {"cora": 83.93, "citeseer": 76.08, "a-computer": 85.17, "a-photo": 94.21},
        "G2MLP, published, validation early stopping": {"cora": 82.54, "citeseer": 74.51, "a-computer": 83.87,
                                                        "a-photo": 92.85},
        "CPF, published, label propagation at inference (not graph-free), one seed": {
            "cora": 85.76, "citeseer": 76.52, "a-computer": 84.43, "a-photo": 93.17},
    },
    "inductive": {
        "GLNN, published, `ind`": {"cora": 73.82, "citeseer": 69.25, "a-computer": 80.92, "a-photo": 91.18},
        "GLNN re-run in the G2MLP paper, `ind`": {"cora": 73.21, "citeseer": 68.48, "a-computer": 80.27, "a-photo": 89.50},
        "G2MLP, published, `ind`": {"cora": 75.90, "citeseer": 71.85, "a-computer": 82.67, "a-photo": 90.61},
        "GLNN, published, `prod`": {"cora": 78.28, "citeseer": 69.27, "a-computer": 82.29, "a-photo": 92.38},
    },
}
# components of a recipe that take several overrides, each removed as a whole by its ablation
TERM_PREFIXES = {"adversarial term": ("distill.adversarial_",), "similarity term": ("distill.similarity_",),
                 "teacher ensemble": ("distill.teachers=", "distill.teacher_kinds=")}


@dataclass(frozen=True)
class Variant:
    """One row of the grid: a method and overrides on top of the preset; ``setting``: the one
    setting a candidate row belongs to (None: every setting)."""

    label: str
    method: str
    overrides: Tuple[str, ...] = ()
    setting: Optional[str] = None

    @property
    def key(self) -> Tuple[str, Tuple[str, ...]]:
        return self.method, tuple(sorted(self.overrides))

    @property
    def folder(self) -> str:
        """The runs' folder: the method for a plain one, else the method and a digest of the overrides."""
        if not self.overrides:
            return self.method
        return f"{self.method}-{hashlib.sha1(';'.join(self.key[1]).encode()).hexdigest()[:8]}"


def metric_keys(setting: str) -> List[str]:
    return ["test/acc"] if setting == "transductive" else ["test_tran/acc", "test_ind/acc", "test_prod/acc"]


def main_keys(setting: str) -> List[str]:
    """The metrics the targets are stated in."""
    return ["test/acc"] if setting == "transductive" else ["test_ind/acc", "test_prod/acc"]


def parse_candidate(text: str) -> Variant:
    """``[SETTING:]LABEL=METHOD[,SECTION.KEY=VALUE...]``: an extra row, paired against the
    recipe, in every block or only in the blocks of ``SETTING`` (transductive or inductive)."""
    head, colon, rest = text.partition(":")
    setting = head.strip() if colon and head.strip() in SETTINGS else None
    label, sep, body = (rest if setting else text).partition("=")
    # commas part overrides; a comma inside a list value (teacher_kinds=appnp,sage) does not
    method, *overrides = [p.strip() for p in re.split(r",(?=\s*\w+\.\w+=)", body)] if sep else [""]
    if not label.strip() or method not in METHODS:
        raise ConfigError(f"--candidate {text!r}: expected [SETTING:]LABEL=METHOD[,section.key=value...] with "
                          f"SETTING one of {', '.join(SETTINGS)} and METHOD one of {', '.join(METHODS)}")
    return Variant(label.strip(), method, tuple(o for o in overrides if o), setting)


def variants(dataset: str, setting: str, preset: Optional[str] = None,
             candidates: Sequence[Variant] = ()) -> Tuple[str, List[Variant], List[Tuple[str, Variant]]]:
    """The recipe's teacher, the rows of (dataset, setting), and the ablation pairs
    ``(component, recipe without it)``. Rows come in table order; ``candidates`` (the variants
    the recipe was chosen among) come after the ablations, unless they are one of them."""
    chosen = recipe(dataset, setting, preset)
    method, own = chosen["method"], tuple(chosen["set"])
    if method == AUTO_METHOD:
        raise ConfigError(f"{dataset}, {setting}: no preset recipe (method {AUTO_METHOD}); the headline grid ablates a "
                          "preset's recipe: measure method auto with python -m experiments.studies.choice")
    best = Variant("recipe", method, own)
    ablations: List[Tuple[str, Variant]] = []
    if method == "vqgraph" and "distill.soft_token_weight=0" not in own:
        ablations.append(("code term", Variant("recipe - code term", method, own + ("distill.soft_token_weight=0",))))
    rest = list(own)
    for component, prefix in TERM_PREFIXES.items():
        if any(o.startswith(prefix) for o in own):
            kept = tuple(o for o in own if not o.startswith(prefix))
            ablations.append((component, Variant(f"recipe - {component}", method, kept)))
            rest = [o for o in rest if not o.startswith(prefix)]
    for override in rest:
        ablations.append((override, Variant(f"recipe - {override}", method, tuple(o for o in own if o != override))))
    if setting == "inductive" and not any(o.startswith("distill.val_targets=") for o in own):
        ablations.append(("held-out validation targets",
                          Variant("recipe - held-out validation targets", method, own + ("distill.val_targets=fit",))))
    rows = [Variant("mlp", "mlp"), Variant("glnn", "glnn"), Variant("vqgraph", "vqgraph"), best, *(v for _, v in ablations)]
    known = {v.key for v in rows}
    # a candidate that is already a row adds nothing; one of the other setting is not in this block
    rows += [v for v in candidates if v.key not in known and v.setting in (None, setting)]
    rows.append(Variant("recipe, select_by=test", method, own + ("distill.select_by=test",)))
    return chosen["teacher"], rows, ablations


def unique_runs(rows: Sequence[Variant]) -> List[Variant]:
    """One variant per config (the first label wins): what the grid actually trains."""
    unique: Dict[tuple, Variant] = {}
    for row in rows:
        unique.setdefault(row.key, row)
    return list(unique.values())


def _values(runs: Dict[int, Dict], key: str, seeds: Sequence[int]) -> List[float]:
    return [runs[s]["metrics"][key] for s in seeds if s in runs]


def _diffs(a: Dict[int, Dict], b: Dict[int, Dict], key: str, seeds: Sequence[int]) -> List[float]:
    return [a[s]["metrics"][key] - b[s]["metrics"][key] for s in seeds if s in a and s in b]


def _mean(values: List[float], signed: bool = False) -> str:
    return f"{100 * statistics.mean(values):{'+' if signed else ''}.2f}" if values else "n/a"


def accuracy_table(dataset: str, setting: str, rows: List[Variant], teacher: str,
                   results: Dict[str, Dict[int, Dict]], held_out: Sequence[int]) -> str:
    """Rows of one (dataset, setting): validation, every test metric over all seeds, the main
    metrics over the held-out seeds."""
    keys = metric_keys(setting)
    columns = ["model", "seeds", "val"] + [k.split("/")[0] for k in keys]
    columns += [f"{k.split('/')[0]}, held-out seeds" for k in main_keys(setting)]
    out = []
    first = results[rows[0].label]
    teacher_runs = {s: {"metrics": r["teacher_metrics"]} for s, r in first.items()}
    for label, runs in [(f"teacher ({teacher})", teacher_runs)] + [(v.label, results[v.label]) for v in rows]:
        seeds = sorted(runs)
        line = [label, len(seeds), mean_std(_values(runs, "val/acc", seeds))]
        line += [mean_std(_values(runs, k, seeds)) for k in keys]
        line += [mean_std(_values(runs, k, [s for s in held_out if s in runs])) for k in main_keys(setting)]
        out.append(line)
    return markdown_table(columns, out)


def paired_table(setting: str, comparisons: List[Tuple[str, Dict[int, Dict], Dict[int, Dict]]],
                 held_out: Sequence[int]) -> str:
    """Per comparison and main metric: mean ± std of the paired differences, wins / ties /
    losses, the held-out seeds' mean, and the validation difference (what a choice could see)."""
    out = []
    for name, a, b in comparisons:
        seeds = sorted(set(a) & set(b))
        for key in main_keys(setting):
            diffs = _diffs(a, b, key, seeds)
            out.append([name, key.split("/")[0], len(diffs), mean_std(diffs, signed=True),
                        " / ".join(map(str, win_tie_loss(diffs))), _mean(_diffs(a, b, key, held_out), signed=True),
                        _mean(_diffs(a, b, "val/acc", seeds), signed=True)])
    columns = ["difference", "metric", "seeds", "mean ± std (points)", "wins / ties / losses",
               "held-out seeds (points)", "val (points)"]
    return markdown_table(columns, out)


def code_term_verdict(code_pairs: Dict[Tuple[str, str], Tuple[Dict, Dict, str]], seeds: Sequence[int]) -> str:
    """The issue's bar for the codebook: removing the code term costs >= 0.3 points mean with >= 6
    of 10 seeds won, paired, on at least 3 of the 4 datasets (per setting, on the main metric).
    Where validation chose a recipe without the code term, ``vqgraph - glnn`` stands in, labelled."""
    lines = []
    for setting in dict.fromkeys(s for _, s in code_pairs):
        key = main_keys(setting)[0]
        held, met = [], 0
        for (dataset, s), (a, b, how) in code_pairs.items():
            if s != setting:
                continue
            diffs = _diffs(a, b, key, seeds)
            wins = win_tie_loss(diffs)[0]
            ok = bool(diffs) and statistics.mean(diffs) >= 0.003 and wins >= 0.6 * len(diffs)
            met += ok
            held.append(f"{dataset} {_mean(diffs, signed=True)} ({wins}/{len(diffs)} won; {how}){' met' if ok else ''}")
        lines.append(f"- {setting}, `{key}`: the code term is worth at least +0.30 with 60% of seeds won on "
                     f"{met} dataset(s): " + "; ".join(held) + ".")
    return "\n".join(lines)


def choice_table(labelled: Dict[Tuple[str, str], Dict[str, Dict[int, Dict]]], setting: str,
                 seeds: Sequence[int]) -> str:
    """What the recipe was chosen on: every row's validation accuracy over ``seeds`` (those not
    held out), per dataset and averaged, with the rows' paired validation differences to the
    recipe over every (dataset, seed) pair. Rows whose validation is no choice signal are left out."""
    blocks = {d: rows for (d, s), rows in labelled.items() if s == setting}
    # not a choice signal: test-selected, and trained on the validation nodes' own targets
    skip = {"recipe, select_by=test", "recipe - held-out validation targets"}
    labels = [label for label in dict.fromkeys(lab for rows in blocks.values() for lab in rows) if label not in skip]
    aliases: Dict[str, List[str]] = {}  # a row that is another's runs everywhere is named there, not twice
    for i, label in enumerate(labels):
        first = next((x for x in labels[:i] if all(rows.get(x) is rows.get(label) for rows in blocks.values())), None)
        aliases.setdefault(first or label, []).extend([label] if first else [])
    lines = []
    for label in labels:
        if label not in aliases:
            continue
        means, diffs = [], []
        for rows in blocks.values():
            runs = rows.get(label, {})
            values = _values(runs, "val/acc", seeds)
            means.append(statistics.mean(values) if values else None)
            if "recipe" in rows:
                diffs += _diffs(runs, rows["recipe"], "val/acc", seeds)
        known = [m for m in means if m is not None]
        lines.append([" = ".join([label] + aliases[label])] + [f"{100 * m:.2f}" if m is not None else "" for m in means]
                     + [f"{100 * statistics.mean(known):.2f}" if len(known) == len(means) else "",
                        _mean(diffs, signed=True), " / ".join(map(str, win_tie_loss(diffs)))])
    return markdown_table(["model"] + list(blocks) + ["mean", "minus recipe (points)", "wins / ties / losses"], lines)


def headline_table(blocks: Dict[Tuple[str, str], Dict[str, Dict[int, Dict]]], seeds: Sequence[int]) -> str:
    """README's table: the recipe (all seeds) against the published anchors."""
    datasets = list(dict.fromkeys(d for d, _ in blocks))
    lines = []
    for setting, anchors in ANCHORS.items():
        keys = main_keys(setting)
        for key in keys:
            if not any((d, setting) in blocks for d in datasets):
                continue
            same = all(blocks[(d, setting)].get("glnn") is blocks[(d, setting)].get("recipe")
                       for d in datasets if (d, setting) in blocks)
            for label in ("glnn",) if same else ("glnn", "recipe"):
                row = [f"ours, {'recipe = glnn' if same else label}, {setting}, `{key.split('/')[0]}`"]
                for d in datasets:
                    runs = blocks.get((d, setting), {}).get(label, {})
                    row.append(mean_std(_values(runs, key, seeds)) if runs else "")
                lines.append(row)
        for name, figures in anchors.items():
            lines.append([name] + [f"{figures[d]:.2f}" if d in figures else "" for d in datasets])
    return markdown_table(["test accuracy %"] + datasets, lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.headline", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cora", "citeseer", "a-computer", "a-photo"])
    parser.add_argument("--settings", nargs="+", default=["transductive", "inductive"], choices=list(SETTINGS))
    parser.add_argument("--seeds", default="0-9")
    parser.add_argument("--held-out", default="5-9", help="seeds no choice looked at, reported apart")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--runs", type=Path, default=Path("runs/headline"))
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"))
    parser.add_argument("--out", type=Path, default=None, help="write <out>.md and <out>.json")
    parser.add_argument("--config", default=None, help="YAML preset for every dataset (default: each dataset's own)")
    parser.add_argument("--set", nargs="*", action="extend", default=[], metavar="SECTION.KEY=VALUE", help="overrides under every row's own")
    parser.add_argument("--candidate", action="append", default=[], metavar="[SETTING:]LABEL=METHOD[,SECTION.KEY=VALUE...]",
                        help="an extra row in every block (or in SETTING's only), paired against the recipe (repeatable)")
    args = parser.parse_args(argv)
    seeds, held_out = parse_seeds(args.seeds), parse_seeds(args.held_out)
    plans = {}
    try:
        candidates = [parse_candidate(c) for c in args.candidate]
        for d in args.datasets:
            for s in args.settings:
                plans[(d, s)] = variants(d, s, args.config, candidates)
                teacher, rows, _ = plans[(d, s)]
                for v in unique_runs(rows):  # every config is checked before anything trains
                    spec(d, s, v, teacher, seeds[0], args).config()
    except ConfigError as err:
        parser.error(str(err))
    grid = [(seed, d, s, v) for seed in seeds for (d, s), (_, rows, _) in plans.items() for v in unique_runs(rows)]
    blocks: Dict[Tuple[str, str], Dict[str, Dict[int, Dict]]] = {}
    for seed, dataset, setting, v in progress(grid, "headline", enabled=True):
        run = spec(dataset, setting, v, plans[(dataset, setting)][0], seed, args)
        try:
            result = finished_run(run, args.runs / v.folder / run.name, args.cache, args.data_root)
        except ConfigError as err:
            parser.error(str(err))
        blocks.setdefault((dataset, setting), {}).setdefault(v.key, {})[seed] = result
    text, payload = report(plans, blocks, seeds, held_out, argv if argv is not None else sys.argv[1:], args.config)
    print(text)
    if args.out:
        atomic_write_text(args.out.with_suffix(".md"), text)
        atomic_write_text(args.out.with_suffix(".json"), json.dumps(payload, indent=1) + "\n")
    return 0


def spec(dataset: str, setting: str, variant: Variant, teacher: str, seed: int, args) -> RunSpec:
    return RunSpec(dataset, setting, variant.method, teacher, seed, (*args.set, *variant.overrides), args.config, quiet=True)


def report(plans, blocks, seeds, held_out, argv, preset=None) -> Tuple[str, Dict]:
    """The Markdown report and the per-seed JSON of a (possibly partial) grid."""
    command = "python -m experiments.studies.headline " + shlex.join(argv)
    text = (f"# Headline grid, seeds {seeds[0]}-{seeds[-1]} (held out: {', '.join(map(str, held_out))})\n\n"
            f"Command: `{command}`\n\nAccuracy in %, mean ± std over seeds; every row of a block shares its "
            "seeds, splits and cached teacher; the student checkpoint and every setting are chosen on "
            "validation, except in the row labelled `select_by=test` (the paper's protocol).\n\n"
            "## Against the published figures\n\n")
    labelled = {(d, s): {v.label: blocks[(d, s)][v.key] for v in rows if v.key in blocks[(d, s)]}
                for (d, s), (_, rows, _) in plans.items() if blocks.get((d, s))}
    text += headline_table(labelled, seeds)
    code_pairs, payload = {}, {"seeds": seeds, "held_out": held_out, "blocks": []}
    for (dataset, setting), (teacher, rows, ablations) in plans.items():
        if (dataset, setting) not in labelled:
            continue
        by_label = labelled[(dataset, setting)]
        rows = [v for v in rows if v.label in by_label]
        chosen = recipe(dataset, setting, preset)
        text += (f"\n\n## {dataset}, {setting}\n\nRecipe: teacher `{teacher}`, method `{chosen['method']}`"
                 + (f", {', '.join(f'`{o}`' for o in chosen['set'])}" if chosen["set"] else "") + ".\n\n")
        text += accuracy_table(dataset, setting, rows, teacher, by_label, held_out)
        same = [f"`{v.label}` is `{w.label}`" for i, v in enumerate(rows) for w in rows[:i] if w.key == v.key]
        text += ("\n\nSame config, same runs: " + "; ".join(same) + "." if same else "")
        best = by_label.get("recipe", {})
        comparisons = [(f"recipe - {m}", best, by_label[m]) for m in ("glnn", "vqgraph", "mlp")
                       if m in by_label and by_label[m] is not best]
        comparisons += [(f"{component}: recipe - ({v.label})", best, by_label[v.label])
                        for component, v in ablations if v.label in by_label]
        plain = {"mlp", "glnn", "vqgraph", "recipe", "recipe, select_by=test"} | {v.label for _, v in ablations}
        comparisons += [(f"recipe - {v.label}", best, by_label[v.label]) for v in rows
                        if v.label not in plain and by_label[v.label] is not best]
        if "recipe, select_by=test" in by_label:
            comparisons.append(("select_by=test - recipe", by_label["recipe, select_by=test"], best))
        text += "\n\nPaired differences in points (mean ± std over seeds, wins / ties / losses):\n\n"
        text += paired_table(setting, comparisons, held_out)
        code = next((by_label[v.label] for c, v in ablations if c == "code term" and v.label in by_label), None)
        if code is not None and best:
            code_pairs[(dataset, setting)] = (best, code, "recipe - (recipe - code term)")
        elif "vqgraph" in by_label and "glnn" in by_label:  # validation chose a recipe without the code term
            code_pairs[(dataset, setting)] = (by_label["vqgraph"], by_label["glnn"], "vqgraph - glnn, not in the recipe")
        payload["blocks"].append({
            "dataset": dataset, "setting": setting, "teacher": teacher, "recipe": chosen,
            "rows": [{"label": v.label, "method": v.method, "overrides": list(v.overrides),
                      "runs": {str(s): {"metrics": r["metrics"], "teacher_metrics": r["teacher_metrics"],
                                        "selected": r.get("selected", {}), "best_epoch": r.get("best_epoch")}
                               for s, r in sorted(by_label[v.label].items())}} for v in rows]})
    if code_pairs:
        text += "\n\n## Does the codebook earn its place?\n\n" + code_term_verdict(code_pairs, seeds)
    choice = [s for s in seeds if s not in held_out]
    for setting in dict.fromkeys(s for _, s in labelled):
        text += (f"\n\n## What the {setting} recipe was chosen on\n\nValidation accuracy (%) over seeds "
                 f"{', '.join(map(str, choice))} (the held-out seeds play no part), and each row's paired "
                 "validation difference to the recipe over every (dataset, seed). Left out: the "
                 "`select_by=test` row, and a row that trains on the validation nodes' targets (its "
                 "validation accuracy measures fit):\n\n"
                 + choice_table(labelled, setting, choice))
    return text + "\n", payload


if __name__ == "__main__":
    raise SystemExit(main())
