"""Running whole episodes in a PixelEnv: policies, per-episode seeds and the pool-worker entry point.

Notation: T = env.max_steps transitions per episode; A action dim, S state dim, H = W image size.
A policy is any callable `policy(obs [H, W, 3] uint8, info dict, rng np.random.Generator) -> a [A]`;
it must be picklable to run in worker processes.

Seeds: episode i of a collection run with seed `seed` uses
    env seed   = SeedSequence(seed, spawn_key=(i, 0)) -> one uint32 (dm_control's initial state)
    policy rng = default_rng(SeedSequence(seed, spawn_key=(i, 1)))
so an episode's data depends only on (task settings, policy, seed, i), not on which process ran it.
This module needs only numpy and envs (no torch), so spawned workers start fast.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from envs.pixel_env import PixelEnv
from envs.registry import make

Policy = Callable[[np.ndarray, dict, np.random.Generator], Any]


@dataclass(frozen=True)
class UniformPolicy:
    """a ~ Uniform[low, high]^A, drawn from the rng passed in (PlaNet's random seed episodes)."""

    low: tuple[float, ...]
    high: tuple[float, ...]

    def __call__(self, obs: np.ndarray, info: dict, rng: np.random.Generator) -> np.ndarray:
        return rng.uniform(self.low, self.high).astype(np.float32)  # [A]


# Linear feedback gains on the state (qpos, qvel) that hold each pole domain upright, the action
# being -gain · state. The pendulum's is a PD law on (θ, θ'), tuned by hand: the angle gain
# exceeds gravity's 4.91 N·m/rad near upright, and it holds the pole from rest at 0.18 rad (the
# motor's static limit is 0.205). The cart-pole's, on (x, θ, x', θ'), is the discrete LQR gain
# for Q = diag(0.1, 1, 0.01, 0.01), R = 0.1 on the finite-difference linearisation at upright with
# the task's action repeat 8 (re-derived in tests/test_collect.py); it holds the pole from 0.3 rad.
BALANCE_GAINS: dict[str, tuple[float, ...]] = {
    "pendulum": (10.0, 2.0),
    "cartpole": (-0.545, -5.109, -0.691, -1.268),
}


@dataclass(frozen=True)
class BalancePolicy:
    """a = clip(-gain · s + noise·ε) on the true state s (qpos, qvel; its pole angle wrapped,
    0 = upright), ε ~ N(0, 1) each step: a noisy controller that holds a pole near upright, often
    at full force. Its data show what random actions rarely do: the pole held near the limit of
    what the actuator can hold, and caught or lost there (E2CConfig.upright_policy)."""

    gain: tuple[float, ...]  # [S], BALANCE_GAINS
    angle_index: int  # the pole angle's entry of the state, replaced by info["angle"] (wrapped)
    noise: float = 0.5
    low: float = -1.0
    high: float = 1.0

    def __call__(self, obs: np.ndarray, info: dict, rng: np.random.Generator) -> np.ndarray:
        state = [float(x) for x in info["state"]]
        state[self.angle_index] = float(info["angle"])
        a = -sum(g * x for g, x in zip(self.gain, state)) + self.noise * rng.standard_normal()
        return np.array([np.clip(a, self.low, self.high)], dtype=np.float32)  # [1]


def balance_policy(env: PixelEnv, noise: float = 0.5) -> BalancePolicy:
    """`BalancePolicy` with the env's domain's `BALANCE_GAINS`; ValueError for a domain without."""
    domain = env.task_spec.domain
    if domain not in BALANCE_GAINS or env.action_dim != 1:
        raise ValueError(f"the balance policy has gains only for the domains {tuple(BALANCE_GAINS)}; "
                         f"{env.name} has none (use policy='random')")
    if not noise >= 0:
        raise ValueError(f"noise must be a std >= 0, got {noise!r}")
    gain = BALANCE_GAINS[domain]
    if len(gain) != env.state_dim:
        raise ValueError(f"{domain}'s balance gains have {len(gain)} entries but {env.name}'s state "
                         f"has {env.state_dim}")
    space = env.action_space
    return BalancePolicy(gain=gain, angle_index=int(env.task_spec.angle_qpos), noise=float(noise),
                         low=float(space.low[0]), high=float(space.high[0]))


@dataclass(frozen=True)
class SwingUpPolicy:
    """A noisy energy-pumping swing-up with the balancing law near the top, on the true state of a
    single pole (angle wrapped, 0 = upright). Away from the top it pushes along the pole's motion
    while the energy e = θ'²/2 − ω0²(1 − cos θ) (per unit inertia) is below the upright pose's 0,
    and against it above: a = clip(−pump·e·θ'). Within `switch_angle` of upright it acts as
    `BalancePolicy`: a = clip(−gain · (θ, θ')). ε ~ N(0, 1) each step, times `noise`, is added in
    both. Its data show the path a swing-up takes, which random actions hardly ever pump along
    (E2CConfig.swingup_episodes)."""

    omega_sq: float  # ω0² = m·g·l / I (1/s²): gravity's angular acceleration at horizontal
    gain: tuple[float, float]  # BALANCE_GAINS of the domain, on (θ, θ')
    switch_angle: float = 0.5  # rad from upright where the balancing law takes over
    pump: float = 1.0  # a per unit of e·θ' (saturates within a few rad/s of the target energy)
    noise: float = 0.5
    low: float = -1.0
    high: float = 1.0

    def energy(self, angle: float, velocity: float) -> float:
        """e(θ, θ'), 0 at rest upright, −2·ω0² at rest hanging."""
        return 0.5 * velocity ** 2 - self.omega_sq * (1.0 - np.cos(angle))

    def __call__(self, obs: np.ndarray, info: dict, rng: np.random.Generator) -> np.ndarray:
        angle, velocity = float(info["angle"]), float(info["state"][1])
        if abs(angle) < self.switch_angle:
            a = -(self.gain[0] * angle + self.gain[1] * velocity)
        else:
            a = -self.pump * self.energy(angle, velocity) * velocity
        a += self.noise * rng.standard_normal()
        return np.array([np.clip(a, self.low, self.high)], dtype=np.float32)  # [1]


def gravity_rate(env: PixelEnv) -> float:
    """ω0² (1/s²) of `env`'s single pole: its angular acceleration at rest at horizontal under zero
    action, read from the simulator rather than from the XML's masses and lengths. Resets `env`."""
    pose_state(env, np.pi / 2)
    data = env.physics.data
    data.ctrl[:] = 0.0
    env.physics.forward()
    return float(data.qacc[env.task_spec.angle_qpos])


def swingup_policy(env: PixelEnv, noise: float = 0.5) -> SwingUpPolicy:
    """`SwingUpPolicy` for a pendulum-domain env; ValueError for any other."""
    if env.task_spec.domain != "pendulum":
        raise ValueError(f"the swing-up policy pumps a single pole's energy: it works for the pendulum "
                         f"domain only, not {env.name} (use policy='random' or 'balance')")
    if not noise >= 0:
        raise ValueError(f"noise must be a std >= 0, got {noise!r}")
    space = env.action_space
    gain = BALANCE_GAINS["pendulum"]
    return SwingUpPolicy(omega_sq=gravity_rate(env), gain=(gain[0], gain[1]), noise=float(noise),
                         low=float(space.low[0]), high=float(space.high[0]))


def random_policy(env_or_dim: PixelEnv | int) -> UniformPolicy:
    """The uniform policy over an env's action box (or over [-1, 1]^A given A)."""
    if isinstance(env_or_dim, (int, np.integer)):
        if env_or_dim < 1:
            raise ValueError(f"action dimension must be >= 1, got {env_or_dim}")
        return UniformPolicy((-1.0,) * int(env_or_dim), (1.0,) * int(env_or_dim))
    space = env_or_dim.action_space
    return UniformPolicy(tuple(float(x) for x in space.low), tuple(float(x) for x in space.high))


# policies by name (`collect(policy=NAME)`, E2CConfig.upright_policy): each builds from an env
NAMED_POLICIES: dict[str, Callable[[PixelEnv], Policy]] = {
    "random": random_policy, "balance": balance_policy, "swingup": swingup_policy}


def episode_seeds(seed: int, index: int) -> tuple[int, np.random.Generator]:
    """(env seed, policy rng) of episode `index` in a run seeded with `seed` (see module doc)."""
    if seed < 0 or index < 0:
        raise ValueError(f"seed and episode index must be >= 0, got seed={seed}, index={index}")
    env_seed = int(np.random.SeedSequence(seed, spawn_key=(index, 0)).generate_state(1)[0])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, 1)))
    return env_seed, rng


@dataclass(frozen=True)
class Rollout:
    """One episode's arrays, as recorded (see worldmodel.data.Episode for the alignment)."""

    images: np.ndarray   # [T+1, H, W, 3] uint8
    actions: np.ndarray  # [T, A] float32, the clipped actions actually applied
    rewards: np.ndarray  # [T] float32, each summed over action_repeat simulator steps
    states: np.ndarray   # [T+1, S] float64 (qpos, qvel)
    seed: int            # the env seed the episode was reset with
    clipped: int         # action entries clipped over the episode


def pose_state(env: PixelEnv, angle: float, velocity: float = 0.0, seed: int = 0) -> np.ndarray:
    """A `get_sim_state()` vector of `env` (reset with `seed`) with the pole at `angle`
    (0 = upright) turning at `velocity`, every other joint at zero and at rest."""
    index = env.task_spec.angle_qpos
    if index is None:
        raise ValueError(f"{env.name} has no pole angle to pose (TaskSpec.angle_qpos is None)")
    env.reset(seed=seed)
    data = env.physics.data
    data.qpos[:] = 0.0
    data.qvel[:] = 0.0
    data.qpos[index] = angle
    data.qvel[index] = velocity
    env.physics.forward()
    return env.get_sim_state()


def rollout(env: PixelEnv, policy: Policy, rng: np.random.Generator, seed: int,
            steps: int | None = None,
            start_angles: tuple[float, float] | None = None,
            start_velocities: tuple[float, float] | None = None) -> Rollout:
    """Reset `env` with `seed` and run `policy` until the episode ends (truncated after max_steps),
    or after `steps` env steps when given (short episodes spread the data over more start states).
    start_angles (low, high): start at rest with the pole at an angle drawn uniformly from them
    (rng's first draw) instead of the task's own random start. start_velocities (low, high), only
    with start_angles: the pole turns at a velocity drawn uniformly from them (rng's second draw)."""
    T, A = env.max_steps if steps is None else min(int(steps), env.max_steps), env.action_dim
    if start_angles is None:
        if start_velocities is not None:
            raise ValueError("start_velocities needs start_angles: a posed start sets both")
        obs, info = env.reset(seed=seed)
    else:
        angle = float(rng.uniform(*start_angles))
        velocity = 0.0 if start_velocities is None else float(rng.uniform(*start_velocities))
        obs, info = env.reset(sim_state=pose_state(env, angle, velocity, seed=seed))
    images = np.empty((T + 1, *obs.shape), dtype=np.uint8)
    states = np.empty((T + 1, env.state_dim), dtype=np.float64)
    actions = np.empty((T, A), dtype=np.float32)
    rewards = np.empty(T, dtype=np.float32)
    images[0], states[0] = obs, info["state"]
    clipped, t = 0, 0
    done = False
    while not done:
        a = np.asarray(policy(obs, info, rng), dtype=np.float64)
        obs, reward, terminated, truncated, info = env.step(a)
        actions[t] = np.clip(a, env.action_space.low, env.action_space.high)
        rewards[t] = reward
        images[t + 1], states[t + 1] = obs, info["state"]
        clipped += info["clipped"]
        t += 1
        done = terminated or truncated or t >= T
    n = t  # == T for the suite tasks, which never terminate
    return Rollout(images[:n + 1], actions[:n], rewards[:n], states[:n + 1], seed, clipped)


@dataclass(frozen=True)
class EpisodeJob:
    """Everything a worker process needs to record episode `index` (all picklable)."""

    task: str
    image_size: int
    action_repeat: int
    policy: Policy
    seed: int
    index: int
    steps: int | None = None  # env steps per episode; None: the full episode
    start_angles: tuple[float, float] | None = None  # pole angle range of a posed start (rollout)
    start_velocities: tuple[float, float] | None = None  # its pole velocity range (rad/s)
    camera: int | str | None = None  # dm_control camera id or name; None: the task's


@functools.lru_cache(maxsize=1)
def _worker_env(task: str, image_size: int, action_repeat: int, camera: int | str | None) -> PixelEnv:
    """One env per worker process, built on its first job and reused (a GL context is costly)."""
    return make(task, image_size=image_size, action_repeat=action_repeat, camera=camera)


def run_job(job: EpisodeJob, env: PixelEnv | None = None) -> Rollout:
    """Record one episode; in a pool worker (env=None) the process's cached env is used."""
    if env is None:
        env = _worker_env(job.task, job.image_size, job.action_repeat, job.camera)
    env_seed, rng = episode_seeds(job.seed, job.index)
    return rollout(env, job.policy, rng, env_seed, job.steps, job.start_angles, job.start_velocities)
