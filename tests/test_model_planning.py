"""WorldModel as a planning problem: the filter, the latent Problem's step, costs and Jacobians,
the fused RSSM planning step, and bf16 / compiled planning against float32."""
import sys
from pathlib import Path

import pytest
import torch

from worldmodel.model import GoalObjective

sys.path.insert(0, str(Path(__file__).parent))
from model_fixtures import (FAMILIES, filtered_states as _filtered,  # noqa: E402
                            random_batch as _batch, tiny_model as _model)
from train_fixtures import one_thread  # noqa: E402,F401 (autouse)


@pytest.mark.parametrize("name", FAMILIES)
def test_filter_step_matches_observe(name):
    model = _model(name)
    batch = _batch(model.cfg, t=4)
    seq = model.observe(batch.images, batch.actions, sample=False)
    filtered = _filtered(model, batch)
    assert torch.allclose(filtered[-1].mean, seq.last().mean, atol=1e-5)
    with pytest.raises(ValueError, match="a state but no prev_action.*state=None"):  # it once restarted silently
        model.filter_step(filtered[0], None, batch.images[:, 1])


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("objective", ["reward", "goal"])
def test_planning_problem_step_equals_imagine_mean(name, objective):
    pytest.importorskip("planners")
    model = _model(name)
    batch = _batch(model.cfg, b=2)
    post = model.observe(batch.images, batch.actions)
    start = model.to_vector(post.last())  # [2, S]
    s_dim = model.state_size
    obj = "reward" if objective == "reward" else GoalObjective(torch.zeros(s_dim), 1.0, 0.1)
    problem = model.planning_problem(start[0], obj, horizon=5)
    actions = torch.rand(2, 5, 2) * 2 - 1
    with torch.no_grad():
        seq = model.imagine(model.from_vector(start), actions, sample=False)
        s = start
        for t in range(5):
            s = problem.step(s, actions[:, t])
            assert torch.allclose(s, seq[t].vector(use_mean=True), atol=1e-5)
        assert problem.running_cost(s, actions[:, 0]).shape == (2,)
        assert problem.terminal_cost(s).shape == (2,)
    if objective == "goal":  # E2C cost by hand
        want = (s * s).sum(-1)
        assert torch.allclose(problem.terminal_cost(s), want, atol=1e-5)
    assert (problem.jacobians is not None) == (name == "locally_linear")
    if problem.jacobians is not None:
        jz, ja = problem.jacobians(start, actions[:, 0])
        fz = torch.func.vmap(torch.func.jacrev(problem.step))(start.unsqueeze(1), actions[:, :1])
        assert torch.allclose(jz, fz[:, 0, :, 0], atol=1e-4) and ja.shape == (2, s_dim, 2)


@pytest.mark.parametrize("act", ["relu", "elu"])
def test_rssm_planning_step_is_rssm_step_with_and_without_autograd(act):
    """The fused planning step (planning_step.py) is RSSM.step's prior mean and the reward head:
    equal values in place (no autograd) and equal Jacobians under torch.func (iLQR's path)."""
    from worldmodel.planning_step import RSSMPlanningStep

    model = _model("rssm", activation=act)
    fast = RSSMPlanningStep(model.transition, model.reward_head)
    g = torch.Generator().manual_seed(2)
    s = torch.randn(5, model.state_size, generator=g)
    a = torch.rand(5, 2, generator=g) * 2 - 1

    def slow_step(s, a):
        return model.transition.step(model.transition.from_vector(s), a).vector(use_mean=True)

    same = s[:1].expand(5, -1)  # one start state for all candidates, as planners pass it
    with torch.inference_mode():
        assert torch.allclose(fast.step(s, a), slow_step(s, a), atol=1e-6)
        assert torch.allclose(fast.reward(s), model.reward_head(s).squeeze(-1), atol=1e-6)
        assert torch.allclose(fast.step(same, a), slow_step(same, a), atol=1e-6)
        assert torch.allclose(fast.reward(same), model.reward_head(same).squeeze(-1), atol=1e-6)
    jac = torch.func.vmap(torch.func.jacrev(lambda s, a: fast.step(s[None], a[None])[0],
                                            argnums=(0, 1)))
    want = torch.func.vmap(torch.func.jacrev(lambda s, a: slow_step(s[None], a[None])[0],
                                             argnums=(0, 1)))
    for got, ref in zip(jac(s, a), want(s, a)):
        assert torch.allclose(got, ref, atol=1e-5)
    with pytest.raises(ValueError, match="no reward head"):
        RSSMPlanningStep(model.transition, None).reward(s)


@pytest.mark.slow
def test_planning_problem_in_bfloat16_and_compiled_matches_float32():
    """The speed knobs change how the rollout is computed, not what it is: a compiled step equals
    the eager one, bf16 keeps the caller's dtype and stays within bf16's rounding of float32."""
    model = _model("rssm")
    for p in model.parameters():
        p.requires_grad_(False)
    batch = _batch(model.cfg, b=2)
    start = model.to_vector(model.observe(batch.images, batch.actions).last())  # [2, S]
    actions = torch.rand(8, 2, generator=torch.Generator().manual_seed(1)) * 2 - 1
    states = start.repeat(4, 1)  # [8, S]
    eager = model.planning_problem(None, "reward", 5)
    compiled = model.planning_problem(None, "reward", 5, compile=True)
    bf16 = model.planning_problem(None, "reward", 5, precision="bfloat16")
    with torch.inference_mode():
        want_s, want_r = eager.step(states, actions), eager.terminal_cost(states)
        got_s, got_r = compiled.step(states, actions), compiled.terminal_cost(states)
        low_s, low_r = bf16.step(states, actions), bf16.terminal_cost(states)
    assert torch.allclose(got_s, want_s, atol=1e-5) and torch.allclose(got_r, want_r, atol=1e-5)
    assert low_s.dtype == low_r.dtype == torch.float32
    assert not torch.equal(low_s, want_s)  # bf16 really ran
    scale = want_s.abs().max()
    assert (low_s - want_s).abs().max() < 0.05 * scale
    with pytest.raises(ValueError, match="precision must be one of"):
        model.planning_problem(None, "reward", 5, precision="float16")
