"""Process-group helpers: one code path for a single process and for ``torchrun`` jobs.

Trainers never branch on "distributed or not": they ask :func:`world` for the rank and the
world size (``Rank(0, 1)`` in a plain ``python`` process) and call the collectives below,
which are no-ops in a world of size 1. :func:`init` starts the process group when the
environment that ``torchrun`` sets up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``, ...) says
there is more than one process: gloo on CPU, nccl when the device is a GPU.

Failures: ``torchrun`` stops every rank of a job as soon as one exits with an error and
reports that rank's traceback (entry points are wrapped in :func:`entry_point`); the process
group's timeout (``VQGRAPH_DIST_TIMEOUT`` seconds, default 600) bounds what a rank waits for
a peer that disappeared without its launcher noticing.
"""

from __future__ import annotations

import datetime
import functools
import os
from typing import List, NamedTuple, Optional, Sequence

import torch
import torch.distributed as dist
from torch import Tensor

DEFAULT_TIMEOUT_S = 600.0


class Rank(NamedTuple):
    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def world() -> Rank:
    """This process's rank and the world size (``Rank(0, 1)`` without a process group)."""
    if is_initialized():
        return Rank(dist.get_rank(), dist.get_world_size())
    return Rank(0, 1)


def init(device: str = "cpu", timeout_s: Optional[float] = None) -> Rank:
    """Join the process group described by the environment (``torchrun``), if any.

    Idempotent; without ``WORLD_SIZE > 1`` nothing is started and ``Rank(0, 1)`` is returned.
    The backend is nccl for CUDA devices and gloo otherwise.
    """
    if is_initialized() or _env_world_size() <= 1:
        return world()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    missing = [key for key in ("RANK", "MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
    if missing:
        raise RuntimeError(
            f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: launch with torchrun"
        )
    timeout_s = float(os.environ.get("VQGRAPH_DIST_TIMEOUT", timeout_s or DEFAULT_TIMEOUT_S))
    backend = "nccl" if torch.device(device).type == "cuda" else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_device(device))
    dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return world()


def local_device(device: str) -> torch.device:
    """``device`` for this process: under torchrun, ``cuda`` (with or without an index) becomes
    ``cuda:LOCAL_RANK``, one GPU per rank."""
    dev = torch.device(device)
    if dev.type == "cuda" and _env_world_size() > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return dev


def shutdown() -> None:
    if is_initialized():
        dist.destroy_process_group()


def entry_point(fn):
    """Wrap a script's ``main``: under ``torchrun``, torch's ``record`` reports the failing
    rank's traceback; in every case the process group (if one was started) is shut down when
    ``fn`` returns or raises."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        call = fn
        if "TORCHELASTIC_ERROR_FILE" in os.environ:
            from torch.distributed.elastic.multiprocessing.errors import record

            call = record(fn)
        try:
            return call(*args, **kwargs)
        finally:
            shutdown()

    return wrapper


# ---- collectives (identity in a world of size 1) ---------------------------------------------
def _comm_device() -> torch.device:
    """Where collectives run: nccl needs the rank's GPU, gloo takes CPU tensors."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum of ``tensor`` over ranks (a new tensor on the input's device; the input is left alone)."""
    if world().world_size == 1:
        return tensor.clone()
    out = tensor.to(_comm_device(), copy=True)
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(tensor.device)


def all_reduce_max(value: float) -> float:
    if world().world_size == 1:
        return value
    out = torch.tensor([value], dtype=torch.float64, device=_comm_device())
    dist.all_reduce(out, op=dist.ReduceOp.MAX)
    return float(out)


def broadcast_object(obj, src: int = 0):
    """``obj`` of rank ``src`` on every rank (pickled; for small objects)."""
    if world().world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def gather_objects(obj) -> list:
    """Every rank's ``obj``, in rank order, on every rank (pickled; for small objects)."""
    if world().world_size == 1:
        return [obj]
    out = [None] * world().world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    """Wait for every rank (nothing in a world of one)."""
    if world().world_size > 1:
        dist.barrier()


def all_gather_rows(block: Tensor, sizes: Sequence[int]) -> Tensor:
    """Concatenate every rank's ``block`` along dim 0 (rank order); ``sizes[r]`` is rank r's
    number of rows (blocks are padded to the largest, as gloo needs equal sizes)."""
    rank, size = world()
    if size == 1:
        return block
    if block.size(0) != sizes[rank]:
        raise ValueError(f"rank {rank}: block has {block.size(0)} rows but sizes[{rank}] = {sizes[rank]}")
    longest = max(sizes)
    padded = torch.zeros((longest, *block.shape[1:]), dtype=block.dtype, device=_comm_device())
    padded[: block.size(0)] = block
    parts = [torch.empty_like(padded) for _ in range(size)]
    dist.all_gather(parts, padded)
    return torch.cat([part[:n] for part, n in zip(parts, sizes)]).to(block.device)


def broadcast_buffers(module: torch.nn.Module, src: int = 0) -> None:
    """Copy ``src``'s buffers (codebook, running statistics) to every rank."""
    if world().world_size == 1:
        return
    for buffer in module.buffers():
        if buffer.dtype == torch.bool:  # gloo has no bool: go through uint8
            tmp = buffer.to(torch.uint8)
            dist.broadcast(tmp, src=src)
            buffer.copy_(tmp.bool())
        else:
            dist.broadcast(buffer.data, src=src)


# ---- sharding ----------------------------------------------------------------------------------
def row_ranges(num_rows: int, world_size: int) -> List[range]:
    """Contiguous, near-equal row ranges, one per rank (the first ranks get one more row)."""
    base, extra = divmod(num_rows, world_size)
    out, start = [], 0
    for r in range(world_size):
        stop = start + base + (1 if r < extra else 0)
        out.append(range(start, stop))
        start = stop
    return out


def shard(items: Tensor, rank: Optional[int] = None, world_size: Optional[int] = None) -> Tensor:
    """This rank's contiguous part of ``items`` (all of it in a world of size 1)."""
    me = world()
    rank = me.rank if rank is None else rank
    world_size = me.world_size if world_size is None else world_size
    rows = row_ranges(items.size(0), world_size)[rank]
    return items[rows.start : rows.stop]


def global_batches(items: Tensor, batch_size: int, min_rows: int = 1) -> List[Tensor]:
    """``items`` cut into batches of ``batch_size``; a last batch of fewer than ``min_rows``
    rows joins the one before (e.g. one seed per rank, or two rows per rank for batch norm)."""
    batches = list(items.split(batch_size))
    if len(batches) > 1 and batches[-1].numel() < min_rows:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def wrap_ddp(model: torch.nn.Module, find_unused_parameters: bool = False) -> torch.nn.Module:
    """``model`` under DistributedDataParallel in a world of size > 1, else ``model`` itself."""
    if world().world_size == 1:
        return model
    from torch.nn.parallel import DistributedDataParallel

    device = next(model.parameters()).device
    ids = [device] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def max_over_ranks(count: int) -> int:
    """The largest ``count`` of any rank (e.g. quantizer calls that every rank must make)."""
    return int(all_reduce_max(float(count)))
