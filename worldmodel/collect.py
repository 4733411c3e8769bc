"""Collecting episodes from a pixel task into an episode dataset folder.

Notation: an episode has T = env.max_steps transitions: images [T+1, H, W, 3] uint8,
actions [T, A], rewards [T], states [T+1, S] (see worldmodel.data.episode).

Episode i (its global index in the dataset folder) is recorded with seeds derived from
(seed, i) (envs.rollout.episode_seeds), so re-running `collect` into the same folder adds new,
different episodes and never rewrites old ones, and the data do not depend on `workers`.
With workers > 1 episodes are rendered in processes started with the `spawn` context
(forking a process that holds a GL context hangs); the parent appends them in episode order.
"""
from __future__ import annotations

import multiprocessing
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import numpy as np

import envs
from envs.pixel_env import PixelEnv
from envs.rollout import (NAMED_POLICIES, EpisodeJob, Policy, Rollout, UniformPolicy, random_policy,
                          rollout, run_job)
from worldmodel.data import Episode, EpisodeDataset
from worldmodel.data.dataset import MANIFEST
from worldmodel.data.episode import image_hw

__all__ = ["collect", "top_up", "random_policy", "run_episode", "UniformPolicy", "POLICIES"]

POLICIES = tuple(NAMED_POLICIES)  # collect's policies by name


def _to_episode(env: PixelEnv, r: Rollout, meta: dict | None) -> Episode:
    """Wrap a rollout with the meta data that describe it."""
    info = {"task": env.name, "image_size": env.image_size, "action_repeat": env.action_repeat,
            "camera": env.camera, "seed": r.seed, "return": float(r.rewards.sum(dtype=np.float64)),
            "clipped": int(r.clipped)}
    return Episode(images=r.images, actions=r.actions, rewards=r.rewards,
                   states=r.states.astype(np.float32), meta={**info, **(meta or {})})


def run_episode(env: PixelEnv, policy: Policy, rng: np.random.Generator, seed: int, *,
                meta: dict | None = None) -> Episode:
    """Reset `env` with `seed`, run `policy(obs, info, rng)` for a whole episode, return it.

    meta: extra JSON-able entries for the episode's meta (task, image size, action repeat, seed,
    return and clipped count are always recorded).
    """
    return _to_episode(env, rollout(env, policy, rng, seed), meta)


def _policy_name(policy: Policy) -> str:
    return getattr(policy, "__qualname__", type(policy).__qualname__)


def _ordered_range(name: str, value: tuple[float, float]) -> tuple[float, float]:
    """`value` as a (low, high) pair of floats; ValueError naming `name` unless low <= high."""
    low, high = (float(x) for x in value)
    if not low <= high:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value!r}")
    return low, high


def collect(task: str, episodes: int, out: str | os.PathLike, *,
            policy: str | Policy = "random", workers: int = 1, seed: int = 0,
            image_size: int = 64, action_repeat: int | None = None,
            episode_steps: int | None = None, progress: bool = True,
            start_angles: tuple[float, float] | None = None,
            start_velocities: tuple[float, float] | None = None,
            camera: int | str | None = None) -> EpisodeDataset:
    """Record `episodes` episodes of `task` into the dataset folder `out` (created or appended to).

    policy: "random" (uniform over the action box), "balance" (envs.rollout.BalancePolicy: a
        noisy linear controller on the true state that holds a pendulum's or cart-pole's pole near
        upright), "swingup" (envs.rollout.SwingUpPolicy: a noisy energy-pumping swing-up of the
        pendulum that balances near the top) or a callable (obs, info, rng) -> action, picklable
        when workers > 1.
    workers: processes that render episodes (1 renders in this process).
    seed: run seed; episode i uses seeds derived from (seed, i).
    episode_steps: stop each episode after this many env steps (default: the task's full
        episode). Many short episodes cover more of the state space than a few long ones, because
        each starts from the task's random initial state (E2C-style data).
    start_angles: (low, high) start each episode at rest with the pole at an angle uniform in
        this range (0 = upright) instead of the task's random start, e.g. to cover the upright
        pose, which random starts and random actions rarely visit at rest.
    start_velocities: (low, high), with start_angles: the pole starts turning at a velocity
        uniform in this range (rad/s) instead of at rest. With start_angles (-π, π) the start
        state is uniform over angle and velocity, as E2C, PCC and PC3 sample their training data.
    camera: dm_control camera id or name to render (default: the task's, PlaNet's camera 0). A
        dataset folder holds one camera's images: appending another camera's is an error.
    Returns the dataset, holding the old episodes followed by the new ones.
    """
    for name, value, low in (("episodes", episodes, 0), ("workers", workers, 1), ("seed", seed, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    # The parent's env gives the action box and state size; it renders only when workers == 1
    # (its GL context is created lazily, on the first render).
    env = envs.make(task, image_size=image_size, action_repeat=action_repeat, camera=camera)
    try:
        if isinstance(policy, str):
            if policy not in POLICIES:
                raise ValueError(f"policy must be one of {POLICIES} or a callable (obs, info, rng) "
                                 f"-> action, got {policy!r}")
            policy_fn: Policy = NAMED_POLICIES[policy](env)
        elif callable(policy):
            policy_fn = policy
        else:
            raise ValueError(f"policy must be one of {POLICIES} or a callable, got {policy!r}")
        if workers > 1:
            try:
                pickle.dumps(policy_fn)
            except Exception as err:
                raise ValueError(f"policy {policy_fn!r} cannot be pickled, so it cannot run in "
                                 f"{workers} worker processes; define it at module level "
                                 "(not a lambda or closure) or use workers=1") from err
        if episode_steps is not None and (
                not isinstance(episode_steps, (int, np.integer)) or isinstance(episode_steps, bool)
                or not 1 <= episode_steps <= env.max_steps):
            raise ValueError(f"episode_steps must be an int in [1, {env.max_steps}] (the task's "
                             f"episode length), got {episode_steps!r}")
        if start_angles is not None:
            if env.task_spec.angle_qpos is None:
                raise ValueError(f"start_angles needs a task with a pole; {task} has none")
            start_angles = _ordered_range("start_angles", start_angles)
        if start_velocities is not None:
            if start_angles is None:
                raise ValueError("start_velocities needs start_angles (a posed start sets both); "
                                 "pass e.g. start_angles=(-math.pi, math.pi)")
            start_velocities = _ordered_range("start_velocities", start_velocities)
        # every argument is checked before the dataset folder is created
        ds = EpisodeDataset.create(out, task=task, image_size=image_size,
                                   action_repeat=env.action_repeat, action_dim=env.action_dim,
                                   state_dim=env.state_dim, camera=env.camera)
        start = ds.next_index()  # episode i's seeds follow its file number, also after a deletion
        jobs = [EpisodeJob(task, env.image_size, env.action_repeat, policy_fn, int(seed),
                           start + k, episode_steps, start_angles, start_velocities, env.camera)
                for k in range(episodes)]
        meta = {"policy": policy if isinstance(policy, str) else _policy_name(policy_fn),
                "run_seed": int(seed)}
        if start_angles is not None:
            meta["start_angles"] = list(start_angles)
        if start_velocities is not None:
            meta["start_velocities"] = list(start_velocities)
        bar = _progress_bar(episodes * ((episode_steps or env.max_steps) + 1), task, progress)
        try:
            for job, r in zip(jobs, _rollouts(jobs, env, workers)):
                ds.append(_to_episode(env, r, {**meta, "index": job.index}))
                bar.update(len(r.images))
        finally:
            bar.close()
        return ds
    finally:
        env.close()


def top_up(task: str, episodes: int, out: str | os.PathLike, *, first: int = 0,
           **options: Any) -> EpisodeDataset:
    """Collect only the episodes the dataset `out` still lacks to hold `episodes` of them.

    A re-run command (after Ctrl-C) then reuses its data instead of appending a second copy;
    episode i's seeds depend on (seed, i) only, so the result equals one uninterrupted collect.
    `options` are `collect`'s. The episodes already there from index `first` on must have been
    recorded with the same seed, policy, start settings and length: reusing data of another
    distribution without a word would change an experiment silently, so that is an error, as
    is another image size. Episodes before `first` came from earlier calls with other options
    (e2c adds upright-start episodes after its random-start ones).
    """
    folder = Path(out)
    have = 0
    if (folder / MANIFEST).is_file():
        existing = EpisodeDataset(folder)
        size = options.get("image_size", 64)
        if image_hw(existing.manifest.get("image_size")) != image_hw(size):  # 64, [64, 64], (64, 64) alike
            raise ValueError(f"{folder} holds {existing.manifest.get('image_size')}px episodes but "
                             f"{size}px were asked for; use another output folder")
        repeat = options.get("action_repeat") or envs.spec(task).action_repeat
        if existing.manifest.get("action_repeat") != repeat:
            raise ValueError(f"{folder} holds episodes at action repeat "
                             f"{existing.manifest.get('action_repeat')} but {repeat} was asked for; "
                             "use another output folder")
        have = len(existing)
        _check_recipe(existing, range(first, min(have, episodes)), options)
    return collect(task, max(episodes - have, 0), folder, **options)


def _check_recipe(data: EpisodeDataset, indices: range, options: dict[str, Any]) -> None:
    """ValueError unless the episodes `indices` of `data` were recorded as `options` ask."""
    from envs.registry import SIM_STEPS_PER_EPISODE

    policy = options.get("policy", "random")
    steps = options.get("episode_steps") or SIM_STEPS_PER_EPISODE // data.manifest["action_repeat"]
    wanted = {"run_seed": int(options.get("seed", 0)),
              "policy": policy if isinstance(policy, str) else _policy_name(policy),
              "start_angles": _as_list(options.get("start_angles")),
              "start_velocities": _as_list(options.get("start_velocities")), "length": steps}
    for i in indices:
        episode = data[i]
        seen = {**{k: episode.meta.get(k) for k in wanted}, "length": episode.length}
        # datasets older than the run_seed / policy records cannot be checked on those
        unknown = {k for k in ("run_seed", "policy") if k not in episode.meta}
        differ = [f"{k} {seen[k]!r} (asked: {wanted[k]!r})" for k in wanted
                  if k not in unknown and seen[k] != wanted[k]]
        if differ:
            raise ValueError(f"{data.root} already holds episode {i} recorded with other settings: "
                             f"{', '.join(differ)}. Its data would mix two distributions; use another "
                             "output folder, or the settings that made it")


def _as_list(pair: tuple[float, float] | None) -> list[float] | None:
    """A (low, high) option as collect records it in an episode's meta."""
    return None if pair is None else [float(x) for x in pair]


def _rollouts(jobs: list[EpisodeJob], env: PixelEnv, workers: int) -> Iterator[Rollout]:
    """The rollouts of `jobs`, in order: here (workers == 1) or in spawned processes."""
    if workers == 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job, env)
        return
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=ctx) as pool:
        yield from pool.map(run_job, jobs)


def _progress_bar(total: int, task: str, enabled: bool):
    """A tqdm bar counting rendered frames (so its rate reads frames/s)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="frame", desc=f"collect {task}", disable=not enabled,
                smoothing=0.1)
