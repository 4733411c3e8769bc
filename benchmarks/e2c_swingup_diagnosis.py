"""Why does latent iLQR not swing the pendulum up? Cost or model, measured on a trained E2C run.

Run: python benchmarks/e2c_swingup_diagnosis.py --run RUN [--skip 5] [--out FILE.json]
where RUN is a `worldmodel e2c --task pendulum-swingup --out RUN` folder.

The true-simulator oracle swings the pendulum up from the protocol's first start; its frames and
actions are then read two ways, from step `--skip` on (so that the filter has seen the velocity):

- **the cost, given a perfect model**: the summed latent goal cost ‖z_t − z_goal‖² of the
  filtered latents along the oracle's path, against staying where it started for as many steps.
  A ratio below 1 means a planner with this horizon *should* prefer swinging up.
- **the model**: open-loop predictions of the learned dynamics under the oracle's own actions
  (relative error ‖ẑ_t − z_t‖ / the path's latent spread, at several steps), and the summed cost
  the planner would compute for the oracle's actions against doing nothing.
Writes JSON (default benchmarks/results/e2c_swingup_diagnosis.json) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worldmodel.atomic import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HORIZONS = (25, 50, 100, 150)


@torch.no_grad()
def diagnose(model, frames, actions, goal: torch.Tensor, skip: int, weights) -> dict:
    """The numbers the module docstring lists, for each horizon that fits the recorded path."""
    from planners.rollout import total_cost
    from worldmodel.goal_cost import filtered_latents
    from worldmodel.model import GoalObjective

    z = filtered_latents(model, frames, actions)[skip:]  # [T + 1 - skip, S]
    a = torch.as_tensor(np.asarray(actions, np.float32)).reshape(len(actions), -1)[skip:]  # [T - skip, A]
    spread = float(z.std(0).pow(2).sum().sqrt())
    path_cost = ((z - goal) ** 2).sum(-1)  # [T + 1 - skip]
    objective = GoalObjective(goal=goal, Q=weights[0] * torch.ones(z.shape[1]),
                              R=weights[1] * torch.ones(a.shape[1]))
    rows = []
    for horizon in HORIZONS:
        if horizon > len(a):
            continue
        problem = model.planning_problem(None, objective, horizon)
        s, errors = z[:1], []
        for t in range(horizon):
            s = problem.step(s, a[t][None])
            errors.append(float((s[0] - z[t + 1]).norm()) / spread)
        oracle_actions = float(total_cost(problem, z[0], a[:horizon][None])[0])
        no_action = float(total_cost(problem, z[0], torch.zeros(1, horizon, a.shape[1]))[0])
        rows.append({
            "horizon": horizon,
            "true_path_over_staying": float(path_cost[1:horizon + 1].sum() / (horizon * path_cost[0])),
            "open_loop_error_at": {str(k): errors[k - 1] for k in (1, 10, 25, 50, 100, 150) if k <= horizon},
            "model_cost_oracle_actions": oracle_actions, "model_cost_no_action": no_action,
            "model_terminal_cost_oracle_actions": float(((s[0] - goal) ** 2).sum()),
            "true_terminal_cost": float(path_cost[horizon]),
        })
    return {"skip": skip, "latent_spread": spread, "start_cost": float(path_cost[0]), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a `worldmodel e2c` output folder")
    parser.add_argument("--skip", type=int, default=5, help="filter steps before the comparison")
    parser.add_argument("--out", type=Path, default=RESULTS / "e2c_swingup_diagnosis.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    import envs
    from worldmodel.checkpoint import load_model
    from worldmodel.e2c import E2CConfig, goal_latent, make_planner, oracle_goal_episode, start_states

    stored = json.loads((args.run / "e2c_swingup.json").read_text())["settings"]
    config = E2CConfig(**{k: v for k, v in stored.items() if k in E2CConfig.__dataclass_fields__})
    model, _, _ = load_model(args.run / "run")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    env = envs.make(config.task, image_size=config.image_size)
    goal = goal_latent(model, env)
    start = start_states(env, config)[0]
    oracle = oracle_goal_episode(env, make_planner(config), start, config, seed=config.seed, record=True)
    env.close()
    result = {"run": str(args.run), "command": "python " + " ".join(sys.argv),
              "oracle_goal_time": oracle["goal_time"], "oracle_planner": config.planner,
              "oracle_horizon": config.horizon,
              **diagnose(model, oracle["frames"], oracle["actions"], goal, args.skip,
                         (config.goal_weight, config.action_weight))}
    atomic_write_json(args.out, result)
    print(f"oracle swing-up ({config.planner} on the simulator, horizon {config.horizon}): "
          f"{100 * oracle['goal_time']:.1f} % of steps in the goal region")
    print(f"{'H':>4s} {'true path/stay':>15s} {'model: oracle a':>16s} {'no action':>10s} "
          f"{'open-loop err @H':>17s} {'terminal pred/true':>19s}")
    for r in result["rows"]:
        err = r["open_loop_error_at"][max(r["open_loop_error_at"], key=int)]
        print(f"{r['horizon']:4d} {r['true_path_over_staying']:15.2f} {r['model_cost_oracle_actions']:16.0f} "
              f"{r['model_cost_no_action']:10.0f} {err:17.2f} "
              f"{r['model_terminal_cost_oracle_actions']:9.1f}/{r['true_terminal_cost']:.1f}")


if __name__ == "__main__":
    main()
