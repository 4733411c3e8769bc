"""The machine's square-matmul rate (GFLOP/s), the floor that planner and training speeds are
compared to; shared by the speed benchmarks."""
from __future__ import annotations

import statistics
import time

import torch


def matmul_gflops(n: int = 1024, dtype: torch.dtype = torch.float32, *,
                  device: torch.device | str = "cpu", repeats: int = 20,
                  generator: torch.Generator | None = None) -> float:
    """Median GFLOP/s of an n×n matmul (2n³ FLOPs each) in `dtype` on `device`, after a warm-up.

    generator: draws the operands; None draws them from the global RNG (planner_speed.py seeds it
    once and builds its stand-in networks after this call, so its weights depend on that).
    """
    device = torch.device(device)
    a = torch.randn(n, n, dtype=dtype, device=device, generator=generator)
    b = torch.randn(n, n, dtype=dtype, device=device, generator=generator)
    inner = 10 if device.type == "cuda" else 1  # one CUDA matmul is too short to time alone
    times = []
    for i in range(repeats + 2):
        _sync(device)
        start = time.perf_counter()
        for _ in range(inner):
            a @ b
        _sync(device)
        if i >= 2:  # two warm-up rounds
            times.append((time.perf_counter() - start) / inner)
    return 2 * n ** 3 / statistics.median(times) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
