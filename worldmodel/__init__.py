"""worldmodel: sequence-VAE world models of pixel control tasks, and control by latent planning.

Notation used throughout: o_t observations (images [C, H, W] as float in [-0.5, 0.5]),
a_t actions [A], r_t rewards, z_t latent states [S]; batches of sequences are [B, T, ...].
The model is a conditional VAE over whole trajectories:
    p(o_{1:T}, z_{1:T} | a) = p(z_1) Π_t p_ψ(z_{t+1} | z_t, a_t) Π_t p_θ(o_t | z_t)
    q(z_{1:T} | o, a)       = Π_t q_φ(z_t | o_{≤t}, a_{<t}, z_{t-1})
trained by maximising the ELBO (see worldmodel.model).
"""
from worldmodel.config import ModelConfig
from worldmodel.model import WorldModel

__all__ = ["ModelConfig", "WorldModel"]
