"""The `worldmodel e2c` verb: its arguments and the run they start (worldmodel.e2c)."""
from __future__ import annotations

import argparse
import shlex
import sys

from worldmodel.e2c import E2CConfig, run_e2c


def add_arguments(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("e2c", help="E2C-style: locally-linear latent, goal image, iLQR MPC (PCC/PC3 protocol)")
    p.add_argument("--task", default=E2CConfig.task,
                   help="pendulum-swingup (48x48, horizon 25; pendulum-swingup_pc3 is the same with "
                        "PCC/PC3's stronger motor) or cartpole-balance / cartpole-swingup "
                        "(80x80, horizon 20, replan every 5): TASK_DEFAULTS")
    p.add_argument("--out", required=True)
    p.add_argument("--start", default=E2CConfig.start, choices=["swingup", "balance"])
    p.add_argument("--train-steps", type=int, default=None,
                   help=f"training updates (default {E2CConfig.train_steps})")
    p.add_argument("--latent-size", type=int, default=None,
                   help=f"latent dimension (default {E2CConfig.latent_size})")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tag", default=None,
                   help="write e2c_<start>_<TAG>.json (and pictures/goal_cost_<TAG>.png) instead of "
                        "e2c_<start>.json, so a second protocol on a trained folder keeps the first's result")
    p.add_argument("--quick", action="store_true", help="a smoke run with tiny settings")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="any E2CConfig field, e.g. --set episodes=500 --set episode_steps=16")
    p.set_defaults(func=_command)


def _command(args: argparse.Namespace) -> int:
    overrides = dict(start=args.start, seed=args.seed)
    if args.train_steps is not None:
        overrides["train_steps"] = args.train_steps
    if args.latent_size is not None:
        overrides["latent_size"] = args.latent_size
    from worldmodel.config import check_known_keys
    from worldmodel.evaluate import parse_overrides

    extra = parse_overrides(args.set)
    check_known_keys(E2CConfig, extra)
    config = E2CConfig.for_task(args.task, quick=args.quick, **{**overrides, **extra})
    result = run_e2c(config, args.out, command="worldmodel " + shlex.join(sys.argv[1:]), tag=args.tag)
    print(f"{result['task']} ({result['start']}): {result['goal_time_percent_mean']:.1f} ± "
          f"{result['goal_time_percent_stderr']:.1f} % of steps in the goal region over "
          f"{result['pairs']} start/goal pairs; latent R² on held-out episodes: linear "
          f"{result['latent_r2']['linear']:.3f}, k-NN {result['latent_r2']['knn']:.3f}")
    print(f"  longest unbroken stay in the goal region {result['longest_stay_percent_mean']:.1f} % of an "
          f"episode, {result['turns_mean']:.1f} passes through the bottom (episode means; a pole swung "
          f"through the goal region scores goal time too)")
    if result["oracle_goal_time_percent_mean"] is not None:
        print(f"  oracle (the same iLQR MPC on the true simulator, cost on the true angle): "
              f"{result['oracle_goal_time_percent_mean']:.1f} % over {len(result['oracle_goal_time_percent'])} pairs")
    bins = ", ".join("–" if c is None else f"{c:.0f}" for c in result["goal_cost_by_angle_bin"])
    print(f"  latent goal cost ‖z − z_goal‖² by |angle| bin, upright → hanging: {bins}")
    sides = result.get("goal_cost_by_side")
    if sides and None not in (sides["left"], sides["right"]):
        ratio = "" if sides["across_top"] is None else f", {sides['across_top']:.1f}× across the top"
        bowl = ("" if sides["inner_over_outer"] is None else
                f"; nearest over farthest pose {sides['inner_over_outer']:.2f} (a bowl: 0.03; near 1: the goal apart)")
        print(f"  the pole held still inside the goal region, mean goal cost left / right of upright: "
              f"{sides['left']:.1f} / {sides['right']:.1f}{ratio} (large: the latent is torn at the top){bowl}")
    for name, (mean, best) in result["published"].items():
        print(f"  published {name}: {mean} (all models) / {best} (best model)")
    return 0
