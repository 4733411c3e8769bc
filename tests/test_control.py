"""Tests for MPC evaluation (worldmodel.control, worldmodel.evaluate) and the E2C goal helpers."""
from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

import envs
from worldmodel import ModelConfig, WorldModel
from worldmodel.control import (EvalConfig, RandomAgent, goal_tolerance, image_to_tensor,
                                mean_stderr, run_episode, summarise, tensor_to_image)
from worldmodel.e2c import goal_latent_from_image
from worldmodel.evaluate import evaluate, evaluate_model, run_task

TASK, SIZE, REPEAT = "cartpole-balance", 32, 25  # 40 env steps per 1000-simulator-step episode


def test_goal_tolerance_follows_the_e2c_protocol():
    assert goal_tolerance("pendulum-swingup") == pytest.approx(math.pi / 6)
    assert goal_tolerance("cartpole-swingup") == pytest.approx(math.pi / 10)
    assert goal_tolerance("point_mass-easy") is None


def test_image_round_trip_and_bad_images():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    x = image_to_tensor(img)
    assert x.shape == (1, 3, SIZE, SIZE) and x.min() >= -0.5 and x.max() <= 0.5
    assert np.array_equal(tensor_to_image(x[0]), img)
    with pytest.raises(ValueError, match="uint8"):
        image_to_tensor(img.astype(np.float32))


def test_read_only_and_strided_frames_convert_without_warning():
    # frames loaded from an .npz are read-only; a flipped view has negative strides
    img = np.random.default_rng(1).integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
    img.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x = image_to_tensor(img)
        flipped = image_to_tensor(img[:, ::-1])
    assert np.array_equal(tensor_to_image(x[0]), img)
    assert np.array_equal(tensor_to_image(flipped[0]), img[:, ::-1])


def test_filtered_latents_take_read_only_frames_and_actions():
    """Episodes read from an .npz are read-only; filtering them warns of nothing and gives the
    latents of writable copies (run alone: torch warns of a read-only array once per process)."""
    from worldmodel.goal_cost import filtered_latents

    torch.manual_seed(0)
    model = WorldModel(ModelConfig.small(obs_shape=(3, SIZE, SIZE), action_dim=1)).eval()
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    actions = rng.uniform(-1, 1, (3, 1)).astype(np.float32)
    expected = filtered_latents(model, list(frames.copy()), actions.copy())
    frames.flags.writeable = actions.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        latents = filtered_latents(model, list(frames), actions)
    assert latents.shape == (4, model.cfg.state_size) and torch.equal(latents, expected)


def test_mean_stderr_matches_numpy():
    x = [1.0, 4.0, 2.0, 7.0]
    mean, se = mean_stderr(x)
    assert mean == pytest.approx(np.mean(x))
    assert se == pytest.approx(np.std(x, ddof=1) / 2.0)
    assert mean_stderr([3.0]) == (3.0, 0.0)


def test_random_episode_return_and_goal_time_are_consistent():
    env = envs.make(TASK, image_size=16, action_repeat=REPEAT, seed=0)
    try:
        result = run_episode(env, RandomAgent(env.action_dim, seed=0), seed=3)
        again = run_episode(env, RandomAgent(env.action_dim, seed=0), seed=3)
    finally:
        env.close()
    assert result.steps == env.max_steps == 40
    assert 0.0 <= result.ret <= 1000.0 and 0.0 <= result.goal_time <= 1.0
    assert result.ret == again.ret  # seeded: the same episode twice
    s = summarise([result, again])
    assert s["return_mean"] == result.ret and s["return_stderr"] == 0.0


def test_run_folder_without_a_run_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="worldmodel train"):
        run_task(tmp_path)
    with pytest.raises(FileNotFoundError, match="worldmodel train"):
        evaluate(tmp_path, EvalConfig(episodes=1))


def test_a_run_is_evaluated_through_the_camera_its_data_came_from(tmp_path, monkeypatch):
    """A model trained on one camera's images sees nothing it knows through another."""
    import json

    import envs

    manifest = {"task": TASK, "image_size": SIZE, "action_repeat": REPEAT}
    for camera, expected in ((None, 0), ("lookatcart", "lookatcart")):  # None: written before the record
        run = tmp_path / str(camera)
        run.mkdir()
        recorded = manifest if camera is None else {**manifest, "camera": camera}
        (run / "config.json").write_text(json.dumps({"data_manifest": recorded}))
        assert run_task(run)["camera"] == expected
    made = []

    def record_and_stop(*args, **kwargs):  # the env's settings are all this test needs
        made.append(kwargs)
        raise RuntimeError("stop")

    monkeypatch.setattr(envs, "make", record_and_stop)
    model = WorldModel(ModelConfig.small(obs_shape=(3, SIZE, SIZE), action_dim=1))
    with pytest.raises(RuntimeError, match="stop"):
        evaluate_model(model, TASK, EvalConfig(episodes=1), image_size=SIZE, camera="lookatcart", progress=False)
    assert made[0]["camera"] == "lookatcart"


def test_unknown_planner_name_lists_the_known_ones():
    model = WorldModel(ModelConfig.small(obs_shape=(3, SIZE, SIZE), action_dim=1))
    with pytest.raises(ValueError, match="cem"):
        evaluate_model(model, TASK, EvalConfig(planner="nope", episodes=1), image_size=SIZE,
                       action_repeat=REPEAT, progress=False)


def test_evaluation_records_the_planner_settings_it_used():
    """The JSON must say which planner budget produced a return (it once recorded {})."""
    model = WorldModel(ModelConfig.small(obs_shape=(3, SIZE, SIZE), action_dim=1))
    config = EvalConfig(planner="cem", planner_overrides={"candidates": 7, "elites": 3, "iterations": 2},
                        episodes=1, oracle_episodes=0, max_steps=2, horizon=3)
    out = evaluate_model(model, TASK, config, image_size=SIZE, action_repeat=REPEAT, progress=False)
    settings = out["planner_settings"]
    assert (settings["candidates"], settings["elites"], settings["iterations"]) == (7, 3, 2)
    assert out["horizon"] == 3 and out["oracle_ratio"] is None
    # more oracle or random episodes than learned ones: each kind gets as many as asked
    # (the oracle was once cut silently to --episodes)
    more = evaluate_model(model, TASK, replace(config, oracle_episodes=2, random_episodes=3), image_size=SIZE,
                          action_repeat=REPEAT, progress=False)
    assert (more["episodes"], more["oracle_episodes"], len(more["random"]["returns"])) == (1, 2, 3)
    # the ratio pairs episodes that share a start: learned episode 0 over oracle episode 0 here
    assert more["oracle_ratio_episodes"] == 1
    assert more["oracle_ratio"] == pytest.approx(more["returns"][0] / more["oracle"]["returns"][0])
    assert out["terminal_value"] is False  # no value head
    valued = WorldModel(ModelConfig.small(obs_shape=(3, SIZE, SIZE), action_dim=1, value_head=True))
    for wanted in (True, False):
        got = evaluate_model(valued, TASK, replace(config, terminal_value=wanted), image_size=SIZE,
                             action_repeat=REPEAT, progress=False)
        assert got["terminal_value"] is wanted
    assert (config.result_name, replace(config, terminal_value=False).result_name) == (
        "cem", "cem_no_terminal_value")  # the file stems under <run>/eval
    assert replace(config, name="cem_policy50").result_name == "cem_policy50"
    with pytest.raises(ValueError, match="file stem"):
        replace(config, name="../elsewhere")


def test_the_oracle_plans_without_the_actors_proposals_it_cannot_have():
    # the simulator has no actor: asking for policy_candidates once crashed at the first oracle
    # episode, after every learned one had run
    model = WorldModel(ModelConfig.small(obs_shape=(3, SIZE, SIZE), action_dim=1, value_head=True,
                                         value_target="imagined"))
    config = EvalConfig(planner="cem", planner_overrides={"candidates": 7, "elites": 3, "iterations": 2,
                                                          "policy_candidates": 2},
                        episodes=1, oracle_episodes=1, max_steps=2, horizon=3)
    out = evaluate_model(model, TASK, config, image_size=SIZE, action_repeat=REPEAT, progress=False)
    assert out["planner_settings"]["policy_candidates"] == 2
    assert out["oracle_planner_settings"]["policy_candidates"] == 0 and out["oracle_episodes"] == 1
    actor_only = replace(config, planner="random", planner_overrides={"candidates": 0, "policy_candidates": 2})
    with pytest.raises(ValueError, match="no actor.*--oracle-episodes 0"):  # before any episode runs
        evaluate_model(model, TASK, actor_only, image_size=SIZE, action_repeat=REPEAT, progress=False)
    out = evaluate_model(model, TASK, replace(actor_only, oracle_episodes=0), image_size=SIZE,
                         action_repeat=REPEAT, progress=False)
    assert out["oracle_episodes"] == 0 and "oracle_planner_settings" not in out


@pytest.mark.parametrize("bad, words", [(dict(oracle_episodes=-1), "oracle_episodes and random_episodes"),
                                        (dict(random_episodes=-3), "oracle_episodes and random_episodes"),
                                        (dict(max_steps=0), "max_steps must be None")])
def test_negative_episode_counts_and_empty_episodes_are_rejected(bad, words):
    with pytest.raises(ValueError, match=words):  # -1 once sliced off one oracle episode silently
        EvalConfig(**bad)


def test_ilqr_differentiates_the_learned_model_inside_the_evaluation_loop():
    # the agent acts under inference_mode; iLQR's derivatives leave it in planners.rollout
    model = WorldModel(ModelConfig.small(obs_shape=(3, SIZE, SIZE), action_dim=1))
    config = EvalConfig(planner="ilqr", planner_overrides={"iterations": 2}, episodes=1, oracle_episodes=0,
                        max_steps=2, horizon=3)
    out = evaluate_model(model, TASK, config, image_size=SIZE, action_repeat=REPEAT, progress=False)
    assert np.isfinite(out["returns"][0]) and out["planner_settings"]["iterations"] == 2


def test_goal_image_of_the_wrong_size_is_rejected():
    model = WorldModel(ModelConfig.small(transition="locally_linear", obs_shape=(3, SIZE, SIZE),
                                         action_dim=1))
    with pytest.raises(ValueError, match="training size"):
        goal_latent_from_image(model, np.zeros((48, 48, 3), np.uint8))
    goal = goal_latent_from_image(model, np.zeros((SIZE, SIZE, 3), np.uint8))
    assert goal.shape == (model.state_size,)
