"""Model quality: open-loop prediction error per horizon step, and reward prediction error.

Protocol (DESIGN.md section 6): filter the first k frames o_1..o_k with the encoder, then roll
the prior open loop with the recorded actions a_k..a_{k+H−1} and decode; compare with o_{k+1..k+H}.
Errors are mean squared errors per element (pixel channel or vector entry), averaged over the
batch, reported per horizon step h = 1..H. Rollouts follow the prior means (deterministic).
By batch.py's alignment r_t (the reward of a_t) is predicted from z_{t+1}.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from worldmodel.data.batch import Batch
from worldmodel.model import WorldModel


@dataclass(frozen=True)
class OpenLoopError:
    """image_mse [H] and reward_mse [H] (None without a reward head) per horizon step."""

    image_mse: torch.Tensor
    reward_mse: Optional[torch.Tensor]
    context: int

    @property
    def horizon(self) -> int:
        return self.image_mse.numel()


def _split(batch: Batch, context: int, horizon: Optional[int]) -> int:
    t = batch.length
    if context < 1 or context >= t:
        raise ValueError(f"context must be in [1, {t - 1}] for sequences of length {t}, "
                         f"got {context}")
    horizon = t - context if horizon is None else horizon
    if horizon < 1 or context + horizon > t:
        raise ValueError(f"context + horizon = {context} + {horizon} exceeds the sequence "
                         f"length {t}; shorten the horizon or sample longer chunks")
    return horizon


@torch.no_grad()
def open_loop_prediction(model: WorldModel, batch: Batch, context: int,
                         horizon: Optional[int] = None) -> tuple[torch.Tensor, OpenLoopError]:
    """Predicted observations [B, H, ...] after `context` frames, and their errors per step."""
    horizon = _split(batch, context, horizon)
    post = model.observe(batch.images[:, :context], batch.actions[:, :context], sample=False)
    start = post.last()
    actions = batch.actions[:, context - 1:context - 1 + horizon]  # a_k .. a_{k+H-1}
    prior = model.imagine(start, actions, sample=False)
    pred = model.decode(prior).float()  # [B, H, ...]
    truth = model.observed(batch.images[:, context:context + horizon]).float()
    image_mse = (pred - truth).pow(2).flatten(2).mean(-1).mean(0)  # [H]
    reward_mse = None
    if model.reward_head is not None:
        r_pred = model.predict_reward(prior).float()  # [B, H]: r_k .. r_{k+H-1}
        r_true = batch.rewards[:, context - 1:context - 1 + horizon].float()
        reward_mse = (r_pred - r_true).pow(2).mean(0)
    return pred, OpenLoopError(image_mse, reward_mse, context)


@torch.no_grad()
def filtered_errors(model: WorldModel, batch: Batch) -> dict[str, float]:
    """Closed-loop errors: reconstruction MSE of o_t from q(z_t|o_≤t) (posterior means) and
    reward MSE of r_t from z_{t+1}, both averaged over all steps."""
    post = model.observe(batch.images, batch.actions, sample=False)
    out = {"recon_mse": (model.decode(post).float() - model.observed(batch.images).float()).pow(2).mean().item()}
    if model.reward_head is not None:
        r_pred = model.predict_reward(post[1:]).float()
        out["reward_mse"] = (r_pred - batch.rewards[:, :-1].float()).pow(2).mean().item()
    return out
