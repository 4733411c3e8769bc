"""Shared pieces: rollout costs, batched Jacobians and cost Hessians against closed forms."""
from __future__ import annotations

import math

import pytest
import torch

import planners
from planners.rollout import finite_or_inf, linearize, quadratize, rollout, total_cost


def nonlinear_problem(S: int, A: int, seed: int = 0) -> tuple[planners.Problem, dict]:
    """s' = tanh(W s + V a), l = Σ s³/3 + ½ aᵀa + s·a-ish, l_f = Σ exp(s): known derivatives."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(S, S, generator=g, dtype=torch.float64) / math.sqrt(S)
    V = torch.randn(S, A, generator=g, dtype=torch.float64)
    C = torch.randn(A, S, generator=g, dtype=torch.float64)
    problem = planners.Problem(
        step=lambda s, a: torch.tanh(s @ W.T + a @ V.T),
        running_cost=lambda s, a: (s ** 3).sum(-1) / 3 + 0.5 * (a ** 2).sum(-1) + ((a @ C) * s).sum(-1),
        terminal_cost=lambda s: torch.exp(s).sum(-1),
        horizon=4, action_low=-1.0, action_high=1.0, action_dim=A)
    return problem, {"W": W, "V": V, "C": C}


@pytest.mark.parametrize("S", [3, 20])  # the small (loop) and the large (vmap) paths
def test_linearize_and_quadratize_match_closed_form(S: int) -> None:
    A = 2
    problem, m = nonlinear_problem(S, A)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, S, generator=g, dtype=torch.float64) * 0.5
    u = torch.randn(4, A, generator=g, dtype=torch.float64) * 0.5
    fs, fa = linearize(problem, x[:-1], u)
    d = 1 - torch.tanh(x[:-1] @ m["W"].T + u @ m["V"].T) ** 2  # [H, S]
    torch.testing.assert_close(fs, d.unsqueeze(2) * m["W"], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(fa, d.unsqueeze(2) * m["V"], rtol=1e-10, atol=1e-12)
    q = quadratize(problem, x, u)
    torch.testing.assert_close(q["l_s"], x[:-1] ** 2 + u @ m["C"])
    torch.testing.assert_close(q["l_a"], u + x[:-1] @ m["C"].T)
    torch.testing.assert_close(q["l_ss"], torch.diag_embed(2 * x[:-1]))
    torch.testing.assert_close(q["l_aa"], torch.eye(A, dtype=torch.float64).expand(4, A, A))
    torch.testing.assert_close(q["l_as"], m["C"].expand(4, A, S))
    torch.testing.assert_close(q["V_s"], torch.exp(x[-1]))
    torch.testing.assert_close(q["V_ss"], torch.diag(torch.exp(x[-1])))


def test_total_cost_matches_single_rollouts_and_maps_nan_to_inf() -> None:
    problem, _ = nonlinear_problem(3, 2)
    g = torch.Generator().manual_seed(2)
    U = torch.rand(6, 4, 2, generator=g, dtype=torch.float64) * 2 - 1
    state = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    batch = total_cost(problem, state, U)
    single = torch.stack([rollout(problem, state, u)[1] for u in U])
    torch.testing.assert_close(batch, single, rtol=1e-12, atol=0)
    c = finite_or_inf(torch.tensor([1.0, math.nan, -math.inf, math.inf]))
    assert c.tolist() == [1.0, math.inf, math.inf, math.inf]


def test_inference_mode_caller_still_gets_derivatives() -> None:
    base, _ = nonlinear_problem(3, 1)
    problem = planners.Problem(step=base.step, horizon=4, action_low=-1.0, action_high=1.0,
                               action_dim=1, running_cost=lambda s, a: (s ** 2).sum(-1) + (a ** 2).sum(-1))
    with torch.inference_mode():
        res = planners.make("ilqr", iterations=3).plan(problem, torch.full((3,), 0.5, dtype=torch.float64))
    assert res.info["iterations"] >= 1 and res.info["improved"] and math.isfinite(res.cost)
