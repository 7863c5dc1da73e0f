"""How closely distilled students follow the teacher's tokenizer, from finished runs, as a table.

    python -m experiments.studies.code_fit RUNS [RUNS ...] [--data-root DIR] [--out FILE.md]

For every run with a codebook (``vqgraph``) under the grids ``RUNS`` (folders of runs, each with
``results.json`` and ``student.pt``), on its test nodes (``test`` or ``test_tran`` + ``test_ind``):

* ``agreement``: the fraction whose nearest code under the student is the teacher's code, and
  ``top-10``: the fraction where the teacher's code is among the student's 10 nearest;
* ``z cosine``: mean cosine between the student's and the teacher's code-space vectors;
* ``teacher margin``: the mean gap between the teacher's similarity to its nearest and its
  second-nearest code (when it is small, nearest-code agreement is a harsh measure);
* ``teacher readout`` / ``student readout``: accuracy of labelling a node with its code's class,
  where a code's class is the majority of the teacher's predictions over the observed nodes
  the teacher assigns to it (no label builds the map). The teacher's readout says how much class
  information its codes hold; the student's, how much of it the student's code assignment keeps;
* ``student acc``: the student's own test accuracy.

Rows are grouped by grid, dataset and setting (mean ± std over seeds).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Dict, List

import torch
from torch import Tensor

from experiments.common import emit
from vqgraph.app.records import markdown_table, mean_std
from vqgraph.app.task import DataConfig, prepare_task
from vqgraph.losses import code_logits
from vqgraph.serving import Predictor
from vqgraph.targets import TeacherTargets


def code_classes(codes: Tensor, predictions: Tensor, num_codes: int, num_classes: int) -> Tensor:
    """Each code's majority class among ``predictions`` of the nodes assigned to it; -1 for unused codes."""
    counts = torch.zeros(num_codes, num_classes, dtype=torch.long)
    counts.index_put_((codes, predictions), torch.ones_like(codes), accumulate=True)
    return torch.where(counts.sum(1) > 0, counts.argmax(1), torch.full((num_codes,), -1))


COSINES = ("z_cosine", "teacher_margin")  # in cosine units, not fractions


def code_ranks(scores: Tensor, codes: Tensor) -> Tensor:
    """For each row of ``scores`` [B, K], how many codes score strictly above code ``codes`` [B]
    (0: it is the nearest)."""
    return (scores > scores.gather(1, codes[:, None])).sum(1)


def run_fit(folder: Path, root=None) -> Dict[str, float]:
    """The figures of one run folder (see the module docstring)."""
    result = json.loads((folder / "results.json").read_text())
    targets = TeacherTargets.load(result["teacher_artifact"])
    predictor = Predictor.load(folder / "student.pt")
    if targets.codebook is None or predictor.model.projection is None:
        raise ValueError(f"{folder}: the run has no codebook (method {result['method']!r}); only vqgraph runs have codes")
    # the run's own normalised features and split: the teacher's fingerprints are checked against them
    data, split, _ = prepare_task(
        result["dataset"], result["setting"], result["seed"], DataConfig(**result["config"]["data"]), root
    )
    targets.check_matches(data, split)
    test = torch.cat([idx for name, idx in split.index_dict().items() if name.startswith("test")])
    observed = split.observed_idx
    classes = code_classes(
        targets.codes[observed], targets.logits[observed].argmax(-1), targets.codebook.size(0), data.num_classes
    )
    with torch.no_grad():
        out = predictor.model.eval()(data.x[test])
    scores = code_logits(out.z, targets.codebook, targets.metric)
    codes = scores.argmax(-1)
    y, teacher_codes = data.y[test], targets.codes[test]
    ranks = code_ranks(scores, teacher_codes)
    teacher_scores = code_logits(targets.z[test], targets.codebook, targets.metric)
    top2 = teacher_scores.topk(min(2, targets.codebook.size(0)), dim=-1).values
    return {
        "agreement": float((ranks == 0).double().mean()),
        "top10": float((ranks < 10).double().mean()),
        "z_cosine": float(torch.nn.functional.cosine_similarity(out.z, targets.z[test], dim=-1).double().mean()),
        "teacher_margin": float((top2[:, 0] - top2[:, -1]).double().mean()),
        "teacher_readout": float((classes[teacher_codes] == y).double().mean()),
        "student_readout": float((classes[codes] == y).double().mean()),
        "student_acc": float((out.logits.argmax(-1) == y).double().mean()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.studies.code_fit", description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="folders of runs (as written by experiments.reproduce)")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--out", type=Path, default=None, help="write the Markdown table here too")
    args = parser.parse_args(argv)
    groups: Dict[tuple, List[Dict[str, float]]] = {}
    for grid in args.runs:
        folders = sorted(p.parent for p in grid.glob("*/results.json"))
        if not folders:
            parser.error(f"no finished runs (*/results.json) under {grid}")
        for folder in folders:
            result = json.loads((folder / "results.json").read_text())
            if result["method"] != "vqgraph":
                continue
            groups.setdefault((str(grid), result["dataset"], result["setting"]), []).append(run_fit(folder, args.data_root))
    keys = ["agreement", "top10", "z_cosine", "teacher_margin", "teacher_readout", "student_readout", "student_acc"]
    lines = [
        "On test nodes, mean ± std over seeds; % except `z cosine` and `teacher margin` (cosine units). "
        "Command: `python -m experiments.studies.code_fit " + " ".join(str(a) for a in (argv if argv is not None else [])) + "`",
        "",
    ]
    columns = ["grid", "dataset", "setting", "seeds", "code agreement", "top-10", "z cosine", "teacher margin",
               "teacher readout", "student readout", "student acc"]
    cells = [[grid, dataset, setting, len(rows), *(mean_std([r[k] for r in rows], percent=k not in COSINES) for k in keys)]
             for (grid, dataset, setting), rows in groups.items()]
    emit("\n".join(lines) + "\n" + markdown_table(columns, cells), args.out)
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
