"""Held-out R² of latent read-outs: known answers for linear maps, noise and a ring."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from worldmodel.geometry import (latent_r2, latent_r2_per_target, r2_scores, readout_predict,
                                 readout_rmse_per_target, split, state_targets, target_names)


def _pendulum_states(n: int, rng: np.random.Generator) -> np.ndarray:
    return np.stack([rng.uniform(-np.pi, np.pi, n), rng.normal(0, 2, n)], axis=1)  # [N, 2]


def test_linear_map_of_the_state_scores_one() -> None:
    rng = np.random.default_rng(0)
    states = rng.normal(size=(600, 4))
    latents = states @ rng.normal(size=(4, 16)) + 3.0  # random linear map plus offset
    assert latent_r2(latents, states) == pytest.approx(1.0, abs=1e-9)
    assert latent_r2(latents, states, method="knn") > 0.8  # smooth too, kNN gets most of it


def test_readout_rmse_is_the_noise_a_latent_leaves_in_each_target() -> None:
    """Targets = a linear map of the latent plus N(0, σ_k²) noise: the linear read-out's held-out
    RMSE is σ_k per column (the map is recovered; the noise cannot be), in the targets' units."""
    rng = np.random.default_rng(3)
    latents = rng.normal(size=(4000, 6))
    sigma = np.array([0.02, 0.5])  # e.g. an angle in rad and a velocity in rad/s
    targets = latents @ rng.normal(size=(6, 2)) + 1.0 + rng.normal(size=(4000, 2)) * sigma
    groups = np.arange(4000) // 20  # whole "episodes" held out
    rmse = readout_rmse_per_target(latents, targets, groups=groups)
    np.testing.assert_allclose(rmse, sigma, rtol=0.08)
    exact = readout_rmse_per_target(latents, latents @ np.ones((6, 1)))
    assert exact[0] < 1e-9
    # fitted on one set, read on another: the linear map itself comes back
    fresh = rng.normal(size=(50, 6))
    mapped = readout_predict(latents, latents @ np.arange(6.0)[:, None], fresh)
    np.testing.assert_allclose(mapped[:, 0], fresh @ np.arange(6.0), atol=1e-8)
    with pytest.raises(ValueError, match="fitted on 6"):
        readout_predict(latents, targets, fresh[:, :3])
    # a latent that holds nothing of the target: the error is the target's own spread
    noise = readout_rmse_per_target(rng.normal(size=(4000, 6)), targets[:, :1], method="knn")
    assert noise[0] == pytest.approx(targets[:, 0].std(), rel=0.15)


def test_linear_readout_does_not_overfit_a_latent_as_wide_as_the_data() -> None:
    """A latent of 135 dimensions read from 140 fitting frames: 3 directions carry the state, the
    other 132 a smaller nuisance spread (as a VAE's little-used dimensions do), all mixed by a
    rotation. Plain least squares fits the nuisance and fails on held-out episodes; the ridge
    read-out, its penalty chosen on the fitting episodes, still finds the linear map."""
    rng = np.random.default_rng(5)
    n, wide = 200, 135
    states = rng.normal(size=(n, 3))
    rotation, _ = np.linalg.qr(rng.normal(size=(wide, wide)))
    latents = np.concatenate([2 * states, 0.3 * rng.normal(size=(n, wide - 3))], axis=1) @ rotation
    targets = states + 0.3 * rng.normal(size=(n, 3))
    groups = np.arange(n) // 10  # 20 episodes; 6 held out, 14 (140 frames) fitted
    train, test = split(n, test_fraction=0.3, seed=0, groups=groups)
    ones = lambda z: np.concatenate([z, np.ones((len(z), 1))], axis=1)  # noqa: E731
    w, *_ = np.linalg.lstsq(ones(latents[train]), targets[train], rcond=None)
    least_squares = np.mean(r2_scores(targets[test], ones(latents[test]) @ w))
    ridge = latent_r2(latents, targets, groups=groups)
    assert least_squares < 0.5  # the regime the read-out must survive (a 144-D latent, 264 frames)
    assert ridge > 0.85  # the noise leaves R² = 1 - 0.09 / 1.09 = 0.92 at best


def test_independent_noise_scores_zero() -> None:
    rng = np.random.default_rng(1)
    states = rng.normal(size=(2000, 3))
    noise = rng.normal(size=(2000, 8))
    assert latent_r2(noise, states) <= 0.05
    assert latent_r2(noise, states, method="knn") <= 0.05


def test_knn_reads_the_pendulum_ring_that_linear_cannot() -> None:
    """Latent = a nonlinear embedding of (θ, θ̇): ring radius grows with velocity, rotated.
    The targets (cos θ, sin θ, θ̇) are smooth functions of it but not linear ones."""
    rng = np.random.default_rng(2)
    states = _pendulum_states(3000, rng)
    theta, vel = states[:, 0], states[:, 1]
    radius = np.exp(0.3 * vel)
    latents = np.stack([radius * np.cos(theta), radius * np.sin(theta), vel ** 3], axis=1)
    knn = latent_r2(latents, states, method="knn", task="pendulum-swingup")
    linear = latent_r2(latents, states, task="pendulum-swingup")
    assert knn > 0.95
    assert linear < knn - 0.1


def test_angles_become_cos_sin_so_wraparound_is_not_punished() -> None:
    rng = np.random.default_rng(3)
    states = _pendulum_states(2000, rng)
    latents = np.stack([np.cos(states[:, 0]), np.sin(states[:, 0]), states[:, 1]], axis=1)
    assert latent_r2(latents, states, task="pendulum-swingup") == pytest.approx(1.0, abs=1e-9)
    # Regressing onto the raw angle instead fails on the same, perfect latent.
    assert latent_r2_per_target(latents, states[:, :1])[0] < 0.9


def test_state_targets_layout() -> None:
    s = np.array([[0.5, np.pi / 2, 1.0, 2.0]])
    y = state_targets("cartpole-swingup", s)
    np.testing.assert_allclose(y, [[0.5, 0.0, 1.0, 1.0, 2.0]], atol=1e-12)
    assert target_names("cartpole-balance") == ["x", "cos θ", "sin θ", "ẋ", "θ̇"]
    np.testing.assert_array_equal(state_targets("point_mass-easy", np.ones((2, 4))), np.ones((2, 4)))
    torch_states = torch.zeros(3, 2, dtype=torch.float64)  # tensors are accepted too
    assert state_targets("pendulum-swingup", torch_states).shape == (3, 3)


def test_group_split_holds_out_whole_episodes() -> None:
    groups = np.repeat(np.arange(10), 20)
    train, test = split(200, test_fraction=0.3, seed=0, groups=groups)
    assert len(np.intersect1d(groups[train], groups[test])) == 0
    assert len(np.unique(groups[test])) == 3 and len(train) + len(test) == 200
    # Seeded: the same split every time.
    np.testing.assert_array_equal(split(200, test_fraction=0.3, seed=0, groups=groups)[1], test)


def test_r2_scores_analytic() -> None:
    y = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert r2_scores(y, y)[0] == 1.0
    assert r2_scores(y, np.full_like(y, 1.5))[0] == 0.0
    assert r2_scores(y, y + 1.0)[0] == pytest.approx(1 - 4 / 5)


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="same N, got 10 and 9"):
        latent_r2(np.zeros((10, 2)), np.zeros((9, 2)))
    with pytest.raises(ValueError, match="method must be 'linear' or 'knn', got 'ridge'"):
        latent_r2(np.zeros((10, 2)), np.zeros((10, 2)), method="ridge")
    with pytest.raises(ValueError, match=r"\[N, 4\].*got shape \(5, 3\)"):
        state_targets("cartpole-swingup", np.zeros((5, 3)))
    with pytest.raises(ValueError, match="unknown task 'walker-walk'; known tasks: "):
        state_targets("walker-walk", np.zeros((5, 3)))
    with pytest.raises(ValueError, match="NaN"):
        latent_r2(np.full((10, 2), np.nan), np.zeros((10, 2)))
    with pytest.raises(ValueError, match="test_fraction"):
        latent_r2(np.zeros((10, 2)), np.zeros((10, 2)), test_fraction=1.5)


def test_r2_by_target_finds_the_one_target_a_latent_misses() -> None:
    """A latent that holds the cart-pole's state except the side the pole leans to (|sin θ| in
    place of sin θ): the mean R² is still high, the per-target one names what is missing."""
    from worldmodel.visualize import state_r2, state_r2_by_target

    rng = np.random.default_rng(0)
    n, episodes = 600, np.repeat(np.arange(20), 30)
    states = np.stack([rng.uniform(-1, 1, n), rng.uniform(-np.pi, np.pi, n),
                       rng.normal(size=n), rng.normal(size=n)], 1)  # x, θ, ẋ, θ̇
    t = state_targets("cartpole-balance", states)  # x, cos θ, sin θ, ẋ, θ̇
    latents = np.stack([t[:, 0], t[:, 1], np.abs(t[:, 2]), t[:, 3], t[:, 4]], 1) @ rng.normal(size=(5, 5))
    by_target = state_r2_by_target("cartpole-balance", latents, states, episodes)
    linear = by_target["linear"]
    assert list(linear) == target_names("cartpole-balance")
    assert all(r > 0.99 for k, r in linear.items() if k != "sin θ"), linear
    assert linear["sin θ"] < 0.1, linear
    mean = state_r2("cartpole-balance", latents, states, episodes)
    assert mean["linear"] == pytest.approx(np.mean(list(linear.values())))
    assert mean["linear"] > 0.75  # the mean alone would pass this latent as good
