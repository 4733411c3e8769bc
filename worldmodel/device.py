"""Devices and numeric precision: turn the user's words ("auto", "bfloat16") into torch objects.

`resolve_device("auto")` is CUDA when a GPU is visible, else the CPU, so the same call runs
unchanged on a laptop and on a GPU machine. `autocast(device, precision)` is the context the
forward pass runs in: float32 does nothing, bfloat16 uses `torch.autocast` (matmuls and convs in
bf16, reductions and losses in float32), which needs no loss scaling because bf16 keeps float32's
exponent range.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("float32", "bfloat16")


def resolve_device(name: str | torch.device, *, local_rank: int = 0) -> torch.device:
    """`auto|cpu|cuda|cuda:N` -> torch.device; auto is CUDA when available. Under torchrun
    (`local_rank` > 0 or set) a bare "cuda" means this process's GPU, cuda:<local_rank>.
    Resolving to the CPU also turns on torch.set_flush_denormal (see below)."""
    if isinstance(name, torch.device):
        return name
    base = str(name).split(":")[0]
    if base not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES} (or 'cuda:N'), got {name!r}")
    if base == "auto":
        base = "cuda" if torch.cuda.is_available() else "cpu"
    if base == "cpu":
        # Side effect, on purpose: arithmetic on subnormal floats is far slower on x86 CPUs, and
        # they can appear as training goes on (tiny activations, Adam moments); flush them to
        # zero. Not measured to matter on the project's runs so far.
        torch.set_flush_denormal(True)
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} asked for CUDA but torch {torch.__version__} sees no GPU; "
                           "use device='cpu' or 'auto', or install a CUDA build of torch")
    if ":" in str(name):
        return torch.device(str(name))
    return torch.device("cuda", local_rank)


def check_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def autocast(device: torch.device, precision: str) -> ContextManager:
    """The context for the forward pass: nothing for float32, bf16 autocast for bfloat16."""
    if check_precision(precision) == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def describe(device: torch.device) -> str:
    """One line naming the hardware, for benchmark tables and run configs."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    import platform

    n = torch.get_num_threads()
    return f"CPU {platform.processor() or platform.machine()}, {n} thread{'s' if n != 1 else ''}"
