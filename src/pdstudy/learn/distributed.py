"""Data-parallel training under ``torchrun``: the process group, batch sharding, DDP and rank-0 I/O.

With ``WORLD_SIZE`` unset or 1 nothing here touches ``torch.distributed``. The semantics on ``N``
processes (global batch, learning rate, batch norm, noise, files) are in docs/cluster.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from timm.layers import convert_sync_batchnorm
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pdstudy.learn.device import resolve_device

T = TypeVar("T")

#: Variables torchrun sets for every worker (``env://`` initialisation).
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class World:
    """This process's place in the job: global ``rank``, ``size`` (world size) and ``local_rank``."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process trains together."""
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that evaluates and writes files."""
        return self.rank == 0


def world() -> World:
    """The current world (a single process unless a process group is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return World()


def requested_world_size() -> int:
    """``WORLD_SIZE`` from the environment (1 when unset)."""
    value = os.environ.get("WORLD_SIZE", "1")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable WORLD_SIZE must be an integer, got {value!r}") from None


def backend_for(device: torch.device) -> str:
    """``nccl`` for CUDA devices, ``gloo`` otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def init_from_env(device: str = "auto", *, timeout_minutes: float = 60.0) -> World:
    """Join the process group described by torchrun's variables (:data:`TORCHRUN_VARIABLES`).

    Does nothing when ``WORLD_SIZE`` is unset or 1. On CUDA each process uses ``cuda:LOCAL_RANK``
    (``torch.cuda.set_device``), so ``device: auto`` / ``cuda`` address the right GPU.

    Parameters
    ----------
    device : str
        ``auto``, ``cpu`` or ``cuda``: picks the backend (gloo on CPU, nccl on CUDA).
    timeout_minutes : float
        Collective timeout; rank 0 evaluates every patient while the others wait.
    """
    if requested_world_size() <= 1:
        return World()
    if dist.is_initialized():
        return world()
    missing = [v for v in TORCHRUN_VARIABLES if v not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE > 1 but the environment lacks {missing}; launch with torchrun "
                         "(or set the variables of torch.distributed's env:// initialisation)")
    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    dist.init_process_group(backend_for(dev), init_method="env://", timeout=timedelta(minutes=timeout_minutes))
    return world()


def shutdown() -> None:
    """Leave the process group (no-op for a single process)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every process (no-op for a single process)."""
    if world().active:
        dist.barrier()


def broadcast_object(obj: T) -> T:
    """Rank 0's ``obj`` on every process (``obj`` itself for a single process)."""
    if not world().active:
        return obj
    box: list[Any] = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard_bounds(n: int, rank: int, size: int) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    if not 0 <= rank < size:
        raise ValueError(f"rank must be in [0, {size}), got {rank}")
    base, extra = divmod(n, size)
    lo = rank * base + min(rank, extra)
    return lo, lo + base + (1 if rank < extra else 0)


def sync_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """Batch norm -> SyncBatchNorm on CUDA in a multi-process run (timm's norm+act layers included).

    State-dict keys are unchanged, so checkpoints load into single-process models.
    """
    if not world().active or device.type != "cuda":
        return model
    return convert_sync_batchnorm(model)


def wrap_ddp(model: nn.Module, device: torch.device) -> nn.Module:
    """``DistributedDataParallel`` around ``model`` (returned unchanged for a single process)."""
    if not world().active:
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" \
        else None
    return DistributedDataParallel(model, device_ids=ids)


def shard_loss_scale(n_local: int, n_global: int) -> float:
    """Factor on a shard's mean loss so that DDP's gradient average equals the global batch mean's."""
    return n_local * world().size / n_global


def global_mean(local_mean: torch.Tensor, n_local: int, n_global: int) -> torch.Tensor:
    """Mean over the global batch from each shard's mean (an all-reduce; identity for one process)."""
    if not world().active:
        return local_mean
    total = local_mean.detach().float() * n_local
    dist.all_reduce(total)
    return total / n_global
