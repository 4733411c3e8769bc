"""Keep freed memory inside the process, so that CPU training does not page-fault through every update.

glibc's malloc serves large blocks (above a threshold of 128 KiB to 32 MiB) with fresh `mmap`
pages and returns them to the kernel on `free`. A training update allocates and frees hundreds
of such blocks (activations, gradients, image batches), so each update pays the kernel to
zero-fill and map the same memory again. On the project's 2-core CPU, the kernel took 58 of the
143 CPU-seconds of one `benchmarks/train_speed.py --presets planet` run. Keeping freed blocks in
malloc's heap removes that (`train_speed.py` with and without `--default-malloc`, idle machine;
README, "Speed on this machine"):

- `planet` preset, bf16 + channels_last: 972 -> 1262 frames/s (minor page faults 4.2 M -> 0.6 M
  in an ad-hoc A/B);
- `small` preset, float32: 313 -> 224 ms per update.

The price is memory held after a peak (peak RSS 1.6 -> 2.3 GB for the `planet` update). The
`worldmodel` command and the benchmarks call `keep_freed_memory()` at start. A program that
imports the library decides for itself. Set WORLDMODEL_MALLOC=default to leave malloc alone.
"""
from __future__ import annotations

import ctypes
import os
import platform
import sys

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_TRIM_THRESHOLD = 1 << 30  # give memory back only when 1 GiB lies free at the top of the heap
_TOP_PAD = 256 << 20  # grow the heap in steps of at least 256 MiB


def keep_freed_memory() -> bool:
    """Make glibc keep freed blocks for reuse (no mmap for large blocks, trim only past 1 GiB).

    Returns whether the setting took effect: False off Linux/glibc (macOS, Windows, musl), or when
    WORLDMODEL_MALLOC=default. Affects the whole process from this call on; calling it again is
    harmless."""
    if os.environ.get("WORLDMODEL_MALLOC", "").lower() == "default":
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return all(libc.mallopt(param, value) == 1 for param, value in (
        (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD), (_M_TOP_PAD, _TOP_PAD)))
