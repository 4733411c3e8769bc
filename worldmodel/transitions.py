"""Transition families p_ψ(z_{t+1} | z_t, a_t) and their filtering posteriors, behind one interface.

Notation: B batch, T time, Z stoch size, D deter size (rssm), G history-GRU size, A actions,
e_t [B, E] frame embedding, a_{t-1} the action *before* o_t (zeros at t = 1).

  gaussian        p(z'|z,a) = N(μ(z,a), σ(z,a)): MLP with a linear skip on the mean
  locally_linear  z' = A(z) z + B(z) a + c(z) + σ(z)ε,  A = I + v(z) r(z)ᵀ  (E2C, Watter et al. 2015)
  rssm            h' = GRU(h, f(z, a)),  p(z'|h') = N(μ(h'), σ(h'))  (PlaNet, Hafner et al. 2019)

Posteriors q(z_t | o_≤t, a_<t, z_{t−1}):
  gaussian / locally_linear: a history GRU g_t = GRU(g_{t−1}, [e_t, a_{t−1}]) (all steps in one
    fused nn.GRU call), then a head on (g_t, e_t, z_{t−1}) (e_t enters directly too, as in the
    rssm; with a linear skip on the mean);  p(z_1) = N(0, I).
  rssm: the head on (h_t, e_t) where h_t = GRU(h_{t−1}, f(z_{t−1}, a_{t−1})), h_0 = 0, z_0 = 0;
    here p(z_1) is the *learned* prior head at h_1 = GRU(0, f(0, 0)), not N(0, I).
The embedding's share of the posterior head's first layer (`context`) is computed for all steps
before the recurrence, and the priors of all steps are computed after it in one batched call, so
the loop itself holds only what must be sequential.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

import torch
from torch import nn

from worldmodel.config import ModelConfig
from worldmodel.distributions import std_from_raw
from worldmodel.networks import GaussianHead, GRUCell, activation, mlp


@dataclass
class LatentState:
    """One time step: mean/std/sample [B, Z]; deter [B, D] (rssm); history [B, G] (encoder GRU);
    frames [B, (k−1)·C, H, W]: the last k−1 observed frames a filter with ModelConfig.frame_stack = k
    stacks before its next one (set by WorldModel.filter_step, None otherwise)."""

    mean: torch.Tensor
    std: torch.Tensor
    sample: torch.Tensor
    deter: Optional[torch.Tensor] = None
    history: Optional[torch.Tensor] = None
    frames: Optional[torch.Tensor] = None

    def vector(self, use_mean: bool = False) -> torch.Tensor:
        """Flat features [B, S] = [deter, z] (z = sample, or mean if use_mean)."""
        z = self.mean if use_mean else self.sample
        return z if self.deter is None else torch.cat([self.deter.to(z.dtype), z], -1)

    def detach(self) -> "LatentState":
        return _map(self, lambda x: x.detach())


@dataclass
class LatentSeq:
    """A sequence of latent states: every field [B, T, ...]; index over time with seq[t]."""

    mean: torch.Tensor
    std: torch.Tensor
    sample: torch.Tensor
    deter: Optional[torch.Tensor] = None
    history: Optional[torch.Tensor] = None
    frames: Optional[torch.Tensor] = None

    @property
    def length(self) -> int:
        return self.mean.shape[1]

    def __getitem__(self, t: int | slice) -> "LatentState | LatentSeq":
        if isinstance(t, slice):
            return _map(self, lambda x: x[:, t])
        return LatentState(**{f.name: None if getattr(self, f.name) is None
                              else getattr(self, f.name)[:, t] for f in fields(self)})

    def last(self) -> LatentState:
        return self[-1]  # type: ignore[return-value]

    def vector(self, use_mean: bool = False) -> torch.Tensor:
        """Flat features [B, T, S] = [deter, z], the input of decoder and reward head."""
        z = self.mean if use_mean else self.sample
        return z if self.deter is None else torch.cat([self.deter.to(z.dtype), z], -1)

    def flat(self) -> LatentState:
        """All B·T steps as one batch of states [B·T, ...]."""
        return LatentState(**{f.name: None if getattr(self, f.name) is None
                              else getattr(self, f.name).flatten(0, 1) for f in fields(self)})

    def detach(self) -> "LatentSeq":
        return _map(self, lambda x: x.detach())

    @staticmethod
    def stack(states: list[LatentState]) -> "LatentSeq":
        first = states[0]
        return LatentSeq(**{f.name: None if getattr(first, f.name) is None else
                            torch.stack([getattr(s, f.name) for s in states], 1)
                            for f in fields(first)})


def _map(obj, fn):
    return type(obj)(**{f.name: None if getattr(obj, f.name) is None else fn(getattr(obj, f.name))
                        for f in fields(obj)})


def _draw(mean: torch.Tensor, std: torch.Tensor, noise: Optional[torch.Tensor]) -> torch.Tensor:
    """Reparameterised z = μ + σ ⊙ ε; ε = None gives the mean (deterministic rollouts)."""
    return mean if noise is None else mean + std * noise.to(mean.dtype)


class Transition(nn.Module):
    """Common interface; see the module docstring for the maths of each family."""

    deter_size: int = 0

    def __init__(self, cfg: ModelConfig, embed_size: int):
        super().__init__()
        self.cfg, self.stoch_size, self.embed_size = cfg, cfg.stoch_size, embed_size

    @property
    def state_size(self) -> int:
        return self.deter_size + self.stoch_size

    def initial_state(self, batch: int, like: torch.Tensor) -> LatentState:
        """The state before the first observation: z_0 = 0 (and h_0 = 0, g_0 = 0)."""
        z = like.new_zeros(batch, self.stoch_size)
        deter = like.new_zeros(batch, self.deter_size) if self.deter_size else None
        history = like.new_zeros(batch, self.history_size) if self.history_size else None
        return LatentState(z, torch.ones_like(z), z, deter, history)

    history_size: int = 0

    def from_vector(self, v: torch.Tensor) -> LatentState:
        """Inverse of LatentState.vector for a flat [N, S] (std is zero: a point state)."""
        deter, z = v[..., :self.deter_size], v[..., self.deter_size:]
        return LatentState(z, torch.zeros_like(z), z, deter if self.deter_size else None)

    # --- to implement --------------------------------------------------------------------------
    def context(self, embed: torch.Tensor, prev_actions: torch.Tensor,
                history0: Optional[torch.Tensor]) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        """Per-step posterior inputs computed before the loop: (ctx [B, T, K], history [B, T, G])."""
        raise NotImplementedError

    def posterior_step(self, prev: LatentState, prev_action: torch.Tensor, ctx: torch.Tensor,
                       noise: Optional[torch.Tensor]) -> LatentState:
        """q(z_t | ·) from the previous posterior state, a_{t−1} [B, A] and ctx_t [B, K]."""
        raise NotImplementedError

    def priors(self, post: LatentSeq, prev_actions: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) [B, T, Z] of p(z_t | z_{t−1}, a_{t−1}) for every t (t = 1: p(z_1))."""
        raise NotImplementedError

    def step(self, state: LatentState, action: torch.Tensor,
             noise: Optional[torch.Tensor] = None) -> LatentState:
        """One open-loop prior step p(z_{t+1} | z_t, a_t): state [N], action [N, A] -> state [N]."""
        raise NotImplementedError


class _HistoryPosterior(Transition):
    """Posterior for gaussian / locally_linear: history GRU over [e_t, a_{t−1}]; head on (g_t, e_t, z_{t−1}).
    With ModelConfig.posterior = "frame", the head sees e_t alone (E2C's per-frame encoder)."""

    def __init__(self, cfg: ModelConfig, embed_size: int):
        super().__init__(cfg, embed_size)
        self.per_frame = cfg.posterior == "frame"
        # First layer of the head, split by input so the (g_t, e_t) share is precomputed; the
        # extra Z outputs are a linear skip onto the mean (linear-Gaussian posteriors exactly).
        # (Built in this order so that a seed gives the filter the same initial weights as before the
        # per-frame option existed: recorded results reproduce.)
        width = cfg.hidden_size + cfg.stoch_size
        if not self.per_frame:
            self.history_size = cfg.deter_size
            self.history_rnn = nn.GRU(embed_size + cfg.action_dim, cfg.deter_size, batch_first=True)
            self.post_g = nn.Linear(cfg.deter_size, width)
        self.post_e = nn.Linear(embed_size, width, bias=self.per_frame)
        if not self.per_frame:
            self.post_z = nn.Linear(cfg.stoch_size, width, bias=False)
        self.post_out = nn.Sequential(activation(cfg.activation)(),
                                      mlp([cfg.hidden_size, cfg.hidden_size, 2 * cfg.stoch_size],
                                          cfg.activation))

    def context(self, embed, prev_actions, history0):
        if self.per_frame:
            return self.post_e(embed), None
        x = torch.cat([embed, prev_actions.to(embed.dtype)], -1)  # [B, T, E + A]
        h0 = None if history0 is None else history0.unsqueeze(0).to(x.dtype).contiguous()
        history, _ = self.history_rnn(x, h0)  # [B, T, G]
        return self.post_g(history) + self.post_e(embed), history

    def posterior_step(self, prev, prev_action, ctx, noise):
        first = ctx if self.per_frame else ctx + self.post_z(prev.sample)
        pre, skip = first.split([self.cfg.hidden_size, self.stoch_size], -1)
        mean, raw = self.post_out(pre).chunk(2, -1)
        mean = mean + skip
        if self.cfg.posterior_std > 0:  # PC3: a deterministic encoder plus a fixed latent noise
            std = torch.full_like(mean, self.cfg.posterior_std)
        else:
            std = std_from_raw(raw, self.cfg.min_std)
        return LatentState(mean, std, _draw(mean, std, noise))

    def priors(self, post, prev_actions):
        first_mean = torch.zeros_like(post.mean[:, :1])  # p(z_1) = N(0, I)
        first_std = torch.ones_like(post.std[:, :1])
        if post.length == 1:
            return first_mean, first_std
        mean, std = self._dist(post.sample[:, :-1], prev_actions[:, 1:])  # [B, T-1, Z]
        return (torch.cat([first_mean.to(mean.dtype), mean], 1),
                torch.cat([first_std.to(std.dtype), std], 1))

    def step(self, state, action, noise=None):
        mean, std = self._dist(state.sample, action)
        return LatentState(mean, std, _draw(mean, std, noise))

    def _dist(self, z: torch.Tensor, a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError


class GaussianTransition(_HistoryPosterior):
    """p(z'|z,a) = N(W[z,a] + MLP_μ(z,a), softplus(MLP_σ(z,a)) + min_std)."""

    def __init__(self, cfg: ModelConfig, embed_size: int):
        super().__init__(cfg, embed_size)
        self.dynamics = GaussianHead(cfg.stoch_size + cfg.action_dim, cfg.hidden_size,
                                     cfg.stoch_size, cfg.min_std, cfg.activation, linear_skip=True)

    def _dist(self, z, a):
        return self.dynamics(torch.cat([z, a.to(z.dtype)], -1))


class LocallyLinearTransition(_HistoryPosterior):
    """E2C: z' = A(z) z + B(z) a + c(z) + σ(z) ε with A = I + v rᵀ; v, r, B, c, σ from one MLP of z."""

    def __init__(self, cfg: ModelConfig, embed_size: int):
        super().__init__(cfg, embed_size)
        z, a = cfg.stoch_size, cfg.action_dim
        self.net = mlp([z, cfg.hidden_size, cfg.hidden_size, 4 * z + z * a], cfg.activation)
        with torch.no_grad():  # start near A = I, B = small: stable long rollouts at init
            self.net[-1].weight.mul_(0.1)
            self.net[-1].bias.zero_()

    def _parts(self, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """v, r, c, raw_std [N, Z] and B [N, Z, A] from the network at z [N, Z]."""
        zs, a = self.cfg.stoch_size, self.cfg.action_dim
        out = self.net(z)
        v, r, c, raw = out[..., :4 * zs].chunk(4, -1)
        return v, r, c, raw, out[..., 4 * zs:].unflatten(-1, (zs, a))

    @staticmethod
    def _linear(x: torch.Tensor, u: torch.Tensor, v: torch.Tensor, r: torch.Tensor,
                b: torch.Tensor) -> torch.Tensor:
        """A x + B u with A = I + v rᵀ: x [..., Z], u [..., A] -> [..., Z]."""
        return x + v * (r * x).sum(-1, keepdim=True) + (b @ u.unsqueeze(-1)).squeeze(-1)

    def _dist(self, z, a):
        v, r, c, raw, b = self._parts(z)
        mean = self._linear(z, a.to(z.dtype), v, r, b) + c
        return mean, std_from_raw(raw, self.cfg.min_std)

    def jacobians(self, z: torch.Tensor, a: torch.Tensor, exact: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(∂z'/∂z [N, Z, Z], ∂z'/∂a [N, Z, A]) of the mean step at (z [N, Z], a [N, A]).

        exact=False (E2C's local linearisation): (A, B) = (I + v rᵀ, B) evaluated at z, i.e. the
        exact Jacobian of the step with v, r, B, c held at the linearisation point.
        exact=True: the true Jacobian of z' = z + v (rᵀz) + B a + c with v, r, B, c functions of z,
        by the product rule: A + v (zᵀ J_r) + (rᵀz) J_v + Σ_k a_k J_{B·k} + J_c, the network
        Jacobian J from torch.func. ∂z'/∂a = B in both cases (B does not depend on a).
        """
        v, r, c, raw, b = self._parts(z)
        eye = torch.eye(z.shape[-1], dtype=v.dtype, device=v.device)
        jac_z = eye + v.unsqueeze(-1) * r.unsqueeze(-2)  # [N, Z, Z]
        if exact:
            zs, na = self.cfg.stoch_size, self.cfg.action_dim
            jnet = torch.func.vmap(torch.func.jacrev(self.net))(z)  # [N, 4Z + ZA, Z]
            j_v, j_r, j_c = jnet[:, :zs], jnet[:, zs:2 * zs], jnet[:, 2 * zs:3 * zs]
            j_b = jnet[:, 4 * zs:].unflatten(1, (zs, na))  # [N, Z, A, Z]
            rz = (r * z).sum(-1)  # [N]
            jac_z = (jac_z + torch.einsum("ni,nl,nlj->nij", v, z, j_r)
                     + rz[:, None, None] * j_v + torch.einsum("nk,nikj->nij", a.to(z.dtype), j_b)
                     + j_c)
        return jac_z, b

    def curvature(self, z: torch.Tensor, a: torch.Tensor, noise_z: torch.Tensor,
                  noise_a: torch.Tensor) -> torch.Tensor:
        """‖f(z + ε_z, a + ε_a) − f(z, a) − (A ε_z + B ε_a)‖² [...] at z [..., Z], a [..., A].

        PCC's curvature loss (Levine et al. 2020) with the Jacobian amortised as in PC3 (Shu et
        al. 2020): (A, B) is the network's own linearisation (`jacobians(exact=False)`), the one
        E2C plans with, so the loss asks the dynamics to be as linear near the data as that
        linearisation claims. f is the mean step; ε_z [..., Z], ε_a [..., A] are the perturbations.
        """
        v, r, c, _, b = self._parts(z)
        a, noise_a = a.to(z.dtype), noise_a.to(z.dtype)
        f0 = self._linear(z, a, v, r, b) + c
        f1, _ = self._dist(z + noise_z, a + noise_a)
        return (f1 - f0 - self._linear(noise_z, noise_a, v, r, b)).pow(2).sum(-1)


class RSSM(Transition):
    """PlaNet's recurrent state-space model: deterministic h_t plus stochastic z_t."""

    def __init__(self, cfg: ModelConfig, embed_size: int):
        super().__init__(cfg, embed_size)
        self.deter_size = cfg.deter_size
        self.gru_in = mlp([cfg.stoch_size + cfg.action_dim, cfg.hidden_size], cfg.activation,
                          out_act=True)
        self.cell = GRUCell(cfg.hidden_size, cfg.deter_size)
        self.prior_head = GaussianHead(cfg.deter_size, cfg.hidden_size, cfg.stoch_size,
                                       cfg.min_std, cfg.activation, layers=1)
        self.post_h = nn.Linear(cfg.deter_size, cfg.hidden_size)
        self.post_e = nn.Linear(embed_size, cfg.hidden_size, bias=False)
        self.post_out = nn.Sequential(activation(cfg.activation)(),
                                      nn.Linear(cfg.hidden_size, 2 * cfg.stoch_size))

    def _advance(self, state: LatentState, action: torch.Tensor) -> torch.Tensor:
        """h' = GRU(h, f(z, a)) [N, D]."""
        x = self.gru_in(torch.cat([state.sample, action.to(state.sample.dtype)], -1))
        return self.cell(x, state.deter.to(x.dtype))

    def context(self, embed, prev_actions, history0):
        return self.post_e(embed), None

    def posterior_step(self, prev, prev_action, ctx, noise):
        h = self._advance(prev, prev_action)
        mean, raw = self.post_out(self.post_h(h) + ctx).chunk(2, -1)
        std = std_from_raw(raw, self.cfg.min_std)
        return LatentState(mean, std, _draw(mean, std, noise), deter=h)

    def priors(self, post, prev_actions):
        return self.prior_head(post.deter)  # h_t is shared by prior and posterior at step t

    def step(self, state, action, noise=None):
        h = self._advance(state, action)
        mean, std = self.prior_head(h)
        return LatentState(mean, std, _draw(mean, std, noise), deter=h)


def make_transition(cfg: ModelConfig, embed_size: int) -> Transition:
    """The transition family named by cfg.transition."""
    return {"gaussian": GaussianTransition, "rssm": RSSM,
            "locally_linear": LocallyLinearTransition}[cfg.transition](cfg, embed_size)
