"""The goal cost on each side of upright: a latent torn at the unstable top (the two sides far
apart) shows large ratios, which the |angle| bins, averaging both sides over every speed, cannot
tell from a goal misplaced; a smooth latent shows ratios near 1."""
import numpy as np
import pytest
import torch

from worldmodel.goal_cost import goal_cost_by_side, still_pose_angles, still_pose_goal_costs

TOL = np.pi / 6  # the pendulum's goal region


def test_still_poses_lie_inside_the_goal_region_evenly_on_both_sides():
    angles = still_pose_angles(TOL, per_side=6)
    assert len(angles) == 12 and np.all(np.abs(angles) < TOL) and np.all(angles != 0)
    assert np.allclose(angles[:6], -angles[6:][::-1]) and np.all(np.diff(angles) > 0)
    with pytest.raises(ValueError, match="tolerance > 0"):
        still_pose_angles(0.0)


def test_a_smooth_cost_has_equal_sides_and_a_torn_one_large_ratios():
    angles = still_pose_angles(TOL)
    smooth = goal_cost_by_side(angles, angles ** 2)  # a quadratic bowl round upright
    assert smooth["left"] == pytest.approx(smooth["right"]) and smooth["ratio"] == pytest.approx(1.0)
    assert smooth["across_top"] == pytest.approx(1.0)
    assert smooth["inner_over_outer"] == pytest.approx(1 / 36)  # a bowl: (1/6)² at this spacing
    isolated = goal_cost_by_side(angles, angles ** 2 + 1.0)  # the goal apart from every pose beside it
    assert isolated["across_top"] == pytest.approx(1.0) and isolated["inner_over_outer"] > 0.7
    torn = goal_cost_by_side(angles, angles ** 2 + np.where(angles < 0, 1.0, 0.0))  # the left side apart
    assert torn["right"] == pytest.approx(smooth["right"]) and torn["left"] == pytest.approx(smooth["left"] + 1)
    inner = (TOL / 7) ** 2  # the innermost pose's cost on the smooth side
    assert torn["across_top"] == pytest.approx((inner + 1) / inner) and torn["across_top"] > torn["ratio"] > 1
    one_sided = goal_cost_by_side(angles[6:], angles[6:] ** 2)
    assert one_sided["left"] is None and one_sided["ratio"] is None and one_sided["across_top"] is None
    assert one_sided["inner_over_outer"] is None
    with pytest.raises(ValueError, match="two \\[N\\] arrays of one shape"):
        goal_cost_by_side(angles, angles[:5])


def test_the_goal_pose_itself_costs_nothing_and_poses_beside_it_more():
    """Each still pose is encoded as the goal image is, so the goal's own pose gives its latent."""
    import envs
    from worldmodel import ModelConfig, WorldModel
    from worldmodel.e2c import goal_latent

    torch.manual_seed(0)
    model = WorldModel(ModelConfig.small(transition="locally_linear", obs_shape=(3, 48, 48), action_dim=1,
                                         deter_size=16, stoch_size=4, hidden_size=16, cnn_depth=4)).eval()
    env = envs.make("pendulum-swingup", image_size=48)
    try:
        goal = goal_latent(model, env)
        costs = still_pose_goal_costs(model, env, goal, np.array([0.0, -0.4, 0.4]))
    finally:
        env.close()
    assert costs[0] == pytest.approx(0.0, abs=1e-10) and np.all(costs[1:] > 1e-8)
