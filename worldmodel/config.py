"""ModelConfig: every setting of the world model in one frozen dataclass, with named presets.

Defaults follow PlaNet (Hafner et al. 2019, "Learning Latent Dynamics for Planning from Pixels",
ICML, Section 4 and Appendix A) unless another source is cited next to the number.
`to_dict` / `from_dict` give a JSON round trip (tuples survive) for checkpoints.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Optional, TypeVar

TRANSITIONS = ("gaussian", "rssm", "locally_linear")
DECODERS = ("auto", "conv", "mlp", "linear")
IMAGE_SIZES = (32, 48, 64, 80, 84, 128)  # 48 and 80: E2C's pendulum and cart-pole; 64: PlaNet;
# 84: DrQ/CURL; 128: the cart-pole's pole at a finer angle resolution (docs/e2c_results.md)
ACTIVATIONS = ("relu", "elu")


def check_known_keys(cls: type, d: dict[str, Any]) -> None:
    """Raise ValueError naming the keys of `d` that are not fields of the dataclass `cls`
    (the check every config's `from_dict` makes before building itself)."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(known)}")


_Config = TypeVar("_Config", bound="DictConfig")


class DictConfig:
    """The JSON round trip of a flat config dataclass (one whose fields are plain values):
    `to_dict` for config.json and checkpoints, `from_dict` refusing unknown keys by name."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[_Config], d: dict[str, Any]) -> _Config:
        check_known_keys(cls, d)
        return cls(**d)


@dataclass(frozen=True)
class ModelConfig:
    """Settings of `WorldModel`. Sizes are per time step; S (planning state) = deter + stoch."""

    transition: str = "rssm"  # one of TRANSITIONS (see worldmodel.transitions)
    obs_shape: tuple[int, ...] = (3, 64, 64)  # (C, H, W) images, or (D,) vector observations
    action_dim: int = 1
    deter_size: int = 200  # GRU state h_t of the rssm and of the history encoder; PlaNet
    stoch_size: int = 30  # z_t; PlaNet
    hidden_size: int = 200  # MLP widths; PlaNet
    cnn_depth: int = 32  # channels of the first conv layer (then x2, x4, x8); PlaNet
    min_std: float = 0.1  # floor of every predicted std; PlaNet ("min_stddev")
    activation: str = "relu"  # PlaNet uses ReLU; Dreamer uses ELU
    decoder: str = "auto"  # auto = conv for images, mlp for vectors; "linear" for vector obs only
    obs_std: float = 1.0  # std of p(o_t | z_t), fixed; unit variance as in PlaNet
    predict_reward: bool = True  # False: no reward head, the bound is on the observations only
    reward_std: float = 1.0  # std of p(r_t | z_{t+1}); unit variance as in PlaNet
    reward_weight: float = 1.0  # scale of the reward NLL in the loss (knob, not in "elbo")
    free_nats: float = 3.0  # per-step KL floor; PlaNet. 0 = off
    kl_balance: Optional[float] = None  # alpha; DreamerV2 (Hafner et al. 2021) uses 0.8. None = off
    kl_scale: float = 1.0  # beta on the one-step KL (1 = the ELBO)
    overshooting_distance: int = 0  # D of latent overshooting (PlaNet Sec. 3); 0 = off
    overshooting_kl_scale: float = 1.0  # weight of the mean multi-step KL (d = 2..D)
    overshooting_reward_scale: float = 0.0  # weight of the mean d-step reward NLL (d = 1..D); 0 = off
    # per sample and step, overshooting KLs above this many nats grow only logarithmically
    # (distributions.soft_cap): an E2C cart-pole run (locally-linear dynamics, D = 4) diverged at
    # update 4748 of 12 000 when one open-loop rollout ran away to 1.1e18 nats and its gradient
    # overflowed. Normal values are tens of nats, so below the cap the loss is unchanged. None: off.
    overshooting_kl_cap: float | None = 1e4
    value_head: bool = False  # learn V(s) by TD(λ) (worldmodel.value); planning adds V(s_H)
    discount: float = 0.99  # γ of the value head (per agent step, i.e. per repeated action)
    value_lambda: float = 0.95  # λ of the value targets
    value_weight: float = 1.0  # scale of the value loss (knob, not in "elbo"; the latent is detached)
    value_target: str = "recorded"  # recorded: TD(λ) on the data's latents (the collecting policy's
    # value); imagined: Dreamer's actor-critic in imagination (an actor head, a policy's value improved)
    imagination_horizon: int = 15  # steps imagined per posterior state (value_target="imagined"); Dreamer
    actor_entropy: float = 1e-3  # entropy bonus of the actor, per step, against rewards on their own scale
    # PCC's curvature loss (Levine et al. 2020) on the locally_linear dynamics, with PC3's amortised
    # Jacobian (LocallyLinearTransition.curvature): its weight (0 = off) and the std δ of the
    # perturbations of z and a. Neither value is tuned.
    curvature_scale: float = 0.0
    curvature_noise: float = 0.1
    # PC3's predictive-coding term (worldmodel.predictive_coding): weight of the InfoNCE loss of the
    # one-step prediction against the batch's next posterior means (0 = off). Beside the ELBO, not
    # in place of the decoder as in PC3; the weight is not tuned.
    predictive_coding_scale: float = 0.0
    # E2C's observation (Watter et al. 2015, Sec. 5; also PCC and PC3): grayscale frames, two stacked.
    # grayscale: the encoder sees, and the decoder models, each frame's luma instead of its colours.
    # frame_stack = k: the encoder sees each frame with the k−1 before it, stacked along channels (the
    # first frame repeated before an episode's start), so one frame's embedding carries velocity. The
    # decoder still models only the current frame, p(o_t | z_t). Images stay RGB everywhere else.
    grayscale: bool = False
    frame_stack: int = 1
    # "filter": the recurrent history encoder q(z_t | o_≤t, a_<t, z_{t−1}) of DESIGN.md. "frame": E2C's,
    # PCC's and PC3's per-frame encoder q(z_t | o_t) (with frame_stack, the last k frames), so the latent
    # must come from the image: the posterior cannot lean on z_{t−1} and a_{t−1}. gaussian and
    # locally_linear only (the rssm's posterior is built on its recurrent state).
    posterior: str = "filter"
    # weight of the reconstruction NLL in the loss ("elbo" keeps it whole). 0 trains no decoder: PC3's
    # decoder-free objective (Shu et al. 2020), predictive coding plus the KL to the dynamics' prediction
    # as its consistency term; it needs predictive_coding_scale > 0, or nothing ties the latent to the images.
    reconstruction_scale: float = 1.0
    # PC3's deterministic encoder (VinAIResearch/PC3-pytorch: latent_noise 0.1, norm_coeff 0.1). 0: the
    # posterior predicts its std (the VAE). s > 0: every posterior std is s, a fixed latent noise, so the
    # KL to the dynamics' prediction is PC3's consistency term (−log p(z_{t+1} | z_t, a_t), up to a
    # constant) and the first step's KL to N(0, I), which would pull the latents together against
    # InfoNCE's fixed-scale scores, is left out of the loss ("elbo" keeps it). gaussian and
    # locally_linear only.
    posterior_std: float = 0.0
    # PC3's centring: weight of ‖batch mean of the posterior means‖², which keeps the latents near the
    # origin without the N(0, I) term. 0 = off.
    center_scale: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "obs_shape", tuple(int(x) for x in self.obs_shape))
        if self.transition not in TRANSITIONS:
            raise ValueError(f"transition must be one of {TRANSITIONS}, got {self.transition!r}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation must be one of {ACTIVATIONS}, got {self.activation!r}")
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if len(self.obs_shape) == 3:
            c, h, w = self.obs_shape
            if h != w or h not in IMAGE_SIZES:
                raise ValueError(f"image obs_shape must be (C, S, S) with S in {IMAGE_SIZES}, got "
                                 f"{self.obs_shape}; resize the images when collecting")
            if self.decoder in ("mlp", "linear"):
                raise ValueError(f"decoder={self.decoder!r} is for vector observations; images "
                                 f"{self.obs_shape} need decoder='conv' or 'auto'")
        elif len(self.obs_shape) == 1:
            if self.decoder == "conv":
                raise ValueError(f"decoder='conv' needs image observations, got obs_shape "
                                 f"{self.obs_shape}; use 'mlp' or 'linear'")
        else:
            raise ValueError(f"obs_shape must be (C, H, W) or (D,), got {self.obs_shape}")
        for name in ("action_dim", "deter_size", "stoch_size", "hidden_size", "cnn_depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("min_std", "obs_std", "reward_std"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.free_nats < 0 or self.reward_weight < 0 or self.kl_scale < 0:
            raise ValueError("free_nats, reward_weight and kl_scale must be >= 0, got "
                             f"{self.free_nats}, {self.reward_weight}, {self.kl_scale}")
        if not 0.0 <= self.discount < 1.0 or not 0.0 <= self.value_lambda <= 1.0:
            raise ValueError(f"discount must be in [0, 1) and value_lambda in [0, 1], got "
                             f"{self.discount}, {self.value_lambda}")
        if self.value_target not in ("recorded", "imagined"):
            raise ValueError(f"value_target must be 'recorded' or 'imagined', got {self.value_target!r}")
        if self.imagination_horizon < 1 or self.actor_entropy < 0:
            raise ValueError(f"imagination_horizon must be >= 1 and actor_entropy >= 0, got "
                             f"{self.imagination_horizon}, {self.actor_entropy}")
        if self.value_weight < 0:
            raise ValueError(f"value_weight must be >= 0, got {self.value_weight}")
        if self.value_head and not self.predict_reward:
            raise ValueError("value_head=True needs predict_reward=True (the value is of rewards)")
        if self.kl_balance is not None and not 0.0 <= self.kl_balance <= 1.0:
            raise ValueError(f"kl_balance must be None or in [0, 1], got {self.kl_balance}")
        if self.overshooting_kl_cap is not None and not self.overshooting_kl_cap > 0:
            raise ValueError(f"overshooting_kl_cap must be > 0 nats or None (no cap), got "
                             f"{self.overshooting_kl_cap!r}")
        if self.overshooting_kl_scale < 0 or self.overshooting_reward_scale < 0:
            raise ValueError("overshooting_kl_scale and overshooting_reward_scale must be >= 0, got "
                             f"{self.overshooting_kl_scale}, {self.overshooting_reward_scale}")
        if self.curvature_scale < 0 or not self.curvature_noise > 0:
            raise ValueError(f"curvature_scale must be >= 0 and curvature_noise > 0, got "
                             f"{self.curvature_scale}, {self.curvature_noise}")
        if not self.predictive_coding_scale >= 0:
            raise ValueError(f"predictive_coding_scale must be >= 0 (0 = off), got {self.predictive_coding_scale}")
        if not isinstance(self.frame_stack, int) or self.frame_stack < 1:
            raise ValueError(f"frame_stack must be an int >= 1 (1 = single frames; E2C stacks 2), got "
                             f"{self.frame_stack!r}")
        if self.posterior not in ("filter", "frame"):
            raise ValueError(f"posterior must be 'filter' or 'frame', got {self.posterior!r}")
        if self.posterior == "frame" and self.transition == "rssm":
            raise ValueError("posterior='frame' needs transition 'gaussian' or 'locally_linear': the rssm's "
                             "posterior is built on its recurrent state")
        if not (self.posterior_std >= 0 and self.center_scale >= 0):
            raise ValueError(f"posterior_std and center_scale must be >= 0 (0 = off), got "
                             f"{self.posterior_std}, {self.center_scale}")
        if self.posterior_std > 0 and self.transition == "rssm":
            raise ValueError("posterior_std > 0 (PC3's fixed latent noise) needs transition 'gaussian' or "
                             "'locally_linear'")
        if not self.reconstruction_scale >= 0:
            raise ValueError(f"reconstruction_scale must be >= 0, got {self.reconstruction_scale}")
        if self.reconstruction_scale == 0 and self.predictive_coding_scale == 0:
            raise ValueError("reconstruction_scale=0 (no decoder) needs predictive_coding_scale > 0 (PC3 "
                             "uses 1): without either, nothing ties the latent to the images")
        if self.grayscale and not (len(self.obs_shape) == 3 and self.obs_shape[0] == 3):
            raise ValueError(f"grayscale=True needs RGB images, obs_shape (3, S, S); got {self.obs_shape}")
        if self.curvature_scale > 0 and self.transition != "locally_linear":
            raise ValueError(f"curvature_scale > 0 is PCC's loss on locally_linear dynamics; got "
                             f"transition={self.transition!r}: set transition='locally_linear' or "
                             f"curvature_scale=0")
        if self.overshooting_distance < 0 or self.overshooting_distance == 1:
            raise ValueError(f"overshooting_distance must be 0 (off) or >= 2, got "
                             f"{self.overshooting_distance} (d = 1 is the ordinary KL)")

    @property
    def is_image(self) -> bool:
        return len(self.obs_shape) == 3

    @property
    def observed_channels(self) -> int:
        """Channels (or vector size) of one frame as the model sees it: 1 for grayscale images."""
        return 1 if self.grayscale else self.obs_shape[0]

    @property
    def decoder_kind(self) -> str:
        """The decoder actually built ("auto" resolved)."""
        if self.decoder != "auto":
            return self.decoder
        return "conv" if self.is_image else "mlp"

    @property
    def trains_actor(self) -> bool:
        """Whether the model has an actor: a value learnt in imagination (worldmodel.value)."""
        return self.value_head and self.value_target == "imagined"

    @property
    def state_size(self) -> int:
        """S, the flat planning state size: deter + stoch for rssm, stoch otherwise."""
        return self.stoch_size + (self.deter_size if self.transition == "rssm" else 0)

    @classmethod
    def planet(cls, **overrides: Any) -> "ModelConfig":
        """PlaNet's RSSM (Hafner et al. 2019, Appendix A): GRU 200, stoch 30, hidden 200, depth 32."""
        base = dict(transition="rssm", obs_shape=(3, 64, 64), deter_size=200, stoch_size=30,
                    hidden_size=200, cnn_depth=32, min_std=0.1, free_nats=3.0)
        return cls(**{**base, **overrides})

    @classmethod
    def small(cls, **overrides: Any) -> "ModelConfig":
        """A model a 2-core CPU trains in minutes (about 1/4 of PlaNet's compute per frame)."""
        base = dict(transition="rssm", obs_shape=(3, 64, 64), deter_size=128, stoch_size=16,
                    hidden_size=128, cnn_depth=16, min_std=0.1, free_nats=3.0)
        return cls(**{**base, **overrides})

    def replace(self, **changes: Any) -> "ModelConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists; `from_dict` restores them)."""
        d = asdict(self)
        d["obs_shape"] = list(self.obs_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelConfig":
        """Inverse of `to_dict`; unknown keys are an error naming them."""
        check_known_keys(cls, d)
        d = dict(d)
        if "obs_shape" in d:
            d["obs_shape"] = tuple(d["obs_shape"])
        return cls(**d)
