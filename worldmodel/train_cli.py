"""`worldmodel train`: the command-line face of `worldmodel.train.train`.

    worldmodel train --data DIR --out RUN [--transition rssm] [--preset planet|small] [--steps N]
                     [--batch-size B] [--chunk-length L] [--device auto] [--precision float32]
                     [--seed S]
    worldmodel train --out RUN --resume [--steps N]     continue a run (settings from RUN)
    torchrun --nproc_per_node=K -m worldmodel.cli train ...   data-parallel, same flags

Flags left out take the preset's value on a new run and the run's own value on --resume; a flag
given on --resume that contradicts the run is an error naming it.
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PRESETS = ("planet", "small")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `worldmodel train` (defaults None = preset's / run's value)."""
    p.add_argument("--data", default=None, help="dataset folder (written by `worldmodel collect`)")
    p.add_argument("--out", required=True, help="run folder: config.json, checkpoint.pt, metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue the run in --out bit for bit")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="model and training sizes: planet (PlaNet's, default; a GPU) or small (a CPU)")
    p.add_argument("--transition", default=None, help="gaussian | rssm (default) | locally_linear")
    p.add_argument("--steps", type=int, default=None, help="total updates (on --resume: a new total)")
    p.add_argument("--batch-size", type=int, default=None, help="chunks per update and process")
    p.add_argument("--chunk-length", type=int, default=None, help="steps per chunk")
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--device", default=None, help="auto (default) | cpu | cuda")
    p.add_argument("--precision", default=None, help="float32 (default) | bfloat16")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--log-every", type=int, default=None)
    p.add_argument("--snapshots", action="store_true", default=None,
                   help="keep the weights of every checkpoint (for the geometry-over-training GIF)")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="conv weights and images in NHWC layout (faster with --precision bfloat16)")
    p.add_argument("--compile", dest="compile_networks", action="store_true", default=None,
                   help="torch.compile the image encoder and decoder (the first update compiles)")
    p.add_argument("--obs-std", type=float, default=None,
                   help="std of the image likelihood (default 1, PlaNet's); lower it when the "
                        "moving object covers few pixels")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in logs)")


def _given(args: argparse.Namespace, names: tuple[str, ...]) -> dict[str, Any]:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


_TRAIN_FLAGS = ("steps", "batch_size", "chunk_length", "lr", "device", "precision", "seed",
                "checkpoint_every", "log_every", "snapshots", "channels_last", "compile_networks")


def build_configs(args: argparse.Namespace) -> tuple[Any, Any, str | None]:
    """(model config, train config, data path) for `train`; None parts are read from the run."""
    from worldmodel import ModelConfig
    from worldmodel.checkpoint import read_run_config
    from worldmodel.train import TrainConfig

    train_flags = _given(args, _TRAIN_FLAGS)
    model_flags = _given(args, ("transition", "obs_std"))
    if args.resume:
        stored = read_run_config(args.out)
        model = ModelConfig.from_dict({**stored["model"], **model_flags}) if model_flags else None
        if args.preset is not None:
            raise ValueError("--preset chooses the sizes of a new run; on --resume the run's are used "
                             f"(see {args.out}/config.json)")
        config = TrainConfig.from_dict({**stored["train"], **train_flags}) if train_flags else None
        return model, config, args.data
    if args.data is None:
        raise ValueError("--data DIR is needed to start a run (only --resume reads it from the run folder)")
    from worldmodel.data import EpisodeDataset

    manifest = EpisodeDataset(args.data).manifest
    size = manifest["image_size"]
    h, w = (size, size) if isinstance(size, int) else size
    preset = args.preset or "planet"
    model = getattr(ModelConfig, preset)(obs_shape=(3, h, w), action_dim=int(manifest["action_dim"]),
                                         **model_flags)
    config = getattr(TrainConfig, preset)(**train_flags)
    return model, config, args.data


def run_train_command(args: argparse.Namespace) -> int:
    """Run `worldmodel train` from parsed flags; prints the final metrics as JSON."""
    from worldmodel.train import train

    model, config, data = build_configs(args)
    try:
        result = train(model, config, data, args.out, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt as e:  # say where the checkpoint is before the CLI's "interrupted"
        if str(e):
            print(e, file=sys.stderr)
        raise
    from worldmodel.distributed import from_environment

    if from_environment().is_main:
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return 0


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """Register the `train` verb (worldmodel.cli's `_VERB_MODULES` protocol)."""
    p = sub.add_parser("train", help="train a world model on a dataset folder (or --resume a run)")
    add_train_arguments(p)
    p.set_defaults(func=run_train_command)
