"""A tiny WorldModel of each transition family and a random batch for it, shared by the model tests."""
import torch

from worldmodel import ModelConfig, WorldModel
from worldmodel.data.batch import Batch

FAMILIES = ["gaussian", "rssm", "locally_linear"]


def tiny_model(name, obs_shape=(3, 32, 32), **kw):
    torch.manual_seed(0)
    cfg = ModelConfig.small(transition=name, obs_shape=obs_shape, action_dim=2, deter_size=32,
                            stoch_size=6, hidden_size=32, cnn_depth=8, **kw)
    return WorldModel(cfg)


def random_batch(cfg, b=3, t=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(b, t, *cfg.obs_shape, generator=g) - 0.5,
                 torch.rand(b, t, cfg.action_dim, generator=g) * 2 - 1,
                 torch.randn(b, t, generator=g))


def filtered_states(model, batch):
    """The states of MPC's filter fed the batch one image at a time, as `filter_step` sees them."""
    states, state = [], None
    for t in range(batch.images.shape[1]):
        prev = None if t == 0 else batch.actions[:, t - 1]
        state = model.filter_step(state, prev, batch.images[:, t])
        states.append(state)
    return states
