"""The task registry: which dm_control suite tasks exist as pixel tasks, with the field's defaults.

Every dm_control suite task used here runs 1000 simulator ("control") steps per episode
(pendulum and point_mass: 20 s at 0.02 s; cart-pole: 10 s at 0.01 s), and every control step
gives a reward in [0, 1], so an episode's return lies in [0, 1000] whatever the action repeat.

Angle convention (checked by reading dm_control's physics, verified in tests/test_envs.py):
pendulum's `hinge` and cart-pole's `hinge_1` are 0 with the pole pointing straight up — the pole
geom runs from the hinge to +z, and `pole_vertical()` / `pole_angle_cosine()` (the zz entry of the
pole's rotation matrix) equal cos(qpos), 1 at qpos = 0. Hanging down is ±π.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only for type hints: importing envs.pixel_env pulls in dm_control
    from envs.pixel_env import PixelEnv

SIM_STEPS_PER_EPISODE = 1000  # dm_control suite: time_limit / control_timestep for these tasks


@dataclass(frozen=True)
class TaskSpec:
    """One registered pixel task.

    domain, task: the dm_control suite names.
    action_repeat: default number of simulator steps per environment step.
    camera: default dm_control camera id (PlaNet/Dreamer render camera 0 for these domains).
    angle_qpos: index into qpos of the pole hinge, whose wrapped value goes to info["angle"];
        None where the task has no pole.
    torque_ratio: the largest actuator torque over the largest gravity torque on the actuated
        body (the pole held horizontal): the actuator's gear is rescaled to give it. Below 1 the
        pole cannot be held still away from upright and must be pumped up; None keeps
        dm_control's actuator.
    """

    domain: str
    task: str
    action_repeat: int
    camera: int = 0
    angle_qpos: int | None = None
    torque_ratio: float | None = None


# Hafner et al. 2019 (PlaNet), Sec. 5 / appendix: action repeat 8 for cartpole; PlaNet renders
# camera 0 at 64x64. Balance shares the cart-pole dynamics, so it shares the repeat.
# Pendulum (not in PlaNet): repeat 4, i.e. 12.5 Hz control. The pendulum swings with a period of
# 2π·sqrt(l/g) ≈ 1.4 s ≈ 71 simulator steps, so repeat 4 gives ~18 decisions per swing and a
# 12-step planning horizon (PlaNet's H = 12) spans ~2/3 of a swing; Dreamer's repeat 2 would
# halve that, making a swing-up's payoff invisible to a short-horizon planner.
# Point mass (not in PlaNet either): repeat 4, the same 12.5 Hz; its heavily damped slide moves
# little in 0.08 s, so coarser control loses nothing and shortens sequences.
# pendulum-swingup_pc3: dm_control's pendulum with the torque-to-gravity ratio of the pendulum
# that PCC and PC3 report on (their code: pole mass 0.1 kg, length 0.5 m, so m·g·l = 0.49 N·m,
# in VinAIResearch/PCC-pytorch mdp/pole_base.py and pendulum_mdp.py; PC3's swing-up and balance
# settings allow 0.65 N·m, in VinAIResearch/PC3-pytorch ilqr_config/{swing,balance}.json:
# ratio 1.33). dm_control's allows 1 N·m against 4.905 (ratio 0.20), so its pole must be pumped
# up and can be caught only within 0.2 rad of upright (benchmarks/pendulum_recoverable.py).
# Same images, reward and control rate.
_TASKS: dict[str, TaskSpec] = {
    "pendulum-swingup": TaskSpec("pendulum", "swingup", action_repeat=4, angle_qpos=0),
    "pendulum-swingup_pc3": TaskSpec("pendulum", "swingup", action_repeat=4, angle_qpos=0,
                                     torque_ratio=0.65 / (0.1 * 9.81 * 0.5)),
    "cartpole-swingup": TaskSpec("cartpole", "swingup", action_repeat=8, angle_qpos=1),
    "cartpole-balance": TaskSpec("cartpole", "balance", action_repeat=8, angle_qpos=1),
    "point_mass-easy": TaskSpec("point_mass", "easy", action_repeat=4),
}
TASKS = MappingProxyType(_TASKS)


def names() -> list[str]:
    """The registered task names, sorted."""
    return sorted(TASKS)


def spec(name: str) -> TaskSpec:
    """The TaskSpec of `name`; ValueError listing the known names if there is none."""
    try:
        return TASKS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(names())}") from None


def make(name: str, *, image_size: int = 64, action_repeat: int | None = None,
         seed: int | None = None, camera: int | str | None = None,
         render_state: bool = True) -> "PixelEnv":
    """Build the pixel task `name` (see `names()`).

    image_size: square image side in pixels (64 as in PlaNet).
    action_repeat: simulator steps per env step; None takes the task's default (see above).
    seed: seeds dm_control's task RNG (initial states); None draws one from the OS.
    camera: dm_control camera id or name; None takes the task's default.
    render_state: render an image from the simulator state at every step. False skips
        rendering (obs is all zeros) for fast state-only rollouts such as the simulator oracle.
    """
    task = spec(name)
    from envs.pixel_env import PixelEnv  # lazy: dm_control is heavy and needs MUJOCO_GL set

    return PixelEnv(name, task, image_size=image_size,
                    action_repeat=task.action_repeat if action_repeat is None else action_repeat,
                    seed=seed, camera=task.camera if camera is None else camera,
                    render_state=render_state)
