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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from envs.rollout import pose_state
from worldmodel.atomic import atomic_write_json
from worldmodel.e2c_oracle import oracle_goal_episode

PUBLISHED = {  # PC3 paper (Shu et al. 2020), Table 1: % time in goal region, (all models, best model)
    "pendulum-swingup": {"PC3": (58.4, 84.0), "PCC": (26.4, 66.9)},
    "pendulum-balance": {"PC3": (99.1, 100.0)},
    "cartpole-balance": {"PC3": (96.3, 97.8)},
}
PUBLISHED["pendulum-swingup_pc3"] = PUBLISHED["pendulum-swingup"]  # their own motor (envs/registry.py)


GOALS = ("image", "equilibrium")  # E2CConfig.goal


@dataclass(frozen=True)
class E2CConfig:
    """Data, model and protocol settings of one E2C-style run."""

    task: str = "pendulum-swingup"
    image_size: int = 48  # E2C's pendulum images are 48x48 (Watter et al. 2015, Sec. 5)
    # random-action training episodes, each this short and from the task's random start (for
    # the pendulum a uniform angle): near-uniform poses. 500 x 16 gave a better latent than
    # 200 x 40 (held-out R² 0.879 / 0.943 vs 0.839 / 0.971, balance 5.0 vs 3.5 %; README)
    episodes: int = 500
    episode_steps: int = 16
    heldout_episodes: int = 20  # for the latent geometry and its R², from the same distribution
    # extra random-action episodes (after the `episodes`) that start at rest with the pole at an
    # angle uniform in ±upright_angle: random starts rarely pass the upright pose slowly, and the
    # 10 000-update long-episode model learned the action's effect there with the wrong sign
    # (README). 0 = none (E2C's data: random states only)
    upright_episodes: int = 0
    upright_angle: float = math.pi / 6  # the pendulum's goal region
    # E2C, PCC and PC3 sample training states uniformly over the pole's angle and velocity.
    # A number v: every training and held-out episode starts at an angle uniform in [-π, π) and a
    # pole velocity uniform in [-v, v] rad/s. None: the task's own random start, at rest. On the
    # pendulum v = π balanced worse than None (7.2 vs 16.0 % over 3 seeds of None; README).
    start_velocity: float | None = None
    # with start_velocity: the start angle is uniform in [-start_angle, start_angle] instead
    # (π: every angle). PC3's cart-pole data keep the pole within ±π/10 of upright, turning at up
    # to 2π rad/s (CartPoleMDP.sample_random_state in VinAIResearch/PCC-pytorch), so the model
    # never sees the pole fallen: start_angle=0.31416, start_velocity=6.28319.
    start_angle: float = math.pi
    # simulator steps per env step (None: the task's, 4 for the pendulum, 8 for the cart-pole).
    # PCC/PC3 act every 0.02 s, i.e. 1 on dm_control's pendulum; horizon, replan_every, steps and
    # episode_steps count env steps, so a finer repeat needs them scaled to keep their durations.
    action_repeat: int | None = None
    train_steps: int = 3000
    batch_size: int = 32
    chunk_length: int = 12
    latent_size: int = 8
    # E2C's observation, optional here (ModelConfig.grayscale / frame_stack): gray frames, and the
    # encoder fed each frame with the one before it (frame_stack=2). The defaults keep RGB single
    # frames: the recurrent encoder already sees the history that a stacked frame adds.
    grayscale: bool = False
    frame_stack: int = 1
    # PC3's model (ModelConfig.posterior / reconstruction_scale): "frame" encodes each (stacked) frame
    # on its own; reconstruction_scale=0 drops the decoder, with predictive_coding_scale > 0 in its place.
    posterior: str = "filter"
    reconstruction_scale: float = 1.0
    # PC3's deterministic encoder with a fixed latent noise, and its centring (ModelConfig's); 0 = off
    posterior_std: float = 0.0
    center_scale: float = 0.0
    # std of p(o_t | z_t). With PlaNet's unit variance the thin pole (a few dozen of 48×48 pixels)
    # is worth ~5 nats and the model never draws it (reconstruction error flat over 3000 updates,
    # measured); 0.1 makes it worth ~500 and it is learned. E2C used a Bernoulli decoder, as sharp.
    obs_std: float = 0.1
    # KL settings of the ELBO (ModelConfig's). iLQR plans 25 steps open loop through the
    # dynamics, and latent overshooting (PlaNet, Sec. 3) trains them on multi-step predictions.
    # Balance, seed 0: 21.0 ± 3.6 % and held-out R² 0.914 / 0.957 with these three settings,
    # 5.0 ± 0.9 % and 0.879 / 0.943 with PlaNet's 3 free nats and neither of the other two,
    # 6.2 ± 1.1 % with free nats 0 and KL balancing but no overshooting; seeds 1 and 2 of
    # these defaults: 10.0 ± 1.4 % and 17.1 ± 4.2 % (README).
    free_nats: float = 0.0
    kl_balance: float | None = 0.8  # DreamerV2's alpha
    overshooting_distance: int = 4
    # PCC's curvature loss with PC3's amortised Jacobian (ModelConfig.curvature_scale / _noise):
    # asks the dynamics to be as linear near the data as the (A, B) that iLQR plans with. 0 = off.
    curvature_scale: float = 0.0
    curvature_noise: float = 0.1
    # PC3's predictive-coding (InfoNCE) term beside the bound (ModelConfig.predictive_coding_scale). 0 = off.
    predictive_coding_scale: float = 0.0
    pairs: int = 10  # PCC/PC3: 10 start/goal pairs per model
    # E2C/PCC/PC3 plan with iLQR (20 iterations here); any planners.names() entry works, with
    # its settings in planner_overrides. The oracle uses the same planner.
    planner: str = "ilqr"
    planner_overrides: dict[str, Any] = field(default_factory=dict)
    start: str = "swingup"  # "swingup": hanging, angle ~ U[0.9π, 0.95π]; "balance": upright
    horizon: int = 25  # iLQR horizon in env steps (PC3 uses 100 steps of a 4x finer pendulum)
    replan_every: int = 5  # apply this many actions of each plan (PC3: 10 at their rate)
    # between replans, act u_t + K_t (z_t − z̄_t) with the iLQR plan's own feedback gains on the
    # filtered latent, instead of the open-loop u_t (needs planner "ilqr"; not in PCC/PC3's protocol)
    feedback: bool = False
    steps: int = 250  # env steps per evaluation episode: dm_control's full 20 s episode
    # "image": E2C's goal, the latent of the upright image at rest. "equilibrium": the latent near
    # it that the learned dynamics hold still under zero action (worldmodel.equilibrium): trained
    # on episodes that only ever fall away from upright, the model drifts from the image's latent.
    # It did not change balance on the upright-data model (32.2 vs 32.9 %, README); not in PCC/PC3.
    goal: str = "image"
    goal_weight: float = 1.0  # Q = goal_weight·I
    action_weight: float = 0.01  # R = action_weight·I
    # The oracle: the same iLQR MPC on the true simulator (finite-difference Jacobians) with the
    # cost θ² + oracle_velocity_weight·θ'² + R·a² on the true (wrapped) pole angle: the
    # protocol's ceiling on this task. 0 skips it.
    oracle_pairs: int = 10
    oracle_velocity_weight: float = 0.01
    seed: int = 0
    workers: int = 2

    def __post_init__(self) -> None:
        if self.goal not in GOALS:
            raise ValueError(f"goal must be one of {GOALS}, got {self.goal!r}")
        if self.start_velocity is not None and not self.start_velocity >= 0:
            raise ValueError(f"start_velocity must be None (the task's start, at rest) or a speed "
                             f">= 0 in rad/s, got {self.start_velocity!r}")
        if not 0 < self.start_angle <= math.pi:
            raise ValueError(f"start_angle must be in (0, π], the half-width of the start angle's "
                             f"range in rad, got {self.start_angle!r}")
        if self.start_angle != math.pi and self.start_velocity is None:
            raise ValueError(f"start_angle={self.start_angle!r} needs start_velocity (a posed start "
                             f"sets both; start_velocity=0 starts at rest)")

    def start_pose(self) -> dict[str, Any]:
        """`collect`'s start options for the training and held-out episodes."""
        if self.start_velocity is None:
            return {}
        v = float(self.start_velocity)
        a = float(self.start_angle)
        return {"start_angles": (-a, a), "start_velocities": (-v, v)}

    @classmethod
    def quick(cls, **overrides: Any) -> "E2CConfig":
        return replace(cls(), **{**_QUICK, **overrides})

    @classmethod
    def for_task(cls, task: str, *, quick: bool = False, **overrides: Any) -> "E2CConfig":
        """The protocol's settings for `task`'s domain (`TASK_DEFAULTS`), then `quick`'s tiny
        ones if asked, then `overrides`."""
        settings = {**TASK_DEFAULTS[protocol_domain(task)], **(_QUICK if quick else {}), **overrides}
        return replace(cls(), task=task, **settings)


_QUICK = dict(episodes=4, episode_steps=20, heldout_episodes=2, oracle_pairs=1, train_steps=30,
              batch_size=8, pairs=2, steps=10, horizon=5, replan_every=5, workers=1)

# Per-domain protocol settings over E2CConfig's (pendulum) defaults. Cart-pole: 80x80 images as
# in E2C (Watter et al. 2015, Sec. 5.3), a replan every 5 steps as in PCC/PC3, and the full
# dm_control episode of 125 environment steps (10 s at action repeat 8). PCC/PC3's horizon of 50
# steps is for their own, finer-stepped cart-pole: here 50 steps are 4 s of 0.08 s held actions,
# and iLQR on the true simulator then held the pole only 77.5 % of 40 steps from upright (50
# iterations), against 100 % with horizon 10 or 20 (20 iterations; measured, seed 0).
TASK_DEFAULTS: dict[str, dict[str, Any]] = {
    "pendulum": {},
    "cartpole": dict(image_size=80, horizon=20, replan_every=5, steps=125),
}


def protocol_domain(task: str) -> str:
    """`task`'s domain, a key of TASK_DEFAULTS; ValueError for a task without a pole."""
    domain = envs.spec(task).domain
    if domain not in TASK_DEFAULTS:
        raise ValueError(f"the E2C protocol needs a pole to swing up or balance; task {task!r} "
                         f"has none (domains with one: {', '.join(TASK_DEFAULTS)})")
    return domain


def make_env(config: E2CConfig) -> Any:
    """The protocol's environment: `config.task` at its image size and action repeat."""
    return envs.make(config.task, image_size=config.image_size, action_repeat=config.action_repeat)


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
                 config: E2CConfig, seed: int, *, record: bool = False) -> dict[str, Any]:
    """One iLQR-MPC episode towards `goal` from `sim_state`: % time in goal, the smallest |angle|
    reached (how high a failed swing-up got), and with `record` every step's angle, true state
    (qpos, qvel) [T+1, S'] and the filtered latent the planner started from [T+1, S]."""
    import planners
    from worldmodel.control import goal_region_stats, goal_tolerance, image_to_tensor
    from worldmodel.model import GoalObjective

    s = model.state_size
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
    states, latents = [info["state"]], [model.to_vector(state)[0].detach()]
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
        if truncated:
            break
    a = np.abs(np.asarray(angles[1:]))
    out = {**goal_region_stats(np.asarray(angles), tol), "final_angle": float(angles[-1]),
           "min_abs_angle": float(a.min()), "ms_per_action": 1000 * plan_s / len(a),
           # plans whose every imagined rollout diverged (the learned dynamics blew up)
           "plans": plans, "plans_with_infinite_cost": infinite}
    if record:
        out.update(angles=np.asarray(angles), states=np.asarray(states),
                   latents=torch.stack(latents).float().numpy())
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
    """The settings (plus `overrides`) and result of a finished `run_e2c` folder, from its untagged
    swing-up result or else its balance result, for diagnostics that reload its model."""
    found = [p for p in (result_path(out, start) for start in ("swingup", "balance")) if p.is_file()]
    if not found:
        raise FileNotFoundError(f"{out} holds no e2c_swingup.json or e2c_balance.json; run "
                                f"`worldmodel e2c --out {out}` first")
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
    data = top_up(config.task, config.episodes, out / "data", workers=config.workers,
                  seed=config.seed, image_size=config.image_size, action_repeat=config.action_repeat,
                  episode_steps=config.episode_steps, progress=progress, **config.start_pose())
    if config.upright_episodes:
        data = top_up(config.task, config.episodes + config.upright_episodes, out / "data",
                      first=config.episodes, workers=config.workers, seed=config.seed, image_size=config.image_size,
                      action_repeat=config.action_repeat, episode_steps=config.episode_steps,
                      progress=progress,
                      start_angles=(-config.upright_angle, config.upright_angle))
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
    heldout = top_up(config.task, config.heldout_episodes, out / "heldout", seed=config.seed + 10_000,
                     image_size=config.image_size, action_repeat=config.action_repeat,
                     episode_steps=config.episode_steps,
                     progress=progress, **config.start_pose())
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
    key = config.task if config.start == "swingup" else f"{config.task.split('-')[0]}-balance"
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
        "published": PUBLISHED.get(key, {}),
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
