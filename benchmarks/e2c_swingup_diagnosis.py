"""Why does latent iLQR not swing the pendulum up? Cost or model, measured on a trained E2C run.

Run: python benchmarks/e2c_swingup_diagnosis.py --run RUN [--skip 5] [--planners P ...]
         [--set KEY=VALUE ...] [--out FILE.json]
where RUN is a `worldmodel e2c --task pendulum-swingup --out RUN` folder.

The true-simulator oracle swings the pendulum up from the protocol's first start; its frames and
actions are then read two ways, from step `--skip` on (so that the filter has seen the velocity):

- **the cost, given a perfect model**: the summed latent goal cost ‖z_t − z_goal‖² of the
  filtered latents along the oracle's path, against staying where it started for as many steps.
  A ratio below 1 means a planner with this horizon *should* prefer swinging up.
- **the model**: open-loop predictions of the learned dynamics under the oracle's own actions
  (relative error ‖ẑ_t − z_t‖ / the path's latent spread, at several steps), and the summed cost
  the planner would compute for the oracle's actions against doing nothing.
- **the search** (`--planners`): each named planner plans once from the same start latent with the
  same horizon; a planner whose best cost is above the oracle's actions' cost *in the model* has
  missed a better plan that exists, so the search, not the model or the cost, is the limit.
  Each plan is then played open-loop on the simulator from the same state: its predicted summed
  cost against the realised one (real frames filtered through the model) and the smallest |angle|
  it reaches. A plan that is cheap in the model and dear in reality exploits the model's errors.
- **the closed loop**: one MPC episode of the run's own planner on the model from the same start,
  with |angle| every 10 steps (does it pump at all, and how high does it get?).
- **the action's effect** (`--action-effect`, instead of all the above): from rest at several
  angles, the model's predicted latent difference between holding a = +1 and a = −1 for k steps,
  against the same difference between the filtered latents of the real frames: their cosine
  (below 0: the model has the action's effect backwards there) and their length ratio.
Writes JSON (default benchmarks/results/e2c_swingup_diagnosis.json) and prints a table.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from worldmodel.atomic import atomic_write_json  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
HORIZONS = (25, 50, 100, 150)
# Planners the search gap is measured for: name -> (planners.make name, settings).
SEARCH_PLANNERS = {
    "ilqr": ("ilqr", {"iterations": 20}),
    "ilqr-4-starts": ("ilqr", {"iterations": 20,
                                "initial_trajectories": ("zeros", "random", "random", "random")}),
    "icem": ("cem", {"noise_beta": 2.0, "keep_elites": 0.3, "return_best": True}),
    "cem": ("cem", {}),
    "mppi": ("mppi", {}),
}


def search_gap(problem, start: torch.Tensor, oracle_cost: float, names: list[str],
               seed: int) -> dict:
    """Each planner's best cost from `start` and its ratio to the oracle actions' model cost."""
    import planners

    out = {}
    for name in names:
        kind, settings = SEARCH_PLANNERS[name]
        result = planners.make(kind, **settings).plan(
            problem, start, generator=torch.Generator().manual_seed(seed))
        out[name] = {"cost": float(result.cost), "over_oracle_actions": float(result.cost) / oracle_cost,
                     "seconds": float(result.info.get("time_s", float("nan"))),
                     "actions": result.actions.detach()}
    return out


@torch.no_grad()
def play_open_loop(model, env, start_state, prefix: np.ndarray, plan: torch.Tensor,
                   goal: torch.Tensor, weights: tuple[float, float]) -> dict:
    """Play the oracle's first actions `prefix`, then `plan` [H, A] open-loop on the simulator.

    Returns the plan's realised cost, summed as the planner sums it (weights (q, r):
    q·Σ_{t=0..H} ‖z_t − z_goal‖² + r·Σ|a|², with z_t the real frames filtered through the model,
    as MPC would see them), and the true angles it reaches."""
    from worldmodel.goal_cost import goal_cost_along

    obs, info = env.reset(sim_state=start_state)
    frames, actions, angles = [obs], [], []
    for a in list(prefix) + list(plan.float().numpy()):
        obs, _, _, truncated, info = env.step(np.asarray(a, np.float32))
        frames.append(obs)
        actions.append(np.asarray(a, np.float32))
        angles.append(float(info["angle"]))
        if truncated:
            break
    # ‖z_t − z_goal‖² from the plan's start on
    latent_cost = goal_cost_along(model, frames, np.asarray(actions), goal)[len(prefix):]
    planned = np.abs(np.asarray(angles[len(prefix):]))
    realised = weights[0] * latent_cost.sum() + weights[1] * float((plan.float() ** 2).sum())
    return {"realised_cost": float(realised),
            "min_abs_angle": float(planned.min()), "final_abs_angle": float(planned[-1])}


@torch.no_grad()
def diagnose(model, frames, actions, goal: torch.Tensor, skip: int, weights: tuple[float, float],
             search: Sequence[str] = (), seed: int = 0,
             true_angles: Optional[np.ndarray] = None) -> dict:
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
        if search:
            with torch.enable_grad():
                rows[-1]["search"] = search_gap(problem, z[0], oracle_actions, list(search), seed)
            rows[-1]["oracle_actions_abs_angle"] = float(np.abs(true_angles[skip + 1:skip + horizon + 1]).min())
    return {"skip": skip, "latent_spread": spread, "start_cost": float(path_cost[0]), "rows": rows}


def action_effect(model, env, angles: Sequence[float], steps: int = 4) -> list[dict]:
    """Per start angle (at rest): cos and length ratio of the model's vs the filtered real latent
    difference between a = +1 and a = −1 held for 1..steps steps."""
    from worldmodel.control import image_to_tensor
    from worldmodel.e2c import pose_state

    def real(angle: float, a: float) -> torch.Tensor:  # filtered latents [steps + 1, S]
        obs, _ = env.reset(sim_state=pose_state(env, angle))
        state = model.filter_step(None, None, image_to_tensor(obs))
        out = [model.to_vector(state)[0]]
        for _ in range(steps):
            obs, *_ = env.step(np.array([a], np.float32))
            state = model.filter_step(state, torch.tensor([[a]]), image_to_tensor(obs))
            out.append(model.to_vector(state)[0])
        return torch.stack(out)

    rows = []
    with torch.no_grad():
        for angle in angles:
            plus, minus = real(angle, 1.0), real(angle, -1.0)
            seq = torch.ones(1, steps, 1)
            start = model.from_vector(plus[:1])
            pred_plus = model.imagine(start, seq, sample=False).vector(use_mean=True)[0]
            pred_minus = model.imagine(start, -seq, sample=False).vector(use_mean=True)[0]
            d_model, d_real = pred_plus - pred_minus, (plus - minus)[1:]  # [steps, S]
            rows.append({"angle": float(angle),
                         "cosine": torch.nn.functional.cosine_similarity(d_model, d_real, -1).tolist(),
                         "length_ratio": (d_model.norm(dim=-1) / d_real.norm(dim=-1)).tolist()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a `worldmodel e2c` output folder")
    parser.add_argument("--skip", type=int, default=5, help="filter steps before the comparison")
    parser.add_argument("--planners", nargs="*", default=[], choices=sorted(SEARCH_PLANNERS),
                        help="measure the search gap of these planners at each horizon")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a setting stored in the run (E2CConfig), e.g. --set horizon=100")
    parser.add_argument("--action-effect", action="store_true",
                        help="only compare the model's and the real effect of the action by angle")
    parser.add_argument("--out", type=Path, default=RESULTS / "e2c_swingup_diagnosis.json")
    args = parser.parse_args()
    torch.set_num_threads(1)

    from worldmodel.checkpoint import load_model
    from worldmodel.config import check_known_keys
    from worldmodel.evaluate import parse_overrides
    from worldmodel.e2c import (E2CConfig, goal_episode, goal_latent, make_env, make_planner, start_states,
                                stored_run)
    from worldmodel.e2c_oracle import oracle_goal_episode

    overrides = parse_overrides(args.set)
    check_known_keys(E2CConfig, overrides)
    try:  # its swing-up result's settings, or its balance result's (the action effect uses neither start)
        config, _ = stored_run(args.run, **overrides)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    weights = (config.goal_weight, config.action_weight)
    model, _, _ = load_model(args.run / "run")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    env = make_env(config)
    if args.action_effect:
        rows = action_effect(model, env, [0.0, 0.3, 1.0, 2.0, 3.0])
        atomic_write_json(args.out, {"run": str(args.run), "command": "python " + shlex.join(sys.argv),
                                     "action_effect": rows})
        print(f"{'angle':>6s}  cos(model, real) for k = 1..4 steps  |model|/|real|")
        for r in rows:
            print(f"{r['angle']:6.2f}  " + " ".join(f"{c:+.2f}" for c in r["cosine"]) + "   "
                  + " ".join(f"{x:.2f}" for x in r["length_ratio"]))
        return
    goal = goal_latent(model, env)
    start = start_states(env, config)[0]
    oracle = oracle_goal_episode(env, make_planner(config), start, config, seed=config.seed, record=True)
    result = {"run": str(args.run), "command": "python " + shlex.join(sys.argv),
              "oracle_goal_time": oracle["goal_time"], "oracle_planner": config.planner,
              "oracle_horizon": config.horizon,
              **diagnose(model, oracle["frames"], oracle["actions"], goal, args.skip, weights,
                         args.planners, config.seed, oracle["angles"])}
    mpc = goal_episode(model, env, make_planner(config), goal, start, config, seed=config.seed,
                       record=True)
    result["mpc"] = {"goal_time": mpc["goal_time"], "min_abs_angle": mpc["min_abs_angle"],
                     "abs_angle_every_10": np.abs(mpc["angles"][1::10]).round(3).tolist()}
    prefix = np.asarray(oracle["actions"])[:args.skip]
    for row in result["rows"]:  # play each plan on the simulator, then keep only numbers
        for entry in row.get("search", {}).values():
            entry.update(play_open_loop(model, env, start, prefix, entry.pop("actions"), goal, weights))
    env.close()
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
    print(f"MPC on the model ({config.planner}, horizon {config.horizon}, replan every "
          f"{config.replan_every}): {100 * mpc['goal_time']:.1f} % in the goal region, smallest "
          f"|angle| {mpc['min_abs_angle']:.2f}; |angle| every 10 steps: "
          + " ".join(f"{x:.2f}" for x in result["mpc"]["abs_angle_every_10"]))
    if args.planners:
        print("search gap: each planner's best cost in the model / the oracle's actions' cost "
              "(> 1: the search missed a better plan)")
        print("and, played open-loop on the simulator: realised cost / planned cost, smallest |angle|")
        print(f"{'H':>4s} {'oracle min|θ|':>13s} " + " ".join(f"{n:>24s}" for n in args.planners))
        for r in result["rows"]:
            cells = [f"{e['over_oracle_actions']:6.2f} {e['realised_cost'] / e['cost']:7.2f} "
                     f"{e['min_abs_angle']:9.2f}" for e in (r['search'][n] for n in args.planners)]
            print(f"{r['horizon']:4d} {r['oracle_actions_abs_angle']:13.2f} " + " ".join(
                f"{c:>24s}" for c in cells))


if __name__ == "__main__":
    main()
