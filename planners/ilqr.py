"""Iterative LQR with Levenberg–Marquardt regularisation, line search and box-constrained controls.

Notation: x [H+1, S], u [H, A] the nominal trajectory; f_s [H, S, S], f_a [H, S, A] the dynamics
Jacobians; l_s, l_a, l_ss, l_aa, l_as the cost expansion; V_s, V_ss the value expansion. One
iteration (Tassa, Erez & Todorov 2012, "Synthesis and stabilization of complex behaviors through
online trajectory optimization", Sec. II; Tassa, Mansard & Todorov 2014, "Control-limited DDP"):
  1. linearise the dynamics and quadratise the costs along (x, u), batched over time;
  2. backward pass, t = H−1 … 0:
       Q_s = l_s + f_sᵀ V_s,  Q_a = l_a + f_aᵀ V_s,  Q_ss = l_ss + f_sᵀ V_ss f_s,
       Q_aa = l_aa + f_aᵀ (V_ss + μI) f_a,  Q_as = l_as + f_aᵀ (V_ss + μI) f_s,
     δu = k + K δx from the box QP  min ½ δuᵀ Q_aa δu + Q_aᵀ δu,  low − u_t ≤ δu ≤ high − u_t
     (projected Newton; K is −Q_aa⁻¹ Q_as on the free dimensions and 0 on clamped ones);
  3. forward pass u'_t = clip(u_t + α k_t + K_t (x'_t − x_t)) for all line-search α at once (one
     batched rollout), accepting the largest α whose actual / expected reduction exceeds z_min;
  4. μ falls after success and rises after failure (non-PD Q_aa or no α accepted).
Termination: (1) mean_t max_i |k_t,i| / (|u_t,i| + 1) < tol_grad; (2) relative cost decrease
< tol_cost; (3) μ > mu_max; (4) `iterations` reached. μ starts at 0, so on a linear-quadratic
problem the first iteration is the exact Riccati solution (α = 1).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import torch

from planners.problem import PlanResult, Problem
from planners.rollout import (clamp_actions, finish, finite_or_inf, linearize, make_generator,
                              prepare, quadratize, randn, rollout)

_ALPHAS = tuple(10.0 ** (-3.0 * i / 10.0) for i in range(11))  # Tassa's iLQG.m: 10^linspace(0,-3,11)


def box_qp(hess: torch.Tensor, grad: torch.Tensor, low: torch.Tensor, high: torch.Tensor,
           x0: torch.Tensor, iterations: int = 100
           ) -> Optional[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """min ½ xᵀ H x + gᵀ x s.t. low ≤ x ≤ high by projected Newton (Tassa et al. 2014, Alg. 2).

    hess [A, A], grad [A], low/high/x0 [A] -> (x [A], free [A] bool, Cholesky factor of H on
    the free dimensions [F, F]); None when H restricted to the free set is not positive definite.
    """
    if hess.shape[0] == 1:  # one action: the clamped Newton step is exact
        h = hess[0, 0]
        if not bool(h > 0):
            return None
        x = torch.minimum(torch.maximum(-grad / h, low), high)
        free = (x > low) & (x < high)
        return x, free, h.sqrt().reshape(1, 1)
    x = torch.minimum(torch.maximum(x0, low), high)
    value = lambda v: 0.5 * v @ hess @ v + grad @ v  # noqa: E731
    chol = None
    free = torch.ones_like(x, dtype=torch.bool)
    for _ in range(iterations):
        g = grad + hess @ x
        free = ~(((x <= low) & (g > 0)) | ((x >= high) & (g < 0)))
        if not bool(free.any()):
            break
        chol, bad = torch.linalg.cholesky_ex(hess[free][:, free])
        if int(bad) != 0:
            return None
        g_free = g[free]
        if float(g_free.norm()) < 1e-12:
            break
        dx = torch.zeros_like(x)
        dx[free] = -torch.cholesky_solve(g_free.unsqueeze(1), chol).squeeze(1)
        slope, f0, step = float(g @ dx), float(value(x)), 1.0
        while step > 1e-10:  # Armijo on the projected path, factor 0.6 (Tassa's boxQP.m)
            cand = torch.minimum(torch.maximum(x + step * dx, low), high)
            if float(value(cand)) - f0 <= 0.1 * step * slope:
                break
            step *= 0.6
        done = float((cand - x).abs().max()) < 1e-12
        x = cand
        if done:
            break
    g = grad + hess @ x
    free = ~(((x <= low) & (g > 0)) | ((x >= high) & (g < 0)))
    if bool(free.any()):
        chol, bad = torch.linalg.cholesky_ex(hess[free][:, free])
        if int(bad) != 0:
            return None
    else:
        chol = hess.new_zeros(0, 0)
    return x, free, chol


@dataclass(frozen=True)
class ILQR:
    """Settings of iLQR (stateless); see the module docstring for the algorithm."""

    iterations: int = 50  # cap on backward passes, failed ones included (iLQG.m allows 500)
    tol_grad: float = 1e-4  # Tassa's iLQG.m tolGrad
    # the gradient test stops only while μ is below this (iLQG.m's 1e-5): a large μ shrinks the
    # step k, and with it the test's gradient, far from the optimum
    tol_grad_mu: float = 1e-5
    tol_cost: float = 1e-7  # Tassa's iLQG.m tolFun (relative here)
    mu_init: float = 0.0  # μ at the start: 0 = plain Newton step (Tassa's code starts at 1)
    mu_min: float = 1e-6  # Tassa et al. 2012, Sec. II-F
    mu_max: float = 1e10  # Tassa's iLQG.m lambdaMax
    mu_factor: float = 1.6  # Δ0, Tassa's iLQG.m dlambda (the paper suggests 2)
    z_min: float = 0.0  # minimum actual / expected reduction to accept a step (iLQG.m zMin)
    alphas: tuple[float, ...] = _ALPHAS  # line-search step sizes, evaluated in one batch
    initial_trajectories: tuple[str, ...] = ("init",)  # from "init", "zeros", "random"; best kept
    random_std: float = 1.0  # std of "random" starts along unbounded dims (uniform if bounded)
    seed: int = 0  # used only when plan() gets no generator and "random" is requested
    # also return the local feedback policy of the returned plan: info["feedback_gains"] K [H, A, S]
    # and info["nominal_states"] x̄ [H+1, S] from one more backward pass along it, so an MPC loop
    # can act u_t + K_t (s_t − x̄_t) between replans (planners.MPC(feedback=True))
    feedback: bool = False

    def __post_init__(self) -> None:
        unknown = set(self.initial_trajectories) - {"init", "zeros", "random"}
        if unknown or not self.initial_trajectories:
            raise ValueError(f"initial_trajectories must be a non-empty tuple of 'init', 'zeros', "
                             f"'random'; got {self.initial_trajectories!r}")
        if self.iterations < 1 or not self.alphas or min(self.alphas) <= 0:
            raise ValueError(f"need iterations >= 1 and positive alphas; got {self.iterations}, "
                             f"{self.alphas}")
        if self.mu_init < 0 or self.mu_min <= 0 or self.mu_factor <= 1:
            raise ValueError(f"need mu_init >= 0, mu_min > 0, mu_factor > 1; got {self.mu_init}, "
                             f"{self.mu_min}, {self.mu_factor}")

    def plan(self, problem: Problem, state: torch.Tensor, init: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None) -> PlanResult:
        """Optimise from each initial trajectory; return the best (and the warm start as fallback)."""
        started = time.perf_counter()
        state, u0 = prepare(problem, state, init)
        low, high = problem.bounds(state)
        starts = []
        gen = make_generator(generator, self.seed)  # one stream: two "random" starts differ
        for name in self.initial_trajectories:
            if name == "init":
                starts.append(u0)
            elif name == "zeros":
                starts.append(problem.default_actions(state))
            else:
                z = randn((problem.horizon, problem.dim_action), gen, state)
                finite = torch.isfinite(low) & torch.isfinite(high)
                uniform = low + (high - low).nan_to_num(0.0, 0.0, 0.0) * torch.special.ndtr(z)
                starts.append(clamp_actions(torch.where(finite, uniform, self.random_std * z),
                                            low, high))
        runs = [self._optimise(problem, state, u, low, high) for u in starts]
        best = min(range(len(runs)), key=lambda i: runs[i][1])
        u_best, _, info = runs[best]
        info["start"] = self.initial_trajectories[best]
        info["start_costs"] = [r[1] for r in runs]
        result = finish(problem, state, torch.stack([u0, u_best]), info, started)
        if self.feedback and math.isfinite(result.cost):
            self._attach_feedback(problem, state, result, low, high)
        return result

    def _attach_feedback(self, problem: Problem, state: torch.Tensor, result: PlanResult,
                         low: torch.Tensor, high: torch.Tensor) -> None:
        """The gains K of the Riccati pass along the returned plan (μ raised until Q_aa is PD;
        zero rows where a bound is active), as info["feedback_gains"] / ["nominal_states"]."""
        u = result.actions
        with torch.no_grad():
            x, _ = rollout(problem, state, u)
        fs, fa = linearize(problem, x[:-1], u)
        q = quadratize(problem, x, u)
        bounded = bool(torch.isfinite(low).any() or torch.isfinite(high).any())
        mu = self.mu_init
        while mu <= self.mu_max:
            back = self._backward(fs, fa, q, u, low, high, mu, torch.zeros_like(u), bounded)
            if back is not None:
                result.info["feedback_gains"], result.info["nominal_states"] = back[1], x
                result.info["feedback_mu"] = mu
                return
            mu = max(self.mu_min, mu * self.mu_factor)
        result.info["feedback_reason"] = "Q_aa not positive definite up to mu_max: no gains"

    def _optimise(self, problem: Problem, state: torch.Tensor, u: torch.Tensor,
                  low: torch.Tensor, high: torch.Tensor) -> tuple[torch.Tensor, float, dict]:
        """iLQR from one initial trajectory u [H, A] -> (u*, J(u*), info)."""
        with torch.no_grad():
            x, cost = rollout(problem, state, u)
        info: dict = {"converged": False, "cost_history": [], "iterations": 0, "mu": [],
                      "backward_passes": 0}
        if not math.isfinite(float(cost)):
            info["reason"] = "the initial trajectory's cost is NaN or inf"
            return u, math.inf, info
        cost = float(cost)
        alphas = torch.tensor(self.alphas, dtype=state.dtype, device=state.device)  # [L]
        bounded = bool(torch.isfinite(low).any() or torch.isfinite(high).any())
        mu, delta = self.mu_init, 1.0
        k_prev = torch.zeros_like(u)
        derivs = None
        for _ in range(self.iterations):
            if derivs is None:
                fs, fa = linearize(problem, x[:-1], u)
                derivs = (fs, fa, quadratize(problem, x, u))
            back = self._backward(*derivs, u, low, high, mu, k_prev, bounded)
            info["backward_passes"] += 1
            if back is None:  # Q_aa not positive definite: raise μ and retry
                delta = max(self.mu_factor, delta * self.mu_factor)
                mu = max(self.mu_min, mu * delta)
                if mu > self.mu_max:
                    info["reason"] = "regularisation exceeded mu_max (Q_aa never PD)"
                    break
                continue
            k, K, dv1, dv2 = back
            k_prev = k
            grad = float((k.abs() / (u.abs() + 1.0)).amax(dim=1).mean())
            if grad < self.tol_grad and mu < self.tol_grad_mu:
                info["converged"] = True
                break
            xs, us, costs = self._forward(problem, state, x, u, k, K, alphas, low, high)
            expected = -(alphas * dv1 + alphas.pow(2) * dv2)  # [L] predicted decrease, > 0
            actual = cost - costs
            ratio = torch.where(expected > 0, actual / expected, torch.sign(actual))
            ok = (ratio > self.z_min) & torch.isfinite(costs) & (actual > 0)
            if not bool(ok.any()):
                delta = max(self.mu_factor, delta * self.mu_factor)
                mu = max(self.mu_min, mu * delta)
                if mu > self.mu_max:
                    info["reason"] = "line search failed with mu at mu_max"
                    break
                continue
            i = int(ok.nonzero()[0])  # largest accepted α
            new_cost = float(costs[i])
            decrease = (cost - new_cost) / max(abs(cost), 1e-12)
            x, u, cost, derivs = xs[:, i], us[:, i], new_cost, None
            info["iterations"] += 1
            info["cost_history"].append(cost)
            info["mu"].append(mu)
            delta = min(delta / self.mu_factor, 1.0 / self.mu_factor)
            mu = mu * delta if mu * delta > self.mu_min else 0.0
            if decrease < self.tol_cost:
                info["converged"] = True
                break
        info["final_mu"] = mu
        return u, cost, info

    @staticmethod
    def _backward(fs: torch.Tensor, fa: torch.Tensor, q: dict[str, torch.Tensor],
                  u: torch.Tensor, low: torch.Tensor, high: torch.Tensor, mu: float,
                  k_prev: torch.Tensor, bounded: bool
                  ) -> Optional[tuple[torch.Tensor, torch.Tensor, float, float]]:
        """Riccati recursion -> (k [H, A], K [H, A, S], Σ kᵀQ_a, Σ ½ kᵀQ_aa k) or None if not PD.

        Positive-definiteness failures are collected and checked once after the loop (they only
        produce NaNs on the way), to keep the recursion free of host synchronisation.
        """
        H, S, A = fa.shape
        ks, Ks = [], []
        v_s, v_ss = q["V_s"], q["V_ss"]
        dv1 = torch.zeros((), dtype=u.dtype, device=u.device)
        dv2 = torch.zeros_like(dv1)
        bad = torch.zeros((), dtype=torch.bool, device=u.device)
        for t in range(H - 1, -1, -1):
            A_t, B_t = fs[t], fa[t]
            q_s = q["l_s"][t] + v_s @ A_t
            q_a = q["l_a"][t] + v_s @ B_t
            vA, vB = v_ss @ A_t, v_ss @ B_t  # [S, S], [S, A]
            q_ss = q["l_ss"][t] + A_t.T @ vA
            q_aa = q["l_aa"][t] + B_t.T @ vB
            q_as = q["l_as"][t] + B_t.T @ vA
            q_aa_r, q_as_r = q_aa, q_as
            if mu > 0:  # Tassa 2012 eq. (10): regularise the state-value Hessian
                q_aa_r = q_aa + mu * B_t.T @ B_t
                q_as_r = q_as + mu * B_t.T @ A_t
            if A == 1:  # scalar control: the box QP is a clamped Newton step
                h = q_aa_r.reshape(())
                if not bool(h > 0):  # cheap on the CPU; stops a doomed pass early
                    return None
                k_free = -q_a / h
                k_t = clamp_actions(k_free, low - u[t], high - u[t]) if bounded else k_free
                K_t = -q_as_r / h
                if bounded:
                    K_t = torch.where((k_t == k_free).unsqueeze(1), K_t, torch.zeros_like(K_t))
            elif not bounded:
                chol, info = torch.linalg.cholesky_ex(0.5 * (q_aa_r + q_aa_r.T))
                bad = bad | (info != 0)
                k_t = -torch.cholesky_solve(q_a.unsqueeze(1), chol).squeeze(1)
                K_t = -torch.cholesky_solve(q_as_r, chol)
            else:
                sol = box_qp(0.5 * (q_aa_r + q_aa_r.T), q_a, low - u[t], high - u[t], k_prev[t])
                if sol is None:
                    return None
                k_t, free, chol = sol
                K_t = torch.zeros(A, S, dtype=u.dtype, device=u.device)
                if bool(free.any()):
                    K_t[free] = -torch.cholesky_solve(q_as_r[free], chol)
            ks.append(k_t)
            Ks.append(K_t)
            # Tassa 2012 eq. (11): value expansion with the unregularised Q terms.
            KtQaa = K_t.T @ q_aa  # [S, A]
            v_s = q_s + KtQaa @ k_t + K_t.T @ q_a + k_t @ q_as
            cross = K_t.T @ q_as  # [S, S]
            v_ss = q_ss + KtQaa @ K_t + cross + cross.T
            v_ss = 0.5 * (v_ss + v_ss.T)
            dv1 = dv1 + k_t @ q_a
            dv2 = dv2 + 0.5 * k_t @ q_aa @ k_t
        if bool(bad) or not math.isfinite(float(dv1)):
            return None
        return torch.stack(ks[::-1]), torch.stack(Ks[::-1]), float(dv1), float(dv2)

    @staticmethod
    def _forward(problem: Problem, state: torch.Tensor, x: torch.Tensor, u: torch.Tensor,
                 k: torch.Tensor, K: torch.Tensor, alphas: torch.Tensor, low: torch.Tensor,
                 high: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed-loop rollouts for all step sizes at once -> x' [H+1, L, S], u' [H, L, A], J [L]."""
        H, L = u.shape[0], alphas.shape[0]
        xs = torch.empty(H + 1, L, x.shape[1], dtype=x.dtype, device=x.device)
        us = torch.empty(H, L, u.shape[1], dtype=u.dtype, device=u.device)
        s = state.unsqueeze(0).expand(L, -1)  # [L, S]
        xs[0] = s
        cost = torch.zeros(L, dtype=x.dtype, device=x.device)
        with torch.no_grad():
            for t in range(H):
                a = u[t] + alphas.unsqueeze(1) * k[t] + (s - x[t]) @ K[t].T  # [L, A]
                a = clamp_actions(a, low, high)
                cost = cost + problem.running_cost(s, a)
                s = problem.step(s, a)
                xs[t + 1], us[t] = s, a
            if problem.terminal_cost is not None:
                cost = cost + problem.terminal_cost(s)
        return xs, us, finite_or_inf(cost)
