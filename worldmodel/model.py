"""WorldModel: the sequence-level conditional VAE and its evidence lower bound.

Notation (batch.py alignment): o_t = images[:, t], a_t = actions[:, t] taken after o_t,
r_t = rewards[:, t] arriving with o_{t+1}; t = 1..T (code index 0..T-1).

    log p(o_{1:T}, r_{1:T-1} | a)  ≥  ELBO =
        Σ_t E_q[log p_θ(o_t | z_t)]                              reconstruction
      + Σ_{t<T} E_q[log p_θ(r_t | z_{t+1})]                      reward
      − KL(q(z_1 | o_1) ‖ p(z_1))                                initial KL
      − Σ_{t<T} E_q[KL(q(z_{t+1} | ·) ‖ p_ψ(z_{t+1} | z_t, a_t))]  dynamics KL

with q(z_t | o_≤t, a_<t, z_{t−1}) the recurrent history encoder (worldmodel.transitions), samples
reparameterised z = μ + σ ε and every KL in closed form. `loss` reports each term per time step
(sequence sum / T, batch mean); "elbo" is the bound itself; "loss" adds the knobs (free nats, KL
balancing, KL scale, reward weight, latent overshooting, PCC's curvature loss, PC3's predictive
coding, the value head's TD(λ) loss) and is what training minimises.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from worldmodel.config import ModelConfig
from worldmodel.data.batch import Batch
from worldmodel.distributions import (free_nats, gaussian_log_prob, kl_balanced, kl_gaussian, soft_cap,
                                      standard_normal)
from worldmodel.networks import ConvDecoder, ConvEncoder, mlp, vector_decoder, VectorEncoder
from worldmodel.predictive_coding import info_nce
from worldmodel.transitions import LatentSeq, LatentState, make_transition
from worldmodel.latent_problem import GoalObjective, latent_problem
from worldmodel.value import Actor, imagined_actor_critic, value_loss

# ITU-R BT.601 luma weights; they sum to 1, so the luma of images in [-0.5, 0.5] stays in that range
LUMA = (0.299, 0.587, 0.114)


class WorldModel(nn.Module):
    """Encoder, transition (prior + posterior), decoder and reward head; see the module docstring."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        act = cfg.activation
        seen = cfg.observed_channels  # of one frame; the encoder sees frame_stack of them
        if cfg.is_image:
            size = cfg.obs_shape[1]
            self.encoder: nn.Module = ConvEncoder(seen * cfg.frame_stack, size, cfg.cnn_depth, act)
            embed = self.encoder.embed_size
        else:
            self.encoder = VectorEncoder(seen * cfg.frame_stack, cfg.hidden_size, act)
            embed = self.encoder.embed_size
        self.transition = make_transition(cfg, embed)
        s = self.transition.state_size
        if cfg.decoder_kind == "conv":
            self.decoder: nn.Module = ConvDecoder(s, seen, cfg.obs_shape[1], cfg.cnn_depth, act)
        else:
            self.decoder = vector_decoder(cfg.decoder_kind, s, cfg.obs_shape[0],
                                          cfg.hidden_size, act)
        self.reward_head = (mlp([s, cfg.hidden_size, cfg.hidden_size, 1], act)
                            if cfg.predict_reward else None)
        self.value_head = (mlp([s, cfg.hidden_size, cfg.hidden_size, 1], act)
                           if cfg.value_head else None)
        self.actor = Actor(s, cfg.action_dim, cfg.hidden_size, act) if cfg.trains_actor else None

    # --- shapes and checks ---------------------------------------------------------------------
    @property
    def state_size(self) -> int:
        """S, the flat planning state size (rssm: deter + stoch; others: stoch)."""
        return self.transition.state_size

    def _check_obs(self, x: torch.Tensor, name: str, lead: int) -> None:
        """x must be float with `lead` leading dims then cfg.obs_shape."""
        want = ("B", "T")[:lead] + self.cfg.obs_shape
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name} must be a tensor {list(want)}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"{name} has dtype {x.dtype}; the model expects float images in "
                             f"[-0.5, 0.5]: convert with x.float() / 255 - 0.5")
        if x.dim() != lead + len(self.cfg.obs_shape) or tuple(x.shape[lead:]) != self.cfg.obs_shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, expected {list(want)} with "
                             f"obs_shape {self.cfg.obs_shape} from the ModelConfig")

    def _check_actions(self, actions: torch.Tensor, lead: tuple[int, ...], images_shape,
                       name: str = "actions") -> None:
        a = self.cfg.action_dim
        if actions.dim() != len(lead) + 1 or actions.shape[-1] != a:
            raise ValueError(f"{name} has shape {tuple(actions.shape)}, expected "
                             f"[{', '.join(map(str, lead))}, {a}] (action_dim={a} from the config)")
        if tuple(actions.shape[:-1]) != lead:
            raise ValueError(f"{name} shape {tuple(actions.shape)} does not match the leading "
                             f"dims of images shape {tuple(images_shape)}; B and T must agree")

    # --- the networks, batched over every frame ----------------------------------------------
    def observed(self, images: torch.Tensor) -> torch.Tensor:
        """Frames [..., C, H, W] as the model sees and reconstructs them: themselves, or their luma
        [..., 1, H, W] with grayscale=True (the decoder's target; see `decode`)."""
        if not self.cfg.grayscale:
            return images
        return (images * images.new_tensor(LUMA).view(3, 1, 1)).sum(-3, keepdim=True)

    def encoder_input(self, images: torch.Tensor, earlier: Optional[torch.Tensor] = None) -> torch.Tensor:
        """What the encoder sees at each step [B, T, k·C', ...]: the observed frame stacked along
        channels after the k−1 before it (k = frame_stack, oldest first). Before the first of
        `images`, the frames are `earlier` [B, (k−1)·C', ...] (a continued filter's) or, at an
        episode's start, the first frame repeated: a scene at rest."""
        x = self.observed(images)  # [B, T, C', ...]
        k = self.cfg.frame_stack
        if k == 1:
            return x
        b, t = x.shape[:2]
        if earlier is None:
            before = x[:, :1].expand(b, k - 1, *x.shape[2:])
        else:
            before = earlier.reshape(b, k - 1, *x.shape[2:]).to(x.dtype)
        frames = torch.cat([before, x], 1)  # [B, k−1+T, C', ...]
        return torch.cat([frames[:, i:i + t] for i in range(k)], 2)

    def encode(self, images: torch.Tensor, earlier: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Frame embeddings e [B, T, E] of images [B, T, *obs_shape] (see `encoder_input` for
        `earlier`); one batched encoder call over all B·T frames."""
        x = self.encoder_input(images, earlier)
        b, t = x.shape[:2]
        return self.encoder(x.flatten(0, 1)).unflatten(0, (b, t))

    def decode(self, seq: LatentSeq) -> torch.Tensor:
        """Observation means [B, T, C', H, W] from the features [deter, z]: C' = 3, or 1 with
        grayscale=True (compare with `observed(images)`)."""
        f = seq.vector()  # [B, T, S]
        return self.decoder(f.flatten(0, 1)).unflatten(0, f.shape[:2])

    def predict_reward(self, seq: LatentSeq) -> torch.Tensor:
        """Reward means [B, T]; by the alignment, features of z_{t+1} predict r_t."""
        if self.reward_head is None:
            raise ValueError("this model has no reward head (ModelConfig.predict_reward=False)")
        return self.reward_head(seq.vector()).squeeze(-1)

    # --- inference -----------------------------------------------------------------------------
    def observe(self, images: torch.Tensor, actions: torch.Tensor,
                start: Optional[LatentState] = None, generator: Optional[torch.Generator] = None,
                sample: bool = True) -> LatentSeq:
        """Filtering posterior q(z_t | o_≤t, a_<t, z_{t−1}) for t = 1..T: images [B, T, ...],
        actions [B, T, A] (a_t follows o_t; the last one is unused). sample=False uses means."""
        self._check_obs(images, "images", 2)
        self._check_actions(actions, tuple(images.shape[:2]), images.shape)
        b, t = images.shape[:2]
        embed = self.encode(images, None if start is None else start.frames)  # [B, T, E]
        if start is None:
            prev_actions = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
            state = self.transition.initial_state(b, embed)
        else:  # continue a filter: `start` is z_0, actions[:, 0] is the action that followed it
            prev_actions, state = actions, start
        ctx, history = self.transition.context(embed, prev_actions, state.history)  # [B, T, K]
        noise = (standard_normal((t, b, self.cfg.stoch_size), embed, generator)
                 if sample else [None] * t)
        states = []
        for i in range(t):
            state = self.transition.posterior_step(state, prev_actions[:, i], ctx[:, i], noise[i])
            states.append(state)
        seq = LatentSeq.stack(states)
        seq.history = history
        return seq

    def filter_step(self, state: Optional[LatentState], prev_action: Optional[torch.Tensor],
                    image: torch.Tensor, generator: Optional[torch.Generator] = None,
                    sample: bool = False) -> LatentState:
        """One MPC filtering step: fold image [B, ...] (seen after prev_action [B, A]) into state.

        state=None starts a new episode (prev_action is then ignored); a state needs the action
        taken since it. Uses the posterior mean unless sample=True, so control is deterministic
        given the images.
        """
        self._check_obs(image, "image", 1)
        b = image.shape[0]
        if state is not None and prev_action is None:
            raise ValueError("filter_step got a state but no prev_action: pass the action applied since "
                             "that state, or state=None to start a new episode")
        if state is None:
            prev_action = image.new_zeros(b, self.cfg.action_dim)
        self._check_actions(prev_action, (b,), image.shape, "prev_action")
        seq = self.observe(image.unsqueeze(1), prev_action.unsqueeze(1), start=state,
                           generator=generator, sample=sample)
        out = seq.last()
        if self.cfg.frame_stack > 1:  # keep the newest k−1 frames for the next step's stack
            seen = self.encoder_input(image.unsqueeze(1), None if state is None else state.frames)[:, 0]
            out.frames = seen[:, self.cfg.observed_channels:]
        return out

    def imagine(self, state: LatentState, actions: torch.Tensor, sample: bool = True,
                generator: Optional[torch.Generator] = None) -> LatentSeq:
        """Open-loop prior rollout: from z_t and actions a_t..a_{t+H−1} [B, H, A], the H next
        states z_{t+1..t+H}. sample=False follows the prior means (deterministic)."""
        b = state.mean.shape[0]
        if actions.dim() != 3 or actions.shape[0] != b or actions.shape[2] != self.cfg.action_dim:
            raise ValueError(f"actions has shape {tuple(actions.shape)}, expected [B, H, "
                             f"{self.cfg.action_dim}] with B = {b} from the state "
                             f"(mean shape {tuple(state.mean.shape)})")
        states = []
        for i in range(actions.shape[1]):
            noise = (standard_normal(tuple(state.mean.shape), state.mean, generator)
                     if sample else None)
            state = self.transition.step(state, actions[:, i], noise)
            states.append(state)
        return LatentSeq.stack(states)

    # --- the bound -----------------------------------------------------------------------------
    def elbo_terms(self, batch: Batch, generator: Optional[torch.Generator] = None
                   ) -> tuple[dict[str, torch.Tensor], LatentSeq, tuple[torch.Tensor, ...]]:
        """Per-sequence ELBO terms, each [B] and summed over time (see module docstring).

        Returns (terms, posterior, (prior_mean, prior_std)) so `loss` can add knobs without
        recomputing. terms: recon_nll, reward_nll, kl_init, kl_dyn, elbo, and kl_steps [B, T].
        """
        images, actions = batch.images, batch.actions
        post = self.observe(images, actions, generator=generator)
        prev_actions = torch.cat([torch.zeros_like(actions[:, :1]), actions[:, :-1]], 1)
        prior_mean, prior_std = self.transition.priors(post, prev_actions)  # [B, T, Z]

        obs_dims = len(self.cfg.obs_shape)
        recon_nll = -gaussian_log_prob(self.observed(images), self.decode(post), self.cfg.obs_std,
                                       obs_dims).sum(1)  # [B]
        if self.reward_head is not None:
            if tuple(batch.rewards.shape) != tuple(images.shape[:2]):
                raise ValueError(f"rewards shape {tuple(batch.rewards.shape)} does not match "
                                 f"images shape {tuple(images.shape)}; expected [B, T]")
            reward_nll = -gaussian_log_prob(batch.rewards[:, :-1], self.predict_reward(post[1:]),
                                            self.cfg.reward_std, 0).sum(1)  # [B]
        else:
            reward_nll = torch.zeros_like(recon_nll)
        kl_steps = kl_gaussian(post.mean, post.std, prior_mean, prior_std)  # [B, T]
        terms = dict(recon_nll=recon_nll, reward_nll=reward_nll, kl_init=kl_steps[:, 0],
                     kl_dyn=kl_steps[:, 1:].sum(1), kl_steps=kl_steps)
        terms["elbo"] = -(recon_nll + reward_nll + terms["kl_init"] + terms["kl_dyn"])
        return terms, post, (prior_mean, prior_std)

    def loss(self, batch: Batch, generator: Optional[torch.Generator] = None
             ) -> dict[str, torch.Tensor]:
        """Scalars per time step: "loss" (minimise), "elbo" (the bound), and each term."""
        cfg = self.cfg
        terms, post, (prior_mean, prior_std) = self.elbo_terms(batch, generator)
        t = batch.images.shape[1]
        per_step = {k: v.mean() / t for k, v in terms.items() if k != "kl_steps"}
        out = {"elbo": per_step["elbo"], "recon_nll": per_step["recon_nll"],
               "reward_nll": per_step["reward_nll"], "kl_init": per_step["kl_init"],
               "kl_dyn": per_step["kl_dyn"], "kl": per_step["kl_init"] + per_step["kl_dyn"]}
        if cfg.kl_balance is None:
            kl_train = terms["kl_steps"]
        else:
            kl_train = kl_balanced(post.mean, post.std, prior_mean, prior_std, cfg.kl_balance)
        if cfg.posterior_std > 0 and t > 1:  # PC3: no N(0, I) term on z_1 (ModelConfig.posterior_std)
            kl_train = kl_train[:, 1:]
        kl_knob = free_nats(kl_train, cfg.free_nats).mean()  # per step, batch mean
        loss = (cfg.reconstruction_scale * out["recon_nll"] + cfg.reward_weight * out["reward_nll"]
                + cfg.kl_scale * kl_knob)
        if cfg.overshooting_distance >= 2:
            over = self.overshooting(post, batch.actions, batch.rewards, generator)
            out.update(over)
            loss = loss + cfg.overshooting_kl_scale * over["overshooting_kl"]
            if "overshooting_reward_nll" in over:
                loss = loss + cfg.overshooting_reward_scale * over["overshooting_reward_nll"]
        if cfg.curvature_scale > 0:
            out["curvature"] = self.curvature(post, batch.actions, generator)
            loss = loss + cfg.curvature_scale * out["curvature"]
        if cfg.predictive_coding_scale > 0 and t > 1:  # predictions of z_2..z_T against their posteriors
            out["predictive_coding"] = info_nce(prior_mean[:, 1:].flatten(0, 1), prior_std[:, 1:].flatten(0, 1),
                                                post.mean[:, 1:].flatten(0, 1))
            loss = loss + cfg.predictive_coding_scale * out["predictive_coding"]
        if cfg.center_scale > 0:  # PC3's centring of the latents
            out["center"] = post.mean.flatten(0, 1).mean(0).pow(2).sum()
            loss = loss + cfg.center_scale * out["center"]
        if self.actor is not None:  # from every posterior state; the world model is not shaped by it
            out.update(imagined_actor_critic(self.transition, self.reward_head, self.value_head,
                                             self.actor, post.flat().detach(), cfg.imagination_horizon,
                                             cfg.discount, cfg.value_lambda, cfg.actor_entropy, generator))
            loss = loss + cfg.value_weight * out["value_loss"] + out["actor_loss"]
        elif self.value_head is not None:  # on the posterior means; the latent is not shaped by it
            out["value_loss"] = value_loss(self.value_head, post.vector(use_mean=True).detach(),
                                           batch.rewards, cfg.discount, cfg.value_lambda)
            loss = loss + cfg.value_weight * out["value_loss"]
        out["loss"] = loss
        return out

    def curvature(self, post: LatentSeq, actions: torch.Tensor,
                  generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """PCC's curvature loss, mean over the transitions (z_t, a_t) of the posterior samples;
        it shapes the encoder too, as in PCC (LocallyLinearTransition.curvature)."""
        z, a = post.sample[:, :-1], actions[:, :-1]  # [B, T-1, Z], [B, T-1, A]
        if z.shape[1] == 0:
            return z.new_zeros(())
        delta = self.cfg.curvature_noise
        noise_z = delta * standard_normal(tuple(z.shape), z, generator)
        noise_a = delta * standard_normal(tuple(a.shape), z, generator)
        return self.transition.curvature(z, a, noise_z, noise_a).mean()

    def overshooting(self, post: LatentSeq, actions: torch.Tensor, rewards: Optional[torch.Tensor],
                     generator: Optional[torch.Generator] = None) -> dict[str, torch.Tensor]:
        """Latent overshooting (PlaNet, Sec. 3) from every start t at once, per time step:

        - "overshooting_kl": mean over d = 2..D of the KL between the (stop-gradient) posterior
          at t+d and the d-step open-loop prior from the posterior at t, softly capped
          (`overshooting_kl_cap`), then free nats, per step;
        - "overshooting_reward_nll" (only with overshooting_reward_scale > 0 and a reward head):
          mean over d = 1..D of the reward NLL of the d-step open-loop latents. The planner
          scores plans by exactly these rewards, which drift from the truth over the horizon
          (benchmarks/online_model_diagnosis.py); the one-step bound never trains them.
        """
        cfg = self.cfg
        b, t = post.mean.shape[:2]
        zero = post.mean.new_zeros((), dtype=torch.float32)
        with_reward = (cfg.overshooting_reward_scale > 0 and self.reward_head is not None
                       and rewards is not None)
        if t < 2 or (t < 3 and not with_reward):
            return {"overshooting_kl": zero, **({"overshooting_reward_nll": zero} if with_reward else {})}
        starts = torch.arange(t - 1, device=actions.device)  # t = 0..T-2
        state = post[:-1].flat()  # [B·(T-1)]
        target = post.detach()
        kl_total, kl_count, r_total, r_count = zero, 0, zero, 0
        for d in range(1, min(cfg.overshooting_distance, t - 1) + 1):
            act = actions[:, (starts + d - 1).clamp(max=t - 1)].flatten(0, 1)  # [B·(T-1), A]
            noise = standard_normal(tuple(state.mean.shape), state.mean, generator)
            state = self.transition.step(state, act, noise)
            idx = (starts + d).clamp(max=t - 1)
            valid = (starts + d <= t - 1).to(torch.float32)  # [T-1]
            if with_reward:  # the features of z_{t+d} predict r_{t+d-1}
                predicted = self.reward_head(state.vector()).squeeze(-1).unflatten(0, (b, t - 1))
                nll = -gaussian_log_prob(rewards[:, idx - 1], predicted, cfg.reward_std, 0)
                r_total = r_total + (nll * valid).sum(1).mean() / t
                r_count += 1
            if d < 2:
                continue
            kl = kl_gaussian(target.mean[:, idx].flatten(0, 1), target.std[:, idx].flatten(0, 1),
                             state.mean, state.std).unflatten(0, (b, t - 1))  # [B, T-1]
            kl = soft_cap(kl, cfg.overshooting_kl_cap)
            kl_total = kl_total + (free_nats(kl, cfg.free_nats) * valid).sum(1).mean() / t
            kl_count += 1
        out = {"overshooting_kl": kl_total / max(kl_count, 1)}
        if with_reward:
            out["overshooting_reward_nll"] = r_total / max(r_count, 1)
        return out

    # --- planning ------------------------------------------------------------------------------
    def to_vector(self, state: LatentState, use_mean: bool = True) -> torch.Tensor:
        """Flat planning state [B, S] = [deter, z] (posterior mean by default)."""
        return state.vector(use_mean=use_mean)

    def from_vector(self, v: torch.Tensor) -> LatentState:
        """A point LatentState from a flat [B, S] (inverse of to_vector)."""
        if v.shape[-1] != self.state_size:
            raise ValueError(f"state vector has shape {tuple(v.shape)}, expected [..., "
                             f"{self.state_size}] (state_size of this model)")
        return self.transition.from_vector(v)

    # A planners.Problem over flat latent states [N, S] for a reward or a goal objective: its
    # objectives and options are explained at worldmodel.latent_problem.latent_problem.
    planning_problem = latent_problem


__all__ = ["GoalObjective", "WorldModel"]
