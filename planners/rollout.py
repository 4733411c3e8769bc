"""Pieces shared by every planner: rollouts, batched derivatives, bounds, sampling, results.

Notation as in `planners.problem`: s [N, S] states, a [N, A] actions, H horizon, x [H+1, S] and
u [H, A] one trajectory, U [N, H, A] a batch of action sequences. Costs that are NaN or infinite
are mapped to +inf so that a min over candidates never picks them.
"""
from __future__ import annotations

import math
import time
from typing import Optional

import torch
from torch.func import jacfwd, jacrev, vmap

from planners.problem import PlanResult, Problem

_SMALL = 16  # up to this many state (or state + action) dims, loop backward passes, else vmap


def clamp_actions(u: torch.Tensor, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
    """Project actions onto the box [low, high] (low, high [A] broadcast over leading dims)."""
    return torch.maximum(torch.minimum(u, high), low)


def finite_or_inf(cost: torch.Tensor) -> torch.Tensor:
    """Replace NaN and ±inf by +inf, so that such candidates are never chosen."""
    return torch.where(torch.isfinite(cost), cost, torch.full_like(cost, math.inf))


def total_cost(problem: Problem, state: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """J for each of N action sequences from one start state, one `step` call per time step.

    state [S]; actions [N, H, A] -> cost [N] (non-finite -> +inf).
    """
    n = actions.shape[0]
    s = state.unsqueeze(0).expand(n, -1)  # [N, S]
    per_step = actions.transpose(0, 1)  # [H, N, A]
    cost = torch.zeros(n, dtype=state.dtype, device=state.device)
    for t in range(per_step.shape[0]):
        cost = cost + problem.running_cost(s, per_step[t])
        s = problem.step(s, per_step[t])
    if problem.terminal_cost is not None:
        cost = cost + problem.terminal_cost(s)
    return finite_or_inf(cost)


def policy_samples(problem: Problem, state: torch.Tensor, n: int, generator: torch.Generator
                   ) -> Optional[torch.Tensor]:
    """n sequences [n, H, A] from the problem's policy prior (`Problem.proposal`), in the box and
    the start state's dtype; None when n is 0. Sampling planners add them to their candidates."""
    if n == 0:
        return None
    if problem.proposal is None:
        raise ValueError(f"policy_candidates={n} needs a problem with a proposal (a policy prior, "
                         "e.g. a model trained with value_target='imagined'); set "
                         "policy_candidates=0 to plan without one")
    with torch.no_grad():
        u = problem.proposal(state, n, generator)
    want = (n, problem.horizon, problem.dim_action)
    if tuple(u.shape) != want:
        raise ValueError(f"proposal returned shape {tuple(u.shape)}, expected {list(want)}")
    low, high = problem.bounds(state)
    return clamp_actions(u.to(state.dtype), low, high)


def rollout(problem: Problem, state: torch.Tensor, u: torch.Tensor
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """States and total cost of one action sequence: state [S], u [H, A] -> x [H+1, S], J []."""
    x = torch.empty(u.shape[0] + 1, state.numel(), dtype=state.dtype, device=state.device)
    x[0] = state
    cost = torch.zeros((), dtype=state.dtype, device=state.device)
    for t in range(u.shape[0]):
        cost = cost + problem.running_cost(x[t:t + 1], u[t:t + 1])[0]
        x[t + 1] = problem.step(x[t:t + 1], u[t:t + 1])[0]
    if problem.terminal_cost is not None:
        cost = cost + problem.terminal_cost(x[-1:])[0]
    return x, finite_or_inf(cost)


def linearize(problem: Problem, x: torch.Tensor, u: torch.Tensor
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Jacobians of `step` along a trajectory, batched over time.

    x [H, S], u [H, A] -> (f_s [H, S, S], f_a [H, S, A]). Uses `problem.jacobians` when given,
    otherwise torch.func: vmap over time of jacrev of the single-sample step.
    """
    if problem.jacobians is not None:
        with torch.no_grad():
            return problem.jacobians(x, u)
    if x.shape[1] <= _SMALL:  # few outputs: one backward pass per output row is cheapest
        with torch.inference_mode(False), torch.enable_grad():
            xg, ug = x.clone().requires_grad_(True), u.clone().requires_grad_(True)
            out = problem.step(xg, ug)  # [H, S]; rows are independent samples
            rows = [torch.autograd.grad(out[:, j].sum(), (xg, ug), retain_graph=True,
                                        allow_unused=True) for j in range(out.shape[1])]
        zero = lambda r, like: torch.zeros_like(like) if r is None else r  # noqa: E731
        return (torch.stack([zero(r[0], x) for r in rows], 1).detach(),
                torch.stack([zero(r[1], u) for r in rows], 1).detach())

    def f(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:  # [S], [A] -> [S]
        return problem.step(s.unsqueeze(0), a.unsqueeze(0)).squeeze(0)

    with torch.inference_mode(False), torch.enable_grad():
        fs, fa = vmap(jacrev(f, argnums=(0, 1)))(x.clone(), u.clone())
    return fs.detach(), fa.detach()


def _grad_and_hessian(fn, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradient [N, D] and Hessian [N, D, D] of a batched cost fn(z [N, D]) -> [N] at each row.

    Rows must be independent (true of any batched cost), so one backward pass of the summed cost
    gives all gradients. Hessians: D double-backward passes when D is small, else torch.func
    (vmap over rows of jacfwd(jacrev)).
    """
    with torch.inference_mode(False), torch.enable_grad():
        if z.shape[1] <= _SMALL:
            zg = z.clone().requires_grad_(True)
            total = fn(zg).sum()
            if not total.requires_grad:  # a cost that ignores its inputs (say zero running cost)
                return torch.zeros_like(z), z.new_zeros(*z.shape, z.shape[1])
            g, = torch.autograd.grad(total, zg, create_graph=True, allow_unused=True)  # [N, D]
            if g is None:
                return torch.zeros_like(z), z.new_zeros(*z.shape, z.shape[1])
            rows = []
            for j in range(z.shape[1]):
                if g.requires_grad:
                    row, = torch.autograd.grad(g[:, j].sum(), zg, retain_graph=True,
                                               allow_unused=True)
                else:
                    row = None
                rows.append(torch.zeros_like(z) if row is None else row)
            return g.detach(), torch.stack(rows, 1).detach()

        def one(v: torch.Tensor) -> torch.Tensor:  # [D] -> []
            return fn(v.unsqueeze(0)).squeeze(0)

        def grad_twice(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            g = jacrev(one)(v)
            return g, g

        hess, grad = vmap(jacfwd(grad_twice, has_aux=True))(z.clone())
    return grad.detach(), hess.detach()


def quadratize(problem: Problem, x: torch.Tensor, u: torch.Tensor) -> dict[str, torch.Tensor]:
    """Second-order expansion of the costs along a trajectory (x [H+1, S], u [H, A]).

    Returns l_s [H, S], l_a [H, A], l_ss [H, S, S], l_aa [H, A, A], l_as [H, A, S] of the running
    cost and V_s [S], V_ss [S, S] of the terminal cost (zeros when there is none).
    """
    n_s = x.shape[1]

    def running(z: torch.Tensor) -> torch.Tensor:  # [N, S + A] -> [N]
        return problem.running_cost(z[:, :n_s], z[:, n_s:])

    g, h = _grad_and_hessian(running, torch.cat([x[:-1], u], dim=1))
    out = {"l_s": g[:, :n_s], "l_a": g[:, n_s:], "l_ss": h[:, :n_s, :n_s],
           "l_aa": h[:, n_s:, n_s:], "l_as": h[:, n_s:, :n_s]}
    if problem.terminal_cost is None:
        out["V_s"] = torch.zeros(n_s, dtype=x.dtype, device=x.device)
        out["V_ss"] = torch.zeros(n_s, n_s, dtype=x.dtype, device=x.device)
    else:
        gf, hf = _grad_and_hessian(problem.terminal_cost, x[-1:])
        out["V_s"], out["V_ss"] = gf[0], hf[0]
    return out


def make_generator(generator: Optional[torch.Generator], seed: int) -> torch.Generator:
    """The caller's generator, or a fresh CPU generator seeded with `seed` (no global RNG)."""
    if generator is not None:
        return generator
    return torch.Generator().manual_seed(seed)


def randn(shape: tuple[int, ...], generator: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    """Standard normal samples drawn on the generator's device, moved to `like`'s dtype/device."""
    z = torch.randn(shape, generator=generator, device=generator.device,
                    dtype=like.dtype if generator.device == like.device else torch.float32)
    return z.to(device=like.device, dtype=like.dtype)


def coloured_noise(n: int, horizon: int, dim: int, beta: float, generator: torch.Generator,
                   like: torch.Tensor) -> torch.Tensor:
    """Unit-variance Gaussian noise [n, horizon, dim] with power spectrum ∝ 1/f^beta along time.

    beta = 0 is white noise; iCEM (Pinneri et al. 2020) uses beta ≈ 2-2.5 for smoother actions.
    Built in the frequency domain: random complex amplitudes scaled by f^(-beta/2), then irfft,
    divided by the exact standard deviation of that construction.
    """
    if beta == 0.0:
        return randn((n, horizon, dim), generator, like)
    k = horizon // 2 + 1
    freqs = torch.fft.rfftfreq(horizon, dtype=torch.float64, device=like.device)
    freqs[0] = 1.0 / horizon  # the DC bin gets the lowest non-zero frequency's weight
    scale = freqs.pow(-beta / 2.0)  # [k]
    re = randn((n, dim, k), generator, like).double()
    im = randn((n, dim, k), generator, like).double()
    im[..., 0] = 0.0  # DC is real
    if horizon % 2 == 0:
        im[..., -1] = 0.0  # so is the Nyquist bin of an even length
    x = torch.fft.irfft(torch.complex(re * scale, im * scale), n=horizon)  # [n, dim, H]
    # Var x_t = (s_0^2 + 4 sum_mid s_k^2 [+ s_Nyq^2 if H even]) / H^2 for this construction.
    w = torch.full((k,), 4.0, dtype=torch.float64, device=like.device)
    w[0] = 1.0
    if horizon % 2 == 0:
        w[-1] = 1.0
    std = math.sqrt(float((w * scale.pow(2)).sum())) / horizon
    return (x / std).transpose(1, 2).to(device=like.device, dtype=like.dtype)


def finish(problem: Problem, state: torch.Tensor, plans: torch.Tensor, info: dict,
           started: float) -> PlanResult:
    """Choose the cheapest finite plan among plans [K, H, A] (plans[0] is the warm start).

    Re-evaluates all K with one batched rollout, so `cost` is exactly the cost of `actions`.
    Sets info["improved"] (and info["reason"] when False), info["init_cost"], info["time_s"].
    """
    low, high = problem.bounds(state)
    plans = clamp_actions(plans, low, high)
    with torch.no_grad():
        costs = total_cost(problem, state, plans)  # [K]
    best = int(torch.argmin(costs))
    init_cost = float(costs[0])
    info["init_cost"] = init_cost
    if not math.isfinite(float(costs[best])):
        info["improved"] = False
        info["reason"] = "no plan had a finite cost (every rollout gave NaN or inf)"
    elif best == 0 or not float(costs[best]) < init_cost:
        best = 0
        info["improved"] = False
        info["reason"] = "no plan found was cheaper than the warm start (init)"
    else:
        info["improved"] = True
    info["time_s"] = time.perf_counter() - started
    return PlanResult(actions=plans[best].detach().clone(), cost=float(costs[best]), info=info)


def prepare(problem: Problem, state: torch.Tensor, init: Optional[torch.Tensor]
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate the inputs and return (state [S] detached, warm start [H, A] clamped, same dtype)."""
    problem.check(state, init)
    state = state.detach()
    if init is None:
        u0 = problem.default_actions(state)
    else:
        low, high = problem.bounds(state)
        u0 = clamp_actions(init.detach().to(device=state.device, dtype=state.dtype), low, high)
    return state, u0
