"""Label-only baselines on the same labelled nodes: a tuned linear model against the ``mlp`` student.

    python -m experiments.studies.label_baselines --datasets cora citeseer a-computer a-photo --seeds 0-4 \
        [--no-preset] [--choose] [--lbfgs] [--variants "default:" "wd5e-4:student_train.weight_decay=0.0005" ...] \
        [--out experiments/results/label_baselines.md]

The linear model is scikit-learn's multinomial logistic regression (L2 penalty, L-BFGS; the
``lab`` extra: ``pip install -e '.[lab]'``) on the training nodes, its ``C`` (10^-3 .. 10^3) and
feature normalisation (none / row / standard) chosen on validation accuracy. The ``mlp`` student
is trained by :func:`vqgraph.fit_student`, each variant being ``NAME:OVERRIDE[;OVERRIDE...]`` on top of the run config (the dataset preset, or with
``--no-preset`` the defaults a graph without preset gets; ``student.num_layers=1`` is a linear
student). ``--lbfgs`` adds a linear model and an MLP trained to their penalised optimum by
full-batch L-BFGS, to tell the optimiser's share of a gap from the model's. A label-only
baseline should be at least as good as the tuned linear model on every graph.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import statistics
from pathlib import Path
from typing import Dict, List

import torch
import torch.nn.functional as F

from experiments.common import emit, parse_seeds
from vqgraph.app.config import ExperimentConfig
from vqgraph.app.records import markdown_table, mean_std
from vqgraph.data.datasets import load_dataset
from vqgraph.data.graph import FEATURE_NORMS, FeatureTransform
from vqgraph.data.splits import make_split
from vqgraph.app.task import DataConfig, prepare_task
from vqgraph.app.run import fit_selected_student
from vqgraph.utils.io import atomic_write_text

C_GRID = tuple(10.0**k for k in range(-3, 4))


def logistic_regression():
    """scikit-learn's ``LogisticRegression``: the lab's only use of scikit-learn, an optional extra."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError as err:
        raise ImportError("the label baselines need scikit-learn: pip install -e '.[lab]'") from err
    return LogisticRegression


def logistic_baseline(dataset: str, seed: int, data_root=None) -> Dict[str, float]:
    """Val and test accuracy of the validation-chosen (normalisation, C) logistic regression."""
    LogisticRegression = logistic_regression()
    data = load_dataset(dataset, root=data_root, seed=seed)
    split = make_split(data, seed=seed)
    best = None
    y = data.y.numpy()
    for norm in FEATURE_NORMS:
        x = FeatureTransform.fit(data.x, norm, split.observed_idx)(data.x).numpy()
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=5000).fit(x[split.train_idx], y[split.train_idx])
            val = model.score(x[split.val_idx], y[split.val_idx])
            if best is None or val > best["val/acc"]:
                best = {"val/acc": val, "test/acc": model.score(x[split.test_idx], y[split.test_idx]),
                        "choice": f"{norm}, C={c:g}"}
    return best


L2_GRID = tuple(10.0**k for k in range(-4, 1))


def lbfgs_baselines(dataset: str, seed: int, hiddens, data_root=None) -> List[Dict[str, float]]:
    """Per width in ``hiddens``: a linear model (0) or a one-hidden-layer MLP trained to the
    optimum of its L2-penalised cross-entropy by full-batch L-BFGS on the training nodes (no
    dropout, no early stopping), the penalty (:data:`L2_GRID`, on the weights) chosen on
    validation; raw features, as a graph without preset gets."""
    task = prepare_task(dataset, "transductive", seed, DataConfig(), data_root)
    return [_lbfgs_best(task, seed, hidden) for hidden in hiddens]


def _lbfgs_best(task, seed: int, hidden: int) -> Dict[str, float]:
    x, y, split = task.data.x, task.data.y, task.split
    best = None
    for penalty in L2_GRID:
        torch.manual_seed(seed)
        layers = [torch.nn.Linear(x.size(1), hidden), torch.nn.ReLU()] if hidden else []
        model = torch.nn.Sequential(*layers, torch.nn.Linear(hidden or x.size(1), task.data.num_classes))
        weights = [p for name, p in model.named_parameters() if name.endswith("weight")]
        opt = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, history_size=20, line_search_fn="strong_wolfe",
                                tolerance_grad=1e-6, tolerance_change=1e-9)

        def closure():
            opt.zero_grad()
            loss = F.cross_entropy(model(x[split.train_idx]), y[split.train_idx])
            loss = loss + penalty / 2 * sum((w * w).sum() for w in weights)
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            hits = (model(x).argmax(-1) == y).double()
        val = float(hits[split.val_idx].mean())
        if best is None or val > best["val/acc"]:
            best = {"val/acc": val, "test/acc": float(hits[split.test_idx].mean()), "choice": f"l2={penalty:g}"}
    return best


def mlp_baseline(dataset: str, seed: int, overrides: List[str], use_preset: bool, data_root=None) -> Dict[str, float]:
    preset = None if use_preset else "/dev/null"
    cfg = ExperimentConfig.from_preset(dataset, "gcn", "mlp", [*overrides, f"student_train.seed={seed}",
                                       "student_train.progress=false"], preset=preset)
    task = prepare_task(dataset, "transductive", seed, cfg.data, data_root)
    result = fit_selected_student(task.data, task.split, None, cfg)
    return {k: result.metrics[k] for k in ("val/acc", "test/acc")}


def mlp_row(dataset: str, name: str, runs, linear, settings: str) -> list:
    diffs = [m["test/acc"] - r["test/acc"] for m, r in zip(runs, linear)]
    wins = sum(d > 0 for d in diffs)
    return [dataset, name, mean_std([r["val/acc"] for r in runs]), mean_std([r["test/acc"] for r in runs]),
            f"{100 * statistics.mean(diffs):+.2f} ({wins}/{len(diffs)})", settings]


def lbfgs_rows(dataset: str, seeds, linear, record: dict, data_root=None) -> list:
    """The L-BFGS linear model and MLP, and per seed the one of the two better on validation."""
    models = (("L-BFGS linear", 0), ("L-BFGS mlp", 128))
    per_seed = [lbfgs_baselines(dataset, s, [hidden for _, hidden in models], data_root) for s in seeds]
    rows, runs = [], {}
    for m, (name, _) in enumerate(models):
        runs[name] = record[name] = [results[m] for results in per_seed]
        rows.append(mlp_row(dataset, name, runs[name], linear, ", ".join(sorted({r["choice"] for r in runs[name]}))))
    chosen = [max(pair, key=lambda r: r["val/acc"]) for pair in zip(*runs.values())]
    rows.append(mlp_row(dataset, "L-BFGS, linear or mlp chosen on validation", chosen, linear, "per seed"))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.label_baselines", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", required=True)
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--variants", nargs="*", default=["default:"], help="NAME:OVERRIDE[;OVERRIDE...]")
    parser.add_argument("--no-preset", action="store_true", help="the defaults of a graph without preset")
    parser.add_argument("--choose", action="store_true", help="add a row: per seed, the variant best on validation")
    parser.add_argument("--lbfgs", action="store_true",
                        help="add rows: a linear model and an MLP trained by full-batch L-BFGS (raw features)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    seeds = parse_seeds(args.seeds)
    rows, record = [], {}
    for dataset in args.datasets:
        linear = [logistic_baseline(dataset, s, args.data_root) for s in seeds]
        choices = ", ".join(sorted({r["choice"] for r in linear}))
        rows.append([dataset, "logistic regression", mean_std([r["val/acc"] for r in linear]),
                     mean_std([r["test/acc"] for r in linear]), "", choices])
        per_variant = []
        record[dataset] = {"logistic regression": linear}
        for variant in args.variants:
            name, _, text = variant.partition(":")
            overrides = [o for o in text.split(";") if o]
            runs = [mlp_baseline(dataset, s, overrides, not args.no_preset, args.data_root) for s in seeds]
            per_variant.append(runs)
            record[dataset][name] = runs
            rows.append(mlp_row(dataset, f"mlp {name}", runs, linear, "; ".join(overrides) or "(config as is)"))
            print(rows[-1], flush=True)
        if args.choose:  # per seed, the variant with the best validation accuracy (first on ties)
            chosen = [max(runs, key=lambda r: r["val/acc"]) for runs in zip(*per_variant)]
            rows.append(mlp_row(dataset, "mlp, variant chosen on validation", chosen, linear, "per seed"))
        if args.lbfgs:
            rows += lbfgs_rows(dataset, seeds, linear, record[dataset], args.data_root)
    preset = "no preset (defaults)" if args.no_preset else "dataset presets"
    text = (f"# Label-only baselines, CPF split, seeds {args.seeds}, {preset}\n\n"
            f"`python -m experiments.studies.label_baselines {shlex.join(argv if argv is not None else sys.argv[1:])}`\n\n")
    text += markdown_table(["dataset", "model", "val acc", "test acc", "test - linear (wins)", "settings / choice"], rows)
    emit(text, args.out)
    if args.out is not None:  # per-seed figures beside the table
        atomic_write_text(args.out.with_suffix(".json"), json.dumps({"seeds": seeds, "runs": record}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
