"""The floor of the E2C protocol: % time in the goal region with no model at all.

    python benchmarks/e2c_floor.py                       # every protocol the record uses; ~1 min
    python benchmarks/e2c_floor.py --only pendulum-swingup:balance

Each protocol's own start states (`worldmodel.e2c.start_states`, the same seed), its episode length
and action repeat, then policies that know nothing: **zero action**, **uniform random actions**
(seeded) and **full torque one way** (the larger of +max and −max held throughout; a weak motor held on
spins the pendulum round, through the goal region on every turn). A learned model's score means
something only above all of them. Writes `benchmarks/results/e2c_floor.json` and prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import envs  # noqa: E402  (sets MUJOCO_GL=egl unless the user chose a backend)
from worldmodel.atomic import atomic_write_json  # noqa: E402
from worldmodel.control import goal_region_stats, goal_tolerance  # noqa: E402
from worldmodel.e2c import E2CConfig, start_states  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "e2c_floor.json"
# (name, E2CConfig settings): the protocols of docs/e2c_results.md, seed 0 (its start states)
PROTOCOLS: dict[str, dict[str, Any]] = {
    "pendulum-swingup:balance": dict(task="pendulum-swingup", start="balance"),
    "pendulum-swingup:swingup": dict(task="pendulum-swingup", start="swingup"),
    "pendulum-swingup_pc3:balance, every 0.02 s, 20 s": dict(task="pendulum-swingup_pc3", start="balance",
                                                             action_repeat=1, steps=1000),
    "pendulum-swingup_pc3:swingup, every 0.02 s, 20 s": dict(task="pendulum-swingup_pc3", start="swingup",
                                                             action_repeat=1, steps=1000),
    "cartpole-balance:balance": dict(task="cartpole-balance", start="balance"),
    "cartpole-balance:balance, every 0.02 s, 10 s": dict(task="cartpole-balance", start="balance",
                                                         action_repeat=2, steps=500),
}


def floor_episode(env: Any, sim_state: np.ndarray, steps: int,
                  policy: np.ndarray | np.random.Generator) -> dict[str, float]:
    """Holding the action `policy` [A] (or uniform random actions drawn from `policy` when it is a
    Generator): % of steps in the goal region, the longest unbroken stay there (% of the episode)
    and the turns through the bottom, as `worldmodel e2c` reports them."""
    _, info = env.reset(sim_state=sim_state)
    angles = [float(info["angle"])]
    low, high = env.action_space.low, env.action_space.high
    for _ in range(steps):
        a = policy.uniform(low, high) if isinstance(policy, np.random.Generator) else policy
        _, _, _, truncated, info = env.step(a)
        angles.append(float(info["angle"]))
        if truncated:
            break
    stats = goal_region_stats(np.asarray(angles), goal_tolerance(env.name))
    return {"goal_time": 100.0 * stats["goal_time"], "longest_stay": 100.0 * stats["longest_stay"],
            "turns": float(stats["turns"])}


def measure(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    config = E2CConfig.for_task(settings["task"], **{k: v for k, v in settings.items() if k != "task"},
                                seed=seed)
    # the protocol's env (make_env's), without rendering: no policy here looks at the images
    env = envs.make(config.task, image_size=config.image_size, action_repeat=config.action_repeat,
                    render_state=False)
    try:
        starts = start_states(env, config)
        held = lambda a: [floor_episode(env, s, config.steps, a) for s in starts]  # noqa: E731
        zero = held(np.zeros(env.action_dim))
        rand = [floor_episode(env, s, config.steps, np.random.default_rng(seed + i)) for i, s in enumerate(starts)]
        full = max(held(env.action_space.high.astype(np.float64)), held(env.action_space.low.astype(np.float64)),
                   key=lambda eps: np.mean([e["goal_time"] for e in eps]))
    finally:
        env.close()

    def stats(episodes: list[dict[str, float]]) -> dict[str, Any]:
        xs = [e["goal_time"] for e in episodes]
        return {"mean": float(np.mean(xs)), "stderr": float(np.std(xs, ddof=1) / np.sqrt(len(xs))),
                "per_pair": xs, "longest_stay_mean": float(np.mean([e["longest_stay"] for e in episodes])),
                "turns_mean": float(np.mean([e["turns"] for e in episodes]))}

    return {"settings": {**settings, "seed": seed, "steps": config.steps,
                         "action_repeat": env.action_repeat, "pairs": config.pairs},
            "zero_action": stats(zero), "random_actions": stats(rand), "full_torque_one_way": stats(full)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", choices=sorted(PROTOCOLS), help="protocols to measure (default all)")
    p.add_argument("--seed", type=int, default=0, help="the protocol seed whose start states are used")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = p.parse_args(argv)
    rows = {name: measure(PROTOCOLS[name], args.seed) for name in (args.only or PROTOCOLS)}
    policies = ("zero_action", "random_actions", "full_torque_one_way")
    print("% of steps in the goal region, mean ± s.e. [longest unbroken stay %, turns per episode]")
    print(f"{'protocol':52s}" + "".join(f"{p.replace('_', ' '):>28s}" for p in policies))
    for name, r in rows.items():
        print(f"{name:52s}" + "".join(f"{r[p]['mean']:9.1f} ± {r[p]['stderr']:3.1f} [{r[p]['longest_stay_mean']:4.1f}, "
                                      f"{r[p]['turns_mean']:4.1f}]" for p in policies))
    atomic_write_json(args.out, {"command": "python benchmarks/e2c_floor.py" + "".join(
        f" --only '{n}'" for n in args.only or []) + (f" --seed {args.seed}" if args.seed else ""), "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
