"""Small datasets, configs and a one-batch fit shared by the trainer's and the model's tests
(tests/test_train.py, test_checkpoint.py, test_ddp.py, test_model.py, test_predictive_coding.py): 32×32 images and a model a few hundred parameters wide, so an update takes
milliseconds on one CPU thread."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

IMAGE_SIZE = 32  # the smallest size ModelConfig accepts


def make_dataset(path: str | Path, *, episodes: int = 3, steps: int = 20, action_dim: int = 1,
                 seed: int = 0) -> Path:
    """A dataset of smooth random episodes: a bright square whose position follows the actions,
    so the model has something learnable (reward = -|position|)."""
    from worldmodel.data import Episode, EpisodeDataset

    rng = np.random.default_rng(seed)
    data = EpisodeDataset.create(path, task="synthetic-square", image_size=IMAGE_SIZE, action_repeat=1,
                                 action_dim=action_dim, state_dim=2)
    for _ in range(episodes):
        actions = rng.uniform(-1, 1, (steps, action_dim)).astype(np.float32)
        pos = np.zeros((steps + 1, 2), np.float32)
        for t in range(steps):
            pos[t + 1] = np.clip(pos[t] + 0.2 * actions[t, 0] * np.array([1.0, -0.5]), -1, 1)
        images = np.zeros((steps + 1, IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
        centre = ((pos + 1) / 2 * (IMAGE_SIZE - 8)).astype(int) + 4
        for t, (x, y) in enumerate(centre):
            images[t, y - 3:y + 3, x - 3:x + 3] = 255
        rewards = -np.abs(pos[1:, 0]).astype(np.float32)
        data.append(Episode(images=images, actions=actions, rewards=rewards, states=pos))
    return Path(path)


def tiny_model_config(**overrides):
    from worldmodel import ModelConfig

    base = dict(transition="rssm", obs_shape=(3, IMAGE_SIZE, IMAGE_SIZE), action_dim=1, deter_size=8,
                stoch_size=4, hidden_size=16, cnn_depth=2)
    return ModelConfig(**{**base, **overrides})


def tiny_train_config(**overrides):
    from worldmodel.train import TrainConfig

    base = dict(steps=6, batch_size=3, chunk_length=5, checkpoint_every=3, log_every=1, device="cpu")
    return TrainConfig(**{**base, **overrides})


def fit_on_batch(model, batch, *, steps: int = 150, lr: float = 3e-3):
    """`model` after `steps` Adam updates of its loss on one fixed batch, the noise of update i
    seeded by i: a knob's effect is then the difference between two such fits."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    for i in range(steps):
        opt.zero_grad()
        model.loss(batch, torch.Generator().manual_seed(i))["loss"].backward()
        opt.step()
    return model


@pytest.fixture(autouse=True)
def one_thread():
    """Autouse in the modules that import it: tiny models run faster and repeat bit for bit on
    one thread, and a second process on a 2-core machine does not oversubscribe it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
