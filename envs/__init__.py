"""envs: dm_control suite tasks as pixel tasks with the Gymnasium API.

Notation: o_t an observation, uint8 [H, W, 3] (H = W = image_size); a_t an action, float32 [A]
in [-1, 1]^A; r_t the reward for a_t, summed over `action_repeat` simulator steps, in
[0, action_repeat]; s_t the true physical state, float64 [S] = (qpos, qvel).
An episode is 1000 simulator steps = `max_steps = 1000 // action_repeat` env steps; it never
terminates, the last step returns truncated=True. Returns lie in [0, 1000].

    env = envs.make("cartpole-swingup", seed=0)
    obs, info = env.reset()                     # info["state"], info["angle"], ...
    obs, r, terminated, truncated, info = env.step(env.action_space.sample())

Rendering uses MuJoCo's EGL backend unless the user set MUJOCO_GL before importing envs.
`import envs` stays cheap: dm_control is imported only when a task is made.
"""
import os

# Must happen before dm_control is first imported: it picks its GL backend at import time.
os.environ.setdefault("MUJOCO_GL", "egl")

from envs.registry import SIM_STEPS_PER_EPISODE, TaskSpec, make, names, spec  # noqa: E402

__all__ = ["SIM_STEPS_PER_EPISODE", "TaskSpec", "make", "names", "spec"]
