"""Does the online loop's learning test hold beyond its own seed? Its settings, over many seeds.

    python benchmarks/online_test_seeds.py --variant test --seeds 0 1 2 3 4 5 6 7

`tests/test_online.py::test_online_run_learns_to_beat_its_random_seed_episodes` runs one seeded
online run on cart-pole balance and asserts that learning helped. One seed can pass by luck, so
this runs a variant of its settings at each seed (one torch thread, as the test does) and prints,
per seed, the gains the test's assertions are about:

    later-seed    mean return of the later MPC episodes (second half of exploration and the
                  final evaluation) minus that of the random seed episodes
    final-seed    the final noise-free evaluation minus the random seed episodes
    last4-first2  the last 4 exploration episodes minus the first 2 (planned on a barely
                  trained model)

Variants: `previous` is the test before 29 November (8 cycles, a 32-unit model); `test` is
today's (16 cycles, a 64-unit model); the others change one or two things of `previous`.
The rows go to RESULTS/online_test_seeds_<variant>.json, one per seed as it finishes.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

SMALL = dict(deter_size=32, stoch_size=8, hidden_size=32, cnn_depth=8, free_nats=1.0, kl_balance=0.8)
WIDE = dict(SMALL, deter_size=64, stoch_size=16, hidden_size=64, cnn_depth=16)
VALUE = dict(value_head=True, value_target="imagined")
PREVIOUS = dict(task="cartpole-balance", env_steps=13_000, seed_episodes=5, train_steps_per_episode=100,
                batch_size=16, chunk_length=10, lr=3e-3, candidates=100, elites=10, iterations=4,
                horizon=10, eval_every=100, final_eval_episodes=3, image_size=32, action_repeat=10,
                device="cpu", model_overrides=SMALL)
MORE_SEARCH = dict(candidates=300, elites=30, iterations=5, horizon=12)
VARIANTS: dict[str, dict[str, Any]] = {
    "previous": PREVIOUS,
    "test": dict(PREVIOUS, env_steps=21_000, model_overrides=WIDE),  # the test asserts it uses these
    "updates200": dict(PREVIOUS, train_steps_per_episode=200),
    "wide": dict(PREVIOUS, model_overrides=WIDE),
    "search300": dict(PREVIOUS, **MORE_SEARCH),
    "value": dict(PREVIOUS, model_overrides=dict(SMALL, **VALUE)),
    "wide_value": dict(PREVIOUS, model_overrides=dict(WIDE, **VALUE)),
    "seed10": dict(PREVIOUS, seed_episodes=10, env_steps=18_000),
    "chunk20": dict(PREVIOUS, chunk_length=20),
    "test_search300": dict(PREVIOUS, env_steps=21_000, model_overrides=WIDE, **MORE_SEARCH),
}


def one_seed(settings: dict[str, Any], seed: int) -> dict[str, Any]:
    """One online run at `seed`; its per-kind returns and the three gains (see the module doc)."""
    import numpy as np

    from worldmodel.metrics_log import read_metrics
    from worldmodel.online import OnlineConfig, run_online

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_online(OnlineConfig(**settings, seed=seed), Path(tmp) / "run", progress=False)
        records = read_metrics(Path(tmp) / "run")
    random_returns = [r["return"] for r in records if r["kind"] == "seed"]
    explore = [r["return"] for r in records if r["kind"] == "explore"]
    later = explore[len(explore) // 2:] + summary["returns"]
    base = float(np.mean(random_returns))
    return {"seed": seed, "seed_returns": random_returns, "explore_returns": explore,
            "final_returns": summary["returns"],
            "later_minus_seed": float(np.mean(later)) - base,
            "final_minus_seed": float(summary["return_mean"]) - base,
            "last4_minus_first2": float(np.mean(explore[-4:]) - np.mean(explore[:2])),
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS), default="test")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(8)))
    parser.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args(argv)

    import torch

    from worldmodel.atomic import atomic_write_json

    torch.set_num_threads(1)  # the test suite's setting (tests/train_fixtures.py)
    out = Path(args.results) / f"online_test_seeds_{args.variant}.json"
    rows: list[dict[str, Any]] = []
    print(f"{'seed':>4} {'later-seed':>10} {'final-seed':>10} {'last4-first2':>12} {'s':>5}")
    for seed in args.seeds:
        row = one_seed(VARIANTS[args.variant], seed)
        rows.append(row)
        print(f"{seed:>4} {row['later_minus_seed']:>10.1f} {row['final_minus_seed']:>10.1f} "
              f"{row['last4_minus_first2']:>12.1f} {row['seconds']:>5.0f}", flush=True)
        atomic_write_json(out, {"variant": args.variant, "settings": VARIANTS[args.variant],
                                "command": "python benchmarks/online_test_seeds.py --variant "
                                f"{args.variant} --seeds {' '.join(map(str, args.seeds))}", "rows": rows})
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
