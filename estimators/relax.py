"""RELAX for the IWAE bound with a learned control variate (Grathwohl et al., 2018).

Revisiting Reweighted Wake-Sleep (Le et al.), §2.2, the display for ĝ_RELAX:
    ĝ_φ = (L̂ − c_ρ(g̃_{1:K})) ∇_φ log Q_φ(z_{1:K}|x) + ∇_φ c_ρ(g_{1:K}) − ∇_φ c_ρ(g̃_{1:K}) + ∇_φ L̂,
where g_k = log q_φ(·|x) + Gumbel noise (reparameterised), z_k = argmax g_k, and g̃_k are
conditional Gumbels given z_k (REBAR, Tucker et al. 2017, drawn with the exponential-race
construction so they are reparameterised in φ).  L̂ = log (1/K) Σ_k w_k; the last term is the
direct dependence of L̂ on φ through w_k (the second term of RWS Eq. 2), which the display in
the paper leaves implicit.  Control variate (§4.3): c_ρ(g_{1:K}) = (1/K) Σ_k MLP_ρ([x, g_k]),
MLP (dim x + C)–16–16–1, tanh.  ρ is trained jointly to minimise the variance of ĝ_φ, i.e. the
gradient of ‖ĝ_φ‖² (its mean does not depend on ρ), which needs a second-order pass.
Unbiased for ∇ ELBO_IS^K.  Categorical latents only (the binary case is REBAR/RELAX's own).
"""
import math

import torch

from models.distributions import exponential_noise
from models.nn import StackedMLP

from .base import Estimate, Estimator, batch_loss, logmeanexp


class Relax(Estimator):
    latent_types = frozenset({"categorical"})

    def __init__(self, hidden=(16, 16)):
        super().__init__()
        self.hidden = tuple(int(h) for h in hidden)
        self.control = None

    def bind(self, model):
        obs = int(math.prod(model.obs_shape))
        C = model.latent.num_categories
        self.control = StackedMLP(model.seeds, [obs + C, *self.hidden, 1], activation="tanh", salt=7)
        self.control.to(device=model.device, dtype=model.dtype)
        return self

    def control_variate(self, x, g):
        """(1/K) Σ_k MLP_ρ([x, g_k]) for g ``[K, R, B, C]`` → ``[R, B]``."""
        K, R, B = g.shape[:3]
        xin = x.reshape(R, B, -1).unsqueeze(0).expand(K, R, B, -1)
        inp = torch.cat([xin, g], dim=-1).transpose(0, 1)
        return self.control(inp).squeeze(-1).mean(1)

    def surrogate(self, model, x, num_particles):
        log_probs = model.guide(x).logits  # normalised
        noise = exponential_noise((num_particles, *log_probs.shape), log_probs)
        g = log_probs - noise.log()  # Gumbel-max: z = argmax g
        z = g.argmax(-1)
        onehot = torch.nn.functional.one_hot(z, log_probs.shape[-1]).bool()
        # Given z = b: E_b ~ Exp(Σ_c p_c = 1) and E_i = E_b + Exp(p_i) for i ≠ b (memorylessness)
        top = noise.gather(-1, z.unsqueeze(-1))
        g_tilde = -torch.where(onehot, top, top + noise * torch.exp(-log_probs)).log()
        log_q = log_probs.unsqueeze(0).expand_as(g).gather(-1, z.unsqueeze(-1)).squeeze(-1)
        bound = logmeanexp(model.log_joint(x, z) - log_q, 0)
        # c_ρ(g̃) appears twice: inside the score-function coefficient (differentiated for ρ only,
        # hence g̃ detached) and as the pathwise term (differentiated for φ and ρ).
        c_tilde_rho = self.control_variate(x, g_tilde.detach())
        c_g, c_tilde = self.control_variate(x, g), self.control_variate(x, g_tilde)
        coefficient = bound.detach() - c_tilde_rho
        per_point = coefficient * log_q.sum(0) + c_g - c_tilde + bound
        return Estimate(batch_loss(per_point), bound.detach().mean(-1))

    def gradients(self, model, x, num_particles, with_own: bool = True):
        est = self.surrogate(model, x, num_particles)
        params = list(model.parameters())
        grads = torch.autograd.grad(est.loss, params, create_graph=with_own)
        own = list(self.parameters())
        if with_own:
            guide = {id(p) for p in model.guide_parameters()}
            variance = sum((g ** 2).sum() for p, g in zip(params, grads) if id(p) in guide)
            own_grads = list(torch.autograd.grad(variance, own))
            grads = [g.detach() for g in grads]
        else:
            own_grads = [torch.zeros_like(p) for p in own]
        return grads, own_grads, est.objective
