"""Environment speed: rendered frames per second of each pixel task, with 1 and K processes.

A frame is one env step: `action_repeat` simulator steps plus one rendered image (64x64 by
default). Each worker process (spawn context, as `worldmodel.collect` uses) builds its env, warms
up, waits at a barrier with the others, then steps N times with uniform random actions (resetting
at episode ends); the throughput of a repeat is (K * N) / (last finish - first start). The table
reports the median over repeats; the JSON also keeps every repeat and the machine's description.

    python benchmarks/env_speed.py                       # all tasks, 1 and 2 workers, ~1-2 min
    python benchmarks/env_speed.py --tasks cartpole-swingup --workers 1 2 4 --steps 300
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import envs  # noqa: E402  (sets MUJOCO_GL=egl unless the user chose a backend)

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "env_speed.json"


def _worker(task: str, image_size: int, steps: int, repeats: int, seed: int, barrier,
            results) -> None:
    """Step one env `steps` times per repeat, between barriers; report (start, end) per repeat."""
    import numpy as np

    env = envs.make(task, image_size=image_size, seed=seed)
    rng = np.random.default_rng(seed)
    env.reset()
    for _ in range(5):  # warm-up: GL context, shaders, first-frame allocations
        env.step(rng.uniform(-1, 1, env.action_dim))
    for rep in range(repeats):
        barrier.wait()
        start = time.perf_counter()
        for _ in range(steps):
            if env.step(rng.uniform(-1, 1, env.action_dim))[3]:
                env.reset()
        results.put((rep, start, time.perf_counter()))
    env.close()


def measure(task: str, workers: int, *, image_size: int, steps: int, repeats: int) -> list[float]:
    """Frames/s of `workers` concurrent processes, one value per repeat."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(task, image_size, steps, repeats, seed, barrier,
                                               results)) for seed in range(workers)]
    for p in procs:
        p.start()
    spans: dict[int, list[tuple[float, float]]] = {r: [] for r in range(repeats)}
    for _ in range(workers * repeats):
        rep, start, end = results.get(timeout=600)
        spans[rep].append((start, end))
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"benchmark worker for {task} exited with code {p.exitcode}")
    # perf_counter is system-wide (CLOCK_MONOTONIC) on Linux, so spans of processes compare.
    return [workers * steps / (max(e for _, e in s) - min(b for b, _ in s)) for s in spans.values()]


def machine() -> dict:
    """What the numbers were measured on."""
    def version(pkg: str) -> str | None:
        try:
            return metadata.version(pkg)
        except metadata.PackageNotFoundError:
            return None

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor(), "python": platform.python_version(),
            "torch": version("torch"), "mujoco": version("mujoco"),
            "dm_control": version("dm-control"), "MUJOCO_GL": os.environ.get("MUJOCO_GL"),
            "load_average_at_start": os.getloadavg()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=envs.names(), choices=envs.names())
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--image-size", type=int, default=64)  # PlaNet's 64x64
    parser.add_argument("--steps", type=int, default=60, help="env steps per worker per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if min(args.workers) < 1 or args.steps < 1 or args.repeats < 1:
        parser.error("--workers, --steps and --repeats must be >= 1")

    info = machine()
    rows = []
    for task in args.tasks:
        for k in args.workers:
            fps = measure(task, k, image_size=args.image_size, steps=args.steps,
                          repeats=args.repeats)
            rows.append({"task": task, "workers": k, "image_size": args.image_size,
                         "action_repeat": envs.spec(task).action_repeat,
                         "frames_per_s_median": statistics.median(fps), "frames_per_s": fps})
            print(f"  {task:18s} workers={k}: {statistics.median(fps):7.1f} frames/s", flush=True)

    print(f"\nenv frames/s at {args.image_size}x{args.image_size}, median of {args.repeats} x "
          f"{args.steps} steps; {info['cpu_count']} cores, MUJOCO_GL={info['MUJOCO_GL']}, "
          f"mujoco {info['mujoco']}, torch {info['torch']}")
    print(f"{'task':18s} {'repeat':>6s} " + " ".join(f"{f'{k} worker(s)':>12s}" for k in args.workers))
    for task in args.tasks:
        cells = [r["frames_per_s_median"] for r in rows if r["task"] == task]
        print(f"{task:18s} {envs.spec(task).action_repeat:6d} " + " ".join(f"{c:12.1f}" for c in cells))

    report = {"benchmark": "env_speed", "settings": {"steps": args.steps, "repeats": args.repeats,
                                                     "image_size": args.image_size},
              "machine": info, "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{args.out.name}.", suffix=".tmp", dir=args.out.parent)
    with os.fdopen(fd, "w") as f:  # atomic: temp file in the same folder, then os.replace
        json.dump(report, f, indent=2)
        f.write("\n")
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
