"""Diagonal Gaussians: sampling, log-densities, closed-form KL, KL balancing and free nats.

Notation: a diagonal Gaussian N(μ, diag σ²) over the last dimension (size Z); leading dimensions
are batch/time. Every density and KL is computed in float32, whatever dtype the networks used
(bfloat16 under autocast), so the bound is not eroded by rounding.

    KL(q ‖ p) = Σ_i [ log σ_p,i − log σ_q,i + (σ_q,i² + (μ_q,i − μ_p,i)²) / (2 σ_p,i²) − 1/2 ]
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def std_from_raw(raw: torch.Tensor, min_std: float) -> torch.Tensor:
    """σ = softplus(raw) + min_std (PlaNet's parameterisation; min_std keeps σ away from 0)."""
    return F.softplus(raw) + min_std


def kl_gaussian(mean_q: torch.Tensor, std_q: torch.Tensor,
                mean_p: torch.Tensor, std_p: torch.Tensor) -> torch.Tensor:
    """KL(N(μ_q, σ_q²) ‖ N(μ_p, σ_p²)) summed over the last dim, in float32. [...]"""
    mean_q, std_q, mean_p, std_p = (x.float() for x in (mean_q, std_q, mean_p, std_p))
    var_ratio = (std_q / std_p).pow(2)
    mahalanobis = ((mean_q - mean_p) / std_p).pow(2)
    return 0.5 * (var_ratio + mahalanobis - 1.0 - torch.log(var_ratio)).sum(-1)


def kl_balanced(mean_q: torch.Tensor, std_q: torch.Tensor,
                mean_p: torch.Tensor, std_p: torch.Tensor, alpha: float) -> torch.Tensor:
    """KL balancing (DreamerV2, Hafner et al. 2021, Alg. 2): α·KL(sg(q)‖p) + (1−α)·KL(q‖sg(p)).

    The value equals KL(q‖p); the gradient reaching the prior is scaled by α and the one reaching
    the posterior by 1 − α, so the prior is pulled towards the posterior faster than the reverse.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"kl balance alpha must be in [0, 1], got {alpha}")
    to_prior = kl_gaussian(mean_q.detach(), std_q.detach(), mean_p, std_p)
    to_post = kl_gaussian(mean_q, std_q, mean_p.detach(), std_p.detach())
    return alpha * to_prior + (1.0 - alpha) * to_post


def free_nats(kl: torch.Tensor, nats: float) -> torch.Tensor:
    """max(KL, nats) elementwise (PlaNet's free nats, applied per sequence step).

    Below the floor the value is `nats` and the gradient is zero: the model is not pushed to
    shrink a KL that is already small. nats = 0 returns `kl` unchanged.
    """
    if nats < 0:
        raise ValueError(f"free nats must be >= 0, got {nats}")
    if nats == 0:
        return kl
    return torch.clamp(kl, min=nats)


def soft_cap(kl: torch.Tensor, cap: float | None) -> torch.Tensor:
    """KL elementwise below `cap` nats, cap·(1 + log(KL / cap)) above it; None returns `kl`.

    Continuous with slope 1 at the cap, so nothing changes for values below it, bit for bit.
    Above it the gradient shrinks as cap / KL: one open-loop rollout that has run away to 1e18
    nats still pulls back, but no longer swamps the update with an infinite gradient.
    """
    if cap is None:
        return kl
    if not cap > 0:
        raise ValueError(f"the KL cap must be > 0 nats or None (no cap), got {cap}")
    above = cap * (1.0 + torch.log(torch.clamp(kl, min=cap) / cap))  # clamp: no log(0) in the unused branch
    return torch.where(kl > cap, above, kl)


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: float | torch.Tensor,
                      event_dims: int) -> torch.Tensor:
    """log N(x; μ, σ²) in float32, summed over the last `event_dims` dims (full constants).

    With a constant σ (a number, as the image likelihood uses) the squared error is one fused
    kernel forward and one backward, rather than five passes over the images each way."""
    x, mean = x.float(), mean.float()
    if isinstance(std, (int, float)) and x.shape == mean.shape:
        sq = F.mse_loss(mean, x, reduction="none")  # (x − μ)²
        const = -math.log(std) - 0.5 * LOG_2PI
        if event_dims == 0:
            return sq * (-0.5 / std ** 2) + const
        n = math.prod(x.shape[-event_dims:])
        return sq.flatten(-event_dims).sum(-1) * (-0.5 / std ** 2) + n * const
    std = torch.as_tensor(std, dtype=torch.float32, device=x.device)
    z = (x - mean) / std
    logp = -0.5 * z.pow(2) - torch.log(std) - 0.5 * LOG_2PI
    if logp.dim() < x.dim():
        logp = logp.expand_as(x)
    if event_dims == 0:
        return logp
    return logp.flatten(-event_dims).sum(-1)


def standard_normal(shape: tuple[int, ...], like: torch.Tensor,
                    generator: torch.Generator | None = None) -> torch.Tensor:
    """ε ~ N(0, I) with `like`'s device and dtype, drawn from `generator` (None: torch's default)."""
    return torch.randn(shape, generator=generator, device=like.device, dtype=like.dtype)
