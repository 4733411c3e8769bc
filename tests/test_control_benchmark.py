"""benchmarks/control.py's table: runs that differ only in seed form one row, whenever made."""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import control  # noqa: E402  (benchmarks/control.py)

from worldmodel.online_config import OnlineConfig  # noqa: E402


def _run(folder: Path, seed: int, ret: float, drop: tuple[str, ...] = ()) -> None:
    config = OnlineConfig.cpu(task="cartpole-swingup", env_steps=100_000, seed=seed).to_dict()
    for key in drop:  # a run made before these settings existed
        del config[key]
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"online": config}))
    (folder / "summary.json").write_text(json.dumps({
        "return_mean": ret, "return_stderr": 5.0, "env_steps": 100_000, "wall_hours": 2.0,
        "device": "CPU x86_64, 1 thread", "returns": [ret] * 10}))


def test_runs_from_before_and_after_a_new_setting_share_a_row(tmp_path):
    _run(tmp_path / "cartpole-swingup-cpu-s0", 0, 400.0, drop=("planning_precision", "compile_planning"))
    _run(tmp_path / "cartpole-swingup-cpu-s1", 1, 500.0)
    _run(tmp_path / "cartpole-swingup-cpu-s2", 2, 600.0)
    rows = control.table_rows(control.finished_runs(tmp_path))
    assert len(rows) == 1
    row = rows[0]
    assert row["seeds"] == [0, 1, 2] and row["headline"]
    assert row["return_mean"] == 500.0 and row["stderr_over"] == "seeds"
    assert abs(row["return_stderr"] - (100.0 / 3 ** 0.5)) < 1e-9  # std 100 over 3 seeds
    assert "--seeds 0 1 2" in row["command"] and "planning_precision" not in row["command"]


def test_lever_runs_get_their_own_folders(tmp_path):
    """`--set` settings name the run folder: a lever run never resumes the preset's run."""
    plain = control.run_folder(tmp_path, "cartpole-swingup", "cpu", 0)
    assert plain == tmp_path / "cartpole-swingup-cpu-s0"  # the name runs before --set had
    lever = control.run_folder(tmp_path, "cartpole-swingup", "cpu", 0, ["train_steps_per_episode=200"])
    assert lever == tmp_path / "cartpole-swingup-cpu-train_steps_per_episode=200-s0"
    both = control.run_folder(tmp_path, "cartpole-swingup", "cpu", 1, ["model.kl_scale=0.5", "horizon=15"])
    assert both.name == "cartpole-swingup-cpu-horizon=15-model.kl_scale=0.5-s1"
    odd = control.run_folder(tmp_path, "t", "cpu", 0, ['planner.noise="pink / 2"'])
    assert odd.parent == tmp_path and "/" not in odd.name and " " not in odd.name


def test_recorded_runs_keep_their_rows_when_their_folders_are_gone(tmp_path):
    """Run folders stay on the machine that made them: a later tabulation elsewhere joins the runs
    it finds to the recorded ones, and a folder present now replaces its own record."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    _run(runs / "cartpole-swingup-cpu-s0", 0, 400.0)
    _run(runs / "cartpole-swingup-cpu-s1", 1, 500.0)
    assert control.main(["--collect-only", "--runs", str(runs), "--results", str(results)]) == 0
    assert json.loads((results / "control.json").read_text())[0]["seeds"] == [0, 1]

    elsewhere = tmp_path / "fresh_checkout_runs"
    _run(elsewhere / "cartpole-swingup-cpu-s1", 1, 550.0)  # seed 1 rerun here: replaces its record
    _run(elsewhere / "cartpole-swingup-cpu-s2", 2, 600.0)
    assert control.main(["--collect-only", "--runs", str(elsewhere), "--results", str(results)]) == 0
    (row,) = json.loads((results / "control.json").read_text())
    assert row["seeds"] == [0, 1, 2] and row["headline"]
    assert row["seed_returns"] == [400.0, 550.0, 600.0]
    recorded = json.loads((results / control.RECORDS_FILE).read_text())
    assert [Path(r["folder"]).name for r in recorded] == [f"cartpole-swingup-cpu-s{i}" for i in range(3)]


def test_reproduce_command_resumes_the_run_it_describes(tmp_path):
    """The table's command, run again, must find the same folder: strings stay bare in --set, as
    typed, unless bare text would parse as another JSON value."""
    import shlex

    from worldmodel.run_cli import config_overrides

    typed = ["model.free_nats=1.0", "model.value_target=recorded"]
    config = OnlineConfig.cpu(task="cartpole-swingup", env_steps=100_000, seed=2,
                              **config_overrides(typed)).to_dict()
    words = shlex.split(control.reproduce_command(config, [2]))
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert sorted(sets) == typed
    again = OnlineConfig.cpu(task="cartpole-swingup", env_steps=100_000, seed=2,
                             **config_overrides(sets)).to_dict()
    assert control.folder_for(tmp_path, again) == control.folder_for(tmp_path, config) == \
        control.run_folder(tmp_path, "cartpole-swingup", "cpu", 2, typed)
    assert control.set_value("true") == '"true"' and control.set_value(True) == "true"
    assert config_overrides([f"model.value_target={control.set_value('1.5')}"])["model_overrides"] == \
        {"value_target": "1.5"}


def test_curves_come_from_the_runs_evaluations_and_are_drawn_per_task(tmp_path):
    """Each run's evaluations along the way (not the final one, which is the row's point) become
    its curve; a record without a folder keeps its row and simply has no curve."""
    runs, results = tmp_path / "runs", tmp_path / "results"
    results.mkdir()
    _run(runs / "cartpole-swingup-cpu-s0", 0, 400.0)
    lines = [{"kind": "seed", "env_steps": 1000, "return": 80.0},
             {"kind": "eval", "env_steps": 15000, "return": 220.0},
             {"kind": "explore", "env_steps": 16000, "return": 150.0},
             {"kind": "eval", "env_steps": 25000, "return": 300.0},
             {"kind": "eval", "env_steps": 100000, "return": 400.0, "final": True}]
    (runs / "cartpole-swingup-cpu-s0" / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": r["env_steps"], **r}) + "\n" for r in lines))
    (found,) = control.finished_runs(runs)
    assert found["curve"] == [[15000.0, 220.0], [25000.0, 300.0]]
    assert control.main(["--collect-only", "--runs", str(runs), "--results", str(results)]) == 0
    assert (results / "control_curves_cartpole-swingup.png").stat().st_size > 0
    assert json.loads((results / control.RECORDS_FILE).read_text())[0]["curve"] == found["curve"]
    rows = control.table_rows([found])
    (series,) = control.curve_series(rows, [found], "cartpole-swingup")
    assert series["curves"] == [found["curve"]] and series["final"] == (100_000, 400.0, 5.0)
    (bare,) = control.curve_series(rows, [{**found, "curve": []}], "cartpole-swingup")
    assert bare["curves"] == [] and "(curves of 0)" in bare["label"]


def test_a_preset_change_keeps_old_runs_reproducible_and_in_their_own_row(tmp_path):
    """The CPU preset gained the imagined value: a run made before keeps its settings, so its
    command turns the value off, its row stays apart from the preset's, and its record takes the
    folder name its settings give today (the preset's plain name belongs to the new default)."""
    import shlex

    from worldmodel.online_config import CPU_MODEL_OVERRIDES
    from worldmodel.run_cli import config_overrides

    now = OnlineConfig.cpu(task="cartpole-swingup", env_steps=100_000, seed=0)
    assert now.model_overrides == CPU_MODEL_OVERRIDES and now.model_config(1).trains_actor
    added = OnlineConfig.cpu(task="cartpole-swingup", env_steps=100_000, seed=0,
                             **config_overrides(["model.free_nats=1.0"]))
    assert added.model_overrides == {**CPU_MODEL_OVERRIDES, "free_nats": 1.0}  # adds, not replaces
    assert OnlineConfig.planet().model_overrides == {}  # PlaNet's preset has no value

    typed_default = OnlineConfig.cpu(task="cartpole-swingup", env_steps=100_000, seed=0,
                                     **config_overrides(["model.value_head=true"])).to_dict()
    assert control.folder_for(tmp_path, typed_default).name == "cartpole-swingup-cpu-s0"

    before = {**now.to_dict(), "model_overrides": {}}  # as recorded before the preset changed
    words = shlex.split(control.reproduce_command(before, [0]))
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    assert sets == ["model.value_head=false", "model.value_target=recorded"]
    rerun = OnlineConfig.cpu(task="cartpole-swingup", env_steps=100_000, seed=0,
                             **config_overrides(sets))
    assert not rerun.model_config(1).value_head
    assert control.folder_for(tmp_path, rerun.to_dict()) == control.folder_for(tmp_path, before)

    summary = {"return_mean": 500.0, "return_stderr": 5.0, "env_steps": 100_000, "wall_hours": 2.0,
               "device": "CPU", "returns": [500.0] * 10}
    old_record = {"folder": "runs/control/cartpole-swingup-cpu-s0", "config": before, "summary": summary}
    new_run = {"folder": "runs/control/cartpole-swingup-cpu-s0", "config": now.to_dict(),
               "summary": {**summary, "return_mean": 700.0}, "curve": []}
    merged = control.merge_records([old_record], [new_run])
    assert sorted(Path(r["folder"]).name for r in merged) == [
        "cartpole-swingup-cpu-model.value_head=false-model.value_target=recorded-s0", "cartpole-swingup-cpu-s0"]
    rows = control.table_rows(merged)
    assert [(r["return_mean"], r["command"].count("--set")) for r in rows] == [(700.0, 0), (500.0, 2)]
