"""The goal latent as a rest point of the learned dynamics.

E2C's goal is the encoding of a goal image (Watter et al. 2015). A learned model need not hold
that latent still: trained on random-action episodes, in which the pendulum only ever falls away
from upright, our models drift from the upright image's latent by about a fifth of the action's
one-step effect per step under zero action (README, E2C section), so iLQR pushes every step to
hold the goal. `equilibrium_goal` moves the goal to the nearby latent that the model's own dynamics
keep (nearly) still under a rest action. Measured on one pendulum model, it did not change the
balance score (README), so on that model the drift is not what limits balance.
"""
from __future__ import annotations

from typing import Callable

import torch

Step = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (s [N, S], a [N, A]) -> s' [N, S]


def drift(step: Step, state: torch.Tensor, action: torch.Tensor) -> float:
    """‖step(state, action) − state‖: how far the dynamics move `state` [S] in one step."""
    with torch.no_grad():
        return float((step(state[None], action[None])[0] - state).norm())


def equilibrium_goal(step: Step, goal: torch.Tensor, action: torch.Tensor, *, weight: float = 5e-4,
                     iterations: int = 200) -> tuple[torch.Tensor, dict[str, float]]:
    """The latent z [S] minimising ‖step(z, action) − z‖² + weight·‖z − goal‖².

    `weight` keeps z near `goal` where the dynamics have no exact rest point (or several); small
    values give a nearly exact one. Returns z and {"drift_before", "drift_after", "distance"}:
    the one-step drift at `goal` and at z, and ‖z − goal‖.
    """
    if goal.dim() != 1 or action.dim() != 1:
        raise ValueError(f"goal and action must be vectors [S] and [A], got shapes "
                         f"{tuple(goal.shape)} and {tuple(action.shape)}")
    if not weight > 0:
        raise ValueError(f"weight must be > 0 (it keeps the rest point near the goal), got {weight}")
    goal, action = goal.detach(), action.detach().to(goal)
    z = goal.clone().requires_grad_(True)
    optimiser = torch.optim.LBFGS([z], max_iter=iterations, line_search_fn="strong_wolfe",
                                  tolerance_grad=1e-10, tolerance_change=1e-14)

    def objective() -> torch.Tensor:
        optimiser.zero_grad()
        loss = ((step(z[None], action[None])[0] - z) ** 2).sum() + weight * ((z - goal) ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(objective)
    z = z.detach()
    return z, {"drift_before": drift(step, goal, action), "drift_after": drift(step, z, action),
               "distance": float((z - goal).norm())}
