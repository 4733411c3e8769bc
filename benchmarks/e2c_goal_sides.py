"""Is a trained E2C model's latent torn at the unstable top? The goal cost on each side of upright.

    python benchmarks/e2c_goal_sides.py runs/e2c_rgb_s0 runs/e2c_pc3fixed10_s0 ...

For each `worldmodel e2c` run folder: the protocol's goal latent (the upright image at rest), and
‖z − z_goal‖² of the pole held still at 6 angles on each side of upright inside the goal region,
each image encoded as the goal image is (`worldmodel.goal_cost.still_pose_goal_costs`). Printed
beside the run's balance score and latent R² (`goal_cost_by_side`):
  - the mean cost of each side and their ratio, and `across`, the ratio of the two poses nearest
    upright. Near 1: the latent is as smooth on both sides. Large: the two sides, which fall
    opposite ways, lie far apart, and a quadratic cost to the goal cannot guide the pole back from
    the far side.
  - `in/out`, the nearest poses' cost over the farthest's: 0.03 for a bowl quadratic in the angle,
    near 1 when the goal's latent sits apart from every pose beside it.
Writes `benchmarks/results/e2c_goal_sides.json` and prints a table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from worldmodel.atomic import atomic_write_json  # noqa: E402

DEFAULT_OUT = ROOT / "benchmarks" / "results" / "e2c_goal_sides.json"


def run_sides(folder: Path) -> dict[str, Any]:
    """The goal cost by side for one run folder, with the settings and score its result recorded."""
    import torch

    from worldmodel.checkpoint import load_model
    from worldmodel.control import goal_tolerance
    from worldmodel.e2c import make_env, protocol_goal, result_path, stored_run
    from worldmodel.goal_cost import goal_cost_by_side, still_pose_angles, still_pose_goal_costs

    try:
        config, result = stored_run(folder)
    except FileNotFoundError as e:
        raise SystemExit(str(e)) from None
    model, _, _ = load_model(folder / "run")
    model.eval()
    angles = still_pose_angles(goal_tolerance(config.task))
    env = make_env(config)
    try:
        with torch.no_grad():
            goal, _ = protocol_goal(model, env, config)
            sides = goal_cost_by_side(angles, still_pose_goal_costs(model, env, goal, angles))
    finally:
        env.close()
    return {"run": str(folder), "result": result_path(folder, result["start"]).name, "start": result["start"],
            "goal_time_percent_mean": result["goal_time_percent_mean"], "latent_r2": result["latent_r2"],
            "command": result.get("command"), **sides}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="`worldmodel e2c` run folders")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    rows = [run_sides(folder) for folder in args.runs]
    print(f"{'run':<34} {'score %':>8} {'R² lin/kNN':>12} {'left':>8} {'right':>8} {'ratio':>7} {'across':>7} {'in/out':>7}")
    for r in rows:
        ratio = "–" if r["ratio"] is None else f"{r['ratio']:.1f}"
        across = "–" if r["across_top"] is None else f"{r['across_top']:.1f}"
        bowl = "–" if r["inner_over_outer"] is None else f"{r['inner_over_outer']:.2f}"
        left = "–" if r["left"] is None else f"{r['left']:.1f}"
        right = "–" if r["right"] is None else f"{r['right']:.1f}"
        r2 = f"{r['latent_r2']['linear']:.2f}/{r['latent_r2']['knn']:.2f}"
        print(f"{Path(r['run']).name:<34} {r['goal_time_percent_mean']:>8.1f} {r2:>12} {left:>8} {right:>8} {ratio:>7} {across:>7} {bowl:>7}")
    atomic_write_json(args.out, {"benchmark": "e2c_goal_sides", "rows": rows})
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
