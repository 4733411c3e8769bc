"""MPC evaluation: learned-model control against random actions and the true-simulator oracle.

Protocol (DESIGN.md section 6): each episode is a dm_control episode of 1000 simulator steps
(1000 // action_repeat agent steps, so a repeat that does not divide 1000 cuts it a little short);
the agent sees only images. A learned-model agent filters every new image into the latent with
the model's encoder, plans from there, applies the first action (the task's action repeat is
inside the env) and warm-starts the next plan from the shifted one. The oracle runs the *same
planner with the same settings* on the true simulator from the saved MuJoCo state, so
`oracle_ratio = learned return / oracle return`, both over the episodes the two share (the same
start states), says how much of the planner's reach the model keeps. Two settings cannot carry over:
the oracle has no learned value V(s_H) to add beyond the horizon, and no actor to draw
`policy_candidates` from (it plans without them). Where a model's V reaches further than the
horizon (the pendulum swing-up), the ratio can therefore exceed 1. Goal-region time is the E2C/PCC metric: the fraction of steps with |pole angle| under a
tolerance (π/6 pendulum, π/10 cart-pole).
"""
from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

import envs

# E2C / PCC goal regions (Levine et al. 2020, PCC, Appendix; Shu et al. 2020, PC3).
GOAL_TOLERANCE = {"pendulum": math.pi / 6, "cartpole": math.pi / 10}


def goal_tolerance(task: str) -> float | None:
    """The goal-region half-width in radians for a task, or None where no angle defines one."""
    return GOAL_TOLERANCE.get(envs.spec(task).domain)


def goal_region_stats(angles: np.ndarray, tolerance: float) -> dict[str, Any]:
    """One episode's pole angles [T+1] (the start first; it does not count) against the goal region
    |angle| < tolerance: `goal_time` (the fraction of steps in it, E2C/PCC/PC3's score), and what
    that score alone hides, `longest_stay` (the longest unbroken stretch in it, as a fraction of the
    steps) and `turns` (passes through ±π, the bottom for a pole). A pole swung or spun through the
    goal region scores goal time too: full torque held one way scores 23 % on dm_control's pendulum
    balance (benchmarks/e2c_floor.py). A held pole stays."""
    a = np.asarray(angles, dtype=np.float64)
    inside = np.abs(a[1:]) < tolerance
    edges = np.flatnonzero(np.diff(np.r_[0, inside.astype(np.int8), 0]))  # starts and ends of stays
    longest = int((edges[1::2] - edges[::2]).max()) if len(edges) else 0
    return {"goal_time": float(np.mean(inside)), "longest_stay": longest / max(len(inside), 1),
            "turns": int(np.sum(np.abs(np.diff(a)) > math.pi))}


@dataclass(frozen=True)
class EvalConfig:
    """Settings of one evaluation; the planner's own settings come from `planner_overrides`."""

    planner: str = "cem"
    planner_overrides: dict[str, Any] = field(default_factory=dict)
    horizon: int = 12  # PlaNet's planning horizon (Hafner et al. 2019, Table 3)
    episodes: int = 10  # DESIGN.md section 6: at least 10 episodes per number
    oracle_episodes: int | None = None  # None: as many as `episodes`; 0: skip the oracle
    random_episodes: int = 0  # episodes of uniform random actions, the floor to beat
    seed: int = 0
    max_steps: int | None = None  # environment steps per episode; None = the full episode
    device: str = "cpu"
    # speed knobs of the learned model's planning (WorldModel.planning_problem): bf16 autocast and
    # torch.compile of the step and reward (benchmarks/planner_speed.py measures both)
    planning_precision: str = "float32"
    compile_planning: bool = False
    # add the model's value head V(s_H) to the planned return when it has one (worldmodel.value);
    # False plans on the horizon's rewards alone, the ablation of the value on the same model
    terminal_value: bool = True
    # file stem under <run>/eval; None: the planner's name, marked when V is left out, so that
    # ablations of planner settings can be named apart instead of overwriting <planner>.json
    name: str | None = None

    @property
    def result_name(self) -> str:
        """File stem of this evaluation under <run>/eval (`name`, or one made from the planner)."""
        if self.name is not None:
            return self.name
        return self.planner + ("" if self.terminal_value else "_no_terminal_value")

    def __post_init__(self) -> None:
        from worldmodel.device import check_precision

        check_precision(self.planning_precision)
        if self.episodes < 1:
            raise ValueError(f"episodes must be >= 1, got {self.episodes}")
        if (self.oracle_episodes is not None and self.oracle_episodes < 0) or self.random_episodes < 0:
            raise ValueError(f"oracle_episodes and random_episodes must be >= 0 (0 skips them), got "
                             f"{self.oracle_episodes} and {self.random_episodes}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be None (the full episode) or >= 1, got {self.max_steps}")
        if self.horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {self.horizon}")
        if self.name is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.=-]*", self.name):
            raise ValueError(f"name {self.name!r} must be a file stem of letters, digits and _ . = -, "
                             "e.g. cem_policy50")


@dataclass
class EpisodeResult:
    """What one evaluation episode produced."""

    ret: float
    goal_time: float | None
    ms_per_action: float
    steps: int
    frames: list[np.ndarray] | None = None  # real frames [H, W, 3] uint8, when recorded
    predicted: list[np.ndarray] | None = None  # the model's reconstruction of each frame


class Agent(Protocol):
    """Anything that turns observations into actions over one episode."""

    def reset(self, obs: np.ndarray, env: Any) -> None: ...
    def act(self) -> np.ndarray: ...
    def observe(self, action: np.ndarray, obs: np.ndarray) -> None: ...


def image_to_tensor(obs: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 [H, W, 3] -> float [1, 3, H, W] in [-0.5, 0.5], the model's input convention."""
    if obs.dtype != np.uint8 or obs.ndim != 3:
        raise ValueError(f"expected a uint8 image [H, W, 3], got {obs.dtype} {obs.shape}")
    x = torch.from_numpy(np.array(obs, copy=True)).to(device)  # a copy: frames from an .npz may be read-only
    return (x.permute(2, 0, 1).float() / 255.0 - 0.5).unsqueeze(0)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """float [3, H, W] (or a grayscale model's [1, H, W]) in [-0.5, 0.5] -> uint8 [H, W, 3]."""
    x = ((x.detach().float().cpu() + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return x.expand(3, *x.shape[1:]).permute(1, 2, 0).numpy()


class RandomAgent:
    """Uniform random actions in the action box: the floor every controller must beat."""

    def __init__(self, action_dim: int, seed: int) -> None:
        self.action_dim = action_dim
        self.rng = np.random.default_rng(seed)

    def reset(self, obs: np.ndarray, env: Any) -> None:
        pass

    def act(self) -> np.ndarray:
        return self.rng.uniform(-1.0, 1.0, self.action_dim).astype(np.float32)

    def observe(self, action: np.ndarray, obs: np.ndarray) -> None:
        pass


class LatentMPCAgent:
    """MPC in the learned latent space: filter the image, plan from its latent, act, repeat."""

    def __init__(self, model: Any, planner: Any, horizon: int, *, seed: int, device: str = "cpu",
                 objective: Any = "reward", execute: int = 1, record_predictions: bool = False,
                 precision: str = "float32", compile: bool = False, terminal_value: bool = True) -> None:
        """record_predictions: keep `predicted`, the frames the model expected: the reconstruction
        of the first image, then at each step the one-step prediction under the chosen action
        (aligned with the real frames of `run_episode(record_frames=True)`).
        precision, compile: how the planner's rollouts run; terminal_value: whether V(s_H) of a
        model with a value head joins the planned return (`WorldModel.planning_problem`)."""
        import planners

        self.model, self.planner, self.horizon, self.device = model, planner, horizon, device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.problem = model.planning_problem(None, objective, horizon, precision=precision,
                                              compile=compile, terminal_value=terminal_value)
        self.mpc = planners.MPC(planner, self.problem, execute=execute, generator=self.generator)
        self.record_predictions = record_predictions
        self.predicted: list[np.ndarray] = []
        self.state = None

    @torch.inference_mode()
    def reset(self, obs: np.ndarray, env: Any) -> None:
        self.mpc.reset()
        self.predicted = []
        self.state = self.model.filter_step(None, None, image_to_tensor(obs, self.device))
        self._record()

    @torch.inference_mode()
    def act(self) -> np.ndarray:
        start = self.model.to_vector(self.state)[0]  # [S]
        # iLQR differentiates the model by leaving inference mode itself (planners.rollout's
        # linearize / quadratize); enable_grad alone would do nothing under inference_mode
        action = self.mpc.act(start)
        if self.record_predictions:  # what the model expects to see after this action
            a = action.detach().to(self.model.to_vector(self.state).dtype).reshape(1, 1, -1)
            self._record(self.model.imagine(self.state, a, sample=False))
        return action.detach().float().cpu().numpy()

    @torch.inference_mode()
    def observe(self, action: np.ndarray, obs: np.ndarray) -> None:
        a = torch.as_tensor(action, dtype=torch.float32, device=self.device).unsqueeze(0)
        self.state = self.model.filter_step(self.state, a, image_to_tensor(obs, self.device))

    def _record(self, seq: Any = None) -> None:
        """Append a decoded frame: the filtered state's (at reset) or a one-step prediction's."""
        if self.record_predictions:
            from worldmodel.transitions import LatentSeq

            seq = LatentSeq.stack([self.state]) if seq is None else seq
            frame = self.model.decode(seq)  # [1, 1, 3, H, W]
            self.predicted.append(tensor_to_image(frame[0, 0]))


class OracleAgent:
    """The same planner on the true simulator: plans from the env's saved MuJoCo state."""

    def __init__(self, planner: Any, horizon: int, *, seed: int) -> None:
        self.planner, self.horizon = planner, horizon
        self.generator = torch.Generator().manual_seed(seed)
        self.env = None
        self.dynamics = None  # the SimulatorDynamics of the current episode
        self.mpc = None

    def reset(self, obs: np.ndarray, env: Any) -> None:
        import planners
        from worldmodel.sim_problem import SimulatorDynamics, dynamics_problem

        self.close()  # the previous episode's rollout thread pool, if any
        self.env = env
        self.dynamics = SimulatorDynamics(env)
        self.mpc = planners.MPC(self.planner, dynamics_problem(self.dynamics, self.horizon),
                                generator=self.generator)

    def act(self) -> np.ndarray:
        from worldmodel.sim_problem import oracle_state

        action = self.mpc.act(oracle_state(self.env))
        return action.detach().float().cpu().numpy()

    def observe(self, action: np.ndarray, obs: np.ndarray) -> None:
        pass

    def close(self) -> None:
        """Stop the simulator's rollout thread pool."""
        if self.dynamics is not None:
            self.dynamics.close()
            self.dynamics, self.mpc = None, None


def run_episode(env: Any, agent: Agent, seed: int, *, max_steps: int | None = None,
                record_frames: bool = False) -> EpisodeResult:
    """One seeded episode of `agent` in `env`; returns its return, goal time and timing."""
    obs, info = env.reset(seed=seed)
    agent.reset(obs, env)
    tol = goal_tolerance(env.name)
    total, in_goal, steps, plan_s = 0.0, 0, 0, 0.0
    frames = [obs] if record_frames else None
    limit = env.max_steps if max_steps is None else min(max_steps, env.max_steps)
    for _ in range(limit):
        t0 = time.perf_counter()
        action = agent.act()
        plan_s += time.perf_counter() - t0
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        steps += 1
        if tol is not None and abs(float(info["angle"])) < tol:
            in_goal += 1
        if record_frames:
            frames.append(obs)
        if terminated or truncated:
            break
        agent.observe(action, obs)
    return EpisodeResult(ret=total, goal_time=None if tol is None else in_goal / steps,
                         ms_per_action=1000.0 * plan_s / max(steps, 1), steps=steps, frames=frames,
                         predicted=getattr(agent, "predicted", None) or None)


def mean_stderr(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2:
        return float(x.mean()), 0.0
    return float(x.mean()), float(x.std(ddof=1) / math.sqrt(len(x)))


def summarise(results: list[EpisodeResult]) -> dict[str, Any]:
    """Per-episode returns and their mean ± standard error, goal time and planner ms/action."""
    returns = [r.ret for r in results]
    mean, stderr = mean_stderr(returns)
    goal = [r.goal_time for r in results if r.goal_time is not None]
    return {
        "returns": returns,
        "return_mean": mean,
        "return_stderr": stderr,
        "goal_time": float(np.mean(goal)) if goal else None,
        "ms_per_action": float(np.median([r.ms_per_action for r in results])),
        "steps_per_episode": int(np.median([r.steps for r in results])),
    }
