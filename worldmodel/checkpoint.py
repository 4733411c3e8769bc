"""Run folders and checkpoints: what `worldmodel train` leaves on disk, and how to read it back.

A run folder holds
  config.json     model config, train config, data path and manifest, creation time, versions
                  and machine (worldmodel.provenance)
  checkpoint.pt   the latest training state (see `CHECKPOINT_KEYS`), replaced atomically
  metrics.jsonl   the training log (worldmodel.metrics_log)
  snapshots/      model weights at each checkpoint, when asked for (TrainConfig.snapshots), to
                  draw the latent geometry over the course of training

Checkpoints hold only tensors and plain Python values, so they load with
`torch.load(..., weights_only=True)`, which cannot run code from a file. RNG states are kept per
process ("ranks", one entry per DDP process): the torch CPU generator, the CUDA generator of the
process's GPU (or None) and the chunk sampler's state.
"""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from worldmodel.atomic import atomic_torch_save, atomic_write_json
from worldmodel.data.dataset import MANIFEST

CHECKPOINT_FILE = "checkpoint.pt"
CONFIG_FILE = "config.json"
FORMAT = "worldmodel-checkpoint-v1"
SNAPSHOT_DIR = "snapshots"
SNAPSHOT_FORMAT = "worldmodel-snapshot-v1"
CHECKPOINT_KEYS = ("format", "step", "model", "optimizer", "model_config", "train_config",
                   "world_size", "ranks", "log_window", "wall_time")


class CheckpointError(RuntimeError):
    """A checkpoint or run folder that cannot be used; the message names the file."""


def rng_state(device: torch.device) -> dict[str, Any]:
    """The global torch generators this process draws from (the model's sampling noise)."""
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    """Restore `rng_state`. Generator states are CPU byte tensors whatever the device; a
    checkpoint loaded with map_location=cuda carries them on the GPU, so they come back first."""
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and state.get("cuda") is not None:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


def restore_generator(generator: torch.Generator, state: torch.Tensor) -> bool:
    """Set `generator` to a saved state; True when it continues exactly. A state saved by a
    generator of another device type (a run moved between the CPU and a GPU) has another layout:
    the generator is then seeded from the saved bytes, so the resumed run is reproducible but
    does not repeat the uninterrupted one, and the caller says so."""
    state = state.cpu()
    if state.numel() == generator.get_state().numel():
        generator.set_state(state)
        return True
    digest = hashlib.sha256(state.numpy().tobytes()).digest()
    generator.manual_seed(int.from_bytes(digest[:8], "little"))
    return False


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` (keys `CHECKPOINT_KEYS`) atomically: the old file stays until the new is whole."""
    missing = [k for k in CHECKPOINT_KEYS if k not in state and k != "format"]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}; it needs all of {CHECKPOINT_KEYS[1:]}")
    atomic_torch_save(path, {"format": FORMAT, **{k: v for k, v in state.items() if k != "format"}})


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with weights_only=True; a missing, corrupt or foreign file raises
    CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            pickle.UnpicklingError) as e:
        raise CheckpointError(
            f"cannot read checkpoint {path}: it is corrupt or truncated ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); restore it from a copy or start a new "
            f"run in another folder") from e
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a worldmodel checkpoint (format "
                              f"{state.get('format') if isinstance(state, dict) else type(state).__name__!r}, "
                              f"expected {FORMAT!r})")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}; it is damaged or from another version")
    return state


def check_resume_agrees(stored: dict[str, Any], given: dict[str, Any], what: str,
                        allowed: tuple[str, ...] = ()) -> None:
    """Raise a ValueError naming the first setting in `given` that differs from the run's
    `stored` one, unless it is one of the `allowed` changes (how long or where a run goes)."""
    for key, value in given.items():
        if key not in allowed and stored.get(key) != value:
            may = f"; only {list(allowed)} may change" if allowed else ""
            raise ValueError(f"cannot resume: {what} setting {key!r} differs from the run's: the run "
                             f"has {stored.get(key)!r}, this call gives {value!r}; leave it out (the "
                             f"run's settings are used on resume{may}) or start a new run in another "
                             "folder")


def write_run_config(run_dir: str | Path, config: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / CONFIG_FILE, config)


def data_record(run_dir: str | Path, data_path: str | Path) -> dict[str, str]:
    """config.json's keys for a run's data: `data` (absolute) and `data_relative` (from the run
    folder), so that a run folder copied or moved together with its data still finds it."""
    data = Path(data_path).resolve()
    try:
        return {"data": str(data), "data_relative": os.path.relpath(data, Path(run_dir).resolve())}
    except ValueError:  # on another drive (Windows): no relative path exists
        return {"data": str(data)}


def run_data_path(run_dir: str | Path, stored: dict[str, Any]) -> Path:
    """The data folder of the run in `run_dir`, from its config.json `stored`.

    The location relative to the run folder wins when it holds data: a copy of `runs/a` (run and
    data) made as `runs/b` then trains on `runs/b/data`, not on the original's. Otherwise the
    absolute path; an error names both when neither holds a dataset.
    """
    absolute = Path(stored["data"])
    relative = stored.get("data_relative")
    candidates = ([(Path(run_dir) / relative).resolve()] if relative is not None else []) + [absolute]
    for candidate in candidates:
        if (candidate / MANIFEST).is_file():
            return candidate
    raise CheckpointError(f"the data of the run in {run_dir} is not where its {CONFIG_FILE} says "
                          f"({' or '.join(map(str, dict.fromkeys(candidates)))}); move the data back "
                          f"or edit the 'data' key of {Path(run_dir) / CONFIG_FILE}")


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """config.json of a run folder; a folder without one is an error saying how to make one."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        raise CheckpointError(f"{run_dir} holds no training run (no {CONFIG_FILE}); start one with "
                              f"`worldmodel train --data DIR --out {run_dir}`")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); the run folder is damaged") from e


def load_model(run_dir: str | Path, device: str | torch.device = "cpu"
               ) -> tuple[torch.nn.Module, Any, dict[str, Any]]:
    """The model of a run's latest checkpoint, in eval mode on `device`.

    Returns (model, model_config, info) with info = {step, train_config, data, wall_time, path}.
    """
    from worldmodel import ModelConfig, WorldModel
    from worldmodel.device import resolve_device

    device = resolve_device(device)
    path = Path(run_dir) / CHECKPOINT_FILE
    if not path.exists():
        raise CheckpointError(f"{run_dir} holds no checkpoint ({CHECKPOINT_FILE}); train first with "
                              f"`worldmodel train --data DIR --out {run_dir}`")
    state = load_checkpoint(path, map_location=device)
    model_config = ModelConfig.from_dict(state["model_config"])
    model = WorldModel(model_config).to(device)
    model.load_state_dict(state["model"])
    model.eval()
    config_path = Path(run_dir) / CONFIG_FILE
    data = None
    if config_path.exists():
        stored = json.loads(config_path.read_text())
        if "data" in stored:
            try:
                data = str(run_data_path(run_dir, stored))
            except CheckpointError:  # the model loads without its data; report where it was
                data = stored["data"]
    info = {"step": int(state["step"]), "train_config": state["train_config"], "data": data,
            "wall_time": float(state["wall_time"]), "path": str(path)}
    return model, model_config, info


def save_snapshot(run_dir: str | Path, step: int, model_state: dict[str, Any],
                  model_config: dict[str, Any]) -> Path:
    """Write the model weights of `step` to `run_dir/snapshots/step_<step>.pt` atomically."""
    path = Path(run_dir) / SNAPSHOT_DIR / f"step_{int(step):08d}.pt"
    atomic_torch_save(path, {"format": SNAPSHOT_FORMAT, "step": int(step), "model": model_state,
                             "model_config": model_config})
    return path


def load_snapshots(run_dir: str | Path, device: str | torch.device = "cpu"
                   ) -> list[tuple[int, torch.nn.Module]]:
    """(step, model in eval mode) of every snapshot of a run, oldest first; [] when it kept none."""
    from worldmodel import ModelConfig, WorldModel

    found = []
    for path in sorted((Path(run_dir) / SNAPSHOT_DIR).glob("step_*.pt")):
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
                pickle.UnpicklingError) as e:
            raise CheckpointError(f"cannot read snapshot {path} ({type(e).__name__}); delete it "
                                  f"or the snapshots folder") from e
        if not isinstance(state, dict) or state.get("format") != SNAPSHOT_FORMAT:
            raise CheckpointError(f"{path} is not a worldmodel snapshot; delete it or move it away")
        model = WorldModel(ModelConfig.from_dict(state["model_config"])).to(device)
        model.load_state_dict(state["model"])
        found.append((int(state["step"]), model.eval()))
    return found
