"""The `worldmodel` command: a thin layer over functions a Python user can call.

Each verb lives in the module that implements it; this file only parses arguments and imports
that module when the verb runs, so `worldmodel --help` stays instant.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence

from worldmodel.run_cli import camera_argument

# Off-screen rendering through EGL unless the user chose a backend (DESIGN.md section 4).
os.environ.setdefault("MUJOCO_GL", "egl")


def _collect(args: argparse.Namespace) -> int:
    from worldmodel.collect import collect

    dataset = collect(args.task, args.episodes, args.out, policy=args.policy, workers=args.workers,
                      seed=args.seed, image_size=args.image_size, action_repeat=args.action_repeat,
                      episode_steps=args.episode_steps, camera=args.camera)
    returns = [float(dataset[i].rewards.sum()) for i in range(len(dataset))]
    print(f"{args.out}: {len(dataset)} episodes, {dataset.num_steps} steps of {dataset.manifest['task']}; "
          f"mean return {sum(returns) / max(len(returns), 1):.1f}")
    return 0


def _add_collect(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("collect", help="record pixel episodes of a task into a dataset folder (appends)")
    p.add_argument("--task", required=True, help="task name, e.g. cartpole-swingup (see `envs.names()`)")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes to add")
    p.add_argument("--out", required=True, help="dataset folder; re-running appends, never overwrites")
    p.add_argument("--policy", default="random", help="'random' (uniform actions), 'balance' (a noisy "
                   "controller holding a pendulum's or cart-pole's pole near upright), 'swingup' (a noisy "
                   "energy-pumping swing-up of the pendulum that balances at the top) or module:function")
    p.add_argument("--workers", type=int, default=1, help="render in K spawned processes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--action-repeat", type=int, default=None, help="default: the task's (PlaNet's)")
    p.add_argument("--episode-steps", type=int, default=None,
                   help="stop each episode after this many env steps (default: the full episode)")
    p.add_argument("--camera", type=camera_argument, default=None,
                   help="dm_control camera id or name (default: the task's, 0); e.g. 'lookatcart' "
                        "follows the cart-pole's cart from nearer")
    p.set_defaults(func=_collect)


def _resolve_policy(spec: str) -> str | Callable:
    if ":" not in spec:  # a policy name, checked by collect
        return spec
    import importlib

    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worldmodel",
        description="Learn world models of pixel control tasks and control them by latent planning.")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    _add_collect(sub)
    for module in _VERB_MODULES:
        __import__(module, fromlist=["add_arguments"]).add_arguments(sub)
    return parser


# Modules that each register one verb with `add_arguments(subparsers)`; their heavy imports
# happen inside the verb's function, not at registration.
_VERB_MODULES: tuple[str, ...] = ("worldmodel.train_cli", "worldmodel.evaluate", "worldmodel.visualize", "worldmodel.demo", "worldmodel.e2c_cli", "worldmodel.run_cli")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.verb == "collect":
        args.policy = _resolve_policy(args.policy)
    from worldmodel.allocator import keep_freed_memory

    keep_freed_memory()  # CPU updates without a page fault per large block (allocator.py)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console_main() -> int:
    """The `worldmodel` command: `main`, with bad input (a wrong setting, a missing or foreign
    run folder, a corrupt file) reported as one line instead of a traceback. Set
    WORLDMODEL_TRACEBACK=1 to see the traceback."""
    import os

    from worldmodel.checkpoint import CheckpointError

    try:
        return main()
    except (ValueError, FileNotFoundError, FileExistsError, CheckpointError) as err:
        if os.environ.get("WORLDMODEL_TRACEBACK"):
            raise
        print(f"worldmodel: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(console_main())
