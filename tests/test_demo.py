"""End to end: the demo pipeline (collect, train, MPC, oracle, pictures) runs and writes its outputs.

Whether learning helps control is asserted in the online loop's test (tests/test_online.py), which
compares MPC episodes with its random seed episodes; it held on 8 of 8 seeds there. Offline,
on a few thousand random-action frames of cart-pole balance, learned-model MPC beats random
actions only at the demo's full budget (354 vs 228, README); at test-sized budgets it did in 2 of
3 seeds (measured with a 32-unit model, 2000 updates on 100 x 20-step episodes: 331 vs 265,
249 vs 276, 337 vs 258), so no margin is asserted here.
"""
from __future__ import annotations

import json
import math

import imageio.v3 as iio
import pytest

from worldmodel.demo import DemoConfig, run_demo


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_summary_and_pictures(tmp_path):
    summary = run_demo(DemoConfig.quick(), tmp_path, progress=False)
    on_disk = json.loads((tmp_path / "summary.json").read_text())
    for key in ("learned_return", "random_return", "oracle_return", "latent_r2", "task", "wall_seconds"):
        assert key in on_disk, key
    assert on_disk == json.loads(json.dumps(summary))
    assert on_disk["task"] == "cartpole-balance"
    assert {"torch", "numpy", "mujoco", "dm_control"} <= set(on_disk["versions"])  # results move with them
    from worldmodel.data import EpisodeDataset
    from worldmodel.provenance import data_fingerprint
    assert on_disk["data_fingerprint"] == data_fingerprint(EpisodeDataset(tmp_path / "data").episodes)
    assert {"cpu", "torch_threads", "platform"} <= set(on_disk["machine"])
    # many short random episodes (the demo's data), held-out ones drawn alike
    steps = DemoConfig.quick().episode_steps
    for folder in ("data", "heldout"):
        assert {e.length for e in EpisodeDataset(tmp_path / folder).episodes} == {steps}
    for key in ("learned_return", "random_return", "oracle_return"):
        assert 0.0 <= on_disk[key] <= 1000.0, (key, on_disk[key])
    assert math.isfinite(on_disk["latent_r2"])
    from worldmodel.geometry import target_names
    by_target = on_disk["latent_r2_by_target"]  # what the mean is made of, target by target
    assert set(by_target) == {"linear", "knn"} and set(by_target["linear"]) == set(target_names("cartpole-balance"))
    # CEM on the true simulator balances the pole even at the quick setting's tiny budget.
    assert on_disk["oracle_return"] > 2 * on_disk["random_return"]
    for name in ("latent_geometry.png", "open_loop_prediction.png", "training_curves.png"):
        image = iio.imread(tmp_path / name)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    # the MPC episode: real frames beside the model's one-step predictions, one pair per step
    video = iio.imread(tmp_path / on_disk["video"])
    size = DemoConfig.quick().image_size
    assert video.shape[1:] == (size, 2 * size + 2, 3)
    assert video.shape[0] >= 2
    # the geometry over training: one frame per weight snapshot (the quick demo keeps several)
    gif = iio.imread(tmp_path / "latent_geometry_over_training.gif")
    assert gif.ndim == 4 and gif.shape[0] >= 2


def test_flags_override_quick_even_at_the_full_demos_values(monkeypatch, tmp_path):
    from worldmodel import demo
    from worldmodel.cli import main

    seen = []
    monkeypatch.setattr(demo, "run_demo", lambda config, out: seen.append(config) or {})
    monkeypatch.setattr(demo, "print_table", lambda summary: None)
    main(["demo", "--quick", "--train-steps", str(DemoConfig.train_steps), "--out", str(tmp_path)])
    main(["demo", "--quick", "--episode-steps", "0", "--out", str(tmp_path)])
    main(["demo", "--out", str(tmp_path)])
    quick = DemoConfig.quick()
    assert seen[0].train_steps == DemoConfig.train_steps != quick.train_steps  # once silently kept quick's
    assert seen[0].train_episodes == quick.train_episodes  # what was not given stays quick's
    assert seen[1].episode_steps is None  # 0: the task's full episode
    assert seen[2] == DemoConfig()


def test_episodes_shorter_than_the_chunk_length_shorten_the_chunks(monkeypatch, tmp_path):
    """`--episode-steps 4` (5 observations) with the quick demo's 16-frame chunks trains on 5-frame
    chunks instead of failing after the collection with 'no episode is long enough'."""
    import worldmodel.train

    class Trained(Exception):
        pass

    def capture(model_config, train_config, data_path, run_dir, **kw):
        seen.append(train_config)
        raise Trained

    seen = []
    monkeypatch.setattr(worldmodel.train, "train", capture)
    with pytest.raises(Trained):
        run_demo(DemoConfig.quick(episode_steps=4, train_episodes=2), tmp_path, progress=False)
    assert DemoConfig.quick().chunk_length > 5 and seen[0].chunk_length == 5
