"""PC3's predictive-coding term (Shu et al. 2020, "Predictive Coding for Locally-Linear Control"):
a contrastive (InfoNCE, van den Oord et al. 2018) bound that asks the dynamics' prediction of the
next latent to pick out the true next latent among the other transitions of the batch.

PC3 trains with it instead of a decoder; here it is a knob beside the ELBO
(ModelConfig.predictive_coding_scale), so the decoder's pictures stay. The score of a candidate
e_j under the prediction N(μ_i, diag σ_i²) is its Gaussian log-density; the terms that do not
depend on j cancel in the softmax over j and are left out.
"""
from __future__ import annotations

import torch


def info_nce(pred_mean: torch.Tensor, pred_std: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """−E_i[log softmax_j(score(i, j))_i], the contrastive loss of N predictions against N targets.

    pred_mean, pred_std, targets: [N, Z]; row i of `targets` is the positive of prediction i, the
    other rows its negatives. Returns a scalar in [0, ∞); log N when the scores cannot tell the
    targets apart, 0 when each prediction is infinitely sharper on its own target.
    """
    if not (pred_mean.shape == pred_std.shape == targets.shape) or pred_mean.dim() != 2:
        raise ValueError(f"info_nce needs three [N, Z] tensors of one shape, got {tuple(pred_mean.shape)}, "
                         f"{tuple(pred_std.shape)}, {tuple(targets.shape)}")
    mean, e = pred_mean.float(), targets.float()
    precision = pred_std.float().pow(-2)  # [N, Z]
    # Σ_z (e_jz − μ_iz)² / σ_iz², expanded into matrix products: [N, N] memory, not [N, N, Z]
    squared = precision @ e.pow(2).T - 2 * (mean * precision) @ e.T + (mean.pow(2) * precision).sum(1, keepdim=True)
    return -torch.log_softmax(-0.5 * squared, dim=1).diagonal().mean()
