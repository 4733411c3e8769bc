"""From which states near upright can dm_control's pendulum still be caught? No model involved.

    python benchmarks/pendulum_recoverable.py          # a few seconds; writes results/pendulum_recoverable.json
    python benchmarks/pendulum_recoverable.py --task pendulum-swingup_pc3   # PC3's torque ratio (1.33)

The torque limit (1 N·m, gear 1) is below the gravity torque m·g·l·sin θ beyond a small angle, so
a balance controller must keep the pole inside a band much narrower than the protocol's goal
region (|θ| < π/6). Two boundaries of the set it can be caught from, each by bisection on the
simulator (MuJoCo stepping the task's own model, no rendering):

- **at rest**: the largest |θ| from which full torque towards upright brings the pole back;
- **from upright**: the largest speed away from upright that full braking torque still stops.

In both cases full torque against the fall is the best any controller can do until the pole turns
back (it maximises the restoring acceleration at every instant), so "not caught" here means no
controller catches it, to within the controller's braking zone near upright. "Caught" means
|θ| < 0.05 rad after 6 s of u = clip(−20 (θ + 0.3 θ̇), −1, 1): full torque towards upright,
braking in proportion near it.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

import envs  # noqa: E402  (sets MUJOCO_GL=egl unless the user chose a backend)
from worldmodel.atomic import atomic_write_json  # noqa: E402
from worldmodel.control import GOAL_TOLERANCE  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "pendulum_recoverable.json"
GOAL_REGION = GOAL_TOLERANCE["pendulum"]  # π/6, the E2C/PCC/PC3 goal region
CAUGHT = 0.05  # rad from upright after SECONDS of full restoring torque
SECONDS = 6.0
# The controller: full torque towards upright (saturated) except within ~0.05 rad of it, where it
# brakes in proportion. The earlier bang-bang u = −sign(sin θ) caught dm_control's pole only up to
# 0.86 rad/s from upright (this one: 0.99), and PC3's-motor pole from rest only within 0.004 rad.
GAIN, DAMPING = 20.0, 0.3
# Bisection ranges; a result equal to its limit means caught everywhere searched. Just short of
# hanging: at exactly π the pole is balanced there and the controller has no side to push it.
SEARCH_ANGLE, SEARCH_SPEED = math.pi - 0.01, 20.0


def caught(env, angle: float, velocity: float) -> bool:
    """Does full torque towards upright bring the pole from (angle, velocity) back to upright?"""
    import mujoco

    from envs.pixel_env import wrap_angle
    from envs.rollout import pose_state

    pose_state(env, angle, velocity)  # the env's physics now holds the posed state
    model, data = env.physics.model.ptr, env.physics.data.ptr
    for _ in range(int(round(SECONDS / model.opt.timestep))):
        angle = float(wrap_angle(data.qpos[0]))
        data.ctrl[0] = np.clip(-GAIN * (angle + DAMPING * data.qvel[0]), -1.0, 1.0)
        mujoco.mj_step(model, data)
    return abs(float(wrap_angle(data.qpos[0]))) < CAUGHT


def boundary(is_caught, low: float, high: float, tol: float = 1e-3) -> float:
    """The largest x in [low, high] with is_caught(x), by bisection (is_caught(low) must hold);
    `high` itself where that is caught too (the boundary lies beyond the range searched)."""
    if not is_caught(low):
        raise RuntimeError(f"no boundary in [{low}, {high}]: not caught even at {low}")
    if is_caught(high):
        return high
    while high - low > tol:
        mid = (low + high) / 2
        low, high = (mid, high) if is_caught(mid) else (low, mid)
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="pendulum-swingup", choices=[
        n for n in envs.names() if envs.spec(n).domain == "pendulum"])
    parser.add_argument("--out", type=Path, default=None,
                        help="default: results/pendulum_recoverable[_<task variant>].json")
    args = parser.parse_args()
    if args.out is None:
        variant = args.task.removeprefix("pendulum-swingup")
        args.out = DEFAULT_OUT.with_stem(DEFAULT_OUT.stem + variant)
    env = envs.make(args.task, image_size=32)
    try:
        from envs.pixel_env import gravity_torque, max_torque

        torque, gravity = max_torque(env.physics), gravity_torque(env.physics)
        at_rest = boundary(lambda a: caught(env, a, 0.0), 0.0, SEARCH_ANGLE)
        from_upright = boundary(lambda v: caught(env, 0.0, v), 0.0, SEARCH_SPEED)
        step_seconds = env.action_repeat * float(env.physics.model.opt.timestep)
    finally:
        env.close()
    result = {
        "torque_limit": torque, "gravity_torque_horizontal": gravity,
        # the largest angle the motor holds still; a motor stronger than gravity holds any angle
        "static_angle_limit": math.asin(torque / gravity) if torque < gravity else math.pi,
        "caught_from_rest_up_to_angle": at_rest,
        "caught_from_upright_up_to_speed": from_upright,
        "goal_region": GOAL_REGION, "agent_step_seconds": step_seconds,
        "criterion": f"|θ| < {CAUGHT} rad after {SECONDS} s of u = clip(−{GAIN} (θ + {DAMPING} θ̇), −1, 1)",
        "search_limits": {"angle": SEARCH_ANGLE, "speed": SEARCH_SPEED},
        "task": args.task,
        "command": "python benchmarks/pendulum_recoverable.py"
                   + ("" if args.task == "pendulum-swingup" else f" --task {args.task}"),
    }
    atomic_write_json(args.out, result)
    print(f"torque limit {torque:.2f} N·m; gravity torque at horizontal {gravity:.2f} N·m")
    print(f"{'caught from rest, |θ| up to':<34}{at_rest:.3f} rad  (static limit "
          f"{result['static_angle_limit']:.3f}; goal region {GOAL_REGION:.3f})")
    print(f"{'caught from upright, speed up to':<34}{from_upright:.3f} rad/s "
          f"({from_upright * step_seconds:.3f} rad per {step_seconds:.2f} s agent step)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
