"""experiments.studies.teacher_init: the student started from its GCN teacher (TINED's initialisation)."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.studies import teacher_init
from vqgraph.models import MLPStudent, StudentConfig
from vqgraph.models.teacher import TeacherConfig, VQGraphTeacher


def teacher_and_student(conv="gcn", width=16, num_layers=1):
    torch.manual_seed(0)
    teacher = VQGraphTeacher(12, 3, TeacherConfig(conv=conv, hidden_channels=16, num_layers=num_layers,
                                                  codebook_size=8)).eval()
    return teacher, MLPStudent(12, 3, StudentConfig(hidden_channels=width, num_layers=2)).eval()


def test_without_edges_the_started_student_is_the_teacher():
    teacher, student = teacher_and_student()
    before = student.classifier.weight.clone()
    teacher_init.student_from_teacher(teacher, student)
    assert not torch.equal(before, student.classifier.weight)
    x = torch.rand(5, 12)
    no_edges = teacher.adjacency(torch.empty(2, 0, dtype=torch.long), 5)  # self-loops only: A is the identity
    expected = teacher(x, no_edges, skip_tokenizer=True).logits
    torch.testing.assert_close(student(x).logits, expected)


@pytest.mark.parametrize("kwargs, message", [
    ({"conv": "sage"}, "GCN teacher of one graph layer"),
    ({"num_layers": 2}, "GCN teacher of one graph layer"),
    ({"width": 32}, "give the student the teacher's width"),
])
def test_a_teacher_the_student_cannot_start_from_is_refused(kwargs, message):
    teacher, student = teacher_and_student(**kwargs)
    with pytest.raises(ValueError, match=message):
        teacher_init.student_from_teacher(teacher, student)


def test_the_study_writes_its_table_and_reuses_finished_seeds(data_root, tmp_path, monkeypatch):
    out = tmp_path / "init"
    argv = ["--datasets", "cora", "--seeds", "0", "--set", "train.max_epochs=5", "student_train.max_epochs=5",
            "--data-root", str(data_root), "--cache", str(tmp_path / "cache"), "--out", str(out)]
    assert teacher_init.main(argv) == 0
    text = out.with_suffix(".md").read_text()
    line = next(line for line in text.splitlines() if line.startswith("| cora | 1 |"))
    assert line.count("(") == 4 and line.endswith("| 0/1 |")  # four paired columns; no cache entry to match
    stored = json.loads(out.with_suffix(".json").read_text())
    assert set(next(iter(stored.values()))) == {"gcn", "as_cached", *teacher_init.ARMS}
    monkeypatch.setattr(teacher_init, "seed_row", lambda *a: pytest.fail("a finished seed was trained again"))
    assert teacher_init.main(argv) == 0
    assert out.with_suffix(".md").read_text() == text
