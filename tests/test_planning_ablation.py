"""benchmarks/planning_ablation.py: its variants are paired with the run's final evaluation."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import planning_ablation  # noqa: E402  (benchmarks/planning_ablation.py)

from worldmodel.online import run_online  # noqa: E402

try:
    from test_online import TINY_MODEL, tiny
except ImportError:  # tests/ imported as a package
    from tests.test_online import TINY_MODEL, tiny


def test_replaying_the_final_planner_repeats_its_returns_and_variants_are_recorded(tmp_path):
    run = tmp_path / "run"
    model = {**TINY_MODEL, "value_head": True, "value_target": "imagined", "imagination_horizon": 3}
    run_online(tiny(env_steps=3000, final_eval_episodes=2, model_overrides=model), run, progress=False)
    argv = ["--run", str(run), "--episodes", "2", "--results", str(tmp_path / "results"),
            "--variants", "replay", "no_value", "actor50", "h8"]
    assert planning_ablation.main(argv) == 0
    out = json.loads(next((tmp_path / "results").glob("planning_ablation_*.json")).read_text())
    rows = {r["variant"]: r for r in out["rows"]}
    assert rows["replay"]["returns"] == pytest.approx(rows["final"]["returns"], abs=1e-9)  # paired
    assert rows["replay"]["paired_difference"] == pytest.approx([0.0, 0.0], abs=1e-9)
    assert rows["no_value"]["terminal_value"] is False
    assert rows["actor50"]["planner_settings"]["candidates"] == 0
    assert (run / "eval" / "ablation_actor50.json").exists()
    h8 = json.loads((run / "eval" / "ablation_h8.json").read_text())
    assert h8["horizon"] == rows["h8"]["horizon"] == 8 and rows["final"]["horizon"] == 5
    # a second call reads the variants back instead of planning again
    before = (run / "eval" / "ablation_no_value.json").stat().st_mtime_ns
    assert planning_ablation.main(argv) == 0
    assert (run / "eval" / "ablation_no_value.json").stat().st_mtime_ns == before
