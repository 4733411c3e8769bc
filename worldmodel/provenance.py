"""What a result was made with, beyond its settings: package versions, the machine, and a
fingerprint of the data it learnt from.

Why: E2C's balance score is sensitive to float rounding. With the same code, seed and data, one
thread and two threads train different models (4.8 and 3.8 % today), and a re-run on another day
gave 27.6 % (docs/e2c_results.md). A result that records its versions, its machine and its data
can be told apart from one that only shares its command.
"""
from __future__ import annotations

import hashlib
import platform
from typing import Any, Iterable

import torch

# the instruction-set extensions that pick different float kernels in PyTorch's CPU backends
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")


def versions() -> dict[str, str]:
    """The versions of the packages a result may depend on (simulator and renderer included)."""
    import numpy

    out = {"python": platform.python_version(), "torch": torch.__version__,
           "numpy": numpy.__version__, "worldmodel": _installed_version("worldmodel", "source")}
    for name in ("scipy", "mujoco", "dm_control"):
        out[name] = _installed_version(name)
    return out


def machine() -> dict[str, Any]:
    """The CPU, its float-relevant extensions, the OS kernel and the torch thread count: with the
    same code and data, a different value here can mean different floats and a different model."""
    name, flags = _cpu_info()
    return {"platform": platform.platform(), "cpu": name or platform.processor() or platform.machine(),
            "isa": [f for f in _ISA_FLAGS if f in flags], "torch_threads": torch.get_num_threads(),
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}


def data_fingerprint(episodes: Iterable[Any]) -> str:
    """A short SHA-256 of the episodes' arrays (images, actions, rewards, states) in order: equal
    fingerprints mean a model learnt from byte-identical data."""
    digest = hashlib.sha256()
    count = 0
    for episode in episodes:
        for name in ("images", "actions", "rewards", "states"):
            array = getattr(episode, name)
            digest.update(f"{name}{array.dtype.str}{array.shape}".encode())
            digest.update(array.tobytes())
        count += 1
    if count == 0:
        raise ValueError("data_fingerprint got no episodes; pass a dataset with at least one episode")
    return digest.hexdigest()[:16]


def _cpu_info() -> tuple[str | None, set[str]]:
    """The CPU's model name and flags from /proc/cpuinfo (Linux); (None, empty) elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None, set()
    name, flags = None, set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and name is None:
            name = value.strip()
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, flags


def _installed_version(distribution: str, missing: str = "not installed") -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(distribution)
    except PackageNotFoundError:
        return missing
