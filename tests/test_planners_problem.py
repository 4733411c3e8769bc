"""Problem validation and the planner registry: clear errors for bad input."""
from __future__ import annotations

import pytest
import torch

import planners


def make_problem(**kw) -> planners.Problem:
    base = dict(step=lambda s, a: s + a.sum(-1, keepdim=True), running_cost=lambda s, a: (s ** 2).sum(-1),
                horizon=5, action_low=-1.0, action_high=1.0, action_dim=2)
    base.update(kw)
    return planners.Problem(**base)


def test_bounds_low_above_high_names_indices_and_values() -> None:
    with pytest.raises(ValueError, match=r"indices \[1\].*low=0.5 > high=0.2"):
        make_problem(action_low=torch.tensor([0.0, 0.5]), action_high=torch.tensor([1.0, 0.2]),
                     action_dim=None)


def test_bound_sizes_and_missing_action_dim() -> None:
    with pytest.raises(ValueError, match="action_dim"):
        make_problem(action_dim=None)
    with pytest.raises(ValueError, match="disagree"):
        make_problem(action_low=torch.zeros(3), action_high=torch.ones(2), action_dim=None)
    with pytest.raises(ValueError, match="horizon"):
        make_problem(horizon=0)
    p = make_problem(action_low=torch.tensor([-1.0, 0.0]), action_high=2.0, action_dim=None)
    low, high = p.bounds(torch.zeros(1, dtype=torch.float64))
    assert p.dim_action == 2 and low.tolist() == [-1.0, 0.0] and high.tolist() == [2.0, 2.0]
    assert low.dtype == torch.float64


@pytest.mark.parametrize("name", ["ilqr", "cem", "random", "mppi"])
def test_misshaped_outputs_are_named(name: str) -> None:
    state = torch.zeros(3)
    bad_step = make_problem(step=lambda s, a: s[:, :2])
    with pytest.raises(ValueError, match=r"step returned shape \(2, 2\).*expected \(2, 3\)"):
        planners.make(name).plan(bad_step, state)
    bad_cost = make_problem(running_cost=lambda s, a: s ** 2)
    with pytest.raises(ValueError, match=r"running_cost returned shape \(2, 3\).*expected \(2,\)"):
        planners.make(name).plan(bad_cost, state)
    bad_terminal = make_problem(terminal_cost=lambda s: s.sum())
    with pytest.raises(ValueError, match=r"terminal_cost returned shape \(\)"):
        planners.make(name).plan(bad_terminal, state)
    with pytest.raises(ValueError, match=r"init must be a \[H, A\] = \[5, 2\]"):
        planners.make(name).plan(make_problem(), state, init=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="1-D tensor"):
        planners.make(name).plan(make_problem(), torch.zeros(1, 3))
    with pytest.raises(ValueError, match="state has NaN or inf"):  # would give NaN actions to an env
        planners.make(name).plan(make_problem(), torch.tensor([0.0, float("nan"), 0.0]))
    with pytest.raises(ValueError, match="warm start.*NaN or inf.*init=None"):
        planners.make(name).plan(make_problem(), state, init=torch.full((5, 2), float("nan")))


def test_registry_errors() -> None:
    assert planners.names() == ["cem", "ilqr", "mppi", "random"]
    with pytest.raises(ValueError, match=r"unknown planner 'pets'.*\['cem', 'ilqr', 'mppi', 'random'\]"):
        planners.make("pets")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['candidate'\].*candidates"):
        planners.make("cem", candidate=10)
    assert planners.make("cem", candidates=10, elites=2).candidates == 10
    with pytest.raises(ValueError, match="elites"):
        planners.make("cem", candidates=10, elites=20)
    with pytest.raises(Exception):  # frozen settings
        planners.make("mppi").samples = 3  # type: ignore[misc]
