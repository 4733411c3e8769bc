"""Receding-horizon control: plan, execute the first `execute` actions, shift the plan, replan.

With `feedback`, the actions between replans follow the plan's local linear policy
u_t + K_t (s_t − x̄_t) (iLQR's gains, Tassa et al. 2012) instead of the open-loop u_t.

Notation: s [S] the current state, a [A] an action, u [H, A] a plan. The warm start for the plan
made after executing e actions is u[e:] followed by e copies of u[-1] (the shifted warm start of
PlaNet / iCEM / TD-MPC2).
"""
from __future__ import annotations

from typing import Callable, Optional, Protocol

import torch

from planners.problem import PlanResult, Problem
from planners.rollout import clamp_actions


class Planner(Protocol):
    """Anything with plan(problem, state, init, generator) -> PlanResult."""

    def plan(self, problem: Problem, state: torch.Tensor, init: Optional[torch.Tensor] = None,
             generator: Optional[torch.Generator] = None) -> PlanResult: ...


def shift_plan(u: torch.Tensor, steps: int, horizon: int) -> torch.Tensor:
    """u [H, A] without its first `steps` actions, padded with its last to `horizon` rows."""
    rest = u[steps:]
    if rest.shape[0] == 0:
        rest = u[-1:]
    if rest.shape[0] >= horizon:
        return rest[:horizon].clone()
    pad = rest[-1:].expand(horizon - rest.shape[0], -1)
    return torch.cat([rest, pad])


class MPC:
    """Model-predictive controller: replans every `execute` calls of `act`, warm-started."""

    def __init__(self, planner: Planner, problem: Problem, *, execute: int = 1,
                 generator: Optional[torch.Generator] = None, feedback: bool = False) -> None:
        """feedback: between replans act u_t + K_t (s_t − x̄_t), clipped to the bounds, with the
        gains the planner returned (iLQR with feedback=True); plain u_t when it returned none."""
        if not isinstance(execute, int) or execute < 1:
            raise ValueError(f"execute must be a positive int, got {execute!r}")
        if execute > problem.horizon:
            raise ValueError(f"execute={execute} exceeds the problem horizon {problem.horizon}")
        self.planner = planner
        self._problem = problem
        self.execute = execute
        self.generator = generator
        self.feedback = feedback
        self.reset()

    @property
    def problem(self) -> Problem:
        return self._problem

    @problem.setter
    def problem(self, problem: Problem) -> None:
        """A new problem (e.g. a new goal): the next `act` replans, keeping the warm start."""
        if self.execute > problem.horizon:
            raise ValueError(f"execute={self.execute} exceeds the new horizon {problem.horizon}")
        self._problem = problem
        self._replan = True  # the warm start still shifts by the actions actually taken

    def reset(self) -> None:
        """Forget the plan (call at the start of an episode)."""
        self.last_result: Optional[PlanResult] = None
        self._plan: Optional[torch.Tensor] = None  # [H, A]
        self._next = 0  # index of the next cached action to return
        self._replan = False  # set by a new problem: plan at the next `act`

    def act(self, state: torch.Tensor) -> torch.Tensor:
        """The action [A] to apply in `state` [S] (planning when the cached actions are used up)."""
        if self._plan is None or self._next >= self.execute or self._replan:
            init = None
            if self._plan is not None:
                init = shift_plan(self._plan, self._next, self._problem.horizon)
                if init.shape[1] != self._problem.dim_action:
                    init = None
            self.last_result = self.planner.plan(self._problem, state, init=init,
                                                 generator=self.generator)
            self._plan = self.last_result.actions
            self._next, self._replan = 0, False
        action = self._plan[self._next]
        info = self.last_result.info  # set by the plan above
        if self.feedback and "feedback_gains" in info:
            gain = info["feedback_gains"][self._next]  # [A, S]
            deviation = state - info["nominal_states"][self._next]  # [S]
            low, high = self._problem.bounds(state)
            action = clamp_actions(action + gain @ deviation.to(gain.dtype), low, high)
        self._next += 1
        return action


def run_mpc(controller: MPC, env_step: Callable[[torch.Tensor], torch.Tensor],
            state0: torch.Tensor, steps: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed loop for `steps` steps -> (states [steps+1, S], actions [steps, A], costs [steps]).

    env_step(action [A]) -> next state [S] is the real system; costs are the problem's running
    cost of each (state, action) pair.
    """
    controller.reset()
    states, actions, costs = [state0], [], []
    state = state0
    for _ in range(steps):
        action = controller.act(state)
        with torch.no_grad():
            costs.append(controller.problem.running_cost(state[None], action[None])[0])
        state = env_step(action)
        states.append(state)
        actions.append(action)
    return torch.stack(states), torch.stack(actions), torch.stack(costs)
