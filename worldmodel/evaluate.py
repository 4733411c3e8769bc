"""`worldmodel evaluate`: MPC with a trained model, beside random actions and the oracle.

Writes `<run>/eval/<planner>.json` with (keys other tools read; keep them) `return_mean`,
`return_stderr`, `returns`, `goal_time`, `oracle_return_mean`, `oracle_ratio`, `ms_per_action`,
`episodes`, `seed`, plus the oracle's and random actions' own summaries.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from worldmodel.atomic import atomic_write_json
from worldmodel.data.dataset import DEFAULT_CAMERA
from worldmodel.control import (EvalConfig, LatentMPCAgent, OracleAgent, RandomAgent,
                                run_episode, summarise)


def run_task(run_dir: str | Path) -> dict[str, Any]:
    """Task, image size, action repeat and camera of the data a run was trained on."""
    run_dir = Path(run_dir)
    config_path = run_dir / "config.json"
    if not config_path.exists():
        raise FileNotFoundError(
            f"{run_dir} holds no training run (no config.json); train one with "
            f"`worldmodel train --data DIR --out {run_dir}`")
    config = json.loads(config_path.read_text())
    manifest = config.get("data_manifest")
    if manifest is None:
        from worldmodel.checkpoint import run_data_path
        from worldmodel.data.dataset import MANIFEST

        data = run_data_path(run_dir, config)
        manifest = json.loads((data / MANIFEST).read_text())
    return {"task": manifest["task"], "image_size": int(manifest["image_size"]),
            "action_repeat": int(manifest["action_repeat"]),
            "camera": manifest.get("camera", DEFAULT_CAMERA)}


def evaluate_model(model: Any, task: str, config: EvalConfig, *, image_size: int,
                   action_repeat: int | None = None, progress: bool = True,
                   video: str | Path | None = None, camera: int | str | None = None) -> dict[str, Any]:
    """Evaluate a model's MPC on `task`, with the oracle and random baselines as configured.

    video: where to write the first learned-model episode, real frames (left) beside the frames
        the model predicted one step ahead when it chose each action (right); `out["video"]`
        holds the path written (a GIF when no MP4 encoder is installed).
    camera: the dm_control camera the model's images came from (`run_task`'s; None: the task's).
    """
    import envs
    import planners

    planner = planners.make(config.planner, **config.planner_overrides)
    n_oracle = config.episodes if config.oracle_episodes is None else config.oracle_episodes
    oracle_planner = _oracle_planner(planner) if n_oracle else planner
    env = envs.make(task, image_size=image_size, action_repeat=action_repeat, camera=camera)
    # episode i of every kind starts from the same seed (paired); each kind gets as many as asked
    seeds = [config.seed * 1000 + i for i in range(max(config.episodes, n_oracle, config.random_episodes))]
    jobs: list[tuple[str, int]] = [("learned", s) for s in seeds[:config.episodes]]
    jobs += [("oracle", s) for s in seeds[:n_oracle]]
    jobs += [("random", s) for s in seeds[:config.random_episodes]]
    results: dict[str, list] = {"learned": [], "oracle": [], "random": []}
    model.eval()
    try:
        bar = tqdm(jobs, desc=f"evaluate {task} ({config.planner})", disable=not progress, unit="ep")
        for job, (kind, seed) in enumerate(bar):
            film = video is not None and job == 0
            if kind == "learned":
                agent = LatentMPCAgent(model, planner, config.horizon, seed=seed, device=config.device,
                                       record_predictions=film, precision=config.planning_precision,
                                       compile=config.compile_planning,
                                       terminal_value=config.terminal_value)
            elif kind == "oracle":
                agent = OracleAgent(oracle_planner, config.horizon, seed=seed)
            else:
                agent = RandomAgent(env.action_dim, seed)
            try:
                results[kind].append(run_episode(env, agent, seed, max_steps=config.max_steps,
                                                 record_frames=film))
            finally:
                if isinstance(agent, OracleAgent):
                    agent.close()  # its MuJoCo rollout thread pool
            if film:
                video = _write_episode_video(results[kind][-1], video,
                                             env.physics.model.opt.timestep * env.action_repeat)
            bar.set_postfix(kind=kind, ret=f"{results[kind][-1].ret:.0f}")
    finally:
        env.close()
    out = summarise(results["learned"])
    out.update(episodes=config.episodes, seed=config.seed, task=task, planner=config.planner,
               horizon=config.horizon, planner_settings=_settings(planner),
               max_steps=config.max_steps,
               terminal_value=config.terminal_value and getattr(model, "value_head", None) is not None)
    out["oracle"] = summarise(results["oracle"]) if results["oracle"] else None
    out["oracle_return_mean"] = out["oracle"]["return_mean"] if out["oracle"] else None
    out["oracle_episodes"] = len(results["oracle"])
    # paired: the learned episodes that share the oracle's start states (episode i of each kind)
    paired = min(len(results["learned"]), len(results["oracle"]))
    learned_paired = float(np.mean([e.ret for e in results["learned"][:paired]])) if paired else None
    oracle_paired = float(np.mean([e.ret for e in results["oracle"][:paired]])) if paired else None
    out["oracle_ratio"] = (learned_paired / oracle_paired
                           if oracle_paired is not None and oracle_paired > 0 else None)  # 0: undefined
    out["oracle_ratio_episodes"] = paired
    if oracle_planner is not planner:
        out["oracle_planner_settings"] = _settings(oracle_planner)
    out["random"] = summarise(results["random"]) if results["random"] else None
    if video is not None:
        out["video"] = str(video)
    out["machine"] = {"cpu": platform.processor() or platform.machine(),
                      "threads": torch.get_num_threads(), "device": config.device}
    return out


def _oracle_planner(planner: Any) -> Any:
    """The planner for the true simulator: the same one without the actor's proposals, which the
    simulator has no actor for. Checked before any episode runs."""
    if not getattr(planner, "policy_candidates", 0):
        return planner
    try:
        return dataclasses.replace(planner, policy_candidates=0)
    except ValueError as e:  # the actor's plans were all it had
        raise ValueError(f"the oracle plans on the simulator, which has no actor, and without the actor's "
                         f"plans this planner has none ({e}); pass --oracle-episodes 0") from None


def _write_episode_video(episode: Any, path: str | Path, seconds_per_step: float) -> Path:
    """Real beside predicted frames of one episode, at real-time speed; the frames are then
    dropped from the result, which need not hold them."""
    from worldmodel.video import side_by_side, write_video

    written = write_video(side_by_side(episode.frames, episode.predicted), path, fps=1.0 / seconds_per_step)
    episode.frames = episode.predicted = None
    return written


def _settings(planner: Any) -> dict[str, Any]:
    """Every setting of the planner used (planners are frozen dataclasses), for the record."""
    return asdict(planner) if is_dataclass(planner) else {}


def evaluate(run_dir: str | Path, config: EvalConfig, *, progress: bool = True,
             video: bool = True) -> dict[str, Any]:
    """Load a run's latest checkpoint, evaluate it and write `<run>/eval/<name>.json` (and,
    with `video`, `<run>/eval/<name>_episode.mp4`: real beside predicted frames). The name is
    `config.result_name`: the planner's, `<planner>_no_terminal_value` without the terminal value,
    or the one given, so that evaluations of one model sit side by side."""
    from worldmodel.checkpoint import load_model

    run_dir = Path(run_dir)
    task = run_task(run_dir)
    model, _, _ = load_model(run_dir, device=config.device)
    name = config.result_name
    t0 = time.time()
    out = evaluate_model(model, task["task"], config, image_size=task["image_size"],
                         action_repeat=task["action_repeat"], camera=task["camera"], progress=progress,
                         video=run_dir / "eval" / f"{name}_episode.mp4" if video else None)
    out["wall_seconds"] = time.time() - t0
    atomic_write_json(run_dir / "eval" / f"{name}.json", out)
    return out


def print_summary(out: dict[str, Any]) -> None:
    def row(name: str, s: dict | None) -> str:
        if not s:
            return f"  {name:<10} (not run)"
        goal = "" if s["goal_time"] is None else f"   goal time {s['goal_time']:.2f}"
        return (f"  {name:<10} return {s['return_mean']:7.1f} ± {s['return_stderr']:5.1f} "
                f"({len(s['returns'])} ep){goal}   {s['ms_per_action']:.0f} ms/action")

    print(f"{out['task']} · planner {out['planner']} · horizon {out['horizon']}")
    print(row("learned", out))
    print(row("oracle", out["oracle"]))
    print(row("random", out["random"]))
    if out["oracle_ratio"] is not None:
        print(f"  oracle ratio {out['oracle_ratio']:.2f}")


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="MPC with a trained model vs the true-simulator oracle")
    p.add_argument("--run", required=True, help="run folder written by `worldmodel train`")
    p.add_argument("--planner", default="cem", help="cem | random | mppi | ilqr")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--oracle-episodes", type=int, default=None, help="default: as many as --episodes; 0 skips")
    p.add_argument("--random-episodes", type=int, default=0)
    p.add_argument("--horizon", type=int, default=12)
    p.add_argument("--max-steps", type=int, default=None, help="cut episodes short (env steps)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument("--planning-precision", default="float32",
                   help="float32 | bfloat16: the learned model's rollouts under bf16 autocast")
    p.add_argument("--compile-planning", action="store_true",
                   help="torch.compile the learned model's step and reward (first plan compiles)")
    p.add_argument("--no-terminal-value", action="store_true",
                   help="plan on the horizon's rewards alone, without a value head's V(s_H) "
                        "(writes <run>/eval/<planner>_no_terminal_value.json)")
    p.add_argument("--name", default=None,
                   help="file stem under <run>/eval (default: the planner's name), to keep an "
                        "ablation beside the default, e.g. --name cem_policy50")
    p.add_argument("--no-video", action="store_true",
                   help="skip <run>/eval/<planner>_episode.mp4 (real beside predicted frames)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="planner setting override, e.g. --set candidates=500 (repeatable)")
    p.set_defaults(func=_command)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """KEY=VALUE strings -> dict, values parsed as JSON where they parse (numbers, booleans)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--set expects KEY=VALUE, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def _command(args: argparse.Namespace) -> int:
    from worldmodel.device import resolve_device

    config = EvalConfig(planner=args.planner, planner_overrides=parse_overrides(args.set),
                        horizon=args.horizon, episodes=args.episodes,
                        oracle_episodes=args.oracle_episodes, random_episodes=args.random_episodes,
                        seed=args.seed, max_steps=args.max_steps,
                        device=str(resolve_device(args.device)),
                        planning_precision=args.planning_precision,
                        compile_planning=args.compile_planning,
                        terminal_value=not args.no_terminal_value, name=args.name)
    out = evaluate(args.run, config, video=not args.no_video)
    print_summary(out)
    print(f"wrote {Path(args.run) / 'eval' / (config.result_name + '.json')}")
    if out.get("video"):
        print(f"wrote {out['video']} (real frames beside the model's one-step predictions)")
    return 0
