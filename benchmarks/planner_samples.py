"""Sample efficiency: how few rolled-out action sequences iCEM and MPPI need to reach the cost of
CEM at PlaNet's settings (10 iterations x 1000 candidates = 10 000 sequences) on the RSSM stand-in.

Run: python benchmarks/planner_samples.py [--threads N] [--out FILE.json]
(`planner_speed.py` runs the same sweep as its section (a) and stores it in its own JSON.)

Each planner is tried over a grid of schedules (iterations x population) with its other settings
at their presets (iCEM: Pinneri et al. 2020; MPPI: TD-MPC2), one plan from the same start state
per seed. A schedule *reaches* CEM when the median over seeds of its plan cost is at most the
median of CEM's; its price is the median of `info["samples"]`, the sequences it actually rolled
out (iCEM's populations decay and its kept elites are rolled again, so this is not iterations x
population). The issue's target is <= 1/5 of CEM's samples.
"""
from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import planners  # noqa: E402
from worldmodel.atomic import atomic_write_bytes  # noqa: E402

from planner_problems import RSSMStandIn, rssm_problem  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SCHEDULES = [(it, n) for it in (4, 10, 20) for n in (50, 100, 200, 500)]  # (iterations, population)
PLANNERS: dict[str, Callable[[int, int], Any]] = {
    "icem": lambda it, n: planners.CEM.icem(iterations=it, candidates=n, elites=max(2, n // 10)),
    # iCEM without the population decay (γ = 1): every iteration samples the full population
    "icem_no_decay": lambda it, n: planners.CEM.icem(iterations=it, candidates=n, elites=max(2, n // 10),
                                                     population_decay=1.0),
    "mppi": lambda it, n: planners.make("mppi", iterations=it, samples=n, elites=max(2, n // 8)),
}


def plans(planner: Any, problem: planners.Problem, state: torch.Tensor, seeds: int) -> dict[str, Any]:
    """Median cost, samples and ms of one plan from `state` per generator seed."""
    results = []
    for seed in range(seeds):
        with torch.inference_mode():
            results.append(planner.plan(problem, state, generator=torch.Generator().manual_seed(seed)))
    return {"costs": [r.cost for r in results],
            "cost": statistics.median(r.cost for r in results),
            "samples": int(statistics.median(r.info["samples"] for r in results)),
            "ms": statistics.median(1e3 * r.info["time_s"] for r in results)}


def sample_efficiency(problem: planners.Problem, state: torch.Tensor, seeds: int = 3) -> dict[str, Any]:
    """CEM's (PlaNet) median cost, then each planner's schedules and the cheapest that reaches it."""
    cem = plans(planners.make("cem"), problem, state, seeds)
    out: dict[str, Any] = {"seeds": seeds, "cem": cem}
    for name, make in PLANNERS.items():
        tried = [{"iterations": it, "population": n, **plans(make(it, n), problem, state, seeds)}
                 for it, n in SCHEDULES]
        reached = [t for t in tried if t["cost"] <= cem["cost"]]
        best = min(reached, key=lambda t: t["samples"], default=None)
        out[name] = {"tried": tried, "reached": best is not None, "cheapest": best,
                     "samples_over_cem": None if best is None else best["samples"] / cem["samples"]}
    return out


def print_table(result: dict[str, Any]) -> None:
    cem = result["cem"]
    print(f"CEM (PlaNet, 10 x 1000): median cost {cem['cost']:.5f} over {result['seeds']} seeds, "
          f"{cem['samples']} samples, {cem['ms']:.0f} ms per plan")
    print(f"{'planner':14s} {'iters':>5s} {'pop':>5s} {'samples':>8s} {'cost':>9s} {'ms':>6s}  reaches CEM")
    for name in PLANNERS:
        for t in result[name]["tried"]:
            print(f"{name:14s} {t['iterations']:5d} {t['population']:5d} {t['samples']:8d} "
                  f"{t['cost']:9.5f} {t['ms']:6.0f}  {'yes' if t['cost'] <= cem['cost'] else ''}")
        best = result[name]["cheapest"]
        print(f"  {name}: " + ("does not reach CEM's cost" if best is None else
              f"reaches CEM's cost with {best['samples']} samples "
              f"({result[name]['samples_over_cem']:.2f} of CEM's)"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "planner_samples.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the stand-in's weights (as in planner_speed.py)
    model = RSSMStandIn().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    state = torch.randn(230) * 0.5
    result = {"command": "python " + shlex.join(sys.argv), "threads": args.threads,
              **sample_efficiency(rssm_problem(model), state, args.seeds)}
    atomic_write_bytes(args.out, json.dumps(result, indent=1).encode())
    print_table(result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
