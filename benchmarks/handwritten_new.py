"""Minimal hand-written PyTorch training loops of three costly estimators, RODEO, double control variates
and IndeCateR, as the speed references of ``benchmarks/step_speed.py --compare hand`` (issue: "``rodeo``,
``double_cv`` and ``indecater`` within 1.5× of a hand-written loop of the same estimator"), and the check that
each is the same estimator as estibench's.

    python benchmarks/handwritten_new.py [NAME ...] [--draws 200]     # run check() and print it

Each loop is written from the estimator's docstring equations, directly in PyTorch (nothing of estibench is
imported by the loops; the linear SBN, ``log_bernoulli``, ``mlp`` and the layout helpers come from
``benchmarks/handwritten_sbn.py``).  Every loop: a batch of 24 training images drawn uniformly with
replacement, the estimator's surrogate, ``backward`` over the model's and the estimator's parameters, one
``torch.optim.Adam`` step at lr 1e-3.  The three estimators' own learning-rate multiplier is 1, so, as
``harness.runner.make_optimiser`` does, their own parameters sit in the model's Adam group.

* ``double_cv``  ``HandDoubleCV`` (linear SBN 784–200–784, K = 2): z_k ~ Bern(θ), θ = σ(a), a = W(x − x̄) + b,
  f_k = log p(x, z_k) − log q(z_k|x), g_k = ∇_z f at z_k (one ``autograd.grad`` through log p), s_k = z_k − θ,
  h_k = ḡ_{−k}ᵀ s_k, ĝ_a = (1/K) Σ_k [f_k + α h_k − mean_{j≠k}(f_j + α h_j)] s_k − α ḡ ⊙ θ(1 − θ); loss
  −mean_b[(1/K) Σ_k log p(x, z_k) + Σ_d sg(ĝ_a) a] + mean_{b,d} ĝ_a² (the last term reaches α only).
* ``rodeo``      ``HandRodeo`` (the same model, K = 2): H_k(y) = mean_{j≠k} NN_ψ(g_jᵀ(y − z_j), f_j) ∈ R², NN_ψ
  2 → 100 LeakyReLU(0.3) → 2 (``nn.Linear``), evaluated at z_k and at its D one-bit flips; with the Gibbs
  Stein operator (A h)(y) = (1/D) Σ_i q_i(1 − y_i)[h(y^{(i)}) − h(y)], c_k = (A H⁰_k)(z_k), v_k = (A [H¹_k s])(z_k),
  ĝ_a = (1/K) Σ_k [(f_k − mean_{j≠k}(f_j + α c_j)) s_k + β v_k]; loss as double_cv's (own: α, β, ψ).
* ``indecater``  ``HandIndecater`` (categorical SBN, arch "linear": 20 × 10-way latents, encoder 784 → 200
  logits on x − x̄, decoder 200 → 784 on the flattened one-hot code, learned prior logits; K = 1):
  ℓ = log softmax of the encoder's logits per variable, y ~ q by Gumbel-argmax, F̄_dc = mean_k f(y_k with row
  d set to e_c) (D·C = 200 decoder evaluations per sample, batched), loss −mean_b[mean_k log p(x, y_k) +
  Σ_{d,c} q_dc F̄_dc] (F̄ held fixed).

The uniforms are drawn in the estimator's order and shapes, so with the same torch seed and the same
parameters a hand loop and the harness draw the same noise: ``check`` uses that for a tight comparison, and
independent draws for a statistical one, as ``handwritten_sbn.check`` does.
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

from benchmarks.handwritten_sbn import (SBN_BATCH, LinearSBN, _from_harness, _to_harness,  # noqa: E402
                                        log_bernoulli)

#: the particle count of each loop (the issue's setting)
PARTICLES = {"double_cv": 2, "rodeo": 2, "indecater": 1}


def logit(u):
    return u.log() - torch.log1p(-u)


def leave_one_out(t):
    """mean_{j≠k} t_j for every k (dim 0)."""
    return (t.sum(0, keepdim=True) - t) / (t.shape[0] - 1)


class _NewLoop:
    """Model, data and one Adam over the model's and the estimator's parameters (own lr multiplier 1: one group,
    as ``make_optimiser`` builds it); the step of a loop that defines ``loss(x) -> (loss, objective)``."""

    particles = 1

    def __init__(self, train, mean, batch=SBN_BATCH, lr=1e-3, seed=0, particles=None, dtype=torch.float32):
        torch.manual_seed(seed)
        self.train, self.batch = train.to(dtype), batch
        if particles is not None:
            self.particles = int(particles)
        self.sbn = self.make_model(mean).to(dtype)
        self.build(train.shape[1])
        self.params = [*self.sbn.parameters(), *self.own_parameters()]
        for p in self.params:  # float64 for check()'s tight stages
            p.data = p.data.to(dtype)
        self.opt = torch.optim.Adam(self.params, lr=lr)

    def make_model(self, mean):
        return LinearSBN(mean)

    def build(self, pixels):
        pass

    def own_parameters(self):
        return []

    def step(self):
        x = self.train[torch.randint(self.train.shape[0], (self.batch,))]
        loss, objective = self.loss(x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward(inputs=self.params)  # not into the sample z, which log p is differentiated at
        self.opt.step()
        return objective

    __call__ = step


class HandDoubleCV(_NewLoop):
    """Double control variates (Titsias & Shi, 2022): RLOO plus the Taylor term h_k = ḡ_{−k}ᵀ s_k, α on ĝ_a²."""

    particles = 2

    def build(self, pixels):
        self.alpha = nn.Parameter(torch.zeros(()))

    def own_parameters(self):
        return [self.alpha]

    def sample(self, x):
        """(a with φ's graph [B, D], z [K, B, D], log p [K, B] with θ's graph, f, g = ∇_z f, s = z − σ(a), θ)."""
        m = self.sbn
        a = m.enc(x - m.mean)
        a0 = a.detach()
        u = torch.rand((self.particles, *a.shape), dtype=a.dtype)
        z = (logit(u) < a0).to(a0.dtype).requires_grad_()
        log_p = m.log_joint(x, z)
        f = log_p - log_bernoulli(a0, z)
        g, = torch.autograd.grad(f.sum(), z, retain_graph=True)
        theta = torch.sigmoid(a0)
        z = z.detach()
        return a, z, log_p, f.detach(), g, z - theta, theta

    def logit_gradient(self, z, f, g, s, theta):
        signal = f + self.alpha * (leave_one_out(g) * s).sum(-1)
        rloo = ((signal - leave_one_out(signal)).unsqueeze(-1) * s).mean(0)
        return rloo - self.alpha * g.mean(0) * theta * (1 - theta)

    def loss(self, x):
        a, z, log_p, f, g, s, theta = self.sample(x)
        grad_a = self.logit_gradient(z, f, g, s, theta)
        loss = -(log_p.mean(0) + (grad_a.detach() * a).sum(-1)).mean() + grad_a.pow(2).mean()
        return loss, f.mean()


class HandRodeo(HandDoubleCV):
    """RODEO (Shi et al., 2022): RLOO with Gibbs-Stein control variates from a leave-one-out network H_k."""

    particles = 2

    def build(self, pixels, hidden=100):
        self.alpha = nn.Parameter(torch.zeros(()))
        self.beta = nn.Parameter(torch.zeros(()))
        self.control = nn.Sequential(nn.Linear(2, hidden), nn.LeakyReLU(0.3), nn.Linear(hidden, 2))

    def own_parameters(self):
        return [self.alpha, self.beta, *self.control.parameters()]

    def logit_gradient(self, z, f, g, s, theta):
        K, D = z.shape[0], z.shape[-1]
        sign = 1 - 2 * z  # y^{(i)}_i − y_i
        h_z = h_flips = 0.0
        for o in range(1, K):  # the other samples j = k + o (mod K) of every k
            z_j, g_j, f_j = z.roll(-o, 0), g.roll(-o, 0), f.roll(-o, 0)
            lin = (g_j * (z - z_j)).sum(-1)  # g_jᵀ(z_k − z_j), [K, B]
            flips = lin.unsqueeze(-1) + g_j * sign  # g_jᵀ(z_k^{(i)} − z_j), [K, B, D]
            h_z = h_z + self.control(torch.stack([lin, f_j], -1))
            h_flips = h_flips + self.control(torch.stack([flips, f_j.unsqueeze(-1).expand_as(flips)], -1))
        h_z, h_flips = h_z / (K - 1), h_flips / (K - 1)  # H_k at z_k [K, B, 2] and at its flips [K, B, D, 2]
        rate = theta * (1 - z) + (1 - theta) * z  # q_i(1 − z_i)
        c = (rate * (h_flips[..., 0] - h_z[..., :1])).mean(-1)
        # (A [H¹ s])(z)_d = (1/D) Σ_i rate_i [H¹(z^{(i)}) s(z^{(i)})_d − H¹(z) s_d],  s(z^{(i)})_d = s_d + δ_id sign_d
        r1 = rate * h_flips[..., 1]
        v = ((r1.sum(-1, keepdim=True) - rate.sum(-1, keepdim=True) * h_z[..., 1:]) * s + r1 * sign) / D
        centred = f - leave_one_out(f + self.alpha * c)
        return (centred.unsqueeze(-1) * s + self.beta * v).mean(0)


class CategoricalLinearSBN(nn.Module):
    """The categorical SBN ("linear"): D × C-way latents, encoder/decoder ``nn.Linear`` (module docstring)."""

    def __init__(self, mean, num_vars=20, num_categories=10):
        super().__init__()
        pixels, DC = mean.numel(), num_vars * num_categories
        self.D, self.C = num_vars, num_categories
        self.prior = nn.Parameter(torch.zeros(num_vars, num_categories))  # order: prior, dec, enc (as estibench's)
        self.dec = nn.Linear(DC, pixels)
        self.enc = nn.Linear(pixels, DC)
        self.register_buffer("mean", mean.reshape(pixels).clone())
        with torch.no_grad():
            self.dec.bias.copy_(torch.logit(mean.reshape(pixels).clamp(1e-3, 1 - 1e-3)))

    def log_probs(self, x):
        return torch.log_softmax(self.enc(x - self.mean).unflatten(-1, (self.D, self.C)), -1)

    def log_joint(self, x, y):
        """log p(x, y) at one-hot codes y ``[..., B, D, C]``."""
        return log_bernoulli(self.dec(y.flatten(-2)), x) + (y * torch.log_softmax(self.prior, -1)).sum((-1, -2))


class HandIndecater(_NewLoop):
    """IndeCateR (De Smet et al., 2023): Σ_{d,c} ∇q_dc · mean_k f(y_k with row d set to e_c)."""

    particles = 1

    def make_model(self, mean):
        return CategoricalLinearSBN(mean)

    def loss(self, x):
        m = self.sbn
        ell = m.log_probs(x)  # [B, D, C]
        D, C = ell.shape[-2:]
        with torch.no_grad():
            u = torch.rand((self.particles, *ell.shape), dtype=ell.dtype)
            u.clamp_(min=torch.finfo(ell.dtype).tiny, max=1.0 - 1e-7)
            y = F.one_hot((ell - torch.log(-torch.log(u))).argmax(-1), C).to(ell.dtype)  # [K, B, D, C]
        log_p = m.log_joint(x, y)
        f = (log_p - (y * ell).sum((-1, -2))).detach()
        with torch.no_grad():
            base = y[:1] if D == 1 else y
            ys = base.expand(D, C, *base.shape).clone()  # [D, C, K, B, D, C]
            rows = torch.arange(D)
            ys[rows, :, :, :, rows, :] = torch.eye(C, dtype=y.dtype).reshape(1, C, 1, 1, C)  # row d ← e_c
            f_sub = m.log_joint(x, ys) - (ys * ell).sum((-1, -2))  # [D, C, K, B]
            fbar = f_sub.mean(2).permute(2, 0, 1)  # [B, D, C]
        score = (ell.exp() * fbar).sum((-1, -2))
        return -(log_p.mean(0) + score).mean(), f.mean()


#: the registered estimator name → its hand-written loop (train images, their mean) → callable step
HANDWRITTEN = {"rodeo": HandRodeo, "double_cv": HandDoubleCV, "indecater": HandIndecater}


# -- the check: the hand loop and estibench's estimator are the same estimator ----------------------------
def harness_model(name, seeds=(0,)):
    """estibench's model of the loop: the linear SBN (``benchmarks.common.sbn_model``) or the categorical SBN."""
    from benchmarks.common import sbn_data, sbn_model
    if name == "indecater":
        from estibench import models
        return models.get("sbn_categorical", seeds=tuple(seeds), arch="linear", train_mean=sbn_data().train_mean)
    return sbn_model(seeds=seeds)


def _pairs(hand, model, est):
    """(group, hand tensor, harness tensor) for every parameter, in the two gradient lists' order."""
    m = hand.sbn
    enc = model.encoder if hasattr(model, "encoder") else model.encoders[0]
    out = [("theta", m.prior, model.prior_logits), ("theta", m.dec.weight, model.decoder.weight),
           ("theta", m.dec.bias, model.decoder.bias), ("phi", m.enc.weight, enc.weight),
           ("phi", m.enc.bias, enc.bias)]
    assert [id(h) for _, h, _ in out] == [id(p) for p in m.parameters()]
    assert [id(p) for _, _, p in out] == [id(p) for p in model.parameters()]
    own, theirs = hand.own_parameters(), list(est.parameters())
    assert len(own) == len(theirs) and all(h.numel() == p.numel() for h, p in zip(own, theirs))
    return out + [("own", h, p) for h, p in zip(own, theirs)]


@torch.no_grad()
def _set_state(name, est):
    """Own parameters off their start (α = β = 0 makes RODEO's ψ gradient vanish): fixed numbers."""
    if name == "double_cv":
        est.alpha.fill_(0.5)
    if name == "rodeo":
        est.alpha.fill_(0.3)
        est.beta.fill_(-0.4)


def _build(name, dtype):
    """(harness model, bound estimator, hand loop) at identical parameters, in ``dtype``."""
    from benchmarks.common import bind, sbn_data
    data = sbn_data()
    K = PARTICLES[name]
    torch.manual_seed(0)
    model = harness_model(name)
    est = bind(name, model, K)
    _set_state(name, est)
    model.to(dtype)
    est.to(dtype)
    hand = HANDWRITTEN[name](data.train, data.train_mean, particles=K, dtype=dtype)
    pairs = _pairs(hand, model, est)
    with torch.no_grad():
        for _, h, p in pairs:
            h.copy_(_from_harness(p, h))
    return model, est, hand, pairs


def check(name, draws=200, tight_seeds=2, projections=6, alpha=1e-3, seed=20240611, steps=3):
    """Whether the hand loop ``HANDWRITTEN[name]`` is estibench's ``name`` (``handwritten_sbn.check``'s method).

    Both at identical parameters (harness model under ``torch.manual_seed(0)``, own parameters set off their
    start by :func:`_set_state`, every number copied into the hand loop), at the fixed batch
    ``sbn_fixed_batch()``, K = ``PARTICLES[name]``:

    * tight, in float64: common random numbers (``torch.manual_seed(1000 + i)`` before each side, i <
      ``tight_seeds``): θ, φ and own gradients agree to ‖Δ‖/‖harness‖ < 1e-4 per group, the objectives to
      1e-3 nats.  float64 because RODEO's own gradients (ĝ_a² through cancelling f's and g_jᵀz's) carry a
      float32 rounding error of ~1e-4–1e-3 relative on either side (each against float64); the float32
      differences are reported too (``tight32``, information only);
    * statistical, in float32: ``draws`` independent estimates per side (harness seeds 10000 + i, hand
      20000 + i), each group's gradient projected on ``projections`` fixed N(0, 1) directions (generator
      seed ``seed`` + group index) and the objective; two-sample z per statistic, Bonferroni over the m
      statistics at family false-alarm rate ``alpha``;
    * training, in float64: ``steps`` steps of ``benchmarks.common.Trainer`` (the runner's step) and of the
      hand loop from the same point with common random numbers (``torch.manual_seed(3000)``):
      ‖Δ_h − Δ_x‖/‖Δ_h‖ < 1e-3 per group (``trajectory``).

    Returns the dict of ``handwritten_sbn.check`` plus ``tight32``."""
    from benchmarks.common import Trainer, sbn_batcher, sbn_fixed_batch
    K = PARTICLES[name]

    def flat(grads, idx):
        return torch.cat([grads[i].reshape(-1) for i in idx]).double()

    def draws_of(model, est, hand, pairs, x):
        def harness_draw():
            model_grads, own_grads, objective = est.gradients(model, x, K)
            return model_grads + own_grads, float(objective.sum())

        def hand_draw():
            loss, objective = hand.loss(x[0])
            grads = torch.autograd.grad(loss, hand.params)
            return [_to_harness(g, p) for g, (_, _, p) in zip(grads, pairs)], float(objective)
        return harness_draw, hand_draw

    def groups_of(pairs):
        groups = {g: [i for i, (gg, _, _) in enumerate(pairs) if gg == g] for g in ("theta", "phi", "own")}
        return {g: idx for g, idx in groups.items() if idx}

    def tight_gaps(dtype):
        model, est, hand, pairs = _build(name, dtype)
        groups = groups_of(pairs)
        harness_draw, hand_draw = draws_of(model, est, hand, pairs, sbn_fixed_batch().to(dtype))
        tight, gap = {g: 0.0 for g in groups}, 0.0
        for i in range(tight_seeds):
            torch.manual_seed(1000 + i)
            gh, oh = harness_draw()
            torch.manual_seed(1000 + i)
            gx, ox = hand_draw()
            gap = max(gap, abs(oh - ox))
            for g, idx in groups.items():
                a, b = flat(gh, idx), flat(gx, idx)
                tight[g] = max(tight[g], float((a - b).norm() / a.norm().clamp_min(1e-30)))
        return tight, gap

    tight, gap = tight_gaps(torch.float64)
    tight32, gap32 = tight_gaps(torch.float32)

    # statistical, float32
    model, est, hand, pairs = _build(name, torch.float32)
    groups = groups_of(pairs)
    harness_draw, hand_draw = draws_of(model, est, hand, pairs, sbn_fixed_batch())
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
            rows.append(torch.cat([flat(grads, idx) @ directions[g] for g, idx in groups.items()]
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
    counts = (sum(h.numel() for _, h, _ in pairs), sum(p.numel() for _, _, p in pairs))

    # training, float64
    model, est, hand, pairs = _build(name, torch.float64)
    start = [p.detach().clone().double() for _, _, p in pairs]
    trainer = Trainer(model, est, sbn_batcher(model), K)
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
    return {"name": name, "passed": passed, "tight": tight, "tight32": tight32, "objective_gap": gap,
            "objective_gap32": gap32, "trajectory": trajectory,
            "z": dict(zip(labels, z.tolist())), "max_z": max_z, "threshold": threshold, "statistics": m,
            "draws": draws, "steps": steps, "parameters": counts}


def main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="check the hand-written loops of rodeo, double_cv and indecater")
    p.add_argument("names", nargs="*", default=list(HANDWRITTEN))
    p.add_argument("--draws", type=int, default=200)
    p.add_argument("--alpha", type=float, default=1e-3)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.names:
        r = check(name, draws=args.draws, alpha=args.alpha)
        tight = ", ".join(f"{g} {v:.1e}" for g, v in r["tight"].items())
        tight32 = ", ".join(f"{g} {v:.1e}" for g, v in r["tight32"].items())
        moved = ", ".join(f"{g} {v:.1e}" for g, v in r["trajectory"].items())
        worst = max(r["z"], key=lambda k: abs(r["z"][k]))
        print(f"{name:10s} {'ok ' if r['passed'] else 'FAIL'} params {r['parameters'][0]}/{r['parameters'][1]}  "
              f"tight ‖Δ‖/‖g‖ (float64): {tight}; (float32: {tight32}); |Δ objective| {r['objective_gap']:.1e}; "
              f"{r['steps']} steps "
              f"‖Δ_h − Δ_x‖/‖Δ_h‖: {moved}; max |z| {r['max_z']:.2f} "
              f"({worst}) < {r['threshold']:.2f} (m = {r['statistics']}, n = {r['draws']} per side)", flush=True)


if __name__ == "__main__":
    main()
