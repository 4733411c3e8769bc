"""CEM / iCEM: near the LQ optimum, coloured noise, NaN candidates, dtypes and determinism; the
policy prior's candidates, for CEM and MPPI alike."""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

import planners
from planners.rollout import coloured_noise

try:
    from test_planners_ilqr import lq_matrices, lq_problem, riccati
except ImportError:  # tests/ imported as a package
    from tests.test_planners_ilqr import lq_matrices, lq_problem, riccati


def small_lq():
    A, B, Q, R, Qf = lq_matrices(5, n=2, m=1, unstable=True)
    x0 = np.array([1.0, -1.0])
    _, j_star = riccati(A, B, Q, R, Qf, x0, 10)
    return lq_problem(A, B, Q, R, Qf, 10), torch.tensor(x0), j_star


@pytest.mark.parametrize("preset", ["planet", "icem"])
def test_cem_reaches_lq_optimum(preset: str) -> None:
    problem, state, j_star = small_lq()
    planner = planners.CEM.planet() if preset == "planet" else planners.CEM.icem(iterations=8)
    res = planner.plan(problem, state, generator=torch.Generator().manual_seed(0))
    assert res.info["improved"]
    assert j_star <= res.cost <= 1.02 * j_star  # within 2 % of the Riccati optimum
    assert res.info["iterations"] == planner.iterations


def test_coloured_noise_has_unit_variance_and_is_smoother() -> None:
    like = torch.zeros((), dtype=torch.float64)
    g = torch.Generator().manual_seed(0)
    for beta in (0.0, 1.0, 2.0):
        for horizon in (12, 13):
            x = coloured_noise(4000, horizon, 2, beta, g, like)  # [N, H, A]
            assert x.shape == (4000, horizon, 2)
            assert float(x.var()) == pytest.approx(1.0, rel=0.05)
    white = coloured_noise(4000, 30, 1, 0.0, g, like)
    red = coloured_noise(4000, 30, 1, 2.0, g, like)
    step_var = lambda x: float((x[:, 1:] - x[:, :-1]).var())  # noqa: E731
    assert step_var(red) < 0.3 * step_var(white)


def test_nan_candidates_never_chosen() -> None:
    # Cost is NaN wherever the first action is positive; the unconstrained optimum wants +1.
    def cost(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        c = (a[:, 0] - 1.0) ** 2
        return torch.where(a[:, 0] > 0, torch.full_like(c, math.nan), c)

    problem = planners.Problem(step=lambda s, a: s + a, running_cost=cost, horizon=3,
                               action_low=-2.0, action_high=2.0, action_dim=1)
    state = torch.zeros(1)
    for name in ("cem", "mppi", "random"):
        res = planners.make(name).plan(problem, state, generator=torch.Generator().manual_seed(1))
        assert math.isfinite(res.cost) and bool((res.actions <= 0).all()), name


def test_all_nan_returns_init_and_says_so() -> None:
    problem = planners.Problem(step=lambda s, a: s + a,
                               running_cost=lambda s, a: torch.full_like(s[:, 0], math.nan),
                               horizon=4, action_low=-1.0, action_high=1.0, action_dim=1)
    init = torch.full((4, 1), 0.5)
    res = planners.make("cem", candidates=50, elites=5).plan(problem, torch.zeros(1), init=init)
    assert not res.info["improved"] and "NaN" in res.info["reason"]
    assert torch.equal(res.actions, init) and res.cost == math.inf


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_shape_bounds_and_determinism(dtype: torch.dtype) -> None:
    A, B, Q, R, Qf = lq_matrices(6, n=3, m=2)
    problem = lq_problem(A, B, Q, R, Qf, 6, dtype=dtype, low=-0.1, high=0.2)
    state = torch.ones(3, dtype=dtype)
    planner = planners.make("cem", candidates=64, elites=8, iterations=3, noise_beta=2.0)
    a = planner.plan(problem, state, generator=torch.Generator().manual_seed(4))
    b = planner.plan(problem, state, generator=torch.Generator().manual_seed(4))
    c = planner.plan(problem, state, generator=torch.Generator().manual_seed(5))
    assert a.actions.dtype == dtype and a.actions.shape == (6, 2)
    assert torch.equal(a.actions, b.actions) and not torch.equal(a.actions, c.actions)
    assert bool((a.actions >= -0.1).all() and (a.actions <= 0.2).all())
    assert len(a.info["cost_history"]) == 3 and a.info["time_s"] > 0


@pytest.mark.parametrize("name, settings", [
    ("cem", dict(iterations=3, candidates=40, elites=4)),
    ("icem", dict(iterations=5, candidates=40, elites=4)),  # population decay + kept elites
    ("mppi", dict(iterations=3, samples=30, elites=5)),
    ("random", dict(candidates=25)),
])
def test_info_samples_counts_the_sequences_rolled_out(name: str, settings: dict) -> None:
    """info["samples"] is what sample-efficiency comparisons divide by: it must equal the rows
    the planner's rollouts pushed through `step` (less the final re-evaluation of two plans)."""
    problem, state, _ = small_lq()
    rows = []
    counted = planners.Problem(step=lambda s, a: (rows.append(s.shape[0]), problem.step(s, a))[1],
                               running_cost=problem.running_cost, terminal_cost=problem.terminal_cost,
                               horizon=problem.horizon, action_low=-5.0, action_high=5.0,
                               action_dim=problem.dim_action)
    planner = (planners.CEM.icem(**settings) if name == "icem" else planners.make(name, **settings))
    res = planner.plan(counted, state, generator=torch.Generator().manual_seed(0))
    assert res.info["samples"] == sum(rows) // problem.horizon - 2  # finish() rolls out [init, plan]
    if name == "icem":  # decayed populations plus 30 % of the elites rolled again
        assert res.info["samples"] < settings["iterations"] * settings["candidates"]


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_info_samples_counts_the_rollouts_of_an_iteration_that_found_no_finite_cost(name: str) -> None:
    problem = planners.Problem(step=lambda s, a: s + a,
                               running_cost=lambda s, a: torch.full_like(s[:, 0], math.nan),
                               horizon=4, action_low=-1.0, action_high=1.0, action_dim=1)
    res = planners.make(name, **({"candidates": 50} if name == "cem" else {"samples": 50}),
                        elites=5).plan(problem, torch.zeros(1))
    assert res.info["iterations"] == 0 and res.info["samples"] == 50  # stopped after one batch


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_policy_candidates_bring_a_good_prior_plan_into_the_planner(name: str) -> None:
    """TD-MPC's policy samples (TD-MPC2's policy trajectories for MPPI): a proposal near the Riccati
    plan lifts a 1-iteration planner to the optimum it cannot sample on its own, and a useless
    proposal costs it nothing."""
    A, B, Q, R, Qf = lq_matrices(5, n=2, m=1, unstable=True)
    x0 = np.array([1.0, -1.0])
    u_star, j_star = riccati(A, B, Q, R, Qf, x0, 10)
    base = dataclasses.replace(lq_problem(A, B, Q, R, Qf, 10), proposal=None)
    near = torch.tensor(u_star)  # [H, A]

    def good(s: torch.Tensor, n: int, g) -> torch.Tensor:  # the optimum, slightly perturbed
        return near + 1e-3 * torch.randn(n, *near.shape, generator=g, dtype=near.dtype)

    def useless(s: torch.Tensor, n: int, g) -> torch.Tensor:  # far outside the sampled region
        return torch.full((n, *near.shape), 50.0, dtype=near.dtype)

    state = torch.tensor(x0)
    settings = dict(iterations=1, elites=1, **({"candidates": 50} if name == "cem" else {"samples": 50}))
    plain = planners.make(name, **settings).plan(base, state, generator=torch.Generator().manual_seed(0))
    seeded = planners.make(name, **settings, policy_candidates=8).plan(
        dataclasses.replace(base, proposal=good), state, generator=torch.Generator().manual_seed(0))
    assert plain.cost > 1.05 * j_star  # one round of 50 samples does not beat doing nothing
    assert seeded.cost <= 1.001 * j_star
    assert seeded.info["policy_cost"] == pytest.approx(seeded.cost)
    assert seeded.info["samples"] == 50 + 8
    ignored = planners.make(name, **settings, policy_candidates=8).plan(
        dataclasses.replace(base, proposal=useless), state, generator=torch.Generator().manual_seed(0))
    assert ignored.cost == pytest.approx(plain.cost)  # same noise draws, the proposal never elite


@pytest.mark.parametrize("name", ["cem", "mppi"])
def test_policy_candidates_need_a_proposal_of_the_right_shape(name: str) -> None:
    problem, state, _ = small_lq()
    with pytest.raises(ValueError, match="needs a problem with a proposal"):
        planners.make(name, policy_candidates=4).plan(problem, state)
    wrong = dataclasses.replace(problem, proposal=lambda s, n, g: torch.zeros(n, 3, 1))
    with pytest.raises(ValueError, match=r"proposal returned shape \(2, 3, 1\).*expected \(2, 10, 1\)"):
        planners.make(name, policy_candidates=4).plan(wrong, state)
    with pytest.raises(ValueError, match="proposal.*expected"):
        wrong.check(state)
    with pytest.raises(ValueError, match="policy_candidates must be >= 0"):
        planners.make(name, policy_candidates=-1)
