"""The E2C protocol's ceiling: the same MPC on the true simulator, with a quadratic cost on the
true pole angle and velocity instead of the latent goal cost (`worldmodel e2c`'s oracle)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np
import torch

if TYPE_CHECKING:
    from worldmodel.e2c_config import E2CConfig


@dataclass(frozen=True)
class OracleHandicap:
    """Flaws given to the oracle on purpose, each the size of one a learned model has: how well
    must a model know the action's effect and the pole's state for the protocol's planner to
    hold the pole? The env itself is untouched; only what the planner is told changes.

    actuator_gain: the planner's simulator has its actuators' gear times this (a learned model's
        action effect at upright measured 0.16-0.99 of the real one, docs/e2c_results.md).
    gravity_gain: the planner's simulator has gravity times this: a model that lets the pole
        fall from upright faster (> 1) or slower (< 1) than it does.
    angle_noise, velocity_noise: std of Gaussian errors (rad, rad/s) added to the pole's angle
        and velocity in the state the planner starts each plan from, fresh at every step.
    angle_bias: a constant error (rad) added to that angle: the planner holds the pole where it
        believes upright to be.
    velocity_bias: a constant error (rad/s) added to that velocity: a model's filter, read out
        along its own balance episodes, reported the pole turning ~0.3 rad/s faster than it did.
    """

    actuator_gain: float = 1.0
    gravity_gain: float = 1.0
    angle_noise: float = 0.0
    velocity_noise: float = 0.0
    angle_bias: float = 0.0
    velocity_bias: float = 0.0

    def __post_init__(self) -> None:
        for name in ("actuator_gain", "gravity_gain"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be > 0 (1 = the true simulator's), got {value!r}")
        for name in ("angle_noise", "velocity_noise"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} is a standard deviation and must be >= 0, got {value!r}")
        if not math.isfinite(self.angle_bias):
            raise ValueError(f"angle_bias must be a finite angle in rad, got {self.angle_bias!r}")
        if not math.isfinite(self.velocity_bias):
            raise ValueError(f"velocity_bias must be a finite velocity in rad/s, got {self.velocity_bias!r}")

    @property
    def observes_exactly(self) -> bool:
        """No error in the state the planner is given (a gain may still differ)."""
        return (self.angle_noise == 0 and self.velocity_noise == 0 and self.angle_bias == 0
                and self.velocity_bias == 0)


# A learned perception for the oracle: called with each new frame (uint8 [H, W, 3]) and the action
# that led to it (None for an episode's first frame), it returns its (angle, velocity) estimate.
StateEstimate = Callable[[np.ndarray, Optional[np.ndarray]], tuple[float, float]]


def oracle_goal_problem(dyn: Any, env: Any, config: E2CConfig) -> Any:
    """The true simulator (`dyn`, a SimulatorDynamics of `env`) as a planning problem with a
    quadratic cost on the true pole angle (0 = upright) and velocity: what iLQR reaches when the
    latent space is perfect."""
    import planners

    angle = dyn.qpos_slice.start + env.task_spec.angle_qpos
    velocity = dyn.qvel_slice.start + env.task_spec.angle_qpos

    def terminal(s: torch.Tensor) -> torch.Tensor:
        # the squared wrapped angle: its Hessian is positive everywhere, unlike 2(1 - cos θ)'s,
        # which is negative past ±π/2 and stalls iLQR's backward pass (measured)
        wrapped = torch.remainder(s[:, angle] + math.pi, 2 * math.pi) - math.pi
        return wrapped ** 2 + config.oracle_velocity_weight * s[:, velocity] ** 2

    def running(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        return terminal(s) + config.action_weight * (a * a).sum(-1)

    return planners.Problem(step=dyn.step, running_cost=running, terminal_cost=terminal,
                            horizon=config.horizon, action_low=torch.as_tensor(dyn.low),
                            action_high=torch.as_tensor(dyn.high), jacobians=dyn.jacobians)


def oracle_goal_episode(env: Any, planner: Any, sim_state: np.ndarray, config: E2CConfig,
                        seed: int, *, record: bool = False,
                        handicap: OracleHandicap | None = None,
                        estimate: StateEstimate | None = None) -> dict[str, Any]:
    """One iLQR-MPC episode on the true simulator from `sim_state`: % time in goal, and with
    `record` its frames, actions and angles (for `goal_cost.goal_cost_along`). With `handicap`,
    the planner plans on a simulator with other actuators and from a state with errors in it.
    With `estimate`, the pole's angle and velocity it plans from are `estimate`'s, from the frames
    (a learned filter read out: the true dynamics with a learned perception)."""
    import planners
    from worldmodel.control import goal_region_stats, goal_tolerance
    from worldmodel.sim_problem import SimulatorDynamics, oracle_state

    handicap = handicap or OracleHandicap()
    rng = np.random.default_rng(seed)  # the state errors' own stream; the planner's is `generator`
    with SimulatorDynamics(env, actuator_gain=handicap.actuator_gain,
                           gravity_gain=handicap.gravity_gain) as dyn:  # closes its thread pool at the end
        angle = dyn.qpos_slice.start + env.task_spec.angle_qpos
        velocity = dyn.qvel_slice.start + env.task_spec.angle_qpos

        seen: list[tuple[float, float]] = []  # estimate's latest (angle, velocity)

        def observed() -> torch.Tensor:  # the state the planner is told [S]
            state = oracle_state(env)
            if estimate is not None:
                state[angle], state[velocity] = seen[-1]
            if not handicap.observes_exactly:
                state[angle] += handicap.angle_bias + handicap.angle_noise * rng.standard_normal()
                state[velocity] += handicap.velocity_bias + handicap.velocity_noise * rng.standard_normal()
            return state

        mpc = planners.MPC(planner, oracle_goal_problem(dyn, env, config),
                           execute=config.replan_every, generator=torch.Generator().manual_seed(seed),
                           feedback=config.feedback)
        obs, info = env.reset(sim_state=sim_state)
        if estimate is not None:
            seen.append(estimate(obs, None))
        angles, frames, actions = [float(info["angle"])], [obs], []
        for _ in range(config.steps):
            action = mpc.act(observed()).detach().float().numpy()
            obs, _, _, truncated, info = env.step(action)
            if estimate is not None:
                seen.append(estimate(obs, action))
            angles.append(float(info["angle"]))
            if record:
                frames.append(obs)
                actions.append(action)
            if truncated:
                break
    out = {**goal_region_stats(np.asarray(angles), goal_tolerance(env.name)), "final_angle": float(angles[-1])}
    if record:
        out.update(frames=frames, actions=np.asarray(actions), angles=np.asarray(angles))
        if estimate is not None:
            out["estimates"] = np.asarray(seen)  # [T+1, 2] (angle, velocity)
    return out
