"""The soft cap on latent overshooting's KL (ModelConfig.overshooting_kl_cap): no effect on a model
whose open-loop rollouts stay near the data, a finite update from one whose rollouts run away."""
import sys
from pathlib import Path

import pytest
import torch

from worldmodel import ModelConfig, WorldModel
from worldmodel.data import Batch

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import one_thread  # noqa: E402,F401 (one_thread: autouse)


def _loss_and_grad_norm(cap, runaway):
    """A small E2C-style model (locally-linear dynamics, D = 4), its dynamics' output layer scaled
    by `runaway`, on a fixed batch and noise: (loss terms, gradient norm)."""
    torch.manual_seed(0)
    cfg = ModelConfig.small(transition="locally_linear", obs_shape=(3, 32, 32), action_dim=1, deter_size=32,
                            stoch_size=6, hidden_size=32, cnn_depth=8, overshooting_distance=4,
                            overshooting_kl_cap=cap)
    model = WorldModel(cfg)
    with torch.no_grad():  # A = I + v rᵀ with large v, r: open-loop rollouts grow like a polynomial tower
        model.transition.net[-1].weight.mul_(runaway)
        model.transition.net[-1].bias.add_(0.1 * runaway)
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.rand(3, 8, 3, 32, 32, generator=g) - 0.5, torch.rand(3, 8, 1, generator=g) * 2 - 1,
                  torch.randn(3, 8, generator=g))
    out = model.loss(batch, generator=torch.Generator().manual_seed(1))
    out["loss"].backward()
    grads = [p.grad.double() for p in model.parameters() if p.grad is not None]
    return {k: v.detach() for k, v in out.items()}, torch.sqrt(sum((g ** 2).sum() for g in grads)).item()


def test_the_cap_changes_nothing_while_rollouts_stay_near_the_data():
    for runaway in (1.0, 3.0):
        plain, plain_norm = _loss_and_grad_norm(None, runaway)
        capped, capped_norm = _loss_and_grad_norm(1e4, runaway)
        assert plain["overshooting_kl"] < 1e3  # far below the cap
        assert torch.equal(plain["loss"], capped["loss"]) and plain_norm == capped_norm


def test_a_runaway_rollout_no_longer_swamps_the_update():
    plain, plain_norm = _loss_and_grad_norm(None, 12.0)
    capped, capped_norm = _loss_and_grad_norm(1e4, 12.0)
    assert plain["overshooting_kl"] > 1e12  # the rollouts have run away
    assert torch.isfinite(capped["loss"]) and capped["overshooting_kl"] < 1e6
    assert capped_norm < 1e-6 * plain_norm  # what a grad_clip can tame, not an overflow in waiting


def test_the_cap_must_be_positive():
    with pytest.raises(ValueError, match="overshooting_kl_cap"):
        ModelConfig.small(overshooting_kl_cap=0.0)
