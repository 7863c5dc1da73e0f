"""experiments.studies.choice: auto's result per seed is the fixed run of the candidate chosen on
the halved-validation runs, and the table pairs it with every fixed candidate."""

from __future__ import annotations

import json
import statistics

from experiments.studies import choice as study
from vqgraph.app.choice import CANDIDATES, choose

FAST = ["train.max_epochs=3", "student_train.max_epochs=3", "teacher.codebook_size=16", "teacher.hidden_channels=16"]


def test_auto_is_the_chosen_candidates_fixed_run_seed_by_seed(tmp_path, capsys):
    argv = ["--datasets", "synthetic", "--seeds", "0-1", "--runs", str(tmp_path / "runs"), "--cache",
            str(tmp_path / "cache"), "--out", str(tmp_path / "choice"), "--set", *FAST]
    assert study.main(argv) == 0
    auto, counts = [], {c.name: 0 for c in CANDIDATES}
    for seed in (0, 1):
        def read(kind, name):
            folder = tmp_path / "runs" / kind / name
            return json.loads(next(folder.glob(f"synthetic-transductive-*-s{seed}/results.json")).read_text())
        val = {c.name: read("choice", c.name)["metrics"]["val/acc"] for c in CANDIDATES}
        assert all(read("choice", c.name)["config"]["data"]["val_split"] == "halves" for c in CANDIDATES)
        chosen = choose(val)
        counts[chosen] += 1
        auto.append(read("fixed", chosen)["metrics"]["test/acc"])
    table = (tmp_path / "choice.md").read_text()
    line = next(row for row in table.splitlines() if row.startswith("| synthetic | transductive | 2 |"))
    assert f"| {100 * statistics.mean(auto):.2f} |" in line
    assert ", ".join(f"{name} {n}" for name, n in counts.items()) in line
    capsys.readouterr()
    assert study.main(argv) == 0  # every run finished: reused, the same table
    assert (tmp_path / "choice.md").read_text() == table
