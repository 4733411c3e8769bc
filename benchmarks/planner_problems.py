"""The problems the planner benchmarks share: PlaNet-sized RSSM stand-in and an E2C locally-linear
latent."""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import planners  # noqa: E402


class RSSMStandIn(nn.Module):
    """PlaNet-sized latent dynamics: s = [h (200), z (30)], a (1); mean of the prior as next z."""

    def __init__(self, deter: int = 200, stoch: int = 30, hidden: int = 200, action: int = 1):
        super().__init__()
        self.deter, self.stoch = deter, stoch
        self.embed = nn.Linear(stoch + action, hidden)
        self.cell = nn.GRUCell(hidden, deter)
        self.prior = nn.Sequential(nn.Linear(deter, hidden), nn.ELU(), nn.Linear(hidden, 2 * stoch))
        self.reward = nn.Sequential(nn.Linear(deter + stoch, hidden), nn.ELU(),
                                    nn.Linear(hidden, hidden), nn.ELU(), nn.Linear(hidden, 1))

    def step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:  # [N, 230], [N, 1]
        h, z = s[:, :self.deter], s[:, self.deter:]
        h = self.cell(torch.nn.functional.elu(self.embed(torch.cat([z, a], -1))), h)
        z = self.prior(h)[:, :self.stoch]
        return torch.cat([h, z], -1)

    def cost(self, s: torch.Tensor) -> torch.Tensor:  # [N, 230] -> [N], cost = -reward
        return -self.reward(s).squeeze(-1)

    def flops(self) -> tuple[int, int]:
        """(FLOPs of one step, FLOPs of one reward) per candidate."""
        lin = lambda m: sum(2 * l.in_features * l.out_features for l in m.modules()  # noqa: E731
                            if isinstance(l, nn.Linear))
        gru = 2 * 3 * self.cell.hidden_size * (self.cell.input_size + self.cell.hidden_size)
        return lin(self.embed) + gru + lin(self.prior), lin(self.reward)


def rssm_problem(model: RSSMStandIn, horizon: int = 12) -> planners.Problem:
    return planners.Problem(step=model.step, running_cost=lambda s, a: model.cost(s),
                            terminal_cost=model.cost, horizon=horizon, action_low=-1.0,
                            action_high=1.0, action_dim=1)


class LocallyLinear(nn.Module):
    """E2C-style z' = A(z) z + B(z) a + c(z), A = I + v rᵀ; Jacobians taken in closed form."""

    def __init__(self, dim: int = 8, action: int = 1, hidden: int = 64):
        super().__init__()
        self.dim, self.action = dim, action
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 2 * dim + dim * action + dim))

    def matrices(self, z: torch.Tensor):
        out = self.net(z)
        d, m = self.dim, self.action
        v, r = 0.1 * torch.tanh(out[:, :d]), 0.1 * torch.tanh(out[:, d:2 * d])
        A = torch.eye(d, dtype=z.dtype) + v.unsqueeze(2) * r.unsqueeze(1)  # [N, d, d]
        B = 0.1 * out[:, 2 * d:2 * d + d * m].reshape(-1, d, m)  # [N, d, m]
        c = 0.01 * out[:, 2 * d + d * m:]
        return A, B, c

    def step(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        A, B, c = self.matrices(z)
        return (A @ z.unsqueeze(2) + B @ a.unsqueeze(2)).squeeze(2) + c

    def jacobians(self, z: torch.Tensor, a: torch.Tensor):
        A, B, _ = self.matrices(z)
        return A, B
