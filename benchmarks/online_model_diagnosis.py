"""How well does an online run's model predict what its planner optimises? Measured on the run's own data.

    python benchmarks/online_model_diagnosis.py --run runs/control/cartpole-swingup-cpu-s2
        [--episodes 10] [--horizon 12] [--out FILE.json]

The planner ranks action sequences by the model's predicted return over H steps. This script
takes the last `--episodes` episodes the run collected (its own MPC episodes, so the states the
policy visits), filters each with the encoder (posterior means, as MPC does), and from every
step j rolls the prior open loop under the recorded actions a_j..a_{j+H−1}. It compares:

- the predicted H-step return Σ r̂ with the recorded one (mean, bias, mean absolute error,
  correlation), overall and by the pole's phase at step j (up: |angle| < π/10, the goal region;
  down: the rest), since a swing-up episode first pumps and then holds;
- the reward error per horizon step h = 1..H, beside the reward head's own error on filtered
  latents (h = 0: no open-loop drift), which separates the reward head from the dynamics;
- **what the planner sees** (`--candidates K`, every `--stride`-th start): K action sequences from
  the same start, scored by the model (from the filtered latent) and by the true simulator (from
  the recorded MuJoCo state): the Spearman rank correlation of the two scores, and the regret of
  trusting the model, (best true return − true return of the model's favourite) / (best − worst).
  Candidates are drawn as CEM's last iterations draw them: the recorded actions (the run's own
  MPC choice, exploration noise included) plus Gaussian noise of σ = 0.3, clipped to the box.

Writes JSON (default benchmarks/results/online_model_diagnosis.json) and prints a table.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from worldmodel.atomic import atomic_write_json  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "online_model_diagnosis.json"


@torch.no_grad()
def episode_predictions(model, episode, actions, post, horizon: int) -> dict[str, np.ndarray]:
    """From each start j = 0..T−H: predicted rewards [J, H] along the open-loop prior, recorded
    rewards [J, H], the filtered reward prediction [T] (from z_{t+1}) and the start states [J, S]."""
    from worldmodel.transitions import LatentSeq

    steps = episode.length
    starts = steps - horizon + 1
    state = post[:starts].flat()  # z_0 .. z_{T-H} as one batch of J states
    windows = actions[0, torch.arange(starts)[:, None] + torch.arange(horizon)]  # [J, H, A]
    prior: LatentSeq = model.imagine(state, windows, sample=False)
    predicted = model.predict_reward(prior).float().numpy()  # [J, H]: r̂_j .. r̂_{j+H-1}
    recorded = np.lib.stride_tricks.sliding_window_view(episode.rewards, horizon)  # [J, H]
    filtered = model.predict_reward(post[1:]).float().numpy()[0]  # [T]: r̂_t from z_{t+1}
    return {"predicted": predicted, "recorded": np.asarray(recorded, dtype=np.float64),
            "filtered": filtered, "states": episode.states[:starts]}


@torch.no_grad()
def candidate_ranking(model, dyn, episode, post, horizon: int, starts: range, candidates: int,
                      rng: np.random.Generator, base_state: np.ndarray) -> list[dict[str, float]]:
    """Per start j: Spearman ρ between model and simulator H-step returns of `candidates` action
    sequences around the recorded ones, and the regret of the model's favourite (0 best, 1 worst)."""
    from scipy.stats import spearmanr

    from worldmodel.transitions import _map

    rows = []
    for j in starts:
        recorded = episode.actions[j:j + horizon]  # [H, A]
        noise = rng.normal(0.0, 0.3, size=(candidates - 1, *recorded.shape))
        plans = np.clip(np.concatenate([recorded[None], recorded[None] + noise]), -1.0, 1.0)  # [K, H, A]
        start = _map(post[j:j + 1].flat(), lambda x: x.expand(candidates, -1))  # the same start K times
        prior = model.imagine(start, torch.as_tensor(plans, dtype=torch.float32), sample=False)
        model_return = model.predict_reward(prior).float().sum(1).numpy()  # [K]
        state = base_state.copy()
        state[dyn.qpos_slice] = episode.states[j, :dyn.nq]
        state[dyn.qvel_slice] = episode.states[j, dyn.nq:dyn.nq + dyn.nv]
        state[-1] = 0.0
        sim = np.repeat(state[None], candidates, 0)
        true_return = np.zeros(candidates)
        for h in range(horizon):
            sim, _ = dyn.simulate(sim, plans[:, h])
            true_return += sim[:, -1]
        spread = true_return.max() - true_return.min()
        favourite = int(np.argmax(model_return))
        rows.append({"start": j, "spearman": float(spearmanr(model_return, true_return).statistic),
                     "regret": float((true_return.max() - true_return[favourite]) / spread) if spread > 0 else 0.0,
                     "true_spread": float(spread),
                     # candidate 0 replays the recorded actions: the simulator must give the recorded
                     # rewards back (float32 states and the dropped solver warm start aside)
                     "replay_error": float(abs(true_return[0] - episode.rewards[j:j + horizon].sum()))})
    return rows


def summarise(pred_sum: np.ndarray, true_sum: np.ndarray) -> dict[str, float]:
    """Mean, bias, MAE and correlation of predicted against recorded H-step returns."""
    corr = float(np.corrcoef(pred_sum, true_sum)[0, 1]) if len(true_sum) > 1 and true_sum.std() > 0 else None
    return {"starts": int(len(true_sum)), "recorded_mean": float(true_sum.mean()),
            "predicted_mean": float(pred_sum.mean()), "bias": float((pred_sum - true_sum).mean()),
            "mae": float(np.abs(pred_sum - true_sum).mean()), "correlation": corr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a `worldmodel run` output folder")
    parser.add_argument("--episodes", type=int, default=10, help="the run's last N collected episodes")
    parser.add_argument("--horizon", type=int, default=None, help="H (default: the run's planning horizon)")
    parser.add_argument("--candidates", type=int, default=64,
                        help="K action sequences per start for the ranking check (0 skips it)")
    parser.add_argument("--stride", type=int, default=5, help="every n-th start for the ranking check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()

    import envs
    from worldmodel.checkpoint import load_model, read_run_config
    from worldmodel.control import GOAL_TOLERANCE
    from worldmodel.data import EpisodeDataset
    from worldmodel.visualize import filtered_episode

    config = read_run_config(args.run)
    online = config.get("online")
    if online is None:
        raise SystemExit(f"{args.run} is not a `worldmodel run` folder (its config.json has no 'online' settings)")
    horizon = args.horizon or int(online["horizon"])
    task = envs.spec(online["task"])
    if task.angle_qpos is None:
        raise SystemExit(f"{online['task']} has no pole angle to split the phases by")
    model, _, info = load_model(args.run)
    data = EpisodeDataset(args.run / "data")
    if not 1 <= args.episodes <= len(data):
        raise SystemExit(f"--episodes must be in [1, {len(data)}] (the episodes in {args.run / 'data'})")
    chosen = range(len(data) - args.episodes, len(data))
    posts = {i: filtered_episode(model, data[i]) for i in chosen}  # i -> (actions, posterior)
    parts = [episode_predictions(model, data[i], *posts[i], horizon) for i in chosen]

    def pole_up(states: np.ndarray) -> np.ndarray:
        """Whether the pole is inside the goal region, per state row."""
        angle = states[:, task.angle_qpos]
        return np.abs(np.arctan2(np.sin(angle), np.cos(angle))) < GOAL_TOLERANCE[task.domain]

    predicted = np.concatenate([p["predicted"] for p in parts])  # [N, H]
    recorded = np.concatenate([p["recorded"] for p in parts])
    up = np.concatenate([pole_up(p["states"]) for p in parts])
    filtered_error = np.concatenate([np.abs(p["filtered"] - data[i].rewards) for p, i in zip(parts, chosen)])
    pred_sum, true_sum = predicted.sum(1), recorded.sum(1)
    ranking = []
    if args.candidates:
        from worldmodel.sim_problem import SimulatorDynamics, oracle_state

        env = envs.make(online["task"], image_size=online["image_size"], action_repeat=online["action_repeat"])
        env.reset(seed=0)
        rng = np.random.default_rng(args.seed)
        with SimulatorDynamics(env) as dyn:
            base = oracle_state(env).numpy()
            for i in chosen:
                rows = candidate_ranking(model, dyn, data[i], posts[i][1], horizon,
                                         range(0, data[i].length - horizon + 1, args.stride),
                                         args.candidates, rng, base)
                for r, is_up in zip(rows, pole_up(data[i].states[[r["start"] for r in rows]])):
                    r["up"] = bool(is_up)
                ranking += rows
        env.close()
    result = {
        "run": str(args.run), "task": online["task"], "model_step": info["step"], "horizon": horizon,
        "episodes": list(chosen), "reward_per_step_max": task.action_repeat,
        "h_step_return": {"all": summarise(pred_sum, true_sum), "up": summarise(pred_sum[up], true_sum[up]),
                          "down": summarise(pred_sum[~up], true_sum[~up])},
        "reward_mae_by_step": [float(filtered_error.mean())] + np.abs(predicted - recorded).mean(0).tolist(),
        "ranking": {"candidates": args.candidates, "stride": args.stride, "seed": args.seed,
                    **{name: _ranking_summary([r for r in ranking if keep(r)])
                       for name, keep in (("all", lambda r: True), ("up", lambda r: r["up"]),
                                          ("down", lambda r: not r["up"]))}},
        "command": "python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }
    atomic_write_json(args.out, result)

    print(f"{online['task']}: model at update {info['step']}, last {args.episodes} episodes, H = {horizon}")
    print(f"{'starts':<8}{'n':>6}{'recorded':>10}{'predicted':>11}{'bias':>8}{'MAE':>8}{'corr':>7}")
    for name, row in result["h_step_return"].items():
        corr = "-" if row["correlation"] is None else f"{row['correlation']:.2f}"
        print(f"{name:<8}{row['starts']:>6}{row['recorded_mean']:>10.2f}{row['predicted_mean']:>11.2f}"
              f"{row['bias']:>8.2f}{row['mae']:>8.2f}{corr:>7}")
    by_step = result["reward_mae_by_step"]
    shown = [0, 1, 2, 4, 8, horizon]
    print("reward MAE per step, h = " + ", ".join(f"{h}: {by_step[h]:.3f}" for h in sorted(set(shown)) if h <= horizon)
          + f"  (h = 0: filtered; one agent step's reward is at most {task.action_repeat})")
    if ranking:
        print(f"ranking {args.candidates} candidates per start (σ 0.3 around the recorded actions), "
              "model vs simulator:")
        for name in ("all", "up", "down"):
            row = result["ranking"][name]
            print(f"  {name:<5} starts {row['starts']:>4}  Spearman median {row['spearman_median']:.2f}  "
                  f"regret median {row['regret_median']:.2f} (mean {row['regret_mean']:.2f})  "
                  f"true spread median {row['true_spread_median']:.2f}  "
                  f"replay error max {row['replay_error_max']:.3f}")
    print(f"wrote {args.out}")


def _ranking_summary(rows: list[dict]) -> dict[str, float | int | None]:
    if not rows:
        return {"starts": 0, "spearman_median": None, "regret_median": None, "regret_mean": None,
                "true_spread_median": None, "replay_error_max": None}
    col = lambda k: np.array([r[k] for r in rows])  # noqa: E731
    return {"starts": len(rows), "spearman_median": float(np.median(col("spearman"))),
            "regret_median": float(np.median(col("regret"))), "regret_mean": float(col("regret").mean()),
            "true_spread_median": float(np.median(col("true_spread"))),
            "replay_error_max": float(col("replay_error").max())}


if __name__ == "__main__":
    main()
