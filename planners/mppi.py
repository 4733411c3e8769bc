"""Model-predictive path integral control (MPPI), in the elite-weighted form of TD-MPC2.

Each iteration samples U [N, H, A] = clip(μ + σ ⊙ ε), rolls them out, takes the K cheapest and
weights them by w_k ∝ exp(−λ (J_k − min J)) (λ = `temperature`; TD-MPC2 writes the same thing as
exp(λ (return − max return)), so a larger λ is greedier). Then
    μ ← m μ + (1 − m) Σ w_k U_k,   σ ← clip(sqrt(Σ w_k (U_k − μ)²), σ_min, σ_max).
Defaults follow TD-MPC2 (Hansen et al. 2024, `config.yaml`): 6 iterations, 512 samples, 64
elites, λ = 0.5, σ ∈ [0.05, 2] starting at 2, no momentum; TD-MPC2's horizon is 3 (set it in the
problem). Unlike TD-MPC2, which samples one elite by weight, the plan is the weighted mean μ
(Williams et al. 2017), so that planning is deterministic given the generator.
TD-MPC2 also adds `num_pi_trajs` = 24 sequences from its policy prior to every iteration's samples;
`policy_candidates` does the same with the problem's `proposal` (drawn once per plan, as there).
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
class MPPI:
    """Settings of MPPI (stateless)."""

    iterations: int = 6  # TD-MPC2 (Hansen et al. 2024)
    samples: int = 512  # TD-MPC2 num_samples
    elites: int = 64  # TD-MPC2 num_elites
    temperature: float = 0.5  # TD-MPC2; multiplies (return − max return) in the exponent
    init_std: float = 2.0  # TD-MPC2 starts σ at max_std
    min_std: float = 0.05  # TD-MPC2
    max_std: float = 2.0  # TD-MPC2
    momentum: float = 0.0  # TD-MPC2 uses none
    warm_start: bool = True  # start μ at `init` (TD-MPC2 shifts the previous mean)
    noise_beta: float = 0.0  # coloured noise along time (0 = white, as TD-MPC2)
    policy_candidates: int = 0  # N_π sequences from problem.proposal per plan; TD-MPC2 uses 24
    seed: int = 0  # used only when plan() gets no generator

    def __post_init__(self) -> None:
        if self.iterations < 1 or self.samples < 1 or not 1 <= self.elites <= self.samples:
            raise ValueError(f"need iterations >= 1 and 1 <= elites <= samples; got "
                             f"{self.iterations}, {self.elites}, {self.samples}")
        if not self.temperature > 0 or not 0 <= self.min_std <= self.max_std:
            raise ValueError(f"need temperature > 0 and 0 <= min_std <= max_std; got "
                             f"{self.temperature}, {self.min_std}, {self.max_std}")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {self.momentum}")
        if self.policy_candidates < 0:
            raise ValueError(f"policy_candidates must be >= 0, got {self.policy_candidates}")

    def plan(self, problem: Problem, state: torch.Tensor, init: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None) -> PlanResult:
        """Run MPPI from `state` [S]; `init` [H, A] is the warm start (and the fallback plan)."""
        started = time.perf_counter()
        state, u0 = prepare(problem, state, init)
        gen = make_generator(generator, self.seed)
        low, high = problem.bounds(state)
        H, A = problem.horizon, problem.dim_action
        mean = u0.clone() if self.warm_start else problem.default_actions(state)  # [H, A]
        std = torch.full_like(mean, self.init_std)  # [H, A]
        policy = policy_samples(problem, state, self.policy_candidates, gen)  # [N_π, H, A] or None
        history: list[float] = []
        info: dict = {"converged": False}
        best_cost = math.inf
        rolled = 0  # sequences rolled out, the iteration that found no finite cost included
        with torch.no_grad():
            for i in range(self.iterations):
                noise = coloured_noise(self.samples, H, A, self.noise_beta, gen, state)
                samples = clamp_actions(mean + std * noise, low, high)  # [N, H, A]
                if policy is not None:
                    samples = torch.cat([samples, policy])  # [N + N_π, H, A]
                costs = total_cost(problem, state, samples)  # [N (+ N_π)]
                rolled += samples.shape[0]
                if policy is not None and i == 0:  # how good the policy prior's best plan is
                    info["policy_cost"] = float(costs[-policy.shape[0]:].min())
                elite_costs, idx = torch.topk(costs, self.elites, largest=False)
                finite = torch.isfinite(elite_costs)
                if not bool(finite.any()):
                    info["reason"] = f"iteration {i}: every sample's cost was NaN or inf"
                    break
                elites, elite_costs = samples[idx[finite]], elite_costs[finite]  # [K, H, A], [K]
                w = torch.softmax(-self.temperature * (elite_costs - elite_costs[0]), dim=0)
                new_mean = torch.einsum("k,kha->ha", w, elites)
                spread = torch.einsum("k,kha->ha", w, (elites - new_mean).pow(2)).sqrt()
                mean = self.momentum * mean + (1 - self.momentum) * new_mean
                std = spread.clamp(self.min_std, self.max_std)
                best_cost = min(best_cost, float(elite_costs[0]))
                history.append(float(elite_costs[0]))
        info.update(iterations=len(history), cost_history=history, best_sample_cost=best_cost,
                    samples=rolled)
        return finish(problem, state, torch.stack([u0, clamp_actions(mean, low, high)]), info,
                      started)
