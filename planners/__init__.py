"""Planners for batched, differentiable dynamics: random shooting, CEM / iCEM, iLQR, MPPI, MPC.

Notation: s [N, S] states, a [N, A] actions, H horizon, u [H, A] a plan. A `Problem` holds
s' = f(s, a), running cost l(s, a), terminal cost l_f(s), H and the action box; a planner holds
only its settings and minimises J = Σ_{t<H} l(s_t, a_t) + l_f(s_H) over u in the box:

    planner = planners.make("ilqr", iterations=20)
    result = planner.plan(problem, state, init=None, generator=None)   # actions [H, A], cost, info

Depends on torch only.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from planners.cem import CEM
from planners.ilqr import ILQR
from planners.mpc import MPC, run_mpc, shift_plan
from planners.mppi import MPPI
from planners.problem import PlanResult, Problem
from planners.random_shooting import RandomShooting

_PLANNERS: dict[str, type] = {"cem": CEM, "ilqr": ILQR, "mppi": MPPI, "random": RandomShooting}


def names() -> list[str]:
    """Names accepted by `make`."""
    return sorted(_PLANNERS)


def make(name: str, **overrides: Any):
    """A planner by name with its default settings, overridden by keyword.

    Unknown names and unknown settings raise ValueError listing the valid ones.
    """
    if name not in _PLANNERS:
        raise ValueError(f"unknown planner {name!r}; valid names: {names()}")
    cls = _PLANNERS[name]
    fields = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(overrides) - set(fields))
    if unknown:
        raise ValueError(f"unknown setting(s) {unknown} for planner {name!r}; valid: {fields}")
    return cls(**overrides)


__all__ = ["CEM", "ILQR", "MPC", "MPPI", "PlanResult", "Problem", "RandomShooting", "make",
           "names", "run_mpc", "shift_plan"]
