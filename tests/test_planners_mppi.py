"""MPPI: near the LQ optimum, warm start, dtypes and determinism."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import planners

try:
    from test_planners_ilqr import lq_matrices, lq_problem, riccati
except ImportError:  # tests/ imported as a package
    from tests.test_planners_ilqr import lq_matrices, lq_problem, riccati


def test_mppi_reaches_lq_optimum() -> None:
    A, B, Q, R, Qf = lq_matrices(5, n=2, m=1, unstable=True)
    x0 = np.array([1.0, -1.0])
    u_star, j_star = riccati(A, B, Q, R, Qf, x0, 10)
    problem = lq_problem(A, B, Q, R, Qf, 10)
    res = planners.make("mppi").plan(problem, torch.tensor(x0),
                                     generator=torch.Generator().manual_seed(0))
    assert res.info["improved"] and res.info["iterations"] == 6
    assert j_star <= res.cost <= 1.08 * j_star  # within 8 % (seeds 0-2 give 2.3-5.8 %)
    # warm-started at the optimum, MPPI stays within 1 % of it
    warm = planners.make("mppi").plan(problem, torch.tensor(x0), init=torch.tensor(u_star),
                                      generator=torch.Generator().manual_seed(0))
    assert warm.cost <= 1.01 * j_star


def test_mppi_dtype_bounds_determinism() -> None:
    A, B, Q, R, Qf = lq_matrices(8, n=3, m=2)
    for dtype in (torch.float32, torch.float64):
        problem = lq_problem(A, B, Q, R, Qf, 5, dtype=dtype, low=-0.5, high=0.5)
        state = torch.full((3,), 2.0, dtype=dtype)
        planner = planners.make("mppi", samples=64, elites=8, iterations=2)
        a = planner.plan(problem, state, generator=torch.Generator().manual_seed(2))
        b = planner.plan(problem, state, generator=torch.Generator().manual_seed(2))
        assert a.actions.dtype == dtype and a.actions.shape == (5, 2)
        assert torch.equal(a.actions, b.actions)
        assert bool((a.actions.abs() <= 0.5).all())


def test_policy_candidates_bring_a_good_prior_plan_into_mppi() -> None:
    """TD-MPC2's policy trajectories: a proposal near the Riccati plan lifts a 1-iteration MPPI to
    the optimum it does not sample on its own, and a proposal that is never an elite changes nothing."""
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
    settings = dict(iterations=1, samples=50, elites=1)
    plain = planners.MPPI(**settings).plan(base, state, generator=torch.Generator().manual_seed(0))
    seeded = planners.MPPI(**settings, policy_candidates=8).plan(
        dataclasses.replace(base, proposal=good), state, generator=torch.Generator().manual_seed(0))
    assert plain.cost > 1.05 * j_star
    assert seeded.cost <= 1.001 * j_star
    assert seeded.info["policy_cost"] == pytest.approx(seeded.cost)
    assert seeded.info["samples"] == 50 + 8
    ignored = planners.MPPI(**settings, policy_candidates=8).plan(
        dataclasses.replace(base, proposal=useless), state, generator=torch.Generator().manual_seed(0))
    assert ignored.cost == pytest.approx(plain.cost)
    with pytest.raises(ValueError, match="needs a problem with a proposal"):
        planners.MPPI(policy_candidates=4).plan(base, state)
    with pytest.raises(ValueError, match="policy_candidates must be >= 0"):
        planners.MPPI(policy_candidates=-1)
