"""A latent value function: what a plan's last state is worth beyond the planning horizon.

Notation (batch.py alignment): s_t the latent features of o_t, r_t the reward of a_t (arriving
with o_{t+1}), γ the discount, λ the TD(λ) mixing weight. The value of a state is the discounted
reward of the actions taken from it on:

    V(s_t) = E[ r_t + γ V(s_{t+1}) ]

and the head is regressed onto the λ-returns of recorded sequences (Sutton & Barto, Sec. 12.1),
bootstrapped from its own (stop-gradient) predictions:

    G_t = r_t + γ [ (1 − λ) V(s_{t+1}) + λ G_{t+1} ],    G_{T−1} = V(s_{T−1}).

The targets are those of the policy that collected the data (MPC with noise), so the planner with
this terminal value does one step of policy improvement per round of collection. MPC with a short
horizon needs it where reward is sparse and far away (pendulum swing-up: 1 only within 8° of
upright, ~70 steps of pumping away; see benchmarks/results/oracle_pendulum_swingup_100k_s0_h*.json).
"""
from __future__ import annotations

import torch
from torch import nn


def lambda_returns(rewards: torch.Tensor, values: torch.Tensor, discount: float,
                   lam: float) -> torch.Tensor:
    """TD(λ) targets G [B, T−1] of states 0..T−2 from rewards [B, T−1] (r_t of a_t) and values
    [B, T] (V(s_t)); the last value bootstraps the tail. λ = 0 is one-step TD, λ = 1 the
    discounted return to the end of the sequence plus γ^k V(s_{T−1})."""
    if values.dim() != 2 or rewards.shape != (values.shape[0], values.shape[1] - 1):
        raise ValueError(f"rewards {tuple(rewards.shape)} and values {tuple(values.shape)} must be "
                         "[B, T-1] and [B, T] (the reward of each action and the value of each state)")
    if not 0.0 <= discount <= 1.0 or not 0.0 <= lam <= 1.0:
        raise ValueError(f"discount and lambda must be in [0, 1], got {discount}, {lam}")
    out = []
    g = values[:, -1]
    for t in range(rewards.shape[1] - 1, -1, -1):
        g = rewards[:, t] + discount * ((1.0 - lam) * values[:, t + 1] + lam * g)
        out.append(g)
    return torch.stack(out[::-1], 1)


def state_value(head: nn.Module, features: torch.Tensor, discount: float) -> torch.Tensor:
    """V(s) [...] of features [..., S]. The head outputs (1 − γ)·V, the value in units of one
    step's reward, so its loss and gradients stay on the reward head's scale (a value is up to
    1 / (1 − γ) = 100 times a reward, and the model's gradients are clipped by one global norm)."""
    return head(features).squeeze(-1) / (1.0 - discount)


def value_loss(head: nn.Module, features: torch.Tensor, rewards: torch.Tensor, discount: float,
               lam: float) -> torch.Tensor:
    """Mean squared error of (1 − γ)·V(s_t) against (1 − γ)·G_t, the stop-gradient λ-returns.

    features [B, T, S] (detached by the caller when the value must not shape the latent),
    rewards [B, T] as in a Batch (the last step's reward has no next state and is unused)."""
    values = state_value(head, features, discount).float()  # [B, T]
    targets = lambda_returns(rewards[:, :-1].float(), values.detach(), discount, lam)
    return 0.5 * ((1.0 - discount) * (values[:, :-1] - targets)).pow(2).mean()
