"""Multi-process data parallel under ``torchrun`` (gloo on CPU, NCCL on GPU)."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from medsight.errors import InputError


@dataclass
class DistContext:
    """Who this process is among the training processes."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that logs and writes checkpoints."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistContext:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank=dist.get_rank(), world=dist.get_world_size(),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def process_device(device: torch.device, gpus: int, env: Mapping[str, str] | None = None) -> torch.device:
    """The device of this training process: under torchrun on GPUs, ``cuda:LOCAL_RANK`` (NCCL refuses two
    processes on one GPU); otherwise ``device`` as it is. More processes per node than GPUs is refused."""
    env = os.environ if env is None else env
    world, local_rank = int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0"))
    if device.type != "cuda" or world <= 1:
        return device
    if local_rank >= gpus:
        raise InputError(f"torchrun started more processes on this node than it has GPUs ({gpus}): process "
                         f"{local_rank} has none", fix=f"use --nproc_per_node {gpus}, or --device cpu")
    return torch.device("cuda", local_rank)


def wrap_model(model: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """DistributedDataParallel with synchronised batch norm when several processes train."""
    if ctx.world <= 1:
        return model
    from medsight.training.sync_norm import convert_sync_batchnorm

    model = nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else convert_sync_batchnorm(model)
    ids = [device.index or 0] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def mean_over_processes(value: float, ctx: DistContext) -> float:
    """The mean of a scalar over all training processes."""
    if ctx.world <= 1:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world


def barrier(ctx: DistContext) -> None:
    """Wait for every process."""
    if ctx.world > 1:
        dist.barrier()


def finish_distributed(ctx: DistContext, wait: bool = True) -> None:
    """Leave the process group: wait for every process (``wait``), then destroy the group.

    A process that exits with the group still open can abort in gloo's thread teardown
    ("terminate called without an active exception"), and torchrun then kills its peers.
    """
    if ctx.world <= 1 or not dist.is_initialized():
        return
    if wait:
        dist.barrier()
    dist.destroy_process_group()


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP wrapper."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
