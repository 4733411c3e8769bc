"""The two kinds of episode an online run plays: collection (uniform random for the S seed
episodes, then latent MPC with exploration noise) and the noise-free evaluation on fixed seeds.
The loop that schedules them is `worldmodel.online`."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from worldmodel.online_config import OnlineConfig, planner_settings


class NoisyMPCPolicy:
    """Latent MPC plus N(0, σ²) action noise, clipped to the box, as an envs.rollout policy.

    The agent filters the noisy action actually applied, so its latent follows the real episode."""

    def __init__(self, agent: Any, noise: float, low: np.ndarray, high: np.ndarray) -> None:
        self.agent, self.noise, self.low, self.high = agent, noise, low, high
        self.last: np.ndarray | None = None

    def __call__(self, obs: np.ndarray, info: dict, rng: np.random.Generator) -> np.ndarray:
        if self.last is None:
            self.agent.reset(obs, None)
        else:
            self.agent.observe(self.last, obs)
        action = self.agent.act()  # [A]
        noisy = action + self.noise * rng.standard_normal(action.shape)
        self.last = np.clip(noisy, self.low, self.high).astype(np.float32)
        return self.last


def planner_seed(seed: int, index: int) -> int:
    """The planner's torch seed for episode `index` (a third stream beside envs.rollout's two)."""
    return int(np.random.SeedSequence(seed, spawn_key=(index, 2)).generate_state(1)[0])


def collect_episode(env: Any, config: OnlineConfig, index: int, model: Any, device: torch.device) -> Any:
    """Episode `index` of the run: uniform random while index < S, noisy latent MPC after."""
    import planners
    from envs.rollout import episode_seeds, random_policy
    from worldmodel.collect import run_episode
    from worldmodel.control import LatentMPCAgent

    env_seed, rng = episode_seeds(config.seed, index)
    meta = {"index": index, "run_seed": config.seed}
    if index < config.seed_episodes:
        return run_episode(env, random_policy(env), rng, env_seed, meta={**meta, "policy": "random"})
    agent = LatentMPCAgent(model, planners.make(config.planner, **planner_settings(config)), config.horizon,
                           seed=planner_seed(config.seed, index), device=str(device),
                           precision=config.planning_precision, compile=config.compile_planning)
    policy = NoisyMPCPolicy(agent, config.exploration_noise, env.action_space.low, env.action_space.high)
    model.eval()
    return run_episode(env, policy, rng, env_seed, meta={**meta, "policy": f"{config.planner}+noise"})


def evaluate_noise_free(model: Any, config: OnlineConfig, episodes: int, device: torch.device,
                        action_repeat: int) -> dict[str, Any]:
    """Noise-free MPC on the fixed evaluation seeds (the same episodes every time)."""
    from worldmodel.control import EvalConfig
    from worldmodel.evaluate import evaluate_model

    eval_config = EvalConfig(planner=config.planner, planner_overrides=planner_settings(config),
                             horizon=config.horizon, episodes=episodes, oracle_episodes=0,
                             seed=config.seed, device=str(device),
                             planning_precision=config.planning_precision,
                             compile_planning=config.compile_planning)
    return evaluate_model(model, config.task, eval_config, image_size=config.image_size,
                          action_repeat=action_repeat, progress=False, camera=config.camera)
