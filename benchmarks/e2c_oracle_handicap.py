"""How good must a learned model be for the E2C balance protocol? The oracle, handicapped.

The protocol's oracle (iLQR MPC on the true simulator, `worldmodel.e2c_oracle`) holds dm_control's
pendulum upright 100 % of the time. Here it is given, one at a time, the flaws a learned model and
its filter have (`OracleHandicap`): actuators weaker or stronger than the real ones (a model's
action effect at upright was measured at 0.16-0.99 of the real one), a gravity too strong or
too weak (how fast the model lets the pole fall), Gaussian errors in the angle
and velocity it plans from, and a constant angle or velocity offset. Each setting runs the protocol's start
states (balance: angle ~ U[-0.05, 0.05] rad at rest, 250 steps, replan every 5) and reports % time
in the goal region, beside the unhandicapped oracle in the same run.

    python benchmarks/e2c_oracle_handicap.py                         # the default sweep, ~30 min, 1 thread
    python benchmarks/e2c_oracle_handicap.py --set replan_every=1 --pairs 5 --tag replan1 \
        --sweep actuator_gain=0.5,0.75,1.5 --sweep angle_bias=0.05     # another protocol, a few flaws
    python benchmarks/e2c_oracle_handicap.py --runs runs/e2c_rgb_s0 runs/e2c_s0_2threads

With --runs, each E2C run folder's model is also measured in the same units: random-action episodes
from rest near upright are filtered, a linear (and a k-NN) read-out from latent to (angle,
velocity) is fitted on some episodes, and its error on the others (frames inside the goal region)
is the state error that model's planner works with (`geometry.readout_rmse_per_target`). And its
fall: from rest near upright under zero action, how far the model predicts the pole to fall in 1-4
steps against how far it falls (`model_fall`; 1 = right, the oracle's `gravity_gain` in kind).
With --closed-loop PAIRS, the same read-outs are applied along the model's own balance episodes
(the protocol, with --set's overrides): the state errors its planner met in closed loop; the first
episode is drawn in e2c_oracle_handicap[_TAG]_<run>.png (true and read-out state, actions), until
the pole first leaves the goal region, where the read-out was fitted.
--together FLAW=V ... adds one row with all those flaws at once.
--perception RUN adds a row of the oracle planning from that run's filter, read out (the true
dynamics with a learned perception); --readout-cost RUN one of the run's own model and filter
planning with the oracle's cost on that read-out in place of the latent goal cost (the learned
dynamics with a cost that knows the angle): between them they tell perception, dynamics and cost apart.
Sweeps add rows to the file (a flaw and value run again replaces its row); a --no-sweep run
replaces its models.

Writes benchmarks/results/e2c_oracle_handicap[_TAG].json.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

# One flaw at a time, the rest as the oracle has them.
DEFAULT_SWEEP: dict[str, list[float]] = {
    "actuator_gain": [0.25, 0.5, 0.75, 1.5, 2.0],
    "gravity_gain": [0.5, 0.75, 1.25, 1.5],
    "angle_noise": [0.01, 0.02, 0.05, 0.1],
    "velocity_noise": [0.1, 0.3, 1.0],
    "angle_bias": [0.02, 0.05, 0.1],
    "velocity_bias": [0.1, 0.3],
}


def flaw_values(items: list[str], option: str) -> dict[str, list[float]]:
    """FLAW=V1,V2 strings (FLAW a key of DEFAULT_SWEEP) -> {flaw: [values]}; SystemExit naming the
    option on anything else."""
    out: dict[str, list[float]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or name not in DEFAULT_SWEEP:
            raise SystemExit(f"{option} takes FLAW=V1,V2 with FLAW one of {', '.join(DEFAULT_SWEEP)}, got {item!r}")
        try:
            out[name] = [float(v) for v in values.split(",")]
        except ValueError:
            raise SystemExit(f"{option} {name}: values must be numbers separated by commas, got {values!r}") from None
    return out


def handicapped_protocol(config: Any, handicap: Any, pairs: int, estimate_for: Any = None) -> dict[str, Any]:
    """The oracle's goal time (% per pair, mean, standard error) under `handicap`; with
    `estimate_for(env)`, planning from that learned perception's angle and velocity."""
    from worldmodel.e2c import make_env, make_planner, start_states
    from worldmodel.e2c_oracle import oracle_goal_episode

    env = make_env(config)
    planner = make_planner(config)
    try:
        episodes = [oracle_goal_episode(env, planner, s, config, seed=config.seed + i, handicap=handicap,
                                        estimate=estimate_for(env) if estimate_for else None)
                    for i, s in enumerate(start_states(env, config)[:pairs])]
    finally:
        env.close()
    return goal_time_summary(episodes)


def goal_time_summary(episodes: list[dict[str, Any]]) -> dict[str, Any]:
    """% time in goal per episode, its mean and standard error, and the mean longest stay."""
    times = [100 * e["goal_time"] for e in episodes]
    stays = [100 * e["longest_stay"] for e in episodes]
    return {"goal_time_percent_mean": float(np.mean(times)),
            "goal_time_percent_stderr": float(np.std(times, ddof=1) / math.sqrt(len(times))) if len(times) > 1 else 0.0,
            "goal_time_percent": times, "longest_stay_percent_mean": float(np.mean(stays))}


def probe_frames(run: Path, episodes: int, steps: int, seed: int) -> dict[str, Any]:
    """A run's settings, result and model, and its filtered latents [N, S] with the true (angle,
    velocity) [N, 2] and episode ids [N] of random-action frames inside the goal region, from
    `episodes` episodes that start at rest there (kept in RUN/upright_probe: a re-run reads the same)."""
    import torch

    from worldmodel.checkpoint import load_model
    from worldmodel.collect import top_up
    from worldmodel.control import goal_tolerance
    from worldmodel.e2c import stored_run
    from worldmodel.goal_cost import angle_index, filtered_latents
    from worldmodel.task_rewards import dimensions

    torch.set_num_threads(1)
    config, result = stored_run(run)
    model, _, _ = load_model(run / "run")
    tolerance = goal_tolerance(config.task)
    data = top_up(config.task, episodes, run / "upright_probe", seed=seed, image_size=config.image_size,
                  action_repeat=config.action_repeat, camera=config.camera, episode_steps=steps, progress=False,
                  start_angles=(-tolerance, tolerance))
    pole = angle_index(config.task)  # the pole's qpos column; its qvel column is nq + pole
    nq, _, _ = dimensions(config.task)
    latents, targets, groups = [], [], []
    for i, ep in enumerate(data.episodes):
        z = filtered_latents(model, list(ep.images), ep.actions).numpy()
        angle = np.remainder(ep.states[:, pole] + math.pi, 2 * math.pi) - math.pi
        keep = np.abs(angle) < tolerance
        keep[:2] = False  # the filter's first frames: no velocity seen yet
        latents.append(z[keep])
        velocity = ep.states[:, nq + pole]
        targets.append(np.stack([angle, velocity], axis=1)[keep])
        groups.append(np.full(int(keep.sum()), i))
    return {"config": config, "result": result, "model": model, "latents": np.concatenate(latents),
            "targets": np.concatenate(targets), "groups": np.concatenate(groups)}


def model_state_error(run: Path, episodes: int, steps: int, seed: int, closed_loop: int = 0,
                      protocol: dict[str, Any] | None = None, figure: Path | None = None) -> dict[str, Any]:
    """A run's filtered latents near upright against the true (angle, velocity): held-out RMSE of a
    linear and a k-NN read-out (fitted on other episodes), on frames inside the goal region; its fall;
    and with `closed_loop` pairs, the same read-outs along the model's own MPC episodes (`protocol`:
    E2CConfig overrides such as replan_every)."""
    from worldmodel.e2c import result_path
    from worldmodel.geometry import readout_rmse_per_target

    probe = probe_frames(run, episodes, steps, seed)
    config, result, model = probe["config"], probe["result"], probe["model"]
    z, y, g = probe["latents"], probe["targets"], probe["groups"]
    # the run's untagged balance result; `result` is its swing-up one where it has both
    balance = result_path(run, "balance")
    out: dict[str, Any] = {"run": str(run), "frames": int(len(z)), "episodes": episodes,
                           "balance_percent": json.loads(balance.read_text())["goal_time_percent_mean"]
                           if balance.is_file() else None,
                           "latent_r2": result.get("latent_r2")}
    for method in ("linear", "knn"):
        rmse = readout_rmse_per_target(z, y, method=method, groups=g, seed=seed)
        out[method] = {"angle_rmse": float(rmse[0]), "velocity_rmse": float(rmse[1])}
    out["true_spread"] = {"angle_std": float(y[:, 0].std()), "velocity_std": float(y[:, 1].std())}
    out["fall"] = model_fall(model, config, z, y)
    if closed_loop:
        out["closed_loop"] = closed_loop_error(run, model, config.task, z, y, closed_loop, protocol or {}, figure)
    return out


def model_episodes(run: Path, model: Any, pairs: int, protocol: dict[str, Any],
                   cost_for: Any = None) -> list[dict[str, Any]]:
    """The model's recorded balance episodes (the protocol with `protocol`'s overrides, `pairs`
    start states); with `cost_for(goal, config)`, planning with that GoalObjective in place of the
    protocol's latent goal cost."""
    from worldmodel.e2c import goal_episode, make_env, make_planner, protocol_goal, start_states, stored_run

    config, _ = stored_run(run, start="balance", pairs=pairs, **protocol)
    env = make_env(config)
    try:
        goal, _ = protocol_goal(model, env, config)
        objective = cost_for(goal, config) if cost_for else None
        return [goal_episode(model, env, make_planner(config), goal, s, config, seed=config.seed + i,
                             record=True, objective=objective)
                for i, s in enumerate(start_states(env, config))]
    finally:
        env.close()


def readout_cost(readout: "LinearReadout", velocity_weight: float, action_weight: float,
                 goal: Any) -> Any:
    """The oracle's cost, angle² + velocity_weight·velocity² + action_weight·|a|², on a linear
    read-out of the latent: a GoalObjective with Q = w_θ w_θᵀ + velocity_weight·w_ω w_ωᵀ [S, S]
    (rank 2) around the latent nearest `goal` [S] that reads as upright at rest."""
    import torch

    from worldmodel.model import GoalObjective

    w, b = readout.weights[:-1], readout.weights[-1]  # [S, 2], [2]
    shift, *_ = np.linalg.lstsq(w.T, -b - w.T @ goal.numpy(), rcond=None)  # least-norm move to (0, 0)
    q = np.outer(w[:, 0], w[:, 0]) + velocity_weight * np.outer(w[:, 1], w[:, 1])
    return GoalObjective(goal=goal + torch.as_tensor(shift, dtype=goal.dtype),
                         Q=torch.as_tensor(q, dtype=goal.dtype), R=action_weight)


def closed_loop_error(run: Path, model: Any, task: str, latents: np.ndarray, targets: np.ndarray, pairs: int,
                      protocol: dict[str, Any], figure: Path | None = None) -> dict[str, Any]:
    """The model's balance episodes (`model_episodes`), each step's filtered latent read through
    read-outs fitted on (latents, targets): RMSE and mean error (bias) of the angle and velocity the
    planner worked with, over the steps inside the goal region after the first two, against the
    random-action data's. With `figure`, the first episode's true and read-out (linear) state and
    its actions are drawn there (`viz.plot_state_estimate`)."""
    from worldmodel.control import goal_tolerance
    from worldmodel.geometry import readout_predict

    episodes = model_episodes(run, model, pairs, protocol)
    tolerance = goal_tolerance(task)
    if figure is not None:
        from worldmodel.viz import plot_state_estimate

        first = episodes[0]
        # until the pole first leaves the goal region: the read-out was fitted inside it
        out_of_goal = np.flatnonzero(np.abs(first["angles"]) >= tolerance)
        end = len(first["angles"]) if not len(out_of_goal) else out_of_goal[0] + 1
        plot_state_estimate(np.stack([first["angles"], first["states"][:, 1]], axis=1)[:end],
                            readout_predict(latents, targets, first["latents"][:end], method="linear"),
                            first["actions"][:end - 1], figure, tolerance=tolerance,
                            title=f"{run.name}: its own balance episode ({protocol or 'the protocol'}), "
                                  f"{100 * first['goal_time']:.1f} % in goal; the first {end} of "
                                  f"{len(first['angles'])} steps")
    out: dict[str, Any] = {"protocol": protocol, "pairs": pairs,
                           "goal_time_percent": [100 * e["goal_time"] for e in episodes]}
    for method in ("linear", "knn"):
        errors = []
        for e in episodes:
            truth = np.stack([e["angles"], e["states"][:, 1]], axis=1)
            keep = np.abs(truth[:, 0]) < tolerance
            keep[:2] = False
            read = readout_predict(latents, targets, e["latents"][keep], method=method)
            errors.append(read - truth[keep])
        err = np.concatenate(errors)
        out[method] = {"angle_rmse": float(np.sqrt((err[:, 0] ** 2).mean())),
                       "velocity_rmse": float(np.sqrt((err[:, 1] ** 2).mean())),
                       "angle_mean_error": float(err[:, 0].mean()),
                       "velocity_mean_error": float(err[:, 1].mean()), "steps": int(len(err))}
    return out


# Zero-action falls from rest, measured after the filter has seen FALL_SEEN frames of each.
FALL_ANGLES = (-0.2, -0.1, -0.05, 0.05, 0.1, 0.2)
FALL_SEEN, FALL_STEPS = 2, 4


class LinearReadout:
    """Least squares with a bias from latents [N, S] to (angle, velocity) [N, 2], fitted once and
    applied to one latent at a time (the per-step readings below)."""

    def __init__(self, latents: np.ndarray, targets: np.ndarray) -> None:
        ones = np.concatenate([latents, np.ones((len(latents), 1))], axis=1)
        self.weights, *_ = np.linalg.lstsq(ones, targets, rcond=None)  # [S + 1, 2]

    def __call__(self, z: np.ndarray) -> tuple[float, float]:
        angle, velocity = np.append(z, 1.0) @ self.weights
        return float(angle), float(velocity)


class LatentReadout:
    """A run's filter, read out by a linear map to (angle, velocity): the oracle's learned perception
    (`e2c_oracle.StateEstimate`). Fitted on the run's upright-probe frames (`probe_frames`)."""

    def __init__(self, model: Any, latents: np.ndarray, targets: np.ndarray) -> None:
        self.read = LinearReadout(latents, targets)
        self.model, self.state = model, None

    def __call__(self, obs: np.ndarray, action: np.ndarray | None) -> tuple[float, float]:
        import torch

        from worldmodel.control import image_to_tensor

        with torch.no_grad():
            if action is None:
                self.state = self.model.filter_step(None, None, image_to_tensor(obs))
            else:
                a = torch.as_tensor(np.asarray(action, np.float32)).unsqueeze(0)
                self.state = self.model.filter_step(self.state, a, image_to_tensor(obs))
            z = self.model.to_vector(self.state)[0].float().numpy()
        return self.read(z)


def model_fall(model: Any, config: Any, latents: np.ndarray, targets: np.ndarray) -> dict[str, Any]:
    """How fast the model lets the pole fall from near upright, against the real fall: from rest at
    each of FALL_ANGLES with zero action, the filter sees the first FALL_SEEN real frames, then the
    model predicts k = 1..FALL_STEPS steps open loop; a linear read-out (fitted on `latents` ->
    `targets`' angle) turns each prediction into an angle. Reported per k: the mean over starts of
    (predicted change of angle) / (real change): 1 is a model that falls as the pole does, < 1 one
    that thinks the pole topples slower (the `gravity_gain` the oracle was handicapped with)."""
    import torch

    from envs.rollout import pose_state
    from worldmodel.e2c import make_env
    from worldmodel.goal_cost import filtered_latents
    from worldmodel.model import GoalObjective

    readout = LinearReadout(latents, targets)  # least squares fits each column alone: the angle's is its own
    read = lambda z: readout(z)[0]  # noqa: E731
    env = make_env(config)
    step = model.planning_problem(None, GoalObjective(goal=torch.zeros(model.state_size)), 1).step
    zero = np.zeros(env.action_dim, np.float32)
    ratios = np.zeros((len(FALL_ANGLES), FALL_STEPS))
    try:
        for i, angle in enumerate(FALL_ANGLES):
            obs, info = env.reset(sim_state=pose_state(env, angle))
            frames, angles = [obs], [float(info["angle"])]
            for _ in range(FALL_SEEN - 1 + FALL_STEPS):
                obs, _, _, _, info = env.step(zero)
                frames.append(obs)
                angles.append(float(info["angle"]))
            seen = FALL_SEEN
            with torch.no_grad():
                z = filtered_latents(model, frames[:seen], np.zeros((seen - 1, env.action_dim)))[-1:]
                start = read(z[0].numpy())
                for k in range(FALL_STEPS):
                    z = step(z, torch.zeros(1, env.action_dim))
                    real = angles[seen - 1 + k + 1] - angles[seen - 1]
                    ratios[i, k] = (read(z[0].numpy()) - start) / real
    finally:
        env.close()
    return {"angles": list(FALL_ANGLES), "frames_seen": FALL_SEEN,
            "ratio_by_k": ratios.mean(axis=0).tolist(), "ratio": ratios.tolist()}


def merged_rows(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The sweep's rows: the new ones, and the old ones for flaws and values not run again."""
    fresh = {(r["flaw"], r["value"]) for r in new}
    return [r for r in old if (r["flaw"], r["value"]) not in fresh] + new


def _listed(value: Any) -> list[str]:
    return [] if value is None else [value] if isinstance(value, str) else list(value)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="pendulum-swingup")
    p.add_argument("--start", default="balance", choices=("balance", "swingup"))
    p.add_argument("--pairs", type=int, default=10)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="an E2CConfig setting of the protocol, e.g. replan_every=1")
    p.add_argument("--sweep", action="append", default=[], metavar="FLAW=V1,V2",
                   help=f"flaws and values to try in place of the default sweep ({', '.join(DEFAULT_SWEEP)})")
    p.add_argument("--together", action="append", default=[], metavar="FLAW=V",
                   help="one more row with all these flaws at once (repeat for each flaw)")
    p.add_argument("--perception", type=Path, nargs="*", default=[], metavar="RUN",
                   help="one more row per run: the oracle planning from that run's filter, read out (angle, velocity)")
    p.add_argument("--readout-cost", type=Path, nargs="*", default=[], metavar="RUN",
                   help="one more row per run: that run's model and filter planning with the oracle's cost "
                        "on a linear read-out of its latent, in place of the latent goal cost")
    p.add_argument("--runs", type=Path, nargs="*", default=[], help="E2C run folders to measure")
    p.add_argument("--probe-episodes", type=int, default=40)
    p.add_argument("--closed-loop", type=int, default=0, metavar="PAIRS",
                   help="also read each run's latents along PAIRS of its own balance episodes (the --set protocol)")
    p.add_argument("--no-sweep", action="store_true", help="only measure the --runs")
    p.add_argument("--tag", default=None)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)

    import torch

    from worldmodel.e2c import E2CConfig
    from worldmodel.e2c_oracle import OracleHandicap
    from worldmodel.evaluate import parse_overrides
    from worldmodel.provenance import machine, versions

    torch.set_num_threads(1)
    overrides = parse_overrides(args.set)
    config = E2CConfig.for_task(args.task, start=args.start, **overrides)
    for run in [*args.runs, *args.perception, *args.readout_cost]:
        if not (run / "run").is_dir():
            p.error(f"{run} is not an E2C run folder (no run/ inside); give the --out of `worldmodel e2c`")

    sweep = flaw_values(args.sweep, "--sweep") if args.sweep else DEFAULT_SWEEP
    together = {}
    for name, values in flaw_values(args.together, "--together").items():
        if len(values) != 1:
            p.error(f"--together {name}: give one value, got {values}")
        together[name] = values[0]
    if (together or args.perception or args.readout_cost) and not args.sweep:
        sweep = {}  # the combined, perception or read-out cost rows (and the plain oracle) only
    rows = []
    settings = [] if args.no_sweep else [("none", None)] + [
        (name, value) for name, values in sweep.items() for value in values]
    if together:
        settings.append(("together", ",".join(f"{k}={v}" for k, v in together.items())))
    settings += [("perception", str(run)) for run in args.perception]
    settings += [("readout_cost", str(run)) for run in args.readout_cost]
    for name, value in settings:
        handicap = (OracleHandicap(**together) if name == "together" else OracleHandicap(**{name: value})
                    if name in DEFAULT_SWEEP else OracleHandicap())
        t0 = time.time()
        if name == "readout_cost":  # not the oracle: the model itself, with the oracle's cost
            fitted = probe_frames(Path(value), args.probe_episodes, 16, seed=0)
            read = LinearReadout(fitted["latents"], fitted["targets"])
            cost_for = lambda goal, c, r=read: readout_cost(r, c.oracle_velocity_weight, c.action_weight, goal)  # noqa: E731
            summary = goal_time_summary(model_episodes(Path(value), fitted["model"], args.pairs, overrides, cost_for))
            row = {"flaw": name, "value": value, "handicap": None, **summary, "seconds": time.time() - t0}
        else:
            estimate_for, protocol = None, config
            if name == "perception":
                fitted = probe_frames(Path(value), args.probe_episodes, 16, seed=0)
                estimate_for = lambda env, f=fitted: LatentReadout(f["model"], f["latents"], f["targets"])  # noqa: E731
                # the env renders and steps as the run's model was trained to see it
                seen = fitted["config"]
                protocol = replace(config, image_size=seen.image_size, action_repeat=seen.action_repeat,
                                   camera=seen.camera)
            row = {"flaw": name, "value": value, "handicap": asdict(handicap),
                   **handicapped_protocol(protocol, handicap, args.pairs, estimate_for), "seconds": time.time() - t0}
        rows.append(row)
        print(f"{name:>15} {'' if value is None else value:>6}  {row['goal_time_percent_mean']:6.1f} ± "
              f"{row['goal_time_percent_stderr']:4.1f} %  (longest stay {row['longest_stay_percent_mean']:5.1f} %, "
              f"{row['seconds']:.0f} s)", flush=True)

    stem = "e2c_oracle_handicap" + (f"_{args.tag}" if args.tag else "")
    models = []
    for run in args.runs:
        m = model_state_error(run, args.probe_episodes, 16, seed=0, closed_loop=args.closed_loop,
                              protocol=overrides, figure=args.out / f"{stem}_{run.name}.png")
        models.append(m)
        balance = "n/a" if m["balance_percent"] is None else f"{m['balance_percent']:5.1f} %"
        print(f"{str(run):>40}  balance {balance}  angle RMSE linear "
              f"{m['linear']['angle_rmse']:.3f} / k-NN {m['knn']['angle_rmse']:.3f} rad, velocity "
              f"{m['linear']['velocity_rmse']:.2f} / {m['knn']['velocity_rmse']:.2f} rad/s "
              f"({m['frames']} frames); fall after {FALL_STEPS} steps {m['fall']['ratio_by_k'][-1]:.2f} × the real "
              f"one ({min(r[-1] for r in m['fall']['ratio']):.2f} to {max(r[-1] for r in m['fall']['ratio']):.2f} by start)",
              flush=True)
        if "closed_loop" in m:
            c = m["closed_loop"]
            print(f"{'':>40}  closed loop ({c['pairs']} pairs, {np.mean(c['goal_time_percent']):.1f} %): angle RMSE "
                  f"{c['linear']['angle_rmse']:.3f} / {c['knn']['angle_rmse']:.3f} rad (mean error "
                  f"{c['linear']['angle_mean_error']:+.3f}), velocity {c['linear']['velocity_rmse']:.2f} / "
                  f"{c['knn']['velocity_rmse']:.2f} rad/s ({c['linear']['steps']} steps)", flush=True)

    command = "python benchmarks/e2c_oracle_handicap.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out = args.out / f"{stem}.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    settings_now = {k: getattr(config, k) for k in ("horizon", "replan_every", "steps", "action_weight",
                                                    "oracle_velocity_weight", "planner", "planner_overrides")}
    if rows and previous.get("sweep") and previous.get("settings") != settings_now:
        p.error(f"{out} holds a sweep under other protocol settings ({previous.get('settings')}); "
                f"give this one its own --tag")
    result = {
        "task": args.task, "start": args.start, "pairs": args.pairs,
        "settings": settings_now if rows else previous.get("settings", settings_now),  # the sweep's protocol
        "sweep": merged_rows(previous.get("sweep", []), rows),
        "models": models or previous.get("models", []),
        # the commands that made each part: sweeps add rows to a file, a --no-sweep run replaces its models
        "commands": {"sweep": _listed(previous.get("commands", {}).get("sweep")) + ([command] if rows else []),
                     "models": command if models else previous.get("commands", {}).get("models")},
        "versions": versions(), "machine": machine(),
    }
    from worldmodel.atomic import atomic_write_json

    atomic_write_json(out, result)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
