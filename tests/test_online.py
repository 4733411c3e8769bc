"""Tests for the online loop (worldmodel.online) and the `worldmodel run` verb (worldmodel.run_cli).

Everything runs on 32×32 cart-pole-balance with a model a few hundred parameters wide; one thread,
because two OpenMP threads on a busy 2-core machine make every small op milliseconds slower.
"""
from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_fixtures import one_thread  # noqa: E402,F401  (autouse: every test runs on one thread)

from worldmodel import online  # noqa: E402
from worldmodel.checkpoint import CheckpointError, load_checkpoint  # noqa: E402
from worldmodel.cli import main  # noqa: E402
from worldmodel.data import EpisodeDataset  # noqa: E402
from worldmodel.metrics_log import read_metrics  # noqa: E402
from worldmodel.online import OnlineConfig, run_online  # noqa: E402

TINY_MODEL = dict(deter_size=8, stoch_size=4, hidden_size=16, cnn_depth=2)
# 2 seed + 3 exploration episodes of 20 agent steps (action repeat 50), 3 updates before each.
TINY = dict(task="cartpole-balance", env_steps=5000, seed_episodes=2, train_steps_per_episode=3,
            batch_size=4, chunk_length=8, candidates=16, elites=4, iterations=2, horizon=5,
            eval_every=2, eval_episodes=1, final_eval_episodes=1, image_size=32, action_repeat=50,
            device="cpu", model_overrides=TINY_MODEL)


def tiny(**overrides) -> OnlineConfig:
    return OnlineConfig(**{**TINY, **overrides})


def episodes_of(run: Path) -> list:
    return EpisodeDataset(run / online.DATA_DIR).episodes


def comparable(records: list[dict]) -> list[dict]:
    """Records without their timings, which no resume can repeat."""
    return [{k: v for k, v in r.items() if k not in ("wall_seconds", "ms_per_action")} for r in records]


# -- exact resume --------------------------------------------------------------------------------

def test_stopped_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    config = tiny()
    whole = run_online(config, tmp_path / "whole", progress=False)
    assert whole["status"] == "finished" and whole["episodes"] == 5 and whole["env_steps"] == 5000
    assert whole["train_steps"] == 9  # 3 updates before each of the 3 exploration episodes
    assert whole["ms_per_action"] > 0 and 0.0 <= whole["goal_time"] <= 1.0  # the final evaluation's

    # Sitting 1: Ctrl-C during the second seed episode -> that cycle finishes, is checkpointed,
    # then KeyboardInterrupt (the seed phase: no model exists yet).
    parts = tmp_path / "parts"
    collect = online.collect_episode

    def interrupted(env, config, index, model, device):
        if index == 1:
            signal.raise_signal(signal.SIGINT)
        return collect(env, config, index, model, device)

    monkeypatch.setattr(online, "collect_episode", interrupted)
    with pytest.raises(KeyboardInterrupt, match="--resume"):
        run_online(config, parts, progress=False)
    monkeypatch.setattr(online, "collect_episode", collect)
    assert len(episodes_of(parts)) == 2

    # Sitting 2: stopped after the first exploration episode; then "kill -9" after the next
    # append but before its checkpoint: an extra episode on disk and a torn metrics record.
    stopped = run_online(None, parts, resume=True, progress=False, stop_when=lambda c: c["episodes"] == 3)
    assert stopped == {**stopped, "status": "stopped", "episodes": 3, "env_steps": 3000, "train_steps": 3}
    EpisodeDataset(parts / online.DATA_DIR).append(episodes_of(parts)[0])
    with open(parts / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"step": 4000, "kind": "explore", "return": -1.0}) + "\n{\"step\": 50")

    # Sitting 3: resume to the end; the unrecorded episode is dropped and collected again.
    with pytest.warns(UserWarning, match="dropped 1 episode"):
        resumed = run_online(None, parts, resume=True, progress=False)

    for key in ("status", "episodes", "env_steps", "train_steps", "returns", "return_mean"):
        assert resumed[key] == whole[key], key
    a, b = episodes_of(tmp_path / "whole"), episodes_of(parts)
    assert len(a) == len(b) == 5
    for x, y in zip(a, b):
        for name in ("images", "actions", "rewards", "states"):
            np.testing.assert_array_equal(getattr(x, name), getattr(y, name))
    ca, cb = load_checkpoint(tmp_path / "whole" / "checkpoint.pt"), load_checkpoint(parts / "checkpoint.pt")
    assert ca["online"] == cb["online"] and ca["step"] == cb["step"] == 9
    for name, tensor in ca["model"].items():
        assert torch.equal(tensor, cb["model"][name]), name
    assert torch.equal(ca["ranks"][0]["sampler"]["generator"], cb["ranks"][0]["sampler"]["generator"])
    assert comparable(read_metrics(tmp_path / "whole")) == comparable(read_metrics(parts))
    kinds = [r["kind"] for r in read_metrics(parts)]
    assert kinds == ["seed", "seed", "explore", "explore", "eval", "explore", "eval"]
    run_config = json.loads((parts / "config.json").read_text())
    assert len(run_config["resumed"]) == 2 and run_config["online"] == config.to_dict()
    # each sitting's versions and machine: the first at the top, the later ones in their entries
    assert all(r["machine"]["torch_threads"] >= 1 and "torch" in r["versions"] for r in run_config["resumed"])
    assert {"cpu", "platform", "isa"} <= set(run_config["machine"]) and "mujoco" in run_config["versions"]


def test_resume_may_raise_the_budget_and_a_finished_run_is_not_redone(tmp_path):
    run = tmp_path / "run"
    first = run_online(tiny(env_steps=3000, final_eval_episodes=0), run, progress=False)
    assert first["episodes"] == 3 and first["return_mean"] is None
    again = run_online(None, run, resume=True, progress=False)
    assert again == first  # summary.json is reused, nothing is collected
    assert "resumed" not in json.loads((run / "config.json").read_text())  # and no sitting recorded
    more = run_online(tiny(env_steps=4000, final_eval_episodes=0), run, resume=True, progress=False)
    assert more["episodes"] == 4 and more["train_steps"] == 6
    assert [r["episodes"] for r in json.loads((run / "config.json").read_text())["resumed"]] == [3]


def test_a_run_stopped_between_its_final_evaluation_and_summary_logs_that_evaluation_once(tmp_path, monkeypatch):
    run = tmp_path / "run"
    config = tiny(env_steps=3000)
    write = online.atomic_write_json

    def killed_at_the_summary(path, data):
        if Path(path).name == online.SUMMARY_FILE:
            raise KeyboardInterrupt("killed before summary.json")
        write(path, data)

    monkeypatch.setattr(online, "atomic_write_json", killed_at_the_summary)
    with pytest.raises(KeyboardInterrupt):
        run_online(config, run, progress=False)
    monkeypatch.setattr(online, "atomic_write_json", write)
    (logged,) = [r for r in read_metrics(run) if r.get("final")]
    evaluate = online.evaluate_noise_free
    monkeypatch.setattr(online, "evaluate_noise_free", lambda *a, **k: pytest.fail("evaluated again"))
    summary = run_online(None, run, resume=True, progress=False)
    assert [r for r in read_metrics(run) if r.get("final")] == [logged]
    assert summary["returns"] == logged["returns"] and summary["episodes"] == 3
    monkeypatch.setattr(online, "evaluate_noise_free", evaluate)


def test_value_head_and_reward_overshooting_train_inside_the_online_loop(tmp_path):
    run = tmp_path / "run"
    extra = {**TINY_MODEL, "value_head": True, "value_target": "imagined", "imagination_horizon": 3,
             "overshooting_distance": 3, "overshooting_reward_scale": 1.0}
    summary = run_online(tiny(env_steps=3000, final_eval_episodes=0, model_overrides=extra,
                              planner_overrides={"policy_candidates": 4}), run, progress=False)
    assert summary["episodes"] == 3
    trained = [r for r in read_metrics(run) if "value_loss" in r]
    assert trained and all(np.isfinite(r["value_loss"]) and np.isfinite(r["actor_loss"])
                           and np.isfinite(r["overshooting_reward_nll"])
                           for r in trained)
    assert load_checkpoint(run / "checkpoint.pt")["model_config"]["value_head"] is True


# -- learning ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_online_run_learns_to_beat_its_random_seed_episodes(tmp_path):
    """About 110 s: 5 random episodes, then 16 cycles of 100 updates and one noisy MPC episode
    (cart-pole balance at action repeat 10: 100 agent steps an episode), then 3 noise-free ones.

    Measured over seeds 0-7 of these settings (29 November; `python benchmarks/online_test_seeds.py
    --variant test`, benchmarks/results/online_test_seeds_2026-11-29.json):
    - the later MPC episodes (the second half of exploration and the final 3) beat the random seed
      episodes on all 8 seeds, by +7 to +57 (+39 at seed 0);
    - the last 4 exploration episodes beat the first 2 by 74 to 174 on all 8: the first ones plan
      on a barely trained model and do worse than random (about 150 against 230-270).
    One seed can pass by luck: the previous test (8 cycles, a 32-unit model, margins of 25 and 50
    over the seed episodes) passed on 2 of 6 seeds, and 7 variants of it on 0 to 4 of 5-6 seeds
    with either its assertions or these (the same file)."""
    config = OnlineConfig(task="cartpole-balance", env_steps=21_000, seed_episodes=5,
                          train_steps_per_episode=100, batch_size=16, chunk_length=10, lr=3e-3,
                          candidates=100, elites=10, iterations=4, horizon=10, eval_every=100,
                          final_eval_episodes=3, image_size=32, action_repeat=10, device="cpu",
                          model_overrides=dict(deter_size=64, stoch_size=16, hidden_size=64, cnn_depth=16,
                                               free_nats=1.0, kl_balance=0.8))
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from online_test_seeds import VARIANTS  # the seed sweep quoted above measured these settings

    assert OnlineConfig(**VARIANTS["test"]) == config
    summary = run_online(config, tmp_path / "run", progress=False)
    records = read_metrics(tmp_path / "run")
    seed = [r["return"] for r in records if r["kind"] == "seed"]
    explore = [r["return"] for r in records if r["kind"] == "explore"]
    assert len(seed) == 5 and len(explore) == 16 and len(summary["returns"]) == 3
    later = explore[len(explore) // 2:] + summary["returns"]  # the later MPC episodes
    assert np.mean(later) > np.mean(seed), (seed, explore, summary["returns"])
    assert np.mean(explore[-4:]) > np.mean(explore[:2]) + 50, explore  # planning improved with the model


def test_a_run_killed_before_its_first_checkpoint_starts_over(tmp_path):
    run = tmp_path / "run"
    run_online(tiny(), run, progress=False, stop_when=lambda c: True)
    first = episodes_of(run)[0]
    (run / "checkpoint.pt").unlink()  # as if killed after the first append, before the checkpoint
    stopped = run_online(None, run, resume=True, progress=False, stop_when=lambda c: True)
    assert stopped["episodes"] == 1
    (again,) = episodes_of(run)
    np.testing.assert_array_equal(again.images, first.images)


def test_a_run_moved_between_devices_names_each_leg(tmp_path, monkeypatch):
    """A run resumed on another device (here a fake one) keeps every leg in its checkpoint and
    summary; a checkpoint from before legs were recorded counts its steps as unrecorded."""
    from worldmodel import device as devices
    from worldmodel.checkpoint import save_checkpoint

    run = tmp_path / "run"
    run_online(tiny(), run, progress=False, stop_when=lambda c: c["episodes"] == 2)
    cpu = devices.describe(torch.device("cpu"))
    (leg,) = load_checkpoint(run / "checkpoint.pt")["device_legs"]
    assert (leg["device"], leg["from_env_steps"], leg["to_env_steps"]) == (cpu, 0, 2000)

    monkeypatch.setattr(devices, "describe", lambda device: "Lent GPU")
    run_online(None, run, resume=True, progress=False, stop_when=lambda c: c["episodes"] == 3)
    monkeypatch.setattr(devices, "describe", lambda device: cpu)
    summary = run_online(None, run, resume=True, progress=False)
    spans = [(x["device"], x["from_env_steps"], x["to_env_steps"]) for x in summary["device_legs"]]
    assert spans == [(cpu, 0, 2000), ("Lent GPU", 2000, 3000), (cpu, 3000, 5000)]
    assert summary["device"] == f"{cpu} (0-2k); Lent GPU (2k-3k); {cpu} (3k-5k)"
    assert sum(x["wall_seconds"] for x in summary["device_legs"]) == pytest.approx(summary["wall_seconds"])
    resumed = json.loads((run / "config.json").read_text())["resumed"]
    assert [r["device"] for r in resumed] == ["Lent GPU", cpu]

    # An older checkpoint, stopped at 2k, resumed on this CPU to the end.
    old = tmp_path / "old"
    run_online(tiny(), old, progress=False, stop_when=lambda c: c["episodes"] == 2)
    state = load_checkpoint(old / "checkpoint.pt")
    del state["device_legs"]
    save_checkpoint(old / "checkpoint.pt", state)
    summary = run_online(None, old, resume=True, progress=False)
    assert [(x["device"], x["from_env_steps"]) for x in summary["device_legs"]] == [(None, 0), (cpu, 2000)]
    assert summary["device"] == f"device not recorded (0-2k); {cpu} (2k-5k)"


def test_device_legs_merge_only_a_continuing_leg_on_the_same_device():
    from worldmodel.device_legs import describe_legs, legs_so_far

    one = legs_so_far([], "cpu", 0, 1000, 5.0)
    assert legs_so_far(one, "cpu", 1000, 2500, 2.0) == [
        {"device": "cpu", "from_env_steps": 0, "to_env_steps": 2500, "wall_seconds": 7.0}]
    two = legs_so_far(one, "gpu", 1000, 1500, 1.0)
    assert [x["device"] for x in two] == ["cpu", "gpu"] and describe_legs(two) == "cpu (0-1k); gpu (1k-1.5k)"
    assert describe_legs(one) == "cpu" and describe_legs([]) == "device not recorded"

# -- bad input -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def started_run(tmp_path_factory) -> Path:
    """A run folder stopped after its first (random) episode."""
    torch.set_num_threads(1)
    run = tmp_path_factory.mktemp("runs") / "started"
    assert run_online(tiny(), run, progress=False, stop_when=lambda c: True)["status"] == "stopped"
    return run


def test_resume_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="holds no online run.*without --resume"):
        run_online(None, tmp_path / "nothing", resume=True)
    with pytest.raises(CheckpointError, match="holds no online run"):
        main(["run", "--out", str(tmp_path / "nothing"), "--resume", "--no-progress"])


def test_resume_with_conflicting_settings_names_the_setting(started_run):
    with pytest.raises(ValueError, match="'batch_size' differs.*run has 4.*gives 5"):
        run_online(tiny(batch_size=5), started_run, resume=True)
    with pytest.raises(ValueError, match="'model_overrides' differs"):
        main(["run", "--out", str(started_run), "--resume", "--set", "model.deter_size=9"])
    with pytest.raises(ValueError, match="--preset"):
        main(["run", "--out", str(started_run), "--resume", "--preset", "planet"])


def test_resume_accepts_settings_added_since_the_run_started_and_speed_knobs(started_run, tmp_path):
    import shutil

    older = tmp_path / "older"
    shutil.copytree(started_run, older)
    stored = json.loads((older / "config.json").read_text())
    for key in ("planning_precision", "compile_planning", "channels_last"):  # a run made before they existed
        del stored["online"][key]
    (older / "config.json").write_text(json.dumps(stored))
    assert online._settle_config(tiny(), older, resume=True) == tiny()
    faster = tiny(planning_precision="bfloat16", compile_planning=True)
    assert online._settle_config(faster, older, resume=True) == faster
    with pytest.raises(ValueError, match="channels_last"):  # the optimiser's state has the old layout
        online._settle_config(tiny(channels_last=True), older, resume=True)
    assert tiny(channels_last=True, precision="bfloat16").train_config().channels_last


def test_a_run_renders_its_camera_and_evaluation_reads_it_back(started_run, tmp_path, monkeypatch):
    import envs
    from worldmodel.evaluate import run_task

    cameras, make = [], envs.make
    monkeypatch.setattr(envs, "make", lambda *a, **k: cameras.append(k.get("camera")) or make(*a, **k))
    run = tmp_path / "near"
    run_online(tiny(camera="lookatcart", env_steps=3000), run, progress=False)  # collects and evaluates
    assert len(cameras) >= 2 and set(cameras) == {"lookatcart"}  # the final evaluation films through it too
    monkeypatch.setattr(envs, "make", make)
    assert EpisodeDataset(run / online.DATA_DIR).manifest["camera"] == "lookatcart"
    assert run_task(run)["camera"] == "lookatcart" and run_task(started_run)["camera"] == 0
    near, fixed = episodes_of(run)[0], episodes_of(started_run)[0]
    np.testing.assert_array_equal(near.states[0], fixed.states[0])  # the same start (seed 0) ...
    assert np.abs(near.images[0].astype(int) - fixed.images[0].astype(int)).mean() > 5  # ... seen nearer
    with pytest.raises(ValueError, match="'camera' differs.*run has 'lookatcart'.*gives 'fixed'"):
        main(["run", "--out", str(run), "--resume", "--camera", "fixed"])
    with pytest.raises(ValueError, match="not a camera of cartpole-balance.*lookatcart"):
        run_online(tiny(camera="no_such_camera"), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad" / "config.json").exists()


def test_a_new_run_never_overwrites_an_existing_one(started_run):
    with pytest.raises(FileExistsError, match="--resume"):
        run_online(tiny(), started_run)
    with pytest.raises(FileExistsError, match="--resume"):
        main(["run", "--task", "cartpole-balance", "--env-steps", "2000", "--out", str(started_run)])


@pytest.mark.parametrize("overrides, words", [
    (dict(elites=20, candidates=10), "elites"),
    (dict(task="cartpole-upside-down"), "unknown task"),
    (dict(env_steps=0), "env_steps"),
    (dict(planner_overrides={"no_such_setting": 1}), "no_such_setting"),
    (dict(model="huge"), "small"),
    (dict(planning_precision="float16"), "precision must be one of"),
    (dict(planner_overrides={"policy_candidates": 8}), "value_target=imagined"),
])
def test_bad_settings_are_rejected_naming_them(overrides, words):
    with pytest.raises(ValueError, match=words):
        tiny(**overrides)


def test_chunks_longer_than_an_episode_are_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"chunk_length 22 exceeds the 21 observations .* <= 21"):
        run_online(tiny(chunk_length=22), tmp_path / "run", progress=False)
    # a chunk of all 21 frames of a 20-step episode fits (one window per episode)
    summary = run_online(tiny(chunk_length=21, env_steps=3000, final_eval_episodes=0), tmp_path / "ok",
                         progress=False)
    assert summary["episodes"] == 3  # 2 seed episodes, then updates on 21-frame chunks and one more


def test_presets_and_cli_overrides():
    planet = OnlineConfig.planet()
    assert (planet.seed_episodes, planet.train_steps_per_episode, planet.batch_size, planet.chunk_length,
            planet.exploration_noise, planet.horizon, planet.iterations, planet.candidates,
            planet.elites, planet.model) == (5, 100, 50, 50, 0.3, 12, 10, 1000, 100, "planet")
    assert online.planner_settings(planet) == {"candidates": 1000, "elites": 100, "iterations": 10}
    assert online.planner_settings(OnlineConfig(planner="mppi", candidates=64, elites=8)) == {
        "samples": 64, "elites": 8, "iterations": 6}
    from worldmodel.run_cli import config_overrides

    assert config_overrides(["batch_size=8", "model.free_nats=1.5", "planner.init_std=0.5"]) == {
        "batch_size": 8, "model_overrides": {"free_nats": 1.5}, "planner_overrides": {"init_std": 0.5}}
