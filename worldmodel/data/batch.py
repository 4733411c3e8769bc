"""The training batch: fixed-length chunks of episodes, as tensors.

Alignment (PlaNet's convention, used everywhere in the library):
  images[:, t]   observation o_t                         [B, L, C, H, W] float in [-0.5, 0.5]
                                                         (or [B, L, D] for vector observations)
  actions[:, t]  action a_t applied *after* seeing o_t   [B, L, A]
  rewards[:, t]  reward received for a_t, i.e. it arrives together with o_{t+1}   [B, L]
  states[:, t]   true physical state at o_t              [B, L, S] (None when unknown)
So a chunk of L observations uses L-1 transitions; the last action and reward of a chunk lead
outside it and are ignored by the model's loss.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import torch


@dataclass(frozen=True)
class Batch:
    images: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    states: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> "Batch":
        """The same batch on `device` (non-blocking where the source is pinned)."""
        move = lambda x: None if x is None else x.to(device, non_blocking=True)  # noqa: E731
        return replace(self, images=move(self.images), actions=move(self.actions),
                       rewards=move(self.rewards), states=move(self.states))

    @property
    def batch_size(self) -> int:
        return self.images.shape[0]

    @property
    def length(self) -> int:
        return self.images.shape[1]
