"""Open-loop prediction metrics: alignment of context, actions and targets; errors by hand."""
import numpy as np
import pytest
import torch

from worldmodel import ModelConfig, WorldModel
from worldmodel.data.batch import Batch
from worldmodel.quality import filtered_errors, open_loop_prediction


def _setup(name="rssm"):
    torch.manual_seed(0)
    cfg = ModelConfig.small(transition=name, obs_shape=(5,), action_dim=2, deter_size=16,
                            stoch_size=4, hidden_size=16)
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.randn(3, 8, 5, generator=g), torch.randn(3, 8, 2, generator=g),
                  torch.randn(3, 8, generator=g))
    return WorldModel(cfg), batch


@pytest.mark.parametrize("name", ["rssm", "gaussian"])
def test_open_loop_equals_manual_rollout(name):
    model, batch = _setup(name)
    pred, err = open_loop_prediction(model, batch, context=3, horizon=4)
    with torch.no_grad():
        post = model.observe(batch.images[:, :3], batch.actions[:, :3], sample=False)
        prior = model.imagine(post.last(), batch.actions[:, 2:6], sample=False)
        want = model.decode(prior)
        r = model.predict_reward(prior)
    assert pred.shape == (3, 4, 5) and torch.allclose(pred, want, atol=1e-6)
    assert torch.allclose(err.image_mse, (want - batch.images[:, 3:7]).pow(2).mean((0, 2)), atol=1e-6)
    assert torch.allclose(err.reward_mse, (r - batch.rewards[:, 2:6]).pow(2).mean(0), atol=1e-6)
    assert err.horizon == 4 and err.context == 3


def test_alignment_uses_exactly_the_right_inputs():
    """Predictions of o_{k+1..k+H} depend on o_≤k and a_{k..k+H-1}, on nothing later."""
    model, batch = _setup()
    base, _ = open_loop_prediction(model, batch, context=3, horizon=2)
    later = Batch(batch.images.clone(), batch.actions.clone(), batch.rewards)
    later.images[:, 3:] += 10.0  # the frames being predicted
    later.actions[:, 5:] += 10.0  # actions after the horizon
    same, _ = open_loop_prediction(model, later, context=3, horizon=2)
    assert torch.allclose(base, same)
    moved = Batch(batch.images, batch.actions.clone(), batch.rewards)
    moved.actions[:, 2] += 1.0  # a_k, the action after the last context frame
    diff, _ = open_loop_prediction(model, moved, context=3, horizon=2)
    assert not torch.allclose(base, diff)


def test_filtered_errors_and_bad_horizon():
    model, batch = _setup()
    out = filtered_errors(model, batch)
    assert set(out) == {"recon_mse", "reward_mse"} and out["recon_mse"] > 0
    with pytest.raises(ValueError, match="context must be in"):
        open_loop_prediction(model, batch, context=0)
    with pytest.raises(ValueError, match="exceeds the sequence length 8"):
        open_loop_prediction(model, batch, context=5, horizon=4)
    _, err = open_loop_prediction(model, batch, context=5)
    assert err.horizon == 3


def test_heldout_latents_are_the_filter_means_and_repeat_exactly(tmp_path):
    """The geometry's latents (and so its R²) do not depend on the global RNG."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from train_fixtures import make_dataset

    from worldmodel.data import EpisodeDataset
    from worldmodel.visualize import heldout_latents

    data = EpisodeDataset(make_dataset(tmp_path / "d", episodes=2, steps=6))
    torch.manual_seed(0)
    model = WorldModel(ModelConfig.small(obs_shape=(3, 32, 32), action_dim=1, deter_size=8,
                                         stoch_size=4, hidden_size=16, cnn_depth=2))
    first, states = heldout_latents(model, data)
    from worldmodel.visualize import heldout_episode_ids

    assert heldout_episode_ids(data).tolist() == [0] * 7 + [1] * 7  # frame i's episode, in that order
    torch.manual_seed(123)  # another global RNG state
    again, _ = heldout_latents(model, data)
    assert first.shape == (2 * 7, model.state_size) and states.shape == (2 * 7, 2)
    assert (first == again).all()
    episode = data[0]
    state = None
    for t in range(episode.length + 1):  # the same latents the controller's filter_step gives
        image = torch.tensor(episode.images[t]).permute(2, 0, 1)[None].float() / 255 - 0.5
        action = None if t == 0 else torch.tensor(episode.actions[t - 1])[None]
        state = model.filter_step(state, action, image)
        assert torch.allclose(model.to_vector(state)[0], torch.tensor(first[t]), atol=1e-5)


def test_state_r2_holds_out_whole_episodes():
    """A latent whose error is one offset per episode: a frame split hands k-NN each test frame's
    neighbours in time and scores it high; held out by episode, the offsets show."""
    from worldmodel.visualize import state_r2

    rng = np.random.default_rng(0)
    angles, latents, episodes = [], [], []
    for e in range(20):
        a = rng.uniform(-np.pi, np.pi) + rng.uniform(-2, 2) * 0.08 * np.arange(17)
        v = np.gradient(a) / 0.08
        latents.append(np.stack([np.cos(a), np.sin(a), 0.3 * v], 1) + rng.normal(size=3))
        angles.append(np.stack([a, v], 1))
        episodes += [e] * 17
    z, states = np.concatenate(latents), np.concatenate(angles)
    by_frame = state_r2("pendulum-swingup", z, states)
    by_episode = state_r2("pendulum-swingup", z, states, np.array(episodes))
    assert by_frame["knn"] > 0.7 and by_episode["knn"] < by_frame["knn"] - 0.4
    assert state_r2("pendulum-swingup", z, states, np.zeros(len(z))) == by_frame  # one episode: by frame
