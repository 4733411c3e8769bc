"""The vectorised rewards equal dm_control's own per-step rewards on visited states."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from worldmodel import task_rewards


def _load(task: str, seed: int):
    """The dm_control suite env of `task` (`domain-task`), with the motor envs.make gives it where
    `task` is a registered pixel task."""
    from dm_control import suite

    import envs
    from envs.pixel_env import set_torque_ratio

    if task not in envs.names():
        return suite.load(*task.split("-"), task_kwargs={"random": seed})
    spec = envs.spec(task)
    env = suite.load(spec.domain, spec.task, task_kwargs={"random": seed})
    if spec.torque_ratio is not None:
        set_torque_ratio(env.physics, spec.torque_ratio)
    return env


def _dm_episode(task: str, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                                           np.ndarray]:
    """Random-action rollout of the dm_control task: (qpos, qvel, ctrl, reward) after each step."""
    env = _load(task, seed)
    rng = np.random.default_rng(seed)
    env.reset()
    spec = env.action_spec()
    qpos, qvel, ctrl, rewards = [], [], [], []
    for t in range(steps):
        # Mostly in-range actions, with some beyond the bounds (the control term saturates there)
        # and some zero (the bump's maximum); piecewise constant so the system moves far.
        if t % 10 == 0:
            a = rng.uniform(-1.3, 1.3, spec.shape) if t % 30 else np.zeros(spec.shape)
        ts = env.step(a)
        qpos.append(env.physics.data.qpos.copy())
        qvel.append(env.physics.data.qvel.copy())
        ctrl.append(env.physics.data.ctrl.copy())
        rewards.append(ts.reward)
    return np.array(qpos), np.array(qvel), np.array(ctrl), np.array(rewards)


@pytest.mark.parametrize("task", task_rewards.tasks())
def test_reward_equals_dm_control(task: str) -> None:
    qpos, qvel, ctrl, expected = _dm_episode(task, steps=200, seed=3)
    got = task_rewards.reward_fn(task)(qpos, qvel, ctrl)
    assert isinstance(got, np.ndarray) and got.shape == (200,)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    nq = qpos.shape[1]
    flat = torch.as_tensor(np.concatenate([qpos, qvel], axis=1))
    from_state = task_rewards.reward_from_state(task, flat, torch.as_tensor(ctrl))
    assert isinstance(from_state, torch.Tensor) and from_state.dtype == torch.float64
    np.testing.assert_allclose(from_state.numpy(), expected, atol=1e-6)
    assert task_rewards.dimensions(task)[0] == nq


@pytest.mark.parametrize("task", task_rewards.tasks())
def test_reward_equals_dm_control_on_sampled_states(task: str) -> None:
    """States set directly (kinematics recomputed by mj_forward), spread so that every reward
    term is exercised: in and out of bounds, inside and beyond the margins."""
    domain = task.split("-")[0]
    env = _load(task, 0)
    env.reset()
    physics = env.physics
    nq, nv, nu = task_rewards.dimensions(task)
    rng = np.random.default_rng(1)
    n = 300
    scale = {"cartpole": [2.0, np.pi], "pendulum": [np.pi], "point_mass": [0.04, 0.04]}[domain]
    qpos = rng.uniform(-1, 1, (n, nq)) * np.array(scale)
    qpos[: n // 3, -1] *= 0.05  # a third of the states near the goal angle / position
    qvel = rng.normal(0, 4, (n, nv))
    ctrl = rng.uniform(-1.2, 1.2, (n, nu))
    expected = np.empty(n)
    for i in range(n):
        with physics.reset_context():
            physics.data.qpos[:] = qpos[i]
            physics.data.qvel[:] = qvel[i]
        physics.data.ctrl[:] = ctrl[i]
        expected[i] = env.task.get_reward(physics)
    got = task_rewards.reward_fn(task)(qpos, qvel, ctrl)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert expected.max() > 0.5 and expected.min() < 0.3, "samples must cover high and low reward"


def test_pendulum_reward_is_one_near_upright_and_zero_far() -> None:
    r = task_rewards.reward_fn("pendulum-swingup")
    qpos = np.array([[0.0], [np.deg2rad(7.9)], [np.deg2rad(-7.9)], [np.deg2rad(60)], [np.pi]])
    got = r(qpos, np.zeros((5, 1)), np.zeros((5, 1)))
    np.testing.assert_allclose(got[:3], 1.0)
    assert (got[3:] < 1e-6).all()


def test_tolerance_matches_dm_control() -> None:
    from dm_control.utils import rewards

    x = np.linspace(-3, 3, 301)
    for kwargs in [dict(bounds=(-0.5, 0.2), margin=1.0),
                   dict(margin=2.0),
                   dict(margin=1.0, value_at_margin=0.0, sigmoid="quadratic"),
                   dict(bounds=(0.0, 0.5))]:
        want = rewards.tolerance(x, **kwargs)
        got = task_rewards.tolerance(torch.as_tensor(x), **kwargs).numpy()
        np.testing.assert_allclose(got, want, atol=1e-12)


def test_reward_is_differentiable_in_torch() -> None:
    qpos = torch.tensor([[0.1, 0.5]], dtype=torch.float64, requires_grad=True)
    r = task_rewards.reward_fn("cartpole-swingup")(qpos, torch.zeros(1, 2, dtype=torch.float64),
                                                    torch.zeros(1, 1, dtype=torch.float64))
    r.sum().backward()
    assert qpos.grad is not None and qpos.grad[0, 1] < 0  # tilting further lowers the reward


def test_bad_input_raises_clear_errors() -> None:
    with pytest.raises(ValueError, match="no vectorised reward for task 'walker-walk'"):
        task_rewards.reward_fn("walker-walk")
    r = task_rewards.reward_fn("cartpole-swingup")
    with pytest.raises(ValueError, match=r"qpos must be \[N, 2\], got shape \(4, 3\)"):
        r(np.zeros((4, 3)), np.zeros((4, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="batch sizes differ"):
        r(np.zeros((4, 2)), np.zeros((3, 2)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match=r"\[N, nq \+ nv\] = \[N, 4\]"):
        task_rewards.reward_from_state("cartpole-swingup", np.zeros((4, 5)), np.zeros((4, 1)))
    with pytest.raises(ValueError, match="lower <= upper"):
        task_rewards.tolerance(torch.zeros(3), bounds=(1.0, 0.0))
