"""worldmodel.provenance: the data fingerprint tells identical data from data that differs in one
byte, and the machine record names what picks the float kernels."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_data import make_episode, new_dataset  # noqa: E402
from worldmodel.data import EpisodeDataset  # noqa: E402
from worldmodel.provenance import data_fingerprint, machine, versions  # noqa: E402


def test_fingerprint_is_equal_for_equal_data_and_moves_with_one_pixel_or_the_order(tmp_path):
    episodes = [make_episode(5, eid=i) for i in range(3)]
    data = new_dataset(tmp_path / "d")
    for e in episodes:
        data.append(e)
    reread = EpisodeDataset(tmp_path / "d")  # read back from disk
    assert data_fingerprint(reread.episodes) == data_fingerprint(episodes)

    changed = [make_episode(5, eid=i) for i in range(3)]
    changed[2].images[3, 1, 1, 0] ^= 1  # one bit of one pixel
    assert data_fingerprint(changed) != data_fingerprint(episodes)
    assert data_fingerprint(episodes[::-1]) != data_fingerprint(episodes)
    nudged = [make_episode(5, eid=i) for i in range(3)]
    nudged[0].actions[0, 1] = 1e-7  # a float the images do not show
    assert data_fingerprint(nudged) != data_fingerprint(episodes)


def test_fingerprint_of_no_episodes_is_an_error_that_says_so():
    with pytest.raises(ValueError, match="no episodes"):
        data_fingerprint([])


def test_machine_names_the_thread_count_in_use_and_versions_name_the_simulator():
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert machine()["torch_threads"] == 1
    finally:
        torch.set_num_threads(threads)
    record = machine()
    assert record["torch_threads"] == threads and record["cpu"] and record["platform"]
    assert set(record["isa"]) <= {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}
    assert record["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert {"python", "torch", "numpy", "scipy", "mujoco", "dm_control", "worldmodel"} <= set(versions())
