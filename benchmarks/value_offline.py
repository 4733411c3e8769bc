"""Fit a value head to a finished run's model and data, and write a run folder MPC can use it from.

    python benchmarks/value_offline.py --run runs/control/pendulum-swingup-cpu-s0 \
        --out runs/value/pendulum-swingup-s0 [--updates 3000] [--discount 0.99] [--lam 0.95]
    worldmodel evaluate --run runs/value/pendulum-swingup-s0 --planner cem ...

The question it answers before any online run: does a value beyond the horizon (worldmodel.value)
give MPC something to climb where the reward is sparse? The run's model is kept as it is (frozen);
every recorded episode is filtered once (posterior means, as MPC filters), and only the value head
is trained, by TD(λ) on chunks of those latents. The new folder holds the model with the head
(config.json points at the original data) and is for evaluation, not for resuming training.

Prints how the fitted value separates the states from which the data went on to collect reward
from those it did not, and writes the fit's numbers to OUT/value_fit.json.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from worldmodel.atomic import atomic_write_json  # noqa: E402


@torch.no_grad()
def filtered_features(model, dataset) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per episode: posterior-mean features [T+1, S] and rewards [T+1] (a 0 pads the last frame,
    which has no action after it; value_loss never uses the last step's reward)."""
    from worldmodel.visualize import filtered_episode

    out = []
    for i in range(len(dataset)):
        episode = dataset[i]
        _, post = filtered_episode(model, episode)
        rewards = torch.cat([torch.tensor(episode.rewards, dtype=torch.float32), torch.zeros(1)])
        out.append((post.vector(use_mean=True)[0], rewards))
    return out


def discounted_to_go(rewards: torch.Tensor, discount: float) -> np.ndarray:
    """Σ_k γ^k r_{t+k} to the end of the recorded episode, per step [T] (float64): the λ = 1
    return with nothing after the last step."""
    from worldmodel.value import lambda_returns

    r = rewards.to(torch.float64)[None]  # [1, T]
    return lambda_returns(r, torch.zeros(1, r.shape[1] + 1, dtype=torch.float64), discount, 1.0)[0].numpy()


def main() -> None:
    from worldmodel import WorldModel
    from worldmodel.checkpoint import (CHECKPOINT_FILE, data_record, load_checkpoint, load_model,
                                       read_run_config, run_data_path, save_checkpoint,
                                       write_run_config)
    from worldmodel.data import EpisodeDataset
    from worldmodel.value import state_value, value_loss

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished `worldmodel run` folder")
    p.add_argument("--out", type=Path, required=True, help="new run folder for the model with the head")
    p.add_argument("--updates", type=int, default=3000)
    p.add_argument("--batch", type=int, default=50, help="chunks per update")
    p.add_argument("--chunk", type=int, default=50, help="steps per chunk")
    p.add_argument("--discount", type=float, default=0.99)
    p.add_argument("--lam", type=float, default=0.95)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    if args.out.resolve() == args.run.resolve():
        raise SystemExit("--out must be a new folder, not the run itself")

    torch.manual_seed(args.seed)
    model, cfg, info = load_model(args.run)
    new_cfg = cfg.replace(value_head=True, discount=args.discount, value_lambda=args.lam)
    new = WorldModel(new_cfg)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not k.startswith("value_head.") for k in missing):
        raise SystemExit(f"the run's model does not match ({missing}, {unexpected})")
    new.eval()

    config = read_run_config(args.run)
    data_path = run_data_path(args.run, config)
    dataset = EpisodeDataset(data_path)
    episodes = filtered_features(new, dataset)
    lengths = [f.shape[0] for f, _ in episodes]
    if min(lengths) < args.chunk:
        raise SystemExit(f"--chunk {args.chunk} is longer than the shortest episode ({min(lengths)} frames)")

    head = new.value_head
    opt = torch.optim.Adam(head.parameters(), lr=args.lr)
    rng = np.random.default_rng(args.seed)
    losses = []
    for update in range(args.updates):
        picks = rng.integers(0, len(episodes), args.batch)
        feats, rews = [], []
        for i in picks:
            start = int(rng.integers(0, lengths[i] - args.chunk + 1))
            feats.append(episodes[i][0][start:start + args.chunk])
            rews.append(episodes[i][1][start:start + args.chunk])
        loss = value_loss(head, torch.stack(feats), torch.stack(rews), args.discount, args.lam)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if (update + 1) % 500 == 0:
            print(f"update {update + 1}: value loss {np.mean(losses[-500:]):.4g}", flush=True)

    # how the fit separates states the data went on to collect reward from (first half of each
    # episode, where the recorded tail is long enough for the discounted return to mean something)
    with torch.no_grad():
        values, to_go = [], []
        for (f, r), n in zip(episodes, lengths):
            half = (n - 1) // 2
            values.append(state_value(head, f[:half], args.discount).numpy())
            to_go.append(discounted_to_go(r[:-1], args.discount)[:half])
    values, to_go = np.concatenate(values), np.concatenate(to_go)
    rewarded = to_go > 0.5
    fit = {
        "run": str(args.run), "model_step": info["step"], "episodes": len(episodes),
        "updates": args.updates, "batch": args.batch, "chunk": args.chunk, "discount": args.discount,
        "lambda": args.lam, "lr": args.lr, "seed": args.seed,
        "final_loss": float(np.mean(losses[-100:])),
        "states_rewarded_later": int(rewarded.sum()), "states": int(len(values)),
        "value_mean_rewarded_later": float(values[rewarded].mean()) if rewarded.any() else None,
        "value_mean_others": float(values[~rewarded].mean()),
        "correlation_with_recorded_return": (float(np.corrcoef(values, to_go)[0, 1])
                                             if to_go.std() > 0 else None),
        "command": "python " + shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
    }

    args.out.mkdir(parents=True, exist_ok=True)
    state = load_checkpoint(Path(args.run) / CHECKPOINT_FILE)
    fresh_optimizer = torch.optim.Adam(new.parameters(), lr=args.lr).state_dict()  # not for resuming
    save_checkpoint(args.out / CHECKPOINT_FILE,
                    {**{k: v for k, v in state.items() if k != "online"}, "model": new.state_dict(), "model_config": new_cfg.to_dict(),
                     "optimizer": fresh_optimizer})
    derived = {k: v for k, v in config.items() if k not in ("online", "data", "data_relative")}
    write_run_config(args.out, {**derived, **data_record(args.out, data_path), "model": new_cfg.to_dict(),
                                "derived_from": str(args.run), "value_fit": fit})
    atomic_write_json(args.out / "value_fit.json", fit)
    print(f"value loss {fit['final_loss']:.4g}; V on states that led to reward "
          f"{fit['value_mean_rewarded_later']} ({fit['states_rewarded_later']} of {fit['states']}), "
          f"on the others {fit['value_mean_others']:.3f}; correlation with the recorded discounted "
          f"return {fit['correlation_with_recorded_return']}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
