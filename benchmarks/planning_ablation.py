"""What the value head, the actor's plans and CEM each add, on one finished online run.

    python benchmarks/planning_ablation.py --run "runs/control/<run folder>" --episodes 5

Every variant plans with the run's own planner settings and horizon on the same episodes as the
run's final noise-free evaluation (episode seeds seed·1000 + i, the planner's generator seeded
alike), so the rows are paired:

    final      the run's final evaluation (summary.json), its first N episodes: CEM + V(s_H)
    no_value   CEM on the horizon's rewards alone (`--no-terminal-value`)
    policy50   CEM + V with 50 of the actor's plans among each iteration's candidates (TD-MPC)
    actor50    the best of 50 actor plans alone, scored by the model with V (no CEM)
    replay     the final evaluation's planner again (not run by default): it must repeat the
               final returns exactly, which checks that the rows are paired
    cem_planet CEM + V with PlaNet's search (1000 candidates, 100 elites, 10 iterations; not by
               default): does more search help on the same model?
    h8, h20    CEM + V over 8 or 20 steps instead of the run's horizon (not by default): how far
               to trust the model before handing over to V

A variant needing a part the model lacks (V, an actor) is skipped and says so. Each variant
writes <run>/eval/ablation_<variant>.json, and a variant already written with as many episodes
is read back instead of rerun, so a stopped ablation resumes. The table goes to stdout and
RESULTS/planning_ablation_<task>_<run folder>.json.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

class Variant(NamedTuple):
    planner: str
    settings: dict[str, Any]  # planner settings over the run's own
    terminal_value: bool  # plan with V(s_H)
    needs: str | None  # the model part it needs: "value", "actor" or None
    horizon: int | None = None  # None: the run's horizon


VARIANTS: dict[str, Variant] = {
    "no_value": Variant("cem", {}, False, "value"),
    "policy50": Variant("cem", {"policy_candidates": 50}, True, "actor"),
    "actor50": Variant("random", {"candidates": 0, "policy_candidates": 50}, True, "actor"),
    "replay": Variant("cem", {}, True, None),
    "cem_planet": Variant("cem", {"candidates": 1000, "elites": 100, "iterations": 10}, True, None),
    "h8": Variant("cem", {}, True, None, horizon=8),
    "h20": Variant("cem", {}, True, None, horizon=20),
}
DEFAULT_VARIANTS = ("no_value", "policy50", "actor50")


def eval_config(online: Any, variant: Variant, episodes: int, name: str) -> Any:
    """The EvalConfig of one variant: the run's planner settings (CEM's) or only the variant's."""
    from worldmodel.control import EvalConfig
    from worldmodel.device import resolve_device
    from worldmodel.online_config import planner_settings

    planner, settings, terminal_value = variant.planner, variant.settings, variant.terminal_value
    base = planner_settings(online) if planner == online.planner else {}
    return EvalConfig(planner=planner, planner_overrides={**base, **settings},
                      horizon=variant.horizon or online.horizon,
                      episodes=episodes, oracle_episodes=0, seed=online.seed,
                      device=str(resolve_device(online.device)),
                      planning_precision=online.planning_precision, terminal_value=terminal_value,
                      name=f"ablation_{name}")


def has_part(model: Any, part: str | None) -> bool:
    """Whether the model has what a variant needs: a value head, an actor, or nothing."""
    if part is None:
        return True
    return (model.value_head if part == "value" else model.actor) is not None


def run_variant(run: Path, config: Any) -> dict[str, Any]:
    """Evaluate one variant, or read back its file when it already holds as many episodes."""
    from worldmodel.evaluate import evaluate

    path = run / "eval" / f"{config.result_name}.json"
    if path.exists():
        done = json.loads(path.read_text())
        if done.get("episodes") == config.episodes and done.get("planner_settings") is not None:
            print(f"read {path}")
            return done
    return evaluate(run, config, video=False)


def paired_difference(returns: list[float], baseline: list[float]) -> tuple[float, float]:
    """Mean and standard error of returns − baseline, episode by episode."""
    from worldmodel.control import mean_stderr

    return mean_stderr([a - b for a, b in zip(returns, baseline)])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a finished `worldmodel run` folder")
    p.add_argument("--episodes", type=int, default=5, help="paired episodes per variant")
    p.add_argument("--variants", nargs="+", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS))
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)

    from worldmodel.atomic import atomic_write_json
    from worldmodel.checkpoint import load_model, read_run_config
    from worldmodel.control import mean_stderr
    from worldmodel.online_config import OnlineConfig

    summary_path = args.run / "summary.json"
    if not summary_path.exists():
        raise SystemExit(f"{args.run} has no summary.json: finish the run first (`worldmodel run "
                         f"--out {args.run} --resume`)")
    summary = json.loads(summary_path.read_text())
    final = [float(r) for r in summary["returns"][:args.episodes]]
    if len(final) < args.episodes:
        raise SystemExit(f"the run's final evaluation has {len(final)} episodes; ask for at most that")
    online = OnlineConfig.from_dict(read_run_config(args.run)["online"])
    model, _, _ = load_model(args.run, device="cpu")
    mean, stderr = mean_stderr(final)
    whole = len(final) == len(summary["returns"])  # the summary's goal time is over all its episodes
    rows = [{"variant": "final", "planner": online.planner,
             "terminal_value": model.value_head is not None, "horizon": online.horizon,
             "returns": final, "return_mean": mean, "return_stderr": stderr,
             "goal_time": summary.get("goal_time") if whole else None,
             "ms_per_action": summary.get("ms_per_action"),  # runs finished before it was kept: None
             "paired_difference": [0.0, 0.0]}]
    for name in args.variants:
        variant = VARIANTS[name]
        if not has_part(model, variant.needs):
            print(f"skipped {name}: the model has no {variant.needs} head")
            continue
        out = run_variant(args.run, eval_config(online, variant, args.episodes, name))
        rows.append({"variant": name, "planner": variant.planner, "terminal_value": variant.terminal_value,
                     "horizon": variant.horizon or online.horizon,
                     "planner_settings": out["planner_settings"], "returns": out["returns"],
                     "return_mean": out["return_mean"], "return_stderr": out["return_stderr"],
                     "goal_time": out["goal_time"], "ms_per_action": out["ms_per_action"],
                     "paired_difference": list(paired_difference(out["returns"], final))})
    print(f"{summary['task']} · {args.run.name} · {args.episodes} paired episodes")
    print(f"{'variant':<10} {'return':>15} {'vs final':>15} {'goal time':>10} {'ms/action':>10}")
    for r in rows:
        goal = "" if r["goal_time"] is None else f"{r['goal_time']:.2f}"
        ms = "" if r["ms_per_action"] is None else f"{r['ms_per_action']:.0f}"
        d, e = r["paired_difference"]
        print(f"{r['variant']:<10} {r['return_mean']:8.1f} ± {r['return_stderr']:4.1f} "
              f"{d:+8.1f} ± {e:4.1f} {goal:>10} {ms:>10}")
    out_path = args.results / f"planning_ablation_{summary['task']}_{args.run.name}.json"
    atomic_write_json(out_path, {"run": str(args.run), "task": summary["task"],
                                 "env_steps": summary["env_steps"], "episodes": args.episodes,
                                 "command": " ".join(["python", "benchmarks/planning_ablation.py",
                                                      "--run", shlex.quote(str(args.run)), "--episodes",
                                                      str(args.episodes), "--variants", *args.variants]),
                                 "rows": rows})
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
