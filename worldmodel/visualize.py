"""`worldmodel visualize`: what a trained model learned, as pictures a person reads at a glance.

For a run and a set of held-out episodes it writes: the latent geometry coloured by the true
state with the R² of a linear and a k-NN map from latent to state (does the latent unfold the
state space?), an open-loop prediction strip (true frames over predicted ones after a few
context frames), the training curves, a video of true beside predicted frames, and, when the
run kept weight snapshots (TrainConfig.snapshots), the geometry over the course of training as
a GIF, one frame per snapshot, as in E2C's figures.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

import envs
from worldmodel.atomic import atomic_write_json

CONTEXT_FRAMES = 5  # frames the encoder filters before the open-loop prediction starts
PREDICTION_HORIZON = 25


def episode_tensors(episode: Any, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """An episode as model inputs: images [1, T+1, 3, H, W] in [-0.5, 0.5], actions [1, T+1, A].

    The final observation has no action after it; a zero action pads it (batch.py convention:
    actions[:, t] follows o_t, so the pad is never used to explain an observation).
    """
    images = torch.tensor(episode.images, device=device).permute(0, 3, 1, 2).float() / 255.0 - 0.5
    actions = torch.tensor(episode.actions, device=device)
    actions = torch.cat([actions, torch.zeros_like(actions[:1])], dim=0)
    return images.unsqueeze(0), actions.unsqueeze(0)


@torch.no_grad()
def filtered_episode(model: Any, episode: Any, device: str = "cpu") -> tuple[torch.Tensor, Any]:
    """The episode's padded actions [1, T+1, A] and its filtered posterior over all T+1 frames,
    following the means (sample=False) as MPC filters: deterministic, so results repeat exactly."""
    images, actions = episode_tensors(episode, device)
    return actions, model.observe(images, actions, sample=False)


@torch.no_grad()
def heldout_latents(model: Any, dataset: Any, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Filtered posterior means [N, S] of every held-out frame and the true states [N, D]: the
    latents control plans from (`filter_step`), and deterministic, so R² repeats exactly."""
    latents, states = [], []
    for i in range(len(dataset)):
        episode = dataset[i]
        _, post = filtered_episode(model, episode, device)
        latents.append(post.vector(use_mean=True)[0].float().cpu().numpy())
        states.append(episode.states)
    return np.concatenate(latents), np.concatenate(states)


@torch.no_grad()
def open_loop_frames(model: Any, episode: Any, *, context: int = CONTEXT_FRAMES,
                     horizon: int = PREDICTION_HORIZON, device: str = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """True frames and the model's frames [context + horizon, H, W, 3] uint8, open loop after `context`."""
    from worldmodel.control import tensor_to_image

    horizon = min(horizon, episode.length + 1 - context)
    images, actions = episode_tensors(episode, device)
    post = model.observe(images[:, :context], actions[:, :context])
    # actions[:, context-1] leads from the last context frame to the first predicted one.
    prior = model.imagine(post.last(), actions[:, context - 1:context - 1 + horizon])
    recon = torch.cat([model.decode(post), model.decode(prior)], dim=1)[0]  # [context+horizon, 3, H, W]
    true = episode.images[: context + horizon]
    return true, np.stack([tensor_to_image(x) for x in recon])


def angle_colours(task: str, states: np.ndarray) -> dict[str, np.ndarray]:
    """Named colourings of the held-out points: the pole angle and its velocity where there is a pole."""
    family = envs.spec(task).domain
    if family == "pendulum":
        return {"angle": _wrap(states[:, 0]), "angular velocity": states[:, 1]}
    if family == "cartpole":
        return {"pole angle": _wrap(states[:, 1]), "cart position": states[:, 0],
                "pole angular velocity": states[:, 3]}
    return {f"state[{i}]": states[:, i] for i in range(min(states.shape[1], 3))}


def _wrap(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2 * np.pi) - np.pi


def geometry_snapshots(run_dir: str | Path, heldout: Any, task: str, device: str = "cpu"
                       ) -> list[tuple[int, np.ndarray, dict[str, np.ndarray], dict[str, float]]]:
    """(step, held-out latents, angle colours, R²) for each weight snapshot the run kept."""
    from worldmodel.checkpoint import load_snapshots

    found, episodes = [], heldout_episode_ids(heldout)  # the same frames for every snapshot
    for step, model in load_snapshots(run_dir, device):
        latents, states = heldout_latents(model, heldout, device)
        found.append((step, latents, angle_colours(task, states), state_r2(task, latents, states, episodes)))
    return found


def heldout_episode_ids(dataset: Any) -> np.ndarray:
    """The episode index [N] of every frame `heldout_latents` returns, in the same order."""
    return np.repeat(np.arange(len(dataset)), [dataset[i].length + 1 for i in range(len(dataset))])


def state_r2_by_target(task: str, latents: np.ndarray, states: np.ndarray,
                       episodes: np.ndarray | None = None) -> dict[str, dict[str, float | None]]:
    """Held-out R² of each state target ({"linear": {"x": ..., "cos θ": ...}, "knn": {...}}); None
    for a target that is constant on the held-out frames. Which parts of the state the latent
    carries: a mean can hide one that it misses (the side a pole leans to, say).

    episodes [N]: each frame's episode; with two or more, the read-out is fitted on some whole
    episodes and scored on the others. Without them (or with one episode) the split is by frame,
    which flatters k-NN: a frame's neighbours in time are in the fitted part."""
    from worldmodel.geometry import latent_r2_per_target, state_targets, target_names

    groups = episodes if episodes is not None and len(np.unique(episodes)) >= 2 else None
    targets, names = state_targets(task, states), target_names(task)
    out = {}
    for method in ("linear", "knn"):
        scores = latent_r2_per_target(latents, targets, method=method, groups=groups)
        out[method] = {n: (None if np.isnan(r) else float(r)) for n, r in zip(names, scores)}
    return out


def state_r2(task: str, latents: np.ndarray, states: np.ndarray,
             episodes: np.ndarray | None = None) -> dict[str, float]:
    """Mean R² over the task's state targets of a linear and a k-NN map from the latents."""
    return mean_r2(state_r2_by_target(task, latents, states, episodes))


def mean_r2(by_target: dict[str, dict[str, float | None]]) -> dict[str, float]:
    """{"linear": mean, "knn": mean} of `state_r2_by_target`'s scores, constant targets left out."""
    out = {}
    for method, scores in by_target.items():
        defined = [r for r in scores.values() if r is not None]
        if not defined:
            raise ValueError("every target column is constant on the held-out samples; R² undefined")
        out[method] = float(np.mean(defined))
    return out


def format_r2_by_target(by_target: dict[str, dict[str, float | None]]) -> str:
    """One line: each target's held-out R², linear / k-NN ("x 0.90 / 0.69, cos θ 0.52 / 0.50, ...")."""
    def show(r: float | None) -> str:
        return "n/a" if r is None else f"{r:.2f}"

    linear, knn = by_target["linear"], by_target["knn"]
    return ", ".join(f"{name} {show(linear[name])} / {show(knn[name])}" for name in linear)


def render_run_pictures(model: Any, run_dir: str | Path, heldout: Any, out: str | Path, *,
                        task: str, device: str = "cpu") -> dict[str, Any]:
    """Write the geometry, prediction, curve and video files into `out`; returns R² and paths."""
    from worldmodel import viz

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    latents, states = heldout_latents(model, heldout, device)
    by_target = state_r2_by_target(task, latents, states, heldout_episode_ids(heldout))  # whole episodes out
    r2 = mean_r2(by_target)
    written = {"geometry": viz.plot_latent_geometry(latents, angle_colours(task, states),
                                                    out / "latent_geometry.png",
                                                    title=f"{task}: held-out latents", r2=r2)}
    true, predicted = open_loop_frames(model, heldout[0], device=device)
    written["prediction"] = viz.plot_prediction_strip(true, predicted, out / "open_loop_prediction.png",
                                                      context=CONTEXT_FRAMES)
    written["video"] = viz.write_video(viz.side_by_side(true, predicted), out / "open_loop_prediction.mp4", fps=10)
    snapshots = geometry_snapshots(run_dir, heldout, task, device)
    if snapshots:
        frames, r2s = [(step, z, colours) for step, z, colours, _ in snapshots], [r for *_, r in snapshots]
        written["geometry_over_training"] = viz.geometry_over_training_gif(
            frames, out / "latent_geometry_over_training.gif", r2=r2s)
    metrics = Path(run_dir) / "metrics.jsonl"
    if metrics.exists():
        written["curves"] = viz.plot_training_curves(metrics, out / "training_curves.png")
    return {"latent_r2": r2["linear"], "latent_r2_knn": r2["knn"], "latent_r2_by_target": by_target,
            "files": {k: str(v) for k, v in written.items() if v is not None}}


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("visualize", help="latent geometry, open-loop predictions, curves and video of a run")
    p.add_argument("--run", required=True, help="run folder written by `worldmodel train`")
    p.add_argument("--heldout", default=None,
                   help="dataset folder of held-out episodes (default: collect 3 new random ones)")
    p.add_argument("--out", default=None, help="where the pictures go (default: <run>/pictures)")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    from worldmodel.checkpoint import load_model
    from worldmodel.data import EpisodeDataset
    from worldmodel.evaluate import run_task

    run = Path(args.run)
    task = run_task(run)
    model, _, _ = load_model(run, device=args.device)
    out = Path(args.out) if args.out else run / "pictures"
    if args.heldout:
        heldout = EpisodeDataset(args.heldout)
    else:
        from worldmodel.collect import top_up

        heldout = top_up(task["task"], 3, out / "heldout", seed=12345, image_size=task["image_size"],
                         action_repeat=task["action_repeat"], camera=task["camera"])
    result = render_run_pictures(model, run, heldout, out, task=task["task"], device=args.device)
    print(f"latent R² on held-out episodes: linear {result['latent_r2']:.3f}, k-NN {result['latent_r2_knn']:.3f}")
    print(f"  by target (linear / k-NN): {format_r2_by_target(result['latent_r2_by_target'])}")
    for name, path in result["files"].items():
        print(f"  {name:<10} {path}")
    atomic_write_json(out / "summary.json", result)
    return 0
