"""PixelEnv: one dm_control suite task rendered to images, behind the Gymnasium API.

Notation: A action dimension, S = nq + nv state dimension, H = W = image_size.
One env step applies the (clipped) action for `action_repeat` simulator steps, sums the
dm_control rewards of those steps and renders one image [H, W, 3] uint8 of the last state.

The simulator state saved by `get_sim_state()` is MuJoCo's full integration state
(mjSTATE_INTEGRATION: time, qpos, qvel, act, solver warm start, controls, applied forces, mocap,
plugin and history state) followed by one float: the env step counter. Restoring it and stepping
gives bit-identical images and rewards to the env it was saved from.
"""
from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np

from envs.registry import SIM_STEPS_PER_EPISODE, TaskSpec

_RENDER_HELP = (
    "MuJoCo could not render with MUJOCO_GL={gl!r}. MUJOCO_GL selects the OpenGL backend and must "
    "be set before dm_control is imported: 'egl' (headless GPU or Mesa; install apt packages "
    "`libegl1 libgl1-mesa-dri`), 'osmesa' (software, slow; install `libosmesa6`) or 'glfw' "
    "(needs a display). Original error: {err}"
)

try:  # the mujoco bindings validate MUJOCO_GL and load its GL library when imported
    import mujoco
except ModuleNotFoundError:
    raise
except Exception as _err:
    raise RuntimeError(_RENDER_HELP.format(gl=os.environ.get("MUJOCO_GL"), err=_err)) from _err

# mjSTATE_INTEGRATION rather than mjSTATE_PHYSICS: the constraint solver's warm start (cart-pole's
# slider limits) and the applied controls change the next step, so leaving them out breaks
# bit-identical replays.
_STATE_SIG = mujoco.mjtState.mjSTATE_INTEGRATION


def _import_dm_control() -> tuple[Any, Any]:
    """dm_control's suite and engine modules; a GL backend that fails to load is explained."""
    try:
        from dm_control import suite
        from dm_control.mujoco import engine
    except ModuleNotFoundError:
        raise  # dm_control itself missing: pip's message says what to install
    except Exception as err:  # dm_control loads the MUJOCO_GL backend at import time
        raise RuntimeError(_RENDER_HELP.format(gl=os.environ.get("MUJOCO_GL"), err=err)) from err
    return suite, engine


def wrap_angle(q: np.ndarray | float) -> np.ndarray:
    """Angle(s) wrapped to (-π, π]; 0 stays 0, ±π map to +π."""
    return np.pi - np.mod(np.pi - np.asarray(q, dtype=np.float64), 2 * np.pi)


def gravity_torque(physics: Any, actuator: int = 0) -> float:
    """The largest gravity torque on the body that `actuator`'s hinge turns (held horizontal):
    the mass of the body and all it carries, times g, times its centre of mass's distance from
    the hinge."""
    model, data = physics.model.ptr, physics.data.ptr
    joint = int(model.actuator_trnid[actuator, 0])
    if model.actuator_trntype[actuator] != mujoco.mjtTrn.mjTRN_JOINT or \
            model.jnt_type[joint] != mujoco.mjtJoint.mjJNT_HINGE:
        raise ValueError(f"actuator {actuator} does not turn a hinge (a slider or tendon has no "
                         "gravity torque); torque_ratio applies to pendulum-like tasks only")
    body = int(model.jnt_bodyid[joint])
    mujoco.mj_forward(model, data)  # positions of the anchor and the centre of mass
    arm = float(np.linalg.norm(data.subtree_com[body] - data.xanchor[joint]))
    return float(model.body_subtreemass[body]) * float(np.linalg.norm(model.opt.gravity)) * arm


def max_torque(physics: Any, actuator: int = 0) -> float:
    """The largest torque `actuator` applies: its gear times its control bound."""
    model = physics.model.ptr
    return float(model.actuator_gear[actuator, 0] * np.max(np.abs(model.actuator_ctrlrange[actuator])))


def set_torque_ratio(physics: Any, ratio: float) -> None:
    """Rescale actuator 0's gear so that `max_torque / gravity_torque` equals `ratio`."""
    if not ratio > 0:
        raise ValueError(f"torque_ratio must be positive, got {ratio!r}")
    physics.model.ptr.actuator_gear[0, 0] *= ratio * gravity_torque(physics) / max_torque(physics)


def _check_camera(model: Any, task: str, camera: int | str) -> None:
    """ValueError naming `task`'s cameras unless `camera` is one of its ids (-1: MuJoCo's free
    camera) or names. Rendering would catch it too, but only at the first frame."""
    names = [mujoco.mj_id2name(model.ptr, mujoco.mjtObj.mjOBJ_CAMERA, i) for i in range(model.ncam)]
    if isinstance(camera, str) and camera in names:
        return
    if isinstance(camera, (int, np.integer)) and not isinstance(camera, bool) and -1 <= camera < model.ncam:
        return
    raise ValueError(f"camera {camera!r} is not a camera of {task}: use an id in [-1, {model.ncam - 1}] "
                     f"(-1 is MuJoCo's free camera) or a name in {names}")


class PixelEnv(gym.Env):
    """A dm_control task with image observations; build it with `envs.make(name, ...)`."""

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, name: str, task: TaskSpec, *, image_size: int, action_repeat: int,
                 seed: int | None, camera: int | str, render_state: bool) -> None:
        if not isinstance(image_size, (int, np.integer)) or image_size < 1:
            raise ValueError(f"image_size must be a positive int, got {image_size!r}")
        if not isinstance(action_repeat, (int, np.integer)) or not (
                1 <= action_repeat <= SIM_STEPS_PER_EPISODE):
            raise ValueError(f"action_repeat must be an int in [1, {SIM_STEPS_PER_EPISODE}], "
                             f"got {action_repeat!r}")
        self.name = name
        self.task_spec = task
        self.image_size = int(image_size)
        self.action_repeat = int(action_repeat)
        self.max_steps = SIM_STEPS_PER_EPISODE // self.action_repeat
        self.render_state = bool(render_state)
        self.camera = camera

        suite, self._engine = _import_dm_control()
        self._env = suite.load(task.domain, task.task, task_kwargs={"random": seed})
        self.physics = self._env.physics  # dm_control Physics, for the true-simulator oracle
        _check_camera(self.physics.model, name, camera)  # before any caller writes to disk
        if task.torque_ratio is not None:
            set_torque_ratio(self.physics, task.torque_ratio)
        # Simulator steps per control step: 1 for the suite tasks, kept for generality.
        self._n_sub_steps = int(round(self._env.control_timestep() / self.physics.timestep()))
        aspec = self._env.action_spec()
        self._low = np.asarray(aspec.minimum, dtype=np.float64)  # [A]
        self._high = np.asarray(aspec.maximum, dtype=np.float64)  # [A]
        self.action_dim = int(aspec.shape[0])
        self.state_dim = int(self.physics.model.nq + self.physics.model.nv)
        self.action_space = gym.spaces.Box(self._low.astype(np.float32),
                                           self._high.astype(np.float32), dtype=np.float32)
        self.observation_space = gym.spaces.Box(0, 255, (self.image_size, self.image_size, 3),
                                                dtype=np.uint8)
        self._state_size = mujoco.mj_stateSize(self.physics.model.ptr, _STATE_SIG)
        self._camera: Any = None  # built on first render
        self._steps = 0
        self._needs_reset = True

    # ------------------------------------------------------------------ Gymnasium API
    def reset(self, *, seed: int | None = None, sim_state: np.ndarray | None = None,
              options: dict | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: a fresh dm_control initial state, or `sim_state` if given.

        seed reseeds the task RNG first (same seed -> same initial state). An episode started
        from `sim_state` (a `get_sim_state()` vector) begins at step 0, whatever its counter.
        """
        if seed is not None:
            self._env.task.random.seed(int(seed))  # reseeds dm_control's RandomState in place
        self._env.reset()
        if sim_state is not None:
            self.set_sim_state(sim_state)
        self._steps = 0
        self._needs_reset = False
        return self._observe(), self._info(clipped=0)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply `action` [A] for `action_repeat` simulator steps; out-of-range entries are clipped."""
        if self._needs_reset:
            raise RuntimeError(
                f"{self.name}: the episode is over ({self._steps} of {self.max_steps} steps "
                "taken) or was never started; call env.reset() before env.step()")
        a = self._check_action(action)
        clipped = int(np.count_nonzero((a < self._low) | (a > self._high)))
        a = np.clip(a, self._low, self._high)
        reward = 0.0
        task, physics = self._env.task, self.physics
        for _ in range(self.action_repeat):  # the body of dm_control's control.Environment.step
            task.before_step(a, physics)
            physics.step(self._n_sub_steps)
            task.after_step(physics)
            reward += float(task.get_reward(physics))
        self._steps += 1
        truncated = self._steps >= self.max_steps
        self._needs_reset = truncated
        return self._observe(), reward, False, truncated, self._info(clipped=clipped)

    def render(self) -> np.ndarray:
        """The current image [H, W, 3] uint8 (rendered even when render_state=False)."""
        if self._camera is None:
            try:
                self._camera = self._engine.Camera(self.physics, height=self.image_size,
                                             width=self.image_size, camera_id=self.camera)
            except ValueError:
                raise  # a bad camera id/name: dm_control's message names it
            except Exception as err:
                raise self._render_error(err) from err
        try:
            # Camera.render returns a flipped view of one buffer it reuses every frame: copy.
            return np.array(self._camera.render(), dtype=np.uint8, copy=True)
        except Exception as err:
            raise self._render_error(err) from err

    def close(self) -> None:
        """Free the GL context and the scene; the env cannot render afterwards."""
        self._camera = None
        self.physics.free()
        self._needs_reset = True

    # ------------------------------------------------------------------ simulator state
    def get_sim_state(self) -> np.ndarray:
        """The full simulator state plus the step counter, float64 [mj_stateSize + 1]."""
        out = np.empty(self._state_size + 1, dtype=np.float64)
        mujoco.mj_getState(self.physics.model.ptr, self.physics.data.ptr, out[:-1], _STATE_SIG)
        out[-1] = self._steps
        return out

    def set_sim_state(self, state: np.ndarray) -> None:
        """Restore a `get_sim_state()` vector exactly, step counter included."""
        s = np.asarray(state, dtype=np.float64)
        if s.shape != (self._state_size + 1,) or not np.all(np.isfinite(s)):
            raise ValueError(
                f"{self.name}: sim state must be a finite float vector of shape "
                f"({self._state_size + 1},) from get_sim_state(), got shape {s.shape}")
        steps = s[-1]
        if steps != int(steps) or not 0 <= steps <= self.max_steps:
            raise ValueError(f"{self.name}: step counter {steps} in the sim state is not an "
                             f"int in [0, {self.max_steps}]")
        mujoco.mj_setState(self.physics.model.ptr, self.physics.data.ptr,
                           np.ascontiguousarray(s[:-1]), _STATE_SIG)
        self.physics.forward()  # recompute positions (xmat) used by rewards and rendering
        self._steps = int(steps)
        self._needs_reset = self._steps >= self.max_steps

    @property
    def state(self) -> np.ndarray:
        """The true physical state (qpos, qvel), float64 [S]."""
        return np.concatenate([self.physics.data.qpos, self.physics.data.qvel])

    # ------------------------------------------------------------------ helpers
    def _observe(self) -> np.ndarray:
        if not self.render_state:
            return np.zeros(self.observation_space.shape, dtype=np.uint8)
        return self.render()

    def _info(self, clipped: int) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state, "clipped": clipped,
                                "sim_steps": self._steps * self.action_repeat}
        if self.task_spec.angle_qpos is not None:
            info["angle"] = float(wrap_angle(self.physics.data.qpos[self.task_spec.angle_qpos]))
        return info

    def _check_action(self, action: Any) -> np.ndarray:
        try:
            a = np.asarray(action, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{self.name}: action must be a float array of shape "
                             f"({self.action_dim},), got {action!r}") from None
        if a.shape != (self.action_dim,):
            raise ValueError(f"{self.name}: action must have shape ({self.action_dim},), "
                             f"got shape {a.shape}: {action!r}")
        if not np.all(np.isfinite(a)):
            raise ValueError(f"{self.name}: action must be finite (NaN/inf found), got {a} "
                             f"(expected shape ({self.action_dim},) within [-1, 1])")
        return a

    def _render_error(self, err: Exception) -> RuntimeError:
        return RuntimeError(_RENDER_HELP.format(gl=os.environ.get("MUJOCO_GL"), err=err))

    def __str__(self) -> str:
        return (f"PixelEnv({self.name!r}, image_size={self.image_size}, "
                f"action_repeat={self.action_repeat}, max_steps={self.max_steps})")

    __repr__ = __str__
