"""Random shooting: sample N action sequences, roll all out in one batch, keep the cheapest.

U [N, H, A] candidates. With finite bounds they are uniform in the box; along an unbounded
dimension they are Gaussian around the warm start with `std`. The baseline of Nagabandi et al.
2018 ("Neural network dynamics for model-based deep RL with model-free fine-tuning").
With `policy_candidates` the problem's policy prior adds its own sequences (`Problem.proposal`);
candidates=0 then scores only those: a learned policy's plans, the best kept by the model.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional

import torch

from planners.problem import PlanResult, Problem
from planners.rollout import (clamp_actions, finish, make_generator, policy_samples, prepare,
                              randn, total_cost)


@dataclass(frozen=True)
class RandomShooting:
    """Settings of random shooting (stateless)."""

    candidates: int = 1000  # PlaNet's CEM population (Hafner et al. 2019), one round here
    std: float = 1.0  # Gaussian std along unbounded action dimensions (PlaNet's initial CEM std)
    seed: int = 0  # used only when plan() gets no generator
    policy_candidates: int = 0  # sequences from problem.proposal (a policy prior); 0 = none

    def __post_init__(self) -> None:
        if self.candidates < 0 or self.policy_candidates < 0 or self.candidates + self.policy_candidates < 1:
            raise ValueError("candidates and policy_candidates must be >= 0 and not both 0, got "
                             f"{self.candidates}, {self.policy_candidates}")
        if not self.std > 0:
            raise ValueError(f"std must be > 0, got {self.std}")

    def sample(self, problem: Problem, init: torch.Tensor, generator: torch.Generator
               ) -> torch.Tensor:
        """The candidates [N, H, A] this planner evaluates (init [H, A] is the warm start)."""
        low, high = problem.bounds(init)
        shape = (self.candidates, problem.horizon, problem.dim_action)
        z = randn(shape, generator, init)  # [N, H, A]
        finite = torch.isfinite(low) & torch.isfinite(high)  # [A]
        # Uniform in the box via the normal CDF of the same draw: one stream for both cases.
        uniform = low + (high - low).nan_to_num(0.0, 0.0, 0.0) * torch.special.ndtr(z)
        gaussian = init.unsqueeze(0) + self.std * z
        return clamp_actions(torch.where(finite, uniform, gaussian), low, high)

    def plan(self, problem: Problem, state: torch.Tensor, init: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None) -> PlanResult:
        """Best of `candidates` random sequences (or the warm start if none beats it)."""
        started = time.perf_counter()
        state, u0 = prepare(problem, state, init)
        gen = make_generator(generator, self.seed)
        with torch.no_grad():
            samples = self.sample(problem, u0, gen)
            policy = policy_samples(problem, state, self.policy_candidates, gen)
            if policy is not None:
                samples = torch.cat([samples, policy])
            costs = total_cost(problem, state, samples)  # [N]
            best = int(torch.argmin(costs))
        info = {"iterations": 1, "converged": True, "cost_history": [float(costs[best])],
                "candidates": self.candidates, "samples": samples.shape[0]}
        return finish(problem, state, torch.stack([u0, samples[best]]), info, started)
