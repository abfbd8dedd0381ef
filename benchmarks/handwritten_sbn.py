"""Minimal hand-written PyTorch training loops for the linear SBN, one per estimator, as the speed
references of ``benchmarks/step_speed.py --study sbn --compare hand`` (issue: "every other estimator ≤ 1.5× a hand-written loop
of the same estimator"), and the check that each is the same estimator as estibench's.

    python benchmarks/handwritten_sbn.py [NAME ...] [--draws 300]     # run check() and print it

Model (``sbn`` with ``arch=linear1``, ``models/sbn.py``): q(z|x) = Bern(σ(W(x − x̄) + b)),
p(z) = Bern(σ(a)) with learned prior logits a (start 0), p(x|z) = Bern(σ(Vz + c)) with c starting
at logit(clip(x̄, 0.001, 0.999)); ``nn.Linear`` everywhere (784–200–784), log-masses written as
Σ z·l − softplus(l).  Every loop: a batch of 24 training images drawn uniformly with replacement,
the estimator's surrogate, ``backward`` (or ``autograd.grad`` where the estimator needs a
second-order pass), one ``torch.optim.Adam`` step at lr 1e-3; an estimator's own parameters
(baselines, control variates, temperature, scales) at 10 × lr, as ``harness.runner.make_optimiser``
does with ``own_lr_multiplier`` = 10 for NVIL, MuProp, REBAR and RELAX (bound to an SBN).
K = 1, R = 1 throughout, so every log-mean-exp over particles is the identity and the IWAE direct
terms Σ_k (1/K − w̃_k) ∇ log q(z_k) are exactly zero (the hand loops leave them out).

The loops (``HANDWRITTEN[name]``; each implements the registered name's default options):

* ``reinforce``  ``HandReinforceNoBaseline``: ĝ_φ = ℓ ∇ log q(z) + ∇_φ ℓ (ℓ = log p(x,z) − log q(z|x),
  no baseline: estibench's ``reinforce``).  ``HandReinforce`` (the former sbn_step.py's reference since issue 3, ``step_speed.py --yardstick``,
  unchanged) adds an EMA baseline (decay 0.9) and is kept as the common yardstick of the
  "÷ hand-written" column.
* ``nvil``       ``HandNvil`` (variant ``rebar_code``): (ℓ − C_ψ(x)) ∇ log q, C_ψ = MLP x − x̄ → 100 tanh → 1,
  ψ minimising (ℓ − C_ψ(x))²; no running mean, no variance normalisation.
* ``muprop``     ``HandMuProp``: first-order Taylor control variate of ℓ at the mean field z̄ = σ(a)
  (f(z̄) and ∂f/∂z̄ by ``autograd.grad``), residual centred by a bias-corrected running mean c
  (decay 0.8, from earlier steps) and C_ψ(x) as NVIL's; ĝ_φ = (ℓ − h(z) − c − C_ψ) ∇ log q + f'ᵀ ∇σ(a).
* ``arm``        ``HandArm``: (f(b̃) − f(b)) (u − ½) on the logits, b = 1[u < σ(a)], b̃ = 1[u > 1 − σ(a)].
* ``disarm``     ``HandDisArm``: ½ (f(b) − f(b̃)) (−1)^b̃ 1[b ≠ b̃] σ(|a|) on the logits.
* ``concrete``   ``HandConcrete``: binary Concrete z̃ = σ((a + logit u)/τ), pathwise gradient of the
  relaxed ELBO (log-masses linear in z̃); τ annealed 3 → 0.5 by ``set_progress`` (like the
  estimator; neither timing loop calls it, so both run at τ = 3).
* ``rebar``      ``HandRebar`` (variant ``paper``): fresh conditional noise v, σ(ζ/λ), one learned λ
  (start 0.5) and one η per encoder tensor (start 1, free); ĝ_φ = [f(b) − η f̃(z̃)] ∇ log q(b) + ∇_φ f(b)
  + η (∇ f̃(z) − ∇ f̃(z̃)); λ, η minimise Σ_φ ‖ĝ_φ‖² (single-sample variance gradient, second-order pass).
* ``relax``      ``HandRelax`` (variant ``paper``): REBAR's control variate plus r_ρ(z) = MLP([x,
  tanh(z/2)]) with 200 ReLU units (output layer starting at 0), not scaled by η; λ, η, ρ minimise
  Σ_φ ‖ĝ_φ‖², ρ with weight decay 1e-3 added to its gradient.

Same parameter counts as estibench's (each ``nn.Linear`` holds the same numbers as a StackedLinear
of one replicate, transposed).  The uniforms are drawn in the estimator's order and shapes, so with
the same torch seed and the same parameters a hand loop and the harness draw the same noise: ``check``
uses that for a tight comparison, and independent draws for the statistical one.
"""
from __future__ import annotations

import math
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

SBN_BATCH = 24  # benchmarks.common.SBN_BATCH (not imported: the loops need nothing from estibench)
EPS = torch.finfo(torch.float32).eps


def log_bernoulli(logits, z):
    """Σ_d z_d l_d − softplus(l_d): log Bern(z; σ(l)), linear in z (relaxed z ∈ [0, 1] too)."""
    return (z * logits - F.softplus(logits)).sum(-1)


class LinearSBN(nn.Module):
    """784–200–784 linear sigmoid belief net with its encoder (see the module docstring)."""

    def __init__(self, mean, latent=200):
        super().__init__()
        pixels = mean.numel()
        self.prior = nn.Parameter(torch.zeros(latent))  # parameters(): a, V, c (θ) then W, b (φ), as estibench's
        self.dec = nn.Linear(latent, pixels)
        self.enc = nn.Linear(pixels, latent)
        self.register_buffer("mean", mean.reshape(pixels).clone())
        with torch.no_grad():
            self.dec.bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))

    def log_joint(self, x, z):
        return log_bernoulli(self.dec(z), x) + log_bernoulli(self.prior, z)


def mlp(sizes, activation):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers += [nn.Linear(a, b)] + ([activation()] if i < len(sizes) - 2 else [])
    return nn.Sequential(*layers)


class HandReinforce:
    """The minimal REINFORCE loop for the linear SBN, written directly in PyTorch (EMA baseline, decay 0.9;
    the common yardstick since issue 3, ``step_speed.py --yardstick``; estibench's ``reinforce`` has no baseline:
    :class:`HandReinforceNoBaseline`)."""

    def __init__(self, train, mean, batch=SBN_BATCH, latent=200, lr=1e-3, decay=0.9):
        torch.manual_seed(0)
        self.train, self.mean, self.batch, self.decay = train, mean, batch, decay
        pixels = train.shape[1]
        self.enc = nn.Linear(pixels, latent)
        self.dec = nn.Linear(latent, pixels)
        self.prior = nn.Parameter(torch.zeros(latent))
        with torch.no_grad():
            self.dec.bias.copy_(torch.logit(mean.clamp(1e-3, 1 - 1e-3)))
        self.opt = torch.optim.Adam([*self.enc.parameters(), *self.dec.parameters(), self.prior], lr=lr)
        self.baseline = torch.zeros(())

    def __call__(self):
        x = self.train[torch.randint(self.train.shape[0], (self.batch,))]
        logits_q = self.enc(x - self.mean)
        z = torch.bernoulli(torch.sigmoid(logits_q.detach()))
        log_q = (z * logits_q - F.softplus(logits_q)).sum(-1)
        log_px = -F.binary_cross_entropy_with_logits(self.dec(z), x, reduction="none").sum(-1)
        log_pz = (z * self.prior - F.softplus(self.prior)).sum(-1)
        elbo = log_px + log_pz - log_q
        signal = elbo.detach() - self.baseline
        loss = -(signal * log_q + elbo).mean()  # score function (centred) + the direct −∇ log q term
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.baseline = self.decay * self.baseline + (1 - self.decay) * elbo.detach().mean()


class _Loop:
    """Set-up shared by the loops below (model, data, Adam with the own parameters at 10 × lr) and the
    training step of the loops that define ``loss(x) -> (loss, elbo)``."""

    own_lr_multiplier = 10.0

    def __init__(self, train, mean, batch=SBN_BATCH, latent=200, lr=1e-3, seed=0):
        torch.manual_seed(seed)
        self.train, self.batch = train, batch
        self.sbn = LinearSBN(mean, latent)
        self.build(train.shape[1])
        own = self.own_parameters()
        groups = [{"params": list(self.sbn.parameters())}]
        if own:
            groups.append({"params": own, "lr": lr * self.own_lr_multiplier})
        self.opt = torch.optim.Adam(groups, lr=lr)

    def build(self, pixels):
        pass

    def own_parameters(self):
        return []

    def step(self):
        x = self.train[torch.randint(self.train.shape[0], (self.batch,))]
        loss, elbo = self.loss(x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return elbo

    __call__ = step


class HandReinforceNoBaseline(_Loop):
    """estibench's ``reinforce`` at K = 1: ℓ ∇ log q(z) + ∇_φ ℓ, no baseline."""

    def loss(self, x):
        m = self.sbn
        logits = m.enc(x - m.mean)
        z = torch.bernoulli(torch.sigmoid(logits.detach()))
        log_q = log_bernoulli(logits, z)
        elbo = m.log_joint(x, z) - log_q
        return -(elbo.detach() * log_q + elbo).mean(), elbo.detach().mean()


class HandNvil(_Loop):
    """NVIL as the REBAR code has it: (ℓ − C_ψ(x)) ∇ log q; ψ minimises (ℓ − C_ψ(x))²."""

    def build(self, pixels, hidden=100):
        self.baseline = mlp([pixels, hidden, 1], nn.Tanh)

    def own_parameters(self):
        return list(self.baseline.parameters())

    def loss(self, x):
        m = self.sbn
        xc = x - m.mean
        logits = m.enc(xc)
        p = torch.sigmoid(logits.detach())
        z = (torch.rand_like(p) < p).float()
        log_q = log_bernoulli(logits, z)
        log_p = m.log_joint(x, z)
        elbo = (log_p - log_q).detach()
        centred = elbo - self.baseline(xc).squeeze(-1)
        loss = -(log_p + centred.detach() * log_q).mean() + centred.pow(2).mean()
        return loss, elbo.mean()


class HandMuProp(_Loop):
    """MuProp: Taylor control variate at the mean field, NVIL-style centring (running mean + C_ψ(x))."""

    decay = 0.8

    def build(self, pixels, hidden=100):
        self.baseline = mlp([pixels, hidden, 1], nn.Tanh)
        self.c_mean, self.c_weight = torch.zeros(()), 0.0  # running mean of the residual, its bias correction

    def own_parameters(self):
        return list(self.baseline.parameters())

    def loss(self, x):
        m = self.sbn
        xc = x - m.mean
        logits = m.enc(xc)
        p = torch.sigmoid(logits)
        z = (torch.rand_like(p) < p.detach()).float()
        log_q = log_bernoulli(logits, z)
        log_p = m.log_joint(x, z)
        elbo = (log_p - log_q).detach()
        # f(z) = log p(x, z) − log q(z|x) to first order around z̄ = σ(a): f(z̄) + f'ᵀ(z − z̄)
        z_bar = p.detach().requires_grad_()
        f_bar = m.log_joint(x, z_bar) - log_bernoulli(logits.detach(), z_bar)
        df, = torch.autograd.grad(f_bar.sum(), z_bar)
        residual = elbo - f_bar.detach() - (df * (z - z_bar.detach())).sum(-1)
        c = self.c_mean / self.c_weight if self.c_weight > 0 else 0.0
        centred = residual - c - self.baseline(xc).squeeze(-1)
        self.c_mean = self.decay * self.c_mean + (1 - self.decay) * residual.mean()
        self.c_weight = self.decay * self.c_weight + (1 - self.decay)
        surrogate = log_p + centred.detach() * log_q + (df * p).sum(-1)  # score term + E[h]'s gradient
        return -surrogate.mean() + centred.pow(2).mean(), elbo.mean()


class HandArm(_Loop):
    """ARM: ∇_a E f(z) ≈ (f(b̃) − f(b)) (u − ½), b = 1[u < σ(a)], b̃ = 1[u > 1 − σ(a)]."""

    def logit_gradient(self, u, a, b, b_anti, f, f_anti):
        return (f_anti - f).unsqueeze(-1) * (u - 0.5)

    def loss(self, x):
        m = self.sbn
        logits = m.enc(x - m.mean)
        a = logits.detach()
        p = torch.sigmoid(a)
        u = torch.rand_like(p)
        b = (u < p).float()
        b_anti = (u > 1 - p).float()
        log_p = m.log_joint(x, b)
        f = (log_p - log_bernoulli(a, b)).detach()
        with torch.no_grad():
            f_anti = m.log_joint(x, b_anti) - log_bernoulli(a, b_anti)
        g = self.logit_gradient(u, a, b, b_anti, f, f_anti)
        return -(log_p + (g * logits).sum(-1)).mean(), f.mean()


class HandDisArm(HandArm):
    """DisARM: ½ (f(b) − f(b̃)) (−1)^b̃ 1[b ≠ b̃] σ(|a|) on the logits (ARM's loop otherwise)."""

    def logit_gradient(self, u, a, b, b_anti, f, f_anti):
        return 0.5 * (f - f_anti).unsqueeze(-1) * (1 - 2 * b_anti) * (b != b_anti) * torch.sigmoid(a.abs())


class HandConcrete(_Loop):
    """Binary Concrete: z̃ = σ((a + logit u)/τ), pathwise gradient of the relaxed ELBO."""

    initial_temperature, final_temperature = 3.0, 0.5

    def build(self, pixels):
        self.tau = self.initial_temperature

    def set_progress(self, fraction):
        self.tau = self.initial_temperature + (self.final_temperature - self.initial_temperature) * fraction

    def loss(self, x):
        m = self.sbn
        logits = m.enc(x - m.mean)
        u = torch.rand_like(logits).clamp_(EPS, 1 - EPS)
        z = torch.sigmoid((logits + u.log() - torch.log1p(-u)) / self.tau)
        bound = m.log_joint(x, z) - log_bernoulli(logits, z)
        return -bound.mean(), bound.detach().mean()


class HandRebar(_Loop):
    """REBAR (paper variant), with λ and η learned by minimising Σ_φ ‖ĝ_φ‖²."""

    def build(self, pixels):
        self.log_temperature = nn.Parameter(torch.full((1,), math.log(0.5)))
        self.eta = nn.Parameter(torch.ones(2))  # one per encoder tensor (weight, bias)

    def own_parameters(self):
        return [self.log_temperature, self.eta]

    def relaxed(self, x, logits, zeta, temperature):
        s = torch.sigmoid(zeta / temperature)
        return self.sbn.log_joint(x, s) - log_bernoulli(logits, s)

    def residuals(self, x, zeta, zeta_tilde):
        return None  # RELAX's r_ρ(z) − r_ρ(z̃) and r_ρ(z̃); REBAR has none

    def gradients(self, x):
        """(descent gradients of θ, φ in ``sbn.parameters()`` order, of the own parameters, the ELBO)."""
        m = self.sbn
        B = x.shape[0]
        logits = m.enc(x - m.mean)
        u = torch.rand_like(logits).clamp_(EPS, 1 - EPS)
        v = torch.rand_like(logits).clamp_(EPS, 1 - EPS)
        zeta = logits + (u.log() - torch.log1p(-u))  # z = a + logit u, b = H(z)
        b = (zeta.detach() > 0).float()
        # z̃ ~ z | b: logit ũ with ũ uniform on b's cell of u (from fresh v), in log space
        log_t, log_1mt = F.logsigmoid(logits), F.logsigmoid(-logits)
        log_v, log_1mv = v.log(), torch.log1p(-v)
        one = b > 0.5
        log_u = torch.where(one, torch.logaddexp(log_1mt, log_t + log_v), log_v + log_1mt)
        log_1mu = torch.where(one, log_t + log_1mv, torch.logaddexp(log_t, log_1mt + log_1mv))
        zeta_tilde = logits + (log_u - log_1mu)
        log_q = log_bernoulli(logits, b)
        f = m.log_joint(x, b) - log_q
        temperature = self.log_temperature.exp()
        f_z = self.relaxed(x, logits, zeta, temperature)
        f_zt = self.relaxed(x, logits, zeta_tilde, temperature)
        theta, phi = [m.prior, m.dec.weight, m.dec.bias], [m.enc.weight, m.enc.bias]
        w = torch.full_like(f, 1.0 / B)
        outputs, grad_outputs = [log_q, f], [f.detach() * w, w]  # REINFORCE + ∇f(b) (θ and φ)
        r = self.residuals(x, zeta, zeta_tilde)
        if r is not None:
            r_diff, r_zt = r
            outputs, grad_outputs = outputs + [log_q, r_diff], grad_outputs + [-r_zt * w, w]
        first = torch.autograd.grad(outputs, theta + phi, grad_outputs, retain_graph=True,
                                    create_graph=r is not None)
        # the relaxed control variate −f̃(z̃) ∇ log q + ∇f̃(z) − ∇f̃(z̃), differentiable in λ
        cv = torch.autograd.grad([log_q, f_z - f_zt], phi, [-f_zt * w, w], create_graph=True)
        g_phi = [first[3] + self.eta[0] * cv[0], first[4] + self.eta[1] * cv[1]]
        variance = g_phi[0].pow(2).sum() + g_phi[1].pow(2).sum()
        own = self.own_parameters()
        own_grads = list(torch.autograd.grad(variance, own))
        model_grads = [-g.detach() for g in first[:3]] + [-g.detach() for g in g_phi]
        return model_grads, own_grads, f.detach().mean()

    def step(self):
        x = self.train[torch.randint(self.train.shape[0], (self.batch,))]
        model_grads, own_grads, elbo = self.gradients(x)
        for p, g in zip([*self.sbn.parameters(), *self.own_parameters()], model_grads + own_grads):
            p.grad = g
        self.opt.step()
        return elbo

    __call__ = step


class HandRelax(HandRebar):
    """RELAX (paper variant, Bernoulli): REBAR's control variate plus r_ρ(z) = MLP_ρ([x, tanh(z/2)])."""

    weight_decay = 1e-3

    def build(self, pixels, hidden=200):
        super().build(pixels)
        self.residual = mlp([pixels + self.sbn.enc.out_features, hidden, 1], nn.ReLU)
        with torch.no_grad():  # r_ρ starts at 0: RELAX starts as REBAR
            self.residual[-1].weight.zero_()
            self.residual[-1].bias.zero_()

    def own_parameters(self):
        return [self.log_temperature, self.eta, *self.residual.parameters()]

    def residuals(self, x, zeta, zeta_tilde):
        r_z = self.residual(torch.cat([x, torch.tanh(0.5 * zeta)], -1)).squeeze(-1)
        r_zt = self.residual(torch.cat([x, torch.tanh(0.5 * zeta_tilde)], -1)).squeeze(-1)
        return r_z - r_zt, r_zt

    def gradients(self, x):
        model_grads, own_grads, elbo = super().gradients(x)
        rho = [p.detach() for p in self.residual.parameters()]
        return model_grads, own_grads[:2] + [g + self.weight_decay * p for g, p in zip(own_grads[2:], rho)], elbo


#: the registered estimator name → its hand-written loop (train images, their mean) → callable step
HANDWRITTEN = {"reinforce": HandReinforceNoBaseline, "nvil": HandNvil, "muprop": HandMuProp, "arm": HandArm,
               "disarm": HandDisArm, "concrete": HandConcrete, "rebar": HandRebar, "relax": HandRelax}


# -- the check: the hand loop and estibench's estimator are the same estimator ----------------------------
def _hand_gradients(hand, x):
    """(descent gradients for [*sbn.parameters(), *own_parameters()], ELBO) at batch x ``[B, 784]``."""
    if hasattr(hand, "loss"):
        loss, elbo = hand.loss(x)
        params = [*hand.sbn.parameters(), *hand.own_parameters()]
        return list(torch.autograd.grad(loss, params)), elbo
    model_grads, own_grads, elbo = hand.gradients(x)
    return model_grads + own_grads, elbo


def _pairs(hand, model, est):
    """(group, hand tensor, harness tensor) for every parameter, in the two gradient lists' order."""
    m = hand.sbn
    out = [("theta", m.prior, model.prior_logits), ("theta", m.dec.weight, model.decoder.weight),
           ("theta", m.dec.bias, model.decoder.bias), ("phi", m.enc.weight, model.encoders[0].weight),
           ("phi", m.enc.bias, model.encoders[0].bias)]
    assert [id(h) for _, h, _ in out] == [id(p) for p in m.parameters()]
    assert [id(p) for _, _, p in out] == [id(p) for p in model.parameters()]
    own = hand.own_parameters()
    theirs = list(est.parameters())
    assert len(own) == len(theirs) and sum(p.numel() for p in own) == sum(p.numel() for p in theirs)
    return out + [("own", h, p) for h, p in zip(own, theirs)]


def _to_harness(t, like):
    """A hand tensor in the harness layout (``nn.Linear`` weight [out, in] ↔ StackedLinear [1, in, out])."""
    return t.T.reshape(like.shape) if t.dim() == 2 and like.dim() == 3 else t.reshape(like.shape)


def _from_harness(t, like):
    return t[0].T if like.dim() == 2 and t.dim() == 3 else t.reshape(like.shape)


@torch.no_grad()
def _set_state(name, model, est, hand):
    """A state off the estimators' initial values (fixed numbers), in the harness, copied into the hand loop:
    MuProp's running mean c = −10 (5 steps' bias correction); REBAR/RELAX λ = 0.4, η = (0.7, 1.3); RELAX's
    r_ρ output layer N(0, 0.1²) weights and bias 0.1 (at its zero start r_ρ ≡ 0 and ρ's first layer gets
    no gradient)."""
    gen = torch.Generator().manual_seed(7)
    if name == "muprop":
        weight = 1 - 0.8 ** 5
        est.baseline.weight.fill_(weight)
        est.baseline.mean.fill_(-10.0 * weight)
        hand.c_mean, hand.c_weight = est.baseline.mean[0, 0].clone(), float(est.baseline.weight[0, 0])
    if name in ("rebar", "relax"):
        cv = est.relaxation if name == "rebar" else est.bernoulli
        cv.log_temperature.fill_(math.log(0.4))
        cv.eta_raw.copy_(torch.tensor([[0.7, 1.3]]))
    if name == "relax":
        last = est.bernoulli.residuals[0].layers[-1]
        last.weight.copy_(0.1 * torch.randn(last.weight.shape, generator=gen))
        last.bias.fill_(0.1)
    if name == "concrete":
        est.set_progress(0.5)  # τ = 1.75: the anneal is the same too
        hand.set_progress(0.5)
    for _, h, p in _pairs(hand, model, est):
        h.copy_(_from_harness(p, h))


def check(name, draws=200, tight_seeds=2, projections=6, alpha=1e-3, seed=20240611, steps=3):
    """Whether the hand loop ``HANDWRITTEN[name]`` is estibench's ``name`` on the linear SBN.

    Both at identical parameters (harness model built by ``benchmarks.common.sbn_model`` under
    ``torch.manual_seed(0)``, the estimator's own state set by :func:`_set_state`, every number copied
    into the hand loop), at the fixed batch ``sbn_fixed_batch()`` (the first 24 training images):

    * tight: with common random numbers (``torch.manual_seed(1000 + i)`` before each side, i <
      ``tight_seeds``) the two draw the same noise, so the gradients of θ, φ and the own parameters and
      the objective must agree to float32 rounding: max over draws of ‖Δ‖ / ‖harness‖ per group
      (``tight``, required < 1e-4) and |Δ objective| (required < 1e-3 nats);
    * statistical: ``draws`` independent estimates from each side (harness seeds 10000 + i, hand seeds
      20000 + i; the harness's NVIL/MuProp in eval mode and the hand MuProp's running mean restored,
      so neither state moves), each group's gradient (θ, φ, own) projected on ``projections`` fixed
      N(0, 1) directions (generator seed ``seed`` + group index) and the objective: two-sample z =
      (mean_h − mean_x) / √(s_h²/n + s_x²/n) per statistic, Bonferroni over the m statistics at
      family false-alarm rate ``alpha``: threshold Φ⁻¹(1 − α/(2m)).
    * training: then ``steps`` training steps of each from the same point with common random numbers
      (``torch.manual_seed(3000)``; the harness side is ``benchmarks.common.Trainer``, i.e. fresh batches,
      ``make_optimiser`` with the own learning-rate multiplier, running statistics updating; schedules at
      progress 0 on both sides, where a benchmark's Trainer keeps them): the
      displacement of every group's parameters must agree, ‖Δ_h − Δ_x‖ / ‖Δ_h‖ < 1e-3 (``trajectory``).

    Returns a dict: ``passed``, ``tight`` (per group), ``trajectory`` (per group), ``objective_gap``,
    ``z`` (name → z), ``max_z``, ``threshold``, ``statistics`` (m), ``draws``, ``steps``, ``parameters``
    (hand / harness counts)."""
    from benchmarks.common import Trainer, bind, sbn_batcher, sbn_data, sbn_fixed_batch, sbn_model
    data = sbn_data()
    torch.manual_seed(0)
    model = sbn_model()
    est = bind(name, model, 1)
    hand = HANDWRITTEN[name](data.train, data.train_mean)
    _set_state(name, model, est, hand)
    pairs = _pairs(hand, model, est)
    if name in ("nvil", "muprop"):
        est.eval()  # no update of the running statistics (they are off in the estimate for nvil)
    x = sbn_fixed_batch()
    groups = {g: [i for i, (gg, _, _) in enumerate(pairs) if gg == g] for g in ("theta", "phi", "own")}
    groups = {g: idx for g, idx in groups.items() if idx}

    def flat(grads, g):
        return torch.cat([grads[i].reshape(-1) for i in groups[g]]).double()

    def harness_draw():
        model_grads, own_grads, objective = est.gradients(model, x, 1)
        return model_grads + own_grads, float(objective.sum())

    def hand_draw():
        state = (hand.c_mean, hand.c_weight) if name == "muprop" else None
        grads, elbo = _hand_gradients(hand, x[0])
        if state is not None:
            hand.c_mean, hand.c_weight = state
        return [_to_harness(g, p) for g, (_, _, p) in zip(grads, pairs)], float(elbo)

    tight = {g: 0.0 for g in groups}
    gap = 0.0
    for i in range(tight_seeds):
        torch.manual_seed(1000 + i)
        gh, oh = harness_draw()
        torch.manual_seed(1000 + i)
        gx, ox = hand_draw()
        gap = max(gap, abs(oh - ox))
        for g in groups:
            a, b = flat(gh, g), flat(gx, g)
            tight[g] = max(tight[g], float((a - b).norm() / a.norm().clamp_min(1e-30)))

    directions = {}
    for j, (g, idx) in enumerate(groups.items()):
        gen = torch.Generator().manual_seed(seed + j)
        D = sum(pairs[i][2].numel() for i in idx)
        directions[g] = torch.randn(D, projections, generator=gen, dtype=torch.float64)

    def summary(draw, base):
        rows = []
        for i in range(draws):
            torch.manual_seed(base + i)
            grads, objective = draw()
            rows.append(torch.cat([flat(grads, g) @ directions[g] for g in groups]
                                  + [torch.tensor([objective], dtype=torch.float64)]))
        return torch.stack(rows)

    sh, sx = summary(harness_draw, 10000), summary(hand_draw, 20000)
    labels = [f"{g}·v{k}" for g in groups for k in range(projections)] + ["objective"]
    se = (sh.var(0) / draws + sx.var(0) / draws).sqrt()
    diff = sh.mean(0) - sx.mean(0)
    z = torch.where(se > 0, diff / se.clamp_min(1e-300), torch.where(diff == 0, 0.0, math.inf))
    m = len(labels)
    threshold = statistics.NormalDist().inv_cdf(1 - alpha / (2 * m))
    max_z = float(z.abs().max())

    est.train()
    est.set_progress(0.0)  # the Trainer (harness.runner.TrainingStep) sets the schedules' progress ≈ 0 each step
    if hasattr(hand, "set_progress"):
        hand.set_progress(0.0)
    start = [p.detach().clone().double() for _, _, p in pairs]
    trainer = Trainer(model, est, sbn_batcher(model), 1)
    torch.manual_seed(3000)
    for _ in range(steps):
        trainer()
    torch.manual_seed(3000)
    for _ in range(steps):
        hand()
    moved = [(p.detach().double() - p0, _to_harness(h.detach(), p).double() - p0)
             for (_, h, p), p0 in zip(pairs, start)]
    trajectory = {}
    for g, idx in groups.items():
        a = torch.cat([moved[i][0].reshape(-1) for i in idx])
        b = torch.cat([moved[i][1].reshape(-1) for i in idx])
        trajectory[g] = float((a - b).norm() / a.norm().clamp_min(1e-30))
    passed = (max_z < threshold and all(v < 1e-4 for v in tight.values()) and gap < 1e-3
              and all(v < 1e-3 for v in trajectory.values()))
    counts = (sum(h.numel() for _, h, _ in pairs), sum(p.numel() for _, _, p in pairs))
    return {"name": name, "passed": passed, "tight": tight, "trajectory": trajectory, "objective_gap": gap,
            "z": dict(zip(labels, z.tolist())), "max_z": max_z, "threshold": threshold, "statistics": m,
            "draws": draws, "steps": steps, "parameters": counts}


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="check the hand-written SBN loops against estibench's estimators")
    p.add_argument("names", nargs="*", default=list(HANDWRITTEN))
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--alpha", type=float, default=1e-3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.names:
        r = check(name, draws=args.draws, alpha=args.alpha)
        tight = ", ".join(f"{g} {v:.1e}" for g, v in r["tight"].items())
        moved = ", ".join(f"{g} {v:.1e}" for g, v in r["trajectory"].items())
        worst = max(r["z"], key=lambda k: abs(r["z"][k]))
        print(f"{name:10s} {'ok ' if r['passed'] else 'FAIL'} params {r['parameters'][0]}/{r['parameters'][1]}  "
              f"tight ‖Δ‖/‖g‖: {tight}; |Δ objective| {r['objective_gap']:.1e}; {r['steps']} steps "
              f"‖Δ_h − Δ_x‖/‖Δ_h‖: {moved}; max |z| {r['max_z']:.2f} "
              f"({worst}) < {r['threshold']:.2f} (m = {r['statistics']}, n = {r['draws']} per side)", flush=True)


if __name__ == "__main__":
    main()
