"""Latent geometry: how much of the true physical state a latent code holds, as held-out R².

Notation: z [N, D] latents, s [N, S] true states (qpos then qvel, as `envs` reports them),
y [N, K] regression targets derived from s by `state_targets`. For each target column k,

    R²_k = 1 - Σ_i (y_ik - ŷ_ik)² / Σ_i (y_ik - ȳ_k)²      on held-out samples i,

where ŷ = g(z) is fitted on the training samples only and ȳ is the held-out mean. R² = 1 is a
perfect read-out, 0 is no better than predicting the mean, and it is negative when worse.
`latent_r2` reports the mean over targets. Two read-outs g:
  - "linear": an affine map, fitted by ridge regression with the penalty chosen by
    cross-validation on the fitting samples (plain least squares overfits a latent of about as
    many dimensions as fitting frames); high R² means the state is linearly decodable
    (what E2C's locally linear latent space aims for).
  - "knn": the mean of the k nearest training latents (Euclidean, latents standardised with
    training statistics); high R² means the state is a smooth function of the latent, linear or
    not (e.g. an angle laid out on a ring).

Angles wrap around, so a regression onto θ itself would be punished for mapping θ = π - ε and
-π + ε, which are the same pose, far apart. `state_targets` therefore replaces each hinge angle
by (cos θ, sin θ). Pass `groups` (e.g. episode ids) to hold out whole episodes: neighbouring
frames of one episode are nearly identical, so a random frame split flatters the k-NN read-out.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

import envs

# The regression targets per domain; the hinge angle's qpos index (`envs.spec(task).angle_qpos`) and
# the state's sizes (`task_rewards.dimensions`) come from where the tasks are defined.
_NAMES = {
    "pendulum": ["cos θ", "sin θ", "θ̇"],
    "cartpole": ["x", "cos θ", "sin θ", "ẋ", "θ̇"],
    "point_mass": ["x", "y", "ẋ", "ẏ"],
}


def _domain(task: str) -> str:
    domain = envs.spec(task).domain
    if domain not in _NAMES:
        raise ValueError(f"no state targets for task {task!r}; known domains: {sorted(_NAMES)} "
                         f"(tasks are named 'domain-task', e.g. 'cartpole-swingup')")
    return domain


def target_names(task: str) -> list[str]:
    """Names of the columns `state_targets(task, ...)` returns."""
    return list(_NAMES[_domain(task)])


def state_targets(task: str, states: np.ndarray) -> np.ndarray:
    """Regression targets from true states [N, nq + nv]: each hinge angle θ becomes (cos θ, sin θ)
    in place; other positions and all velocities are kept. Returns [N, K] float64."""
    from worldmodel.task_rewards import dimensions

    _domain(task)
    nq, nv, _ = dimensions(task)
    angle = envs.spec(task).angle_qpos
    s = _as_2d(states, "states")
    if s.shape[1] != nq + nv:
        raise ValueError(f"{task} states must be [N, nq + nv] = [N, {nq + nv}] (qpos then qvel), "
                         f"got shape {s.shape}")
    columns = []
    for i in range(nq):
        if i == angle:
            columns += [np.cos(s[:, i]), np.sin(s[:, i])]
        else:
            columns.append(s[:, i])
    columns += [s[:, nq + j] for j in range(nv)]
    return np.stack(columns, axis=1)


def _as_2d(x: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise ValueError(f"{name} must be [N, D], got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf; remove those samples first")
    return a


def split(n: int, *, test_fraction: float, seed: int, groups: Optional[np.ndarray] = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, test indices): a seeded random split of samples, or of whole groups."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    if groups is None:
        order = rng.permutation(n)
        n_test = min(max(1, int(round(test_fraction * n))), n - 1)
        return np.sort(order[n_test:]), np.sort(order[:n_test])
    groups = np.asarray(groups)
    if groups.shape != (n,):
        raise ValueError(f"groups must be [N] = [{n}] (one id per sample), got {groups.shape}")
    ids = rng.permutation(np.unique(groups))
    if len(ids) < 2:
        raise ValueError(f"need at least 2 groups to hold some out, got {len(ids)}")
    n_test = min(max(1, int(round(test_fraction * len(ids)))), len(ids) - 1)
    test = np.isin(groups, ids[:n_test])
    return np.flatnonzero(~test), np.flatnonzero(test)


# Ridge strengths tried, as multiples of the number of fitting samples (the penalty then competes
# with a sum of squares that grows with N). Zero, first, is plain least squares.
RIDGE_STRENGTHS = np.concatenate([[0.0], np.logspace(-6, 3, 19)])
_RIDGE_FOLDS = 5


def _ridge_weights(a: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> np.ndarray:
    """Ridge weights [A, D, K] for centred inputs a [N, D] and centred targets y [N, K], one per
    penalty in alphas [A], from one SVD."""
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    s = np.where(s > s.max(initial=0.0) * max(a.shape) * np.finfo(float).eps, s, 0.0)  # rank cut
    denominator = s[None, :] ** 2 + alphas[:, None]
    shrink = np.divide(s[None, :], denominator, out=np.zeros_like(denominator),
                       where=denominator > 0)  # [A, r]; a zero singular value gets no weight
    return np.einsum("rd,ar,rk->adk", vt, shrink, u.T @ y)


def _folds(n: int, groups: Optional[np.ndarray]) -> list[np.ndarray]:
    """Validation index sets for choosing the ridge penalty: whole groups where there are at least
    two, else contiguous blocks (samples arrive in time order, so random folds would leak)."""
    if groups is not None and len(np.unique(groups)) >= 2:
        labels = np.unique(groups, return_inverse=True)[1] % _RIDGE_FOLDS  # group i -> fold i mod 5
    else:
        labels = np.minimum(np.arange(n) * min(_RIDGE_FOLDS, n) // max(n, 1), _RIDGE_FOLDS - 1)
    return [np.flatnonzero(labels == f) for f in np.unique(labels)]


def _fit_predict_linear(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray,
                        groups: Optional[np.ndarray] = None) -> np.ndarray:
    """A linear read-out with a bias: ridge regression, its penalty chosen by cross-validation on
    the fitting samples (by `groups` where given). Plain least squares overfits as soon as the
    latent has about as many dimensions as there are frames to fit, and then scores far below zero
    on held-out data although the state is linearly there. The latents are centred and scaled by
    one overall spread, not per dimension: a latent's own scale means something (its prior is
    N(0, I)), and a dimension the model leaves unused should not be blown up to unit variance."""
    mean = z_train.mean(axis=0)
    spread = float(np.sqrt(((z_train - mean) ** 2).mean())) or 1.0
    a, b = (z_train - mean) / spread, (z_test - mean) / spread
    n = len(a)
    alphas = RIDGE_STRENGTHS * n
    folds = _folds(n, groups) if n >= 4 else []
    if len(folds) >= 2:
        # each target's error in units of its variance, so no one target sets the penalty
        scale = np.where(y_train.var(axis=0) > 0, y_train.var(axis=0), 1.0)
        errors = np.zeros(len(alphas))
        for valid in folds:
            fit = np.setdiff1d(np.arange(n), valid)
            a_mean, y_mean = a[fit].mean(axis=0), y_train[fit].mean(axis=0)
            w = _ridge_weights(a[fit] - a_mean, y_train[fit] - y_mean, alphas)  # [A, D, K]
            pred = np.einsum("nd,adk->ank", a[valid] - a_mean, w) + y_mean
            errors += (((pred - y_train[valid]) ** 2) / scale).sum(axis=(1, 2))
        alpha = alphas[int(np.argmin(errors))]
    else:
        alpha = alphas[0]
    a_mean, y_mean = a.mean(axis=0), y_train.mean(axis=0)
    w = _ridge_weights(a - a_mean, y_train - y_mean, np.array([alpha]))[0]  # [D, K]
    return (b - a_mean) @ w + y_mean


def _fit_predict_knn(z_train: np.ndarray, y_train: np.ndarray, z_test: np.ndarray, k: int
                     ) -> np.ndarray:
    mean, std = z_train.mean(axis=0), z_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    a, b = (z_train - mean) / std, (z_test - mean) / std
    k = min(k, len(a))
    out = np.empty((len(b), y_train.shape[1]))
    for start in range(0, len(b), 1024):  # bounded memory: [1024, N_train] distances at a time
        chunk = b[start:start + 1024]
        d2 = (chunk ** 2).sum(1)[:, None] - 2 * chunk @ a.T + (a ** 2).sum(1)[None, :]
        nearest = np.argpartition(d2, k - 1, axis=1)[:, :k]  # [chunk, k]
        out[start:start + len(chunk)] = y_train[nearest].mean(axis=1)
    return out


def r2_scores(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per-column coefficient of determination [K]; a constant column scores nan."""
    ss_res = ((y_true - y_pred) ** 2).sum(axis=0)
    ss_tot = ((y_true - y_true.mean(axis=0)) ** 2).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def _check_readout(method: str, k: int) -> None:
    if method not in ("linear", "knn"):
        raise ValueError(f"method must be 'linear' or 'knn', got {method!r}")
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")


def readout_predict(train_latents: np.ndarray, train_targets: np.ndarray, latents: np.ndarray, *,
                    method: str = "linear", k: int = 5) -> np.ndarray:
    """A read-out fitted on (train_latents [N, D], train_targets [N, K]), applied to latents [M, D]:
    [M, K]. For reading latents met elsewhere (a closed-loop episode) with a map fitted on data."""
    z, y = _as_2d(train_latents, "train_latents"), _as_2d(train_targets, "train_targets")
    if len(z) != len(y) or len(z) < 2:
        raise ValueError(f"need as many train_latents as train_targets, at least 2, got {len(z)} and {len(y)}")
    _check_readout(method, k)
    query = _as_2d(latents, "latents")
    if query.shape[1] != z.shape[1]:
        raise ValueError(f"latents have {query.shape[1]} dimensions, the read-out was fitted on {z.shape[1]}")
    return _fit_predict_linear(z, y, query) if method == "linear" else _fit_predict_knn(z, y, query, k)


def _held_out_readout(latents: np.ndarray, targets: np.ndarray, *, method: str, k: int,
                      test_fraction: float, seed: int, groups: Optional[np.ndarray]
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(held-out targets [M, K], the read-out's predictions of them [M, K])."""
    z, y = _as_2d(latents, "latents"), _as_2d(targets, "targets")
    if len(z) != len(y):
        raise ValueError(f"latents and targets must have the same N, got {len(z)} and {len(y)}")
    if len(z) < 4:
        raise ValueError(f"need at least 4 samples to fit and hold out, got {len(z)}")
    _check_readout(method, k)
    train, test = split(len(z), test_fraction=test_fraction, seed=seed, groups=groups)
    if method == "linear":
        fit_groups = None if groups is None else np.asarray(groups)[train]
        return y[test], _fit_predict_linear(z[train], y[train], z[test], fit_groups)
    return y[test], _fit_predict_knn(z[train], y[train], z[test], k)


def latent_r2_per_target(latents: np.ndarray, targets: np.ndarray, *, method: str = "linear",
                         k: int = 5, test_fraction: float = 0.3, seed: int = 0,
                         groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Held-out R² [K] of a read-out latents [N, D] -> targets [N, K] (see the module docstring).

    Targets are used as given; call `state_targets` first to turn angles into (cos, sin).
    """
    y, pred = _held_out_readout(latents, targets, method=method, k=k, test_fraction=test_fraction,
                                seed=seed, groups=groups)
    return r2_scores(y, pred)


def readout_rmse_per_target(latents: np.ndarray, targets: np.ndarray, *, method: str = "linear",
                            k: int = 5, test_fraction: float = 0.3, seed: int = 0,
                            groups: Optional[np.ndarray] = None) -> np.ndarray:
    """Held-out root-mean-square error [K] of the same read-out, in the targets' own units: how far
    off the state is that a latent tells, where R² says only what share of the variance it holds
    (a planner needs the former: an angle off by 0.05 rad drops a pole whatever the R²)."""
    y, pred = _held_out_readout(latents, targets, method=method, k=k, test_fraction=test_fraction,
                                seed=seed, groups=groups)
    return np.sqrt(((y - pred) ** 2).mean(axis=0))


def latent_r2(latents: np.ndarray, states: np.ndarray, *, method: str = "linear", k: int = 5,
              test_fraction: float = 0.3, seed: int = 0, task: Optional[str] = None,
              groups: Optional[np.ndarray] = None) -> float:
    """Mean held-out R² over target columns of a read-out latents [N, D] -> states [N, S].

    With `task`, states are raw (qpos, qvel) and go through `state_targets(task, states)` first
    (angles as cos/sin); without it, the columns of `states` are the targets as given. Constant
    target columns (no variance in the held-out set) are left out of the mean.
    """
    targets = state_targets(task, states) if task is not None else states
    scores = latent_r2_per_target(latents, targets, method=method, k=k,
                                  test_fraction=test_fraction, seed=seed, groups=groups)
    if np.all(np.isnan(scores)):
        raise ValueError("every target column is constant on the held-out samples; R² undefined")
    return float(np.nanmean(scores))
