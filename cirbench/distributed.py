"""Several training processes (``cirbench run --nproc N`` or a ``torchrun`` launch).

One process per device; NCCL on CUDA, gloo on CPU. Every rank draws the same data order from the
same generator and keeps its share of each global batch (:func:`shard`), so the global batch
size is the config's ``batch_size`` whatever the number of processes. Only rank 0 writes
checkpoints and records and runs the evaluation.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) without a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def is_main() -> bool:
    return world()[0] == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device: torch.device) -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's device."""
    if not launched_by_torchrun() or dist.is_initialized():
        return device
    if device.type == "cuda":
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:  # CPU ranks share the cores instead of each taking all of them
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["WORLD_SIZE"])))
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def shard(indices: torch.Tensor) -> torch.Tensor:
    """This rank's part of a global batch of indices (every rank holds the same global batch)."""
    rank, size = world()
    return indices[rank::size] if size > 1 else indices


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    """Mean of the gradients over ranks, for parameters outside DDP (e.g. center-loss centers)."""
    _, size = world()
    for p in params:
        if size > 1 and p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= size


def gather(obj: T) -> list[T]:
    """Every rank's ``obj``, in rank order (a one-element list without a process group)."""
    _, size = world()
    if size == 1:
        return [obj]
    out: list[Any] = [None] * size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if world()[1] > 1:
        dist.barrier()


def shutdown(clean: bool = True) -> None:
    """Leave the process group before the interpreter exits.

    A gloo group left open when Python exits can abort the process (``terminate called without
    an active exception``, SIGABRT) while its worker threads are being torn down; torchrun then
    reports the whole run failed although every rank finished. ``clean`` waits for the other
    ranks first; after an error no barrier is attempted, since the other ranks may never come.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if clean:
        dist.barrier()
    dist.destroy_process_group()
