"""Why does the demo's latent miss the side the pole leans to? One lever at a time, same data.

    python benchmarks/demo_latent_levers.py --variants default ep16 --seeds 0 1 2 3 4

`worldmodel demo` (cart-pole balance, 32 px, a `small` RSSM, 3000 updates on 80 random episodes of
32 steps) learns a latent that reads the cart's position (R² 0.90) and how far the pole leans
(|sin θ| 0.48) but not to which side (sin θ −0.13), and its MPC beats random actions by only
1.1–1.5x. This trains the demo's model on the demo's data (collected once per seed and setting)
with one thing changed: a model setting (free nats, KL balance), the demo's (image likelihood,
frame size, updates, episode length), the optimiser's, or, for the ROUNDS variants, rounds of the
model's own noisy MPC episodes and more updates after the training (PlaNet's data loop in
miniature). Per variant it reports the held-out R² target by target (always on the same 24
episodes of 32 steps), the final KL, and learned-model MPC against random actions (the demo's
CEM and episodes; no oracle). Rows go to RESULTS/demo_latent_levers.json as each finishes; the
findings are in docs/demo_results.md.
"""
from __future__ import annotations

import argparse
import sys
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

# The demo's data and batches on 29 November, which every variant starts from, fixed here so that the rows
# stay comparable if the demo's defaults change (the held-out set is always this one's: 24 episodes of
# 32 steps, so that every R² is on the same frames)
BEFORE = dict(train_episodes=80, episode_steps=32, chunk_length=32, batch_size=16, heldout_episodes=24)
# each variant: ModelConfig overrides, DemoConfig overrides, TrainConfig overrides
VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}, {}),
    "free1": ({"free_nats": 1.0}, {}, {}),
    "free0": ({"free_nats": 0.0}, {}, {}),
    "std03": ({}, {"obs_std": 0.3}, {}),
    "std01": ({}, {"obs_std": 0.1}, {}),
    "balance": ({"kl_balance": 0.8, "free_nats": 1.0}, {}, {}),
    "steps6000": ({}, {"train_steps": 6000}, {}),
    "lr3e-3": ({}, {}, {"lr": 3e-3}),
    "px48": ({}, {"image_size": 48}, {}),
    "px64": ({}, {"image_size": 64}, {}),
    # the same 2560 frames as shorter episodes: more of them near upright, where balancing happens
    "ep16": ({}, {"train_episodes": 160, "episode_steps": 16, "chunk_length": 16, "batch_size": 32}, {}),
    "ep8": ({}, {"train_episodes": 320, "episode_steps": 8, "chunk_length": 8, "batch_size": 64}, {}),
}
# PlaNet's answer in miniature: after a variant's training, rounds of (episodes collected by the model's
# own noisy MPC, then more updates on all the data). Name -> (the variant it continues, rounds).
ROUNDS: dict[str, tuple[str, list[tuple[int, int]]]] = {
    "mpc40": ("default", [(40, 1500)]),
    "mpc20x2": ("default", [(20, 750), (20, 750)]),
    "ep16_mpc80": ("ep16", [(80, 1500)]),  # the same 1280 frames as mpc40's round
}
for _name, (_base, _) in ROUNDS.items():
    VARIANTS[_name] = VARIANTS[_base]


def run_variant(name: str, seed: int, work: Path, threads: int) -> dict[str, Any]:
    """Train the demo's model with variant `name` at `seed`; R² by target, KL and MPC returns."""
    import torch

    from worldmodel import ModelConfig
    from worldmodel.checkpoint import load_model
    from worldmodel.collect import top_up
    from worldmodel.control import EvalConfig
    from worldmodel.demo import DemoConfig
    from worldmodel.evaluate import evaluate_model
    from worldmodel.metrics_log import read_metrics
    from worldmodel.train import TrainConfig, train
    from worldmodel.visualize import heldout_episode_ids, heldout_latents, mean_r2, state_r2_by_target

    torch.set_num_threads(threads)
    model_overrides, demo_overrides, train_overrides = VARIANTS[name]
    cfg = replace(DemoConfig(), seed=seed, **{**BEFORE, **demo_overrides})
    before = (cfg.train_episodes, cfg.episode_steps) == (BEFORE["train_episodes"], BEFORE["episode_steps"])
    shape = "" if before else f"-{cfg.train_episodes}x{cfg.episode_steps}"
    data_dir = work / f"data-s{seed}-{cfg.image_size}px{shape}"  # shared by the variants that draw alike
    data = top_up(cfg.task, cfg.train_episodes, data_dir / "train", seed=seed, workers=1,
                  image_size=cfg.image_size, episode_steps=cfg.episode_steps, progress=False)
    # one held-out set per seed and image size, so every variant's R² is on the same frames
    heldout = top_up(cfg.task, BEFORE["heldout_episodes"], work / f"data-s{seed}-{cfg.image_size}px" / "heldout",
                     seed=seed + 10_000, image_size=cfg.image_size, episode_steps=BEFORE["episode_steps"],
                     progress=False)
    model_config = ModelConfig.small(transition=cfg.transition, obs_std=cfg.obs_std,
                                     obs_shape=(3, cfg.image_size, cfg.image_size),
                                     action_dim=data.manifest["action_dim"], **model_overrides)
    train_config = TrainConfig(steps=cfg.train_steps, batch_size=cfg.batch_size,
                               chunk_length=cfg.chunk_length, seed=seed, device="cpu",
                               checkpoint_every=max(cfg.train_steps // 4, 1), **train_overrides)
    run_dir = work / f"{name}-s{seed}"
    train_dir = data_dir / "train"
    if name in ROUNDS:  # its own copy of the data, which its rounds extend
        import shutil

        if not (work / f"{name}-s{seed}-data").exists():
            shutil.copytree(train_dir, work / f"{name}-s{seed}-data")
        train_dir = work / f"{name}-s{seed}-data"
        reuse_base_run(work / f"{ROUNDS[name][0]}-s{seed}", run_dir, train_dir, cfg.train_steps, threads)
    t0 = time.time()
    train(model_config, train_config, train_dir, run_dir,
          resume=(run_dir / "checkpoint.pt").exists(), progress=False)
    updates = cfg.train_steps
    for episodes, more in ROUNDS[name][1] if name in ROUNDS else []:
        updates += more
        if read_metrics(run_dir / "metrics.jsonl")[-1]["step"] >= updates:
            continue  # a rerun: this round is done
        model, _, _ = load_model(run_dir, device="cpu")
        add_mpc_episodes(model, cfg, train_dir, episodes, seed)
        with warnings.catch_warnings():  # "the checkpoint was trained on fewer episodes": meant
            warnings.simplefilter("ignore")
            train(model_config, replace(train_config, steps=updates), train_dir, run_dir, resume=True,
                  progress=False)
    train_s = time.time() - t0
    model, _, _ = load_model(run_dir, device="cpu")
    last = read_metrics(run_dir / "metrics.jsonl")[-1]

    latents, states = heldout_latents(model, heldout)
    by_target = state_r2_by_target(cfg.task, latents, states, heldout_episode_ids(heldout))
    eval_config = EvalConfig(planner=cfg.planner, horizon=cfg.horizon,
                             planner_overrides={"candidates": cfg.candidates,
                                                "elites": max(cfg.candidates // 10, 1),
                                                "iterations": cfg.iterations},
                             episodes=cfg.eval_episodes, oracle_episodes=0,
                             random_episodes=cfg.random_episodes, seed=seed)
    with torch.no_grad():
        result = evaluate_model(model, cfg.task, eval_config, image_size=cfg.image_size,
                                action_repeat=data.manifest["action_repeat"], progress=False)
    return {
        "variant": name, "seed": seed, "model_overrides": model_overrides, "demo_overrides": demo_overrides,
        "train_overrides": train_overrides,
        "learned_return": result["return_mean"], "learned_return_stderr": result["return_stderr"],
        "returns": result["returns"],
        "random_return": result["random"]["return_mean"] if result["random"] else None,
        "latent_r2": mean_r2(by_target), "latent_r2_by_target": by_target,
        "kl": last.get("kl"), "recon_nll": last.get("recon_nll"),
        # this call's training: a base run reused by a rounds variant is not counted again
        "train_seconds": train_s, "threads": threads, "rounds": ROUNDS.get(name),
    }


def reuse_base_run(base_dir: Path, run_dir: Path, data_dir: Path, updates: int, threads: int) -> None:
    """Start a rounds variant from its base variant's run when that one finished its `updates` on
    as many torch threads: its first phase is the same training (same data and seed, so the same
    weights). The base folder itself says both, in metrics.jsonl and config.json."""
    import shutil

    from worldmodel import checkpoint as ckpt
    from worldmodel.metrics_log import read_metrics

    if run_dir.exists() or not (base_dir / ckpt.CHECKPOINT_FILE).exists():
        return
    finished = read_metrics(base_dir / "metrics.jsonl")[-1]["step"] >= updates
    if not finished or ckpt.read_run_config(base_dir)["machine"]["torch_threads"] != threads:
        return
    shutil.copytree(base_dir, run_dir)
    stored = ckpt.read_run_config(run_dir)
    ckpt.write_run_config(run_dir, {**stored, **ckpt.data_record(run_dir, data_dir)})


def add_mpc_episodes(model: Any, cfg: Any, data_dir: Path, episodes: int, seed: int) -> None:
    """Append `episodes` episodes of the model's CEM MPC with N(0, 0.3²) action noise (PlaNet's
    exploration), each as long as the demo's, from the task's random start."""
    import torch

    import envs
    import planners
    from worldmodel.collect import collect
    from worldmodel.control import LatentMPCAgent
    from worldmodel.online_episodes import NoisyMPCPolicy

    env = envs.make(cfg.task, image_size=cfg.image_size)
    space = env.action_space
    env.close()
    model.eval()
    for k in range(episodes):
        planner = planners.make(cfg.planner, candidates=cfg.candidates, elites=max(cfg.candidates // 10, 1),
                                iterations=cfg.iterations)
        agent = LatentMPCAgent(model, planner, cfg.horizon, seed=seed * 1000 + k, device="cpu")
        policy = NoisyMPCPolicy(agent, 0.3, space.low, space.high)  # a fresh one per episode
        with torch.no_grad():
            collect(cfg.task, 1, data_dir, policy=policy, seed=seed, image_size=cfg.image_size,
                    episode_steps=cfg.episode_steps, progress=False)


def main() -> None:
    from worldmodel.atomic import atomic_write_json

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variants", nargs="+", default=["default", "ep16"], choices=sorted(VARIANTS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--work", default=str(ROOT / "runs" / "demo_latent_levers"),
                   help="data and run folders (reused: a rerun skips what is done)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "demo_latent_levers.json"))
    args = p.parse_args()

    results_path = Path(args.results)
    import json

    rows = json.loads(results_path.read_text()) if results_path.exists() else []
    for seed in args.seeds:
        for name in args.variants:
            row = run_variant(name, seed, Path(args.work), args.threads)
            rows = [r for r in rows if (r["variant"], r["seed"]) != (name, seed)] + [row]
            atomic_write_json(results_path, rows)
            r2 = row["latent_r2_by_target"]["linear"]
            print(f"{name:>10} s{seed}  MPC {row['learned_return']:6.1f} ± {row['learned_return_stderr']:4.1f}"
                  f"  random {row['random_return']:6.1f}  KL {row['kl']:5.2f}  R² "
                  + " ".join(f"{k} {v:+.2f}" for k, v in r2.items() if v is not None)
                  + f"  train {row['train_seconds']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
