"""RELAX for the IWAE bound with a learned control variate (Grathwohl et al., 2018).

Revisiting Reweighted Wake-Sleep (Le et al.), §2.2, the display for ĝ_RELAX:
    ĝ_φ = (L̂ − c_ρ(g̃_{1:K})) ∇_φ log Q_φ(z_{1:K}|x) + ∇_φ c_ρ(g_{1:K}) − ∇_φ c_ρ(g̃_{1:K}) + ∇_φ L̂,
where g_k = log q_φ(·|x) + Gumbel noise (reparameterised), z_k = argmax g_k, and g̃_k are
conditional Gumbels given z_k (REBAR, Tucker et al. 2017, App. C), drawn from *fresh* noise
(:func:`conditional_gumbel`; the RWS code's ``gmm/util.py`` does the same) so they are
reparameterised in φ given z.  Reusing the noise that produced z (this file before numerics
version 2) gives g̃ the wrong conditional law and a biased estimator (tests/test_relax_categorical.py).
L̂ = log (1/K) Σ_k w_k; the last term is the direct dependence of L̂ on φ through w_k (the second term of RWS Eq. 2), which the display in
the paper leaves implicit.  Control variate (§4.3): c_ρ(g_{1:K}) = (1/K) Σ_k MLP_ρ([x, g_k]),
MLP (dim x + C)–16–16–1, tanh.  ρ is trained jointly to minimise the variance of ĝ_φ, i.e. the
gradient of ‖ĝ_φ‖² (its mean does not depend on ρ), which needs a second-order pass.
Unbiased for ∇ ELBO_IS^K for every ρ.  Own learning rate ×1 on categorical latents, as the RWS code.

Bernoulli latents (SBNs; :class:`RelaxBernoulli`, registered with :class:`RelaxCategorical` under the one
name ``relax``, chosen by the model's declared capabilities):
Grathwohl et al. (2018), §3.3 (the discrete RELAX estimator with the conditional
reparameterisation z̃ | b; section number from memory, the paper is not in papers/), for the
IWAE bound f(b_{1:K}) = log (1/K) Σ_k w_k:
    ĝ_φ = [f(b) − c(z̃)] ∇_φ log q_φ(b) + ∇_φ f(b) + ∇_φ c(z) − ∇_φ c(z̃),
    c(z) = η·f̃(σ_λ(z)) + r_ρ(z),   r_ρ(z) = (1/K) Σ_k MLP_ρ([x, tanh(z_k/2)]),
with z, z̃ | b, f̃, the per-layer temperatures λ_l, the per-guide-tensor scales η and the
multi-layer chains exactly those of REBAR (``estimators/rebar.py``, which documents every
formula; RELAX is REBAR's control variate plus the free-form r_ρ, whose input is the relaxed
pre-activations of every layer of the same chain, squashed by tanh(·/2) = 2σ(·) − 1).  λ, η
(start 0.5, 1; ``learn``) and ρ minimise the variance of ĝ_φ through ∇‖ĝ_φ‖² (second-order pass),
at 10× the model's learning rate (``own_lr_multiplier``, set at bind, as the REBAR code's
control-variate optimiser), with weight decay ``weight_decay`` (default 1e-3, the RELAX paper's best)
added to ρ's gradient only.  The paper's best r_ρ is 4 × 200 ReLU; this file's default
(``variant=paper``) is ``bernoulli_hidden`` = (200,), one ReLU layer of 200 units (cheaper on a CPU);
MLP_ρ's output layer starts at zero (``zero_output``), so RELAX starts as REBAR.
``variant=relax_code`` (the RELAX authors' SBN code, behind the published RELAX column): tied noise,
one control-variate term per layer with hard upstream layers (``estimators/rebar.py`` documents
both), σ(ζ/λ), λ and η per layer / tensor, one r_ρ per layer's term with input [x, 2b_{<l} − 1,
tanh(ζ_{≥l}/2)] and 4 × 200 ReLU units (the paper's best), own learning rate ×1 (the paper's best
scaling; its code's default is 10).  Not reproduced from that code: its 1,000 steps of r_ρ
pretraining before training, its variance objective at the logits' level, and its r_ρ input (x − x̄,
layer l's pre-sigmoid sample, upstream ±1 only).  Options ``hidden`` (categorical MLP) and the
Bernoulli ones do not affect each other.
"""
import math

import torch

from estibench.models.distributions import exponential_noise
from estibench.models.nn import StackedMLP

from estibench.models.protocols import CATEGORICAL, LAYERED_BERNOULLI

from estibench.models.registry import Revision

from .base import Estimate, Estimator, IncompatibleError, batch_loss, logmeanexp
from .functional import relax
from .functional.relaxed import conditional_gumbel
from .rebar import (USES, BernoulliControlVariate, bind_control_variate, control_variate_gradients,
                    control_variate_surrogate)




def gumbel_pair(log_probs: torch.Tensor, num_particles: int):
    """(g, z = argmax g, g̃ | z) with K particles: g = log q + Gumbel, g̃ from fresh noise."""
    shape = (num_particles, *log_probs.shape)
    g = log_probs - exponential_noise(shape, log_probs).log()  # Gumbel-max: z = argmax g
    z = g.argmax(-1)
    return g, z, conditional_gumbel(log_probs, z, exponential_noise(shape, log_probs))


class RelaxOptions(Estimator):  # the options of ``relax``, shared by both implementations
    display_name = "RELAX"
    cost_hint = 6.0
    second_order = True  # ρ (and λ, η) follow ∇‖ĝ_φ‖²
    variants = ("paper", "relax_code")

    def __init__(self, hidden=(16, 16), temperature: float = 0.5, eta: float = 1.0, learn: bool = True,
                 bernoulli_hidden=None, weight_decay: float = 1e-3, zero_output: bool = True,
                 variant: str = "paper", noise=None, relaxation=None, layerwise=None, eta_param=None,
                 shared_temperature=None):
        super().__init__()
        if variant not in ("paper", "relax_code"):
            raise IncompatibleError(f"relax: unknown variant {variant!r}; choose paper or relax_code")
        if bernoulli_hidden is None:  # the project's CPU default / the RELAX paper's best r_ρ
            bernoulli_hidden = (200,) * 4 if variant == "relax_code" else (200,)
        self._bernoulli_lr = 1.0 if variant == "relax_code" else 10.0
        self.hidden = tuple(int(h) for h in hidden)
        self.control = None
        if not float(weight_decay) >= 0:
            raise IncompatibleError(f"weight_decay must be non-negative, got {weight_decay}")
        self.weight_decay = float(weight_decay)
        # validated here, created (as a submodule) only when bound to a Bernoulli model
        object.__setattr__(self, "_bernoulli_options",  # a plain attribute: no submodule for the GMM
                           BernoulliControlVariate(temperature, eta, learn, hidden=bernoulli_hidden,
                                                   zero_output=zero_output, salt=7, variant=variant, noise=noise,
                                                   relaxation=relaxation, layerwise=layerwise,
                                                   eta_param=eta_param, shared_temperature=shared_temperature))
        self.bernoulli = None



class RelaxCategorical(RelaxOptions):  # one categorical latent (the GMM study): the first display above
    revisions = (Revision(1, "the conditional Gumbels are drawn from fresh noise (the reused noise was biased)"),)

    latent_types = frozenset({"categorical"})
    needs = frozenset({CATEGORICAL})

    def bind(self, model):
        obs = int(math.prod(model.obs_shape))
        C = model.latent.num_categories
        self.control = StackedMLP(model.seeds, [obs + C, *self.hidden, 1], activation="tanh", salt=7)
        self.control.to(device=model.device, dtype=model.dtype)
        return self

    def control_variate(self, x, g, groups: int = 1):
        """(1/K) Σ_k MLP_ρ([x, g_k]) for g ``[K, R, B, C]`` → ``[R, B]``; with ``groups`` = G, g holds
        G blocks of K particles along dim 0 and the result is one ``[R, B]`` tensor per block."""
        GK, R, B = g.shape[:3]
        xin = x.reshape(R, B, -1).unsqueeze(0).expand(GK, R, B, -1)
        inp = torch.cat([xin, g], dim=-1).transpose(0, 1)
        out = self.control(inp).squeeze(-1).reshape(R, groups, GK // groups, B).mean(2)
        return out[:, 0] if groups == 1 else out.unbind(1)

    def surrogate(self, model, x, num_particles):
        log_probs = model.guide(x).logits  # normalised
        g, z, g_tilde = gumbel_pair(log_probs, num_particles)
        log_q = log_probs.unsqueeze(0).expand_as(g).gather(-1, z.unsqueeze(-1)).squeeze(-1)
        bound = logmeanexp(model.log_joint(x, z) - log_q, 0)
        # c_ρ(g̃) appears twice: inside the score-function coefficient (differentiated for ρ only,
        # hence g̃ detached) and as the pathwise term (differentiated for φ and ρ); the three
        # evaluations share one MLP call.
        c_g, c_tilde, c_tilde_rho = self.control_variate(x, torch.cat([g, g_tilde, g_tilde.detach()]),
                                                         groups=3)
        per_point = relax(bound, log_q.sum(0), c_g, c_tilde, c_tilde_rho)  # the K particles' joint score
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


class RelaxBernoulli(RelaxOptions):  # layered Bernoulli latents (SBNs): the second display above
    revisions = (Revision(5, "the reference code's variants (the rebar preset runs relax_code)"),)

    latent_types = frozenset({"bernoulli"})
    needs = frozenset({LAYERED_BERNOULLI})
    uses = USES  # x̄ for the baseline's inputs (none in RELAX's variants), the relaxed log joint for f̃

    def bind(self, model):
        self.bernoulli = bind_control_variate(self, self._bernoulli_options, model)
        self.own_lr_multiplier = self._bernoulli_lr
        return self

    def surrogate(self, model, x, num_particles):
        return control_variate_surrogate(self.bernoulli, model, x, num_particles)

    def gradients(self, model, x, num_particles, with_own: bool = True):
        return control_variate_gradients(self.bernoulli, list(self.parameters()), model, x, num_particles,
                                          with_own, self.weight_decay)
