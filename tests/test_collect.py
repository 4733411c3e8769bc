"""Tests for worldmodel.collect: episodes from pixel tasks into a dataset folder."""
from __future__ import annotations

import json

import numpy as np
import pytest

import envs
from envs.rollout import (BalancePolicy, EpisodeJob, SwingUpPolicy, UniformPolicy, balance_policy,
                          episode_seeds, gravity_rate, run_job, swingup_policy)
from worldmodel.collect import collect, random_policy, run_episode, top_up
from worldmodel.data import EpisodeDataset
from worldmodel.data.dataset import MANIFEST
from worldmodel.data.episode import DataError

# cartpole-balance with repeat 25: 40 env steps per episode (still 1000 simulator steps)
TASK, SIZE, REPEAT, T = "cartpole-balance", 16, 25, 40
FIELDS = ("images", "actions", "rewards", "states")


def _same(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in FIELDS) and a.meta == b.meta


def test_collect_appends_new_episodes_and_never_rewrites(tmp_path):
    ds = collect(TASK, 2, tmp_path, image_size=SIZE, action_repeat=REPEAT, seed=0, progress=False)
    assert len(ds) == 2 and ds.num_steps == 2 * T
    e = ds[0]
    assert e.images.shape == (T + 1, SIZE, SIZE, 3) and e.images.dtype == np.uint8
    assert e.actions.shape == (T, 1) and np.all(np.abs(e.actions) <= 1)
    assert e.states.shape == (T + 1, 4) and e.rewards.shape == (T,)
    assert np.all((e.rewards >= 0) & (e.rewards <= REPEAT))
    assert e.meta["return"] == pytest.approx(float(e.rewards.sum()), rel=1e-6)
    assert (e.meta["task"], e.meta["action_repeat"], e.meta["index"]) == (TASK, REPEAT, 0)
    before = {p: p.read_bytes() for p in ds.episode_paths}

    ds2 = collect(TASK, 2, tmp_path, image_size=SIZE, action_repeat=REPEAT, seed=0,
                  progress=False)
    assert len(ds2) == 4 and ds2.num_steps == 4 * T
    assert {p: p.read_bytes() for p in before} == before  # old files untouched
    assert len(EpisodeDataset(tmp_path)) == 4
    # the same run seed, new global indices: new initial states and actions
    assert [e.meta["index"] for e in ds2.episodes] == [0, 1, 2, 3]
    starts = {tuple(e.states[0]) for e in ds2.episodes}
    assert len(starts) == 4
    assert not np.array_equal(ds2[0].actions, ds2[2].actions)


def test_an_episode_after_a_deleted_one_is_a_new_episode_not_a_copy(tmp_path):
    ds = collect(TASK, 2, tmp_path, image_size=SIZE, action_repeat=REPEAT, seed=0, progress=False)
    last = ds[1]
    ds.episode_paths[0].unlink()  # a damaged episode file removed, as the load error advises
    with pytest.warns(UserWarning, match="records 2 episodes .* but the folder holds 1"):  # said, not hidden
        more = collect(TASK, 1, tmp_path, image_size=SIZE, action_repeat=REPEAT, seed=0, progress=False)
    new = more.episodes[-1]
    assert new.meta["index"] == 2 and more.episode_paths[-1].name.endswith("000002.npz")
    assert not np.array_equal(new.states[0], last.states[0])  # seeded by index 1 it was episode 1 again


@pytest.mark.slow
def test_workers_give_the_same_data_as_one_process(tmp_path):
    one = collect(TASK, 2, tmp_path / "one", image_size=SIZE, action_repeat=REPEAT, seed=5,
                  progress=False)
    two = collect(TASK, 2, tmp_path / "two", image_size=SIZE, action_repeat=REPEAT, seed=5,
                  workers=2, progress=False)
    assert len(two) == 2
    for a, b in zip(one.episodes, two.episodes):
        assert _same(a, b)


def test_run_episode_matches_its_seeds_and_policy():
    env = envs.make(TASK, image_size=SIZE, action_repeat=REPEAT)
    policy = random_policy(env)
    assert policy == UniformPolicy((-1.0,), (1.0,))
    env_seed, rng = episode_seeds(3, 4)
    ep = run_episode(env, policy, rng, env_seed)
    # replaying the recorded actions from the same seed reproduces every image and reward
    obs, _ = env.reset(seed=env_seed)
    assert np.array_equal(obs, ep.images[0])
    for t, a in enumerate(ep.actions):
        obs, r, *_ = env.step(a)
        assert np.array_equal(obs, ep.images[t + 1]) and np.float32(r) == ep.rewards[t]
    # the actions are the policy's draws from the episode's rng
    _, rng = episode_seeds(3, 4)
    expected = np.array([rng.uniform(-1.0, 1.0, 1) for _ in range(T)], dtype=np.float32)
    assert np.array_equal(ep.actions, expected)


def test_short_episodes_are_the_first_steps_of_full_ones(tmp_path):
    short = collect(TASK, 2, tmp_path / "short", image_size=SIZE, action_repeat=REPEAT, seed=1,
                    episode_steps=7, progress=False)
    full = collect(TASK, 2, tmp_path / "full", image_size=SIZE, action_repeat=REPEAT, seed=1,
                   progress=False)
    assert [e.length for e in short.episodes] == [7, 7] and short.num_steps == 14
    for s, f in zip(short.episodes, full.episodes):  # same seeds: a prefix of the same episode
        assert np.array_equal(s.images, f.images[:8]) and np.array_equal(s.actions, f.actions[:7])
        assert np.array_equal(s.states, f.states[:8]) and np.array_equal(s.rewards, f.rewards[:7])


def test_posed_starts_begin_at_rest_at_the_asked_angle(tmp_path):
    """start_angles: each episode starts at rest with the pole at an angle from the range (here a
    single angle): its first frame is the posed frame; bad ranges and poleless tasks are refused."""
    from envs.rollout import pose_state

    data = collect(TASK, 2, tmp_path / "posed", image_size=SIZE, action_repeat=REPEAT, seed=1,
                   episode_steps=3, start_angles=(0.4, 0.4), progress=False)
    env = envs.make(TASK, image_size=SIZE, action_repeat=REPEAT)
    obs, info = env.reset(sim_state=pose_state(env, 0.4))
    assert info["angle"] == pytest.approx(0.4) and not env.physics.data.qvel.any()
    for episode in data.episodes:
        assert np.array_equal(episode.images[0], obs) and episode.meta["start_angles"] == [0.4, 0.4]
    random_start = collect(TASK, 1, tmp_path / "plain", image_size=SIZE, action_repeat=REPEAT,
                           seed=1, episode_steps=3, progress=False)
    assert not np.array_equal(random_start.episodes[0].images[0], obs)
    with pytest.raises(ValueError, match="low <= high"):
        collect(TASK, 1, tmp_path / "bad", image_size=SIZE, action_repeat=REPEAT,
                start_angles=(0.5, 0.1), progress=False)
    assert not (tmp_path / "bad").exists()  # refused before any folder is written
    with pytest.raises(ValueError, match="needs a task with a pole"):
        collect("point_mass-easy", 1, tmp_path / "bad2", image_size=SIZE, start_angles=(0, 0.1),
                progress=False)


def test_posed_starts_with_velocities_cover_the_asked_box_of_angle_and_velocity(tmp_path):
    """start_velocities (with start_angles): the pole starts turning, at a velocity from the range;
    with (-π, π) x (-v, v) the starts spread over both (E2C/PCC/PC3's uniform state sampling)."""
    from envs.rollout import pose_state

    env = envs.make(TASK, image_size=SIZE, action_repeat=REPEAT)
    angle_index, nq = env.task_spec.angle_qpos, env.physics.model.nq
    fixed = collect(TASK, 1, tmp_path / "fixed", image_size=SIZE, action_repeat=REPEAT, seed=1,
                    episode_steps=2, start_angles=(0.3, 0.3), start_velocities=(-1.5, -1.5),
                    progress=False)
    state = fixed.episodes[0].states[0]  # (qpos, qvel) after the posed reset
    assert state[angle_index] == pytest.approx(0.3) and state[nq + angle_index] == pytest.approx(-1.5)
    assert fixed.episodes[0].meta["start_velocities"] == [-1.5, -1.5]
    expected = env.reset(sim_state=pose_state(env, 0.3, -1.5))[0]
    assert np.array_equal(fixed.episodes[0].images[0], expected)

    spread = collect(TASK, 12, tmp_path / "box", image_size=SIZE, action_repeat=REPEAT, seed=2,
                     episode_steps=1, start_angles=(-np.pi, np.pi), start_velocities=(-2.0, 2.0),
                     progress=False)
    starts = np.array([e.states[0] for e in spread.episodes])
    angles, velocities = starts[:, angle_index], starts[:, nq + angle_index]
    assert np.all(np.abs(velocities) <= 2.0) and np.all(np.abs(angles) <= np.pi)
    assert velocities.min() < -0.5 and velocities.max() > 0.5  # both signs, not all at rest
    assert angles.min() < -1.0 and angles.max() > 1.0
    with pytest.raises(ValueError, match="needs start_angles"):
        collect(TASK, 1, tmp_path / "bad", image_size=SIZE, action_repeat=REPEAT,
                start_velocities=(0.0, 1.0), progress=False)
    with pytest.raises(ValueError, match="low <= high"):
        collect(TASK, 1, tmp_path / "bad2", image_size=SIZE, action_repeat=REPEAT,
                start_angles=(0.0, 0.1), start_velocities=(1.0, 0.0), progress=False)


def test_top_up_completes_an_interrupted_collect_and_never_appends_twice(tmp_path):
    """What a re-run demo or e2c command relies on after Ctrl-C."""
    options = dict(image_size=SIZE, action_repeat=REPEAT, seed=2, progress=False)
    top_up(TASK, 1, tmp_path / "data", **options)  # "interrupted" after one episode
    data = top_up(TASK, 3, tmp_path / "data", **options)
    assert len(data) == 3
    assert len(top_up(TASK, 3, tmp_path / "data", **options)) == 3  # nothing to add
    whole = collect(TASK, 3, tmp_path / "whole", **options)
    assert all(_same(a, b) for a, b in zip(data.episodes, whole.episodes))
    with pytest.raises(ValueError, match=f"{SIZE}px"):
        top_up(TASK, 4, tmp_path / "data", **{**options, "image_size": 2 * SIZE})
    for other in (REPEAT + 1, None):  # None: the task's own repeat (8), not the folder's 25
        with pytest.raises(ValueError, match=f"action repeat {REPEAT} but {other or 8} was asked"):
            top_up(TASK, 4, tmp_path / "data", **{**options, "action_repeat": other})
    assert len(EpisodeDataset(tmp_path / "data")) == 3


def test_top_up_refuses_a_folder_whose_episodes_were_recorded_otherwise(tmp_path):
    """Re-running a command with other data settings on the same folder must not silently reuse
    (and extend) data of another distribution; episodes before `first` may differ."""
    options = dict(image_size=SIZE, action_repeat=REPEAT, seed=2, progress=False, episode_steps=4)
    top_up(TASK, 2, tmp_path / "data", **options)
    # (option, value, the record the error names)
    for name, value, record in (("seed", 3, "run_seed"), ("episode_steps", 5, "length"),
                                ("start_angles", (-0.1, 0.1), "start_angles")):
        with pytest.raises(ValueError, match=f"episode 0 recorded with other settings: {record}"):
            top_up(TASK, 3, tmp_path / "data", **{**options, name: value})
    with pytest.raises(ValueError, match="other settings: start_velocities None"):
        top_up(TASK, 3, tmp_path / "data",
               **{**options, "start_angles": None, "start_velocities": (0.0, 1.0)})
    assert len(EpisodeDataset(tmp_path / "data")) == 2  # nothing was appended
    # e2c's upright episodes: new settings from index 2 on, the first two left as they are
    upright = {**options, "start_angles": (-0.1, 0.1)}
    data = top_up(TASK, 3, tmp_path / "data", first=2, **upright)
    assert len(data) == 3 and data[2].meta["start_angles"] == [-0.1, 0.1]
    assert len(top_up(TASK, 3, tmp_path / "data", first=2, **upright)) == 3  # a re-run reuses it
    with pytest.raises(ValueError, match="episode 2 recorded with other settings"):
        top_up(TASK, 3, tmp_path / "data", first=2, **options)


def test_another_camera_records_the_same_episode_and_a_folder_keeps_one_camera(tmp_path):
    """E2C's cart-pole can be filmed by the camera that follows the cart; the episode underneath
    (seeds, actions, states) must not change, and one dataset must not mix two cameras."""
    options = dict(image_size=SIZE, action_repeat=REPEAT, seed=2, progress=False, episode_steps=4)
    fixed = collect(TASK, 1, tmp_path / "fixed", **options)
    near = collect(TASK, 1, tmp_path / "near", camera="lookatcart", **options)
    assert fixed.manifest["camera"] == fixed[0].meta["camera"] == 0
    assert near.manifest["camera"] == near[0].meta["camera"] == "lookatcart"
    for field in ("actions", "rewards", "states"):
        assert np.array_equal(getattr(fixed[0], field), getattr(near[0], field))
    assert not np.array_equal(fixed[0].images, near[0].images)
    # a pool worker builds its own env from the job: it must film with the job's camera
    job = EpisodeJob(TASK, SIZE, REPEAT, random_policy(1), 2, 0, 4, camera="lookatcart")
    assert np.array_equal(run_job(job).images, near[0].images)
    with pytest.raises(DataError, match="camera = 'lookatcart', but camera = 0 was asked"):
        collect(TASK, 1, tmp_path / "near", **options)
    # a manifest written before cameras were recorded is camera 0's
    manifest = json.loads((tmp_path / "fixed" / MANIFEST).read_text())
    del manifest["camera"]
    (tmp_path / "fixed" / MANIFEST).write_text(json.dumps(manifest))
    assert len(collect(TASK, 1, tmp_path / "fixed", **options)) == 2
    with pytest.raises(DataError, match="camera = 0, but camera = 1 was asked"):
        collect(TASK, 1, tmp_path / "fixed", camera=1, **options)


def test_bad_arguments_raise(tmp_path):
    for bad in (0, T + 1, 2.5, True):
        with pytest.raises(ValueError, match="episode_steps"):
            collect(TASK, 1, tmp_path, episode_steps=bad, image_size=SIZE, action_repeat=REPEAT,
                    progress=False)
    with pytest.raises(ValueError, match="policy"):
        collect(TASK, 1, tmp_path, policy="greedy", image_size=SIZE, progress=False)
    with pytest.raises(ValueError, match="pickled"):
        collect(TASK, 2, tmp_path, policy=lambda o, i, r: np.zeros(1), workers=2,
                image_size=SIZE, progress=False)
    with pytest.raises(ValueError, match="workers"):
        collect(TASK, 1, tmp_path, workers=0, image_size=SIZE, progress=False)
    with pytest.raises(ValueError, match="known tasks"):
        collect("cartpole-run", 1, tmp_path, image_size=SIZE, progress=False)


def test_balance_policy_is_clipped_linear_feedback_on_the_wrapped_state():
    policy = BalancePolicy(gain=(10.0, 2.0), angle_index=0, noise=0.0)
    rng = np.random.default_rng(0)
    for angle, velocity, expected in ((0.02, 0.0, -0.2), (-0.01, 0.3, -0.5), (0.2, 0.0, -1.0), (-0.3, 0.0, 1.0)):
        # the state's angle is unwrapped (a turn more here); the policy uses info's wrapped angle
        info = {"angle": angle, "state": np.array([angle + 2 * np.pi, velocity])}
        action = policy(None, info, rng)
        assert action.shape == (1,) and action[0] == pytest.approx(expected, abs=1e-6)
    noisy = BalancePolicy(gain=(10.0, 2.0), angle_index=0, noise=0.5)
    draws = np.array([noisy(None, {"angle": 0.0, "state": np.zeros(2)}, rng)[0] for _ in range(2000)])
    assert abs(draws.mean()) < 0.05 and draws.std() == pytest.approx(0.5, rel=0.1)
    with pytest.raises(ValueError, match="gains only for the domains"):
        balance_policy(envs.make("point_mass-easy", image_size=16))
    with pytest.raises(ValueError, match="noise must be a std >= 0"):
        balance_policy(envs.make("pendulum-swingup", image_size=16), noise=-1.0)


def _upright_linearisation(env) -> tuple[np.ndarray, np.ndarray]:
    """(A [S, S], B [S, 1]) of one env step (action repeat included) at upright, at rest, by
    central differences through env.step."""
    from envs.rollout import pose_state

    upright, nq = pose_state(env, 0.0), env.physics.model.nq

    def step(state: np.ndarray, action: float) -> np.ndarray:
        env.reset(sim_state=upright)
        env.physics.data.qpos[:], env.physics.data.qvel[:] = state[:nq], state[nq:]
        env.physics.forward()
        return env.step(np.array([action]))[4]["state"]

    eps, zero = 1e-5, np.zeros(env.state_dim)
    A = np.stack([(step(zero + eps * e, 0.0) - step(zero - eps * e, 0.0)) / (2 * eps)
                  for e in np.eye(env.state_dim)], axis=1)
    B = ((step(zero, eps) - step(zero, -eps)) / (2 * eps))[:, None]
    return A, B


def _abs_angles(env, policy_fn, *, start: float, steps: int) -> np.ndarray:
    """|pole angle| [steps] after each step of `policy_fn` from rest at `start` rad (0 = upright)."""
    from envs.rollout import pose_state

    rng = np.random.default_rng(0)
    obs, info = env.reset(sim_state=pose_state(env, start))
    out = []
    for _ in range(steps):
        obs, _, _, _, info = env.step(policy_fn(obs, info, rng))
        out.append(abs(info["angle"]))
    return np.array(out)


@pytest.mark.parametrize("task, tilt", [("pendulum-swingup", 0.15), ("cartpole-balance", 0.25)])
def test_balance_gains_stabilise_upright_and_hold_a_tilted_pole(task, tilt):
    """Each domain's BALANCE_GAINS make the linearised upright pose stable (spectral radius < 1;
    unstable without them); the cart-pole's are the LQR gain they claim to be; noise-free, the
    policy holds the pole from `tilt` rad, from which it falls under zero action."""
    import scipy.linalg

    from envs.rollout import BALANCE_GAINS

    env = envs.make(task, image_size=16)
    A, B = _upright_linearisation(env)
    K = np.array([BALANCE_GAINS[env.task_spec.domain]])  # [1, S]
    assert max(abs(np.linalg.eigvals(A))) > 1.01  # upright is unstable
    assert max(abs(np.linalg.eigvals(A - B @ K))) < 0.95
    if env.task_spec.domain == "cartpole":
        Q, R = np.diag([0.1, 1.0, 0.01, 0.01]), np.array([[0.1]])
        P = scipy.linalg.solve_discrete_are(A, B, Q, R)
        lqr = np.linalg.solve(R + B.T @ P @ B, B.T @ P @ A)
        np.testing.assert_allclose(K, lqr, rtol=0.01, atol=1e-3)

    def angles(policy_fn) -> np.ndarray:
        return _abs_angles(env, policy_fn, start=tilt, steps=40)

    held = angles(balance_policy(env, noise=0.0))
    assert max(held) < tilt + 0.01 and held[-1] < 0.05
    assert max(angles(lambda o, i, r: np.zeros(1))) > np.pi / 2  # unheld, the pole falls
    env.close()


def test_collect_records_the_named_balance_policy(tmp_path):
    data = collect("pendulum-swingup", 2, tmp_path / "data", policy="balance", image_size=16,
                   episode_steps=6, start_angles=(-0.1, 0.1), seed=3, progress=False)
    assert [e.meta["policy"] for e in data.episodes] == ["balance", "balance"]
    for e in data.episodes:  # held near upright by actions that push against the angle
        assert np.all(np.abs(e.actions) <= 1.0) and np.all(np.abs(e.states[:, 0]) < np.pi / 6)
    states = np.concatenate([e.states[:-1] for e in data.episodes])  # [2·6, 2] angle, velocity
    actions = np.concatenate([e.actions[:, 0] for e in data.episodes])
    feedback = np.clip(-10.0 * states[:, 0] - 2.0 * states[:, 1], -1.0, 1.0)  # the noise-free action
    assert np.corrcoef(feedback, actions)[0, 1] > 0.7  # 0.88 measured; noise 0.5 on top
    with pytest.raises(ValueError, match=r"policy must be one of \('random', 'balance', 'swingup'\)"):
        collect("pendulum-swingup", 1, tmp_path / "bad", policy="pd", image_size=16, progress=False)
    assert not (tmp_path / "bad").exists()


def test_swingup_policy_pumps_energy_and_balances_near_the_top():
    """Away from the top the action pushes along the motion while the energy is short of the
    upright pose's and against it beyond; near the top it is the balancing law; ω0² is m·g·l / I
    of dm_control's pendulum (1 kg at 0.5 m, a sphere of radius 0.05: I = 0.251 kg·m²)."""
    env = envs.make("pendulum-swingup", image_size=16)
    omega_sq = gravity_rate(env)
    assert omega_sq == pytest.approx(1.0 * 9.81 * 0.5 / (0.25 + 0.4 * 0.05 ** 2), rel=1e-3)
    policy = SwingUpPolicy(omega_sq=omega_sq, gain=(10.0, 2.0), noise=0.0)
    assert policy.energy(0.0, 0.0) == 0.0 and policy.energy(np.pi, 0.0) == pytest.approx(-2 * omega_sq)
    rng = np.random.default_rng(0)

    def act(angle: float, velocity: float) -> float:
        return float(policy(None, {"angle": angle, "state": np.array([angle - 2 * np.pi, velocity])}, rng)[0])

    assert act(3.0, 1.0) == 1.0 and act(3.0, -1.0) == -1.0  # low energy: push along the motion
    assert act(1.5, 8.0) == -1.0 and act(-1.5, -8.0) == 1.0  # above the top's energy: brake
    assert act(0.02, 0.1) == pytest.approx(-0.4)  # near the top: the balancing law
    assert act(np.pi, 0.0) == 0.0  # at rest hanging there is no motion to pump along
    with pytest.raises(ValueError, match="pendulum domain only, not cartpole-balance"):
        swingup_policy(envs.make("cartpole-balance", image_size=16))
    with pytest.raises(ValueError, match="noise must be a std >= 0"):
        swingup_policy(env, noise=-0.1)
    env.close()


def test_swingup_policy_swings_the_pendulum_up_and_holds_it():
    """Noise-free from near hanging, the controller brings the pole up and keeps it there for most
    of dm_control's 250-step episode (75 steps to arrive, 70 % in the goal region, measured);
    zero action never leaves the bottom."""
    env = envs.make("pendulum-swingup", image_size=16)

    def angles(policy_fn) -> np.ndarray:
        return _abs_angles(env, policy_fn, start=np.pi - 0.1, steps=250)

    up = angles(swingup_policy(env, noise=0.0)) < np.pi / 6
    assert up.mean() > 0.6 and up[-100:].all()
    assert angles(lambda o, i, r: np.zeros(1)).min() > 2.5
    env.close()


def test_collect_records_the_swingup_policy(tmp_path):
    data = collect("pendulum-swingup", 2, tmp_path / "data", policy="swingup", image_size=16,
                   episode_steps=8, seed=1, progress=False)
    assert [e.meta["policy"] for e in data.episodes] == ["swingup", "swingup"]
    assert all(np.all(np.abs(e.actions) <= 1.0) for e in data.episodes)
