"""E2C's goal cost seen from the true state: does ‖z − z_goal‖² fall as the pole rises?

A local planner (iLQR) on the quadratic latent cost can only swing a pole up if that cost falls,
step by step, along some feasible path from hanging to upright, and hold it only if the cost
rises on both sides of upright. Three views of it:
  - `goal_cost_by_angle`: the mean cost of held-out states in bins of |angle| from 0 (upright)
    to π (hanging). Monotone rising bins are what a swing-up needs.
  - `goal_cost_along`: the cost along a real trajectory (the oracle's swing-up on the true
    simulator), each image filtered through the model. Where this rises above the hanging
    cost, the swing-up must climb a barrier that a planner of short horizon will not cross.
  - `goal_cost_by_side` of `still_pose_goal_costs`: the cost of the pole held still at angles
    inside the goal region, encoded as the goal image is, left of upright against right of it.
    |angle| bins average the two sides and mix in every speed, so a high first bin can be a goal
    misplaced or a latent torn at the unstable top, where the two sides fall opposite ways
    (a decoder-free InfoNCE latent on dm_control's pendulum; docs/e2c_results.md).
`goal_cost_view` computes them for `worldmodel e2c` and draws the first two (`viz.plot_goal_cost`).
Notation: z [N, S] latents, s [N, nq + nv] states.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

ANGLE_BINS = 6  # |angle| bins over [0, π]: 30° each


def angle_index(task: str) -> int:
    """qpos index of the pole hinge (0 = upright) for a task with a pole."""
    from envs.registry import spec

    index = spec(task).angle_qpos
    if index is None:
        raise ValueError(f"task {task!r} has no pole angle; the goal-cost diagnostic needs one")
    return index


def goal_cost_by_angle(latents: np.ndarray, states: np.ndarray, goal: np.ndarray, task: str,
                       bins: int = ANGLE_BINS) -> list[float | None]:
    """Mean ‖z − z_goal‖² of the states in each of `bins` equal bins of |wrapped angle| over
    [0, π] (None for an empty bin)."""
    z, goal = np.asarray(latents, float), np.asarray(goal, float).reshape(-1)
    if z.ndim != 2 or z.shape[1] != goal.size or len(z) != len(states):
        raise ValueError(f"latents [N, S] must match states [N, D] and goal [S]; got "
                         f"{z.shape}, {np.shape(states)}, {goal.shape}")
    angle = np.abs((np.asarray(states)[:, angle_index(task)] + np.pi) % (2 * np.pi) - np.pi)
    cost = ((z - goal) ** 2).sum(1)
    which = np.minimum((angle / np.pi * bins).astype(int), bins - 1)
    return [float(cost[which == b].mean()) if (which == b).any() else None for b in range(bins)]


def still_pose_angles(tolerance: float, per_side: int = 6) -> np.ndarray:
    """Pole angles [2·per_side] evenly inside the goal region, left of upright then right:
    ±tolerance·k/(per_side + 1) for k = 1..per_side."""
    if not tolerance > 0 or per_side < 1:
        raise ValueError(f"need tolerance > 0 (radians) and per_side >= 1, got {tolerance!r}, {per_side!r}")
    steps = tolerance * np.arange(1, per_side + 1) / (per_side + 1)
    return np.concatenate([-steps[::-1], steps])


def still_pose_goal_costs(model: Any, env: Any, goal: torch.Tensor, angles: np.ndarray) -> np.ndarray:
    """‖z − z_goal‖² [len(angles)] of the pole held still at each angle, each image encoded as the
    goal image is (`e2c.goal_latent_from_image`): what the planner sees near the goal at rest."""
    from envs.rollout import pose_state
    from worldmodel.e2c import goal_latent_from_image

    costs = []
    for angle in np.asarray(angles, float):
        obs, _ = env.reset(sim_state=pose_state(env, float(angle)))
        z = goal_latent_from_image(model, obs)
        costs.append(float(((z - goal.to(z)) ** 2).sum()))
    return np.asarray(costs)


def goal_cost_by_side(angles: np.ndarray, costs: np.ndarray) -> dict[str, Any]:
    """Mean cost left of upright (angle < 0) and right of it (angle > 0); `ratio`, the larger mean
    over the smaller; and `across_top`, the same for the two poses nearest upright, one each side.
    Both are near 1 for a latent as smooth on both sides and large for one torn at the top (None
    when a side is empty or the smaller value is 0). `inner_over_outer`: the mean cost of the pose
    nearest upright on each side over that of the farthest, about (1/6)² for a cost quadratic in the
    angle at `still_pose_angles`' spacing, near 1 when the goal's latent sits apart from every pose
    beside it (the pole exactly upright at rest is an equilibrium; every pose beside it falls)."""
    angles, costs = np.asarray(angles, float), np.asarray(costs, float)
    if angles.shape != costs.shape or angles.ndim != 1:
        raise ValueError(f"angles and costs must be two [N] arrays of one shape, got {angles.shape}, {costs.shape}")
    out: dict[str, Any] = {"angles": angles.tolist(), "costs": costs.tolist()}
    # each side's costs ordered from upright outwards
    sides = {"left": costs[angles < 0][np.argsort(-angles[angles < 0])],
             "right": costs[angles > 0][np.argsort(angles[angles > 0])]}
    for name, side in sides.items():
        out[name] = float(side.mean()) if len(side) else None

    def ratio(pair: tuple[float | None, float | None]) -> float | None:
        return max(pair) / min(pair) if None not in pair and min(pair) > 0 else None

    out["ratio"] = ratio((out["left"], out["right"]))
    out["across_top"] = out["inner_over_outer"] = None
    if all(len(side) for side in sides.values()):
        out["across_top"] = ratio((float(sides["left"][0]), float(sides["right"][0])))
        outer = float(sides["left"][-1] + sides["right"][-1])
        out["inner_over_outer"] = float(sides["left"][0] + sides["right"][0]) / outer if outer > 0 else None
    return out


@torch.no_grad()
def filtered_latents(model: Any, frames: Sequence[np.ndarray], actions: np.ndarray) -> torch.Tensor:
    """The model's filtered latents [T + 1, S] along a real trajectory: frames o_0..o_T
    (uint8 [H, W, 3]) and the actions a_0..a_{T-1} [T, A] between them."""
    from worldmodel.control import image_to_tensor

    # a copy: actions read from an .npz are read-only, which torch warns about
    actions = np.array(actions, np.float32).reshape(len(frames) - 1, -1)
    state = model.filter_step(None, None, image_to_tensor(frames[0]))
    latents = [model.to_vector(state)[0]]
    for a, frame in zip(actions, frames[1:]):
        state = model.filter_step(state, torch.as_tensor(a).unsqueeze(0), image_to_tensor(frame))
        latents.append(model.to_vector(state)[0])
    return torch.stack(latents)


def goal_cost_along(model: Any, frames: Sequence[np.ndarray], actions: np.ndarray,
                    goal: torch.Tensor) -> np.ndarray:
    """‖z_t − z_goal‖² [T + 1] of the model's filtered latent along a real trajectory."""
    z = filtered_latents(model, frames, actions)
    return ((z - goal.to(z)) ** 2).sum(-1).float().numpy()


def goal_cost_view(model: Any, heldout: Any, goal: torch.Tensor, oracle: dict[str, Any] | None,
                   task: str, picture: Path, env: Any = None) -> dict[str, Any]:
    """The goal cost by |angle| over the held-out episodes and, given an oracle episode recorded
    by `e2c_oracle.oracle_goal_episode(record=True)`, along it; draws both into `picture`. Given
    the task's `env`, also the goal cost of still poses on each side of upright (`goal_cost_by_side`)."""
    from worldmodel import viz
    from worldmodel.control import goal_tolerance
    from worldmodel.visualize import heldout_latents

    latents, states = heldout_latents(model, heldout)
    by_angle = goal_cost_by_angle(latents, states, goal.numpy(), task)
    view: dict[str, Any] = {"goal_cost_by_angle_bin": by_angle}
    tolerance = goal_tolerance(task)
    if env is not None and tolerance is not None:
        poses = still_pose_angles(tolerance)
        view["goal_cost_by_side"] = goal_cost_by_side(poses, still_pose_goal_costs(model, env, goal, poses))
    angles = costs = None
    if oracle is not None:
        costs = goal_cost_along(model, oracle["frames"], oracle["actions"], goal)
        angles = oracle["angles"]
        view["oracle_path"] = {"angle": angles.tolist(), "latent_goal_cost": costs.tolist()}
    viz.plot_goal_cost(by_angle, angles, costs, picture,
                       title=f"{task}: E2C goal cost ‖z − z_goal‖² against the true pose")
    return view
