"""A latent value function: what a plan's last state is worth beyond the planning horizon.

Notation (batch.py alignment): s_t the latent features of o_t, r_t the reward of a_t (arriving
with o_{t+1}), γ the discount, λ the TD(λ) mixing weight. The value of a state is the discounted
reward of the actions taken from it on:

    V(s_t) = E[ r_t + γ V(s_{t+1}) ]

and the head is regressed onto λ-returns (Sutton & Barto, Sec. 12.1), bootstrapped from its own
(stop-gradient) predictions:

    G_t = r_t + γ [ (1 − λ) V(s_{t+1}) + λ G_{t+1} ],    G_{T−1} = V(s_{T−1}).

Two sources of sequences (ModelConfig.value_target):
- "recorded" (`value_loss`): the posterior latents and rewards of the data, so V is the value of
  the policy that collected it (MPC with noise);
- "imagined" (`imagined_actor_critic`): Dreamer's behaviour learning, rollouts of the learned
  dynamics under an actor that is trained to maximise the same returns, so V is the value of a
  policy improved in imagination, also in states the data never saw rewarded.
MPC with a short horizon needs such a value where reward is sparse and far away (pendulum swing-up:
1 only within 8° of upright, ~70 steps of pumping away; the planner on the true simulator scores 0,
benchmarks/results/oracle_pendulum_swingup_100k_s0_h*.json).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from worldmodel.distributions import standard_normal
from worldmodel.networks import mlp


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


def state_value(head: Union[nn.Module, Callable[[torch.Tensor], torch.Tensor]], features: torch.Tensor,
                discount: float) -> torch.Tensor:
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
    return _value_error(values[:, :-1], targets, discount).mean()


def _value_error(values: torch.Tensor, targets: torch.Tensor, discount: float) -> torch.Tensor:
    """0.5·((1 − γ)(V − G))² per element: the squared error on the reward scale (`state_value`)."""
    return 0.5 * ((1.0 - discount) * (values - targets)).pow(2)


class Actor(nn.Module):
    """π(a | s): a tanh-squashed Gaussian over actions in [−1, 1]^A (Dreamer's continuous actor)."""

    def __init__(self, state_size: int, action_dim: int, hidden: int, act: str, min_std: float = 0.1):
        super().__init__()
        self.net = mlp([state_size, hidden, hidden, 2 * action_dim], act)
        self.min_std = min_std

    def forward(self, s: torch.Tensor, generator: Optional[torch.Generator] = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action [N, A] and the entropy [N] of the Gaussian before the tanh."""
        mean, raw = self.net(s).chunk(2, -1)
        std = F.softplus(raw) + self.min_std
        eps = standard_normal(tuple(mean.shape), mean, generator)
        entropy = (torch.log(std) + 0.5 * math.log(2 * math.pi * math.e)).sum(-1)
        return torch.tanh(mean + std * eps), entropy


class _Step(nn.Module):
    """The transition's `step` as `forward`, so torch.func.functional_call can swap its weights."""

    def __init__(self, transition: nn.Module):
        super().__init__()
        self.transition = transition

    def forward(self, state: Any, action: torch.Tensor, noise: torch.Tensor) -> Any:
        return self.transition.step(state, action, noise)


def _frozen(module: nn.Module) -> dict[str, torch.Tensor]:
    """The module's parameters, detached: calls through them pass gradients to their inputs only."""
    return {name: p.detach() for name, p in module.named_parameters()}


def imagined_actor_critic(transition: nn.Module, reward_head: nn.Module, value_head: nn.Module,
                          actor: Actor, start: Any, horizon: int, discount: float, lam: float,
                          entropy_scale: float, generator: Optional[torch.Generator] = None
                          ) -> dict[str, torch.Tensor]:
    """Dreamer's behaviour learning (Hafner et al. 2020, Sec. 3), for the value MPC adds at s_H.

    From detached start states (N = B·T posterior states), the actor's actions roll the prior
    for `horizon` steps; the λ-returns of the predicted rewards, bootstrapped with V, are
    - maximised by the actor, through the dynamics (whose weights are frozen for this term), and
    - regressed by the value head on the (detached) imagined states.
    The value so learnt is that of a policy improved in imagination, not of the one that collected
    the data, so it reaches states the data never rewarded. Returns "actor_loss", "value_loss"
    (both per state, on the reward scale like `value_loss`) and "imagined_return" (mean of G_0).
    """
    step = _Step(transition)
    frozen_step = _frozen(step)
    frozen_reward, frozen_value = _frozen(reward_head), _frozen(value_head)
    state, feats, entropies = start, [start.vector()], []
    for _ in range(horizon):
        action, entropy = actor(state.vector().detach(), generator)
        noise = standard_normal(tuple(state.mean.shape), state.mean, generator)
        state = functional_call(step, frozen_step, (state, action, noise))
        feats.append(state.vector())
        entropies.append(entropy)
    feats_t = torch.stack(feats, 1)  # [N, H+1, S]
    rewards = functional_call(reward_head, frozen_reward, (feats_t[:, 1:],)).squeeze(-1)  # [N, H]
    values = state_value(lambda x: functional_call(value_head, frozen_value, (x,)), feats_t, discount)
    returns = lambda_returns(rewards.float(), values.float(), discount, lam)  # [N, H]
    weights = discount ** torch.arange(horizon, device=returns.device, dtype=returns.dtype)
    entropy = torch.stack(entropies, 1).float()  # [N, H]
    actor_loss = -((1.0 - discount) * returns + entropy_scale * entropy).mul(weights).mean()
    predicted = state_value(value_head, feats_t[:, :-1].detach(), discount).float()
    critic = _value_error(predicted, returns.detach(), discount).mul(weights).mean()
    return {"actor_loss": actor_loss, "value_loss": critic, "imagined_return": returns[:, 0].mean().detach()}
