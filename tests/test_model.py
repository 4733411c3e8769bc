"""WorldModel: shapes, ELBO bookkeeping, frames, bad input, bf16, and learning (planning: test_model_planning.py)."""
import json
import math
import os
import sys
from pathlib import Path

import pytest
import torch

from worldmodel import ModelConfig, WorldModel
from worldmodel.data.batch import Batch

sys.path.insert(0, str(Path(__file__).parent))
from model_fixtures import (FAMILIES, filtered_states as _filtered,  # noqa: E402
                            random_batch as _batch, tiny_model as _model)
from train_fixtures import fit_on_batch, one_thread  # noqa: E402,F401 (one_thread: autouse)

def test_config_presets_and_json_round_trip():
    p = ModelConfig.planet()
    assert (p.deter_size, p.stoch_size, p.hidden_size, p.cnn_depth, p.obs_shape) == \
        (200, 30, 200, 32, (3, 64, 64))
    cfg = ModelConfig.small(transition="gaussian", obs_shape=(3, 48, 48), kl_balance=0.8)
    back = ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and isinstance(back.obs_shape, tuple)
    with pytest.raises(ValueError, match="unknown ModelConfig keys"):
        ModelConfig.from_dict({"depth": 3})
    with pytest.raises(ValueError, match="transition"):
        ModelConfig(transition="lstm")
    with pytest.raises(ValueError, match="S in"):
        ModelConfig(obs_shape=(3, 40, 40))


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("obs_shape", [(3, 32, 32), (3, 80, 80), (3, 84, 84), (3, 128, 128), (7,)])
def test_shapes_and_loss_terms(name, obs_shape):
    model = _model(name, obs_shape, overshooting_distance=3 if name == "rssm" else 0)
    cfg, batch = model.cfg, _batch(model.cfg)
    b, t, s = 3, 6, model.state_size
    assert s == cfg.state_size == cfg.stoch_size + (cfg.deter_size if name == "rssm" else 0)
    post = model.observe(batch.images, batch.actions)
    assert post.mean.shape == (b, t, cfg.stoch_size) and post.vector().shape == (b, t, s)
    assert post[2].mean.shape == (b, cfg.stoch_size) and post[1:].length == t - 1
    prior = model.imagine(post.last(), torch.zeros(b, 4, 2))
    assert prior.length == 4 and model.decode(prior).shape == (b, 4, *obs_shape)
    assert model.predict_reward(prior).shape == (b, 4)
    v = model.to_vector(post.last())
    assert v.shape == (b, s) and torch.equal(model.to_vector(model.from_vector(v)), v)
    out = model.loss(batch)
    for key in ("loss", "elbo", "recon_nll", "reward_nll", "kl", "kl_init", "kl_dyn"):
        assert out[key].dim() == 0 and torch.isfinite(out[key]), key
    assert torch.allclose(out["elbo"], -(out["recon_nll"] + out["reward_nll"] + out["kl"]))
    assert ("overshooting_kl" in out) == (name == "rssm")
    out["loss"].backward()
    assert all(p.grad is not None for p in model.encoder.parameters())


def test_free_nats_only_change_loss_not_elbo():
    a, b = _model("rssm", free_nats=0.0), _model("rssm", free_nats=50.0)
    batch = _batch(a.cfg)
    la, lb = a.loss(batch, torch.Generator().manual_seed(1)), b.loss(batch, torch.Generator().manual_seed(1))
    assert torch.allclose(la["elbo"], lb["elbo"])
    # with 50 free nats every per-step KL is clamped: loss = recon + reward + 50
    assert torch.allclose(lb["loss"], lb["recon_nll"] + lb["reward_nll"] + 50.0)


@pytest.mark.parametrize("size_in, pad, channels_last", [(14, 1, False), (6, 0, False), (7, 1, False),
                                                    (14, 1, True)])
def test_padded_conv_transpose_equals_torch_output_padding(size_in, pad, channels_last):
    """The decoder's fast transposed conv: the same output and gradients as nn.ConvTranspose2d."""
    from worldmodel.networks import PaddedConvTranspose2d

    torch.manual_seed(0)
    ours = PaddedConvTranspose2d(6, 4, 4, stride=2, output_padding=pad)
    theirs = torch.nn.ConvTranspose2d(6, 4, 4, stride=2, output_padding=pad)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(3, 6, size_in, size_in)
    if channels_last:
        ours, theirs = (m.to(memory_format=torch.channels_last) for m in (ours, theirs))
        x = x.to(memory_format=torch.channels_last)
    x.requires_grad_()
    y_ours, y_theirs = ours(x), theirs(x)
    if channels_last:
        assert y_ours.is_contiguous(memory_format=torch.channels_last)
    assert y_ours.shape == y_theirs.shape == (3, 4, 2 * (size_in - 1) + 4 + pad, 2 * (size_in - 1) + 4 + pad)
    assert torch.allclose(y_ours, y_theirs, atol=1e-6)
    g = torch.randn_like(y_ours)
    grads = [torch.autograd.grad(y, (x, m.weight, m.bias), g) for y, m in ((y_ours, ours), (y_theirs, theirs))]
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_grayscale_stacked_frames_filter_one_frame_at_a_time_as_observe_does(name):
    """E2C's observation: the filter carries the frames it must stack next, so MPC (one image
    at a time) sees the same encoder inputs as training (whole sequences)."""
    model = _model(name, grayscale=True, frame_stack=3)
    batch = _batch(model.cfg, t=5)
    seq = model.observe(batch.images, batch.actions, sample=False)
    states = _filtered(model, batch)
    for t, state in enumerate(states):
        assert torch.allclose(state.mean, seq[t].mean, atol=1e-5), t
    gray = model.observed(batch.images)  # [B, T, 1, H, W]
    assert torch.equal(state.frames, gray[:, 3:5].flatten(1, 2))  # the newest k−1 = 2 frames
    assert model.decode(seq).shape == (3, 5, 1, 32, 32)
    assert torch.isfinite(model.loss(batch)["loss"])


def test_encoder_input_is_luma_stacked_oldest_first_with_the_first_frame_repeated():
    model = _model("gaussian", grayscale=True, frame_stack=2)
    batch = _batch(model.cfg, t=3)
    r, g, b = batch.images[:, :, 0], batch.images[:, :, 1], batch.images[:, :, 2]
    luma = (0.299 * r + 0.587 * g + 0.114 * b).unsqueeze(2)  # [B, T, 1, H, W]
    assert torch.allclose(model.observed(batch.images), luma, atol=1e-6)
    x = model.encoder_input(batch.images)  # [B, T, 2, H, W]
    assert x.shape == (3, 3, 2, 32, 32)
    assert torch.equal(x[:, 0, 0], x[:, 0, 1])  # at the start: the first frame twice (at rest)
    assert torch.equal(x[:, 1:, 0], x[:, :-1, 1])  # then each frame after the one before it
    # a stacked encoder's embedding of frame 1 depends on frame 0; a single-frame encoder's does not
    other = batch.images.clone()
    other[:, 0] = -other[:, 0]
    assert not torch.allclose(model.encode(batch.images)[:, 1], model.encode(other)[:, 1])
    single = _model("gaussian", grayscale=True)
    assert torch.equal(single.encode(batch.images)[:, 1], single.encode(other)[:, 1])


def test_grayscale_stacked_model_learns_rendered_frames():
    try:
        data = _cartpole_batch(episodes=2, steps=12)
    except Exception as e:  # no GL backend on this machine
        pytest.skip(f"cannot render cart-pole: {e}")
    from worldmodel.quality import filtered_errors

    torch.manual_seed(0)
    model = WorldModel(ModelConfig.small(transition="locally_linear", obs_shape=(3, 32, 32), action_dim=1,
                                         stoch_size=6, hidden_size=32, cnn_depth=8, grayscale=True,
                                         frame_stack=2, free_nats=0.0))
    before = filtered_errors(model, data)["recon_mse"]
    after = filtered_errors(fit_on_batch(model, data, steps=100), data)["recon_mse"]
    assert after < before / 4, (before, after)


@pytest.mark.parametrize("name", ["gaussian", "locally_linear"])
def test_a_per_frame_posterior_depends_on_its_own_frame_only(name):
    """posterior="frame" is E2C's encoder q(z_t | o_t); the filter's q(z_t) also reads o_<t and a_<t."""
    batch = _batch(_model(name).cfg, t=3)
    earlier = batch.images.clone()
    earlier[:, 0] = -earlier[:, 0]
    moved = batch.actions.clone()
    moved[:, 0] = -moved[:, 0]
    for posterior, same in (("frame", True), ("filter", False)):
        model = _model(name, posterior=posterior)
        a = model.observe(batch.images, batch.actions, sample=False).mean[:, 1]
        b = model.observe(earlier, moved, sample=False).mean[:, 1]
        assert torch.allclose(a, b) is same, posterior
    stacked = _model(name, posterior="frame", frame_stack=2)  # now o_{t-1} is part of its observation
    a = stacked.observe(batch.images, batch.actions, sample=False).mean[:, 1]
    assert not torch.allclose(a, stacked.observe(earlier, moved, sample=False).mean[:, 1])
    assert torch.allclose(a, stacked.observe(earlier[:, 1:], moved[:, 1:], sample=False).mean[:, 0]) is False
    assert torch.allclose(stacked.observe(batch.images, batch.actions, sample=False).mean[:, 2],
                          stacked.observe(earlier, moved, sample=False).mean[:, 2])


def test_without_reconstruction_the_decoder_is_not_trained_and_the_loss_drops_its_term():
    batch = _batch(_model("locally_linear").cfg)
    kw = dict(posterior="frame", predictive_coding_scale=1.0)
    full, pc3 = _model("locally_linear", **kw), _model("locally_linear", reconstruction_scale=0.0, **kw)
    a, b = full.loss(batch, torch.Generator().manual_seed(0)), pc3.loss(batch, torch.Generator().manual_seed(0))
    assert torch.allclose(a["elbo"], b["elbo"])  # the bound itself is unchanged
    assert torch.allclose(b["loss"], a["loss"] - a["recon_nll"], atol=1e-2)  # a difference of ~3000s
    b["loss"].backward()
    assert all(p.grad is None or not p.grad.any() for p in pc3.decoder.parameters())
    assert any(p.grad is not None and p.grad.any() for p in pc3.encoder.parameters())


def test_bad_observation_settings_are_rejected():
    with pytest.raises(ValueError, match="frame_stack must be an int >= 1"):
        ModelConfig(frame_stack=0)
    with pytest.raises(ValueError, match="grayscale=True needs RGB images"):
        ModelConfig(obs_shape=(7,), grayscale=True)
    with pytest.raises(ValueError, match="posterior='frame' needs transition"):
        ModelConfig(transition="rssm", posterior="frame")
    with pytest.raises(ValueError, match="needs predictive_coding_scale > 0"):
        ModelConfig(reconstruction_scale=0.0)


def test_bad_input_errors_name_the_shapes():
    model = _model("rssm")
    batch = _batch(model.cfg)
    with pytest.raises(ValueError, match=r"uint8.*/ 255 - 0.5"):
        model.observe((batch.images * 255).to(torch.uint8), batch.actions)
    with pytest.raises(ValueError, match=r"\(3, 6, 3, 64, 64\).*\(3, 32, 32\)"):
        model.observe(torch.zeros(3, 6, 3, 64, 64), batch.actions)
    with pytest.raises(ValueError, match=r"\(3, 6, 5\).*action_dim=2"):
        model.observe(batch.images, torch.zeros(3, 6, 5))
    with pytest.raises(ValueError, match=r"\(3, 5, 2\).*\(3, 6, 3, 32, 32\)"):
        model.observe(batch.images, batch.actions[:, :5])
    with pytest.raises(ValueError, match=r"rewards shape \(3, 5\)"):
        model.loss(Batch(batch.images, batch.actions, batch.rewards[:, :5]))
    with pytest.raises(ValueError, match=r"\[B, H, 2\]"):
        model.imagine(model.observe(batch.images, batch.actions).last(), torch.zeros(3, 4, 1))
    with pytest.raises(ValueError, match="expected \\[..., 38\\]"):
        model.from_vector(torch.zeros(2, 7))


@pytest.mark.parametrize("name", FAMILIES)
def test_runs_under_bf16_autocast(name):
    model = _model(name, overshooting_distance=3, kl_balance=0.8)
    batch = _batch(model.cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model.loss(batch)
        post = model.observe(batch.images, batch.actions)
        model.decode(model.imagine(post.last(), batch.actions))
    assert out["loss"].dtype == torch.float32 and torch.isfinite(out["loss"])
    out["loss"].backward()
    ref = model.loss(batch)["elbo"].item()
    assert abs(out["elbo"].item() - ref) < 0.05 * abs(ref) + 5.0  # bf16 close to fp32


def _cartpole_batch(episodes=6, steps=32, size=32, seed=0):
    """Random-action cart-pole frames rendered with dm_control, [-0.5, 0.5] floats."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    suite = pytest.importorskip("dm_control.suite")
    import numpy as np
    rng = np.random.default_rng(seed)
    env = suite.load("cartpole", "swingup", task_kwargs={"random": seed})
    imgs, acts, rews = [], [], []
    for _ in range(episodes):
        env.reset()
        ep_i, ep_a, ep_r = [], [], []
        for _ in range(steps):
            ep_i.append(env.physics.render(size, size, camera_id=0))
            a = rng.uniform(-1, 1, size=(1,))
            r = 0.0
            for _ in range(4):  # action repeat 4 (PlaNet, cartpole)
                r += env.step(a).reward or 0.0
            ep_a.append(a)
            ep_r.append(r)
        imgs.append(np.stack(ep_i))
        acts.append(np.stack(ep_a))
        rews.append(np.array(ep_r))
    images = torch.tensor(np.stack(imgs)).permute(0, 1, 4, 2, 3).float() / 255 - 0.5
    return Batch(images, torch.tensor(np.stack(acts)).float(), torch.tensor(np.stack(rews)).float())


@pytest.mark.slow
def test_learning_on_rendered_cartpole():
    from worldmodel.quality import filtered_errors, open_loop_prediction
    try:
        data = _cartpole_batch()
    except Exception as e:  # no GL backend on this machine
        pytest.skip(f"cannot render cart-pole: {e}")
    torch.manual_seed(0)
    cfg = ModelConfig.small(obs_shape=(3, 32, 32), deter_size=64, stoch_size=16, hidden_size=64,
                            cnn_depth=16, free_nats=1.0)
    model = WorldModel(cfg)
    held_out = Batch(data.images[-2:], data.actions[-2:], data.rewards[-2:])  # 2 unseen episodes
    before_recon = filtered_errors(model, held_out)["recon_mse"]
    before_ol = open_loop_prediction(model, held_out, context=5, horizon=10)[1].image_mse.mean()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-4)  # PlaNet: Adam 1e-3, eps 1e-4
    g = torch.Generator().manual_seed(0)
    for step in range(250):
        ep = torch.randint(0, 4, (8,), generator=g)
        start = torch.randint(0, 32 - 16, (8,), generator=g)
        idx = start[:, None] + torch.arange(16)
        batch = Batch(data.images[ep[:, None], idx], data.actions[ep[:, None], idx],
                      data.rewards[ep[:, None], idx])
        loss = model.loss(batch, g)["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1000.0)  # PlaNet clips at 1000
        opt.step()
    after_recon = filtered_errors(model, held_out)["recon_mse"]
    after_ol = open_loop_prediction(model, held_out, context=5, horizon=10)[1].image_mse.mean()
    # measured (2 cores): recon MSE falls ~ 10x, open-loop MSE ~ 5x in 250 steps
    assert after_recon < before_recon / 4, (before_recon, after_recon)
    assert after_ol < before_ol / 3, (before_ol, after_ol)


def test_reward_overshooting_scores_each_open_loop_step_against_its_own_reward(monkeypatch):
    """With the noise switched off, the d-step reward term equals the reward NLL of `imagine`
    rolled from each posterior state, so the alignment (z_{t+d} predicts r_{t+d-1}) is right."""
    import worldmodel.model as model_module
    model = _model("rssm", overshooting_distance=3, overshooting_reward_scale=0.5)
    batch = _batch(model.cfg, t=6)
    b, t = batch.rewards.shape
    monkeypatch.setattr(model_module, "standard_normal",
                        lambda shape, like, generator=None: like.new_zeros(shape))
    with torch.no_grad():
        post = model.observe(batch.images, batch.actions)
        got = model.overshooting(post, batch.actions, batch.rewards)["overshooting_reward_nll"]
        per_distance = []
        for d in range(1, 4):
            total = torch.zeros(b)
            for s in range(t - d):  # starts whose d-step target exists
                seq = model.imagine(post[s], batch.actions[:, s:s + d], sample=False)
                err = batch.rewards[:, s + d - 1] - model.predict_reward(seq)[:, -1]
                total += 0.5 * err ** 2 + 0.5 * math.log(2 * math.pi)  # reward_std = 1
            per_distance.append(total.mean() / t)
    assert got.item() == pytest.approx(torch.stack(per_distance).mean().item(), rel=1e-5)
    # the term is in the loss with its scale, and off by default
    with torch.no_grad():
        loss = model.loss(batch)
    assert "overshooting_reward_nll" in loss
    assert "overshooting_reward_nll" not in _model("rssm", overshooting_distance=3).loss(batch)
    with pytest.raises(ValueError, match="overshooting_reward_scale"):
        ModelConfig.small(overshooting_reward_scale=-1.0)


def test_curvature_loss_trains_the_dynamics_towards_their_own_linearisation():
    """With PCC's curvature term the model's measured curvature falls well below that of the same
    model trained on the bound alone (same data, seed and steps); the term is reported and seeded."""
    batch = _batch(_model("locally_linear", obs_shape=(8,)).cfg, b=8, t=10)

    def trained(scale: float) -> WorldModel:
        return fit_on_batch(_model("locally_linear", obs_shape=(8,), curvature_scale=scale,
                                   curvature_noise=0.3), batch)

    g = torch.Generator().manual_seed(123)
    noise_z, noise_a = 0.3 * torch.randn(8, 9, 6, generator=g), 0.3 * torch.randn(8, 9, 2, generator=g)

    def measured(model: WorldModel) -> float:  # on the posterior means, the same perturbations
        with torch.no_grad():
            post = model.observe(batch.images, batch.actions, sample=False)
            return float(model.transition.curvature(post.mean[:, :-1], batch.actions[:, :-1],
                                                    noise_z, noise_a).mean())

    plain, shaped = trained(0.0), trained(10.0)
    out = shaped.loss(batch, torch.Generator().manual_seed(0))
    assert "curvature" in out and "curvature" not in plain.loss(batch)
    assert torch.equal(out["curvature"], shaped.loss(batch, torch.Generator().manual_seed(0))["curvature"])
    assert measured(shaped) < 0.3 * measured(plain), (measured(shaped), measured(plain))

