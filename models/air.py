"""Attend, Infer, Repeat (Eslami et al., 2016, "Attend, infer, repeat: fast scene understanding with generative
models", §2 and Fig. 2) as the RWS paper trains it on multi-MNIST (Le et al., "Revisiting Reweighted Wake-Sleep",
``004_…`` §4.1, Fig. 1): at most ``steps`` = 3 inference steps, 20 × 20 glimpses, z_what of 50, a Bernoulli
likelihood on stochastically binarised 50 × 50 images.  Sizes follow the RWS authors' AIR code (``akosiorek/ws_air``,
``air/model_config.py``, ``air/cell.py``, ``air/modules.py``; read, not copied).

Latents, per step t = 1 … T, stored flat as ``[pres_1, where_1 (4), what_1 (50), pres_2, …]`` (55 numbers a step):
    pres_t ∈ {0, 1}, pres_t = 0 once pres_{t−1} = 0 (the number of objects n = Σ_t pres_t);
    where_t ∈ R⁴, the spatial-transformer logits (s_x, s_y, t_x, t_y): scale σ(·), shift tanh(·);
    what_t ∈ R⁵⁰.
The where and what of absent steps are stored as 0 and carry no density (the density is over n and the present
steps' choices: a mixture of spaces of different dimension, the same for q, p and δ-WW's defensive component).

Generative model (θ):
    n ~ the geometric step-count prior truncated to {0 … T}, p(n) ∝ s^n (s the probability of one more step),
        normalised over {0 … T} (the ``ws_air`` code uses the untruncated ``Geometric`` mass, which lacks the
        constant log Σ_{n≤T} s^n (1 − s) and so reports a lower log evidence; ours, stated);
    where_t ~ N(0, I₄), what_t ~ N(0, I₅₀) for t ≤ n (``ws_air``'s priors);
    glimpse_t = σ(dec(what_t)), dec = 50 → 256 → 256 → 400 (ELU), placed on the canvas by the inverse spatial
        transformer (``affine_grid`` / ``grid_sample``, zeros outside);
    p(x | z) = Bern(p), 1 − p = (1 − b) Π_{t≤n} (1 − canvas_t): each present glimpse turns a pixel on independently
        (noisy-OR) over a background rate b (option ``background``, default 1e-3).  The RWS paper states a Bernoulli
        likelihood without its formula and the ``ws_air`` code uses N(Σ_t canvas_t, 0.3²); the noisy-OR is ours,
        stated: it keeps p in (0, 1) with no clipping, so every pixel has a gradient.
    Annealing (``ws_air``'s ``geom_success_prob``): s decays exponentially from ``prior_start`` = 1 − 1e-7 to
    ``prior_end`` = 1e-5 over ``anneal_fraction`` of training after holding for ``hold_fraction`` (the code: 100k
    iterations after a hold of 1k, of 2M: 0.05 and 0.0005, the defaults); ``prior_start = prior_end`` fixes it.
    The model receives the training progress through ``set_progress`` (called by the harness every step).

Guide (φ), the ``ws_air`` cell: e = enc(x), enc = 2500 → 256 → 256 (ELU); a vanilla RNN of 256 (tanh, trainable
initial state) h_t = tanh(W e_t + U h_{t−1} + b) whose input e_t is e alone (``rnn_input = "image"``, the code's) or
e with the previous step's (what, where, pres) (``"image+latents"``, Eslami et al.'s and Pyro's AIR);
    q(pres_t | h_t) = Bern(σ(MLP(h_t) + 1)), MLP 256 → 128 → 64 → 1 (the code's step predictor, step bias 1),
        multiplied by pres_{t−1};
    q(where_t | h_t) = N(μ, softplus(ρ − 3) + 1e-4), (μ, ρ) = MLP(h_t), 256 → 256 → 256 → 8;
    q(what_t | x, where_t) = N(μ, softplus(ρ) + 1e-4), (μ, ρ) from the 20 × 20 glimpse of x at where_t through
        400 → 256 → 256 (ELU) → 100.
Every weight is initialised like ``torch.nn.Linear``, one seed per replicate.

Capabilities: STRUCTURED (the flat layout above) and STRUCTURED_RSAMPLE (``guide_rsample_structured``: where and
what reparameterised, pres sampled), so ``vimco`` uses VIMCO on the step count with reparameterised where/what
(RWS §4.1), and the score-function and wake-sleep estimators (``reinforce``, ``ws``, ``ww``, ``dww``, ``rw+rws``)
apply; ``vae`` and ``iwae`` (fully reparameterised) are refused with one line.  Not enumerable.
"""
from __future__ import annotations

import math
from typing import List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution, constraints

from .base import LatentVariableModel
from .latents import StructuredLatent
from .nn import StackedLinear, StackedMLP
from .protocols import STRUCTURED_RSAMPLE, TRAINING_MEAN
from .sbn import apply_stacked

WHERE = 4
RNN_INPUTS = ("image", "image+latents")


def geometric_log_prior(n: torch.Tensor, s: float, steps: int) -> torch.Tensor:
    """log p(n) of the truncated geometric p(n) ∝ s^n on {0 … steps}, computed in float64 from the scalar s."""
    s = min(max(float(s), 1e-300), 1.0)
    if s >= 1.0:
        return torch.full_like(n, -math.log(steps + 1))
    # log Σ_{m ≤ T} s^m = log (1 − s^{T+1}) − log (1 − s)
    log_norm = math.log(-math.expm1((steps + 1) * math.log(s))) - math.log1p(-s)
    return n * math.log(s) - log_norm


def glimpse_theta(where: torch.Tensor, inverse: bool = False, min_scale: float = 1e-3) -> torch.Tensor:
    """``[N, 2, 3]`` affine matrices from where-logits ``[N, 4]``: extraction [[s_x, 0, t_x], [0, s_y, t_y]] maps
    glimpse coordinates to image coordinates (both in [−1, 1]); ``inverse`` places a glimpse on the canvas."""
    scale = torch.sigmoid(where[:, :2]).clamp(min=min_scale)
    shift = torch.tanh(where[:, 2:])
    zero = torch.zeros_like(scale[:, 0])
    if inverse:
        scale, shift = 1.0 / scale, -shift / scale
    return torch.stack([torch.stack([scale[:, 0], zero, shift[:, 0]], -1),
                        torch.stack([zero, scale[:, 1], shift[:, 1]], -1)], -2)


def extract(images: torch.Tensor, where: torch.Tensor, size: int) -> torch.Tensor:
    """Glimpses ``[N, size²]`` of images ``[N, H, W]`` at where-logits ``[N, 4]`` (bilinear, zeros outside)."""
    N = images.shape[0]
    grid = F.affine_grid(glimpse_theta(where), (N, 1, size, size), align_corners=False)
    return F.grid_sample(images.unsqueeze(1), grid, align_corners=False).reshape(N, size * size)


def place(glimpses: torch.Tensor, where: torch.Tensor, shape) -> torch.Tensor:
    """The inverse spatial transformer: glimpses ``[N, g²]`` drawn on canvases ``[N, H, W]`` at where ``[N, 4]``."""
    N, g = glimpses.shape[0], int(round(glimpses.shape[1] ** 0.5))
    grid = F.affine_grid(glimpse_theta(where, inverse=True), (N, 1, *shape), align_corners=False)
    return F.grid_sample(glimpses.reshape(N, 1, g, g), grid, align_corners=False).reshape(N, *shape)


class AIRGuide(Distribution):
    """q_φ(z | x) of :class:`AIR` over the flat layout, batch shape ``[R, B]``: ``sample`` runs the guide forward,
    ``log_prob`` re-runs it on given latents (teacher-forced)."""

    arg_constraints: dict = {}
    support = constraints.real_vector
    has_rsample = False

    def __init__(self, model: "AIR", x: torch.Tensor):
        self.model, self.x = model, x
        super().__init__(batch_shape=x.shape[:2], event_shape=(model.latent.dim,), validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.model.guide_pass(self.x, tuple(sample_shape), mode="sample")[0]

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        lead = tuple(z.shape[:-3])
        _, log_d, log_c = self.model.guide_pass(self.x, lead, z=z, mode="score")
        return log_d + log_c


class DefensiveAIR(Distribution):
    """δ-WW's defensive component on AIR's layout: n uniform on {0 … T}, the present steps' where and what
    N(0, 3² I) (broader than the standard-normal priors; ours, stated)."""

    arg_constraints: dict = {}
    support = constraints.real_vector

    def __init__(self, steps: int, what: int, batch_shape, device=None, scale: float = 3.0):
        self.steps, self.what, self.scale, self.device = steps, what, float(scale), device
        super().__init__(batch_shape=torch.Size(batch_shape), event_shape=(steps * (1 + WHERE + what),),
                         validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        n = torch.randint(0, self.steps + 1, shape, device=self.device)
        t = torch.arange(self.steps, device=self.device)
        pres = (t < n.unsqueeze(-1)).float()  # [*, T]
        cont = self.scale * torch.randn(*shape, self.steps, WHERE + self.what, device=self.device)
        return torch.cat([pres.unsqueeze(-1), cont * pres.unsqueeze(-1)], -1).reshape(*shape, -1)

    def log_prob(self, z):
        z = z.reshape(*z.shape[:-1], self.steps, 1 + WHERE + self.what)
        pres = z[..., 0]
        dens = torch.distributions.Normal(0.0, self.scale, validate_args=False).log_prob(z[..., 1:]).sum(-1)
        return -math.log(self.steps + 1) + (pres * dens).sum(-1)


class AIR(LatentVariableModel):
    latent_kind = "structured"
    provides = (STRUCTURED_RSAMPLE, TRAINING_MEAN)
    default_dataset = "multi-mnist5k-s0"
    data_statistics = ("train_mean", "image_shape", "max_count")

    def __init__(self, seeds: Sequence[int] = (0,), dataset: str = "multi-mnist5k-s0", steps: int = 3,
                 glimpse: int = 20, what_dim: int = 50, hidden: int = 256, rnn_input: str = "image",
                 background: float = 1e-3, prior_start: float = 1 - 1e-7, prior_end: float = 1e-5,
                 hold_fraction: float = 0.0005, anneal_fraction: float = 0.05, downsample: int = 1,
                 train_mean: Optional[torch.Tensor] = None, image_shape=None, max_count: Optional[int] = None):
        super().__init__(seeds)
        if train_mean is None or image_shape is None:
            raise ValueError(f"{type(self).__name__} needs the training statistics of {dataset!r} (train_mean, "
                             "image_shape): build it with estibench.harness.build_model")
        self.dataset, self.steps, self.glimpse = str(dataset), int(steps), int(glimpse)
        self.what_dim, self.hidden, self.rnn_input = int(what_dim), int(hidden), str(rnn_input)
        self.downsample = int(downsample)
        self.image_shape = tuple(int(v) for v in image_shape)
        if self.steps < 1 or self.what_dim < 1 or self.hidden < 1 or self.glimpse < 1:
            raise ValueError(f"steps, what_dim, hidden and glimpse must be positive, got {steps}, {what_dim}, "
                             f"{hidden}, {glimpse}")
        if self.glimpse > min(self.image_shape):
            raise ValueError(f"a {self.glimpse} × {self.glimpse} glimpse does not fit the "
                             f"{self.image_shape[0]} × {self.image_shape[1]} canvas of {dataset!r}")
        if max_count is not None and int(max_count) > self.steps:
            raise ValueError(f"{dataset!r} has images with {int(max_count)} objects but AIR takes at most steps = "
                             f"{self.steps}: choose steps ≥ {int(max_count)}")
        if self.rnn_input not in RNN_INPUTS:
            raise ValueError(f"rnn_input must be one of {RNN_INPUTS}, got {rnn_input!r}")
        if not 0.0 < float(background) < 1.0:
            raise ValueError(f"background must be in (0, 1), got {background}")
        for name, v in (("prior_start", prior_start), ("prior_end", prior_end)):
            if not 0.0 < float(v) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {v}")
        if not (0.0 <= float(hold_fraction) <= 1.0 and 0.0 < float(anneal_fraction) <= 1.0):
            raise ValueError(f"hold_fraction must be in [0, 1] and anneal_fraction in (0, 1], got {hold_fraction}, "
                             f"{anneal_fraction}")
        self.background, self.prior_start, self.prior_end = float(background), float(prior_start), float(prior_end)
        self.hold_fraction, self.anneal_fraction = float(hold_fraction), float(anneal_fraction)
        self.success = self.prior_start  # s: the probability of one more step, annealed by set_progress
        pixels = self.image_shape[0] * self.image_shape[1]
        self.obs_shape = (pixels,)
        self.step_size = 1 + WHERE + self.what_dim
        self.latent = StructuredLatent(
            self.steps * self.step_size,
            defensive=lambda batch_shape, device: DefensiveAIR(self.steps, self.what_dim, batch_shape, device))
        self.register_buffer("train_mean", torch.as_tensor(train_mean, dtype=torch.float32).reshape(pixels))
        H, g2, d = self.hidden, self.glimpse ** 2, self.what_dim
        # θ
        self.decoder = StackedMLP(self.seeds, [d, 256, 256, g2], activation="elu", salt=300)
        # φ
        self.encoder = StackedMLP(self.seeds, [pixels, 256, 256], activation="elu", salt=301)
        rnn_in = 256 + (self.step_size if self.rnn_input == "image+latents" else 0)
        self.rnn_input_layer = StackedLinear(self.seeds, rnn_in, H, salt=3020)
        self.rnn_hidden_layer = StackedLinear(self.seeds, H, H, salt=3021)
        self.h0 = nn.Parameter(torch.zeros(self.replicates, 1, H))
        self.presence_net = StackedMLP(self.seeds, [H, 128, 64, 1], activation="elu", salt=303)
        self.where_net = StackedMLP(self.seeds, [H, 256, 256, 2 * WHERE], activation="elu", salt=304)
        self.what_net = StackedMLP(self.seeds, [g2, 256, 256, 2 * d], activation="elu", salt=305)

    @classmethod
    def statistics_query(cls, options: dict) -> dict:
        return {"name": str(options.get("dataset", cls.default_dataset)),
                "downsample": int(options.get("downsample", 1))}

    # -- parameters ------------------------------------------------------------------------------------
    def generative_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in self.decoder.parameters()}
        return [p for p in self.parameters() if id(p) in ids]

    def guide_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in self.decoder.parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    # -- the step-count prior's annealing ------------------------------------------------------------------
    def set_progress(self, fraction: float) -> None:
        """s = prior_start · (prior_end / prior_start)^{(f − hold) / anneal}, at least prior_end (``ws_air``'s
        exponential ``anneal_weight``), f the training progress in [0, 1]."""
        progress = max(0.0, float(fraction) - self.hold_fraction) / self.anneal_fraction
        s = self.prior_start * (self.prior_end / self.prior_start) ** min(progress, 1.0)
        self.success = max(self.prior_end, s) if self.prior_end <= self.prior_start else min(self.prior_end, s)

    # -- layout ----------------------------------------------------------------------------------------------
    def unpack(self, z: torch.Tensor):
        """(pres ``[*, T]``, where ``[*, T, 4]``, what ``[*, T, d]``) of flat latents ``[*, D]``."""
        steps = z.reshape(*z.shape[:-1], self.steps, self.step_size)
        return steps[..., 0], steps[..., 1:1 + WHERE], steps[..., 1 + WHERE:]

    def pack(self, pres, where, what) -> torch.Tensor:
        m = pres.unsqueeze(-1)
        return torch.cat([m, where * m, what * m], -1).reshape(*pres.shape[:-1], -1)

    # -- guide -------------------------------------------------------------------------------------------------
    def guide(self, x: torch.Tensor) -> AIRGuide:
        return AIRGuide(self, x)

    def guide_rsample_structured(self, x: torch.Tensor, num_particles: int):
        return self.guide_pass(x, (int(num_particles),), mode="rsample")

    def guide_pass(self, x: torch.Tensor, sample_shape=(), z: Optional[torch.Tensor] = None, mode: str = "sample"):
        """One pass of the guide over T steps for particles of shape ``sample_shape``: (z, log q of the presence
        choices, log q of the present steps' where and what), each ``[*sample_shape, R, B]`` but z.  ``mode``:
        "sample" (draws), "score" (the given z, teacher-forced), "rsample" (where/what reparameterised)."""
        R, B = x.shape[:2]
        P = int(math.prod(sample_shape))
        H, T, d = self.hidden, self.steps, self.what_dim
        if z is not None:
            pres_in, where_in, what_in = (v.reshape(P, R, B, *v.shape[len(sample_shape) + 2:]) for v in self.unpack(z))
        e = F.elu(apply_stacked(self.encoder, x))  # [R, B, 256]
        images = x.reshape(R, B, *self.image_shape)
        flat_images = images.unsqueeze(0).expand(P, R, B, *self.image_shape).reshape(P * R * B, *self.image_shape)
        per_particle = self.rnn_input == "image+latents"
        h = self.h0.expand(R, B, H)
        if per_particle:
            h = h.expand(P, R, B, H)
        prev = torch.zeros(P, R, B, self.step_size, dtype=x.dtype, device=x.device)
        prev[..., 0] = 1.0
        alive = torch.ones(P, R, B, dtype=x.dtype, device=x.device)
        log_d = torch.zeros(P, R, B, dtype=x.dtype, device=x.device)
        log_c = torch.zeros(P, R, B, dtype=x.dtype, device=x.device)
        out_pres, out_where, out_what = [], [], []
        for t in range(T):
            if per_particle:
                inp = torch.cat([e.expand(P, R, B, e.shape[-1]), prev], -1)
            else:
                inp = e
            h = torch.tanh(apply_stacked(self.rnn_input_layer, inp) + apply_stacked(self.rnn_hidden_layer, h))
            logit = apply_stacked(self.presence_net, h).squeeze(-1) + 1.0
            where_params = apply_stacked(self.where_net, h)
            where_loc, where_scale = where_params[..., :WHERE], F.softplus(where_params[..., WHERE:] - 3.0) + 1e-4
            logit = logit.expand(P, R, B)
            if mode == "score":
                pres = pres_in[:, :, :, t]
            else:
                pres = torch.bernoulli(torch.sigmoid(logit.detach())) * alive
            log_d = log_d + alive * (pres * logit - F.softplus(logit))  # log Bern(pres_t) while still running
            q_where = torch.distributions.Normal(where_loc.expand(P, R, B, WHERE), where_scale.expand(P, R, B, WHERE),
                                                 validate_args=False)
            if mode == "score":
                where = where_in[:, :, :, t]
            elif mode == "rsample":
                where = q_where.rsample()
            else:
                where = q_where.sample()
            glimpses = extract(flat_images, where.reshape(P * R * B, WHERE), self.glimpse).reshape(P, R, B, -1)
            what_params = apply_stacked(self.what_net, glimpses)
            what_loc, what_scale = what_params[..., :d], F.softplus(what_params[..., d:]) + 1e-4
            q_what = torch.distributions.Normal(what_loc, what_scale, validate_args=False)
            if mode == "score":
                what = what_in[:, :, :, t]
            elif mode == "rsample":
                what = q_what.rsample()
            else:
                what = q_what.sample()
            log_c = log_c + pres * (q_where.log_prob(where).sum(-1) + q_what.log_prob(what).sum(-1))
            m = pres.unsqueeze(-1)
            where, what = where * m, what * m
            out_pres.append(pres)
            out_where.append(where)
            out_what.append(what)
            prev = torch.cat([m, where, what], -1)
            alive = pres
        z_out = self.pack(torch.stack(out_pres, -1), torch.stack(out_where, -2), torch.stack(out_what, -2))
        shape = tuple(sample_shape) + (R, B)
        return z_out.reshape(*shape, -1), log_d.reshape(shape), log_c.reshape(shape)

    # -- generative model --------------------------------------------------------------------------------------
    def canvases(self, z: torch.Tensor) -> torch.Tensor:
        """Each step's glimpse placed on the canvas, σ(dec(what_t)) through the inverse transformer, times pres_t:
        ``[*, R, B, T, H, W]``."""
        pres, where, what = self.unpack(z)
        lead = z.shape[:-1]
        g = torch.sigmoid(apply_stacked(self.decoder, what.movedim(-2, 0)).movedim(0, -2))  # [*, R, B, T, g²]
        n = int(math.prod(lead)) * self.steps
        placed = place(g.reshape(n, -1), where.reshape(n, WHERE), self.image_shape)
        return placed.reshape(*lead, self.steps, *self.image_shape) * pres[..., None, None]

    def pixel_log_probs(self, z: torch.Tensor):
        """(log p, log (1 − p)) per pixel ``[*, R, B, pixels]`` of the noisy-OR likelihood."""
        canvas = self.canvases(z).clamp(max=1 - 1e-6)
        log_off = math.log1p(-self.background) + torch.log1p(-canvas).sum(-3)
        log_off = log_off.reshape(*log_off.shape[:-2], -1)
        return torch.log(-torch.expm1(log_off)), log_off

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        pres, where, what = self.unpack(z)
        normal = torch.distributions.Normal(torch.zeros((), dtype=z.dtype, device=z.device), 1.0, validate_args=False)
        dens = normal.log_prob(where).sum(-1) + normal.log_prob(what).sum(-1)
        n = pres.sum(-1)
        return geometric_log_prior(n, self.success, self.steps).to(z.dtype) + (pres * dens).sum(-1)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        log_on, log_off = self.pixel_log_probs(z)
        return (x * log_on + (1 - x) * log_off).sum(-1)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.log_prior(z) + self.log_likelihood(x, z)

    @torch.no_grad()
    def sample_latents(self, n: int) -> torch.Tensor:
        """z ~ p_θ(z), ``[R, n, D]``."""
        R, T = self.replicates, self.steps
        counts = torch.arange(T + 1, dtype=torch.float64)
        probs = geometric_log_prior(counts, self.success, T).exp()
        k = torch.multinomial(probs.float().expand(R * int(n), T + 1), 1).reshape(R, int(n)).to(self.device)
        pres = (torch.arange(T, device=self.device) < k.unsqueeze(-1)).to(self.dtype)
        where = torch.randn(R, int(n), T, WHERE, dtype=self.dtype, device=self.device)
        what = torch.randn(R, int(n), T, self.what_dim, dtype=self.dtype, device=self.device)
        return self.pack(pres, where, what)

    @torch.no_grad()
    def sample(self, n: int):
        z = self.sample_latents(n)
        return z, torch.bernoulli(self.pixel_log_probs(z)[0].exp())

    def counts(self, z: torch.Tensor) -> torch.Tensor:
        """The number of objects Σ_t pres_t of flat latents, ``[*]`` (integers)."""
        return self.unpack(z)[0].sum(-1).round().long()
