"""The planning problem: dynamics, costs, horizon and action bounds.

Notation (shared by the whole package):
  s [N, S]  a batch of N states of dimension S       a [N, A]  a batch of N actions
  H         the horizon (number of actions planned)  N         candidates / time steps in a batch
The problem is the open-loop optimal control problem

    minimise_{a_0..a_{H-1}}  J = sum_{t<H} l(s_t, a_t) + l_f(s_H)
    subject to s_{t+1} = f(s_t, a_t),  s_0 given,  low <= a_t <= high.

Reward maximisation is cost minimisation with l = -reward.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
RunningCost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
TerminalCost = Callable[[torch.Tensor], torch.Tensor]
Jacobians = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
Proposal = Callable[[torch.Tensor, int, Optional[torch.Generator]], torch.Tensor]


def _as_bound(value: torch.Tensor | float, name: str) -> torch.Tensor:
    """A bound as a 1-D float64 tensor (a float becomes a 0-d tensor, broadcast later)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu()
    if t.dim() > 1:
        raise ValueError(f"{name} must be a float or a 1-D tensor [A], got shape {tuple(t.shape)}")
    if torch.isnan(t).any():
        raise ValueError(f"{name} contains NaN: {t.tolist()}; give finite or infinite bounds")
    return t


@dataclass(frozen=True, kw_only=True)
class Problem:
    """A batched, differentiable planning problem (see the module docstring for the maths).

    step(s [N, S], a [N, A]) -> s' [N, S]; running_cost(s, a) -> [N]; terminal_cost(s) -> [N]
    (optional); jacobians(s, a) -> (df/ds [N, S, S], df/da [N, S, A]) (optional closed form, used
    by iLQR instead of autodiff); proposal(s [S], n, generator) -> [n, H, A] (optional): n action
    sequences from a policy prior, e.g. a learned actor rolled through the model, that sampling
    planners add to their candidates (TD-MPC's policy samples, Hansen et al. 2022). Bounds are [A]
    tensors or floats; `action_dim` is needed only when both bounds are floats.
    """

    step: Step
    running_cost: RunningCost
    horizon: int
    action_low: torch.Tensor | float
    action_high: torch.Tensor | float
    terminal_cost: Optional[TerminalCost] = None
    action_dim: Optional[int] = None
    jacobians: Optional[Jacobians] = None
    proposal: Optional[Proposal] = None

    def __post_init__(self) -> None:
        if not callable(self.step) or not callable(self.running_cost):
            raise ValueError("step and running_cost must be callables (s, a) -> tensor")
        if self.terminal_cost is not None and not callable(self.terminal_cost):
            raise ValueError(f"terminal_cost must be callable or None, got {type(self.terminal_cost)}")
        if self.proposal is not None and not callable(self.proposal):
            raise ValueError(f"proposal must be callable (s [S], n, generator) -> [n, H, A] or None, "
                             f"got {type(self.proposal)}")
        if not isinstance(self.horizon, int) or self.horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {self.horizon!r}")
        low = _as_bound(self.action_low, "action_low")
        high = _as_bound(self.action_high, "action_high")
        dims = {t.numel() for t in (low, high) if t.dim() == 1}
        if self.action_dim is not None:
            dims.add(int(self.action_dim))
        if not dims:
            raise ValueError("both bounds are floats: pass action_dim=A to say how many actions")
        if len(dims) > 1:
            raise ValueError(f"action sizes disagree: action_low {tuple(low.shape)}, action_high "
                             f"{tuple(high.shape)}, action_dim={self.action_dim}; make them equal")
        dim = dims.pop()
        if dim < 1:
            raise ValueError(f"action dimension must be >= 1, got {dim}")
        low, high = low.expand(dim).clone(), high.expand(dim).clone()
        bad = (low > high).nonzero().flatten().tolist()
        if bad:
            pairs = ", ".join(f"[{i}] low={low[i].item():g} > high={high[i].item():g}" for i in bad)
            raise ValueError(f"action bounds have low > high at indices {bad}: {pairs}; swap them")
        object.__setattr__(self, "_low", low)
        object.__setattr__(self, "_high", high)
        object.__setattr__(self, "_dim", dim)

    @property
    def dim_action(self) -> int:
        """A, the action dimension."""
        return self._dim  # type: ignore[attr-defined]

    def bounds(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(low [A], high [A]) in the dtype and device of `like`."""
        return (self._low.to(like.device, like.dtype),  # type: ignore[attr-defined]
                self._high.to(like.device, like.dtype))  # type: ignore[attr-defined]

    def default_actions(self, like: torch.Tensor) -> torch.Tensor:
        """The plan used when no warm start is given: zeros clamped into the bounds. [H, A]"""
        low, high = self.bounds(like)
        zeros = torch.zeros(self.horizon, self.dim_action, dtype=like.dtype, device=like.device)
        return torch.maximum(torch.minimum(zeros, high), low)

    def check(self, state: torch.Tensor, init: Optional[torch.Tensor] = None) -> None:
        """Validate the start state, warm start and the output shapes of step and costs.

        Cheap: one call of each function on a batch of two. Raises ValueError naming the function,
        the shape seen and the shape expected.
        """
        if not isinstance(state, torch.Tensor) or state.dim() != 1:
            shape = tuple(state.shape) if isinstance(state, torch.Tensor) else type(state).__name__
            raise ValueError(f"state must be a 1-D tensor [S] (one start state), got {shape}")
        if not state.is_floating_point():
            raise ValueError(f"state must be floating point, got dtype {state.dtype}")
        finite = torch.isfinite(state)
        if not bool(finite.all()):
            raise ValueError(f"state has NaN or inf entries ({int((~finite).sum())} of {state.numel()}); every "
                             f"plan from it would be NaN: check the filter or simulator that produced it")
        if init is not None:
            want = (self.horizon, self.dim_action)
            if not isinstance(init, torch.Tensor) or tuple(init.shape) != want:
                got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
                raise ValueError(f"init must be a [H, A] = {list(want)} tensor, got {got}")
            if not bool(torch.isfinite(init).all()):
                raise ValueError("init (the warm start) has NaN or inf entries; pass init=None to "
                                 "start from the problem's default actions")
        s = state.detach().unsqueeze(0).expand(2, -1)  # [2, S]
        a = self.default_actions(state)[:1].expand(2, -1)  # [2, A]
        with torch.no_grad():
            nxt = self.step(s, a)
            _expect("step", nxt, (2, state.numel()), "(s [N, S], a [N, A]) -> s' [N, S]")
            _expect("running_cost", self.running_cost(s, a), (2,), "(s [N, S], a [N, A]) -> [N]")
            if self.terminal_cost is not None:
                _expect("terminal_cost", self.terminal_cost(s), (2,), "(s [N, S]) -> [N]")
            if self.jacobians is not None:
                fs, fa = self.jacobians(s, a)
                S, A = state.numel(), self.dim_action
                _expect("jacobians (df/ds)", fs, (2, S, S), "-> (A [N, S, S], B [N, S, A])")
                _expect("jacobians (df/da)", fa, (2, S, A), "-> (A [N, S, S], B [N, S, A])")
            if self.proposal is not None:
                _expect("proposal", self.proposal(state.detach(), 2, None),
                        (2, self.horizon, self.dim_action), "(s [S], n, generator) -> [n, H, A]")


def _expect(name: str, value: object, shape: tuple[int, ...], signature: str) -> None:
    """Raise a ValueError if `value` is not a tensor of exactly `shape`."""
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must return a tensor {signature}; got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise ValueError(f"{name} returned shape {tuple(value.shape)} for a batch of N=2, expected "
                         f"{shape}; it must be {signature}")


@dataclass(frozen=True)
class PlanResult:
    """What a planner returns.

    actions [H, A] inside the bounds, in the dtype of the start state; cost: total cost J of
    `actions` from the start state (one fresh rollout); info: diagnostics (iterations, converged,
    cost_history, time_s, improved, and planner-specific entries; sampling planners give
    `samples`, the number of action sequences they rolled out).
    """

    actions: torch.Tensor
    cost: float
    info: dict
