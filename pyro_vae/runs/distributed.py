"""Running under ``torchrun``: data-parallel training and sharded evaluation.

``torchrun --nproc_per_node=N -m pyro_vae train ...`` starts N processes; each finds its rank in
the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE``),
and :func:`session` joins them in one process group: gloo on the CPU, nccl on CUDA devices
(``LOCAL_RANK`` picks each process's GPU). Without torchrun there is one process, rank 0, and
nothing here does anything.

**Training** (:mod:`pyro_vae.runs.training`): every process reads the same global batch of
``--batch-size`` rows and takes its own contiguous shard of them (:func:`shard`); the loss of a
shard is scaled so that ``DistributedDataParallel``'s average of the gradients is the gradient
of the global batch's mean loss. With the fused step every process draws the latents of the
*whole* batch from the same random stream — each encoder runs on its own rows only, their
distributions padded to the batch — so the draws are those one process makes and the run
follows the single-process run up to floating-point summation order. Pyro's estimators draw
the latents of their shard only, from a stream of their own; those runs are equal in
distribution, not in their numbers. Rank 0 writes the run directory.

**Evaluation** (:mod:`pyro_vae.runs.evaluate`): the test datapoints are split into contiguous
shards, each process estimates its own (per-datapoint random streams make every datapoint's
numbers those a single process gives it), and rank 0 gathers them into one
``evaluation.npz``, in order, without duplicates.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import PyroVaeError

#: How long a process waits for the others (joining, and in each collective operation).
TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class World:
    """This process's place among the processes of one run."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    local_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.size > 1


def _environment() -> World:
    try:
        return World(
            rank=int(os.environ.get("RANK", 0)),
            size=int(os.environ.get("WORLD_SIZE", 1)),
            local_rank=int(os.environ.get("LOCAL_RANK", 0)),
            local_size=int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", 1))),
        )
    except ValueError as e:
        raise PyroVaeError(f"torchrun environment: {e}") from None


def world() -> World:
    """The world of this process: from the process group once :func:`session` joined it."""
    if dist.is_available() and dist.is_initialized():
        env = _environment()
        return World(dist.get_rank(), dist.get_world_size(), env.local_rank, env.local_size)
    return World()


@contextlib.contextmanager
def session(device_kind: str = "cpu"):
    """Join the processes torchrun started (if it did), for the duration of a command.

    Each process gets an equal share of the CPU's cores (``torch.set_num_threads``), and on
    CUDA the GPU of its local rank.
    """
    env = _environment()
    if env.size <= 1 or (dist.is_available() and dist.is_initialized()):
        yield world()
        return
    if not dist.is_available():
        raise PyroVaeError("WORLD_SIZE > 1 but this torch has no torch.distributed")
    backend = "nccl" if device_kind == "cuda" else "gloo"
    if device_kind == "cuda":
        torch.cuda.set_device(env.local_rank)
    threads = max(1, (os.cpu_count() or 1) // max(env.local_size, 1))
    torch.set_num_threads(min(threads, torch.get_num_threads()))
    dist.init_process_group(backend, timeout=TIMEOUT)
    try:
        yield world()
        dist.barrier()  # leave together, not while rank 0 still writes the run
    finally:
        dist.destroy_process_group()


def shard(rows: int, w: World | None = None) -> slice:
    """The contiguous rows ``[start, stop)`` of ``rows`` that process ``w.rank`` takes: the
    first ``rows % size`` processes one more than the rest."""
    w = w or world()
    base, extra = divmod(rows, w.size)
    start = w.rank * base + min(w.rank, extra)
    return slice(start, start + base + (1 if w.rank < extra else 0))


def _device_for_collectives(reference: torch.Tensor | None = None) -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_sum(value: float) -> float:
    """The sum of ``value`` over all processes (the value itself in one process)."""
    if not world().parallel:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=_device_for_collectives())
    dist.all_reduce(t)
    return t.item()


def any_true(flag: bool) -> bool:
    """Whether ``flag`` is true in any process: so that all stop together when one must."""
    return all_sum(1.0 if flag else 0.0) > 0


def gather(obj) -> list | None:
    """Every process's ``obj``, in rank order, on rank 0 (None elsewhere); ``[obj]`` alone."""
    w = world()
    if not w.parallel:
        return [obj]
    out = [None] * w.size if w.is_main else None
    dist.gather_object(obj, out, dst=0)
    return out


def broadcast(obj):
    """Rank 0's ``obj`` in every process."""
    if not world().parallel:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    if world().parallel:
        dist.barrier()


def on_main(fn):
    """``fn()`` in rank 0 only, its result in every process; a :class:`PyroVaeError` it raises
    is raised in every process, so that all stop together instead of waiting for rank 0."""
    if not world().parallel:
        return fn()
    outcome = None
    if world().is_main:
        try:
            outcome = ("ok", fn())
        except PyroVaeError as e:
            outcome = ("error", str(e), e)
    message = broadcast(None if outcome is None else outcome[:2])
    if message[0] == "error":
        if outcome is not None:
            raise outcome[2]
        raise PyroVaeError(message[1])
    return message[1]
