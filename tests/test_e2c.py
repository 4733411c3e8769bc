"""Tests for the E2C-style workflow (worldmodel.e2c, e2c_config, e2c_oracle, goal_cost): the
start/goal protocol, its settings, its oracle and its diagnostics."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch
from PIL import Image

import envs
from worldmodel import ModelConfig, WorldModel
from worldmodel.data import EpisodeDataset
from worldmodel.e2c import pose_state


def test_recorded_goal_episode_keeps_the_true_states_and_the_latents_it_planned_from():
    """`goal_episode(record=True)`: one true state and one filtered latent per step, the first of
    them the filter of the first frame, the angles those of the states (for the closed-loop
    read-out errors of benchmarks/e2c_oracle_handicap.py)."""
    import planners
    from worldmodel.control import image_to_tensor
    from worldmodel.e2c import E2CConfig, goal_episode, start_states

    torch.manual_seed(0)
    model = WorldModel(ModelConfig.small(transition="locally_linear", obs_shape=(3, 32, 32), action_dim=1)).eval()
    env = envs.make("pendulum-swingup", image_size=32)
    config = E2CConfig(start="balance", steps=4, pairs=1, horizon=3, replan_every=2)
    start = start_states(env, config)[0]
    goal = torch.zeros(model.state_size)
    out = goal_episode(model, env, planners.make("ilqr", iterations=2), goal, start, config, seed=0, record=True)
    assert out["states"].shape == (5, 2) and out["latents"].shape == (5, model.state_size)
    assert out["actions"].shape == (4, 1) and np.all(np.abs(out["actions"]) <= 1)
    np.testing.assert_allclose(out["angles"], np.remainder(out["states"][:, 0] + np.pi, 2 * np.pi) - np.pi,
                               atol=1e-9)
    obs, _ = env.reset(sim_state=start)
    with torch.no_grad():
        first = model.to_vector(model.filter_step(None, None, image_to_tensor(obs)))[0]
    np.testing.assert_allclose(out["latents"][0], first.numpy(), rtol=1e-5, atol=1e-6)
    assert "latents" not in goal_episode(model, env, planners.make("ilqr", iterations=2), goal, start, config, seed=0)
    env.close()


def test_pose_state_puts_the_pole_where_asked():
    env = envs.make("pendulum-swingup", image_size=16)
    try:
        _, info = env.reset(sim_state=pose_state(env, 0.9 * math.pi))
    finally:
        env.close()
    assert info["angle"] == pytest.approx(0.9 * math.pi)
    assert info["state"][1] == 0.0  # at rest


@pytest.mark.slow
def test_e2c_quick_run_writes_its_protocol_results(tmp_path):
    import json

    from worldmodel.e2c import E2CConfig, run_e2c

    config = E2CConfig.quick(kl_balance=0.5, overshooting_distance=3, upright_episodes=1,
                             upright_policy="balance", swingup_episodes=1, predictive_coding_scale=0.5)
    result = run_e2c(config, tmp_path, progress=False)
    model_config = json.loads((tmp_path / "run" / "config.json").read_text())["model"]
    assert (model_config["free_nats"], model_config["kl_balance"], model_config["overshooting_distance"],
            model_config["predictive_coding_scale"]) == (config.free_nats, 0.5, 3, 0.5)
    assert model_config["transition"] == "locally_linear"
    on_disk = json.loads((tmp_path / "e2c_swingup.json").read_text())
    assert on_disk["goal_time_percent"] == result["goal_time_percent"]
    assert len(result["goal_time_percent"]) == config.pairs
    assert all(0.0 <= g <= 100.0 for g in result["goal_time_percent"])
    assert on_disk["published"]["PC3"] == [58.4, 84.0]
    assert on_disk["versions"]["mujoco"] != "not installed"  # the simulator's version is part of the result
    from worldmodel.provenance import data_fingerprint
    assert on_disk["data_fingerprint"] == {"train": data_fingerprint(EpisodeDataset(tmp_path / "data").episodes),
                                           "heldout": data_fingerprint(EpisodeDataset(tmp_path / "heldout").episodes)}
    assert on_disk["machine"]["torch_threads"] == torch.get_num_threads()
    from worldmodel.e2c import stored_run  # what diagnostics reload: the settings and the result
    assert stored_run(tmp_path) == (config, on_disk)
    assert stored_run(tmp_path, horizon=7)[0] == replace(config, horizon=7)
    with pytest.raises(FileNotFoundError, match="no e2c_swingup.json or e2c_balance.json"):
        stored_run(tmp_path / "run")
    sides = on_disk["goal_cost_by_side"]  # the pole held still on each side of upright, as the goal is
    assert len(sides["angles"]) == len(sides["costs"]) == 12 and all(c >= 0 for c in sides["costs"])
    assert sides["ratio"] >= 1 and sides["across_top"] >= 1
    assert all(np.isfinite(v) for v in result["latent_r2"].values())
    assert len(on_disk["oracle_goal_time_percent"]) == config.oracle_pairs
    assert all(0 <= e["plans_with_infinite_cost"] <= e["plans"] and e["plans"] >= 1 for e in result["episodes"])
    # how high each episode got: |angle| in [0, π], and below it only if the goal region was reached
    assert all(0.0 <= e["min_abs_angle"] <= np.pi + 1e-6 for e in result["episodes"])
    assert all((e["min_abs_angle"] < np.pi / 6) == (e["goal_time"] > 0) for e in result["episodes"])
    assert all(0.0 <= e["longest_stay"] <= e["goal_time"] and e["turns"] >= 0 for e in result["episodes"])
    # the short training episodes (E2C-style data) and the held-out set for the geometry
    assert {e.length for e in EpisodeDataset(tmp_path / "data").episodes} == {config.episode_steps}
    assert len(EpisodeDataset(tmp_path / "heldout")) == config.heldout_episodes
    assert (tmp_path / "pictures" / "latent_geometry.png").stat().st_size > 0
    # the goal-cost diagnostic: by pose, and along the recorded oracle episode
    assert len(on_disk["goal_cost_by_angle_bin"]) == 6
    assert all(c is None or c >= 0 for c in on_disk["goal_cost_by_angle_bin"])
    path = on_disk["oracle_path"]
    assert len(path["angle"]) == len(path["latent_goal_cost"]) == config.steps + 1
    assert Image.open(on_disk["pictures"]["goal_cost"]).size[0] > 0
    assert result["goal"]["kind"] == "image" and result["goal"]["drift"] >= 0
    # a re-run reuses the data (random starts, then the upright ones) and the trained model;
    # this one follows iLQR's gains between replans, towards the latent the model holds still
    again = run_e2c(replace(config, feedback=True, goal="equilibrium"), tmp_path, progress=False)
    data = EpisodeDataset(tmp_path / "data")
    assert len(data) == config.episodes + config.upright_episodes + config.swingup_episodes
    assert [e.meta.get("start_angles") is not None for e in data.episodes] == [False] * config.episodes + [True, False]
    assert [e.meta["policy"] for e in data.episodes] == ["random"] * config.episodes + ["balance", "swingup"]
    with pytest.raises(ValueError, match="episode 4 recorded with other settings: policy 'balance'"):
        run_e2c(replace(config, upright_policy="random"), tmp_path, progress=False)
    assert again["settings"]["feedback"] and all(e["plans"] >= 1 for e in again["episodes"])
    goal = again["goal"]
    assert goal["image_goal_drift"] == pytest.approx(result["goal"]["drift"])
    assert goal["drift"] < goal["image_goal_drift"] and goal["distance_from_image_goal"] > 0


def test_e2c_oracle_holds_the_pendulum_upright_and_swings_it_from_hanging():
    """The protocol's ceiling: iLQR MPC on the true simulator with the quadratic angle cost."""
    import planners
    from worldmodel.e2c import E2CConfig, start_states
    from worldmodel.e2c_oracle import oracle_goal_episode

    env = envs.make("pendulum-swingup", image_size=32)
    planner = planners.make("ilqr", iterations=20)
    balance = E2CConfig(start="balance", steps=20, pairs=1)
    held = oracle_goal_episode(env, planner, start_states(env, balance)[0], balance, seed=0)
    assert held["goal_time"] == 1.0
    swing = E2CConfig(steps=100, pairs=1)
    swung = oracle_goal_episode(env, planner, start_states(env, swing)[0], swing, seed=0)
    assert swung["goal_time"] > 0.1 and abs(swung["final_angle"]) < math.pi / 6
    env.close()


def test_handicapped_oracle_holds_the_pole_where_it_believes_upright_to_be():
    """OracleHandicap: told an angle b too large, the true-simulator planner (replanning every step)
    comes to rest with the pole beyond -b, where its push back towards the angle it believes
    upright holds the real pole against gravity (measured -0.085 for b = 0.05); the default
    handicap is the plain oracle, noise is seeded, and impossible handicaps are refused."""
    import planners
    from worldmodel.e2c import E2CConfig, start_states
    from worldmodel.e2c_oracle import OracleHandicap, oracle_goal_episode

    env = envs.make("pendulum-swingup", image_size=32)
    planner = planners.make("ilqr", iterations=20)
    config = E2CConfig(start="balance", steps=30, pairs=1, replan_every=1)
    start = start_states(env, config)[0]
    plain = oracle_goal_episode(env, planner, start, config, seed=0, record=True)
    same = oracle_goal_episode(env, planner, start, config, seed=0, record=True, handicap=OracleHandicap())
    np.testing.assert_array_equal(plain["angles"], same["angles"])
    assert abs(plain["final_angle"]) < 1e-3
    offset = oracle_goal_episode(env, planner, start, config, seed=0, record=True,
                                 handicap=OracleHandicap(angle_bias=0.05))
    assert offset["goal_time"] == 1.0 and -0.15 < offset["final_angle"] < -0.05
    assert np.ptp(offset["angles"][-10:]) < 1e-3  # at rest there, not falling
    assert np.all(offset["actions"][-10:] > 0.1)  # held by a steady push the other way
    noisy = OracleHandicap(angle_noise=0.02, velocity_noise=0.2)
    first, again = (oracle_goal_episode(env, planner, start, config, seed=3, record=True, handicap=noisy)
                    for _ in range(2))
    np.testing.assert_array_equal(first["angles"], again["angles"])
    assert not np.array_equal(first["angles"], plain["angles"])
    # a perception that tells the truth is the plain oracle; one that adds b to the angle, the bias b
    def truth(obs, action, bias=0.0, velocity_bias=0.0):
        return float(env.state[0]) + bias, float(env.state[1]) + velocity_bias

    told = oracle_goal_episode(env, planner, start, config, seed=0, record=True, estimate=truth)
    np.testing.assert_array_equal(told["angles"], plain["angles"])
    assert told["estimates"].shape == (len(told["angles"]), 2)
    biased = oracle_goal_episode(env, planner, start, config, seed=0, record=True,
                                 estimate=lambda obs, action: truth(obs, action, 0.05))
    np.testing.assert_allclose(biased["angles"], offset["angles"], atol=1e-9)
    fast = oracle_goal_episode(env, planner, start, config, seed=0, record=True,
                               handicap=OracleHandicap(velocity_bias=0.3))
    told_fast = oracle_goal_episode(env, planner, start, config, seed=0, record=True,
                                    estimate=lambda obs, action: truth(obs, action, velocity_bias=0.3))
    np.testing.assert_allclose(fast["angles"], told_fast["angles"], atol=1e-9)
    assert np.abs(fast["angles"] - plain["angles"]).max() > 1e-3  # the bias changes what it does
    env.close()
    for bad, match in (({"actuator_gain": 0.0}, "actuator_gain must be > 0"),
                       ({"gravity_gain": -1.0}, "gravity_gain must be > 0"),
                       ({"angle_noise": -0.1}, "angle_noise is a standard deviation"),
                       ({"velocity_noise": float("nan")}, "velocity_noise is a standard deviation"),
                       ({"angle_bias": float("inf")}, "angle_bias must be a finite angle"),
                       ({"velocity_bias": float("nan")}, "velocity_bias must be a finite velocity")):
        with pytest.raises(ValueError, match=match):
            OracleHandicap(**bad)


def test_e2c_env_takes_the_configured_action_repeat():
    """PCC/PC3 act every 0.02 s: `action_repeat` reaches the protocol's env (and the data)."""
    from worldmodel.e2c import E2CConfig, make_env

    for repeat, expected in ((None, 4), (1, 1)):
        env = make_env(E2CConfig(task="pendulum-swingup_pc3", action_repeat=repeat))
        assert env.action_repeat == expected and env.max_steps == 1000 // expected
        env.close()


def test_e2c_settings_follow_the_task_and_refuse_a_task_without_a_pole():
    from worldmodel.e2c import E2CConfig

    cartpole = E2CConfig.for_task("cartpole-balance", start="balance")
    assert (cartpole.image_size, cartpole.replan_every, cartpole.steps) == (80, 5, 125)
    assert E2CConfig.for_task("pendulum-swingup") == E2CConfig()
    quick = E2CConfig.for_task("cartpole-balance", quick=True, seed=3)
    assert (quick.image_size, quick.train_steps, quick.seed) == (80, E2CConfig.quick().train_steps, 3)
    with pytest.raises(ValueError, match="point_mass-easy"):
        E2CConfig.for_task("point_mass-easy")
    from worldmodel.e2c import make_planner, published_for

    assert published_for("cartpole-balance", "balance") == {"PC3": (96.3, 97.8)}
    assert published_for("cartpole-balance", "swingup") == {}  # once compared with the balance row
    assert published_for("pendulum-swingup", "swingup")["PC3"] == (58.4, 84.0)
    assert published_for("pendulum-swingup_pc3", "balance") == {"PC3": (99.1, 100.0)}

    assert make_planner(E2CConfig()).iterations == 20  # the protocol's iLQR
    cem = make_planner(E2CConfig(planner="cem", planner_overrides={"candidates": 50, "elites": 5}))
    assert (type(cem).__name__, cem.candidates, cem.elites) == ("CEM", 50, 5)
    assert make_planner(E2CConfig(feedback=True)).feedback  # iLQR returns its gains
    with pytest.raises(ValueError, match="feedback between replans needs planner 'ilqr'"):
        make_planner(E2CConfig(planner="cem", feedback=True))
    with pytest.raises(ValueError, match=r"goal must be one of \('image', 'equilibrium'\), got 'pixels'"):
        E2CConfig(goal="pixels")
    # protocol settings that once failed only after training (or gave a NaN mean, or 9 oracle pairs)
    for bad, words in ((dict(pairs=0), "pairs must be >= 1"), (dict(steps=0), "steps must be >= 1"),
                       (dict(replan_every=30), r"replan_every \(30\) cannot exceed the horizon \(25\)"),
                       (dict(oracle_pairs=-1), "oracle_pairs must be >= 0")):
        with pytest.raises(ValueError, match=words):
            E2CConfig(**bad)
    # uniform start states (E2C/PCC/PC3's sampling): angle over the circle, velocity in ±v
    assert E2CConfig().start_pose() == {}
    assert E2CConfig(start_velocity=2.0).start_pose() == {"start_angles": (-math.pi, math.pi),
                                                          "start_velocities": (-2.0, 2.0)}
    with pytest.raises(ValueError, match="start_velocity must be None .* got -1.0"):
        E2CConfig(start_velocity=-1.0)
    # PC3's cart-pole data: the pole only near upright, turning fast
    assert E2CConfig(start_velocity=6.0, start_angle=0.3).start_pose() == {
        "start_angles": (-0.3, 0.3), "start_velocities": (-6.0, 6.0)}
    with pytest.raises(ValueError, match="start_angle=0.3 needs start_velocity"):
        E2CConfig(start_angle=0.3)
    for bad in (0.0, -0.1, 4.0):
        with pytest.raises(ValueError, match=f"start_angle must be in \\(0, π\\].* got {bad}"):
            E2CConfig(start_velocity=1.0, start_angle=bad)
    # the upright episodes' actions: collect's policy names; the balancing controller needs a pendulum
    from worldmodel.collect import POLICIES
    from worldmodel.e2c_config import UPRIGHT_POLICIES
    assert UPRIGHT_POLICIES == POLICIES
    with pytest.raises(ValueError, match=r"upright_policy must be one of \('random', 'balance', 'swingup'\), got 'pd'"):
        E2CConfig(upright_policy="pd")
    assert E2CConfig.for_task("cartpole-balance", upright_policy="balance").upright_policy == "balance"
    with pytest.raises(ValueError, match="gains only for the domains .*; point_mass-easy needs upright_policy='random'"):
        E2CConfig(task="point_mass-easy", upright_policy="balance")
    with pytest.raises(ValueError, match="upright_policy='swingup' needs the pendulum domain"):
        E2CConfig.for_task("cartpole-balance", upright_policy="swingup")
    with pytest.raises(ValueError, match="swingup_episodes needs the pendulum domain"):
        E2CConfig.for_task("cartpole-balance", swingup_episodes=10)
    with pytest.raises(ValueError, match="swingup_episodes must be >= 0"):
        E2CConfig(swingup_episodes=-1)
    # an image size the conv stack has no plan for is refused before any data is collected
    assert E2CConfig.for_task("cartpole-balance", image_size=128).image_size == 128
    with pytest.raises(ValueError, match=r"image_size must be one of \(32, 48, 64, 80, 84, 128\).* got 100"):
        E2CConfig.for_task("cartpole-balance", image_size=100)


def test_stored_run_reads_a_folder_with_only_tagged_results(tmp_path):
    """A folder run only with --tag still reloads for the diagnostics; an untagged result wins."""
    import json
    from dataclasses import asdict

    from worldmodel.e2c import E2CConfig, stored_run

    def write(name, **settings):
        config = E2CConfig(**settings)
        (tmp_path / name).write_text(json.dumps({"settings": asdict(config), "name": name}))
        return config

    with pytest.raises(FileNotFoundError, match="nor a tagged"):
        stored_run(tmp_path)
    tagged = write("e2c_balance_replan1.json", image_size=64, replan_every=1, start="balance")
    write("e2c_balance_zz.json", image_size=64, replan_every=3, start="balance")
    config, result = stored_run(tmp_path, pairs=2)
    assert config == replace(tagged, pairs=2) and result["name"] == "e2c_balance_replan1.json"
    untagged = write("e2c_balance.json", image_size=64, start="balance")
    assert stored_run(tmp_path) == (untagged, {"settings": asdict(untagged), "name": "e2c_balance.json"})


def test_e2c_result_tag_names_a_second_file_and_a_bad_tag_fails_before_any_work(tmp_path):
    from worldmodel.e2c import E2CConfig, result_path, run_e2c

    assert result_path(tmp_path, "balance") == tmp_path / "e2c_balance.json"
    assert result_path(tmp_path, "balance", "20s") == tmp_path / "e2c_balance_20s.json"
    for bad in ("../up", "a/b", "", ".hidden", "two words"):
        with pytest.raises(ValueError, match="plain file-name part"):
            result_path(tmp_path, "swingup", bad)
    with pytest.raises(ValueError, match="plain file-name part"):
        run_e2c(E2CConfig.quick(), tmp_path / "run", progress=False, tag="../escape")
    assert not (tmp_path / "run").exists()  # nothing collected, trained or written


def test_e2c_oracle_balances_the_cartpole_from_upright():
    """The cart-pole protocol's ceiling: iLQR MPC on the true simulator keeps the pole upright."""
    import planners
    from worldmodel.e2c import E2CConfig, start_states
    from worldmodel.e2c_oracle import oracle_goal_episode

    env = envs.make("cartpole-balance", image_size=32)
    config = E2CConfig.for_task("cartpole-balance", start="balance", steps=20, pairs=1)
    held = oracle_goal_episode(env, planners.make("ilqr", iterations=20), start_states(env, config)[0],
                               config, seed=0)
    env.close()
    assert held["goal_time"] == 1.0 and abs(held["final_angle"]) < 0.05


def test_goal_cost_by_angle_of_a_ring_latent_rises_from_upright_to_hanging():
    """A latent that lays the angle on a unit ring: ‖z − z_goal‖² = 2 − 2 cos θ, by bin."""
    from worldmodel.goal_cost import goal_cost_by_angle

    theta = np.linspace(-np.pi, np.pi, 6001)
    states = np.stack([theta, np.zeros_like(theta)], 1)  # pendulum: qpos, qvel
    latents = np.stack([np.cos(theta), np.sin(theta)], 1)
    bins = goal_cost_by_angle(latents, states, np.array([1.0, 0.0]), "pendulum-swingup")
    edges = np.linspace(0, np.pi, 7)
    for b, cost in enumerate(bins):  # the bin mean of 2 − 2cos θ over a uniform θ in the bin
        lo, hi = edges[b], edges[b + 1]
        want = 2 - 2 * (np.sin(hi) - np.sin(lo)) / (hi - lo)
        assert cost == pytest.approx(want, rel=1e-2)
    assert bins == sorted(bins)
    only_upright = goal_cost_by_angle(latents[:10] * 0, states[2995:3005], np.zeros(2), "pendulum-swingup")
    assert only_upright[0] == 0.0 and only_upright[1:] == [None] * 5
    with pytest.raises(ValueError, match="no pole angle"):
        goal_cost_by_angle(latents, states, np.zeros(2), "point_mass-easy")


def test_goal_region_stats_tell_a_held_pole_from_a_spinning_one():
    from worldmodel.control import goal_region_stats

    tol = np.pi / 6
    held = goal_region_stats(np.array([0.0, 0.1, -0.1, 0.2, 0.0]), tol)
    assert held == {"goal_time": 1.0, "longest_stay": 1.0, "turns": 0}
    # two full turns at 0.5 rad per step, wrapped to (-π, π]: in the goal region about 1/6 of the time
    spin = np.pi - np.mod(np.pi - 0.5 * np.arange(26), 2 * np.pi)
    out = goal_region_stats(spin, tol)
    assert out["turns"] == 2 and out["longest_stay"] == pytest.approx(2 / 25)
    inside = np.abs(spin[1:]) < tol
    assert out["goal_time"] == inside.mean()
    assert out["longest_stay"] < inside.mean()  # it was in the goal region, but never for long
    assert goal_region_stats(np.array([3.0, 3.1, -3.1]), tol) == {"goal_time": 0.0, "longest_stay": 0.0, "turns": 1}
