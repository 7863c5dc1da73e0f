"""A tokenizer for any teacher: the joint teacher's codebook against one fitted after the fact.

    OMP_NUM_THREADS=1 python -m experiments.studies.tokenizers --datasets cora citeseer a-computer a-photo \
        --seeds 0-4 --runs experiments/results/tokenizers_runs --cache runs/cache/teachers \
        --out experiments/results/tokenizers.md

Per dataset and seed, transductive, on the CPF split, with the preset's GCN teacher (from the
teacher cache: trained once), three sets of targets:

* ``joint``: the teacher's own codebook, trained with it (the paper's method);
* ``posthoc``: :func:`vqgraph.fit_tokenizer` on the same teacher's ``z``, with the settings its
  own tokenizer has (codebook size, EMA decay, weights, dead-code threshold);
* ``plain``: the same GCN trained without a tokenizer (``teacher.use_tokenizer=false``, its own
  cache entry), then :func:`vqgraph.fit_tokenizer` on its ``z``: a teacher that never had one.

Each is distilled into the preset's ``vqgraph`` student for the graph. Measured: the codebook's
use over all nodes (codes used, perplexity), how well the student's code assignment fits the
teacher's on test nodes (``experiments.studies.code_fit``'s measures), the student's validation
and test accuracy, and per seed the differences to ``joint`` (same split; ``posthoc``: the same
teacher too). Every (dataset, seed, variant) is written to ``RUNS/<dataset>-s<seed>-<variant>.json``
when it finishes and is read back, not rerun, when present: a killed grid resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List, Sequence

import torch

from experiments.common import emit, parse_seeds
from experiments.studies.code_fit import code_classes, code_ranks
from vqgraph.app.cache import cached_teacher
from vqgraph.app.records import markdown_table, mean_std, win_tie_loss, write_json
from vqgraph.app.run import RunSpec, fit_selected_student
from vqgraph.app.task import prepare_task
from vqgraph.losses import code_logits
from vqgraph.models import TeacherConfig, TokenizerConfig
from vqgraph.training.tokenizer import TOKENIZER_TRAIN, fit_tokenizer

VARIANTS = ("joint", "posthoc", "plain")
SHARED = ("codebook_size", "decay", "commitment_weight", "kmeans_init", "dead_code_threshold", "feature_recon_weight",
          "edge_recon_weight", "edge_recon_samples", "quantize_chunk")


def tokenizer_config(teacher: TeacherConfig) -> TokenizerConfig:
    """The post-hoc tokenizer with the joint teacher's tokenizer settings (code width: z's)."""
    return TokenizerConfig(**{key: getattr(teacher, key) for key in SHARED})


@torch.no_grad()
def code_fit(targets, model, data, split) -> Dict[str, float]:
    """Codebook use over all nodes, and the student's fit to the teacher's codes on test nodes
    (the measures of ``experiments.studies.code_fit``)."""
    counts = torch.bincount(targets.codes, minlength=targets.codebook.size(0)).double()
    p = counts[counts > 0] / counts.sum()
    test, observed = split.test_idx, split.observed_idx
    classes = code_classes(targets.codes[observed], targets.logits[observed].argmax(-1), targets.codebook.size(0),
                           data.num_classes)
    out = model.eval()(data.x[test])
    scores = code_logits(out.z, targets.codebook, targets.metric)
    ranks, y = code_ranks(scores, targets.codes[test]), data.y[test]
    return {"codes_used": int((counts > 0).sum()), "perplexity": float((-(p * p.log()).sum()).exp()),
            "agreement": float((ranks == 0).double().mean()), "top10": float((ranks < 10).double().mean()),
            "teacher_readout": float((classes[targets.codes[test]] == y).double().mean()),
            "student_readout": float((classes[scores.argmax(-1)] == y).double().mean())}


def one_run(dataset: str, seed: int, variant: str, cache: Path, data_root=None, overrides: Sequence[str] = ()) -> Dict:
    """Teacher (cached), targets of ``variant``, the preset's vqgraph student, and their figures
    (``overrides``: ``section.key=value`` for the run's config, as ``experiments.run --set``)."""
    plain = ["teacher.use_tokenizer=false"] if variant == "plain" else []
    cfg = RunSpec(dataset, "transductive", "vqgraph", "gcn", seed, (*overrides, *plain), quiet=True).config()
    task = prepare_task(dataset, "transductive", seed, cfg.data, data_root)
    data, split = task.data, task.split
    teacher, _, _ = cached_teacher(task, cfg, seed, cache)
    targets, tokenizer_s = teacher, 0.0
    if variant != "joint":
        start = time.perf_counter()
        joint = RunSpec(dataset, "transductive", "vqgraph", "gcn", seed, tuple(overrides)).config()
        tokenizer = tokenizer_config(joint.teacher)  # plain: the joint teacher's tokenizer settings too
        train = dataclasses.replace(TOKENIZER_TRAIN, seed=seed, progress=False)
        targets = fit_tokenizer(teacher, data, split, tokenizer, train)
        tokenizer_s = time.perf_counter() - start
    student = fit_selected_student(data, split, targets, cfg)
    m = student.metrics
    return {"dataset": dataset, "seed": seed, "variant": variant, "overrides": list(overrides),
            **code_fit(targets, student.model, data, split),
            "val": m["val/acc"], "test": m["test/acc"], "teacher_test": teacher.metrics["test/acc"],
            "soft_token_entropy": m.get("targets/soft_token_entropy"), "tokenizer_s": tokenizer_s,
            "tokenizer": {k: v for k, v in targets.metrics.items() if k.startswith("tokenizer/")},
            "student_s": m["train_s"]}


COLUMNS = ["dataset", "targets", "seeds", "teacher test", "codes used", "perplexity", "code agreement", "top-10",
           "teacher readout", "student readout", "student val", "student test"]
PERCENT = ("teacher_test", "agreement", "top10", "teacher_readout", "student_readout", "val", "test")


def counts(values: List[float]) -> str:
    """``"mean ± std"`` of counts, rounded to whole numbers."""
    return f"{statistics.mean(values):.0f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.0f}"


def tables(records: List[Dict]) -> str:
    """The figures per dataset and variant, then the paired differences to ``joint``."""
    rows, paired = [], []
    for dataset in dict.fromkeys(r["dataset"] for r in records):
        mine = {(r["variant"], r["seed"]): r for r in records if r["dataset"] == dataset}
        for variant in VARIANTS:
            got = [r for (v, _), r in sorted(mine.items()) if v == variant]
            if not got:
                continue
            cells = [mean_std([r[k] for r in got]) if k in PERCENT else counts([r[k] for r in got]) for k in
                     ("teacher_test", "codes_used", "perplexity", "agreement", "top10", "teacher_readout",
                      "student_readout", "val", "test")]
            rows.append([dataset, variant, len(got), *cells])
            seeds = sorted(s for (v, s) in mine if v == variant and ("joint", s) in mine)
            keys = ("val", "test") + (("teacher_test",) if variant == "plain" else ())  # plain: another teacher
            for key in keys if variant != "joint" and seeds else ():
                diffs = [mine[(variant, s)][key] - mine[("joint", s)][key] for s in seeds]
                paired.append([dataset, f"{variant} - joint", key.replace("_", " ") if "_" in key else f"student {key}",
                               len(seeds), mean_std(diffs, signed=True), " / ".join(map(str, win_tie_loss(diffs)))])
    text = markdown_table(COLUMNS, rows)
    if paired:
        columns = ["dataset", "difference", "metric", "seeds", "mean ± std (points)", "wins / ties / losses"]
        text += ("\nPaired over seeds (same split; `posthoc` also the same teacher, `plain` another):\n\n"
                 + markdown_table(columns, paired))
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.tokenizers", description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["cora", "citeseer", "a-computer", "a-photo"])
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--runs", type=Path, default=Path("experiments/results/tokenizers_runs"),
                        help="one record per finished run (read back, not rerun)")
    parser.add_argument("--cache", type=Path, default=Path("runs/cache/teachers"), help="the teacher cache")
    parser.add_argument("--set", nargs="+", default=[], metavar="SECTION.KEY=VALUE",
                        help="config overrides for every run (the tokenizer takes the teacher's settings)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the tables to OUT.md")
    parser.add_argument("--report", action="store_true",
                        help="tables of the finished runs only, naming the missing ones (nothing is trained)")
    args = parser.parse_args(argv)
    records, missing = collect(args, parser)
    given = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--report"]
    command = "python -m experiments.studies.tokenizers " + shlex.join(given)
    text = (f"# A tokenizer for any teacher, seeds {args.seeds}, transductive\n\nCommand: `OMP_NUM_THREADS=1 {command}`\n\n"
            "Accuracy and code fit in %, mean ± std over seeds; `codes used` and `perplexity` (of the code usage) over "
            "all nodes, mean ± std over seeds. Code agreement, top-10 and readouts on test nodes "
            "(experiments/studies/code_fit.py).\n\n")
    if missing:
        text += f"Not run yet (the command above runs them and reads back the rest): {', '.join(missing)}.\n\n"
    emit(text + tables(records), args.out)
    return 0


def collect(args, parser) -> tuple:
    """The records of the grid (each run when missing, unless ``args.report``) and the names of
    those still missing; a record made with other ``--set`` overrides is a usage error."""
    records, missing = [], []
    for seed in parse_seeds(args.seeds):  # seed by seed: a grid stopped early covers every graph
        for dataset in args.datasets:
            for variant in args.variants:
                path = args.runs / f"{dataset}-s{seed}-{variant}.json"
                if not path.is_file() and args.report:
                    missing.append(path.stem)
                    continue
                if not path.is_file():
                    write_json(path, one_run(dataset, seed, variant, args.cache, args.data_root, args.set))
                    print(f"tokenizers: {path.name} written", file=sys.stderr, flush=True)
                record = json.loads(path.read_text())
                if record.get("overrides", []) != args.set:
                    parser.error(f"{path} was made with --set {record.get('overrides', [])}, not {args.set}: "
                                 "use another --runs folder, or delete that record")
                records.append(record)
    return records, missing


if __name__ == "__main__":
    raise SystemExit(main())
