"""The planning problem of a learned model: latent states, predicted rewards or a goal cost.

`WorldModel.planning_problem` builds a `planners.Problem` over flat latent states s [N, S] =
[deter, z mean] that steps the prior mean deterministically. Kept out of model.py because it is a
second job: arranging the trained networks for fast batched planning (planning_step.py), not
defining or training them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import torch

from worldmodel.transitions import LatentState
from worldmodel.value import state_value


@dataclass(frozen=True)
class GoalObjective:
    """E2C's quadratic goal cost (Watter et al. 2015): (s − s_goal)ᵀQ(s − s_goal) + aᵀRa.

    goal [S]; Q a float, a diagonal [S] or a matrix [S, S]; R likewise over actions [A].
    """

    goal: torch.Tensor
    Q: Union[torch.Tensor, float] = 1.0
    R: Union[torch.Tensor, float] = 0.0


def _quadratic(x: torch.Tensor, weight: Union[torch.Tensor, float]) -> torch.Tensor:
    """xᵀ W x per row of x [N, K]; W a float, diagonal [K] or matrix [K, K]. -> [N]"""
    w = torch.as_tensor(weight, dtype=x.dtype, device=x.device)
    if w.dim() == 2:
        return torch.einsum("ni,ij,nj->n", x, w, x)
    return (w * x * x).sum(-1)


def latent_problem(model: Any, start: Union[torch.Tensor, LatentState, None],
                   objective: Union[str, GoalObjective], horizon: int,
                   action_low: Union[torch.Tensor, float] = -1.0,
                   action_high: Union[torch.Tensor, float] = 1.0,
                   action_penalty: float = 0.0, exact_jacobians: bool = True,
                   precision: str = "float32", compile: bool = False,
                   terminal_value: bool = True):
    """A planners.Problem over flat states s [N, S] stepping the prior mean deterministically.

    objective "reward": running_cost(s, a) = −r̂(s) + action_penalty·|a|², terminal −r̂(s_H)
    (r̂(s_t) predicts the reward of a_{t−1}, so the t = 0 term is a harmless constant),
    and − V(s_H), the value of the rewards after the horizon, when the model has a value head
    and terminal_value is True (worldmodel.value); with an actor (value_target "imagined")
    the problem's `proposal` rolls it through the dynamics, the policy prior that CEM's
    `policy_candidates` mix into the candidates (TD-MPC, Hansen et al. 2022).
    GoalObjective: E2C's quadratic cost. For locally_linear, `jacobians` are supplied:
    the true Jacobians of `step` (exact_jacobians=True) or E2C's (A, B) linearisation.
    `start` (vector [S] / [1, S] or LatentState) only checks the size; the planner takes the
    start state itself, e.g. model.to_vector(state)[0].
    precision "bfloat16" runs the networks in bf16 (states and costs stay in the caller's
    dtype): an rssm casts a snapshot of its weights once (planning_step.py, which also fuses
    the GRU's arithmetic; build a new problem after training), other transitions run under
    bf16 autocast. `compile` wraps the step and the reward in `torch.compile`, which fuses
    the GRU's small elementwise kernels. Both are for sampling planners (CEM, MPPI, random);
    benchmarks/planner_speed.py measures their speed and what bf16 does to the chosen plan.
    """
    from planners import Problem  # planners depends on torch only; import lazily
    from worldmodel.device import check_precision

    check_precision(precision)

    if isinstance(start, LatentState):
        start = model.to_vector(start)
    if start is not None and start.shape[-1] != model.state_size:
        raise ValueError(f"start has shape {tuple(start.shape)}, expected [{model.state_size}]")

    bf16 = precision == "bfloat16"
    if objective == "reward" and model.reward_head is None:
        raise ValueError("objective 'reward' needs a reward head (predict_reward=True)")

    if model.cfg.transition == "rssm":  # the same maths, arranged for speed (planning_step.py)
        from worldmodel.planning_step import rssm_planning_functions

        step, reward = rssm_planning_functions(model, precision)
    else:
        def step(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
            with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model.transition.step(model.transition.from_vector(s), a)
            return out.vector(use_mean=True).to(s.dtype)

        def reward(s: torch.Tensor) -> torch.Tensor:
            with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=bf16):
                out = model.reward_head(s).squeeze(-1)
            return out.to(s.dtype)

    if compile:
        step = torch.compile(step)
    if objective == "reward":
        if compile:
            reward = torch.compile(reward)

        def running(s, a):
            return -reward(s) + action_penalty * (a * a).sum(-1)

        if terminal_value and model.value_head is not None:
            value = _value(model, bf16)
            terminal = lambda s: -(reward(s) + value(s))  # noqa: E731
        else:
            terminal = lambda s: -reward(s)  # noqa: E731
    elif isinstance(objective, GoalObjective):
        goal = objective.goal.reshape(-1)
        if goal.numel() != model.state_size:
            raise ValueError(f"goal has {goal.numel()} entries, expected {model.state_size}")
        running = lambda s, a: (_quadratic(s - goal.to(s), objective.Q)  # noqa: E731
                                + _quadratic(a, objective.R))
        terminal = lambda s: _quadratic(s - goal.to(s), objective.Q)  # noqa: E731
    else:
        raise ValueError(f"objective must be 'reward' or a GoalObjective, got {objective!r}")
    jac = None
    if model.cfg.transition == "locally_linear":
        jac = lambda s, a: model.transition.jacobians(s, a, exact=exact_jacobians)  # noqa: E731
    proposal = None
    if objective == "reward" and model.actor is not None:
        proposal = actor_proposal(model.actor, step, horizon)
    return Problem(step=step, running_cost=running, terminal_cost=terminal, horizon=horizon,
                   action_low=action_low, action_high=action_high,
                   action_dim=model.cfg.action_dim, jacobians=jac, proposal=proposal)


def _value(model: Any, bf16: bool):
    """V(s) [N] of flat states s [N, S], in s's dtype (bf16 under autocast when asked)."""
    head, discount = model.value_head, model.cfg.discount

    def value(s: torch.Tensor) -> torch.Tensor:
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = state_value(head, s, discount)
        return out.to(s.dtype)
    return value


def actor_proposal(actor: torch.nn.Module, step: Any, horizon: int):
    """proposal(s [S], n, generator) -> [n, H, A]: n plans of the actor, each action sampled from
    π(a | s_t) along the deterministic planning `step` it is rolled through."""
    def proposal(state: torch.Tensor, n: int, generator: Optional[torch.Generator]) -> torch.Tensor:
        s = state.unsqueeze(0).expand(n, -1)  # [n, S]
        actions = []
        for _ in range(horizon):
            a, _ = actor(s.to(next(actor.parameters()).dtype), generator)
            a = a.to(s.dtype)
            actions.append(a)
            s = step(s, a)
        return torch.stack(actions, 1)  # [n, H, A]
    return proposal
