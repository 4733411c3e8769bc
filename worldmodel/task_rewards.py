"""Vectorised dm_control rewards: the reward of a whole batch of states in one call.

Notation: N states in a batch; qpos [N, nq] joint positions, qvel [N, nv] joint velocities,
ctrl [N, nu] the control (action) that was applied, all as in MuJoCo's mjData. A flat state
vector is qpos then qvel ([N, nq + nv]), the layout of `info["state"]` in `envs`.

dm_control computes a task's reward *after* each physics step, from the new positions and
velocities and the control that produced them:  r_t = r(qpos_{t+1}, qvel_{t+1}, a_t).
The formulas below are re-derived from the task files of dm_control 1.0.50
(`suite/cartpole.py`, `suite/pendulum.py`, `suite/point_mass.py`) and its soft indicator
`utils/rewards.tolerance`; the kinematic quantities they read from mjData are written in terms
of joints:
  - cartpole: pole z-axis component `xmat['pole_1', 'zz']` = cos(hinge angle), since the hinge
    axis is y and the pole's rest frame is upright (cartpole.xml);
  - pendulum: `xmat['pole', 'zz']` = cos(hinge angle) for the same reason (pendulum.xml);
  - point_mass: `geom_xpos['target'] - geom_xpos['pointmass']` = -(root_x, root_y, 0), since
    the target sits at the origin at the same height as the mass's body (point_mass.xml).
tests/test_task_rewards.py checks every task against dm_control's own per-step rewards.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

Array = torch.Tensor | np.ndarray
RewardFn = Callable[[Array, Array, Array], Array]

# dm_control/utils/rewards.py: _DEFAULT_VALUE_AT_MARGIN
_DEFAULT_VALUE_AT_MARGIN = 0.1
# pendulum.py: _ANGLE_BOUND = 8 degrees, reward 1 while |angle| < 8°
_PENDULUM_COSINE_BOUND = math.cos(math.radians(8.0))
# cartpole.py Balance: _CART_RANGE, _ANGLE_COSINE_RANGE (sparse variants)
_CART_RANGE = (-0.25, 0.25)
_ANGLE_COSINE_RANGE = (0.995, 1.0)
# point_mass.xml: target geom size .015 (the radius is both the bound and the margin)
_POINT_MASS_TARGET_SIZE = 0.015

# (nq, nv, nu) per domain, from the domain XML files.
_DIMS = {"cartpole": (2, 2, 1), "pendulum": (1, 1, 1), "point_mass": (2, 2, 2)}


def _sigmoid(x: torch.Tensor, value_at_1: float, kind: str) -> torch.Tensor:
    """A bump with value 1 at x = 0 and `value_at_1` at |x| = 1 (dm_control's `_sigmoids`)."""
    if kind == "gaussian":
        if not 0 < value_at_1 < 1:
            raise ValueError(f"gaussian sigmoid needs 0 < value_at_1 < 1, got {value_at_1}")
        scale = math.sqrt(-2.0 * math.log(value_at_1))
        return torch.exp(-0.5 * (x * scale) ** 2)
    if kind == "quadratic":
        if not 0 <= value_at_1 < 1:
            raise ValueError(f"quadratic sigmoid needs 0 <= value_at_1 < 1, got {value_at_1}")
        scaled = x * math.sqrt(1.0 - value_at_1)
        return torch.where(scaled.abs() < 1, 1 - scaled ** 2, torch.zeros_like(scaled))
    raise ValueError(f"unknown sigmoid {kind!r}; this module implements 'gaussian' and 'quadratic'")


def tolerance(x: torch.Tensor, bounds: tuple[float, float] = (0.0, 0.0), margin: float = 0.0,
              sigmoid: str = "gaussian",
              value_at_margin: float = _DEFAULT_VALUE_AT_MARGIN) -> torch.Tensor:
    """1 where lower <= x <= upper, decaying by `sigmoid` to `value_at_margin` at `margin` away.

    Same definition as dm_control.utils.rewards.tolerance, elementwise over a tensor.
    """
    lower, upper = bounds
    if lower > upper:
        raise ValueError(f"tolerance bounds must have lower <= upper, got {bounds}")
    if margin < 0:
        raise ValueError(f"tolerance margin must be >= 0, got {margin}")
    inside = (x >= lower) & (x <= upper)
    if margin == 0:
        return inside.to(x.dtype)
    distance = torch.where(x < lower, lower - x, x - upper) / margin
    return torch.where(inside, torch.ones_like(x), _sigmoid(distance, value_at_margin, sigmoid))


def _small_control(ctrl: torch.Tensor) -> torch.Tensor:
    """Per-dimension quadratic bump of the control, 1 at 0 and 0 at |u| = 1.  [N, nu]"""
    return tolerance(ctrl, margin=1.0, value_at_margin=0.0, sigmoid="quadratic")


def _cartpole(sparse: bool) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    def reward(qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
        cart, cos_pole = qpos[:, 0], torch.cos(qpos[:, 1])
        if sparse:
            return (tolerance(cart, _CART_RANGE)
                    * tolerance(cos_pole, _ANGLE_COSINE_RANGE))
        upright = (cos_pole + 1) / 2
        centered = (1 + tolerance(cart, margin=2.0)) / 2
        small_control = (4 + _small_control(ctrl)[:, 0]) / 5
        small_velocity = (1 + tolerance(qvel[:, 1], margin=5.0)) / 2
        return upright * small_control * small_velocity * centered
    return reward


def _pendulum(qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
    return tolerance(torch.cos(qpos[:, 0]), (_PENDULUM_COSINE_BOUND, 1.0))


def _point_mass(qpos: torch.Tensor, qvel: torch.Tensor, ctrl: torch.Tensor) -> torch.Tensor:
    distance = torch.linalg.vector_norm(qpos[:, :2], dim=1)
    near = tolerance(distance, (0.0, _POINT_MASS_TARGET_SIZE), margin=_POINT_MASS_TARGET_SIZE)
    small_control = (_small_control(ctrl).mean(dim=1) + 4) / 5
    return near * small_control


_TASKS = {
    "cartpole-swingup": _cartpole(sparse=False),
    "cartpole-balance": _cartpole(sparse=False),
    "cartpole-swingup_sparse": _cartpole(sparse=True),
    "cartpole-balance_sparse": _cartpole(sparse=True),
    "pendulum-swingup": _pendulum,
    "pendulum-swingup_pc3": _pendulum,  # the same task with a stronger motor (envs/registry.py)
    "point_mass-easy": _point_mass,
}


def tasks() -> list[str]:
    """The task names (`domain-task`) this module has rewards for."""
    return sorted(_TASKS)


def dimensions(task: str) -> tuple[int, int, int]:
    """(nq, nv, nu) of a task's model."""
    _check_task(task)
    return _DIMS[task.split("-")[0]]


def _check_task(task: str) -> None:
    if task not in _TASKS:
        raise ValueError(f"no vectorised reward for task {task!r}; known tasks: {tasks()}")


def reward_fn(task: str) -> RewardFn:
    """The batched reward of `task`: (qpos [N, nq], qvel [N, nv], ctrl [N, nu]) -> r [N].

    Inputs may be torch tensors (the result is a tensor of their dtype and device, differentiable
    where the reward is) or numpy arrays (the result is a float64 numpy array).
    """
    _check_task(task)
    nq, nv, nu = dimensions(task)
    inner = _TASKS[task]

    def reward(qpos: Array, qvel: Array, ctrl: Array) -> Array:
        as_numpy = not isinstance(qpos, torch.Tensor)
        q, v, u = (_as_batch(x, name, size, task, like=qpos)
                   for x, name, size in ((qpos, "qpos", nq), (qvel, "qvel", nv), (ctrl, "ctrl", nu)))
        if not q.shape[0] == v.shape[0] == u.shape[0]:
            raise ValueError(f"{task} reward: batch sizes differ: qpos {tuple(q.shape)}, "
                             f"qvel {tuple(v.shape)}, ctrl {tuple(u.shape)}")
        r = inner(q, v, u)  # [N]
        return r.numpy() if as_numpy else r

    reward.__doc__ = f"dm_control's {task} reward of a batch: (qpos, qvel, ctrl) -> [N]."
    return reward


def reward_from_state(task: str, states: Array, actions: Array) -> Array:
    """The reward of flat states (qpos then qvel, [N, nq + nv]) reached by `actions` [N, nu]."""
    nq, nv, _ = dimensions(task)
    if states.ndim != 2 or states.shape[1] != nq + nv:
        raise ValueError(f"{task} states must be [N, nq + nv] = [N, {nq + nv}] (qpos then qvel), "
                         f"got shape {tuple(states.shape)}")
    return reward_fn(task)(states[:, :nq], states[:, nq:], actions)


def _as_batch(x: Array, name: str, size: int, task: str, like: Array) -> torch.Tensor:
    """`x` as a float [N, size] tensor (numpy becomes float64), or a ValueError naming it."""
    if isinstance(like, torch.Tensor):
        t = torch.as_tensor(x, device=like.device)
        t = t.to(like.dtype) if like.is_floating_point() else t.double()
    else:
        t = torch.as_tensor(np.asarray(x, dtype=np.float64))
    if t.dim() != 2 or t.shape[1] != size:
        raise ValueError(f"{task} reward: {name} must be [N, {size}], got shape {tuple(t.shape)}")
    return t
