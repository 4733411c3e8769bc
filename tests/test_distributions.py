"""Closed-form Gaussian KL, KL balancing and free nats (worldmodel.distributions)."""
import math

import pytest
import torch

from worldmodel.distributions import (free_nats, gaussian_log_prob, kl_balanced, kl_gaussian, soft_cap,
                                      std_from_raw)


def test_kl_matches_formula_for_known_values():
    # KL(N(1, 2²) ‖ N(0, 1)) = log(1/2) + (4 + 1)/2 − 1/2 = 2 − log 2 (one dimension)
    kl = kl_gaussian(torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([0.0]), torch.tensor([1.0]))
    assert kl.item() == pytest.approx(2.0 - math.log(2.0), abs=1e-6)
    # identical distributions -> 0; dimensions add up
    m, s = torch.randn(3, 5), torch.rand(3, 5) + 0.1
    assert torch.allclose(kl_gaussian(m, s, m, s), torch.zeros(3), atol=1e-6)
    per_dim = kl_gaussian(m[:, :2], s[:, :2], m[:, :2] * 0, s[:, :2] * 0 + 1) \
        + kl_gaussian(m[:, 2:], s[:, 2:], m[:, 2:] * 0, s[:, 2:] * 0 + 1)
    assert torch.allclose(kl_gaussian(m, s, torch.zeros_like(m), torch.ones_like(s)), per_dim)


def test_kl_equals_monte_carlo_estimate():
    g = torch.Generator().manual_seed(0)
    mq, sq = torch.tensor([0.3, -1.0, 2.0]), torch.tensor([0.5, 1.5, 0.8])
    mp, sp = torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.0, 0.7, 2.0])
    n = 200_000
    z = mq + sq * torch.randn(n, 3, generator=g, dtype=torch.float64).float()
    logq = gaussian_log_prob(z, mq, sq, 1).double()
    logp = gaussian_log_prob(z, mp, sp, 1).double()
    diff = logq - logp
    est, se = diff.mean().item(), diff.std().item() / math.sqrt(n)
    exact = kl_gaussian(mq, sq, mp, sp).item()
    assert abs(est - exact) < 4 * se, (est, exact, se)


def test_kl_balancing_value_and_gradient_split():
    alpha = 0.8
    mq = torch.randn(4, 3, requires_grad=True)
    sq = (torch.rand(4, 3) + 0.2).requires_grad_()
    mp = torch.randn(4, 3, requires_grad=True)
    sp = (torch.rand(4, 3) + 0.2).requires_grad_()
    plain = kl_gaussian(mq, sq, mp, sp)
    bal = kl_balanced(mq, sq, mp, sp, alpha)
    assert torch.allclose(bal, plain, atol=1e-6)
    g_plain = torch.autograd.grad(plain.sum(), [mq, sq, mp, sp])
    g_bal = torch.autograd.grad(bal.sum(), [mq, sq, mp, sp])
    for gp, gb, w in zip(g_plain, g_bal, [1 - alpha, 1 - alpha, alpha, alpha]):
        assert torch.allclose(gb, w * gp, atol=1e-5)
    with pytest.raises(ValueError, match="alpha"):
        kl_balanced(mq, sq, mp, sp, 1.5)


def test_free_nats_clamps_value_and_gradient():
    kl = torch.tensor([0.5, 2.9, 3.1, 10.0], requires_grad=True)
    out = free_nats(kl, 3.0)
    assert out.tolist() == pytest.approx([3.0, 3.0, 3.1, 10.0])
    (grad,) = torch.autograd.grad(out.sum(), kl)
    assert grad.tolist() == [0.0, 0.0, 1.0, 1.0]
    assert free_nats(kl, 0.0) is kl
    with pytest.raises(ValueError, match="free nats"):
        free_nats(kl, -1.0)


def test_soft_cap_is_the_identity_below_and_logarithmic_above():
    kl = torch.tensor([0.0, 3.0, 99.9, 100.0, 1e3, 1e18], requires_grad=True)
    out = soft_cap(kl, 100.0)
    assert torch.equal(out[:4], kl[:4])  # below the cap: the same floats
    assert out[4].item() == pytest.approx(100.0 * (1.0 + math.log(10.0)))
    assert out[5].item() == pytest.approx(100.0 * (1.0 + math.log(1e16)))
    (grad,) = torch.autograd.grad(out.sum(), kl)
    assert grad[:4].tolist() == [1.0, 1.0, 1.0, 1.0]  # finite at 0: no log(0) leaks into the gradient
    assert grad[4].item() == pytest.approx(0.1) and grad[5].item() == pytest.approx(1e-16)  # cap / KL
    # continuous at the cap
    assert soft_cap(torch.tensor(100.0 + 1e-3), 100.0).item() == pytest.approx(100.0 + 1e-3, abs=1e-4)
    assert soft_cap(kl, None) is kl
    with pytest.raises(ValueError, match="KL cap"):
        soft_cap(kl, 0.0)


def test_std_floor_and_log_prob():
    assert std_from_raw(torch.tensor([-100.0]), 0.1).item() == pytest.approx(0.1)
    # log N(0; 0, 1) = −½ log 2π per element, summed over event dims
    lp = gaussian_log_prob(torch.zeros(2, 3, 4), torch.zeros(2, 3, 4), 1.0, 2)
    assert lp.shape == (2,)
    assert torch.allclose(lp, torch.full((2,), -6.0 * math.log(2 * math.pi)))
    # float32 even for bfloat16 inputs
    assert gaussian_log_prob(torch.zeros(2, dtype=torch.bfloat16), torch.zeros(2), 1.0, 1).dtype == torch.float32


@pytest.mark.parametrize("std, event_dims", [(0.7, 0), (0.7, 2), (1.0, 3)])
def test_log_prob_with_a_constant_std_equals_torch_normal_and_its_gradient(std, event_dims):
    """The fused path for a number σ (the image likelihood) against torch.distributions.Normal."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64).float()
    mean = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64).float().requires_grad_()
    ours = gaussian_log_prob(x, mean, std, event_dims)
    want = torch.distributions.Normal(mean, std).log_prob(x)
    want = want.flatten(-event_dims).sum(-1) if event_dims else want
    assert ours.shape == want.shape and torch.allclose(ours, want, atol=1e-5)
    got_grad, = torch.autograd.grad(ours.sum(), mean)
    assert torch.allclose(got_grad, (x - mean.detach()) / std ** 2, atol=1e-5)
