"""Training a world model: seeded Adam on chunks of episodes, with resumable run folders.

One update (notation of worldmodel.data.batch: B chunks of L steps):
    batch ~ sampler                          images [B, L, C, H, W], actions [B, L, A], rewards [B, L]
    terms = model.loss(batch)                {"loss": scalar to minimise, "elbo": ..., "kl": ...}
    g = ∇ terms["loss"]; g ← g · min(1, c / ‖g‖)          (global norm clipping at c = grad_clip)
    θ ← Adam(θ, g; lr, eps)
Every term is checked for NaN/inf before the parameters change, so a diverged run stops with the
last good checkpoint intact. frames/s = B × L × processes / seconds per update.

Reproducibility: the model is initialised from torch seed `seed`; the model's sampling noise and
the chunk sampler draw from per-process streams (`distributed.rank_seeds`). All of it lives in
the checkpoint, so `resume=True` continues bit for bit on the same machine. The global torch RNG
is used inside `torch.random.fork_rng`, so the caller's RNG state is untouched.
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worldmodel import checkpoint as ckpt
from worldmodel import distributed as dist
from worldmodel.config import DictConfig
from worldmodel.device import DEVICES, autocast, check_precision, resolve_device
from worldmodel.provenance import machine, versions
from worldmodel.stop_signal import StopSignal


@dataclass(frozen=True)
class TrainConfig(DictConfig):
    """Settings of one training run. Defaults follow PlaNet (Hafner et al. 2019, Appendix A)."""

    steps: int = 20_000  # total updates of the run (resume=True may raise it to train longer)
    batch_size: int = 50  # B chunks per update and process; PlaNet
    chunk_length: int = 50  # L steps per chunk; PlaNet
    lr: float = 1e-3  # Adam learning rate; PlaNet
    adam_eps: float = 1e-4  # Adam epsilon; PlaNet
    grad_clip: float = 1000.0  # max global gradient norm; PlaNet
    seed: int = 0
    checkpoint_every: int = 1000  # updates between checkpoints (one is also written at exit)
    log_every: int = 100  # updates per metrics.jsonl record (terms averaged over them)
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: str = "float32"  # float32 | bfloat16 (autocast of the forward pass)
    quantize_bits: int | None = 5  # image bit depth with dequantisation noise; PlaNet (None = 8 bit)
    channels_last: bool = False  # conv weights in NHWC layout (a GPU speed knob; same maths)
    # torch.compile the image encoder and decoder (fuses the element-wise work around the convs;
    # 1.14x on the planet preset in bf16 + channels_last, 1 CPU thread, the same losses; the first
    # update then takes a minute or two to compile). Same parameters, same checkpoints.
    compile_networks: bool = False
    snapshots: bool = False  # also keep the model weights of every checkpoint (snapshots/)

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "chunk_length", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if int(self.chunk_length) < 2:
            raise ValueError(f"TrainConfig.chunk_length must be >= 2: a chunk of L observations holds L - 1 "
                             f"transitions, so {self.chunk_length} teaches no dynamics and no reward")
        if not self.lr > 0 or not self.adam_eps > 0 or not self.grad_clip > 0:
            raise ValueError(f"lr, adam_eps and grad_clip must be > 0, got {self.lr}, {self.adam_eps}, "
                             f"{self.grad_clip}")
        check_precision(self.precision)
        if str(self.device).split(":")[0] not in DEVICES:
            raise ValueError(f"TrainConfig.device must be one of {DEVICES} or 'cuda:N', got {self.device!r}")

    @classmethod
    def planet(cls, **overrides: Any) -> "TrainConfig":
        """PlaNet's optimisation (Hafner et al. 2019): B = L = 50, Adam 1e-3 / eps 1e-4, clip 1000."""
        return cls(**overrides)

    @classmethod
    def small(cls, **overrides: Any) -> "TrainConfig":
        """Short chunks and small batches that a 2-core CPU trains in minutes."""
        base = dict(steps=2000, batch_size=16, chunk_length=32, checkpoint_every=500, log_every=50)
        return cls(**{**base, **overrides})


# Settings that may differ when a run is resumed: they change how long or where it runs, not
# what it computes.
RESUMABLE_CHANGES = ("steps", "checkpoint_every", "log_every", "device", "snapshots",
                     "compile_networks")


class NonFiniteLossError(FloatingPointError):
    """A loss term or the gradient norm became NaN/inf; the parameters were not updated."""


class _LossModule(torch.nn.Module):
    """`model.loss` as a forward pass, so DistributedDataParallel sees (and syncs) the call."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: Any, generator: torch.Generator) -> dict[str, torch.Tensor]:
        return self.model.loss(batch, generator=generator)


def _divergence_message(step: int, name: str, value: float, terms: dict[str, float]) -> str:
    """What diverged at `step`, and which setting to try. A finite loss can still give an infinite
    gradient: then the largest loss term is named, the likely source."""
    culprit, detail = name, ""
    if name == "grad_norm":
        finite = {k: v for k, v in terms.items()
                  if k not in ("loss", "elbo", "grad_norm") and abs(v) < float("inf")}
        if finite:
            culprit = max(finite, key=lambda k: abs(finite[k]))
            detail = f" (the largest loss term: {culprit} = {finite[culprit]:.3g})"
    hint = ("a smaller overshooting_distance or overshooting_kl_cap (open-loop rollouts of that many steps "
            "ran away), a lower lr or grad_clip" if culprit.startswith("overshooting")
            else "a lower lr or grad_clip")
    return (f"training diverged at step {step}: {name} = {value}{detail}; the parameters were not updated "
            f"and the last checkpoint (step <= {step - 1}) is intact. Try {hint}.")


class Trainer:
    """Model, optimiser and sampler of one process, and the update step.

    Construct inside `torch.random.fork_rng` (as `train` does): it seeds the global torch RNG.
    """

    def __init__(self, model_config: Any, config: TrainConfig, data_path: str | Path, *,
                 info: dist.DistInfo = dist.DistInfo()):
        from worldmodel import WorldModel
        from worldmodel.data import ChunkSampler, EpisodeDataset

        self.config, self.model_config, self.info = config, model_config, info
        self.device = resolve_device(config.device, local_rank=info.local_rank)
        self.dataset = EpisodeDataset(data_path)
        _check_data_fits_model(self.dataset, model_config, data_path)
        torch_seed, sampler_seed = dist.rank_seeds(config.seed, info.rank)
        torch.manual_seed(config.seed)  # the same initial parameters on every process
        self.model = WorldModel(model_config).to(self.device)
        if config.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if config.compile_networks:  # in place: the state_dict keys stay those of the eager model
            self.model.encoder.compile()
            self.model.decoder.compile()
        # The model's sampling noise ε comes from this process's own generator (checkpointed).
        self.noise = torch.Generator(device=self.device).manual_seed(torch_seed)
        torch.manual_seed(torch_seed)  # and the global one, for any module that draws from it
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, eps=config.adam_eps)
        self.sampler = ChunkSampler(self.dataset, config.batch_size, config.chunk_length, seed=sampler_seed,
                                    quantize_bits=config.quantize_bits, device=self.device)
        self.forward: torch.nn.Module = _LossModule(self.model)
        if info.distributed:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.forward, device_ids=ids)
        self.step = 0
        self.frames_per_update = config.batch_size * config.chunk_length * info.world_size

    def train_step(self, stop_requested: bool = False) -> tuple[dict[str, float], bool]:
        """One update. Returns (terms averaged over processes incl. grad_norm, whether any process
        asked to stop). Raises NonFiniteLossError before touching the parameters."""
        batch = self.sampler.sample()
        self.model.train()
        with autocast(self.device, self.config.precision):
            terms = self.forward(batch, self.noise)
        if "loss" not in terms:
            raise KeyError(f"model.loss(batch) must return a dict with key 'loss'; got keys {sorted(terms)}")
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        names = [*terms, "grad_norm"]
        values = torch.stack([_scalar(name, terms[name]) for name in terms] + [grad_norm.detach().float(),
                              torch.tensor(float(stop_requested), device=grad_norm.device)])
        values = dist.all_reduce_sum(values, self.info)  # one collective: every process decides alike
        values = values.tolist()  # the one host sync per update
        stop = values.pop() > 0
        result = {name: v / self.info.world_size for name, v in zip(names, values)}
        for name, v in result.items():
            if v != v or v in (float("inf"), float("-inf")):
                raise NonFiniteLossError(_divergence_message(self.step + 1, name, v, result))
        self.optimizer.step()
        self.step += 1
        return result, stop

    def state(self) -> dict[str, Any]:
        """This process's RNG streams (checkpointed per rank)."""
        return {**ckpt.rng_state(self.device), "noise": self.noise.get_state(),
                "sampler": self.sampler.state_dict()}

    def load_state(self, checkpoint: dict[str, Any]) -> None:
        """Restore parameters, optimiser, step and this process's RNG streams."""
        if int(checkpoint["world_size"]) != self.info.world_size:
            raise ckpt.CheckpointError(
                f"the checkpoint was written by {checkpoint['world_size']} processes but this run has "
                f"{self.info.world_size}; resume with the same torchrun --nproc_per_node (each process "
                "continues its own random streams)")
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.step = int(checkpoint["step"])
        mine = checkpoint["ranks"][self.info.rank]
        ckpt.set_rng_state(mine, self.device)
        exact = ckpt.restore_generator(self.noise, mine["noise"])
        exact = self.sampler.load_state_dict(mine["sampler"]) and exact
        if not exact:
            warnings.warn(f"the checkpoint's random streams were saved on another kind of device "
                          f"than {self.device}; training continues reproducibly from there, but "
                          "not bit for bit as an uninterrupted run would", stacklevel=2)


def _scalar(name: str, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.numel() != 1:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"model.loss term {name!r} must be a scalar tensor, got {shape}")
    return x.detach().float().reshape(())


def _check_data_fits_model(dataset: Any, model_config: Any, data_path: str | Path) -> None:
    m = dataset.manifest
    if int(m["action_dim"]) != int(model_config.action_dim):
        raise ValueError(f"the data at {data_path} has action_dim {m['action_dim']} but the model config "
                         f"has action_dim {model_config.action_dim}; build the ModelConfig with "
                         f"action_dim={m['action_dim']}")
    size = m["image_size"]
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if tuple(model_config.obs_shape[1:]) != hw:
        raise ValueError(f"the data at {data_path} has {hw[0]}x{hw[1]} images but the model config has "
                         f"obs_shape {tuple(model_config.obs_shape)}; use obs_shape=(3, {hw[0]}, {hw[1]})")


def _settle_run(model_config: Any, config: TrainConfig | None, data_path: str | Path | None,
                out_dir: Path, resume: bool) -> tuple[Any, TrainConfig, Path, dict[str, Any]]:
    """The run's (model config, train config, data path, config.json), checking that a resume
    agrees with the folder and that a fresh run does not overwrite one."""
    from worldmodel import ModelConfig

    have_ckpt = (out_dir / ckpt.CHECKPOINT_FILE).is_file()
    if not resume:
        if have_ckpt:
            raise FileExistsError(f"{out_dir} already holds a training run ({ckpt.CHECKPOINT_FILE}); "
                                  "continue it with resume=True (--resume) or choose another --out")
        if model_config is None or config is None or data_path is None:
            raise ValueError("a new run needs model_config, train_config and data_path "
                             "(only resume=True reads them from the run folder)")
        return model_config, config, Path(data_path), {}
    if not have_ckpt or not (out_dir / ckpt.CONFIG_FILE).is_file():
        raise ckpt.CheckpointError(f"cannot resume: {out_dir} holds no run (needs {ckpt.CONFIG_FILE} and "
                                   f"{ckpt.CHECKPOINT_FILE}); start one without --resume")
    stored = ckpt.read_run_config(out_dir)
    if model_config is not None:  # the stored settings filled with today's defaults, as below
        ckpt.check_resume_agrees(type(model_config).from_dict(stored["model"]).to_dict(),
                                 model_config.to_dict(), "model")
    if config is not None:
        # filled with today's defaults: a setting added since the run started is not a conflict
        ckpt.check_resume_agrees(TrainConfig.from_dict(stored["train"]).to_dict(), config.to_dict(),
                                 "train", RESUMABLE_CHANGES)
    stored_data = ckpt.run_data_path(out_dir, stored)
    if data_path is not None and Path(data_path).resolve() != stored_data:
        ckpt.check_resume_agrees({"data": str(stored_data)}, {"data": str(Path(data_path).resolve())}, "run")
    return (ModelConfig.from_dict(stored["model"]), config or TrainConfig.from_dict(stored["train"]),
            stored_data, stored)


def train(model_config: Any, train_config: TrainConfig | None, data_path: str | Path | None,
          out_dir: str | Path, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train (or, with resume=True, continue) a run in `out_dir`; returns the last metrics record.

    Writes out_dir/config.json, checkpoint.pt (every `checkpoint_every` updates and at exit,
    Ctrl-C included) and metrics.jsonl. Under `torchrun --nproc_per_node=K` the same call trains
    with DistributedDataParallel (see worldmodel.distributed). On resume, model_config,
    train_config and data_path may be None (taken from the folder); given ones must agree with
    it except for `RESUMABLE_CHANGES`.
    """
    out_dir = Path(out_dir)
    info = dist.from_environment()
    model_config, config, data_path, run_config = _settle_run(model_config, train_config, data_path,
                                                              out_dir, resume)
    device = resolve_device(config.device, local_rank=info.local_rank)
    created = dist.init_process_group(info, device)
    try:
        cuda = [device.index or 0] if device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda, device_type="cuda"):
            result = _train(model_config, config, data_path, out_dir, run_config, info, progress, resume)
        if created:
            # Leave together, so that no rank tears gloo down while another still talks to it
            # (one rank aborted at exit once in a loaded CI run; not reproduced since).
            dist.barrier(info)
        return result
    finally:
        if created:
            dist.destroy_process_group()


def _train(model_config: Any, config: TrainConfig, data_path: Path, out_dir: Path,
           run_config: dict[str, Any], info: dist.DistInfo, progress: bool, resume: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from worldmodel.metrics_log import MetricsLog, MetricsWindow, read_metrics

    trainer = Trainer(model_config, config, data_path, info=info)
    window, wall_before = MetricsWindow(), 0.0
    if resume:
        state = ckpt.load_checkpoint(out_dir / ckpt.CHECKPOINT_FILE, map_location=trainer.device)
        trainer.load_state(state)
        window, wall_before = MetricsWindow(state["log_window"]), float(state["wall_time"])
        saved_with = state.get("dataset_episodes")  # None: a checkpoint from before it was kept
        if saved_with is not None and saved_with != len(trainer.dataset) and info.is_main:
            warnings.warn(f"{data_path} holds {len(trainer.dataset)} episodes, the checkpoint was trained on "
                          f"{saved_with}: training continues on all of them, so it no longer repeats an "
                          f"uninterrupted run on the first {saved_with}", stacklevel=2)
    if info.is_main:
        now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        run_config = {**run_config, "model": model_config.to_dict(), "train": config.to_dict(),
                      **ckpt.data_record(out_dir, data_path), "data_manifest": trainer.dataset.manifest,
                      "world_size": info.world_size, "versions": versions(), "machine": machine()}
        run_config.setdefault("created", now)
        if resume and trainer.step < config.steps:  # a finished run read back is not a new sitting
            run_config["resumed"] = [*run_config.get("resumed", []), {"at": now, "step": trainer.step}]
        ckpt.write_run_config(out_dir, run_config)
    start = time.perf_counter()
    first_step = trainer.step
    saved_step = trainer.step if resume else -1

    def save() -> None:
        nonlocal saved_step
        ranks = dist.gather_objects(trainer.state(), info)  # collective: every process calls it
        if info.is_main:
            ckpt.save_checkpoint(out_dir / ckpt.CHECKPOINT_FILE, {
                "step": trainer.step, "model": trainer.model.state_dict(),
                "optimizer": trainer.optimizer.state_dict(), "model_config": model_config.to_dict(),
                "train_config": config.to_dict(), "world_size": info.world_size, "ranks": ranks,
                "log_window": window.state(), "wall_time": wall_before + time.perf_counter() - start,
                "dataset_episodes": len(trainer.dataset)})
            if config.snapshots:
                ckpt.save_snapshot(out_dir, trainer.step, trainer.model.state_dict(),
                                   model_config.to_dict())
        saved_step = trainer.step

    log = MetricsLog(out_dir, enabled=info.is_main, keep_until=trainer.step if resume else None)
    bar = tqdm(total=config.steps, initial=trainer.step, disable=not (progress and info.is_main),
               unit="step", dynamic_ncols=True)
    last: dict[str, Any] = {}
    stop = False
    try:
        with StopSignal() as signal_flag:
            while trainer.step < config.steps and not stop:
                t0 = time.perf_counter()
                terms, stop = trainer.train_step(signal_flag.requested)
                seconds = time.perf_counter() - t0
                window.add(terms, seconds)
                if trainer.step % config.log_every == 0:
                    last = window.record(trainer.step, trainer.frames_per_update,
                                         wall_before + time.perf_counter() - start)
                    log.write(last)
                    window = MetricsWindow()
                bar.update(1)
                bar.set_postfix(_postfix(terms, trainer.frames_per_update / seconds), refresh=False)
                if trainer.step % config.checkpoint_every == 0:
                    save()
            if window.count and trainer.step > first_step:  # log a partial window at exit (the
                # checkpoint keeps its sums, so a resumed run's next record is the full window)
                last = window.record(trainer.step, trainer.frames_per_update,
                                     wall_before + time.perf_counter() - start)
                log.write(last)
            if saved_step != trainer.step:
                save()
    finally:
        bar.close()
        log.close()
    if stop:
        raise KeyboardInterrupt(f"training interrupted after step {trainer.step}; checkpoint saved in "
                                f"{out_dir}; continue with resume=True (--resume)")
    if not last and (out_dir / "metrics.jsonl").exists():
        records = read_metrics(out_dir)
        last = records[-1] if records else {}
    return last or {"step": trainer.step}


def _postfix(terms: dict[str, float], fps: float) -> dict[str, str]:
    shown = {"fps": f"{fps:.0f}"}
    for name in ("loss", "recon_nll", "reward_nll", "kl"):
        if name in terms:
            shown[name] = f"{terms[name]:.3g}"
    return shown


__all__ = ["NonFiniteLossError", "RESUMABLE_CHANGES", "TrainConfig", "Trainer", "train"]
