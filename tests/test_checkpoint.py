"""Tests of worldmodel.checkpoint and worldmodel.metrics_log: what a run leaves on disk reads back
exactly, and damaged files fail with errors that name them."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import one_thread, make_dataset, tiny_model_config, tiny_train_config  # noqa: E402,F401 (one_thread: autouse)

from worldmodel.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint  # noqa: E402
from worldmodel.metrics_log import MetricsLog, read_metrics  # noqa: E402
from worldmodel.train import Trainer, train  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ckpt")
    data = make_dataset(root / "data")
    train(tiny_model_config(), tiny_train_config(steps=3), data, root / "run", progress=False)
    return root / "run"


def _equal_nested(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_equal_nested(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal_nested(x, y) for x, y in zip(a, b))
    return a == b


def test_round_trip_restores_params_optimiser_step_and_rng(run, tmp_path):
    state = load_checkpoint(run / "checkpoint.pt")
    model_config = tiny_model_config()
    config = tiny_train_config(steps=3)
    with torch.random.fork_rng():
        trainer = Trainer(model_config, config, Path(run.parent / "data"))
        fresh_params = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.load_state(state)
        assert trainer.step == 3
        assert _equal_nested(trainer.model.state_dict(), state["model"])
        assert not _equal_nested(fresh_params, state["model"])  # three updates did change them
        assert _equal_nested(trainer.optimizer.state_dict(), state["optimizer"])
        assert len(trainer.optimizer.state_dict()["state"]) == len(fresh_params)  # Adam moments present
        rank = state["ranks"][0]
        assert torch.equal(torch.get_rng_state(), rank["torch"])
        assert torch.equal(trainer.noise.get_state(), rank["noise"])
        assert torch.equal(trainer.sampler.state_dict()["generator"], rank["sampler"]["generator"])
        # saving the restored trainer writes the same state back
        save_checkpoint(tmp_path / "again.pt", {**state, "model": trainer.model.state_dict(),
                                                "optimizer": trainer.optimizer.state_dict(),
                                                "ranks": [trainer.state()]})
    assert _equal_nested(load_checkpoint(tmp_path / "again.pt"), state)


def test_checkpoint_loads_with_weights_only(run):
    raw = torch.load(run / "checkpoint.pt", weights_only=True)
    assert raw["format"] == "worldmodel-checkpoint-v1" and raw["world_size"] == 1


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_checkpoint_names_the_file(run, tmp_path, damage):
    data = (run / "checkpoint.pt").read_bytes()
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"\x00not a zip" * 50, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=f"{bad}.*corrupt or truncated"):
        load_checkpoint(bad)


def test_foreign_file_is_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a worldmodel checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")


def test_save_refuses_incomplete_state(tmp_path):
    with pytest.raises(ValueError, match="lacks"):
        save_checkpoint(tmp_path / "c.pt", {"step": 1})
    assert not (tmp_path / "c.pt").exists()


def test_load_model_for_evaluation(run):
    model, model_config, info = load_model(run, device="cpu")
    state = load_checkpoint(run / "checkpoint.pt")
    assert model_config == tiny_model_config()
    assert not model.training and info["step"] == 3
    assert _equal_nested(model.state_dict(), state["model"])
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_model(run.parent / "nowhere")


def test_metrics_log_drops_torn_last_line_and_trims_on_resume(tmp_path):
    with MetricsLog(tmp_path) as log:
        for step in (1, 2, 3):
            log.write({"step": step, "loss": float(step), "bad": float("nan")})
    path = tmp_path / "metrics.jsonl"
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    assert read_metrics(tmp_path)[0]["bad"] == "nan"  # JSON has no NaN: written as a string
    with open(path, "a") as f:
        f.write('{"step": 4, "lo')  # a crash mid-write
    assert [r["step"] for r in read_metrics(path)] == [1, 2, 3]
    MetricsLog(tmp_path, keep_until=2).close()  # resuming from a step-2 checkpoint
    assert [r["step"] for r in read_metrics(path)] == [1, 2]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match="line 2 is not JSON"):
        read_metrics(path)


def test_snapshots_keep_the_weights_of_every_checkpoint(tmp_path):
    from worldmodel.checkpoint import load_snapshots

    data = make_dataset(tmp_path / "data")
    run = tmp_path / "run"
    train(tiny_model_config(), tiny_train_config(steps=4, checkpoint_every=2, snapshots=True), data,
          run, progress=False)
    snapshots = load_snapshots(run)
    assert [step for step, _ in snapshots] == [2, 4]
    final, _, _ = load_model(run)
    assert _equal_nested(snapshots[-1][1].state_dict(), final.state_dict())
    assert not _equal_nested(snapshots[0][1].state_dict(), final.state_dict())  # training moved it
    assert load_snapshots(tmp_path / "data") == []  # a folder without snapshots
    (run / "snapshots" / "step_00000002.pt").write_bytes(b"not a snapshot")
    with pytest.raises(CheckpointError, match="step_00000002.pt"):
        load_snapshots(run)


def test_generator_state_from_another_device_type_reseeds_reproducibly():
    """A CPU generator's state continues exactly; a CUDA generator's 16-byte state (a run moved
    from a GPU to the CPU) cannot be set on a CPU generator, so it seeds one, the same way twice."""
    from worldmodel.checkpoint import restore_generator

    source = torch.Generator().manual_seed(5)
    torch.rand(3, generator=source)
    g = torch.Generator()
    assert restore_generator(g, source.get_state())
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=source))
    cuda_like = torch.arange(16, dtype=torch.uint8)  # CUDA generators save seed + offset
    a, b = torch.Generator(), torch.Generator()
    assert not restore_generator(a, cuda_like) and not restore_generator(b, cuda_like)
    assert torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=b))
    assert not torch.equal(torch.rand(4, generator=a), torch.rand(4, generator=torch.Generator().manual_seed(0)))


def test_atomic_writes_leave_the_old_file_or_the_whole_new_one(tmp_path, monkeypatch):
    import os

    from worldmodel import atomic

    path = tmp_path / "f.json"
    atomic.atomic_write_json(path, {"v": 1})
    with pytest.raises(RuntimeError, match="crash"):
        with atomic.atomic_open(path) as f:
            f.write(b'{"v": 2, "half')
            raise RuntimeError("crash while writing")
    assert json.loads(path.read_text()) == {"v": 1} and [p.name for p in tmp_path.iterdir()] == ["f.json"]
    synced, fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(os.path.isdir(f"/proc/self/fd/{fd}")) or fsync(fd))
    atomic.atomic_write_json(path, {"v": 3})
    assert json.loads(path.read_text()) == {"v": 3}
    if os.path.isdir("/proc/self/fd"):  # Linux: the file's data, then the folder's entry (the rename)
        assert synced == [False, True]
