"""Data-parallel training with torch.distributed: the process group, ranks and per-rank seeds.

`torchrun --nproc_per_node=K` starts K copies of the same program and tells each its RANK,
LOCAL_RANK and WORLD_SIZE through the environment. Each copy builds the same model, samples its
own chunks (its own seeds), and DistributedDataParallel averages the gradients over the K
processes in backward, so every process applies the same update and the parameters stay equal.
The effective batch is K × batch_size. Only rank 0 writes checkpoints and logs. Backends: gloo on
the CPU, nccl on GPUs.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job; the defaults describe a single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def from_environment() -> DistInfo:
    """Read the variables torchrun sets; absent ones mean a single process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise RuntimeError(f"WORLD_SIZE / RANK / LOCAL_RANK must be integers ({e}); they are set by "
                           "torchrun, do not set them by hand") from e
    if not 0 <= rank < world:
        raise RuntimeError(f"RANK={rank} is outside 0..WORLD_SIZE-1={world - 1}")
    return DistInfo(rank=rank, world_size=world, local_rank=local)


def init_process_group(info: DistInfo, device: torch.device) -> bool:
    """Join the process group when running under torchrun; returns True when this call created it
    (the caller then destroys it with `destroy_process_group`)."""
    if not info.distributed or dist.is_initialized():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world_size)
    return True


def destroy_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def rank_seeds(seed: int, rank: int) -> tuple[int, int]:
    """(torch seed, sampler seed) of one process: independent streams per rank and per use,
    derived with numpy's SeedSequence so that run `seed` rank 1 never equals run `seed + 1` rank 0."""
    torch_seed, sampler_seed = np.random.SeedSequence([int(seed), int(rank)]).generate_state(2)
    return int(torch_seed), int(sampler_seed)


def all_reduce_sum(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum of `x` over all processes (in place; a no-op for one process)."""
    if info.distributed:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def gather_objects(obj: Any, info: DistInfo) -> list[Any]:
    """Every process's `obj`, in rank order (picklable objects; used for RNG states)."""
    if not info.distributed:
        return [obj]
    out: list[Any] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()
