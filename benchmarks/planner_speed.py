"""Planner speed: milliseconds per MPC action, as a ratio to the machine's matmul floor.

Run: python benchmarks/planner_speed.py [--quick] [--threads N] [--out FILE.json]
Writes benchmarks/results/planner_speed.json and benchmarks/results/planner_pendulum.png.

(a) An RSSM-sized stand-in (PlaNet, Hafner et al. 2019: deterministic 200, stochastic 30, hidden
    200, action 1; state s = [h, z], S = 230) with a reward MLP; CEM at PlaNet's settings (H = 12,
    10 iterations, 1000 candidates, 100 elites) in float32 and under bfloat16 autocast; iCEM / MPPI
    samples to reach CEM's cost (`planner_samples.py`); iLQR ms per iteration at H = 12.
(b) A locally-linear (E2C) latent of dimension 8 with closed-form Jacobians: all planners.
(c) The torch pendulum swing-up problem: cost reached vs planning time for each planner.
The float32 matmul GFLOP/s is measured in the same run; FLOPs per action count 2·in·out per
linear layer (GRU: 2·3·h·(in + h)) per candidate and step.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import shlex
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import planners  # noqa: E402
from planners.rollout import total_cost  # noqa: E402
from worldmodel.atomic import atomic_write_bytes  # noqa: E402

from matmul_rate import matmul_gflops  # noqa: E402
from planner_problems import LocallyLinear, RSSMStandIn, rssm_problem  # noqa: E402
from planner_samples import print_table, sample_efficiency  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def mpc_ms_per_action(planner, problem, state0, steps: int, autocast: bool = False) -> dict:
    """Median ms per MPC action over `steps` replans (model state evolves with the true step)."""
    controller = planners.MPC(planner, problem, generator=torch.Generator().manual_seed(0))
    state, times, costs = state0, [], []
    for _ in range(steps):
        t = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            action = controller.act(state)
        times.append(1e3 * (time.perf_counter() - t))
        costs.append(controller.last_result.cost)
        with torch.inference_mode():
            state = problem.step(state[None], action[None])[0].float()
    return {"ms_median": statistics.median(times), "ms_all": times, "plan_costs": costs}


def pendulum_curves(quick: bool) -> dict:
    """Cost reached vs planning time on the pendulum swing-up problem (one plan from hanging)."""
    g, dt, umax = 9.81, 0.05, 4.0

    def step(s, a):
        om = s[:, 1] + dt * (g * torch.sin(s[:, 0]) + a[:, 0])
        return torch.stack([s[:, 0] + dt * om, om], -1)

    def cost(s, a):
        return 2 * (1 - torch.cos(s[:, 0])) + 0.1 * s[:, 1] ** 2 + 0.01 * a[:, 0] ** 2

    problem = planners.Problem(step=step, running_cost=cost, horizon=30, action_low=-umax,
                               action_high=umax, action_dim=1)
    state = torch.tensor([math.pi - 0.1, 0.0], dtype=torch.float64)
    budgets = [1, 2, 4, 8] if quick else [1, 2, 4, 8, 16]
    configs = {
        "random": lambda b: planners.make("random", candidates=100 * b),
        "cem": lambda b: planners.make("cem", candidates=50 * b, elites=max(5, 5 * b), iterations=5),
        "mppi": lambda b: planners.make("mppi", samples=50 * b, elites=max(8, 5 * b), iterations=5),
        "ilqr": lambda b: planners.make("ilqr", iterations=2 * b),
    }
    curves = {}
    for name, make in configs.items():
        pts = []
        for b in budgets:
            res = make(b).plan(problem, state, generator=torch.Generator().manual_seed(0))
            pts.append({"budget": b, "time_ms": 1e3 * res.info["time_s"], "cost": res.cost})
        curves[name] = pts
    return curves


def plot_curves(curves: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    for name, pts in curves.items():
        ax.plot([p["time_ms"] for p in pts], [p["cost"] for p in pts], "o-", label=name)
    ax.set_xscale("log")
    ax.set_xlabel("planning time per plan [ms]")
    ax.set_ylabel("plan cost (H = 30)")
    ax.set_title("pendulum swing-up, one plan from near hanging", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    atomic_write_bytes(path, buf.getvalue())


REFERENCE_CEM_MS = 880.0  # PyTorch PlaNet reference, CEM 1000 x 12 x 10 per action, this 2-core CPU


WM_CEM_MODES = {  # name: (precision, compile, fused) of the WorldModel's planning problem
    "fp32_unfused": ("float32", False, False), "bf16_autocast_unfused": ("bfloat16", False, False),
    "fp32": ("float32", False, True), "bf16": ("bfloat16", False, True),
    "bf16_compiled": ("bfloat16", True, True),
}


def unfused_problem(model, precision: str) -> planners.Problem:
    """The planning problem as `WorldModel.planning_problem` built it before planning_step.py:
    `RSSM.step` and the reward head called as modules (bf16 by autocast)."""
    bf16 = precision == "bfloat16"

    def step(s: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=bf16):
            out = model.transition.step(model.transition.from_vector(s), a).vector(use_mean=True)
        return out.to(s.dtype)

    def cost(s: torch.Tensor) -> torch.Tensor:
        with torch.autocast(s.device.type, dtype=torch.bfloat16, enabled=bf16):
            return -model.reward_head(s).squeeze(-1).to(s.dtype)

    return planners.Problem(step=step, running_cost=lambda s, a: cost(s), terminal_cost=cost,
                            horizon=12, action_low=-1.0, action_high=1.0, action_dim=1)


def planning_flops(problem: planners.Problem, state: torch.Tensor, n: int = 1000) -> int:
    """FLOPs of CEM's work per action at PlaNet's settings, counted by FlopCounterMode: per
    iteration, the first step and reward from the start state broadcast to n candidates (which
    the fused RSSM step computes partly once), then 11 steps and 12 rewards of n distinct states.
    (The unfused modes do a little more work than this: the prior's σ, per-row first steps.)"""
    from torch.utils.flop_counter import FlopCounterMode

    def count(fn, *args) -> int:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            fn(*args)
        return counter.get_total_flops()

    same, a = state.expand(n, -1), torch.zeros(n, 1)
    distinct = same + 0.01 * torch.randn(n, state.shape[-1])
    first = count(problem.step, same, a) + count(problem.terminal_cost, same)
    later = 11 * count(problem.step, distinct, a) + 12 * count(problem.terminal_cost, distinct)
    return 10 * (first + later)


def worldmodel_cem(steps: int, gflops: dict) -> dict:
    """CEM at PlaNet's settings on the library's own `planet` RSSM (not the stand-in) in each of
    `WM_CEM_MODES`, beside the PyTorch PlaNet reference's 880 ms per action on this machine; the
    fp32-evaluated cost of each mode's first plan (what lower precision does to the choice); and
    the achieved GFLOP/s over the matmul rate of the mode's dtype, measured in this run."""
    from worldmodel import ModelConfig, WorldModel

    model = WorldModel(ModelConfig.planet(obs_shape=(3, 64, 64), action_dim=1)).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        start = model.to_vector(model.filter_step(None, None, torch.zeros(1, 3, 64, 64)))[0]
    reference = unfused_problem(model, "float32")
    flops = planning_flops(model.planning_problem(None, "reward", 12), start)
    cem = planners.make("cem")
    result: dict = {"reference_ms": REFERENCE_CEM_MS, "cem_flops_per_action": flops,
                    "floor_ms": {k: 1e3 * flops / (g * 1e9) for k, g in gflops.items()}}
    for mode, (precision, compiled, fused) in WM_CEM_MODES.items():
        problem = (model.planning_problem(None, "reward", 12, precision=precision,
                                          compile=compiled)
                   if fused else unfused_problem(model, precision))
        t = time.perf_counter()
        with torch.inference_mode():  # the first plan: compiles where asked
            plan = cem.plan(problem, start, generator=torch.Generator().manual_seed(1))
            cost = float(total_cost(reference, start, plan.actions[None])[0])
        first_s = time.perf_counter() - t
        r = mpc_ms_per_action(cem, problem, start, steps)
        achieved = flops / (r["ms_median"] * 1e-3) / 1e9
        rate = gflops["bfloat16" if precision == "bfloat16" else "float32"]
        result[mode] = {"ms": r["ms_median"], "ms_all": r["ms_all"], "first_plan_s": first_s,
                        "plan_cost_fp32_eval": cost, "achieved_gflops": achieved,
                        "achieved_over_matmul": achieved / rate,
                        "speedup_vs_reference": REFERENCE_CEM_MS / r["ms_median"],
                        "speedup_vs_fp32_unfused": None}
    for mode in WM_CEM_MODES:
        result[mode]["speedup_vs_fp32_unfused"] = result["fp32_unfused"]["ms"] / result[mode]["ms"]
    return result


def print_worldmodel_cem(wm: dict, out: dict) -> None:
    """The table of `worldmodel_cem`'s modes, beside the reference and the matmul rates."""
    print(f"matmul GFLOP/s: fp32 {out['matmul_gflops_fp32']:.0f}, bf16 {out['matmul_gflops_bf16']:.0f}; "
          f"CEM needs {wm['cem_flops_per_action'] / 1e9:.1f} GFLOP per action")
    print(f"{'WorldModel planet CEM 1000x12x10':34s} {'ms/action':>9s} {'vs 880 ms':>9s} "
          f"{'vs unfused':>10s} {'x matmul':>8s} {'plan cost':>9s}")
    for mode in WM_CEM_MODES:
        r = wm[mode]
        print(f"{mode:34s} {r['ms']:9.1f} {r['speedup_vs_reference']:8.2f}x "
              f"{r['speedup_vs_fp32_unfused']:9.2f}x {r['achieved_over_matmul']:8.2f} "
              f"{r['plan_cost_fp32_eval']:9.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer MPC steps and budgets")
    parser.add_argument("--out", type=Path, default=RESULTS / "planner_speed.json",
                        help="the JSON to write; the pendulum plot goes beside it")
    parser.add_argument("--only-worldmodel-cem", action="store_true",
                        help="time only CEM on the library's planet RSSM (each planning mode)")
    parser.add_argument("--threads", type=int, default=1,
                        help="intra-op threads (1: on a shared 2-core machine, 2 oversubscribes)")
    parser.add_argument("--default-malloc", action="store_true", help="leave glibc malloc as it is")
    args = parser.parse_args()
    from worldmodel.allocator import keep_freed_memory

    malloc_tuned = keep_freed_memory() if not args.default_malloc else False
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # network initialisation only (script, not library)
    steps = 3 if args.quick else 7
    out: dict = {"machine": platform.processor() or platform.machine(), "threads": args.threads,
                 "torch": torch.__version__, "cpu_count": os.cpu_count(),
                 "command": "python " + shlex.join(sys.argv),
                 "load_average_1min_at_start": os.getloadavg()[0],  # other jobs sharing the CPU
                 "keep_freed_memory": malloc_tuned}
    out["matmul_gflops_fp32"] = gflops = matmul_gflops()
    out["matmul_gflops_bf16"] = matmul_gflops(dtype=torch.bfloat16)
    if args.only_worldmodel_cem:
        out["worldmodel_planet_cem"] = wm = worldmodel_cem(
            steps, {"float32": gflops, "bfloat16": out["matmul_gflops_bf16"]})
        atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())
        print_worldmodel_cem(wm, out)
        return

    model = RSSMStandIn().eval()
    problem = rssm_problem(model)
    for p in model.parameters():
        p.requires_grad_(False)
    step_f, rew_f = model.flops()
    state = torch.randn(230) * 0.5
    cem = planners.make("cem")  # PlaNet: 10 x 1000 candidates, 100 elites; H = 12
    flops_cem = 10 * 1000 * (12 * step_f + 13 * rew_f)
    floor_ms = 1e3 * flops_cem / (gflops * 1e9)
    rssm: dict = {"flops_per_step": step_f, "flops_per_reward": rew_f,
                  "cem_flops_per_action": flops_cem, "cem_floor_ms": floor_ms}
    for mode, ac in (("fp32", False), ("bf16_autocast", True)):
        r = mpc_ms_per_action(cem, problem, state, steps, autocast=ac)
        rssm[f"cem_{mode}"] = {"ms": r["ms_median"], "ratio_to_floor": r["ms_median"] / floor_ms,
                               "ms_all": r["ms_all"]}
    with torch.inference_mode():  # does bf16 change the chosen plan's (fp32-evaluated) cost?
        plans = {}
        for ac in (False, True):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=ac):
                plans[ac] = cem.plan(problem, state, generator=torch.Generator().manual_seed(1))
        c32 = float(total_cost(problem, state, plans[False].actions[None])[0])
        c16 = float(total_cost(problem, state, plans[True].actions[None])[0])
    rssm["bf16_plan_cost_fp32_eval"] = {"fp32_plan": c32, "bf16_plan": c16,
                                        "relative_change": (c16 - c32) / abs(c32)}
    rssm["samples_to_reach_cem"] = sample_efficiency(problem, state)  # iCEM / MPPI vs CEM
    for p in model.parameters():
        p.requires_grad_(True)
    times = []
    for seed in range(steps):
        res = planners.make("ilqr", iterations=3).plan(problem, state + 0.01 * seed)
        times.append(1e3 * res.info["time_s"] / max(1, res.info["backward_passes"]))
    rssm["ilqr_ms_per_iteration"] = statistics.median(times)
    rssm["ilqr_ms_per_iteration_all"] = times
    out["rssm"] = rssm
    out["worldmodel_planet_cem"] = wm = worldmodel_cem(
        steps, {"float32": gflops, "bfloat16": out["matmul_gflops_bf16"]})

    ll = LocallyLinear().eval()
    goal = torch.ones(8)
    ll_problem = planners.Problem(
        step=ll.step, running_cost=lambda z, a: ((z - goal) ** 2).sum(-1) + 0.1 * (a ** 2).sum(-1),
        terminal_cost=lambda z: 10 * ((z - goal) ** 2).sum(-1), horizon=12, action_low=-1.0,
        action_high=1.0, action_dim=1, jacobians=ll.jacobians)
    z0 = torch.zeros(8)
    local = {}
    for name, planner in (("ilqr", planners.make("ilqr", iterations=10)), ("cem", cem),
                          ("icem", planners.CEM.icem()), ("mppi", planners.make("mppi")),
                          ("random", planners.make("random"))):
        if name == "ilqr":  # needs autograd for the cost expansion; time it outside inference
            ctl = planners.MPC(planner, ll_problem)
            ts, s = [], z0
            for _ in range(steps):
                t = time.perf_counter()
                a = ctl.act(s)
                ts.append(1e3 * (time.perf_counter() - t))
                with torch.no_grad():
                    s = ll.step(s[None], a[None])[0]
            local[name] = {"ms": statistics.median(ts), "cost": ctl.last_result.cost}
        else:
            r = mpc_ms_per_action(planner, ll_problem, z0, steps)
            local[name] = {"ms": r["ms_median"], "cost": r["plan_costs"][-1]}
    out["locally_linear_8"] = local

    out["pendulum"] = curves = pendulum_curves(args.quick)
    default_out = args.out == RESULTS / "planner_speed.json"
    plot_curves(curves, RESULTS / "planner_pendulum.png" if default_out
                else args.out.with_name(args.out.stem + "_pendulum.png"))
    atomic_write_bytes(args.out, json.dumps(out, indent=1).encode())

    print(f"machine {out['machine']}, threads {args.threads}, fp32 matmul {gflops:.1f} GFLOP/s")
    print(f"{'case':44s} {'ms':>9s} {'x floor':>8s}")
    for mode in ("fp32", "bf16_autocast"):
        r = rssm[f"cem_{mode}"]
        print(f"{'RSSM CEM 1000x12x10 ' + mode + ' (per action)':44s} {r['ms']:9.1f} "
              f"{r['ratio_to_floor']:8.2f}")
    print(f"{'RSSM CEM FLOP floor':44s} {floor_ms:9.1f} {1.0:8.2f}")
    print_worldmodel_cem(wm, out)
    print(f"{'RSSM iLQR H=12 (per iteration)':44s} {rssm['ilqr_ms_per_iteration']:9.1f}")
    for name, r in local.items():
        print(f"{'locally-linear d=8 ' + name + ' (per action)':44s} {r['ms']:9.2f}")
    print("bf16 plan cost change (fp32 eval):", rssm["bf16_plan_cost_fp32_eval"])
    print_table(rssm["samples_to_reach_cem"])
    for name, pts in curves.items():
        print("pendulum", name, [(round(p["time_ms"], 1), round(p["cost"], 2)) for p in pts])


if __name__ == "__main__":
    main()
