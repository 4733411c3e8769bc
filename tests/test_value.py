"""The latent value head: TD(λ) targets, learning an analytic value, and its use in planning."""
import pytest
import torch

from worldmodel import ModelConfig, WorldModel
from worldmodel.data.batch import Batch
from worldmodel.networks import mlp
from worldmodel.value import lambda_returns, state_value, value_loss


def test_lambda_returns_match_their_recursion_and_both_ends():
    g = torch.Generator().manual_seed(0)
    rewards, values = torch.randn(3, 5, generator=g), torch.randn(3, 6, generator=g)
    gamma, lam = 0.9, 0.7
    got = lambda_returns(rewards, values, gamma, lam)
    expected = torch.empty(3, 5)
    nxt = values[:, 5]
    for t in range(4, -1, -1):  # G_t = r_t + γ((1 − λ) V_{t+1} + λ G_{t+1}), G_5 = V_5
        expected[:, t] = rewards[:, t] + gamma * ((1 - lam) * values[:, t + 1] + lam * nxt)
        nxt = expected[:, t]
    torch.testing.assert_close(got, expected)
    # λ = 0: one-step TD targets; λ = 1: the discounted return plus the discounted last value
    torch.testing.assert_close(lambda_returns(rewards, values, gamma, 0.0),
                               rewards + gamma * values[:, 1:])
    powers = gamma ** torch.arange(5.0)
    mc0 = (rewards * powers).sum(1) + gamma ** 5 * values[:, 5]
    torch.testing.assert_close(lambda_returns(rewards, values, gamma, 1.0)[:, 0], mc0)


def test_lambda_returns_name_bad_shapes_and_settings():
    with pytest.raises(ValueError, match=r"\[B, T-1\] and \[B, T\]"):
        lambda_returns(torch.zeros(2, 5), torch.zeros(2, 5), 0.9, 0.9)
    with pytest.raises(ValueError, match="discount and lambda"):
        lambda_returns(torch.zeros(2, 4), torch.zeros(2, 5), 1.5, 0.9)


def test_value_head_learns_the_discounted_return_of_a_cycle():
    """States 0..K-1 visited in a cycle with reward r_k on leaving k: V(k) has a closed form,
    V(k) = Σ_j γ^j r_{(k+j) mod K} = Σ_j γ^j r_{(k+j) mod K} over one lap / (1 − γ^K)."""
    torch.manual_seed(0)
    K, gamma, T = 5, 0.8, 12
    r = torch.tensor([0.0, 0.0, 1.0, 0.0, 0.5])
    lap = torch.stack([sum(gamma ** j * r[(k + j) % K] for j in range(K)) for k in range(K)])
    true_v = lap / (1 - gamma ** K)
    head = mlp([K, 32, 1])
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)
    eye = torch.eye(K)
    for _ in range(1500):
        starts = torch.randint(0, K, (16,))
        states = (starts[:, None] + torch.arange(T)) % K  # [B, T]
        loss = value_loss(head, eye[states], r[states], gamma, 0.9)
        opt.zero_grad()
        loss.backward()
        opt.step()
    learned = state_value(head, eye, gamma).detach()
    assert torch.allclose(learned, true_v, atol=0.05 * true_v.max().item()), (learned, true_v)


def _model(**kw):
    torch.manual_seed(0)
    cfg = ModelConfig.small(obs_shape=(3, 32, 32), action_dim=1, deter_size=16, stoch_size=4,
                            hidden_size=16, cnn_depth=4, **kw)
    return WorldModel(cfg)


def test_value_loss_is_in_the_model_loss_and_trains_only_the_value_head():
    model = _model(value_head=True)
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.rand(2, 6, 3, 32, 32, generator=g) - 0.5,
                  torch.rand(2, 6, 1, generator=g) * 2 - 1, torch.rand(2, 6, generator=g))
    out = model.loss(batch)
    assert "value_loss" in out and "value_loss" not in _model().loss(batch)
    out["value_loss"].backward()
    assert all(p.grad is not None for p in model.value_head.parameters())
    others = [p for n, p in model.named_parameters() if not n.startswith("value_head")]
    assert all(p.grad is None for p in others)


def test_planning_adds_the_value_of_the_last_state_only_when_asked():
    model = _model(value_head=True)
    s = torch.randn(7, model.state_size)
    with torch.no_grad():
        reward = model.reward_head(s).squeeze(-1)
        value = model.value_head(s).squeeze(-1) / (1 - model.cfg.discount)
        with_value = model.planning_problem(None, "reward", horizon=3).terminal_cost(s)
        without = model.planning_problem(None, "reward", horizon=3,
                                         terminal_value=False).terminal_cost(s)
    torch.testing.assert_close(with_value, -(reward + value))
    torch.testing.assert_close(without, -reward)


def test_value_settings_are_checked():
    with pytest.raises(ValueError, match="discount must be in"):
        ModelConfig.small(value_head=True, discount=1.0)
    with pytest.raises(ValueError, match="needs predict_reward"):
        ModelConfig.small(value_head=True, predict_reward=False)


class _Drift(torch.nn.Module):
    """Known latent dynamics s' = s + 0.5 a (a point mass), with a tiny std."""

    def step(self, state, action, noise):
        from worldmodel.transitions import LatentState

        mean = state.sample + 0.5 * action
        std = torch.full_like(mean, 1e-3)
        return LatentState(mean, std, mean + std * noise)


class _NegSquare(torch.nn.Module):
    def forward(self, s):
        return -(s ** 2).sum(-1, keepdim=True)


def test_imagined_actor_critic_learns_to_steer_to_the_reward_and_values_states_by_it():
    """On s' = s + 0.5 a with reward −s², the actor learns to push s to 0 from either side, and
    the critic learns that states near 0 are worth more than states far from it."""
    from worldmodel.transitions import LatentState
    from worldmodel.value import Actor, imagined_actor_critic

    torch.manual_seed(0)
    actor, value = Actor(1, 1, 32, "relu"), mlp([1, 32, 32, 1])
    opt = torch.optim.Adam([*actor.parameters(), *value.parameters()], lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(400):
        s = torch.rand(64, 1, generator=g) * 4 - 2
        start = LatentState(s, torch.full_like(s, 1e-3), s)
        out = imagined_actor_critic(_Drift(), _NegSquare(), value, actor, start, horizon=5,
                                    discount=0.9, lam=0.95, entropy_scale=1e-4, generator=g)
        opt.zero_grad()
        (out["actor_loss"] + out["value_loss"]).backward()
        opt.step()
    with torch.no_grad():
        mean_action = torch.tanh(actor.net(torch.tensor([[1.5], [-1.5]])).chunk(2, -1)[0]).squeeze(-1)
        v = state_value(value, torch.tensor([[0.0], [1.0], [2.0]]), 0.9)
    assert mean_action[0] < -0.5 and mean_action[1] > 0.5, mean_action
    assert v[0] > v[1] > v[2], v
    # its plans, as CEM's policy prior (latent_problem.actor_proposal), bring s from 1.5 near 0
    from worldmodel.latent_problem import actor_proposal

    plans = actor_proposal(actor, lambda s, a: s + 0.5 * a, 6)(torch.tensor([1.5]), 32, g)
    assert plans.shape == (32, 6, 1) and plans.abs().max() <= 1.0
    final = 1.5 + 0.5 * plans.sum((1, 2))  # s_H of each plan
    assert final.abs().mean() < 0.5, final


def test_imagined_actor_critic_trains_the_actor_and_value_only():
    model = _model(value_head=True, value_target="imagined", imagination_horizon=3)
    g = torch.Generator().manual_seed(0)
    batch = Batch(torch.rand(2, 5, 3, 32, 32, generator=g) - 0.5,
                  torch.rand(2, 5, 1, generator=g) * 2 - 1, torch.rand(2, 5, generator=g))
    out = model.loss(batch)
    assert {"actor_loss", "value_loss", "imagined_return"} <= set(out)
    for term, owner in (("actor_loss", "actor."), ("value_loss", "value_head.")):
        model.zero_grad()
        out[term].backward(retain_graph=True)
        touched = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
        assert touched and all(n.startswith(owner) for n in touched), (term, touched)
    with pytest.raises(ValueError, match="value_target"):
        ModelConfig.small(value_head=True, value_target="dreamed")


def test_a_model_with_an_actor_offers_its_plans_to_the_planner():
    import planners

    model = _model(value_head=True, value_target="imagined")
    problem = model.planning_problem(None, "reward", horizon=4)
    s = torch.randn(model.state_size)
    plans = problem.proposal(s, 5, torch.Generator().manual_seed(3))
    again = problem.proposal(s, 5, torch.Generator().manual_seed(3))
    assert plans.shape == (5, 4, 1) and plans.abs().max() <= 1.0
    torch.testing.assert_close(plans, again)  # seeded: the same plans
    with torch.no_grad():  # the first action is drawn from π(a | s) at the start state
        first, _ = model.actor(s.expand(5, -1), torch.Generator().manual_seed(3))
    torch.testing.assert_close(plans[:, 0], first)
    res = planners.CEM(iterations=2, candidates=16, elites=4, policy_candidates=3).plan(problem, s)
    assert res.info["samples"] == 2 * (16 + 3) and "policy_cost" in res.info
    assert _model(value_head=True).planning_problem(None, "reward", horizon=4).proposal is None
