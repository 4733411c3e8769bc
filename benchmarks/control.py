"""Control benchmark: returns of online-learned world models beside the published pixel baselines.

    python benchmarks/control.py                                   # cartpole-swingup, 100k, seeds 0 1 2
    python benchmarks/control.py --task cartpole-balance --env-steps 100000 --seeds 0 1 2
    python benchmarks/control.py --collect-only                    # only tabulate finished runs

Each seed runs `worldmodel.online.run_online` in RUNS/<task>-<preset>[-<setting>...]-s<seed> (the
settings that differ from the preset's, however they were typed: `folder_for`) and resumes
there if the folder holds a run (so a 100k run may span several sittings; a finished run is not
redone). The table then reads every finished run (summary.json) under RUNS, adds the runs recorded
by earlier tabulations whose folders are not here (RESULTS/control_runs.json; run folders stay on
the machine that made them), groups runs whose settings differ only in seed and device, and writes

    RESULTS/control_runs.json  every run tabulated: {folder, config, summary}
    RESULTS/control.json   a list of rows: task, env_steps, return_mean, return_stderr, seeds,
                           wall_hours, device, command, preset (keys other tools read; keep them)
                           plus stderr_over, seed_returns, headline
    RESULTS/control.md     a markdown table of our rows beside the published anchors
    RESULTS/control_curves_<task>.png   return along each run's evaluations, per setting, beside
                           the anchors (runs whose folders were found by this or an earlier
                           tabulation: the curve comes from <run>/metrics.jsonl)

return_mean is the mean over seeds of each run's final noise-free evaluation (>= 10 episodes with
the default settings); return_stderr is the standard error over seeds, or over one run's
episodes when there is a single seed (stderr_over says which). Rows with fewer than 3 seeds are
not headline numbers (DESIGN.md section 6) and are marked so. wall_hours is the mean per seed.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

# dm_control cartpole-swingup from pixels, return at 100k / 500k environment steps, as given in
# issue 7 from the tables of CURL (Laskin et al. 2020) and DreamerV3 (Hafner et al. 2023).
ANCHORS = [
    {"method": "PlaNet", "task": "cartpole-swingup", "returns": {100_000: 297, 500_000: 475},
     "source": "Hafner et al. 2019, as tabulated in CURL (Laskin et al. 2020)"},
    {"method": "Dreamer", "task": "cartpole-swingup", "returns": {100_000: 326, 500_000: 762},
     "source": "Hafner et al. 2020, as tabulated in CURL (Laskin et al. 2020) / DreamerV3 (Hafner et al. 2023)"},
    {"method": "DreamerV3", "task": "cartpole-swingup", "returns": {100_000: 598, 500_000: 845},
     "source": "Hafner et al. 2023 (DreamerV3)"},
    {"method": "DrQ", "task": "cartpole-swingup", "returns": {100_000: 759, 500_000: 868},
     "source": "Kostrikov et al. 2020, as tabulated in DreamerV3 (Hafner et al. 2023)"},
    {"method": "CURL", "task": "cartpole-swingup", "returns": {100_000: 582, 500_000: 841},
     "source": "Laskin et al. 2020 (CURL)"},
]
HEADLINE_SEEDS = 3  # DESIGN.md section 6: headline numbers over >= 3 training seeds
_PER_RUN = ("seed", "device", "env_steps")  # settings that may differ between runs of one row
# Every finished run tabulated so far, {folder, config, summary}: run folders are big and stay on the
# machine that made them, so the table is built from these records plus the folders present now.
RECORDS_FILE = "control_runs.json"


def run_folder(runs: Path, task: str, preset: str, seed: int, sets: Sequence[str] = ()) -> Path:
    """`runs/<task>-<preset>[-<each --set, sorted>]-s<seed>`: runs with other settings get other
    folders, so a lever experiment never resumes (or collides with) a preset's run."""
    tag = "".join("-" + re.sub(r"[^A-Za-z0-9_.=+]+", "_", s) for s in sorted(sets))
    return runs / f"{task}-{preset}{tag}-s{seed}"


def settings_sets(config: dict[str, Any]) -> list[str]:
    """The `--set` words that make the run's preset into `config`, per-run settings (seed, device,
    budget) aside: the run's identity, which names its folder and its row. A setting equal to the
    preset's is left out however it was typed, and a model or planner setting the preset adds but
    the run lacks (a run made before the preset gained it) is given as the value the run used."""
    from worldmodel.online_config import OnlineConfig

    preset = config.get("preset", "cpu")
    base = getattr(OnlineConfig, preset)().to_dict()
    sets = []
    for key, value in sorted(config.items()):
        if key in (*_PER_RUN, "task", "preset") or base.get(key) == value:
            continue
        if isinstance(value, dict):
            group, preset_group = key.removesuffix("_overrides"), base.get(key, {})
            for name in sorted(set(value) | set(preset_group)):
                # a setting the preset adds and the run lacks: the value the run used
                used = value[name] if name in value else _group_defaults(config, group)[name]
                if name not in preset_group or preset_group[name] != used:
                    sets.append(f"{group}.{name}={set_value(used)}")
        else:
            sets.append(f"{key}={set_value(value)}")
    return sets


def _group_defaults(config: dict[str, Any], group: str) -> dict[str, Any]:
    """The run's model (or planner) settings with no overrides at all: its model preset's fields."""
    import dataclasses

    import planners
    from worldmodel.online_config import OnlineConfig

    bare = OnlineConfig.from_dict({**config, "model_overrides": {}, "planner_overrides": {}})
    made = bare.model_config(action_dim=1) if group == "model" else planners.make(bare.planner)
    return {f.name: getattr(made, f.name) for f in dataclasses.fields(made)}


def folder_for(runs: Path, config: dict[str, Any]) -> Path:
    """The run folder of `config` (an OnlineConfig dict): equivalent commands share one."""
    return run_folder(runs, config["task"], config.get("preset", "cpu"), int(config["seed"]),
                      settings_sets(config))


def run_seeds(args: argparse.Namespace) -> None:
    """Run (or resume) the online loop for each seed; finished runs return at once."""
    from worldmodel.online import OnlineConfig, run_online
    from worldmodel.run_cli import config_overrides

    for seed in args.seeds:
        settings = {**config_overrides(args.set), "task": args.task, "env_steps": args.env_steps,
                    "seed": seed, "device": args.device}
        config = getattr(OnlineConfig, args.preset)(**settings)
        out = folder_for(args.runs, config.to_dict())
        resume = (out / "config.json").is_file()
        print(f"{'resuming' if resume else 'starting'} {out}", flush=True)
        summary = run_online(config, out, resume=resume, progress=not args.no_progress)
        print(f"  seed {seed}: return {summary['return_mean']} after {summary['env_steps']} env steps, "
              f"{summary['wall_hours']:.2f} h", flush=True)


def finished_runs(runs: Path) -> list[dict[str, Any]]:
    """(config, summary) of every run folder under `runs` whose summary.json exists."""
    from worldmodel.online_config import OnlineConfig

    found = []
    for summary_path in sorted(runs.glob("*/summary.json")):
        folder = summary_path.parent
        summary = json.loads(summary_path.read_text())
        config = json.loads((folder / "config.json").read_text()).get("online")
        if config is None or summary.get("return_mean") is None:
            continue  # not an online run, or one finished without a final evaluation
        # with today's defaults for settings added since the run started, so that runs made
        # before and after such a setting existed still group into one row
        config = OnlineConfig.from_dict(config).to_dict()
        shown = folder.resolve().relative_to(ROOT) if folder.resolve().is_relative_to(ROOT) else folder
        found.append({"folder": str(shown), "config": config, "summary": summary,
                      "curve": eval_curve(folder / "metrics.jsonl")})
    return found


def eval_curve(metrics: Path) -> list[list[float]]:
    """[env_steps, return] of each noise-free evaluation along a run, before the final one."""
    from worldmodel.metrics_log import read_metrics

    if not metrics.is_file():
        return []
    return [[float(r["env_steps"]), float(r["return"])] for r in read_metrics(metrics)
            if r.get("kind") == "eval" and not r.get("final")]


def load_records(path: Path) -> list[dict[str, Any]]:
    """The finished runs recorded by earlier tabulations (RESULTS/control_runs.json), if any."""
    if not path.is_file():
        return []
    records = json.loads(path.read_text())
    if not isinstance(records, list) or not all(isinstance(r, dict) and {"folder", "config", "summary"} <= r.keys()
                                                for r in records):
        raise ValueError(f"{path} is not a list of {{folder, config, summary}} records; restore it from git "
                         "or delete it to tabulate only the run folders present now")
    return records


def merge_records(recorded: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Recorded runs updated by the run folders found now: a run found now replaces the record of
    the same settings and seed (`folder_for`), and a recorded run whose folder is gone (another
    machine, a fresh checkout) keeps its row."""
    from worldmodel.online_config import OnlineConfig

    merged = {}
    for r in recorded:
        config = OnlineConfig.from_dict(r["config"]).to_dict()
        # the folder's name as the settings give it today: a run recorded before its preset
        # changed keeps its settings, and so gets the name `folder_for` gives them now
        folder = folder_for(Path(r["folder"]).parent, config)
        merged[folder.name] = {**r, "config": config, "folder": str(folder)}
    merged.update({folder_for(Path("."), r["config"]).name: r for r in found})
    return [merged[k] for k in sorted(merged)]


def set_value(value: Any) -> str:
    """`value` as `--set` reads it back: JSON, except a string that JSON would not parse stays bare
    (`imagined`, not `"imagined"`), so the printed command names the same run folder as the
    command that made the run (`run_folder` names folders by the --set text)."""
    if isinstance(value, str):
        try:
            json.loads(value)
        except json.JSONDecodeError:
            return value
    return json.dumps(value)


def reproduce_command(config: dict[str, Any], seeds: list[int]) -> str:
    """The benchmark command that reruns these seeds: the preset plus --set for each difference."""
    preset = config.get("preset", "cpu")
    words = ["python", "benchmarks/control.py", "--task", config["task"], "--env-steps",
             str(config["env_steps"]), "--preset", preset, "--seeds", *map(str, seeds)]
    for s in settings_sets(config):
        words += ["--set", s]
    return " ".join(shlex.quote(w) for w in words)


def table_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per group of runs whose settings differ only in seed and device."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        config = run["config"]
        key = [config["task"], config.get("preset", "cpu"), settings_sets(config),
               run["summary"]["env_steps"]]  # what was collected, not the budget asked
        groups.setdefault(json.dumps(key), []).append(run)
    rows = []
    for group in groups.values():
        group.sort(key=lambda r: r["config"]["seed"])
        means = [float(r["summary"]["return_mean"]) for r in group]
        seeds = [int(r["config"]["seed"]) for r in group]
        mean = sum(means) / len(means)
        if len(means) >= 2:
            var = sum((x - mean) ** 2 for x in means) / (len(means) - 1)
            stderr, over = math.sqrt(var / len(means)), "seeds"
        else:
            stderr, over = float(group[0]["summary"].get("return_stderr") or 0.0), "episodes"
        config = group[0]["config"]
        rows.append({
            "task": config["task"], "env_steps": int(group[0]["summary"]["env_steps"]),
            "return_mean": mean, "return_stderr": stderr, "stderr_over": over, "seeds": seeds,
            "seed_returns": means, "headline": len(seeds) >= HEADLINE_SEEDS,
            "wall_hours": sum(float(r["summary"]["wall_hours"]) for r in group) / len(group),
            "device": "; ".join(sorted({r["summary"]["device"] for r in group})),
            "command": reproduce_command({**config, "env_steps": group[0]["summary"]["env_steps"]}, seeds),
            "preset": config.get("preset", "cpu"), "folders": [r["folder"] for r in group]})
    # per task, budget and preset: the preset's own row first, then its variants
    rows.sort(key=lambda r: (r["task"], r["env_steps"], r["preset"], r["command"].count("--set"), r["command"]))
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """Our rows beside the published anchors, one table per task."""
    lines = ["# Control benchmark: return from pixels (dm_control, 1000 simulator steps per episode)", "",
             "Ours: mean ± standard error of the final noise-free evaluation; rows with fewer than "
             f"{HEADLINE_SEEDS} seeds are marked † and are not headline numbers. Published anchors as "
             "reported in the cited papers (GPU training).", ""]
    tasks = sorted({r["task"] for r in rows} | {a["task"] for a in ANCHORS})
    for task in tasks:
        lines += [f"## {task}", "",
                  "| method | env steps | return | seeds | wall-clock (h/seed) | device | source / command |",
                  "|---|---:|---:|---|---:|---|---|"]
        for a in (a for a in ANCHORS if a["task"] == task):
            for steps, ret in sorted(a["returns"].items()):
                lines.append(f"| {a['method']} | {steps // 1000}k | {ret} | | | | {a['source']} |")
        for r in (r for r in rows if r["task"] == task):
            mark = "" if r["headline"] else " †"
            seeds = f"{len(r['seeds'])} ({', '.join(map(str, r['seeds']))}){mark}"
            lines.append(f"| ours ({r['preset']}) | {r['env_steps'] / 1000:g}k | {r['return_mean']:.0f} ± "
                         f"{r['return_stderr']:.0f} | {seeds} | {r['wall_hours']:.2f} | {r['device']} | "
                         f"`{r['command']}` |")
        lines.append("")
    return "\n".join(lines)


def curve_series(rows: list[dict[str, Any]], runs: list[dict[str, Any]], task: str) -> list[dict[str, Any]]:
    """`viz.plot_learning_curves` series for `task`: one per row at the task's largest data budget,
    with the evaluation curves of the row's runs that have one."""
    by_folder = {r["folder"]: r for r in runs}
    rows = [r for r in rows if r["task"] == task]
    budget = max(r["env_steps"] for r in rows)
    series = []
    for row in (r for r in rows if r["env_steps"] == budget):
        curves = [by_folder[f]["curve"] for f in row["folders"] if by_folder.get(f, {}).get("curve")]
        words = shlex.split(row["command"])
        sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
        seeds = len(row["seeds"])
        label = (f"{row['preset']}{' + ' + ', '.join(sets) if sets else ''}: {row['return_mean']:.0f} "
                 f"± {row['return_stderr']:.0f}, {seeds} seed{'s' * (seeds > 1)}"
                 + (f" (curves of {len(curves)})" if len(curves) < seeds else ""))
        series.append({"label": label, "curves": curves,
                       "final": (row["env_steps"], row["return_mean"], row["return_stderr"])})
    return series


def write_curves(rows: list[dict[str, Any]], runs: list[dict[str, Any]], results: Path) -> list[Path]:
    """One control_curves_<task>.png per task with rows: our runs beside the anchors."""
    from worldmodel.viz import plot_learning_curves

    written = []
    for task in sorted({r["task"] for r in rows}):
        series = curve_series(rows, runs, task)
        budget = series[0]["final"][0]
        anchors = {a["method"]: a["returns"][budget] for a in ANCHORS
                   if a["task"] == task and budget in a["returns"]}
        written.append(plot_learning_curves(
            series, results / f"control_curves_{task}.png", anchors=anchors,
            title=f"{task} from pixels, {budget / 1000:g}k env steps\nthin: each run's evaluations; "
                  "thick: mean over seeds; point: final, mean ± s.e.; dashed: published"))
    return written


def write_results(rows: list[dict[str, Any]], results: Path, runs: list[dict[str, Any]]) -> None:
    from worldmodel.atomic import atomic_write_bytes, atomic_write_json

    atomic_write_json(results / RECORDS_FILE, runs)
    atomic_write_json(results / "control.json", rows)
    atomic_write_bytes(results / "control.md", markdown(rows).encode())
    curves = write_curves(rows, runs, results)
    print(markdown(rows))
    print(f"wrote {results / 'control.json'}, {results / 'control.md'} and "
          f"{', '.join(p.name for p in curves)}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "control", help="folder of run folders")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results",
                   help="where control.json and control.md go")
    p.add_argument("--task", default="cartpole-swingup")
    p.add_argument("--env-steps", type=int, default=100_000)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--preset", choices=("cpu", "planet"), default="cpu")
    p.add_argument("--device", default="auto")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="OnlineConfig field, or model.KEY / planner.KEY (as `worldmodel run --set`)")
    p.add_argument("--collect-only", action="store_true", help="only tabulate the finished runs under --runs")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if not args.collect_only:
        from worldmodel.allocator import keep_freed_memory

        keep_freed_memory()  # as the `worldmodel` command does (worldmodel/allocator.py)
        run_seeds(args)
    records = args.results / RECORDS_FILE
    runs = merge_records(load_records(records), finished_runs(args.runs))
    if not runs:
        print(f"no finished online runs under {args.runs} nor in {records}; run this script without "
              "--collect-only first", file=sys.stderr)
        return 1
    write_results(table_rows(runs), args.results, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
