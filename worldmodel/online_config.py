"""Settings of an online (PlaNet-style) run: `OnlineConfig`, its presets, and what they imply
for the model, the trainer and the planner. The loop itself is `worldmodel.online`."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from worldmodel.config import DictConfig

MODEL_PRESETS = ("small", "planet")
# What the CPU default adds to its model: a value learnt in imagination (Dreamer's actor-critic,
# worldmodel.value) that planning adds beyond its horizon. cartpole-swingup at 100k: 680 ± 36 over
# seeds 0, 1, 2 against 551 ± 7 without, higher on each seed (+46, +166, +173), for about 1.2x
# the wall-clock (README). `--set model.value_head=false --set model.value_target=recorded` is
# the default of before (the 551 row).
CPU_MODEL_OVERRIDES: dict[str, Any] = {"value_head": True, "value_target": "imagined"}
# Settings a resumed run may change: how long and where it runs, and how fast its planner computes.
# bf16 planning may pick other plans, so a resume that switches it is no longer bit for bit an
# uninterrupted run (latent_problem.py measures the difference).
RESUMABLE_CHANGES = ("env_steps", "device", "checkpoint_every", "planning_precision",
                     "compile_planning")


@dataclass(frozen=True)
class OnlineConfig(DictConfig):
    """Settings of one online run. The defaults are sized for a 2-core CPU (see `cpu`); `planet()`
    gives PlaNet's values (Hafner et al. 2019, Sec. 5 and Appendix A)."""

    task: str = "cartpole-swingup"
    env_steps: int = 100_000  # simulator steps of data to collect (seed episodes included)
    seed_episodes: int = 5  # S; PlaNet
    # C, updates before each collected episode (PlaNet 100). 200 on the CPU: at 25k steps of
    # cartpole-swingup it beat 100 on each of 3 seeds (317 ± 39 vs 146 ± 72, README), for ~1.2x
    # the wall-clock; the small updates (B x L a fifth of PlaNet's) under-train the model at 100.
    train_steps_per_episode: int = 200
    # B x L = 16 x 32 (PlaNet 50 x 50): on the 2-core dev CPU an update of the small model at 64 px
    # takes ~0.45 s at B = 16 but ~1.5 s at B = 32, so 16 is the better buy. Measured, not tuned
    # for return: each setting would need a multi-hour run to compare.
    batch_size: int = 16  # B; PlaNet 50
    chunk_length: int = 32  # L; PlaNet 50
    lr: float = 1e-3  # Adam; PlaNet
    adam_eps: float = 1e-4  # PlaNet
    grad_clip: float = 1000.0  # PlaNet
    quantize_bits: int | None = 5  # PlaNet's 5-bit images
    exploration_noise: float = 0.3  # σ of the Gaussian action noise; PlaNet
    planner: str = "cem"  # any of planners.names()
    horizon: int = 12  # H; PlaNet
    candidates: int = 500  # PlaNet 1000; halved for the CPU (untuned: one planning call ~0.1-0.2 s)
    elites: int = 50  # PlaNet 100 (the same 10%)
    iterations: int = 6  # PlaNet 10
    planner_overrides: dict[str, Any] = field(default_factory=dict)  # other planner settings
    # bf16 autocast / torch.compile of the planner's rollouts (EvalConfig's knobs of the same names)
    planning_precision: str = "float32"
    compile_planning: bool = False
    eval_every: int = 10  # K, collected episodes between evaluations
    eval_episodes: int = 2  # episodes per periodic evaluation (noise-free, fixed seeds)
    final_eval_episodes: int = 10  # the headline number: DESIGN.md section 6 asks for >= 10
    image_size: int = 64  # PlaNet
    action_repeat: int | None = None  # None: the task's default (PlaNet: 8 for cart-pole)
    camera: int | str | None = None  # dm_control camera id or name; None: the task's (PlaNet's 0)
    model: str = "small"  # ModelConfig preset: small (CPU) | planet
    transition: str = "rssm"
    # other ModelConfig fields. The constructor replaces this dict; `cpu()`, and so `--set model.KEY`,
    # add to it
    model_overrides: dict[str, Any] = field(default_factory=lambda: dict(CPU_MODEL_OVERRIDES))
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "float32"  # float32 | bfloat16
    # NHWC conv layout for the updates (same maths); with precision="bfloat16" the fastest CPU
    # update measured (benchmarks/train_speed.py), untested for return as a lever so far
    channels_last: bool = False
    checkpoint_every: int = 1  # collected episodes between checkpoints
    preset: str = "cpu"  # the name of the preset these settings started from (a label for tables)

    def __post_init__(self) -> None:
        from envs.registry import spec

        spec(self.task)  # unknown task: ValueError listing the known ones
        for name in ("env_steps", "seed_episodes", "train_steps_per_episode", "batch_size",
                     "chunk_length", "horizon", "candidates", "elites", "iterations", "eval_every",
                     "eval_episodes", "checkpoint_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"OnlineConfig.{name} must be an int >= 1, got {value!r}")
        if self.final_eval_episodes < 0 or self.seed < 0:
            raise ValueError(f"final_eval_episodes and seed must be >= 0, got "
                             f"{self.final_eval_episodes}, {self.seed}")
        if self.elites > self.candidates:
            raise ValueError(f"elites ({self.elites}) cannot exceed candidates ({self.candidates})")
        if not self.exploration_noise >= 0:
            raise ValueError(f"exploration_noise must be >= 0, got {self.exploration_noise}")
        if self.model not in MODEL_PRESETS:
            raise ValueError(f"model must be one of {MODEL_PRESETS}, got {self.model!r}")
        if self.action_repeat is not None and self.action_repeat < 1:
            raise ValueError(f"action_repeat must be None (task default) or >= 1, got {self.action_repeat}")
        from worldmodel.device import check_precision

        check_precision(self.planning_precision)
        self.train_config()  # lr, device, precision, quantize_bits checked there
        model = self.model_config(action_dim=1)  # image_size, transition and overrides checked there
        settings = planner_settings(self)  # planner name and overrides checked there
        if settings.get("policy_candidates", 0) and not model.trains_actor:
            raise ValueError("planner.policy_candidates draws plans from the model's actor, which only "
                             "a model with value_head=true and value_target=imagined trains; add "
                             "--set model.value_head=true --set model.value_target=imagined")

    @classmethod
    def cpu(cls, **overrides: Any) -> "OnlineConfig":
        """The CPU-sized default: sized for a 2-core machine; of its settings C (the replay ratio)
        and the value beyond the horizon (CPU_MODEL_OVERRIDES) were chosen for return per
        wall-clock hour. `model_overrides` given here add to the default's, or override them."""
        model = {**CPU_MODEL_OVERRIDES, **overrides.pop("model_overrides", {})}
        return cls(model_overrides=model, **overrides)

    @classmethod
    def planet(cls, **overrides: Any) -> "OnlineConfig":
        """PlaNet (Hafner et al. 2019): S 5, C 100, B = L = 50, σ 0.3, CEM H 12 / 10 iterations /
        1000 candidates / 100 elites, action repeat 8 on cart-pole (the task default), PlaNet's RSSM."""
        base = dict(train_steps_per_episode=100, batch_size=50, chunk_length=50, candidates=1000,
                    elites=100, iterations=10, model="planet", eval_episodes=5, preset="planet",
                    model_overrides={})
        return cls(**{**base, **overrides})

    def model_config(self, action_dim: int) -> Any:
        """The ModelConfig of this run for an env with `action_dim` actions."""
        from worldmodel import ModelConfig

        size = self.image_size
        return getattr(ModelConfig, self.model)(**{"transition": self.transition, **self.model_overrides,
                                                   "obs_shape": (3, size, size), "action_dim": action_dim})

    def train_config(self, steps: int = 1) -> Any:
        """The TrainConfig the updates use (`steps` is only recorded: the schedule sets the count)."""
        from worldmodel.train import TrainConfig

        return TrainConfig(steps=steps, batch_size=self.batch_size, chunk_length=self.chunk_length,
                           lr=self.lr, adam_eps=self.adam_eps, grad_clip=self.grad_clip, seed=self.seed,
                           device=self.device, precision=self.precision, quantize_bits=self.quantize_bits,
                           channels_last=self.channels_last)


def planner_settings(config: OnlineConfig) -> dict[str, Any]:
    """candidates / elites / iterations under each planner's own names, plus `planner_overrides`.

    `iterations` means what each planner means by it: CEM's and MPPI's refits, iLQR's cap on
    backward passes (so `planner=ilqr` gets 6 passes, not iLQR's own default of 50, unless
    `planner.iterations` says otherwise)."""
    import planners

    default = planners.make(config.planner)  # unknown name: ValueError listing the valid ones
    names = {f.name for f in dataclasses.fields(default)}
    mapped = {"candidates": "samples" if "samples" in names else "candidates",
              "elites": "elites", "iterations": "iterations"}
    settings = {mapped[k]: getattr(config, k) for k in mapped if mapped[k] in names}
    settings.update(config.planner_overrides)
    planners.make(config.planner, **settings)  # unknown settings: ValueError listing valid ones
    return settings
