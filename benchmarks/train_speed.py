"""Training speed of the world model: frames/s of full updates, their FLOPs, and the machine's
matmul rate measured in the same run, for the `small` and `planet` presets.

    frames/s      = B × L / seconds per update (median of --repeats after --warmup updates; one
                    update = sample a batch, forward, backward, clip, Adam, the host sync)
    FLOPs/update  = counted by torch.utils.flop_counter.FlopCounterMode over forward + backward
    achieved/matmul = (FLOPs/update / seconds per update) / square-matmul FLOP/s at that precision

Reference: the PyTorch PlaNet implementation trains at planet size (B = L = 50, 64×64, rssm) at
about 235 frames/s on the project's 2-core CPU; the target there is >= 3× that and >= 0.5 of the
bf16 matmul rate. Variants: float32, bfloat16 (autocast), channels_last (conv weight layout); with
--loss-steps N each variant also trains N updates from the same seed and reports its loss.

    python benchmarks/train_speed.py                      # ~5 min; CPU defaults are smaller
    python benchmarks/train_speed.py --device cuda --profile
Writes benchmarks/results/train_speed.json and prints a table.
"""
from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere
from matmul_rate import matmul_gflops  # noqa: E402  (benchmarks/ is on the path of a script run)

REFERENCE_PLANET_FPS = 235.0  # PyTorch PlaNet, full update at 50×50, on the project's 2-core CPU (issue 4)
VARIANTS = {"float32": {}, "bfloat16": {"precision": "bfloat16"},
            "channels_last": {"channels_last": True},
            "bfloat16+channels_last": {"precision": "bfloat16", "channels_last": True},
            "bfloat16+channels_last+compiled": {"precision": "bfloat16", "channels_last": True,
                                                "compile_networks": True}}


def make_data(path: Path, image_size: int = 64, episodes: int = 6, steps: int = 100, seed: int = 0) -> Path:
    """Episodes of a square moved by random actions: learnable, so the loss comparison means something."""
    from worldmodel.data import Episode, EpisodeDataset

    rng = np.random.default_rng(seed)
    data = EpisodeDataset.create(path, task="synthetic-square", image_size=image_size, action_repeat=1,
                                 action_dim=1, state_dim=2)
    for _ in range(episodes):
        actions = rng.uniform(-1, 1, (steps, 1)).astype(np.float32)
        pos = np.clip(np.cumsum(np.concatenate([[0.0], 0.1 * actions[:, 0]])), -1, 1)  # [T+1]
        images = np.full((steps + 1, image_size, image_size, 3), 30, np.uint8)
        cols = ((pos + 1) / 2 * (image_size - 12)).astype(int) + 6
        for t, c in enumerate(cols):
            images[t, image_size // 2 - 5:image_size // 2 + 5, c - 5:c + 5] = (230, 120, 40)
        states = np.stack([pos, np.zeros_like(pos)], 1).astype(np.float32)
        data.append(Episode(images=images, actions=actions, rewards=-np.abs(pos[1:]).astype(np.float32),
                            states=states))
    return path


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_trainer(preset: str, variant: str, data: Path, device: str, batch: int | None, length: int | None):
    from worldmodel import ModelConfig
    from worldmodel.train import TrainConfig, Trainer

    model_config = getattr(ModelConfig, preset)(action_dim=1)
    overrides = {k: v for k, v in (("batch_size", batch), ("chunk_length", length)) if v}
    config = getattr(TrainConfig, preset)(device=device, **VARIANTS[variant], **overrides)
    return Trainer(model_config, config, data)


def update_flops(trainer: Any) -> int:
    """FLOPs of forward + backward of one update (matmuls and convolutions, as FlopCounterMode counts)."""
    from torch.utils.flop_counter import FlopCounterMode

    from worldmodel.device import autocast

    batch = trainer.sampler.sample()
    with FlopCounterMode(display=False) as counter:
        with autocast(trainer.device, trainer.config.precision):
            loss = trainer.forward(batch, trainer.noise)["loss"]
        loss.backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def measure(preset: str, variant: str, data: Path, args: argparse.Namespace, device: torch.device,
            matmul: dict[str, float]) -> dict[str, Any]:
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        trainer = make_trainer(preset, variant, data, str(device), args.batch_size, args.chunk_length)
        B, L = trainer.config.batch_size, trainer.config.chunk_length
        repeats = args.repeats or (20 if device.type == "cuda" else (2 if preset == "planet" else 5))
        warmup = args.warmup if args.warmup is not None else (5 if device.type == "cuda" else 1)
        times = []
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            trainer.train_step()  # ends in a host sync (.tolist() of the loss terms)
            if i >= warmup:
                times.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for _ in range(5):
            trainer.sampler.sample()
        _sync(device)
        sample_s = (time.perf_counter() - t0) / 5
        flops = update_flops(trainer)
        seconds = statistics.median(times)
        precision = trainer.config.precision
        row = {"preset": preset, "variant": variant, "batch_size": B, "chunk_length": L,
               "image_size": trainer.model_config.obs_shape[-1], "transition": trainer.model_config.transition,
               "s_per_update": seconds, "frames_per_s": B * L / seconds, "sample_ms": 1e3 * sample_s,
               "flops_per_update": flops, "achieved_gflops": flops / seconds / 1e9, "timed_updates": repeats}
        row["achieved_over_matmul"] = row["achieved_gflops"] / matmul[precision]
        row["achieved_over_bf16_matmul"] = row["achieved_gflops"] / matmul["bfloat16"]
        if args.loss_steps:
            row["loss_steps"], row["loss_final"] = args.loss_steps, short_run_loss(trainer, args.loss_steps)
        if args.profile:
            row["profile_top_ops"] = profile(trainer, device)
    return row


def short_run_loss(trainer: Any, steps: int) -> float:
    """Mean loss over the last 10% of `steps` further updates (all variants start from the seed)."""
    losses = [trainer.train_step()[0]["loss"] for _ in range(steps)]
    tail = losses[-max(steps // 10, 1):]
    return sum(tail) / len(tail)


def profile(trainer: Any, device: torch.device, top: int = 20) -> list[dict[str, Any]]:
    """The ops that take the time in two updates (torch.profiler, self time)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        for _ in range(2):
            trainer.train_step()
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    events = sorted(prof.key_averages(), key=lambda e: getattr(e, key), reverse=True)[:top]
    total = sum(getattr(e, key) for e in prof.key_averages()) or 1.0
    return [{"op": e.key, "ms_per_update": getattr(e, key) / 2e3, "share": getattr(e, key) / total,
             "calls_per_update": e.count / 2} for e in events]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from worldmodel.atomic import atomic_write_json
    from worldmodel.device import describe, resolve_device

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="auto")
    p.add_argument("--presets", default="small,planet")
    p.add_argument("--variants", default=None, help="comma list of " + ", ".join(VARIANTS) +
                   " (default: all on CUDA; float32 for planet and all for small on a CPU)")
    p.add_argument("--repeats", type=int, default=None, help="timed updates (default 20 GPU; 2-5 CPU)")
    p.add_argument("--warmup", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None, help="override the presets' B")
    p.add_argument("--chunk-length", type=int, default=None, help="override the presets' L")
    p.add_argument("--loss-steps", type=int, default=None, help="updates per variant for the loss "
                   "comparison (default 300 on CUDA, 0 on a CPU)")
    p.add_argument("--profile", action="store_true", help="torch.profiler top ops of each run")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--default-malloc", action="store_true", help="leave glibc malloc as it is "
                   "(the library's commands call worldmodel.allocator.keep_freed_memory)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = p.parse_args(argv)
    from worldmodel.allocator import keep_freed_memory

    malloc_tuned = keep_freed_memory() if not args.default_malloc else False
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cuda = device.type == "cuda"
    if args.loss_steps is None:
        args.loss_steps = 300 if cuda else 0
    n = 8192 if cuda else 1024
    matmul = {name: matmul_gflops(n, dtype, device=device, repeats=5,
                                  generator=torch.Generator(device=device).manual_seed(0))
              for name, dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16))}
    machine = {"device": describe(device), "threads": torch.get_num_threads(), "torch": torch.__version__,
               "python": platform.python_version(), "matmul_n": n, "tf32": torch.backends.cuda.matmul.allow_tf32,
               "load_average_1min_at_start": os.getloadavg()[0],  # other jobs sharing the CPU
               "keep_freed_memory": malloc_tuned}
    print(f"{machine['device']}; torch {torch.__version__}; {machine['threads']} CPU threads")
    print(f"matmul {n}x{n}: float32 {matmul['float32']:.0f} GFLOP/s, bfloat16 {matmul['bfloat16']:.0f} GFLOP/s")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = make_data(Path(tmp) / "data")
        for preset in args.presets.split(","):
            default = list(VARIANTS) if cuda or preset == "small" else ["float32"]
            for variant in (args.variants.split(",") if args.variants else default):
                row = measure(preset, variant, data, args, device, matmul)
                rows.append(row)
                print(_line(row), flush=True)
    result = {"machine": machine, "matmul_gflops": matmul, "runs": rows,
              "reference": {"planet_pytorch_frames_per_s": REFERENCE_PLANET_FPS,
                            "target_frames_per_s": 3 * REFERENCE_PLANET_FPS, "target_bf16_ratio": 0.5},
              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": "python " + shlex.join(sys.argv)}
    atomic_write_json(args.out, result)
    for row in rows:
        for op in row.get("profile_top_ops", []):
            print(f"  {row['preset']:>6} {op['op'][:48]:<48} {op['ms_per_update']:9.2f} ms/update "
                  f"{100 * op['share']:5.1f}%  x{op['calls_per_update']:.0f}")
    print(f"wrote {args.out}")
    return result


def _line(r: dict[str, Any]) -> str:
    loss = f"  loss@{r['loss_steps']} {r['loss_final']:.2f}" if "loss_final" in r else ""
    return (f"{r['preset']:>6} {r['variant']:<23} B={r['batch_size']:<3} L={r['chunk_length']:<3} "
            f"{r['frames_per_s']:9.0f} frames/s  {1e3 * r['s_per_update']:9.1f} ms/update  "
            f"{r['flops_per_update'] / 1e9:8.1f} GFLOP/update  {r['achieved_gflops']:8.1f} GFLOP/s  "
            f"{100 * r['achieved_over_matmul']:5.1f}% of matmul  {100 * r['achieved_over_bf16_matmul']:5.1f}% "
            f"of bf16  sample {r['sample_ms']:.1f} ms{loss}")


if __name__ == "__main__":
    main()
