"""`worldmodel e2c`: the Embed-to-Control workflow and the PCC/PC3 evaluation protocol.

E2C (Watter et al. 2015) learns a locally-linear latent space from images and controls it with
iLQR towards the latent of a goal image, under the cost (z − z_goal)ᵀQ(z − z_goal) + aᵀRa.
Here the model is our sequence VAE with the `locally_linear` transition (closed-form Jacobians
for iLQR). The protocol follows PCC (Levine et al. 2020) and PC3 (Shu et al. 2020): 10
start/goal pairs per model; pendulum swing-up starts hanging, angle uniform in [0.9π, 0.95π]
(0 = upright), the goal is the upright image; balance starts upright; the score is the % of
steps with |angle| inside the goal region (π/6 pendulum, π/10 cart-pole).
Published values (PC3 paper, Table 1, % time in goal, mean over models / best model):
PC3 swing-up 58.4 / 84, balance 99.1 / 100, cart-pole 96.3 / 97.8; PCC swing-up 26.4 / 66.9.
"""
from __future__ import annotations

import json
import math
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from envs.rollout import pose_state
from worldmodel.atomic import atomic_write_json
from worldmodel.e2c_config import GOALS, TASK_DEFAULTS, E2CConfig, protocol_domain  # noqa: F401  (re-exported)
from worldmodel.e2c_oracle import oracle_goal_episode

PUBLISHED = {  # PC3 paper (Shu et al. 2020), Table 1: % time in goal region, (all models, best model)
    "pendulum-swingup": {"PC3": (58.4, 84.0), "PCC": (26.4, 66.9)},
    "pendulum-balance": {"PC3": (99.1, 100.0)},
    "cartpole-balance": {"PC3": (96.3, 97.8)},
}
PUBLISHED["pendulum-swingup_pc3"] = PUBLISHED["pendulum-swingup"]  # their own motor (envs/registry.py)


def published_for(task: str, start: str) -> dict[str, tuple[float, float]]:
    """The PCC/PC3 numbers this protocol compares with: the domain's balance row for a balance
    start, the task's own row for a swing-up; none for a swing-up start on a balance task."""
    key = f"{task.split('-')[0]}-balance" if start == "balance" else task if "swingup" in task else None
    return PUBLISHED.get(key, {})


def make_env(config: E2CConfig) -> Any:
    """The protocol's environment: `config.task` at its image size, action repeat and camera."""
    return envs.make(config.task, image_size=config.image_size, action_repeat=config.action_repeat,
                     camera=config.camera)


def make_planner(config: E2CConfig) -> Any:
    """The protocol's planner: `config.planner` with `planner_overrides` (iLQR: 20 iterations)."""
    import planners

    if config.feedback and config.planner != "ilqr":
        raise ValueError(f"feedback between replans needs planner 'ilqr' (its gains), got "
                         f"{config.planner!r}; set feedback=false or planner=ilqr")
    defaults = {"iterations": 20, "feedback": config.feedback} if config.planner == "ilqr" else {}
    return planners.make(config.planner, **{**defaults, **config.planner_overrides})


@torch.no_grad()
def goal_latent_from_image(model: Any, image: np.ndarray, *, frames: int = 3) -> torch.Tensor:
    """The filtered latent [S] of a goal image (uint8 [H, W, 3]) seen `frames` times at rest.

    Repeating the still image with zero actions lets the recurrent encoder settle on a latent
    that encodes both the pose and zero velocity, as E2C's stacked goal frames do.
    """
    from worldmodel.control import image_to_tensor

    expected = tuple(model.cfg.obs_shape[1:]) + (model.cfg.obs_shape[0],)
    if tuple(np.shape(image)) != expected:
        raise ValueError(f"goal image has shape {tuple(np.shape(image))}, but the model was trained "
                         f"on images of shape {expected}; render the goal at the training size")
    x = image_to_tensor(np.asarray(image))
    zero = torch.zeros(1, model.cfg.action_dim)
    state = model.filter_step(None, None, x)
    for _ in range(frames - 1):
        state = model.filter_step(state, zero, x)
    return model.to_vector(state)[0]


def goal_latent(model: Any, env: Any, *, frames: int = 3) -> torch.Tensor:
    """The latent [S] of `env`'s upright pose at rest (E2C's goal)."""
    obs, _ = env.reset(sim_state=pose_state(env, 0.0))
    return goal_latent_from_image(model, obs, frames=frames)


def protocol_goal(model: Any, env: Any, config: E2CConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """The goal latent [S] of `config.goal`, and for "equilibrium" how far it moved and how much
    the model's one-step drift under zero action shrank (`equilibrium_goal`'s info)."""
    from worldmodel.equilibrium import drift, equilibrium_goal
    from worldmodel.model import GoalObjective

    image_goal = goal_latent(model, env)
    step = model.planning_problem(None, GoalObjective(goal=image_goal), 1).step
    rest = torch.zeros(env.action_dim)
    if config.goal == "image":
        return image_goal, {"drift": drift(step, image_goal, rest)}
    goal, info = equilibrium_goal(step, image_goal, rest)
    return goal, {"drift": info["drift_after"], "image_goal_drift": info["drift_before"],
                  "distance_from_image_goal": info["distance"]}


def start_states(env: Any, config: E2CConfig) -> list[np.ndarray]:
    """The protocol's start states: `pairs` of them, seeded."""
    rng = np.random.default_rng(config.seed)
    if config.start == "swingup":
        angles = rng.uniform(0.9 * math.pi, 0.95 * math.pi, config.pairs) * rng.choice([-1, 1], config.pairs)
    elif config.start == "balance":
        angles = rng.uniform(-0.05, 0.05, config.pairs)  # small perturbation of upright
    else:
        raise ValueError(f"start must be 'swingup' or 'balance', got {config.start!r}")
    return [pose_state(env, float(a), seed=config.seed + i) for i, a in enumerate(angles)]


def goal_episode(model: Any, env: Any, planner: Any, goal: torch.Tensor, sim_state: np.ndarray,
                 config: E2CConfig, seed: int, *, record: bool = False,
                 objective: Any = None) -> dict[str, Any]:
    """One iLQR-MPC episode towards `goal` from `sim_state`: % time in goal, the smallest |angle|
    reached (how high a failed swing-up got), and with `record` every step's angle, true state
    (qpos, qvel) [T+1, S'], the filtered latent the planner started from [T+1, S] and the
    action taken [T, A].
    `objective` (a GoalObjective) replaces the protocol's cost, goal_weight·|s − goal|² + R|a|²
    (a diagnostic: the same model and filter planning with another cost)."""
    import planners
    from worldmodel.control import goal_region_stats, goal_tolerance, image_to_tensor
    from worldmodel.model import GoalObjective

    s = model.state_size
    if objective is None:
        objective = GoalObjective(goal=goal, Q=config.goal_weight * torch.ones(s),
                                  R=config.action_weight * torch.ones(env.action_dim))
    problem = model.planning_problem(None, objective, config.horizon)
    mpc = planners.MPC(planner, problem, execute=config.replan_every,
                       generator=torch.Generator().manual_seed(seed), feedback=config.feedback)
    obs, info = env.reset(sim_state=sim_state)
    with torch.no_grad():
        state = model.filter_step(None, None, image_to_tensor(obs))
    tol = goal_tolerance(env.name)
    angles, plan_s = [float(info["angle"])], 0.0
    states, latents, actions = [info["state"]], [model.to_vector(state)[0].detach()], []
    plans, infinite, last = 0, 0, None
    for _ in range(config.steps):
        t0 = time.perf_counter()
        action = mpc.act(model.to_vector(state)[0].detach())
        plan_s += time.perf_counter() - t0
        if mpc.last_result is not last:  # a new plan: was any finite-cost trajectory found?
            last, plans = mpc.last_result, plans + 1
            infinite += not math.isfinite(last.cost)
        a = action.detach().float().numpy()
        obs, _, _, truncated, info = env.step(a)
        angles.append(float(info["angle"]))
        with torch.no_grad():
            state = model.filter_step(state, torch.as_tensor(a).unsqueeze(0), image_to_tensor(obs))
        if record:
            states.append(info["state"])
            latents.append(model.to_vector(state)[0].detach())
            actions.append(a)
        if truncated:
            break
    a = np.abs(np.asarray(angles[1:]))
    out = {**goal_region_stats(np.asarray(angles), tol), "final_angle": float(angles[-1]),
           "min_abs_angle": float(a.min()), "ms_per_action": 1000 * plan_s / len(a),
           # plans whose every imagined rollout diverged (the learned dynamics blew up)
           "plans": plans, "plans_with_infinite_cost": infinite}
    if record:
        out.update(angles=np.asarray(angles), states=np.asarray(states),
                   latents=torch.stack(latents).float().numpy(), actions=np.asarray(actions))
    return out


def result_path(out: str | Path, start: str, tag: str | None = None) -> Path:
    """Where `run_e2c` writes its result: `out/e2c_<start>.json`, or `out/e2c_<start>_<tag>.json`
    so that a second protocol on the same trained folder (another horizon, another length) keeps
    the first one's file."""
    if tag is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", tag):
        raise ValueError(f"result tag {tag!r} is not a plain file-name part: use letters, digits, "
                         "'_', '-' and '.', starting with a letter or digit (e.g. 20s or h100)")
    return Path(out) / (f"e2c_{start}.json" if tag is None else f"e2c_{start}_{tag}.json")


def stored_run(out: str | Path, **overrides: Any) -> tuple[E2CConfig, dict[str, Any]]:
    """The settings (plus `overrides`) and result of a finished `run_e2c` folder, for diagnostics
    that reload its model: from its untagged swing-up result, else its balance result, else the
    first tagged one by name (`--tag`; its protocol settings then come with it, as the untagged
    run's do: override what the diagnostic needs)."""
    found = [p for p in (result_path(out, start) for start in ("swingup", "balance")) if p.is_file()]
    found += sorted(Path(out).glob("e2c_swingup_*.json")) + sorted(Path(out).glob("e2c_balance_*.json"))
    if not found:
        raise FileNotFoundError(f"{out} holds no e2c_swingup.json or e2c_balance.json (nor a tagged "
                                f"e2c_<start>_<tag>.json); run `worldmodel e2c --out {out}` first")
    result = json.loads(found[0].read_text())
    stored = {k: v for k, v in result["settings"].items() if k in E2CConfig.__dataclass_fields__}
    return E2CConfig(**{**stored, **overrides}), result


def run_e2c(config: E2CConfig, out: str | Path, *, progress: bool = True,
            command: str | None = None, tag: str | None = None) -> dict[str, Any]:
    """Collect, train a locally-linear model, run the start/goal protocol; writes `result_path(out,
    start, tag)` (a second start on the same folder reuses its data and model). `command`, the
    command line that reproduces the run, is stored with the result."""
    from tqdm.auto import tqdm

    from worldmodel import ModelConfig
    from worldmodel.checkpoint import load_model
    from worldmodel.provenance import data_fingerprint, machine, versions
    from worldmodel.collect import top_up
    from worldmodel.goal_cost import goal_cost_view
    from worldmodel.train import TrainConfig, train
    from worldmodel.visualize import render_run_pictures

    protocol_domain(config.task)
    planner = make_planner(config)  # an unknown planner or setting fails here, before training
    destination = result_path(out, config.start, tag)  # so does a bad tag
    out = Path(out)
    t0 = time.time()
    recording = dict(workers=config.workers, seed=config.seed, image_size=config.image_size,
                     action_repeat=config.action_repeat, episode_steps=config.episode_steps,
                     camera=config.camera, progress=progress)
    data = top_up(config.task, config.episodes, out / "data", **recording, **config.start_pose())
    # the extra episodes after the random ones, each set from its own policy and starts, in order
    first = config.episodes
    for count, extra in ((config.upright_episodes,
                          dict(policy=config.upright_policy,
                               start_angles=(-config.upright_angle, config.upright_angle))),
                         (config.swingup_episodes, dict(policy="swingup"))):
        if count:
            data = top_up(config.task, first + count, out / "data", first=first, **recording, **extra)
        first += count
    model_config = ModelConfig.small(transition="locally_linear", stoch_size=config.latent_size,
                                     obs_std=config.obs_std, free_nats=config.free_nats,
                                     kl_balance=config.kl_balance,
                                     overshooting_distance=config.overshooting_distance,
                                     curvature_scale=config.curvature_scale,
                                     curvature_noise=config.curvature_noise,
                                     predictive_coding_scale=config.predictive_coding_scale,
                                     grayscale=config.grayscale, frame_stack=config.frame_stack,
                                     posterior=config.posterior,
                                     reconstruction_scale=config.reconstruction_scale,
                                     posterior_std=config.posterior_std, center_scale=config.center_scale,
                                     obs_shape=(3, config.image_size, config.image_size),
                                     action_dim=data.manifest["action_dim"])
    train_config = TrainConfig(steps=config.train_steps, batch_size=config.batch_size,
                               chunk_length=config.chunk_length, seed=config.seed, device="cpu",
                               checkpoint_every=max(config.train_steps // 8, 1), snapshots=True)
    run_dir = out / "run"
    train(model_config, train_config, out / "data", run_dir,
          resume=(run_dir / "checkpoint.pt").exists(), progress=progress)
    model, _, _ = load_model(run_dir)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    # held-out episodes from the training distribution: the latent geometry and its R²
    # (recorded as the training data are, with their own seeds; a few short episodes: no worker pool)
    heldout = top_up(config.task, config.heldout_episodes, out / "heldout",
                     **{**recording, "seed": config.seed + 10_000, "workers": 1}, **config.start_pose())
    pictures = render_run_pictures(model, run_dir, heldout, out / "pictures", task=config.task)
    env = make_env(config)
    goal, goal_info = protocol_goal(model, env, config)
    starts = start_states(env, config)

    def pairs(states: list[np.ndarray], who: str) -> Any:  # a bar per phase: minutes per pair
        return tqdm(list(enumerate(states)), desc=f"{config.start} on {who}", unit="pair",
                    disable=not progress)

    episodes = [goal_episode(model, env, planner, goal, s, config, seed=config.seed + i)
                for i, s in pairs(starts, "the learned model")]
    oracle = [oracle_goal_episode(env, planner, s, config, seed=config.seed + i, record=i == 0)
              for i, s in pairs(starts[:config.oracle_pairs], "the true simulator (oracle)")]
    cost_picture = out / "pictures" / ("goal_cost.png" if tag is None else f"goal_cost_{tag}.png")
    cost_view = goal_cost_view(model, heldout, goal, oracle[0] if oracle else None, config.task,
                               cost_picture, env=env)
    env.close()
    pictures["files"]["goal_cost"] = str(cost_picture)
    goal_times = [100 * e["goal_time"] for e in episodes]
    oracle_times = [100 * e["goal_time"] for e in oracle]
    result = {
        "task": config.task, "start": config.start, "pairs": config.pairs,
        "goal_time_percent_mean": float(np.mean(goal_times)),
        "goal_time_percent_stderr": float(np.std(goal_times, ddof=1) / math.sqrt(len(goal_times)))
        if len(goal_times) > 1 else 0.0,
        "goal_time_percent": goal_times, "episodes": episodes,
        # the longest unbroken stay in the goal region and the passes through the bottom, episode means:
        # a spun pole scores goal time too (control.goal_region_stats)
        "longest_stay_percent_mean": float(np.mean([100 * e["longest_stay"] for e in episodes])),
        "turns_mean": float(np.mean([e["turns"] for e in episodes])),
        "oracle_goal_time_percent_mean": float(np.mean(oracle_times)) if oracle else None,
        "oracle_goal_time_percent": oracle_times,
        "published": published_for(config.task, config.start),
        "goal": {"kind": config.goal, **goal_info},  # drift: ‖f(z_goal, 0) − z_goal‖ in the model
        "latent_r2": {"linear": pictures["latent_r2"], "knn": pictures["latent_r2_knn"]},
        **cost_view,
        "pictures": pictures["files"],
        "settings": {k: getattr(config, k) for k in config.__dataclass_fields__},
        "wall_seconds": time.time() - t0,
        # the same code, seed and data scored 4.8 % on one thread and 3.8 on two (docs/e2c_results.md)
        "versions": versions(), "machine": machine(),
        "data_fingerprint": {"train": data_fingerprint(data.episodes),
                             "heldout": data_fingerprint(heldout.episodes)},
        "command": command,
    }
    atomic_write_json(destination, result)
    return result
