"""Random shooting returns exactly the best of its own samples."""
from __future__ import annotations

import numpy as np
import torch

import planners
from planners.rollout import total_cost

try:
    from test_planners_ilqr import lq_matrices, lq_problem
except ImportError:  # tests/ imported as a package
    from tests.test_planners_ilqr import lq_matrices, lq_problem


def test_returns_best_of_own_samples() -> None:
    A, B, Q, R, Qf = lq_matrices(9, n=3, m=2, unstable=True)
    problem = lq_problem(A, B, Q, R, Qf, 8, low=-1.0, high=1.0)
    state = torch.tensor([2.0, -1.0, 1.0], dtype=torch.float64)
    planner = planners.make("random", candidates=300)
    res = planner.plan(problem, state, generator=torch.Generator().manual_seed(11))
    # Re-draw the same samples with an identically seeded generator and score them all here.
    init = problem.default_actions(state)
    samples = planner.sample(problem, init, torch.Generator().manual_seed(11))  # [300, 8, 2]
    costs = torch.stack([total_cost(problem, state, u[None])[0] for u in samples])
    best = int(torch.argmin(costs))
    assert res.info["improved"]  # the zero plan is beaten, so the best sample is returned
    assert torch.equal(res.actions, samples[best])
    np.testing.assert_allclose(res.cost, float(costs[best]), rtol=1e-12)
    assert bool((samples >= -1).all() and (samples <= 1).all())
    assert float(samples.std()) > 0.4  # uniform on [-1, 1] has std 0.577


def test_unbounded_dims_sample_gaussian_around_init_and_keep_dtype() -> None:
    A, B, Q, R, Qf = lq_matrices(9, n=3, m=2)
    problem = lq_problem(A, B, Q, R, Qf, 4, dtype=torch.float32)
    state = torch.ones(3)
    init = torch.full((4, 2), 3.0)
    planner = planners.make("random", candidates=2000, std=0.5)
    samples = planner.sample(problem, init, torch.Generator().manual_seed(0))
    assert abs(float(samples.mean()) - 3.0) < 0.05 and abs(float(samples.std()) - 0.5) < 0.05
    res = planner.plan(problem, state, init=init, generator=torch.Generator().manual_seed(0))
    assert res.actions.dtype == torch.float32 and res.actions.shape == (4, 2)


def test_policy_candidates_alone_keep_the_best_of_the_policy_plans() -> None:
    """candidates=0 scores only the proposal's plans: the cheapest of them is returned."""
    import dataclasses

    import pytest

    A, B, Q, R, Qf = lq_matrices(9, n=3, m=2, unstable=True)
    base = lq_problem(A, B, Q, R, Qf, 8, low=-1.0, high=1.0)
    state = torch.tensor([2.0, -1.0, 1.0], dtype=torch.float64)
    plans = torch.rand(6, 8, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 2 - 1
    problem = dataclasses.replace(base, proposal=lambda s, n, g: plans[:n])
    res = planners.make("random", candidates=0, policy_candidates=6).plan(problem, state)
    costs = total_cost(problem, state, plans)
    torch.testing.assert_close(res.actions, plans[int(costs.argmin())])
    assert res.info["samples"] == 6
    with pytest.raises(ValueError, match="not both 0"):
        planners.make("random", candidates=0)
    with pytest.raises(ValueError, match="needs a problem with a proposal"):
        planners.make("random", policy_candidates=2).plan(base, state)
