"""Tests for envs: the pixel dm_control tasks behind the Gymnasium API."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import envs

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["pendulum-swingup", "cartpole-swingup", "cartpole-balance", "point_mass-easy"]
SIZE = 16  # small images keep the software renderer fast
STATE_DIM = {"pendulum-swingup": 2, "cartpole-swingup": 4, "cartpole-balance": 4,
             "point_mass-easy": 4}


def _actions(env, n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, env.action_dim).astype(np.float32) for _ in range(n)]


def _run(env, actions):
    out = [env.step(a) for a in actions]
    return [o[0] for o in out], [o[1] for o in out], [o[4]["state"] for o in out]


def test_registry_names_and_unknown_task():
    assert set(TASKS) <= set(envs.names())
    with pytest.raises(ValueError) as e:
        envs.make("pendulum-upswing")
    for name in envs.names():
        assert name in str(e.value)


def test_import_is_cheap_and_sets_egl():
    code = ("import os, sys, envs; assert 'dm_control' not in sys.modules, 'dm_control imported'; "
            "print(os.environ['MUJOCO_GL'])")
    env = {k: v for k, v in os.environ.items() if k != "MUJOCO_GL"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "egl"


@pytest.mark.parametrize("name", TASKS)
def test_reset_step_shapes_dtypes_and_info(name):
    env = envs.make(name, image_size=SIZE, seed=0)
    assert env.name == name and env.image_size == SIZE
    assert env.max_steps == 1000 // env.action_repeat
    assert env.state_dim == STATE_DIM[name]
    assert env.observation_space.shape == (SIZE, SIZE, 3)
    assert env.observation_space.dtype == np.uint8
    assert env.action_space.shape == (env.action_dim,) and env.action_space.dtype == np.float32
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    obs, info = env.reset()
    assert obs.shape == (SIZE, SIZE, 3) and obs.dtype == np.uint8 and obs.std() > 0
    assert info["state"].dtype == np.float64 and info["state"].shape == (env.state_dim,)
    assert info["sim_steps"] == 0 and info["clipped"] == 0
    assert ("angle" in info) == (not name.startswith("point_mass"))
    for k, a in enumerate(_actions(env, 3), start=1):
        obs, reward, terminated, truncated, info = env.step(a)
        assert obs.shape == (SIZE, SIZE, 3) and obs.dtype == np.uint8
        assert isinstance(reward, float) and 0.0 <= reward <= env.action_repeat
        assert terminated is False and truncated is False
        assert info["sim_steps"] == k * env.action_repeat
        assert np.array_equal(info["state"], np.concatenate([env.physics.data.qpos,
                                                             env.physics.data.qvel]))
        if "angle" in info:
            assert -np.pi < info["angle"] <= np.pi
    env.close()


@pytest.mark.parametrize("name", TASKS)
def test_full_episode_is_1000_sim_steps_and_truncates(name):
    env = envs.make(name, image_size=SIZE, seed=1, render_state=False)
    obs, _ = env.reset()
    assert not obs.any()  # render_state=False: zero images
    total = 0.0
    for t, a in enumerate(_actions(env, env.max_steps), start=1):
        obs, reward, terminated, truncated, info = env.step(a)
        assert 0.0 <= reward <= env.action_repeat
        assert terminated is False
        assert truncated is (t == env.max_steps)
        total += reward
    assert info["sim_steps"] == 1000 and 0.0 <= total <= 1000.0
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(env.action_dim))
    env.reset()  # and the env is usable again
    env.step(np.zeros(env.action_dim))


def test_action_repeat_override_sets_episode_length():
    env = envs.make("pendulum-swingup", action_repeat=3, render_state=False, seed=0)
    assert env.action_repeat == 3 and env.max_steps == 333
    with pytest.raises(ValueError, match="action_repeat"):
        envs.make("pendulum-swingup", action_repeat=0)


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_episode_different_seed_differs(name):
    a, b, c = (envs.make(name, image_size=SIZE, seed=s) for s in (7, 7, 8))
    acts = _actions(a, 4)
    oa, ob, oc = a.reset()[0], b.reset()[0], c.reset()[0]
    ia, ra, _ = _run(a, acts)
    ib, rb, _ = _run(b, acts)
    ic, rc, _ = _run(c, acts)
    assert np.array_equal(oa, ob) and all(np.array_equal(x, y) for x, y in zip(ia, ib))
    assert ra == rb
    assert not np.array_equal(oa, oc) or not all(np.array_equal(x, y) for x, y in zip(ia, ic))
    # reset(seed=) reseeds: the third env replays the first one's episode
    assert np.array_equal(c.reset(seed=7)[0], oa)
    ic2, rc2, _ = _run(c, acts)
    assert all(np.array_equal(x, y) for x, y in zip(ia, ic2)) and rc2 == ra
    for e in (a, b, c):
        e.close()


@pytest.mark.parametrize("name", TASKS)
def test_sim_state_restore_is_bit_identical(name):
    env = envs.make(name, image_size=SIZE, seed=3)
    env.reset()
    _run(env, _actions(env, 5, seed=1))
    saved = env.get_sim_state()
    acts = _actions(env, 3, seed=2)
    images1, rewards1, states1 = _run(env, acts)
    _run(env, _actions(env, 4, seed=5))  # wander off
    env.set_sim_state(saved)
    images2, rewards2, states2 = _run(env, acts)
    assert rewards1 == rewards2
    assert all(np.array_equal(x, y) for x, y in zip(images1, images2))
    assert all(np.array_equal(x, y) for x, y in zip(states1, states2))
    # a second env of the same task, restored from the vector, steps identically too
    other = envs.make(name, image_size=SIZE, seed=99)
    other.reset(sim_state=saved)
    images3, rewards3, _ = _run(other, acts)
    assert rewards3 == rewards1 and all(np.array_equal(x, y) for x, y in zip(images1, images3))
    env.close(), other.close()


def test_sim_state_keeps_step_counter_and_rejects_bad_vectors():
    env = envs.make("cartpole-balance", render_state=False, seed=0)
    env.reset()
    for a in _actions(env, env.max_steps - 1):
        env.step(a)
    s = env.get_sim_state()
    env.reset()
    env.set_sim_state(s)  # counter restored: one step left
    assert env.step(np.zeros(1))[3] is True
    env.reset(sim_state=s)  # a new episode from that state starts at step 0
    assert env.step(np.zeros(1))[3] is False
    with pytest.raises(ValueError, match="shape"):
        env.set_sim_state(s[:-2])
    bad = s.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="finite"):
        env.set_sim_state(bad)


@pytest.mark.parametrize("action", [np.array([np.nan]), np.array([np.inf]),
                                    np.zeros(2), np.zeros((1, 1)), "left"])
def test_bad_actions_raise_value_error(action):
    env = envs.make("pendulum-swingup", render_state=False, seed=0)
    env.reset()
    before = env.get_sim_state()
    with pytest.raises(ValueError, match=r"\(1,\)"):
        env.step(action)
    assert np.array_equal(env.get_sim_state(), before)  # nothing was applied


def test_out_of_range_actions_are_clipped_and_counted():
    env = envs.make("point_mass-easy", render_state=False, seed=0)
    env.reset()
    s = env.get_sim_state()
    *_, info_big = env.step(np.array([3.0, -0.5]))
    after_big = env.get_sim_state()
    env.set_sim_state(s)
    *_, info_ok = env.step(np.array([1.0, -0.5]))
    assert info_big["clipped"] == 1 and info_ok["clipped"] == 0
    assert np.array_equal(after_big, env.get_sim_state())
    *_, info = env.step(np.array([-7.0, 2.0]))
    assert info["clipped"] == 2


@pytest.mark.parametrize("name", ["pendulum-swingup", "cartpole-swingup"])
def test_angle_convention_zero_is_upright(name):
    """Hinge qpos 0 is upright: cos(angle) is dm_control's own 'pole up' measure, and the
    reward from rest upright is the maximum, from rest hanging (angle π) it is 0."""
    env = envs.make(name, render_state=False, seed=0)
    env.reset()
    j = env.task_spec.angle_qpos
    up_cos = (lambda p: p.pole_vertical()) if name.startswith("pendulum") else (
        lambda p: p.pole_angle_cosine()[0])
    for q in (0.0, 0.7, np.pi, -2.5, 2 * np.pi + 0.3):
        env.physics.data.qpos[j] = q
        env.physics.data.qvel[:] = 0.0
        env.physics.forward()
        assert up_cos(env.physics) == pytest.approx(np.cos(q), abs=1e-12)
        info = env.reset(sim_state=env.get_sim_state())[1]
        wrapped = np.angle(np.exp(1j * q))
        assert info["angle"] == pytest.approx(np.pi if np.isclose(abs(wrapped), np.pi) else wrapped)
    for q, lo, hi in ((0.0, env.action_repeat - 1e-9, env.action_repeat), (np.pi, 0.0, 1e-3)):
        env.physics.data.qpos[:] = 0.0
        env.physics.data.qpos[j] = q
        env.physics.data.qvel[:] = 0.0
        env.physics.forward()
        env.reset(sim_state=env.get_sim_state())
        assert lo <= env.step(np.zeros(1))[1] <= hi


def test_render_failure_names_backends_and_packages():
    code = "import envs; envs.make('pendulum-swingup').reset()"
    env = {**os.environ, "MUJOCO_GL": "no-such-backend"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError")
    for word in ("egl", "osmesa", "glfw", "libegl1", "libosmesa6", "no-such-backend"):
        assert word in last


def test_pc3_pendulum_has_pc3s_torque_and_holds_the_pole_level():
    """pendulum-swingup_pc3 rescales only the motor: its torque is 1.33 times gravity's largest
    (PC3's 0.65 N·m against m·g·l = 0.49), dm_control's is 1 / 4.905. Held level at rest with
    full torque against gravity, the strong motor lifts the pole and the stock one cannot."""
    from envs.pixel_env import gravity_torque, max_torque
    from envs.rollout import pose_state

    lifts = {}
    for name, ratio in (("pendulum-swingup", 1 / 4.905), ("pendulum-swingup_pc3", 0.65 / 0.4905)):
        env = envs.make(name, render_state=False, seed=0)
        assert max_torque(env.physics) / gravity_torque(env.physics) == pytest.approx(ratio, rel=1e-9)
        env.reset(sim_state=pose_state(env, np.pi / 2))
        for _ in range(3):
            info = env.step(-np.ones(1))[4]  # the torque that turns the pole back to upright
        lifts[name] = np.pi / 2 - abs(info["angle"])
        env.close()
    assert lifts["pendulum-swingup_pc3"] > 0.05 and lifts["pendulum-swingup"] < -0.05, lifts
    cartpole = envs.make("cartpole-balance", render_state=False, seed=0)
    with pytest.raises(ValueError, match="does not turn a hinge"):
        gravity_torque(cartpole.physics)  # its motor pushes the cart along a slider
    cartpole.close()
