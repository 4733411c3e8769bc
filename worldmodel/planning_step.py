"""The RSSM's prior-mean step and reward head, prepared once for sampling planners.

CEM at PlaNet's settings pushes 1000 candidates × 12 steps × 10 iterations through these two
functions for every action, so their cost is the planner's cost. The maths is `RSSM.step`
followed by the mean of the prior (what `WorldModel.planning_problem` steps) and the reward head;
only the arithmetic is arranged for speed:

- only the prior's mean rows are computed (planning steps the mean; σ is never used);
- the GRU's hidden-path biases of the reset and update gates are folded into the input
  projection, the hidden projection of those gates is added inside the matrix product (addmm),
  and h' = (1 − u) ⊙ n + u ⊙ h is one `lerp`;
- the weights are cast to the planning dtype once, here, rather than in every call as autocast
  does; states stay in the caller's dtype between calls (bf16 → float32 → bf16 is exact);
- without autograd (CEM, MPPI, random shooting) the activations run in place;
- a start state broadcast to every candidate (stride 0, as planners pass it) has its hidden
  projection and reward computed once, not once per candidate.

The object holds a snapshot of the weights taken when it is built: build a new one after training.
`benchmarks/planner_speed.py` measures what this buys; tests check it equals `RSSM.step` in float32.
"""
from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn

Layer = Union[tuple[torch.Tensor, Optional[torch.Tensor]], nn.Module]  # (W, b) or an activation


def _snapshot(seq: nn.Sequential, dtype: torch.dtype, out_rows: Optional[int] = None) -> list[Layer]:
    """Linear layers as cast (W, b) pairs, activations kept as modules; `out_rows` keeps only the
    first rows of the last Linear (the mean half of a Gaussian head)."""
    layers: list[Layer] = []
    linears = [m for m in seq if isinstance(m, nn.Linear)]
    for m in seq:
        if isinstance(m, nn.Linear):
            w, b = m.weight.detach(), None if m.bias is None else m.bias.detach()
            if m is linears[-1] and out_rows is not None:
                w, b = w[:out_rows], None if b is None else b[:out_rows]
            layers.append((w.to(dtype).contiguous(), None if b is None else b.to(dtype).contiguous()))
        else:
            layers.append(m)
    return layers


def _run(layers: list[Layer], x: torch.Tensor) -> torch.Tensor:
    """Apply a snapshot; ReLU runs in place when autograd is off (x is then always a fresh tensor)."""
    inplace = not torch.is_grad_enabled()
    for layer in layers:
        if isinstance(layer, tuple):
            x = F.linear(x, *layer)
        elif inplace and isinstance(layer, nn.ReLU):
            x = torch.relu_(x)
        else:
            x = layer(x)
    return x


def _same_rows(s: torch.Tensor) -> bool:
    """s [N, S] is one row broadcast N times (stride 0): planners expand the start state so, and
    its h-dependent products and reward are then computed once."""
    return s.shape[0] > 1 and s.stride(0) == 0


class RSSMPlanningStep:
    """s [N, D + Z] = [h, z] and a [N, A] -> the prior mean's next state, and r̂(s) [N]."""

    def __init__(self, transition: nn.Module, reward_head: Optional[nn.Sequential],
                 dtype: torch.dtype = torch.float32):
        head = transition.prior_head
        if getattr(head, "skip", None) is not None:
            raise ValueError("RSSMPlanningStep does not support a prior head with linear_skip")
        self.dtype = dtype
        self.deter = D = transition.deter_size
        self.gru_in = _snapshot(transition.gru_in, dtype)
        cell = transition.cell
        w_x, b_x = cell.input.weight.detach(), cell.input.bias.detach()  # [3D, in], [3D]
        w_h, b_h = cell.hidden.weight.detach(), cell.hidden.bias.detach()  # [3D, D], [3D]
        fold = torch.cat([b_h[:2 * D], torch.zeros_like(b_h[2 * D:])])  # b_hr, b_hu join b_x
        self.w_x_t = w_x.t().to(dtype).contiguous()  # [in, 3D]
        self.b_x = (b_x + fold).to(dtype).contiguous()  # [3D]
        self.w_h_ru_t = w_h[:2 * D].t().to(dtype).contiguous()  # [D, 2D]
        self.w_h_n = w_h[2 * D:].to(dtype).contiguous()  # [D, D]
        self.b_h_n = b_h[2 * D:].to(dtype).contiguous()  # [D]
        self.prior_mean = _snapshot(head.net, dtype, out_rows=transition.cfg.stoch_size)
        self.reward_layers = None if reward_head is None else _snapshot(reward_head, dtype)

    def step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The prior mean's next state s' [N, D + Z], in s's dtype."""
        D = self.deter
        x = s.to(self.dtype)
        h, z = x[:, :D], x[:, D:]
        e = _run(self.gru_in, torch.cat([z, a.to(self.dtype)], -1))  # [N, hidden]
        xp = torch.addmm(self.b_x, e, self.w_x_t)  # [N, 3D]: W_x e + b_x + [b_hr, b_hu, 0]
        if _same_rows(s):  # a planner's first step: one start state for every candidate
            ru = xp[:, :2 * D] + h[:1] @ self.w_h_ru_t  # [N, 2D] gate pre-activations
            hn = F.linear(h[:1], self.w_h_n, self.b_h_n).expand(h.shape[0], -1)  # [N, D]
        else:
            ru = torch.addmm(xp[:, :2 * D], h, self.w_h_ru_t)
            hn = F.linear(h, self.w_h_n, self.b_h_n)
        if torch.is_grad_enabled():
            ru = torch.sigmoid(ru)
            n = torch.tanh(torch.addcmul(xp[:, 2 * D:], ru[:, :D], hn))
        else:
            ru = torch.sigmoid_(ru)
            n = torch.tanh_(torch.addcmul(xp[:, 2 * D:], ru[:, :D], hn))
        h_next = torch.lerp(n, h, ru[:, D:])  # (1 − u) n + u h
        mean = _run(self.prior_mean, h_next)  # [N, Z]
        return torch.cat([h_next, mean], -1).to(s.dtype)

    def reward(self, s: torch.Tensor) -> torch.Tensor:
        """r̂(s) [N] in s's dtype."""
        if self.reward_layers is None:
            raise ValueError("this model has no reward head (predict_reward=False)")
        if _same_rows(s):
            return self.reward(s[:1]).expand(s.shape[0]).contiguous()
        return _run(self.reward_layers, s.to(self.dtype)).squeeze(-1).to(s.dtype)


def rssm_planning_functions(model: nn.Module, precision: str
                            ) -> tuple[Callable, Optional[Callable]]:
    """(step, reward) of `model` (a WorldModel with an rssm transition) in `precision`."""
    own = next(model.parameters()).dtype  # "float32" means the model's own precision
    dtype = torch.bfloat16 if precision == "bfloat16" else own
    fast = RSSMPlanningStep(model.transition, model.reward_head, dtype)
    return fast.step, (None if model.reward_head is None else fast.reward)
