"""`worldmodel run`: the command-line face of `worldmodel.online.run_online`.

    worldmodel run --task cartpole-swingup --env-steps 100000 --out runs/cp [--preset cpu|planet]
                   [--seed N] [--device auto] [--set KEY=VALUE ...] [--no-progress]
    worldmodel run --out runs/cp --resume [--env-steps N] [--device D]

`--set` takes any OnlineConfig field (`--set batch_size=16`), and `model.KEY=VALUE` /
`planner.KEY=VALUE` for ModelConfig fields and planner settings (`--set model.free_nats=1`).
On --resume the run's own settings are used; a flag that contradicts them is an error naming it
(only env_steps, device, checkpoint_every and the planning speed knobs planning_precision and
compile_planning may change).
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

PRESETS = ("cpu", "planet")


def camera_argument(text: str) -> int | str:
    """A camera id (an integer; -1 is MuJoCo's free camera) or name."""
    return int(text) if text.removeprefix("-").isdigit() else text


def config_overrides(pairs: list[str]) -> dict[str, Any]:
    """`--set` pairs -> OnlineConfig keyword arguments (model.* and planner.* nested)."""
    from worldmodel.evaluate import parse_overrides

    out: dict[str, Any] = {}
    for key, value in parse_overrides(pairs).items():
        group, dot, name = key.partition(".")
        if dot and group in ("model", "planner"):
            out.setdefault(f"{group}_overrides", {})[name] = value
        elif dot:
            raise ValueError(f"--set {key}=...: a dotted key must start with 'model.' or 'planner.'")
        else:
            out[key] = value
    return out


def build_config(args: argparse.Namespace) -> Any:
    """The OnlineConfig for `run_online`: a preset plus flags, or on --resume the run's plus flags."""
    from worldmodel.checkpoint import read_run_config
    from worldmodel.online_config import OnlineConfig

    given = config_overrides(args.set)
    for name in ("task", "env_steps", "seed", "device", "camera"):
        if getattr(args, name) is not None:
            given[name] = getattr(args, name)
    if args.resume:
        if args.preset is not None:
            raise ValueError(f"--preset chooses the settings of a new run; on --resume the run's are used "
                             f"(see {args.out}/config.json)")
        if not given:
            return None
        stored = read_run_config(args.out).get("online")
        if stored is None:
            return None  # run_online explains that the folder holds no online run
        merged = {**stored, **given}
        for name in ("model_overrides", "planner_overrides"):
            if name in given:
                merged[name] = {**stored.get(name, {}), **given[name]}
        return OnlineConfig.from_dict(merged)
    missing = [flag for flag, name in (("--task", "task"), ("--env-steps", "env_steps")) if name not in given]
    if missing:
        raise ValueError(f"a new run needs {' and '.join(missing)} (only --resume reads them from the run "
                         "folder), e.g. `worldmodel run --task cartpole-swingup --env-steps 100000 --out runs/cp`")
    return getattr(OnlineConfig, args.preset or "cpu")(**given)


def run_command(args: argparse.Namespace) -> int:
    """Run `worldmodel run` from parsed flags; prints the summary as JSON."""
    from worldmodel.online import run_online

    try:
        summary = run_online(build_config(args), args.out, resume=args.resume, progress=not args.no_progress)
    except KeyboardInterrupt as e:  # say where the checkpoint is before the CLI's "interrupted"
        if str(e):
            print(e, file=sys.stderr)
        raise
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()
                      if k != "returns"}))
    return 0


def add_arguments(sub: argparse._SubParsersAction) -> None:
    """Register the `run` verb (worldmodel.cli's `_VERB_MODULES` protocol)."""
    p = sub.add_parser("run", help="learn online as PlaNet does: collect, train, plan, collect ... (or --resume)")
    p.add_argument("--out", required=True, help="run folder: config.json, data/, checkpoint.pt, metrics.jsonl")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    p.add_argument("--task", default=None, help="task name, e.g. cartpole-swingup (see `envs.names()`)")
    p.add_argument("--env-steps", type=int, default=None,
                   help="simulator steps of data to collect (1000 per episode); on --resume a new total")
    p.add_argument("--preset", choices=PRESETS, default=None,
                   help="cpu (default: sized for a 2-core CPU) or planet (PlaNet's settings; a GPU)")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default=None, help="auto (default) | cpu | cuda")
    p.add_argument("--camera", type=camera_argument, default=None,
                   help="dm_control camera id or name to render (default: the task's, 0), e.g. 'lookatcart'")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any OnlineConfig field, or model.KEY / planner.KEY (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (e.g. in logs)")
    p.set_defaults(func=run_command)
