"""The true-simulator oracle: its step equals the real env's, and planning on it controls the env."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import envs
import planners
from worldmodel.sim_problem import SimulatorDynamics, oracle_state, simulator_problem


def _visited(env, steps: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                                                  np.ndarray]:
    """Random-action episode: oracle states before each step, actions, states after, rewards."""
    rng = np.random.default_rng(seed)
    env.reset(seed=seed)
    before, actions, after, rewards = [], [], [], []
    for _ in range(steps):
        a = rng.uniform(-1.2, 1.2, env.action_dim)  # some beyond the bounds: both sides clip
        before.append(oracle_state(env))
        _, r, _, _, _ = env.step(a)
        actions.append(torch.as_tensor(a))
        after.append(oracle_state(env))
        rewards.append(r)
    return torch.stack(before), torch.stack(actions), torch.stack(after), np.array(rewards)


@pytest.mark.parametrize("name", envs.names())
def test_batched_step_equals_real_env(name: str) -> None:
    env = envs.make(name, seed=0, render_state=False)
    problem = simulator_problem(env, horizon=5, threads=2)
    s, a, s_next, rewards = _visited(env, steps=30, seed=1)
    got = problem.step(s, a)  # all 30 transitions in one batch
    assert got.shape == s.shape and got.dtype == torch.float64
    # Same physics: identical next states (time, qpos, qvel), bit for bit.
    torch.testing.assert_close(got[:, :-1], s_next[:, :-1], rtol=0, atol=1e-12)
    # The slot holds the env's reward (summed over the action repeat), and the costs read it.
    np.testing.assert_allclose(got[:, -1].numpy(), rewards, rtol=0, atol=1e-9)
    np.testing.assert_allclose(problem.running_cost(got, a).numpy(), -rewards, atol=1e-9)
    np.testing.assert_allclose(problem.terminal_cost(got).numpy(), -rewards, atol=1e-9)
    assert np.ptp(s[:, 1].numpy()) > 0  # the batch really holds different states


def test_oracle_state_layout_and_problem_contract() -> None:
    env = envs.make("cartpole-swingup", seed=0, render_state=False)
    env.reset(seed=0)
    s = oracle_state(env)
    # mjSTATE_FULLPHYSICS = (time, qpos, qvel) for cart-pole, then the reward slot (0 at start).
    np.testing.assert_array_equal(s[1:5].numpy(), env.state)
    assert s[0].item() == env.physics.data.time and s[-1].item() == 0.0
    problem = simulator_problem(env, horizon=4, threads=1)
    problem.check(s)  # step, costs and jacobians have the shapes the planners expect
    assert problem.dim_action == 1
    torch.testing.assert_close(problem.bounds(s)[0], torch.tensor([-1.0], dtype=torch.float64))


def test_total_cost_is_minus_the_env_return() -> None:
    env = envs.make("cartpole-swingup", seed=0, render_state=False)
    env.reset(seed=0)
    problem = simulator_problem(env, horizon=6, threads=1)
    start = oracle_state(env)
    u = torch.tensor([[0.5], [-0.5], [0.2], [0.0], [-1.0], [1.0]], dtype=torch.float64)
    cost = planners.rollout.total_cost(problem, start, u[None])[0].item()
    ret = sum(env.step(a.numpy())[1] for a in u)
    assert ret > 1e-3
    assert cost == pytest.approx(-ret, rel=1e-12, abs=1e-12)


def test_jacobians_predict_small_perturbations() -> None:
    env = envs.make("cartpole-swingup", seed=0, render_state=False)
    env.reset(seed=0)
    env.step(np.array([0.7]))
    s = oracle_state(env)[None]
    a = torch.tensor([[0.3]], dtype=torch.float64)
    dyn = SimulatorDynamics(env, threads=1)
    fs, fa = dyn.jacobians(s, a)
    assert fs.shape == (1, 6, 6) and fa.shape == (1, 6, 1)
    assert fs[0, 0, 0].item() == pytest.approx(1.0)  # time advances independently of the state
    assert fs[:, :, -1].abs().max().item() == 0.0  # the next state ignores the previous reward
    gen = torch.Generator().manual_seed(0)
    ds = 1e-4 * torch.randn(1, 6, generator=gen, dtype=torch.float64)
    ds[:, 0] = ds[:, -1] = 0.0
    da = torch.tensor([[1e-4]], dtype=torch.float64)
    actual = dyn.step(s + ds, a + da) - dyn.step(s, a)
    predicted = fs[0] @ ds[0] + fa[0] @ da[0]
    torch.testing.assert_close(actual[0], predicted, rtol=1e-2, atol=1e-7)  # O(|δ|²) left
    assert fa[0, 3, 0].abs().item() > 1e-3  # force moves the cart: a non-trivial derivative
    # At the upper bound the action derivative is one-sided inwards, not halved by the clip.
    _, fa_edge = dyn.jacobians(s, torch.tensor([[1.0]], dtype=torch.float64))
    _, fa_in = dyn.jacobians(s, torch.tensor([[1.0 - 1e-5]], dtype=torch.float64))
    torch.testing.assert_close(fa_edge, fa_in, rtol=1e-3, atol=1e-6)
    dyn.close()


def test_actuator_and_gravity_gains_scale_the_planners_copy_only() -> None:
    """Gear × g: at zero action, d(next state)/d(action) is exactly g times the true one (the
    torque g·gear·a enters the dynamics linearly there); gravity × g: the first step's fall from
    rest is g times as fast. The env's own model is untouched."""
    env = envs.make("pendulum-swingup", seed=0, render_state=False)
    env.reset(seed=0)
    s = oracle_state(env)[None]
    a = torch.zeros(1, 1, dtype=torch.float64)
    with SimulatorDynamics(env, threads=1) as true, SimulatorDynamics(env, threads=1, actuator_gain=0.4) as weak:
        _, fa = true.jacobians(s, a)
        _, fa_weak = weak.jacobians(s, a)
        assert fa[0, true.qvel_slice.start, 0].abs().item() > 1e-3
        torch.testing.assert_close(fa_weak[0, :-1], 0.4 * fa[0, :-1], rtol=1e-4, atol=1e-9)
        pushed = true.step(s, torch.ones(1, 1, dtype=torch.float64))
        assert not torch.equal(pushed, weak.step(s, torch.ones(1, 1, dtype=torch.float64)))
    # gravity × g: from rest just off upright, the first step's fall (velocity) scales by g
    from envs.rollout import pose_state

    env.reset(sim_state=pose_state(env, 0.1))
    s = oracle_state(env)[None]
    with SimulatorDynamics(env, threads=1) as true, SimulatorDynamics(env, threads=1, gravity_gain=2.0) as heavy:
        velocity = true.qvel_slice.start
        fall = true.step(s, a)[0, velocity].item()
        assert fall > 0.05  # 0 is upright and the angle grows as it falls
        assert heavy.step(s, a)[0, velocity].item() == pytest.approx(2.0 * fall, rel=0.02)
    assert env.physics.model.actuator_gear[0, 0] == 1.0 and env.physics.model.opt.gravity[2] < -9
    for name in ("actuator_gain", "gravity_gain"):
        for bad in (0.0, -1.0, float("nan")):
            with pytest.raises(ValueError, match=f"{name} must be a finite number > 0"):
                SimulatorDynamics(env, threads=1, **{name: bad})


def test_bad_input_raises_clear_errors() -> None:
    env = envs.make("cartpole-balance", seed=0, render_state=False)
    env.reset(seed=0)
    problem = simulator_problem(env, horizon=3, threads=1)
    s = oracle_state(env)
    with pytest.raises(ValueError, match=r"states must be \[N, 6\].*got \(2, 5\)"):
        problem.step(torch.zeros(2, 5, dtype=torch.float64), torch.zeros(2, 1))
    with pytest.raises(ValueError, match=r"actions must be \[N, 1\] with N = 2"):
        problem.step(s.expand(2, -1), torch.zeros(3, 1))
    with pytest.raises(ValueError, match="pass task="):
        SimulatorDynamics(type("NoName", (), {"physics": env.physics, "action_repeat": 8})())
    with pytest.raises(ValueError, match="expected an envs.PixelEnv or a dm_control"):
        simulator_problem(object(), horizon=3)
    with pytest.raises(ValueError, match="expects"):
        SimulatorDynamics(env, task="pendulum-swingup")


@pytest.mark.slow
def test_cem_on_the_oracle_recovers_a_tilted_pole() -> None:
    """From a 0.25 rad tilt the uncontrolled pole falls; MPC on the true simulator (CEM with a
    shifted warm start, 100 candidates x 3 iterations, H = 12) brings it upright and keeps it
    there. No learning. (~15 s on 2 shared cores.)"""
    def episode(policy, steps: int = 40) -> tuple[float, float]:
        env = envs.make("cartpole-balance", seed=0, render_state=False)
        env.reset(seed=0)
        env.physics.data.qpos[1] = 0.25
        env.physics.forward()
        rewards, cosines = [], []
        for _ in range(steps):
            _, r, _, _, info = env.step(policy(env))
            rewards.append(r / env.action_repeat)
            cosines.append(np.cos(info["angle"]))
        return float(np.mean(rewards[-20:])), float(np.min(cosines[-20:]))

    zero_reward, zero_cos = episode(lambda env: np.zeros(1))
    assert zero_cos < 0.0  # the pole falls without control

    problem = simulator_problem(envs.make("cartpole-balance", render_state=False), horizon=12,
                                threads=2)
    planner = planners.make("cem", candidates=100, elites=10, iterations=3, warm_start=True)
    mpc = planners.MPC(planner, problem, generator=torch.Generator().manual_seed(0))
    reward, cos = episode(lambda env: mpc.act(oracle_state(env)).numpy())
    assert cos > 0.95, f"pole not held upright by the oracle: min cos over last 20 steps {cos}"
    assert reward >= 0.8, f"oracle mean reward per simulator step {reward} < 0.8"
    assert reward > zero_reward + 0.2
