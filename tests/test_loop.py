"""The one training loop: its objective contract, the global-batch normalisation, the evaluator and
the progress bar."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from vqgraph import distributed
from vqgraph.evaluation import Evaluator
from vqgraph.training import Share, TrainConfig, fit, loop


class LineFit:
    """A toy objective: least squares of y = 3 x on 32 points, in batches of 8 (one loss term)."""

    terms = ("mse",)
    find_unused_parameters = False

    def __init__(self):
        self.x = torch.linspace(-1, 1, 32).unsqueeze(1)
        self.y = 3 * self.x
        self.epochs_seen = []

    def batches(self, epoch):
        self.epochs_seen.append(epoch)
        for idx in torch.arange(32).split(8):
            yield idx, Share(rows=8, labelled=8)

    def losses(self, net, batch):
        idx, share = batch
        return {"mse": share.mean(((net(self.x[idx]) - self.y[idx]) ** 2).sum(), share.rows)}

    def epoch_metrics(self):
        return {"objective/batches": 4.0}


def test_a_new_objective_needs_no_loop_of_its_own():
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    weights = []

    def evaluate(m):  # a made-up monitor that peaks at epoch 3 (0-based), then falls
        weights.append(float(m.weight.detach()))
        return {"val/acc": -abs(len(weights) - 4.0)}

    objective = LineFit()
    result = fit(model, objective, evaluate, TrainConfig(lr=0.1, weight_decay=0.0, max_epochs=50, patience=2, progress=False))
    assert result.best_epoch == 3 and len(result.history) == 6  # stopped 2 epochs after the best
    assert objective.epochs_seen == list(range(6))
    assert float(model.weight.detach()) == weights[3]  # the selected state was restored, not the last one
    first, last = result.history[0], result.history[-1]
    assert set(first) == {"train/loss", "loss/mse", "val/acc", "objective/batches"}
    assert first["train/loss"] == first["loss/mse"] and last["loss/mse"] < first["loss/mse"]  # it learns y = 3x


def test_share_mean_over_ranks_is_the_global_mean():
    losses = torch.arange(10, dtype=torch.float64)
    labelled = torch.zeros(10, dtype=torch.bool)
    labelled[[1, 2, 7]] = True
    share = Share(rows=10, labelled=3, shards=2)
    slices = [distributed.shard(torch.arange(10), rank, 2) for rank in (0, 1)]  # rows 0-4 and 5-9
    # DDP averages the ranks' losses: every row counts once, divided by the global count
    rows = sum(share.mean(losses[idx].sum(), share.rows) for idx in slices) / 2
    assert float(rows) == pytest.approx(float(losses.mean()))
    labels = sum(share.mean(losses[idx][labelled[idx]].sum(), share.labelled) for idx in slices) / 2
    assert float(labels) == pytest.approx(float(losses[labelled].mean()))
    # no labelled row in the global batch: zero, and still part of the backward pass
    logits = torch.zeros(4, 3, requires_grad=True)
    empty = Share(4, 0).mean(nn.functional.cross_entropy(logits[:0], torch.zeros(0, dtype=torch.long), reduction="sum"), 0)
    empty.backward()
    assert float(empty.detach()) == 0.0 and torch.equal(logits.grad, torch.zeros(4, 3))


def test_sharded_slices_carry_the_global_counts(monkeypatch):
    labelled = torch.zeros(20, dtype=torch.bool)
    labelled[[0, 3, 4, 11]] = True
    batch = torch.tensor([3, 4, 5, 6, 11, 12, 13])
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: distributed.Rank(rank, 2))
        idx, share = loop.sharded(batch, labelled)
        seen.append(idx)
        assert share == Share(rows=7, labelled=3, shards=2)
    assert torch.equal(torch.cat(seen), batch)  # contiguous slices, every row once


def test_evaluator_counts_by_hand_and_on_a_block_of_rows():
    y = torch.tensor([0, 1, 2, 1, 0, 2])
    pred = torch.tensor([0, 1, 0, 1, 1, 2])  # rows 2 and 4 wrong
    sets = {"val": torch.tensor([0, 1, 2]), "test_tran": torch.tensor([3, 4]), "test_ind": torch.tensor([5])}
    evaluator = Evaluator(y, sets, test_ind_ratio=0.2)
    metrics = evaluator(pred)
    assert metrics == {"val/acc": 2 / 3, "test_tran/acc": 0.5, "test_ind/acc": 1.0, "test_prod/acc": 0.8 * 0.5 + 0.2}
    assert "test_prod/acc" not in Evaluator(y, sets)(pred)  # without the hidden share, no production score
    assert evaluator.keys == list(metrics)
    # class scores are argmaxed; a block of rows counts only the nodes it holds (rows 2-4 here)
    scores = torch.nn.functional.one_hot(pred[2:5], 3).float()
    block = evaluator(scores, range(2, 5))
    assert block["val/acc"] == 0.0 and block["test_tran/acc"] == 0.5 and block["test_ind/acc"] != block["test_ind/acc"]  # NaN
    with pytest.raises(ValueError, match="4 predictions for 3 rows"):
        evaluator(pred[:4], range(2, 5))
    with pytest.raises(ValueError, match="index set 'val' has ids outside"):
        Evaluator(y, {"val": torch.tensor([6])})


def test_progress_bars_show_on_a_terminal_only(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr("sys.stderr", stream)
        bar = loop.progress(range(3), "x", enabled=True)
        assert bool(bar.disable) is (not shown)
        list(bar)
        assert ("x:" in stream.getvalue()) is shown  # a log file gets no carriage-return segments
    assert loop.progress(range(3), "x", enabled=False).disable is True


def test_a_moving_average_of_the_weights_is_what_is_evaluated_and_kept():
    class Recording(LineFit):
        def __init__(self):
            super().__init__()
            self.live = []  # the live weight before each step

        def losses(self, net, batch):
            self.live.append(float(net.weight.detach()))
            return super().losses(net, batch)

    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    seen = []

    def evaluate(m):
        seen.append((m is model, float(m.weight.detach())))
        return {"val/acc": -abs(len(seen) - 2.0)}  # peaks at epoch 1 (0-based)

    objective, decay = Recording(), 0.5
    train = TrainConfig(lr=0.1, weight_decay=0.0, max_epochs=3, patience=None, progress=False, ema=decay)
    result = fit(model, objective, evaluate, train)
    average = objective.live[0]
    for live in objective.live[1:5]:  # the weights after steps 1..4 (before steps 2..5)
        average = decay * average + (1 - decay) * live
    assert not seen[0][0] and seen[0][1] == pytest.approx(average, rel=1e-6)  # the average, not the live model
    assert result.best_epoch == 1 and float(model.weight.detach()) == seen[1][1]  # the kept state is the average's
    assert objective.live[4] != pytest.approx(average)  # (the live weights moved on: the test can tell them apart)
