"""Online learning as PlaNet does it: collect, train, plan, collect, … from random seed data.

Schedule (Hafner et al. 2019, "Learning Latent Dynamics for Planning from Pixels", Algorithm 1):

    S seed episodes of uniform random actions
    until `env_steps` simulator steps are collected:
        C updates of the model on B chunks of L steps drawn from all data so far
        one episode of latent MPC with exploration noise: a_t = clip(plan(s_t) + ε_t, low, high),
            ε_t ~ N(0, σ²), s_t the filtered latent of the images so far
        append it to the dataset; every K episodes evaluate noise-free MPC on fixed seeds
    a final noise-free evaluation of `final_eval_episodes` episodes -> summary.json

Counting: env_steps counts simulator steps = agent steps × action repeat, so one dm_control
episode is 1000 whatever the repeat (cart-pole at repeat 8: 125 agent steps). Evaluation
episodes do not count: they add no data.

Settings are `worldmodel.online_config.OnlineConfig` (also importable from here); the episodes
themselves (random, noisy MPC, noise-free evaluation) are `worldmodel.online_episodes`.

A run folder holds
    config.json      {"online": OnlineConfig, "model": ModelConfig, "train": TrainConfig, data ...}
    data/            the EpisodeDataset of every collected episode (seed and exploration)
    checkpoint.pt    model, optimiser, counters and RNG states after the last finished cycle
    metrics.jsonl    one record per episode (kind seed | explore | eval), `step` = env_steps
    summary.json     the final evaluation, once `env_steps` is reached
config.json and checkpoint.pt use the format of `worldmodel train`, so `worldmodel evaluate --run`
and `checkpoint.load_model` read an online run folder too.

Exact resume: everything random is either checkpointed (the torch global RNG, the model's noise
generator, the chunk sampler's generators) or derived from (seed, episode index) and needs no
state (env seeds, the random and exploration-noise streams, the planner's generator; see
`envs.rollout.episode_seeds`). On resume, episodes on disk beyond the checkpoint's count (a
kill -9 after an append, before the checkpoint) are deleted and metrics after the checkpoint are
dropped, so the resumed run repeats the lost cycle exactly as the uninterrupted run did it.
"""
from __future__ import annotations

import math
import re
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from worldmodel import checkpoint as ckpt
from worldmodel.atomic import atomic_write_json
from worldmodel.device_legs import describe_legs, legs_before_recording, legs_so_far
from worldmodel.online_config import RESUMABLE_CHANGES, OnlineConfig, planner_settings
from worldmodel.online_episodes import collect_episode, evaluate_noise_free
from worldmodel.provenance import machine, versions


DATA_DIR = "data"
SUMMARY_FILE = "summary.json"


# -- the run folder ------------------------------------------------------------------------------

def _episode_index(path: Path) -> int | None:
    m = re.fullmatch(r"episode_(\d+)\.npz", path.name)
    return int(m.group(1)) if m else None


def _drop_unrecorded_episodes(data_dir: Path, keep: int, data_steps: int) -> list[Path]:
    """Delete episode files numbered >= `keep` (appended after the checkpoint) and make the
    manifest agree with the `keep` episodes left; returns the deleted paths."""
    from worldmodel.data.dataset import MANIFEST

    if not (data_dir / MANIFEST).is_file():
        return []
    extra = sorted(p for p in data_dir.iterdir() if (i := _episode_index(p)) is not None and i >= keep)
    for path in extra:
        path.unlink()
    manifest_path = data_dir / MANIFEST
    import json

    manifest = json.loads(manifest_path.read_text())
    if (manifest.get("episodes"), manifest.get("steps")) != (keep, data_steps):
        atomic_write_json(manifest_path, {**manifest, "episodes": keep, "steps": data_steps})
    return extra


def _settle_config(config: OnlineConfig | None, out: Path, resume: bool) -> OnlineConfig:
    """The run's settings: `config` for a new run, the folder's (with allowed changes) on resume."""
    config_path = out / ckpt.CONFIG_FILE
    if not resume:
        if config_path.exists() or (out / ckpt.CHECKPOINT_FILE).exists() or (out / DATA_DIR).exists():
            raise FileExistsError(f"{out} already holds a run; continue it with resume=True "
                                  f"(`worldmodel run --out {out} --resume`) or choose another --out")
        if config is None:
            raise ValueError("a new run needs an OnlineConfig (only resume=True reads it from the folder)")
        return config
    if not config_path.is_file():
        raise ckpt.CheckpointError(f"cannot resume: {out} holds no online run (no {ckpt.CONFIG_FILE}); "
                                   f"start one without --resume, e.g. `worldmodel run --task TASK "
                                   f"--env-steps N --out {out}`")
    stored_all = ckpt.read_run_config(out)
    if "online" not in stored_all:
        raise ckpt.CheckpointError(f"cannot resume: {config_path} is not an online run's (no 'online' "
                                   "settings); continue a `worldmodel train` run with `worldmodel train --resume`")
    stored = stored_all["online"]
    if config is None:
        return OnlineConfig.from_dict(stored)
    # filled with today's defaults: a setting added since the run started is not a conflict
    ckpt.check_resume_agrees(OnlineConfig.from_dict(stored).to_dict(), config.to_dict(), "online",
                             RESUMABLE_CHANGES)
    return config


# -- the loop --------------------------------------------------------------------------------------

def run_online(config: OnlineConfig | None, out: str | Path, *, resume: bool = False, progress: bool = True,
               stop_when: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Run (or, with resume=True, continue) PlaNet's online loop in the run folder `out`.

    config: the settings of a new run; on resume None (the folder's) or the folder's with only
        `RESUMABLE_CHANGES` changed (others are a ValueError naming the key).
    stop_when: called with the counters after each checkpoint; returning True stops the run
        there, resumable (a test hook; Ctrl-C does the same at the end of the current cycle,
        a second Ctrl-C stops at once and the run resumes from the last checkpoint).
    Returns the summary: {"status": "finished" | "stopped", counters, final evaluation, ...}.
    Raises KeyboardInterrupt (after checkpointing) when stopped by Ctrl-C / SIGTERM.
    """
    from worldmodel.device import resolve_device

    out = Path(out)
    config = _settle_config(config, out, resume)
    device = resolve_device(config.device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # the caller's torch RNGs are left as they were
        return _OnlineRun(config, out, resume, progress, stop_when).run()


class _OnlineRun:
    """The state of one online run between cycles, and the cycle itself."""

    def __init__(self, config: OnlineConfig, out: Path, resume: bool, progress: bool,
                 stop_when: Callable[[dict[str, Any]], bool] | None) -> None:
        import envs
        from worldmodel import device as devices

        self.config, self.out, self.progress, self.stop_when = config, out, progress, stop_when
        self.device = devices.resolve_device(config.device)
        self.device_name = devices.describe(self.device)
        self.env = envs.make(config.task, image_size=config.image_size, action_repeat=config.action_repeat,
                             camera=config.camera)  # a bad camera: ValueError naming the task's
        self.episode_env_steps = self.env.max_steps * self.env.action_repeat  # 1000 for the suite
        if config.chunk_length > self.env.max_steps + 1:  # a chunk is L of the episode's T + 1 frames
            self.env.close()
            raise ValueError(f"chunk_length {config.chunk_length} exceeds the {self.env.max_steps + 1} "
                             f"observations of a {config.task} episode ({self.env.max_steps} agent steps at "
                             f"action repeat {self.env.action_repeat}); use chunk_length <= "
                             f"{self.env.max_steps + 1}")
        self.model_config = config.model_config(self.env.action_dim)
        self.train_config = config.train_config(steps=config.train_steps_per_episode * max(
            1, math.ceil(config.env_steps / self.episode_env_steps) - config.seed_episodes))
        self.trainer: Any = None
        self.data: Any = None
        self.episodes = self.env_steps = 0
        self.wall_before = 0.0
        self.past_legs: list[dict[str, Any]] = []  # the devices of earlier sittings (device_legs)
        self.window: dict[str, Any] = {"last_return": None, "last_eval": None}
        self.resumed = resume and (out / ckpt.CHECKPOINT_FILE).is_file()
        if self.resumed:
            self._load()
        else:
            _drop_unrecorded_episodes(out / DATA_DIR, 0, 0)  # a run killed before its first checkpoint
        self.sitting_from_env_steps = self.env_steps  # where this sitting's device leg starts
        self._write_config(resume)

    # -- persistence -------------------------------------------------------------------------------

    def _write_config(self, resume: bool) -> None:
        from envs.registry import spec

        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        stored = ckpt.read_run_config(self.out) if resume and (self.out / ckpt.CONFIG_FILE).exists() else {}
        manifest = {"task": self.config.task, "image_size": self.config.image_size,
                    "action_repeat": self.env.action_repeat, "camera": self.env.camera,
                    "action_dim": self.env.action_dim,
                    "state_dim": self.env.state_dim}
        record = {**stored, "online": self.config.to_dict(), "model": self.model_config.to_dict(),
                  "train": self.train_config.to_dict(), **ckpt.data_record(self.out, self.out / DATA_DIR),
                  "data_manifest": manifest, "world_size": 1,
                  "task_default_action_repeat": spec(self.config.task).action_repeat}
        # the first sitting's versions and machine at the top, each later sitting's in its `resumed` entry
        record.setdefault("created", now)
        record.setdefault("versions", versions())
        record.setdefault("machine", machine())
        finished = self.env_steps >= self.config.env_steps and (self.out / SUMMARY_FILE).is_file()
        if resume and not finished:  # a finished run read back is not a new sitting
            record["resumed"] = [*record.get("resumed", []), {"at": now, "episodes": self.episodes,
                                                              "device": self.device_name,
                                                              "versions": versions(), "machine": machine()}]
        ckpt.write_run_config(self.out, record)

    def _load(self) -> None:
        state = ckpt.load_checkpoint(self.out / ckpt.CHECKPOINT_FILE, map_location=self.device)
        counters = state["online"]
        self.episodes, self.env_steps = int(counters["episodes"]), int(counters["env_steps"])
        self.wall_before, self.window = float(state["wall_time"]), dict(state["log_window"])
        self.past_legs = (list(state["device_legs"]) if "device_legs" in state
                          else legs_before_recording(self.env_steps, self.wall_before))
        dropped = _drop_unrecorded_episodes(self.out / DATA_DIR, self.episodes, int(counters["data_steps"]))
        if dropped:
            warnings.warn(f"dropped {len(dropped)} episode(s) collected after the last checkpoint "
                          f"(episode {self.episodes} onwards); they are collected again identically",
                          stacklevel=3)
        if state["model"] is not None:
            self._start_trainer()
            self.trainer.load_state(state)

    def _start_trainer(self) -> None:
        """Model, optimiser and sampler over the data so far (seeded from config.seed)."""
        from worldmodel.train import Trainer

        self.trainer = Trainer(self.model_config, self.train_config, self.out / DATA_DIR)
        self.data = self.trainer.dataset  # one in-memory copy: appends go through the trainer's

    def _dataset(self) -> Any:
        from worldmodel.data import EpisodeDataset

        if self.data is None:
            self.data = EpisodeDataset.create(self.out / DATA_DIR, task=self.config.task,
                                              image_size=self.config.image_size,
                                              action_repeat=self.env.action_repeat,
                                              action_dim=self.env.action_dim, state_dim=self.env.state_dim,
                                              camera=self.env.camera)
        return self.data

    def _legs(self, wall: float) -> list[dict[str, Any]]:
        """Every device leg of the run up to now, this sitting's included."""
        return legs_so_far(self.past_legs, self.device_name, self.sitting_from_env_steps, self.env_steps,
                           wall - self.wall_before)

    def _save(self, wall: float) -> None:
        t = self.trainer
        ckpt.save_checkpoint(self.out / ckpt.CHECKPOINT_FILE, {
            "step": t.step if t else 0, "model": t.model.state_dict() if t else None,
            "optimizer": t.optimizer.state_dict() if t else None,
            "model_config": self.model_config.to_dict(), "train_config": self.train_config.to_dict(),
            "world_size": 1, "ranks": [t.state()] if t else [], "log_window": dict(self.window),
            "wall_time": wall, "device_legs": self._legs(wall),
            "online": {"episodes": self.episodes, "env_steps": self.env_steps,
                       "data_steps": self._dataset().num_steps}})

    def counters(self) -> dict[str, Any]:
        return {"episodes": self.episodes, "env_steps": self.env_steps,
                "train_steps": self.trainer.step if self.trainer else 0}

    # -- the loop ------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        from tqdm.auto import tqdm

        from worldmodel.metrics_log import MetricsLog
        from worldmodel.stop_signal import StopSignal

        c = self.config
        start = time.perf_counter()
        wall = lambda: self.wall_before + time.perf_counter() - start  # noqa: E731
        log = MetricsLog(self.out, keep_until=self.env_steps if self.resumed else None)
        bar = tqdm(total=c.env_steps, initial=min(self.env_steps, c.env_steps), unit="env step",
                   desc=f"run {c.task}", disable=not self.progress, dynamic_ncols=True, smoothing=0.3)
        stopped = None
        try:
            with StopSignal() as signal_flag:
                while self.env_steps < c.env_steps and stopped is None:
                    for record in self._cycle(wall):
                        log.write(record)
                    bar.update(min(self.env_steps, c.env_steps) - bar.n)
                    bar.set_postfix(self._postfix(), refresh=False)
                    if (self.episodes % c.checkpoint_every == 0 or self.env_steps >= c.env_steps
                            or signal_flag.requested):
                        self._save(wall())
                        if signal_flag.requested:
                            stopped = "signal"
                        elif self.stop_when is not None and self.stop_when(self.counters()):
                            stopped = "stop_when"
                if stopped is None:
                    summary = self._finish(log, wall)
        finally:
            bar.close()
            log.close()
            self.env.close()
        if stopped == "signal":
            raise KeyboardInterrupt(f"stopped after episode {self.episodes} ({self.env_steps} env steps); "
                                    f"checkpoint saved in {self.out}; continue with "
                                    f"`worldmodel run --out {self.out} --resume`")
        if stopped:
            return {"status": "stopped", **self.counters(), "wall_seconds": wall()}
        return summary

    def _cycle(self, wall: Callable[[], float]) -> list[dict[str, Any]]:
        """C updates (after the seed phase), one collected episode, maybe an evaluation; the
        metrics records it produced."""
        c, index = self.config, self.episodes
        exploring = index >= c.seed_episodes
        terms: dict[str, float] = {}
        if exploring:
            if self.trainer is None:
                self._start_trainer()
            self.trainer.sampler.refresh()  # the episodes appended since the last cycle
            for _ in range(c.train_steps_per_episode):
                step_terms, _ = self.trainer.train_step()
                for name, v in step_terms.items():
                    terms[name] = terms.get(name, 0.0) + v / c.train_steps_per_episode
        model = self.trainer.model if self.trainer else None
        episode = collect_episode(self.env, c, index, model, self.device)
        self._dataset().append(episode)
        self.episodes += 1
        self.env_steps += episode.length * self.env.action_repeat
        ret = float(episode.meta["return"])
        self.window["last_return"] = ret
        records = [{"step": self.env_steps, "episode": index, "env_steps": self.env_steps,
                    "train_steps": self.counters()["train_steps"], "return": ret,
                    "kind": "explore" if exploring else "seed", "wall_seconds": wall(), **terms}]
        explored = self.episodes - c.seed_episodes
        if exploring and explored % c.eval_every == 0 and self.env_steps < c.env_steps:
            records.append(self._eval_record(c.eval_episodes, wall))
        return records

    def _eval_record(self, episodes: int, wall: Callable[[], float]) -> dict[str, Any]:
        result = evaluate_noise_free(self.trainer.model, self.config, episodes, self.device, self.env.action_repeat)
        self.window["last_eval"] = result["return_mean"]
        return {"step": self.env_steps, "episode": self.episodes - 1, "env_steps": self.env_steps,
                "train_steps": self.trainer.step, "return": result["return_mean"],
                "return_stderr": result["return_stderr"], "returns": result["returns"], "kind": "eval",
                "goal_time": result["goal_time"], "ms_per_action": result["ms_per_action"],
                "eval_episodes": episodes, "wall_seconds": wall()}

    def _finish(self, log: Any, wall: Callable[[], float]) -> dict[str, Any]:
        """The final evaluation and summary.json (reused if a previous sitting wrote it)."""
        import json

        path = self.out / SUMMARY_FILE
        if path.is_file():
            summary = json.loads(path.read_text())
            if summary.get("episodes") == self.episodes:
                return summary
        final = None
        if self.config.final_eval_episodes and self.trainer is not None:
            final = self._logged_final()  # a sitting stopped after the evaluation, before summary.json
            if final is None:
                final = self._eval_record(self.config.final_eval_episodes, wall)
                final["final"] = True
                log.write(final)
        now = wall()
        legs = self._legs(now)
        summary = {"status": "finished", "task": self.config.task, **self.counters(),
                   "return_mean": final["return"] if final else None,
                   "return_stderr": final["return_stderr"] if final else None,
                   "returns": final["returns"] if final else [], "seed": self.config.seed,
                   "goal_time": final["goal_time"] if final else None,
                   "ms_per_action": final["ms_per_action"] if final else None,
                   "preset": self.config.preset, "model_preset": self.config.model,
                   "wall_seconds": now, "wall_hours": now / 3600, "device": describe_legs(legs),
                   "device_legs": legs, "action_repeat": self.env.action_repeat}
        self._save(wall())  # the wall time of the final evaluation
        atomic_write_json(path, summary)
        return summary

    def _logged_final(self) -> dict[str, Any] | None:
        """The final evaluation already in metrics.jsonl at today's step, if any: it is seeded, so
        evaluating again would only repeat it, and log it twice."""
        from worldmodel.metrics_log import read_metrics

        found = [r for r in read_metrics(self.out) if r.get("final") and r["step"] == self.env_steps
                 and r.get("eval_episodes") == self.config.final_eval_episodes]
        return found[-1] if found else None

    def _postfix(self) -> dict[str, str]:
        w = self.window
        shown = {"ep": str(self.episodes)}
        if w.get("last_return") is not None:
            shown["ret"] = f"{w['last_return']:.0f}"
        if w.get("last_eval") is not None:
            shown["eval"] = f"{w['last_eval']:.0f}"
        return shown


__all__ = ["OnlineConfig", "RESUMABLE_CHANGES", "planner_settings", "run_online"]
