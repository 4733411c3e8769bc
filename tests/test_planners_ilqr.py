"""iLQR against the finite-horizon Riccati solution, with bounds, Jacobians and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import planners
from planners.ilqr import box_qp


def lq_matrices(seed: int, n: int = 4, m: int = 2, unstable: bool = False):
    """Random (A, B, Q, R, Qf): A stable (spectral radius 0.9) or unstable (1.2)."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    A *= (1.2 if unstable else 0.9) / max(abs(np.linalg.eigvals(A)))
    B = rng.normal(size=(n, m))
    L = rng.normal(size=(n, n))
    Q = L @ L.T / n  # ⪰ 0
    Q[:, 0] = Q[0, :] = 0.0  # make it singular on purpose (Q ⪰ 0, not ≻ 0)
    Q += np.diag([0.0] + [0.1] * (n - 1))
    M = rng.normal(size=(m, m))
    R = M @ M.T / m + 0.1 * np.eye(m)  # ≻ 0
    return A, B, Q, R, 2.0 * Q + np.eye(n)


def riccati(A, B, Q, R, Qf, x0, H):
    """Finite-horizon LQR for J = Σ xᵀQx + uᵀRu + x_HᵀQf x_H -> (u* [H, m], J*)."""
    P, gains = Qf, []
    for _ in range(H):
        K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = Q + A.T @ P @ A - A.T @ P @ B @ K
        gains.append(K)
    gains.reverse()
    x, us = x0, []
    for K in gains:
        us.append(-K @ x)
        x = A @ x + B @ us[-1]
    return np.array(us), float(x0 @ P @ x0)


def lq_problem(A, B, Q, R, Qf, H, dtype=torch.float64, low=-np.inf, high=np.inf, closed=False,
               device="cpu"):
    """The LQ system as a planners.Problem (optionally with closed-form Jacobians); its matrices
    live on `device`, its bounds on the CPU (the planner moves them to the state)."""
    At, Bt, Qt, Rt, Qft = (torch.tensor(M, dtype=dtype, device=device) for M in (A, B, Q, R, Qf))
    m = B.shape[1]
    jac = None
    if closed:
        jac = lambda s, a: (At.expand(s.shape[0], -1, -1), Bt.expand(s.shape[0], -1, -1))  # noqa
    return planners.Problem(
        step=lambda s, a: s @ At.T + a @ Bt.T,
        running_cost=lambda s, a: ((s @ Qt) * s).sum(-1) + ((a @ Rt) * a).sum(-1),
        terminal_cost=lambda s: ((s @ Qft) * s).sum(-1),
        horizon=H, action_low=torch.full((m,), float(low), dtype=torch.float64),
        action_high=torch.full((m,), float(high), dtype=torch.float64),
        jacobians=jac)


@pytest.mark.parametrize("unstable", [False, True])
@pytest.mark.parametrize("closed", [False, True])
def test_lq_matches_riccati_in_one_iteration(unstable: bool, closed: bool) -> None:
    mats = lq_matrices(1 + unstable, unstable=unstable)
    H = 15
    x0 = np.random.default_rng(7).normal(size=4)
    u_star, j_star = riccati(*mats, x0, H)
    problem = lq_problem(*mats, H, closed=closed)
    state = torch.tensor(x0)
    one = planners.make("ilqr", iterations=1).plan(problem, state)
    np.testing.assert_allclose(one.actions[0].numpy(), u_star[0], rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(one.actions.numpy(), u_star, rtol=1e-8, atol=1e-10)
    assert one.cost == pytest.approx(j_star, rel=1e-8)
    full = planners.make("ilqr").plan(problem, state)
    assert full.info["converged"] and full.info["iterations"] == 1
    assert full.info["cost_history"][0] == pytest.approx(j_star, rel=1e-8)
    assert full.cost == pytest.approx(j_star, rel=1e-8)


def test_a_large_regularisation_does_not_stop_short_of_the_optimum() -> None:
    # With μ large the step k, and the gradient test on it, is tiny far from the optimum; the test
    # counts only once μ has fallen (iLQG.m), so iLQR keeps going to the Riccati solution.
    mats = lq_matrices(1)
    x0 = np.random.default_rng(7).normal(size=4)
    _, j_star = riccati(*mats, x0, 15)
    res = planners.make("ilqr", mu_init=1e5).plan(lq_problem(*mats, 15), torch.tensor(x0))
    assert res.info["converged"] and res.cost == pytest.approx(j_star, rel=1e-6)


def test_two_random_starts_are_two_different_trajectories(monkeypatch) -> None:
    starts, optimise = [], planners.ILQR._optimise
    monkeypatch.setattr(planners.ILQR, "_optimise",
                        lambda self, problem, state, u, *rest: starts.append(u) or optimise(self, problem, state, u, *rest))
    planners.make("ilqr", initial_trajectories=("random", "random")).plan(
        lq_problem(*lq_matrices(1), 15), torch.tensor(np.ones(4)))  # no generator: the planner's seed
    assert len(starts) == 2 and not torch.equal(starts[0], starts[1])  # once the same seed twice


def test_tight_bounds_respected_and_no_worse_than_clamped_lqr() -> None:
    mats = lq_matrices(3, unstable=True)
    H, bound = 12, 0.3
    x0 = np.array([1.0, -2.0, 0.5, 1.5])
    u_star, _ = riccati(*mats, x0, H)
    assert np.abs(u_star).max() > 2 * bound  # the bounds really bind
    problem = lq_problem(*mats, H, low=-bound, high=bound)
    state = torch.tensor(x0)
    res = planners.make("ilqr").plan(problem, state)
    assert res.actions.abs().max() <= bound + 1e-12
    clamped = torch.tensor(u_star).clamp(-bound, bound)
    clamped_cost = float(planners.rollout.total_cost(problem, state, clamped[None])[0])
    assert res.cost <= clamped_cost + 1e-9
    assert res.info["improved"]


def test_box_qp_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        M = torch.randn(3, 3, generator=g, dtype=torch.float64)
        hess, grad = M @ M.T + 0.1 * torch.eye(3, dtype=torch.float64), torch.randn(3, generator=g, dtype=torch.float64)
        low, high = -0.2 * torch.ones(3, dtype=torch.float64), 0.3 * torch.ones(3, dtype=torch.float64)
        x, free, _ = box_qp(hess, grad, low, high, torch.zeros(3, dtype=torch.float64))
        grid = torch.stack(torch.meshgrid(*[torch.linspace(-0.2, 0.3, 51, dtype=torch.float64)] * 3,
                                          indexing="ij"), -1).reshape(-1, 3)
        vals = 0.5 * ((grid @ hess) * grid).sum(-1) + grid @ grad
        f = lambda v: float(0.5 * v @ hess @ v + grad @ v)  # noqa: E731
        assert f(x) <= float(vals.min()) + 1e-12
        assert bool(((x >= low) & (x <= high)).all())


def test_random_restart_escapes_saddle() -> None:
    # Cost (1 - cos θ)-like saddle: at θ = π with u = 0 the gradient vanishes, so only a
    # non-zero start moves. "random" among the starts must be chosen and improve.
    step = lambda s, a: torch.stack([s[:, 0] + 0.1 * s[:, 1], s[:, 1] + 0.1 * (torch.sin(s[:, 0]) + a[:, 0])], -1)  # noqa: E731
    cost = lambda s, a: (1 - torch.cos(s[:, 0])) + 0.01 * a[:, 0] ** 2  # noqa: E731
    problem = planners.Problem(step=step, running_cost=cost, horizon=30, action_low=-2.0,
                               action_high=2.0, action_dim=1)
    state = torch.tensor([torch.pi, 0.0], dtype=torch.float64)
    stuck = planners.make("ilqr").plan(problem, state)
    assert not stuck.info["improved"] and "reason" in stuck.info
    res = planners.make("ilqr", initial_trajectories=("init", "random")).plan(
        problem, state, generator=torch.Generator().manual_seed(0))
    assert res.info["improved"] and res.cost < stuck.cost - 1.0


def test_dtypes_and_determinism() -> None:
    mats = lq_matrices(4)
    for dtype in (torch.float32, torch.float64):
        problem = lq_problem(*mats, 8, dtype=dtype, low=-1, high=1)
        state = torch.ones(4, dtype=dtype)
        res = planners.make("ilqr", initial_trajectories=("init", "random")).plan(
            problem, state, generator=torch.Generator().manual_seed(3))
        again = planners.make("ilqr", initial_trajectories=("init", "random")).plan(
            problem, state, generator=torch.Generator().manual_seed(3))
        assert res.actions.dtype == dtype and res.actions.shape == (8, 2)
        assert torch.equal(res.actions, again.actions)


def test_feedback_gains_are_the_riccati_gains_and_mpc_follows_them() -> None:
    """iLQR(feedback=True) returns the time-varying LQR gains along its plan, and MPC with
    feedback then acts as the Riccati policy u_t = −K_t s_t from states off the nominal path."""
    A, B, Q, R, Qf = lq_matrices(3, unstable=True)
    H = 10
    P, gains = Qf, []
    for _ in range(H):
        K = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        P = Q + A.T @ P @ A - A.T @ P @ B @ K
        gains.append(K)
    gains.reverse()  # gains[t]: u_t = −K_t x_t
    problem = lq_problem(A, B, Q, R, Qf, H)
    x0 = torch.tensor(np.random.default_rng(5).normal(size=4))
    result = planners.make("ilqr", feedback=True).plan(problem, x0)
    np.testing.assert_allclose(result.info["feedback_gains"].numpy(), -np.array(gains), rtol=1e-7,
                               atol=1e-9)
    assert result.info["nominal_states"].shape == (H + 1, 4)
    assert "feedback_gains" not in planners.make("ilqr").plan(problem, x0).info

    controller = planners.MPC(planners.make("ilqr", feedback=True), problem, execute=4,
                              feedback=True)
    s = x0
    rng = np.random.default_rng(6)
    for t in range(4):  # one plan, followed with pushes off its nominal states
        a = controller.act(s)
        np.testing.assert_allclose(a.numpy(), -gains[t] @ s.numpy(), rtol=1e-7, atol=1e-9)
        s = s @ torch.tensor(A).T + a @ torch.tensor(B).T + torch.tensor(rng.normal(size=4) * 0.1)
    open_loop = planners.MPC(planners.make("ilqr", feedback=True), problem, execute=4)
    open_loop.act(x0)
    pushed = x0 @ torch.tensor(A).T + open_loop.last_result.actions[0] @ torch.tensor(B).T + 0.1
    assert torch.equal(open_loop.act(pushed), open_loop.last_result.actions[1])  # no feedback


def test_a_goal_given_only_as_a_terminal_cost_is_reached() -> None:
    # a running cost that ignores its inputs has no gradient graph at all; it once crashed here
    problem = planners.Problem(step=lambda s, a: s + a, terminal_cost=lambda s: (s ** 2).sum(-1),
                               running_cost=lambda s, a: torch.zeros(s.shape[0], dtype=s.dtype),
                               horizon=5, action_dim=2, action_low=-1.0, action_high=1.0)
    res = planners.make("ilqr").plan(problem, torch.tensor([2.0, -3.0], dtype=torch.float64))
    assert res.cost == pytest.approx(0.0, abs=1e-8)
    np.testing.assert_allclose(res.actions.sum(0).numpy(), [-2.0, 3.0], atol=1e-6)
    assert bool((res.actions.abs() <= 1).all())
