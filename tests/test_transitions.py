"""Transition families: shapes, posterior/prior interface, locally-linear Jacobians."""
import pytest
import torch

from worldmodel.config import ModelConfig
from worldmodel.transitions import LatentSeq, make_transition

FAMILIES = ["gaussian", "rssm", "locally_linear"]


def _cfg(name: str) -> ModelConfig:
    return ModelConfig(transition=name, obs_shape=(6,), action_dim=2, deter_size=16,
                       stoch_size=5, hidden_size=24)


@pytest.mark.parametrize("name", FAMILIES)
def test_step_and_posterior_shapes(name):
    torch.manual_seed(0)
    cfg = _cfg(name)
    tr = make_transition(cfg, embed_size=7)
    b, t = 3, 4
    embed, prev_a = torch.randn(b, t, 7), torch.randn(b, t, 2)
    state = tr.initial_state(b, embed)
    ctx, history = tr.context(embed, prev_a, state.history)
    states = []
    for i in range(t):
        state = tr.posterior_step(state, prev_a[:, i], ctx[:, i], torch.randn(b, 5))
        states.append(state)
    seq = LatentSeq.stack(states)
    assert seq.mean.shape == (b, t, 5) and (seq.std > 0).all()
    assert seq.vector().shape == (b, t, tr.state_size) == (b, t, cfg.state_size)
    mean, std = tr.priors(seq, prev_a)
    assert mean.shape == std.shape == (b, t, 5) and (std >= cfg.min_std).all()
    nxt = tr.step(seq.last(), torch.randn(b, 2), noise=None)
    assert torch.equal(nxt.sample, nxt.mean)  # no noise -> the mean
    assert nxt.vector().shape == (b, tr.state_size)
    # vector round trip
    v = torch.randn(b, tr.state_size)
    assert torch.equal(tr.from_vector(v).vector(), v)


def test_non_rssm_first_prior_is_standard_normal():
    tr = make_transition(_cfg("gaussian"), 7)
    seq = LatentSeq(torch.randn(2, 3, 5), torch.rand(2, 3, 5), torch.randn(2, 3, 5))
    mean, std = tr.priors(seq, torch.zeros(2, 3, 2))
    assert torch.equal(mean[:, 0], torch.zeros(2, 5)) and torch.equal(std[:, 0], torch.ones(2, 5))


def test_rssm_prior_is_shared_with_step():
    """priors() on the posterior's h_t equals the prior of one step from z_{t-1}."""
    torch.manual_seed(1)
    tr = make_transition(_cfg("rssm"), 7)
    b = 3
    embed, prev_a = torch.randn(b, 2, 7), torch.randn(b, 2, 2)
    s0 = tr.initial_state(b, embed)
    ctx, _ = tr.context(embed, prev_a, None)
    s1 = tr.posterior_step(s0, prev_a[:, 0], ctx[:, 0], torch.randn(b, 5))
    s2 = tr.posterior_step(s1, prev_a[:, 1], ctx[:, 1], torch.randn(b, 5))
    mean, std = tr.priors(LatentSeq.stack([s1, s2]), prev_a)
    p2 = tr.step(s1, prev_a[:, 1])
    assert torch.allclose(mean[:, 1], p2.mean, atol=1e-6) and torch.allclose(std[:, 1], p2.std)


def _ll():
    torch.manual_seed(2)
    tr = make_transition(_cfg("locally_linear"), 7)
    with torch.no_grad():  # make the network's z-dependence strong enough to matter
        tr.net[-1].weight.mul_(10.0)
        tr.net[-1].bias.normal_()
    return tr


def test_locally_linear_e2c_jacobians_equal_frozen_linearisation():
    """exact=False returns (A, B) = the Jacobian of the step with v, r, B, c frozen at z̄."""
    tr = _ll()
    z, a = torch.randn(4, 5), torch.randn(4, 2)
    jz, ja = tr.jacobians(z, a, exact=False)
    assert jz.shape == (4, 5, 5) and ja.shape == (4, 5, 2)
    for n in range(4):
        v, r, c, _, b = (p.detach() for p in tr._parts(z[n:n + 1]))

        def frozen(zz, aa):
            return (zz + v[0] * (r[0] @ zz) + b[0] @ aa + c[0])

        fz, fa = torch.func.jacrev(frozen, argnums=(0, 1))(z[n], a[n])
        assert torch.allclose(jz[n], fz, atol=1e-5) and torch.allclose(ja[n], fa, atol=1e-5)
    # A = I + v rᵀ has the E2C rank-one structure
    eye = torch.eye(5).expand(4, 5, 5)
    assert torch.linalg.matrix_rank(jz - eye).max().item() == 1


def test_locally_linear_exact_jacobians_equal_autodiff_of_step():
    tr = _ll()
    z, a = torch.randn(4, 5), torch.randn(4, 2)
    jz, ja = tr.jacobians(z, a, exact=True)

    def mean_step(zz, aa):
        return tr._dist(zz.unsqueeze(0), aa.unsqueeze(0))[0][0]

    fz, fa = torch.func.vmap(torch.func.jacrev(mean_step, argnums=(0, 1)))(z, a)
    assert torch.allclose(jz, fz, atol=1e-4) and torch.allclose(ja, fa, atol=1e-5)
    e2c, _ = tr.jacobians(z, a, exact=False)
    assert (jz - e2c).abs().max() > 1e-2  # the two definitions genuinely differ here


def test_curvature_is_zero_for_globally_linear_dynamics_and_matches_its_closed_form():
    """PCC's curvature loss: 0 when v, r, B, c do not depend on z (the step is linear), and for
    c(z) = κ z² (v = r = 0, so the linearisation is A = I) E‖κ(2zε + ε²)‖² = κ² Σ (4 z² δ² + 3 δ⁴)."""
    tr = make_transition(_cfg("locally_linear"), 7).double()
    with torch.no_grad():
        tr.net[0].weight.zero_()  # the hidden layer, hence every output, is constant in z
        tr.net[-1].bias.normal_()
    g = torch.Generator().manual_seed(0)
    z, a = torch.randn(6, 5, generator=g, dtype=torch.float64), torch.randn(6, 2, generator=g, dtype=torch.float64)
    eps_z, eps_a = 0.3 * torch.randn(6, 5, generator=g, dtype=torch.float64), 0.3 * torch.randn(6, 2, generator=g, dtype=torch.float64)
    assert tr.curvature(z, a, eps_z, eps_a).abs().max() < 1e-12

    kappa, delta, n = 0.7, 0.2, 400_000
    zeros = torch.zeros(1, 5, dtype=torch.float64)
    b = torch.randn(1, 5, 2, generator=g, dtype=torch.float64)
    tr._parts = lambda zz: (zeros, zeros, kappa * zz * zz, zeros, b.expand(*zz.shape[:-1], 5, 2))
    tr._dist = lambda zz, aa: (tr._parts(zz)[2] + zz + (b @ aa.unsqueeze(-1)).squeeze(-1), None)
    point = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.3], dtype=torch.float64)
    zz, aa = point.expand(n, 5), torch.zeros(n, 2, dtype=torch.float64)
    noise_z = delta * torch.randn(n, 5, generator=g, dtype=torch.float64)
    noise_a = delta * torch.randn(n, 2, generator=g, dtype=torch.float64)
    estimate = tr.curvature(zz, aa, noise_z, noise_a)
    exact = kappa ** 2 * float((4 * point ** 2 * delta ** 2 + 3 * delta ** 4).sum())
    assert float(estimate.mean()) == pytest.approx(exact, rel=0.01)  # Monte Carlo, 400k draws


def test_curvature_scale_is_only_for_locally_linear_dynamics():
    with pytest.raises(ValueError, match="curvature_scale > 0 is PCC's loss on locally_linear"):
        ModelConfig(transition="rssm", curvature_scale=1.0)
    with pytest.raises(ValueError, match="curvature_noise > 0"):
        ModelConfig(transition="locally_linear", curvature_scale=1.0, curvature_noise=0.0)
