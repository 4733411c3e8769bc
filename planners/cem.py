"""Cross-entropy method (CEM) with the improvements of iCEM as options.

Each iteration i samples U [N_i, H, A] = clip(μ + σ ⊙ ε), ε unit Gaussian noise (white, or
coloured with spectrum 1/f^β along time), rolls all candidates out in one batch, and refits the
diagonal Gaussian (μ [H, A], σ [H, A]) to the K cheapest ("elites"):
    μ ← m μ + (1 − m) mean(elites),   σ ← max(m σ + (1 − m) std(elites), σ_min).
PlaNet (Hafner et al. 2019, Sec. 3 / App. A): horizon 12, 10 iterations, 1000 candidates,
100 elites, μ starts at 0 and σ at 1 each step, the plan is the final mean.
iCEM (Pinneri et al. 2020): coloured noise β, a fraction of elites carried into the next
iteration, population decay γ, momentum m, shifted warm start, return the best sequence seen.
TD-MPC (Hansen et al. 2022, Sec. 3.2): N_π sequences drawn once per plan from a policy prior (the
problem's `proposal`; 24 beside 512 samples there) join the candidates of every iteration, so a
learned policy's plan competes with the sampled ones and, when it wins, pulls the Gaussian to it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import torch

from planners.problem import PlanResult, Problem
from planners.rollout import (clamp_actions, coloured_noise, finish, make_generator, policy_samples,
                              prepare, total_cost)


@dataclass(frozen=True)
class CEM:
    """Settings of CEM / iCEM (stateless). The problem's horizon is PlaNet's 12 in `planet`."""

    iterations: int = 10  # PlaNet (Hafner et al. 2019), optimisation iterations per step
    candidates: int = 1000  # PlaNet, candidate sequences per iteration
    elites: int = 100  # PlaNet, top-K refit
    init_std: float = 1.0  # PlaNet, σ at the start of each plan (μ = 0 or the warm start)
    min_std: float = 0.0  # floor on σ; PlaNet has none
    noise_beta: float = 0.0  # coloured-noise exponent; 0 = white (PlaNet), iCEM uses 2.0-2.5
    keep_elites: float = 0.0  # fraction of elites carried to the next iteration; iCEM 0.3
    population_decay: float = 1.0  # N_i = N / γ^i, at least 2K; iCEM γ = 1.25
    momentum: float = 0.0  # m in the refit; iCEM 0.1 (PlaNet none)
    warm_start: bool = False  # start μ at `init` (iCEM's shifted mean) rather than 0 (PlaNet)
    return_best: bool = False  # return the best sequence seen (iCEM) rather than μ (PlaNet)
    stop_std: float = 0.0  # stop early once max σ < stop_std (0 = run all iterations)
    policy_candidates: int = 0  # N_π sequences from problem.proposal per plan (TD-MPC); 0 = none
    seed: int = 0  # used only when plan() gets no generator

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.candidates < 1:
            raise ValueError(f"iterations and candidates must be >= 1, got {self.iterations}, "
                             f"{self.candidates}")
        if not 1 <= self.elites <= self.candidates:
            raise ValueError(f"elites must be in [1, candidates={self.candidates}], got "
                             f"{self.elites}")
        if not 0.0 <= self.keep_elites <= 1.0 or not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"keep_elites must be in [0, 1] and momentum in [0, 1), got "
                             f"{self.keep_elites}, {self.momentum}")
        if self.population_decay < 1.0 or self.init_std <= 0 or self.min_std < 0:
            raise ValueError("need population_decay >= 1, init_std > 0, min_std >= 0; got "
                             f"{self.population_decay}, {self.init_std}, {self.min_std}")
        if self.policy_candidates < 0:
            raise ValueError(f"policy_candidates must be >= 0, got {self.policy_candidates}")

    @classmethod
    def planet(cls, **overrides) -> "CEM":
        """PlaNet's CEM (Hafner et al. 2019): 10 x 1000 candidates, 100 elites, plan = mean."""
        return cls(**overrides)

    @classmethod
    def icem(cls, **overrides) -> "CEM":
        """iCEM (Pinneri et al. 2020, Sec. 3 and Table S1): β = 2, 30 % elites kept, γ = 1.25,
        momentum 0.1, shifted warm start, best sequence returned; fewer samples (300 x 4)."""
        base = dict(iterations=4, candidates=300, elites=30, init_std=0.5, min_std=0.0,
                    noise_beta=2.0, keep_elites=0.3, population_decay=1.25, momentum=0.1,
                    warm_start=True, return_best=True)
        base.update(overrides)
        return cls(**base)

    def plan(self, problem: Problem, state: torch.Tensor, init: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None) -> PlanResult:
        """Run CEM from `state` [S]; `init` [H, A] is the warm start (and the fallback plan)."""
        started = time.perf_counter()
        state, u0 = prepare(problem, state, init)
        gen = make_generator(generator, self.seed)
        low, high = problem.bounds(state)
        H, A = problem.horizon, problem.dim_action
        mean = u0.clone() if self.warm_start else problem.default_actions(state)  # [H, A]
        std = torch.full_like(mean, self.init_std)  # [H, A]
        best_u, best_cost = u0.clone(), math.inf
        kept: Optional[torch.Tensor] = None  # [k, H, A] elites carried over (iCEM)
        policy = policy_samples(problem, state, self.policy_candidates, gen)  # [N_π, H, A] or None
        history: list[float] = []
        info: dict = {"converged": False}
        rolled = 0  # candidate sequences rolled out (kept elites count again: they are rolled again)
        with torch.no_grad():
            for i in range(self.iterations):
                n = max(int(math.ceil(self.candidates / self.population_decay ** i)),
                        2 * self.elites if self.population_decay > 1.0 else self.candidates)
                n = min(n, self.candidates)
                noise = coloured_noise(n, H, A, self.noise_beta, gen, state)  # [n, H, A]
                samples = clamp_actions(mean + std * noise, low, high)
                if kept is not None:
                    samples = torch.cat([samples, kept])
                if policy is not None:
                    samples = torch.cat([samples, policy])
                costs = total_cost(problem, state, samples)  # [n (+k)]
                rolled += samples.shape[0]
                if policy is not None and i == 0:  # how good the policy prior's best plan is
                    info["policy_cost"] = float(costs[-policy.shape[0]:].min())
                k = min(self.elites, samples.shape[0])
                elite_costs, idx = torch.topk(costs, k, largest=False)  # ascending
                finite = torch.isfinite(elite_costs)
                if not bool(finite.any()):
                    info["reason"] = f"iteration {i}: every candidate's cost was NaN or inf"
                    break
                elites = samples[idx[finite]]  # [K', H, A]
                if float(elite_costs[0]) < best_cost:
                    best_cost, best_u = float(elite_costs[0]), elites[0].clone()
                history.append(float(elite_costs[0]))
                m = self.momentum
                mean = m * mean + (1 - m) * elites.mean(0)
                std = m * std + (1 - m) * elites.std(0, unbiased=False)
                std = std.clamp_min(self.min_std)
                n_keep = int(math.ceil(self.keep_elites * elites.shape[0]))
                kept = elites[:n_keep] if n_keep > 0 else None
                if self.stop_std > 0 and float(std.max()) < self.stop_std:
                    info["converged"] = True
                    break
        info.update(iterations=len(history), cost_history=history, best_sample_cost=best_cost,
                    final_std_max=float(std.max()), samples=rolled)
        chosen = best_u if self.return_best else clamp_actions(mean, low, high)
        return finish(problem, state, torch.stack([u0, chosen]), info, started)
