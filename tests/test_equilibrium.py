"""Tests of worldmodel.equilibrium: the rest-point goal against its closed form on linear
dynamics, and on a learned locally-linear model."""
from __future__ import annotations

import pytest
import torch

from worldmodel.equilibrium import drift, equilibrium_goal


def _linear(S: int = 4, A: int = 2, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    Am = torch.eye(S, dtype=torch.float64) + 0.3 * torch.randn(S, S, generator=g, dtype=torch.float64)
    B = torch.randn(S, A, generator=g, dtype=torch.float64)
    c = torch.randn(S, generator=g, dtype=torch.float64)
    return Am, B, c, (lambda s, a: s @ Am.T + a @ B.T + c)


@pytest.mark.parametrize("weight", [1e-3, 0.5])
def test_linear_dynamics_match_the_closed_form(weight):
    Am, B, c, step = _linear()
    goal = torch.randn(4, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    action = torch.tensor([0.3, -0.2], dtype=torch.float64)
    z, info = equilibrium_goal(step, goal, action, weight=weight)
    # minimiser of ‖M z + d‖² + w‖z − g‖² with M = A − I, d = B a + c
    M, d = Am - torch.eye(4, dtype=torch.float64), B @ action + c
    expected = torch.linalg.solve(M.T @ M + weight * torch.eye(4, dtype=torch.float64), weight * goal - M.T @ d)
    torch.testing.assert_close(z, expected, rtol=1e-6, atol=1e-7)
    assert info["drift_after"] == pytest.approx(float((M @ z + d).norm()), rel=1e-6)
    assert info["drift_before"] == pytest.approx(float((M @ goal + d).norm()), rel=1e-9)
    assert info["distance"] == pytest.approx(float((z - goal).norm()), rel=1e-9)


def test_a_small_weight_finds_the_exact_rest_point():
    Am, B, c, step = _linear(seed=3)
    action = torch.zeros(2, dtype=torch.float64)
    z, info = equilibrium_goal(step, torch.zeros(4, dtype=torch.float64), action, weight=1e-9)
    rest = torch.linalg.solve(torch.eye(4, dtype=torch.float64) - Am, c)
    torch.testing.assert_close(z, rest, rtol=1e-6, atol=1e-6)
    assert info["drift_after"] < 1e-6 * info["drift_before"]


def test_on_a_locally_linear_model_the_goal_drifts_less():
    from worldmodel import ModelConfig, WorldModel
    from worldmodel.model import GoalObjective

    torch.manual_seed(0)
    model = WorldModel(ModelConfig.small(transition="locally_linear", obs_shape=(5,), action_dim=1,
                                         stoch_size=4)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    goal = torch.randn(model.state_size)
    problem = model.planning_problem(None, GoalObjective(goal=goal), horizon=2)
    z, info = equilibrium_goal(problem.step, goal, torch.zeros(1), weight=1e-6)
    assert info["drift_before"] == pytest.approx(drift(problem.step, goal, torch.zeros(1)))
    assert info["drift_after"] < 0.2 * info["drift_before"]
    assert info["drift_after"] ** 2 + 1e-6 * info["distance"] ** 2 <= info["drift_before"] ** 2
    assert not any(p.grad is not None for p in model.parameters())  # the model is left untouched


def test_bad_input_is_named():
    *_, step = _linear()
    with pytest.raises(ValueError, match=r"vectors \[S\] and \[A\]"):
        equilibrium_goal(step, torch.zeros(1, 4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="weight must be > 0"):
        equilibrium_goal(step, torch.zeros(4, dtype=torch.float64), torch.zeros(2, dtype=torch.float64), weight=0.0)
