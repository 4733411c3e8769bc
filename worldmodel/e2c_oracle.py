"""The E2C protocol's ceiling: the same MPC on the true simulator, with a quadratic cost on the
true pole angle and velocity instead of the latent goal cost (`worldmodel e2c`'s oracle)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from worldmodel.e2c import E2CConfig


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
                        seed: int, *, record: bool = False) -> dict[str, Any]:
    """One iLQR-MPC episode on the true simulator from `sim_state`: % time in goal, and with
    `record` its frames, actions and angles (for `goal_cost.goal_cost_along`)."""
    import planners
    from worldmodel.control import goal_region_stats, goal_tolerance
    from worldmodel.sim_problem import SimulatorDynamics, oracle_state

    with SimulatorDynamics(env) as dyn:  # closes its rollout thread pool at the end
        mpc = planners.MPC(planner, oracle_goal_problem(dyn, env, config),
                           execute=config.replan_every, generator=torch.Generator().manual_seed(seed),
                           feedback=config.feedback)
        obs, info = env.reset(sim_state=sim_state)
        angles, frames, actions = [float(info["angle"])], [obs], []
        for _ in range(config.steps):
            action = mpc.act(oracle_state(env)).detach().float().numpy()
            obs, _, _, truncated, info = env.step(action)
            angles.append(float(info["angle"]))
            if record:
                frames.append(obs)
                actions.append(action)
            if truncated:
                break
    out = {**goal_region_stats(np.asarray(angles), goal_tolerance(env.name)), "final_angle": float(angles[-1])}
    if record:
        out.update(frames=frames, actions=np.asarray(actions), angles=np.asarray(angles))
    return out
