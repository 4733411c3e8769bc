"""End to end: the demo pipeline learns a model whose MPC beats random actions (CPU minutes)."""
from __future__ import annotations

import json

import imageio.v3 as iio
import pytest

from worldmodel.demo import DemoConfig, run_demo

# A few thousand frames of cart-pole balance at 32x32, a small RSSM, CEM in its latent space.
CONFIG = DemoConfig(image_size=32, train_episodes=10, heldout_episodes=1, train_steps=400,
                    batch_size=16, chunk_length=32, eval_episodes=3, oracle_episodes=1,
                    random_episodes=3, candidates=300, iterations=5, workers=1, seed=0)
MARGIN = 1.3  # learned-model MPC return must exceed random actions' by this factor


@pytest.mark.slow
def test_demo_learns_to_beat_random_actions_and_writes_its_outputs(tmp_path):
    summary = run_demo(CONFIG, tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("learned_return", "random_return", "oracle_return", "latent_r2", "task", "wall_seconds"):
        assert key in on_disk, key
    assert on_disk["task"] == "cartpole-balance"
    print(f"\nlearned {summary['learned_return']:.1f}, random {summary['random_return']:.1f}, "
          f"oracle {summary['oracle_return']:.1f}, R² {summary['latent_r2']:.3f}")
    assert summary["learned_return"] > MARGIN * summary["random_return"]
    for name in ("latent_geometry.png", "open_loop_prediction.png", "training_curves.png"):
        image = iio.imread(tmp_path / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
