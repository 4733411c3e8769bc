"""The true-simulator planning problem: the oracle that tells what a planner itself can reach.

Notation as in `planners.problem`: s [N, S] states, a [N, A] actions, H the horizon. Here a
state is MuJoCo's full physics state plus one slot,

    s = (mjSTATE_FULLPHYSICS vector [nstate],  r)        S = nstate + 1, float64

where nstate = mj_stateSize(model, mjSTATE_FULLPHYSICS) (time, qpos, qvel, act, plugin and
history state) and r is the reward *received on arrival* in s: the dm_control reward summed over
the action repeat of the environment step that led to s (0 in a start state from
`oracle_state`). One `step` is one environment step: the action, clipped to the actuator range
as `envs.PixelEnv` clips it, is held for action_repeat x n_sub_steps physics steps, rolled out
for the whole batch at once by `mujoco.rollout` in a thread pool, and the dm_control rewards
after each control step (`worldmodel.task_rewards`) are summed into the slot.

Why the slot: the planners evaluate J = sum_{t<H} l(s_t, a_t) + l_f(s_H) with s_{t+1} = f(s_t,
a_t), while the reward of a_t is only known after simulating it. With l(s, a) = -r(s) and
l_f(s) = -r(s), J = -(r(s_0) + sum_t reward(a_t)) = -return + const, from a single rollout per
step and no cache keyed by inputs.

Not in the state: the constraint solver's warm start (mjSTATE_WARMSTART), because
`mujoco.rollout` returns full-physics states only. It changes the next step only while a
constraint is active (cart-pole's slider limits at |x| = 1.8), and then only by the solver's
tolerance. `envs.PixelEnv.get_sim_state` keeps it; `oracle_state` drops it.

`jacobians` gives df/ds and df/da of the whole step (slot included) by central finite
differences, batched through the same rollout: 2 (S + A) rollouts per state, fine for iLQR on a
horizon of tens of steps. The costs are linear in s (only the slot), so their Hessians are zero;
iLQR then leans on its regularisation.
"""
from __future__ import annotations

import copy
import os
from typing import Any, Optional

import mujoco
import numpy as np
import torch

from planners.problem import Problem
from worldmodel import task_rewards

_SIG = mujoco.mjtState.mjSTATE_FULLPHYSICS
# Central-difference step; float64 truncation/round-off balance for O(1) states (~eps^(1/3)).
_FD_EPS = 1e-6


def _physics(env: Any) -> Any:
    """The dm_control Physics of an `envs.PixelEnv` or of a dm_control suite environment."""
    physics = getattr(env, "physics", None)
    if physics is None or not hasattr(physics, "model"):
        raise ValueError(f"expected an envs.PixelEnv or a dm_control environment with a "
                         f".physics attribute, got {type(env).__name__}")
    return physics


def _substeps(env: Any, physics: Any) -> int:
    """Physics steps per dm_control control step (1 for every task registered in envs)."""
    inner = getattr(env, "_env", env)  # PixelEnv wraps a dm_control control.Environment
    control_timestep = getattr(inner, "control_timestep", None)
    if not callable(control_timestep):
        return 1
    return int(round(control_timestep() / physics.model.opt.timestep))


def _task_name(env: Any, task: Optional[str]) -> str:
    name = task if task is not None else getattr(env, "name", None)
    if name is None:
        raise ValueError("cannot tell the task of a plain dm_control environment: pass "
                         "task='domain-task', e.g. task='cartpole-swingup'")
    return name


def _offsets(model: mujoco.MjModel) -> dict[str, int]:
    """Start index of each component in the mjSTATE_FULLPHYSICS vector (components in bit order)."""
    out, start = {}, 0
    for b in range(int(mujoco.mjtState.mjNSTATE.value)):
        if int(_SIG) & (1 << b):
            out[mujoco.mjtState(1 << b).name] = start
            start += mujoco.mj_stateSize(model, 1 << b)
    return out


def oracle_state(env: Any) -> torch.Tensor:
    """The start state of the oracle from a live env: (full physics state, r = 0), float64 [S]."""
    physics = _physics(env)
    model, data = physics.model.ptr, physics.data.ptr
    out = np.zeros(mujoco.mj_stateSize(model, _SIG) + 1, dtype=np.float64)
    mujoco.mj_getState(model, data, out[:-1], _SIG)
    return torch.from_numpy(out)


class SimulatorDynamics:
    """Batched one-env-step dynamics and costs of a MuJoCo task (see the module docstring).

    Holds a copy of the model, one `mujoco.rollout.Rollout` thread pool and one MjData per
    thread, reused by every call. Call `close()` (or use as a context manager) to stop the pool.
    """

    def __init__(self, env: Any, *, task: Optional[str] = None,
                 action_repeat: Optional[int] = None, threads: Optional[int] = None,
                 actuator_gain: float = 1.0, gravity_gain: float = 1.0) -> None:
        """`actuator_gain` and `gravity_gain` scale every actuator's gear and gravity in this copy
        of the model only: a simulator that believes its motors, or the pull that topples the
        pole, stronger (> 1) or weaker (< 1) than the env's, to measure what a learned model's
        error in the action's effect or in the fall costs a planner."""
        from mujoco import rollout  # lazy: spawns nothing, but keeps `import` light

        physics = _physics(env)
        self.task = _task_name(env, task)
        self.reward = task_rewards.reward_fn(self.task)
        repeat = action_repeat if action_repeat is not None else getattr(env, "action_repeat", None)
        if not isinstance(repeat, (int, np.integer)) or repeat < 1:
            raise ValueError(f"action_repeat must be a positive int (the env has none, so pass "
                             f"action_repeat=...), got {repeat!r}")
        self.action_repeat = int(repeat)
        self.substeps = _substeps(env, physics)
        self.model = copy.copy(physics.model.ptr)  # own copy: survives env.close()
        m = self.model
        for name, gain in (("actuator_gain", actuator_gain), ("gravity_gain", gravity_gain)):
            if not (np.isfinite(gain) and gain > 0):
                raise ValueError(f"{name} must be a finite number > 0 (1 = the env's own), got {gain!r}")
        m.actuator_gear[:, 0] *= actuator_gain
        m.opt.gravity[:] *= gravity_gain
        self.actuator_gain, self.gravity_gain = float(actuator_gain), float(gravity_gain)
        self.nq, self.nv, self.nu = m.nq, m.nv, m.nu
        nq, nv, nu = task_rewards.dimensions(self.task)
        if (nq, nv, nu) != (m.nq, m.nv, m.nu):
            raise ValueError(f"env model has (nq, nv, nu) = {(m.nq, m.nv, m.nu)} but task "
                             f"{self.task!r} expects {(nq, nv, nu)}; pass the matching task=")
        self.nstate = mujoco.mj_stateSize(m, _SIG)
        off = _offsets(m)
        self.qpos_slice = slice(off["mjSTATE_QPOS"], off["mjSTATE_QPOS"] + m.nq)  # where s holds qpos
        self.qvel_slice = slice(off["mjSTATE_QVEL"], off["mjSTATE_QVEL"] + m.nv)
        self.low = np.where(m.actuator_ctrllimited, m.actuator_ctrlrange[:, 0], -np.inf)
        self.high = np.where(m.actuator_ctrllimited, m.actuator_ctrlrange[:, 1], np.inf)
        self.threads = int(threads) if threads is not None else max(1, min(os.cpu_count() or 1, 8))
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self._pool = rollout.Rollout(nthread=self.threads)
        self._datas = [mujoco.MjData(m) for _ in range(self.threads)]

    @property
    def state_dim(self) -> int:
        """S = nstate + 1 (the reward slot)."""
        return self.nstate + 1

    def close(self) -> None:
        """Stop the rollout thread pool."""
        self._pool.close()

    def __enter__(self) -> "SimulatorDynamics":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, s: torch.Tensor, a: torch.Tensor) -> None:
        if s.dim() != 2 or s.shape[1] != self.state_dim:
            raise ValueError(f"{self.task} oracle: states must be [N, {self.state_dim}] "
                             f"(full physics state + reward slot), got {tuple(s.shape)}")
        if a.dim() != 2 or a.shape != (s.shape[0], self.nu):
            raise ValueError(f"{self.task} oracle: actions must be [N, {self.nu}] with N = "
                             f"{s.shape[0]} as the states, got {tuple(a.shape)}")

    def simulate(self, s: np.ndarray, a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Numpy core: s [N, S], a [N, A] -> (s' [N, S], per-control-step rewards [N, repeat])."""
        n = s.shape[0]
        a = np.clip(a, self.low, self.high)  # as PixelEnv.step clips
        steps = self.action_repeat * self.substeps
        control = np.ascontiguousarray(np.broadcast_to(a[:, None, :], (n, steps, self.nu)))
        out = np.empty((n, steps, self.nstate))
        self._pool.rollout(self.model, self._datas, np.ascontiguousarray(s[:, :-1]), control,
                           state=out, skip_checks=False)
        ends = out[:, self.substeps - 1::self.substeps]  # [N, repeat, nstate]
        flat = ends.reshape(n * self.action_repeat, self.nstate)
        ctrl = np.repeat(a, self.action_repeat, axis=0)  # [N * repeat, A]
        rewards = self.reward(flat[:, self.qpos_slice], flat[:, self.qvel_slice], ctrl)
        rewards = np.asarray(rewards).reshape(n, self.action_repeat)
        nxt = np.empty_like(s)
        nxt[:, :-1] = out[:, -1]
        nxt[:, -1] = rewards.sum(axis=1)
        return nxt, rewards

    def step(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """One env step for a batch: s [N, S], a [N, A] -> s' [N, S] (not differentiable)."""
        self._check(s, a)
        nxt, _ = self.simulate(_np(s), _np(a))
        return torch.from_numpy(nxt).to(dtype=s.dtype, device=s.device)

    def running_cost(self, s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """-r(s): minus the reward received on arriving in s.  [N]"""
        return -s[:, -1]

    def terminal_cost(self, s: torch.Tensor) -> torch.Tensor:
        """-r(s_H): the reward of the last planned action.  [N]"""
        return -s[:, -1]

    def jacobians(self, s: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Central finite differences of `step`: (df/ds [N, S, S], df/da [N, S, A]).

        Actions at a bound are differenced one-sidedly inwards, so the clip inside `step` does
        not halve the derivative.
        """
        self._check(s, a)
        s_np, a_np = _np(s), _np(a)
        n, S, A = s_np.shape[0], self.state_dim, self.nu
        z = np.concatenate([s_np, a_np], axis=1)  # [N, S + A]
        D = S + A
        plus = np.repeat(z[:, None, :], D, axis=1)  # [N, D, D]
        minus = plus.copy()
        h_plus = np.full((n, D), _FD_EPS)
        h_minus = np.full((n, D), _FD_EPS)
        h_plus[:, S:] = np.where(a_np + _FD_EPS > self.high, 0.0, _FD_EPS)
        h_minus[:, S:] = np.where(a_np - _FD_EPS < self.low, 0.0, _FD_EPS)
        idx = np.arange(D)
        plus[:, idx, idx] += h_plus
        minus[:, idx, idx] -= h_minus
        both = np.concatenate([plus, minus], axis=1).reshape(n * 2 * D, D)
        nxt, _ = self.simulate(both[:, :S], both[:, S:])
        nxt = nxt.reshape(n, 2, D, S)
        jac = (nxt[:, 0] - nxt[:, 1]) / (h_plus + h_minus)[:, :, None]  # [N, D, S]
        jac = torch.from_numpy(np.ascontiguousarray(jac.transpose(0, 2, 1)))  # [N, S, D]
        jac = jac.to(dtype=s.dtype, device=s.device)
        return jac[:, :, :S], jac[:, :, S:]


def _np(x: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().to("cpu", torch.float64).numpy())


def simulator_problem(env: Any, horizon: int, *, threads: Optional[int] = None,
                      task: Optional[str] = None, action_repeat: Optional[int] = None,
                      with_jacobians: bool = True) -> Problem:
    """The oracle planning problem of `env` (an envs.PixelEnv, or a dm_control env plus task=).

    State: `oracle_state(env)` [S]; step: one environment step of the true simulator for a
    batch; cost: minus the dm_control reward summed over the action repeat (see module
    docstring). A caller that must close the rollout thread pool builds the SimulatorDynamics
    itself and uses `dynamics_problem`.
    """
    dyn = SimulatorDynamics(env, task=task, action_repeat=action_repeat, threads=threads)
    return dynamics_problem(dyn, horizon, with_jacobians=with_jacobians)


def dynamics_problem(dyn: SimulatorDynamics, horizon: int, *, with_jacobians: bool = True) -> Problem:
    """The planning problem of the true simulator `dyn`, costs as in `simulator_problem`."""
    low = torch.as_tensor(dyn.low, dtype=torch.float64)
    high = torch.as_tensor(dyn.high, dtype=torch.float64)
    return Problem(step=dyn.step, running_cost=dyn.running_cost, terminal_cost=dyn.terminal_cost,
                   horizon=horizon, action_low=low, action_high=high,
                   jacobians=dyn.jacobians if with_jacobians else None)
