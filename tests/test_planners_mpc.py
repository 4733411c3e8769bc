"""The MPC loop: caching and warm starts, and a pendulum swing-up with iLQR and CEM."""
from __future__ import annotations

import math

import pytest
import torch

import planners
from planners.mpc import shift_plan

G, DT, U_MAX = 9.81, 0.05, 4.0  # m = l = 1, so the torque bound is 0.41 m g l: it must pump


def pendulum_step(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """θ from upright: θ'' = (g/l) sin θ + u/(m l²), semi-implicit Euler. s [N, 2], a [N, 1]."""
    theta, omega = s[:, 0], s[:, 1]
    omega = omega + DT * (G * torch.sin(theta) + a[:, 0])
    return torch.stack([theta + DT * omega, omega], -1)


def pendulum_cost(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return 2 * (1 - torch.cos(s[:, 0])) + 0.1 * s[:, 1] ** 2 + 0.01 * a[:, 0] ** 2


def pendulum_problem(horizon: int = 30) -> planners.Problem:
    return planners.Problem(step=pendulum_step, running_cost=pendulum_cost, horizon=horizon,
                            action_low=-U_MAX, action_high=U_MAX, action_dim=1)


def swing_up(planner, steps: int = 120, seed: int = 0) -> torch.Tensor:
    """Run MPC from hanging (θ = π) -> wrapped angles [steps + 1]."""
    controller = planners.MPC(planner, pendulum_problem(),
                              generator=torch.Generator().manual_seed(seed))
    state = torch.tensor([math.pi, 0.0], dtype=torch.float64)

    def env_step(action: torch.Tensor) -> torch.Tensor:
        nonlocal state
        state = pendulum_step(state[None], action[None])[0]
        return state

    states, actions, costs = planners.run_mpc(controller, env_step, state, steps)
    assert states.shape == (steps + 1, 2) and actions.shape == (steps, 1) and costs.shape == (steps,)
    assert float(actions.abs().max()) <= U_MAX
    return torch.atan2(torch.sin(states[:, 0]), torch.cos(states[:, 0]))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ilqr", "cem"])
def test_pendulum_swing_up_and_hold(name: str) -> None:
    planner = {"ilqr": planners.make("ilqr", iterations=5, initial_trajectories=("init", "random")),
               "cem": planners.make("cem", candidates=100, elites=10, iterations=5,
                                    warm_start=True, init_std=2.0)}[name]
    theta = swing_up(planner)
    assert float(theta[: len(theta) // 4].abs().min()) > 2.0  # it starts by hanging ...
    assert float(theta[-len(theta) // 4:].abs().max()) < 0.1  # ... and ends upright, held


class CountingPlanner:
    """Returns [k, k, ...] on its k-th call and records the warm starts it was given."""

    def __init__(self) -> None:
        self.inits: list = []

    def plan(self, problem, state, init=None, generator=None):
        self.inits.append(init)
        k = float(len(self.inits))
        acts = torch.arange(problem.horizon, dtype=state.dtype).unsqueeze(1) + 10 * k
        return planners.PlanResult(actions=acts, cost=0.0, info={})


def test_mpc_caches_shifts_and_replans_on_new_problem() -> None:
    planner = CountingPlanner()
    problem = pendulum_problem(horizon=5)
    mpc = planners.MPC(planner, problem, execute=2)
    s = torch.zeros(2, dtype=torch.float64)
    got = [float(mpc.act(s)) for _ in range(5)]
    assert got == [10.0, 11.0, 20.0, 21.0, 30.0]  # replans every 2 calls
    assert planner.inits[0] is None
    assert planner.inits[1][:, 0].tolist() == [12.0, 13.0, 14.0, 14.0, 14.0]  # shifted by 2
    mpc.problem = pendulum_problem(horizon=5)  # e.g. a new goal: replan at the next call
    assert float(mpc.act(s)) == 40.0 and mpc.last_result.actions[0, 0] == 40.0
    # one action (30) of the last plan was taken, so its warm start drops one, not `execute`
    assert planner.inits[-1][:, 0].tolist() == [31.0, 32.0, 33.0, 34.0, 34.0]
    mpc.reset()
    mpc.act(s)
    assert planner.inits[-1] is None
    with pytest.raises(ValueError, match="execute"):
        planners.MPC(planner, problem, execute=6)


def test_shift_plan() -> None:
    u = torch.arange(4.0).unsqueeze(1)
    assert shift_plan(u, 1, 4)[:, 0].tolist() == [1.0, 2.0, 3.0, 3.0]
    assert shift_plan(u, 4, 3)[:, 0].tolist() == [3.0, 3.0, 3.0]
    assert shift_plan(u, 0, 6)[:, 0].tolist() == [0.0, 1.0, 2.0, 3.0, 3.0, 3.0]
