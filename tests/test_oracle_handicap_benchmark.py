"""benchmarks/e2c_oracle_handicap.py: its read-outs and the oracle's cost carried into a latent."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import e2c_oracle_handicap as bench  # noqa: E402  (benchmarks/e2c_oracle_handicap.py)


def _linear_latents(seed: int = 0, n: int = 300, size: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Latents [n, size] and (angle, velocity) [n, 2] = latents @ W + b exactly; W [size, 2]."""
    rng = np.random.default_rng(seed)
    w, b = rng.normal(size=(size, 2)), np.array([0.3, -1.2])
    z = rng.normal(size=(n, size))
    return z, z @ w + b, w


def test_linear_readout_recovers_an_exact_linear_map():
    z, y, _ = _linear_latents()
    read = bench.LinearReadout(z, y)
    probe = np.random.default_rng(5).normal(size=z.shape[1])
    angle, velocity = read(probe)
    expected = probe @ _linear_latents()[2] + np.array([0.3, -1.2])
    assert (angle, velocity) == pytest.approx(tuple(expected), abs=1e-9)


def test_readout_cost_is_the_oracles_cost_on_the_read_out_state():
    """(s − g)ᵀQ(s − g) = angle(s)² + v·velocity(s)² for any latent s, and the goal reads as upright
    at rest, moved as little as possible from the latent it was given."""
    z, y, _ = _linear_latents()
    read = bench.LinearReadout(z, y)
    given = torch.as_tensor(np.random.default_rng(1).normal(size=z.shape[1]))
    objective = bench.readout_cost(read, velocity_weight=0.01, action_weight=0.02, goal=given)
    assert read(objective.goal.numpy()) == pytest.approx((0.0, 0.0), abs=1e-9)
    assert objective.R == 0.02
    # the least-norm move: along the read-out's two directions only
    w = read.weights[:-1]
    move = (objective.goal - given).numpy()
    residual = move - w @ np.linalg.lstsq(w, move, rcond=None)[0]
    assert np.abs(residual).max() < 1e-9
    for s in np.random.default_rng(2).normal(size=(5, z.shape[1])):
        d = torch.as_tensor(s) - objective.goal
        cost = float(d @ objective.Q @ d)
        angle, velocity = read(s)
        assert cost == pytest.approx(angle ** 2 + 0.01 * velocity ** 2, rel=1e-9)


def test_flaw_values_parse_and_refuse_unknown_flaws():
    assert bench.flaw_values(["angle_noise=0.01,0.02"], "--sweep") == {"angle_noise": [0.01, 0.02]}
    with pytest.raises(SystemExit, match="FLAW one of"):
        bench.flaw_values(["wind=1"], "--sweep")
    with pytest.raises(SystemExit, match="numbers separated by commas"):
        bench.flaw_values(["angle_noise=a,b"], "--together")


def test_probe_frames_read_the_cart_poles_pole_through_the_runs_camera(tmp_path, monkeypatch):
    """The cart-pole's state is (x, θ, ẋ, θ̇): the probe must read θ and θ̇, not the pendulum's
    columns 0 and 1, and film through the camera the run's model was trained on."""
    import math

    import worldmodel.checkpoint
    import worldmodel.e2c
    from worldmodel import ModelConfig, WorldModel
    from worldmodel.data import EpisodeDataset
    from worldmodel.e2c import E2CConfig

    config = E2CConfig.for_task("cartpole-balance", quick=True, image_size=32, camera="lookatcart")
    model = WorldModel(ModelConfig.small(obs_shape=(3, 32, 32), action_dim=1))
    monkeypatch.setattr(worldmodel.e2c, "stored_run", lambda run, **overrides: (config, {}))
    monkeypatch.setattr(worldmodel.checkpoint, "load_model", lambda path, **kw: (model, None, None))
    probe = bench.probe_frames(tmp_path, episodes=2, steps=6, seed=0)
    data = EpisodeDataset(tmp_path / "upright_probe")
    assert data.manifest["camera"] == "lookatcart"
    states = np.concatenate([ep.states[2:] for ep in data.episodes])  # the probe skips each episode's first 2
    angle = np.remainder(states[:, 1] + math.pi, 2 * math.pi) - math.pi
    keep = np.abs(angle) < math.pi / 10
    assert 0 < keep.sum() == len(probe["targets"])
    np.testing.assert_allclose(probe["targets"], np.stack([angle, states[:, 3]], axis=1)[keep], rtol=1e-6)
