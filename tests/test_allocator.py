"""worldmodel.allocator: freed large blocks stay in the process (no fresh page faults on reuse)."""
from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

# Allocates, touches and frees a 64 MiB block 10 times; prints the minor page faults this took.
_CHURN = """
import resource, sys
from worldmodel.allocator import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    block = bytearray(64 << 20)  # zero-filled: every page touched
    del block
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _churn(mode: str, **env: str) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", _CHURN, mode], capture_output=True, text=True,
                         check=True, env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_freed_blocks_are_reused_without_new_page_faults() -> None:
    tuned, tuned_faults = _churn("tuned")
    plain, plain_faults = _churn("plain")
    assert tuned and not plain
    pages = (64 << 20) // os.sysconf("SC_PAGE_SIZE")
    assert plain_faults >= 5 * pages  # glibc maps and unmaps each 64 MiB block afresh
    assert tuned_faults <= 2 * pages  # the block is mapped once and then reused


def test_the_environment_variable_leaves_malloc_alone() -> None:
    tuned, _ = _churn("tuned", WORLDMODEL_MALLOC="default")
    assert not tuned
