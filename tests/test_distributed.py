"""torch.distributed: 2 gloo processes launched by torchrun on this machine against one process.

The job (``tests/dist_worker.py``) trains on a tiny graph, in the inductive setting:

* a plain SAGE teacher, mini-batch with every neighbour and no dropout, and a GLNN student: each
  rank's share of a global batch then carries exactly its part of the single-process gradient,
  so parameters must match the single-process run to float rounding (stated tolerance 1e-5);
* a VQGraph teacher full-batch (every rank repeats the single-process step: identical) and the
  VQGraph student distilled from it (tolerance 1e-5);
* a VQGraph teacher with sampled fan-outs, sharded mini-batches and dead-code restarts: ranks
  sample differently from one process, so only agreement across ranks is exact;
* a user's loss term (``vqgraph.LossTerm``, normalised with ``inputs.mean``) on the MLP student and
  on a user's student module (a residual MLP with a projection into code space): the term's logged
  value and the parameters match one process's (1e-5).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vqgraph import distributed

HERE = Path(__file__).resolve().parent
WORKER = HERE / "dist_worker.py"
REPO = HERE.parent


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    return env


def _torchrun(nproc: int, *args, timeout: float = 300):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=timeout, cwd=REPO)


def _worker(tmp: Path, name: str, nproc: int) -> dict:
    out = tmp / f"{name}.json"
    if nproc == 1:  # plain python: a world of size one
        cmd = [sys.executable, str(WORKER), "train", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=300, cwd=REPO)
    else:
        proc = _torchrun(nproc, str(WORKER), "train", str(out))
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(out.read_text())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    return {"one": _worker(tmp, "one", 1), "two": _worker(tmp, "two", 2), "two_again": _worker(tmp, "two_again", 2)}


def _max_diff(a, b) -> float:
    return float((torch.tensor(a) - torch.tensor(b)).abs().max())


def test_ranks_hold_identical_models_after_training(runs):
    assert runs["two"]["world_size"] == 2 and runs["one"]["world_size"] == 1
    # parameters, codebooks, running statistics and the gathered teacher targets, on every rank
    assert runs["two"]["spread"] == {key: 0.0 for key in runs["two"]["spread"]}


def test_two_processes_match_one_process_with_the_same_global_batch(runs):
    one, two = runs["one"], runs["two"]
    assert _max_diff(one["teacher_params"], two["teacher_params"]) < 1e-5
    assert _max_diff(one["student_params"], two["student_params"]) < 1e-5
    assert _max_diff(one["full_teacher_state"], two["full_teacher_state"]) < 1e-5
    assert _max_diff(one["vq_student_params"], two["vq_student_params"]) < 1e-5
    assert _max_diff(one["tokens_student_params"], two["tokens_student_params"]) < 1e-5
    assert _max_diff(one["no_code_student_params"], two["no_code_student_params"]) < 1e-5
    for key in ("teacher_metrics", "student_metrics", "full_teacher_metrics", "vq_student_metrics"):
        for metric, value in one[key].items():
            if metric.endswith("/acc"):  # validation all-reduced over ranks: the same selection
                assert two[key][metric] == pytest.approx(value, abs=1e-6), (key, metric)
        assert two[key]["best_epoch"] == one[key]["best_epoch"]
    # sampled fan-outs: the ranks sample other neighbourhoods than one process; same ballpark
    assert abs(two["vq_teacher_metrics"]["val/acc"] - one["vq_teacher_metrics"]["val/acc"]) < 0.1


def test_a_users_term_and_student_under_two_processes_match_one_process(runs):
    one, two = runs["one"], runs["two"]
    assert len(one["term_history"]) == len(two["term_history"]) == 4
    # the term's epoch mean, reduced over ranks, is the one-process value of the same global batches
    assert two["term_history"] == pytest.approx(one["term_history"], rel=1e-5)
    assert two["custom_history"][0] == pytest.approx(one["custom_history"][0], rel=1e-5)
    for a, b in zip(one["custom_history"], two["custom_history"]):
        assert b == pytest.approx(a, rel=1e-4)
    assert _max_diff(one["term_student_params"], two["term_student_params"]) < 1e-5
    assert _max_diff(one["custom_student_params"], two["custom_student_params"]) < 1e-5
    assert one["term_history"][-1] != one["term_history"][0]  # it trained


def test_same_seed_and_world_size_give_the_same_result(runs):
    first, again = runs["two"], runs["two_again"]
    for key in ("teacher_params", "student_params", "vq_student_params", "full_teacher_state"):
        assert first[key] == again[key]
    timings = ("train_s", "epoch_s", "infer_s")
    for key in ("teacher_metrics", "vq_teacher_metrics", "student_metrics", "vq_student_metrics"):
        assert {k: v for k, v in first[key].items() if k not in timings} == {
            k: v for k, v in again[key].items() if k not in timings
        }


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    out = tmp_path / "fail.json"
    start = time.perf_counter()
    proc = _torchrun(2, str(WORKER), "fail", str(out), timeout=120)
    elapsed = time.perf_counter() - start
    assert proc.returncode != 0
    assert "rank 1 failed on purpose" in proc.stderr
    assert elapsed < 60, f"the job took {elapsed:.0f} s to end"
    assert not out.exists()  # rank 0 never got past the collective


@pytest.mark.realdata
def test_run_cli_under_torchrun_writes_once_from_rank_zero(tmp_path, data_root):
    """``experiments.run`` unchanged under torchrun: sharded mini-batch teacher, DDP student."""
    out = tmp_path / "run"
    args = ["-m", "experiments.run", "--dataset", "cora", "--data-root", str(data_root), "--method", "vqgraph", "--seed", "0"]
    args += ["--out", str(out), "--cache", str(tmp_path / "cache"), "--quiet", "--wandb", "offline"]
    args += ["--set", "train.max_epochs=3", "train.batch_size=64", "student_train.max_epochs=3", "teacher.codebook_size=64"]
    proc = _torchrun(2, *args)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert proc.stdout.count("cora transductive vqgraph") == 1  # one summary line: rank 0's
    result = json.loads((out / "results.json").read_text())
    assert result["environment"]["world_size"] == 2 and result["epochs"] == 3
    assert len(list((out / "wandb").glob("offline-run-*"))) == 1
    assert len(list((tmp_path / "cache").glob("*/teacher.pt"))) == 1
    from vqgraph.data import load_dataset, make_split
    from vqgraph.serving import Predictor

    raw = load_dataset("cora", root=data_root)
    split = make_split(raw, seed=0)
    labels = Predictor.load(out / "student.pt").predict(raw.x).labels
    served = (labels[split.test_idx] == raw.y[split.test_idx]).double().mean().item()
    assert served == pytest.approx(result["metrics"]["test/acc"], abs=1e-6)


# ---- helpers in a world of one, and the batch sharding logic ----------------------------------
def test_world_of_one_without_torchrun(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert distributed.init() == distributed.Rank(0, 1) and distributed.world().is_main
    block = torch.arange(6.0).view(3, 2)
    assert distributed.all_gather_rows(block, [3]) is block
    assert torch.equal(distributed.all_reduce_sum(block), block)
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}


def test_init_names_missing_launcher_variables(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(RuntimeError, match="RANK, MASTER_ADDR, MASTER_PORT not set: launch with torchrun"):
        distributed.init()


def test_row_ranges_and_shards_cover_every_row_once():
    for n, w in [(10, 3), (2, 4), (0, 2), (7, 1)]:
        ranges = distributed.row_ranges(n, w)
        assert [i for r in ranges for i in r] == list(range(n))
        assert max(map(len, ranges)) - min(map(len, ranges)) <= 1
        items = torch.arange(n) * 10
        assert torch.equal(torch.cat([distributed.shard(items, r, w) for r in range(w)]), items)


def test_sharded_batches_give_every_rank_seeds(monkeypatch):
    from vqgraph.data import make_csbm
    from vqgraph.models import TeacherConfig, VQGraphTeacher
    from vqgraph.training import Share, TeacherObjective, TrainConfig
    from vqgraph.training.loop import Streams

    data = make_csbm(num_nodes=60, num_edges=200, num_classes=2, num_features=4, seed=0)
    config, train = TeacherConfig(conv="sage"), TrainConfig(batch_size=8, fanouts=(3,))
    model = VQGraphTeacher(4, 2, config)
    seeds = torch.arange(17)  # batches of 8, 8, 1: the last one has fewer seeds than 2 ranks
    slices = []
    for rank in (0, 1):
        monkeypatch.setattr(distributed, "world", lambda rank=rank: distributed.Rank(rank, 2))
        streams = Streams(torch.Generator().manual_seed(0), torch.Generator().manual_seed(rank))
        objective = TeacherObjective(data, seeds, model, train, streams)
        sample = objective.batcher.sample
        objective.batcher.sample = lambda mine, gen, sample=sample: slices.append(mine) or sample(mine, gen)
        batches = list(objective.batches(0))
        assert [b.num_targets for b in batches] == [4, 5 - rank]  # 8 and 9 seeds, split over 2 ranks
        # each rank normalises by the global batch, times the 2 shards DDP's mean divides by
        assert [b.share for b in batches] == [Share(8, 8, 2), Share(9, 9, 2)]
    # the ranks' slices are parts of the same global batches: together every seed once per epoch
    assert sorted(torch.cat(slices).tolist()) == seeds.tolist()
    with pytest.raises(ValueError, match="1 training seed"):
        list(TeacherObjective(data, seeds[:1], model, train, streams).batches(0))


@pytest.mark.parametrize("kind", ["gcn", "sage", "sage_gcn", "gat", "appnp", "gcnii"])
def test_layerwise_inference_in_a_world_of_one_is_the_full_forward(kind):
    from vqgraph.data import make_csbm
    from vqgraph.models import TeacherConfig, VQGraphTeacher
    from vqgraph.models.inference import infer_layerwise

    data = make_csbm(num_nodes=200, num_edges=800, num_classes=3, num_features=8, seed=0)
    torch.manual_seed(0)
    model = VQGraphTeacher(8, 3, TeacherConfig(conv=kind, hidden_channels=8, num_layers=2, codebook_size=16))
    adj = model.adjacency(data.edge_index, data.num_nodes)
    model(data.x, adj, data.edge_index)  # a training step moves the codebook and batch statistics
    model.eval()
    with torch.no_grad():
        full = model(data.x, adj)
    layerwise = infer_layerwise(model, data.x, adj)
    for a, b in zip(full[:3], layerwise[:3]):
        assert torch.equal(a, b)


@pytest.mark.parametrize("kind", ["gcn", "sage", "sage_gcn", "gat"])
def test_a_layer_over_row_blocks_equals_the_layer_over_all_rows(kind):
    """What each rank computes: its rows of a layer from all nodes' inputs, with the full graph's
    adjacency (GCN degrees of the whole graph; GAT self-loops at the right sources)."""
    from vqgraph.data import make_csbm
    from vqgraph.models.encoders import layer_rows, resolve_conv

    data = make_csbm(num_nodes=120, num_edges=500, num_classes=3, num_features=6, seed=1)
    torch.manual_seed(0)
    spec = resolve_conv(kind)
    layer = spec.build(6, 4).eval()
    adj = spec.prepare(data.edge_index, data.num_nodes)
    with torch.no_grad():
        full = layer(data.x, adj)
        blocks = [
            layer_rows(layer, data.x, spec.rows(adj, rows), rows, gather=None)
            for rows in distributed.row_ranges(data.num_nodes, 3)
        ]
    assert torch.allclose(torch.cat(blocks), full, atol=1e-6)


def test_a_deep_teacher_over_row_blocks_equals_its_layers_over_all_rows():
    """GCNII's layers read the first layer's output at their rows (initial residual): a rank
    that holds only a block of rows must get each layer's rows as the whole-graph pass does."""
    from vqgraph.data import make_csbm
    from vqgraph.models import TeacherConfig, VQGraphTeacher

    data = make_csbm(num_nodes=150, num_edges=600, num_classes=3, num_features=6, seed=2)
    torch.manual_seed(0)
    model = VQGraphTeacher(6, 3, TeacherConfig(conv="gcnii", hidden_channels=8, num_layers=4, codebook_size=16)).eval()
    adj = model.adjacency(data.edge_index, data.num_nodes)
    everything = range(data.num_nodes)
    outputs, h = [], data.x
    for i in range(model.num_graph_layers - 1):  # the whole graph, layer by layer
        h = model.inference_per_layer(i, h, adj, everything, None, outputs[0] if outputs else None)
        outputs.append(h)
    for rows in distributed.row_ranges(data.num_nodes, 3):  # one "rank" at a time, as on its own process
        adj_rows = model.encoder.spec.rows(adj, rows)
        inputs = [data.x] + outputs[:-1]
        for i, (x_in, want) in enumerate(zip(inputs, outputs)):
            first = outputs[0][rows.start : rows.stop] if i else None  # this rank's rows of layer 0
            got = model.inference_per_layer(i, x_in, adj_rows, rows, None, first)
            assert torch.allclose(got, want[rows.start : rows.stop], atol=1e-5), f"layer {i}, rows {rows}"


def test_a_deep_teacher_refuses_mini_batches():
    from vqgraph.data import make_csbm
    from vqgraph.models import TeacherConfig, VQGraphTeacher
    from vqgraph.training.loop import Streams, TrainConfig
    from vqgraph.training.teacher import TeacherObjective

    data = make_csbm(num_nodes=60, num_edges=200, num_classes=3, num_features=4, seed=0)
    model = VQGraphTeacher(4, 3, TeacherConfig(conv="gcnii", num_layers=8))
    train = TrainConfig(batch_size=16)
    with pytest.raises(ValueError, match="gcnii.*full-batch only.*batch_size"):
        TeacherObjective(data, torch.arange(10), model, train, Streams(torch.Generator(), torch.Generator()))
