"""Convolutional VAEs with a global discrete prior and local latents: DVAE++'s convolutional model (Vahdat, Macready,
Bian, Khoshaman & Andriyash, ICML 2018, "DVAE++", §6.2 and §7.3, Table 3) and PixelVAE++ (Sadeghi, Andriyash,
Vinci, Buffoni & Amin, 2019, §2–4, Table 1), one family of classes from an enumerable configuration to the
papers' sizes (:data:`CONFIGS`).

The model (DVAE++ §6.2, Fig. 3 as we read it; the layer-level architecture of its Appendix G is not in our copy of
the paper, so every layer choice below is ours):

* **global latents** z ∈ {0,1}^D at the top scale, z = [z₁, z₂] (``latent_bits`` = n₁ + n₂), with prior
  ``prior="rbm"``: the RBM p(z) = e^{−E(z₁, z₂)} / Z of :mod:`models.rbm` (log Z exact when its smaller side has at
  most 16 bits — DVAE++'s 16 units on binary data are 8 + 8 — else AIS; persistent chains for the negative phase),
  or ``prior="bernoulli"``: a factorial Bernoulli prior, which is the same RBM with its coupling W held at 0
  (log Z = Σ softplus of the biases, exact);  :class:`ConvVAENormal`: global z ∈ ℝ^D with a standard normal prior
  (Table 3's "Normal" rows).  The guide of the global latents is q(z₁ | x) q(z₂ | x, ζ₁) (``groups=2``, one of
  DVAE++'s {1, 2, 4} cross-validated choices) or factorial (``groups=1``), from fully connected layers on the
  encoder's coarsest feature map;
* **local latents** h = (h₁, …, h_G) at the encoder's coarsest scale (H/2^S × W/2^S positions, ``local_channels``
  variables per position in each of ``local_groups`` groups: the paper's 16 groups × 32), ``local="normal"``
  (diagonal Gaussians) or ``"bernoulli"``, with prior p(h_j | ζ, h_<j) and guide q(h_j | x, ζ, h_<j) read by 3×3
  convolutions off the decoder's state (and, for q, the encoder's coarsest features); each sample is merged into the
  decoder's state (1×1 convolution) and an SE-residual block follows (``models/conv_blocks.py``);
* **decoder**: the global latents through a linear layer to the coarsest map, the local groups, then the
  up-sampling SE-residual trunk (``UpStack``) to a factorial Bernoulli likelihood for binary images
  (``likelihood="bernoulli"``: per-pixel logits plus a per-pixel bias started at logit(x̄)), a discretised mixture
  of logistics for colour images (``"logistic"``, ``models/logistic_mixture.py``) or a PixelCNN++ conditioned on the
  trunk's full-resolution features (``"pixelcnn"``, PixelVAE++; ``models/pixelcnn.py``; on binary images the same
  network with one Bernoulli logit per pixel as its head — ours, PixelVAE++ does not state its binary output);
  DVAE++'s "conditional decoder" for OMNIGLOT / Caltech is not reproduced (ours: factorial everywhere but PixelVAE++).

How the estimators see it.  The global latents are the model's latent variable (``latent``, ``guide``) and the local
ones are integrated inside the model:

* ``local_integration="sample"`` (default): ``log_joint(x, z)`` = log p*(z) + log p(x | z, h) + log p(h | z) −
  log q(h | x, z) at one draw h ~ q(h | x, z) — a one-sample importance estimate of log p(x, z) (exactly unbiased in
  exp, so every IWAE bound built on it is still a bound on log p(x)); and for the relaxations (RELAXED_BOLTZMANN),
  ``log_likelihood(x, ζ)`` = log p(x | ζ, h̃) + log p(h̃ | ζ) − log q(h̃ | x, ζ) with h̃ reparameterised: normal
  local latents by μ + σε, Bernoulli ones by the overlapping exponential smoothing (DVAE++ Eq. 3) at
  ``local_beta`` and its mixture densities (the marginal form of DVAE++ Eq. 5 per group).  β is fixed here (DVAE++
  anneals the smoothing of every binary latent; the estimator anneals the global one's);
* ``local_integration="exact"``: Bernoulli local latents with at most :data:`MAX_EXACT_LOCAL_BITS` bits are summed
  out, log p(x | ζ) = logsumexp_h [log p(h | ζ) + log p(x | ζ, h)]: the joint is exact, so with few global bits the
  model is enumerable (``CONFIGS["tiny"]``) and exact log p(x), posteriors and gradients (log Z included) check every
  code path of the convolutional networks against enumeration.

Capabilities: UNNORMALISED_PRIOR, RELAXED_BOLTZMANN and MULTILINEAR_ENERGY (``overlap_exp`` / ``spike_exp`` — DVAE++
Table 3's "RBM (ours)" / "RBM (Rolfe)" — and ``gumbolt``, PixelVAE++), TRAINING_MEAN on binary data; the global
latents are enumerable only with ``local_integration="exact"`` or no local latents.  Replicates: every network is one
:class:`models.nn.StackedModule` (replicate r built after ``torch.manual_seed(seeds[r])``); the RBM as in
:mod:`models.rbm_vae`.  Observations are flattened images ``[R, B, C·H·W]``: {0, 1} for binary data, the 8-bit
values 0…255 for colour data.
"""
from __future__ import annotations

import itertools
import math
import weakref
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Independent, Normal

from .base import LatentVariableModel
from .conv_blocks import DownStack, SEResidualBlock, UpStack
from .latents import BernoulliLatent, NormalLatent
from .logistic_mixture import dlm_log_prob, dlm_num_params, dlm_sample, to_unit
from .nn import StackedModule
from .pixelcnn import PixelCNNpp
from .registry import Revision
from .protocols import (MULTILINEAR_ENERGY, RELAXED_BOLTZMANN, REPARAMETERISED, TRAINING_MEAN, UNNORMALISED_PRIOR,
                        bernoulli_log_mass)
from .rbm import RBM, PersistentChains
from .rbm_vae import EXACT_LOG_Z_BITS, LOG_Z_MODES, RBMVAE
from .sbn import image_statistics_query
from .smoothing import OverlapExp

PRIORS = ("rbm", "bernoulli")
LOCALS = ("normal", "bernoulli")
LIKELIHOODS = ("bernoulli", "logistic", "pixelcnn")
INTEGRATIONS = ("sample", "exact")
#: the most local bits ``local_integration="exact"`` sums out
MAX_EXACT_LOCAL_BITS = 12
#: image shapes of the data the family trains on, by the data layer's kind
SHAPES = {"binary": (1, 28, 28), "colour": (3, 32, 32)}
LOG_SCALE_MIN = -7.0
#: items per decoder pass when no gradient is needed (evaluation): bounds the memory of many-particle bounds
EVAL_CHUNK = 256

#: the configurations (model options).  ``tiny``: every code path, enumerable (3 + 3 global bits, one local group of
#: 4 Bernoulli bits summed out, 4×4 images); ``small``: the CPU budget (14×14 images, 8 + 8 RBM with exact log Z,
#: 2 local groups × 4 channels at 7×7); ``paper``: DVAE++ §7.3 on binary data (16 local groups × 32 variables per
#: position, 16 RBM units, width 64 and 2 SE blocks per scale ours); ``paper_cifar``: the same on CIFAR-10 (128 RBM
#: units, width 128, 10 logistics ours); ``pixelvae`` / ``pixelvae_cifar``: PixelVAE++ §3–4 (400 latents, 200 + 200
#: RBM, PixelCNN++ n = 3 with 64 maps on binary data; n = 5 with 128 filters and 512 = 256 + 256 latents on CIFAR-10,
#: our reading of its "512 concatenated" latents without the 128 conditional and shared ones); ``pixelvae_small``:
#: the CPU budget's PixelVAE++ (28×28, two scales of 16 channels, 8 + 8 RBM, PixelCNN++ n = 1 with 8 filters).
CONFIGS = {
    "tiny": dict(downsample=7, scales=1, width=8, blocks=1, latent_bits=6, local_groups=1, local_channels=1,
                 local="bernoulli", local_integration="exact"),
    "small": dict(downsample=2, scales=1, width=16, blocks=1, latent_bits=16, local_groups=2, local_channels=4),
    "paper": dict(downsample=1, scales=2, width=64, blocks=2, latent_bits=16, local_groups=16, local_channels=32),
    "paper_cifar": dict(dataset="cifar10", downsample=1, scales=2, width=128, blocks=2, latent_bits=128,
                        local_groups=16, local_channels=32, likelihood="logistic", n_mix=10),
    "pixelvae": dict(downsample=1, scales=2, width=64, blocks=1, latent_bits=400, local_groups=0,
                     likelihood="pixelcnn", pixelcnn_resnets=3, pixelcnn_filters=64),
    "pixelvae_cifar": dict(dataset="cifar10", downsample=1, scales=2, width=128, blocks=1, latent_bits=512,
                           local_groups=0, likelihood="pixelcnn", pixelcnn_resnets=5, pixelcnn_filters=128, n_mix=10),
    "pixelvae_small": dict(downsample=1, scales=2, width=16, blocks=1, latent_bits=16, local_groups=0,
                           likelihood="pixelcnn", pixelcnn_resnets=1, pixelcnn_filters=8),
}


def _lead_to_rn(t: torch.Tensor, R: int, event: int) -> Tuple[torch.Tensor, Tuple[int, ...]]:
    """``[*P, R, B, *event]`` → ``[R, P·B, *event]`` and the leading shape ``(*P, R, B)``."""
    lead = tuple(t.shape[:t.dim() - event])
    if len(lead) < 2 or lead[-2] != R:
        raise ValueError(f"expected [..., R={R}, B, ...], got shape {tuple(t.shape)}")
    p = len(lead) - 2
    out = t.movedim(p, 0).reshape(R, -1, *t.shape[t.dim() - event:])
    return out, lead


def _rn_to_lead(t: torch.Tensor, lead: Tuple[int, ...]) -> torch.Tensor:
    """``[R, P·B, *rest]`` → ``[*P, R, B, *rest]`` (the inverse of :func:`_lead_to_rn`)."""
    p = len(lead) - 2
    rest = t.shape[2:]
    return t.reshape(lead[-2], *lead[:p], lead[-1], *rest).movedim(0, p)


class ConvNet(nn.Module):
    """The networks of one replicate (see the module docstring).  ``forward(x, what, *args)`` dispatches on ``what``
    so that :class:`models.nn.StackedModule` can vectorise every entry point over the replicates."""

    def __init__(self, image: Tuple[int, int, int], likelihood: str, width: int, scales: int, blocks: int,
                 global_sizes: Tuple[int, ...], global_normal: bool, hierarchical: bool, local_groups: int,
                 local_channels: int, local: str, n_mix: int, pixelcnn_resnets: int, pixelcnn_filters: int,
                 pixel_bias: Optional[torch.Tensor]):
        super().__init__()
        C, H, W = image
        self.image, self.likelihood, self.width = image, likelihood, width
        self.r = (H >> scales, W >> scales)
        feat = width * self.r[0] * self.r[1]
        D = sum(global_sizes)
        self.encoder = DownStack(C, width, scales, blocks)
        if global_normal:
            self.global_q = nn.ModuleList([nn.Linear(feat, 2 * D)])
        elif hierarchical:
            n1, n2 = global_sizes
            self.global_q = nn.ModuleList([nn.Linear(feat, n1), nn.Linear(feat + n1, n2)])
        else:
            self.global_q = nn.ModuleList([nn.Linear(feat, D)])
        self.global_p = nn.Linear(D, feat)
        self.local, self.local_channels = local, local_channels
        k = local_channels * (2 if local == "normal" else 1)
        self.local_prior = nn.ModuleList(nn.Conv2d(width, k, 3, padding=1) for _ in range(local_groups))
        self.local_post = nn.ModuleList(nn.Conv2d(2 * width, k, 3, padding=1) for _ in range(local_groups))
        self.local_merge = nn.ModuleList(nn.Conv2d(local_channels, width, 1) for _ in range(local_groups))
        self.local_block = nn.ModuleList(SEResidualBlock(width) for _ in range(local_groups))
        if likelihood == "pixelcnn":
            out = width
            self.pixelcnn = PixelCNNpp(channels=C, filters=pixelcnn_filters, n_blocks=pixelcnn_resnets, n_mix=n_mix,
                                       cond_channels=width)
            if C == 1:  # binary images: one Bernoulli logit per pixel (ours)
                self.pixelcnn.head = nn.Conv2d(pixelcnn_filters, 1, 1)
        else:
            out = 1 if likelihood == "bernoulli" else dlm_num_params(C, n_mix)
        self.n_mix = n_mix
        self.decoder = UpStack(width, out, scales, blocks_per_scale=blocks)
        if C == 1 and likelihood != "logistic":  # binary images: a per-pixel output bias, started at logit(x̄)
            self.pixel_bias = nn.Parameter(pixel_bias.reshape(1, H, W).clone() if pixel_bias is not None
                                           else torch.zeros(1, H, W))

    # -- entry points (one replicate; leading dimension N) -------------------------------------------
    def forward(self, x: torch.Tensor, what: str, *args):
        return getattr(self, "_" + what)(x, *args)

    def _features(self, x_img: torch.Tensor) -> torch.Tensor:
        return self.encoder(x_img)[-1]

    def _global(self, feats: torch.Tensor, group: int, first: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = feats.flatten(-3)
        if group == 1:
            h = torch.cat([h, first], -1)
        return self.global_q[group](h)

    def _top(self, zeta: torch.Tensor) -> torch.Tensor:
        return self.global_p(zeta).reshape(-1, self.width, *self.r)

    def _local_prior(self, d: torch.Tensor, j: int) -> torch.Tensor:
        return self.local_prior[j](d)

    def _local_post(self, d: torch.Tensor, j: int, feats: torch.Tensor) -> torch.Tensor:
        return self.local_post[j](torch.cat([d, feats], 1))

    def _advance(self, d: torch.Tensor, j: int, h: torch.Tensor) -> torch.Tensor:
        return self.local_block[j](d + self.local_merge[j](h))

    def _out(self, d: torch.Tensor) -> torch.Tensor:
        out, _ = self.decoder(d)
        return out

    def _pixel_params(self, x_img: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """The likelihood's parameters at x (PixelCNN++: conditioned on the trunk's output ``out``)."""
        if self.likelihood == "pixelcnn":
            return self.pixelcnn(x_img, out)
        return out

    def _log_px(self, x_img: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        params = self._pixel_params(x_img, out)
        if self.image[0] == 1 and self.likelihood != "logistic":  # binary: x_img = 2x − 1
            return bernoulli_log_mass((params + self.pixel_bias).flatten(-3), (x_img.flatten(-3) + 1) / 2)
        return dlm_log_prob(x_img, params, self.n_mix)


_FEATURES_ONCE = Revision(
    7, "the encoder's features of a batch are computed once per training step and shared by the guide and the local "
       "posteriors (one backward pass through the encoder instead of two or three): the same values, the gradients "
       "summed in another order (differences in the last bits); earlier cells stay valid under their version",
    invalidates=False)


class _ConvFamily:
    """What :class:`ConvVAE` and :class:`ConvVAENormal` share: the options, the networks and the local latents."""

    #: keep the encoder's features of a batch within a step (:meth:`features`); ``benchmarks/conv_step.py`` turns it
    #: off on an instance to measure what it saves
    features_cache: bool = True

    def _setup(self, seeds, dataset, downsample, scales, width, blocks, global_sizes, global_normal, hierarchical,
               local_groups, local_channels, local, local_beta, local_integration, likelihood, n_mix,
               pixelcnn_resnets, pixelcnn_filters, train_mean):
        from_kind = "colour" if str(dataset).startswith("cifar") else "binary"
        for name, value, low in (("scales", scales, 1), ("width", width, 1), ("blocks", blocks, 1),
                                 ("local_groups", local_groups, 0), ("local_channels", local_channels, 1),
                                 ("n_mix", n_mix, 1), ("pixelcnn_resnets", pixelcnn_resnets, 1),
                                 ("pixelcnn_filters", pixelcnn_filters, 1), ("downsample", downsample, 1)):
            if isinstance(value, bool) or int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {', '.join(LIKELIHOODS)}, got {likelihood!r}")
        if local not in LOCALS:
            raise ValueError(f"local must be one of {', '.join(LOCALS)}, got {local!r}")
        if local_integration not in INTEGRATIONS:
            raise ValueError(f"local_integration must be one of {', '.join(INTEGRATIONS)}, got {local_integration!r}")
        if not (isinstance(local_beta, (int, float)) and math.isfinite(local_beta) and local_beta > 0):
            raise ValueError(f"local_beta must be a finite positive number, got {local_beta!r}")
        C, side, _ = SHAPES[from_kind]
        if likelihood == "logistic" and from_kind != "colour":
            raise ValueError(f"likelihood='logistic' is the colour images' discretised logistic mixture; dataset "
                             f"{dataset!r} is binary: use likelihood='bernoulli' or 'pixelcnn'")
        if side % int(downsample):
            raise ValueError(f"downsample {downsample} does not divide the image size {side}")
        side //= int(downsample)
        if from_kind == "colour" and int(downsample) != 1:
            raise ValueError("colour images are not downsampled here (downsample=1)")
        if side % (1 << int(scales)):
            raise ValueError(f"image size {side}×{side} is not divisible by 2**scales = {1 << int(scales)} "
                             f"(scales={scales}): choose fewer scales or another downsample")
        if likelihood == "pixelcnn" and side % 4:
            raise ValueError(f"the PixelCNN++ decoder needs an image size divisible by 4, got {side}×{side}")
        self.kind = from_kind
        self.dataset, self.downsample = str(dataset), int(downsample)
        self.scales, self.width, self.blocks = int(scales), int(width), int(blocks)
        self.local_groups, self.local_channels, self.local = int(local_groups), int(local_channels), local
        self.local_beta, self.local_integration = float(local_beta), local_integration
        self.likelihood, self.n_mix = likelihood, int(n_mix)
        self.pixelcnn_resnets, self.pixelcnn_filters = int(pixelcnn_resnets), int(pixelcnn_filters)
        self.image = (C, side, side)
        self.r = side >> self.scales
        self.local_shape = (self.local_groups, self.local_channels, self.r, self.r)
        self.local_bits = self.local_groups * self.local_channels * self.r * self.r
        if local_integration == "exact":
            if self.local_groups and local != "bernoulli":
                raise ValueError("local_integration='exact' sums out Bernoulli local latents; local='normal' cannot "
                                 "be summed out")
            if self.local_bits > MAX_EXACT_LOCAL_BITS:
                raise ValueError(f"local_integration='exact' sums out at most {MAX_EXACT_LOCAL_BITS} local bits; this "
                                 f"configuration has {self.local_bits} ({self.local_groups} groups × "
                                 f"{self.local_channels} × {self.r}×{self.r})")
        self.obs_shape = (C * side * side,)
        bias = None
        if from_kind == "binary":
            if train_mean is None:  # data → models: the harness passes it (estibench.harness.build_model)
                raise ValueError(f"{type(self).__name__} needs train_mean, the training statistics of {dataset!r}: "
                                 "build it with estibench.harness.build_model or pass train_mean")
            self.register_buffer("train_mean", torch.as_tensor(train_mean, dtype=torch.float32).reshape(side * side))
            bias = torch.logit(self.train_mean.clamp(0.001, 0.999))
        image, sizes = self.image, tuple(int(s) for s in global_sizes)

        def factory():
            return ConvNet(image, likelihood, self.width, self.scales, self.blocks, sizes, global_normal,
                           hierarchical, self.local_groups, self.local_channels, local, self.n_mix,
                           self.pixelcnn_resnets, self.pixelcnn_filters, bias)

        self.net = StackedModule(factory, seeds)
        self.smoothing = OverlapExp()

    # -- parameter groups ------------------------------------------------------------------------------
    GUIDE_PREFIXES = ("encoder__", "global_q__", "local_post__")

    def _net_parameters(self, guide: bool) -> List[nn.Parameter]:
        ids = {id(p) for n, p in self.net.params.items() if n.startswith(self.GUIDE_PREFIXES) == guide}
        return [p for p in self.parameters() if id(p) in ids]

    # -- images -----------------------------------------------------------------------------------------
    def images(self, x: torch.Tensor) -> torch.Tensor:
        """Flattened observations ``[..., C·H·W]`` → the networks' input ``[..., C, H, W]`` in [−1, 1]."""
        img = x.reshape(*x.shape[:-1], *self.image)
        if self.kind == "colour":
            return to_unit(img, self.dtype)
        return 2 * img - 1

    def encoder_input(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "colour":
            return self.images(x)
        return (x - self.train_mean).reshape(*x.shape[:-1], *self.image)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The encoder's coarsest feature map, ``[*P, R, B, width, r, r]`` for x ``[*P, R, B, obs]`` (computed once
        along the particle dimensions P over which x is only expanded, as the estimators expand it, or of size 1).

        One training step asks for the features of the same batch several times (the guide's groups, then the
        local posteriors); they are computed once and kept (:meth:`_cached_features`) while the batch, the networks'
        parameters and buffers and the grad mode are unchanged, and dropped when the backward pass reaches them."""
        lead = tuple(x.shape[:-1])
        p = len(lead) - 2
        shared = [i for i in range(p) if x.stride(i) == 0 or x.shape[i] == 1]
        base = x[tuple(0 if i in shared else slice(None) for i in range(len(lead)))]
        f = self._cached_features(base)
        for i in shared:
            f = f.unsqueeze(i)
        return f.expand(*lead, *f.shape[len(lead):])

    def _cached_features(self, base: torch.Tensor) -> torch.Tensor:
        """The features of ``base`` ``[*P', R, B, obs]``, from the cache when its key matches: the root tensor of
        ``base`` (held by a weak reference, so a freed batch at a reused address cannot match), its version counter
        (an in-place change of the batch misses), the view's geometry, every network parameter's and buffer's
        identity, version counter and storage (an optimiser step misses) and the grad mode."""
        root = base if base._base is None else base._base
        key = (root._version, base.data_ptr(), tuple(base.shape), base.stride(), base.dtype, base.device,
               torch.is_grad_enabled(), torch.is_inference_mode_enabled(),
               tuple((id(t), t._version, t.data_ptr()) for t in self.net.parameters()),
               tuple((id(t), t._version, t.data_ptr()) for t in self.net.buffers()))
        hit = self.__dict__.get("_features_cache") if self.features_cache else None
        if hit is not None and hit[0] == key and hit[1]() is root:
            return hit[2]
        flat, blead = _lead_to_rn(base, self.replicates, 1)
        f = _rn_to_lead(self.net(self.encoder_input(flat), "features"), blead)
        self.__dict__["_features_cache"] = (key, weakref.ref(root), f)
        if f.requires_grad:
            owner = weakref.ref(self)

            def drop(grad, owner=owner, f_id=id(f)):
                model = owner()
                if model is not None:
                    cached = model.__dict__.get("_features_cache")
                    if cached is not None and id(cached[2]) == f_id:
                        del model.__dict__["_features_cache"]
                return grad
            f.register_hook(drop)
        return f

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_features_cache", None)  # a cache, not state: never copied nor pickled
        return state

    # -- the local latents -------------------------------------------------------------------------------
    def _noise(self, n: int, like: torch.Tensor) -> torch.Tensor:
        shape = (self.replicates, n, *self.local_shape)
        if self.local == "normal":
            return torch.randn(shape, dtype=like.dtype, device=like.device)
        return torch.rand(shape, dtype=like.dtype, device=like.device)

    def _local_step(self, j, p, q, noise, relaxed):
        """One local group: (sample for the decoder, log p(h_j | ·) − log q(h_j | ·)) per item."""
        if self.local == "normal":
            pm, ps = p.chunk(2, 2)
            qm, qs = q.chunk(2, 2)
            ps, qs = ps.clamp(min=LOG_SCALE_MIN), qs.clamp(min=LOG_SCALE_MIN)
            h = qm + qs.exp() * noise
            ratio = (Normal(pm, ps.exp(), validate_args=False).log_prob(h)
                     - Normal(qm, qs.exp(), validate_args=False).log_prob(h)).flatten(2).sum(-1)
            return h, ratio
        if relaxed:
            h = self.smoothing.sample(q, noise, self.local_beta)
            lp = self.smoothing.log_q_zeta(p, h, self.local_beta) - self.smoothing.log_q_zeta(q, h, self.local_beta)
            return h, lp.flatten(2).sum(-1)
        h = (noise > torch.sigmoid(-q)).to(q.dtype)
        return h, (bernoulli_log_mass(p.flatten(2), h.flatten(2)) - bernoulli_log_mass(q.flatten(2), h.flatten(2)))

    def _decode(self, x: torch.Tensor, zeta: torch.Tensor, relaxed: bool) -> torch.Tensor:
        """log p(x | ζ) integrated over the local latents as ``local_integration`` says, ``[*P, R, B]``.  Without
        gradients (evaluation) the P·B items go through the decoder :data:`EVAL_CHUNK` at a time, so a 4,000-particle
        evaluation with a PixelCNN++ decoder stays within memory; the local noise is drawn for all of them first, so
        the draws do not depend on the chunking."""
        R = self.replicates
        zf, lead = _lead_to_rn(zeta, R, 1)
        N = zf.shape[1]
        xe = x.expand(*lead, x.shape[-1])
        ximg = _lead_to_rn(self.images(xe), R, 3)[0]
        f = noise = None
        if self.local_groups and self.local_integration == "sample":
            feats = self.features(x)  # expanded over particles below
            f = _lead_to_rn(feats.expand(*lead, *feats.shape[-3:]), R, 3)[0]
            noise = self._noise(N, zf)
        step = N if torch.is_grad_enabled() else EVAL_CHUNK
        pieces = [self._decode_flat(ximg[:, i:i + step], zf[:, i:i + step], None if f is None else f[:, i:i + step],
                                    None if noise is None else noise[:, i:i + step], relaxed)
                  for i in range(0, N, step)]
        return _rn_to_lead(pieces[0] if len(pieces) == 1 else torch.cat(pieces, 1), lead)

    def _decode_flat(self, ximg, zf, f, noise, relaxed: bool) -> torch.Tensor:
        """:meth:`_decode` on items flattened to ``[R, n, ...]``, ``[R, n]``."""
        d = self.net(zf, "top")
        if self.local_groups == 0:
            return self.net(ximg, "log_px", self.net(d, "out"))
        if self.local_integration == "exact":
            return self._decode_exact(ximg, d)
        total = torch.zeros(zf.shape[:2], dtype=zf.dtype, device=zf.device)
        for j in range(self.local_groups):
            p, q = self.net(d, "local_prior", j), self.net(d, "local_post", j, f)
            h, ratio = self._local_step(j, p, q, noise[:, :, j], relaxed)
            total = total + ratio
            d = self.net(d, "advance", j, h)
        return total + self.net(ximg, "log_px", self.net(d, "out"))

    def _decode_exact(self, ximg: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """logsumexp over every local state of log p(h | ζ) + log p(x | ζ, h), ``[R, N]``."""
        S = 2 ** self.local_bits
        states = torch.tensor(list(itertools.product((0.0, 1.0), repeat=self.local_bits)), dtype=d.dtype,
                              device=d.device).reshape(S, *self.local_shape)
        R, N = d.shape[:2]
        ds = d.unsqueeze(1).expand(R, S, *d.shape[1:]).reshape(R, S * N, *d.shape[2:])
        hs = states.unsqueeze(1).expand(S, N, *self.local_shape).reshape(1, S * N, *self.local_shape)
        hs = hs.expand(R, *hs.shape[1:])
        xs = ximg.unsqueeze(1).expand(R, S, *ximg.shape[1:]).reshape(R, S * N, *ximg.shape[2:])
        log_p = torch.zeros(R, S * N, dtype=d.dtype, device=d.device)
        for j in range(self.local_groups):
            p = self.net(ds, "local_prior", j)
            h = hs[:, :, j]
            log_p = log_p + bernoulli_log_mass(p.flatten(2), h.flatten(2))
            ds = self.net(ds, "advance", j, h)
        log_p = log_p + self.net(xs, "log_px", self.net(ds, "out"))
        return torch.logsumexp(log_p.reshape(R, S, N), 1)

    @torch.no_grad()
    def generate(self, zeta: torch.Tensor) -> torch.Tensor:
        """Images decoded from global latents ``[R, n, D]`` with local latents from their prior: the likelihood's
        mean (factorial Bernoulli: the pixel probabilities; logistic mixture: one draw) or, for PixelCNN++, one
        autoregressive draw; ``[R, n, C·H·W]`` in [0, 1]."""
        R, n = zeta.shape[:2]
        d = self.net(zeta, "top")
        if self.local_groups:
            noise = self._noise(n, zeta)
            for j in range(self.local_groups):
                p = self.net(d, "local_prior", j)
                if self.local == "normal":
                    pm, ps = p.chunk(2, 2)
                    h = pm + ps.clamp(min=LOG_SCALE_MIN).exp() * noise[:, :, j]
                else:
                    h = (noise[:, :, j] > torch.sigmoid(-p)).to(p.dtype)
                d = self.net(d, "advance", j, h)
        out = self.net(d, "out")
        C, H, W = self.image
        if self.likelihood == "pixelcnn":
            x = torch.zeros(R, n, C, H, W, dtype=zeta.dtype, device=zeta.device)
            for i in range(H):
                for k in range(W):
                    params = self.net(x, "pixel_params", out)[..., i:i + 1, k:k + 1]
                    if C == 1:
                        logit = params + self.net.params["pixel_bias"].reshape(R, 1, 1, H, W)[..., i:i + 1, k:k + 1]
                        x[..., i:i + 1, k:k + 1] = 2 * torch.bernoulli(torch.sigmoid(logit)) - 1
                    else:
                        x[..., i, k] = dlm_sample(params, self.n_mix, C)[..., 0, 0]
            return ((x + 1) / 2).flatten(-3)
        if C == 1:
            return torch.sigmoid(out + self.net.params["pixel_bias"].reshape(R, 1, 1, H, W)).flatten(-3)
        return ((dlm_sample(out, self.n_mix, C) + 1) / 2).flatten(-3)

    @torch.no_grad()
    def sample_observations(self, z: torch.Tensor) -> torch.Tensor:
        """x ~ p(x | z) for prior samples ``z [n, R, D]``, ``[R, n, obs]`` (binary: Bernoulli draws of the decoded
        probabilities; colour: 8-bit values).  A replicate whose decoder returns NaN (a diverged one) gets
        p = ½ there, so it cannot stop the other replicates' draws."""
        img = self.generate(z.transpose(0, 1).to(self.dtype))
        if self.kind == "colour":
            return torch.round(img.nan_to_num(0.5) * 255)
        return img if self.likelihood == "pixelcnn" else torch.bernoulli(img.nan_to_num(0.5).clamp(0, 1))

    def prior_image_means(self, z: torch.Tensor) -> torch.Tensor:
        """Decoded images of global latents ``[R, n, D]`` in [0, 1] (the report's prior-sample grid)."""
        return self.generate(z)


class _NotEnumerable(BernoulliLatent):
    """Global bits whose joint with x is a one-sample estimate (local latents sampled): not enumerated for exact
    results, however few they are."""

    @property
    def enumerable(self) -> bool:
        return False


class ConvVAE(_ConvFamily, RBMVAE):
    latent_kind = "bernoulli"
    provides = (UNNORMALISED_PRIOR, RELAXED_BOLTZMANN, MULTILINEAR_ENERGY)  # + TRAINING_MEAN on binary data
    default_dataset = "mnist5k-bern0"
    data_statistics = ("train_mean",)
    data_kinds = ("binary", "colour")
    measurement_caches = ("log_z",)
    revisions = (_FEATURES_ONCE,)

    def __init__(self, seeds: Sequence[int] = (0,), dataset: str = "mnist5k-bern0", prior: str = "rbm",
                 latent_bits: int = 16, groups: int = 2, local: str = "normal", local_groups: int = 2,
                 local_channels: int = 4, local_beta: float = 10.0, local_integration: str = "sample",
                 likelihood: str = "bernoulli", downsample: int = 2, scales: int = 1, width: int = 16,
                 blocks: int = 1, n_mix: int = 10, pixelcnn_resnets: int = 1, pixelcnn_filters: int = 16,
                 chains: int = 100, gibbs_sweeps: int = 1, ais_chains: int = 100, ais_steps: int = 100,
                 log_z: str = "auto", train_mean: Optional[torch.Tensor] = None):
        LatentVariableModel.__init__(self, seeds)
        if prior not in PRIORS:
            raise ValueError(f"prior must be one of {', '.join(PRIORS)} (the normal prior is conv_vae_normal), "
                             f"got {prior!r}")
        if int(groups) not in (1, 2):
            raise ValueError(f"groups must be 1 (factorial guide) or 2 (hierarchical guide), got {groups}")
        if isinstance(latent_bits, bool) or int(latent_bits) != latent_bits or latent_bits < 2:
            raise ValueError(f"latent_bits must be an integer ≥ 2, got {latent_bits!r}")
        for name, value in (("chains", chains), ("gibbs_sweeps", gibbs_sweeps), ("ais_chains", ais_chains),
                            ("ais_steps", ais_steps)):
            if int(value) < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")
        if log_z not in LOG_Z_MODES:
            raise ValueError(f"log_z must be one of {', '.join(LOG_Z_MODES)}, got {log_z!r}")
        self.prior, self.groups, self.latent_bits = prior, int(groups), int(latent_bits)
        n1 = self.latent_bits // 2
        self.split_sizes = (n1, self.latent_bits - n1)
        self.hierarchical_guide = self.groups == 2
        self._setup(self.seeds, dataset, downsample, scales, width, blocks, self.split_sizes, False,
                    self.hierarchical_guide, local_groups, local_channels, local, local_beta, local_integration,
                    likelihood, n_mix, pixelcnn_resnets, pixelcnn_filters, train_mean)
        exact = self.local_groups == 0 or self.local_integration == "exact"
        self.latent = BernoulliLatent(self.latent_bits) if exact else _NotEnumerable(self.latent_bits)
        self.provides = ((UNNORMALISED_PRIOR, RELAXED_BOLTZMANN, MULTILINEAR_ENERGY)
                         + ((TRAINING_MEAN,) if self.kind == "binary" else ()))
        self.rbm_hidden = 0
        self.gibbs_sweeps, self.ais_chains, self.ais_steps = int(gibbs_sweeps), int(ais_chains), int(ais_steps)
        self.rbm = RBM(self.seeds, *self.split_sizes)
        if prior == "bernoulli":  # the factorial prior: the RBM without its coupling (W = 0, its gradient zeroed)
            with torch.no_grad():
                self.rbm.W.zero_()
            self.rbm.W.register_hook(torch.zeros_like)
        self.log_z_mode = log_z
        if log_z == "exact" and not self.enumerable_prior():
            raise ValueError(f"log_z='exact' needs an RBM whose smaller side has at most {EXACT_LOG_Z_BITS} bits to "
                             f"enumerate; this one is {self.rbm.n_visible} + {self.rbm.n_hidden}: use log_z='auto'")
        self.chains = PersistentChains(self.rbm, chains=chains, seed=self.seeds[0])
        self.register_buffer("log_z", self.rbm.log_base_partition(torch.zeros(1)).detach().float())

    statistics_query = classmethod(image_statistics_query)

    def enumerable_prior(self) -> bool:
        return self.prior == "bernoulli" or super().enumerable_prior()

    def log_partition(self) -> torch.Tensor:
        if self.prior == "bernoulli":  # W ≡ 0: log Z = Σ softplus(a) + Σ softplus(b), exact for any size
            return F.softplus(self.rbm.a).sum(-1) + F.softplus(self.rbm.b).sum(-1)
        return super().log_partition()

    def generative_parameters(self) -> List[nn.Parameter]:
        ids = {id(p) for p in [*self.rbm.parameters(), *self._net_parameters(guide=False)]}
        return [p for p in self.parameters() if id(p) in ids]  # in parameters() order (the model contract)

    def guide_parameters(self) -> List[nn.Parameter]:
        return self._net_parameters(guide=True)

    def encoder_logits(self, group: int, x: torch.Tensor, z1: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Logits of q(z₁ | x) (group 0) or q(z₂ | x, ζ₁) (group 1, ζ₁ ``[*P, R, B, n₁]``)."""
        R = self.replicates
        feats = self.features(x)
        if group == 0:
            ff, flead = _lead_to_rn(feats, R, 3)
            return _rn_to_lead(self.net(ff, "global", 0), flead)
        zf, lead = _lead_to_rn(z1, R, 1)
        f = _lead_to_rn(feats.expand(*lead, *feats.shape[-3:]), R, 3)[0]
        return _rn_to_lead(self.net(f, "global", 1, zf), lead)

    def log_likelihood(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | ζ) at relaxed (or binary) global latents, the local ones integrated as ``local_integration``
        says (sampled: relaxed, one-sample importance estimate; exact: summed), ``[*P, R, B]``."""
        return self._decode(x, z, relaxed=True)

    def log_likelihood_discrete(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z) at binary global latents, local Bernoulli latents binary (sampled or summed)."""
        return self._decode(x, z, relaxed=False)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p*(z) + log p(x | z) (without −log Z; the local part as :meth:`log_likelihood_discrete`)."""
        return self.log_likelihood_discrete(x, z) + self.log_prior_unnormalised(z)

    @torch.no_grad()
    def sample_prior(self, n: int) -> torch.Tensor:
        """``n`` draws of the global prior, ``[R, n, D]``: exact when the RBM is enumerable, else fresh Gibbs chains run
        25 × ``gibbs_sweeps`` sweeps (as ``rbm_vae``'s ``sample``)."""
        if self.exact_prior():
            v, h = self.rbm.sample_exact(n)
        else:
            v, h = self.rbm.gibbs(self.rbm.random_visible(n), 25 * self.gibbs_sweeps)
        return self.latents_of(v, h).transpose(0, 1)

    @torch.no_grad()
    def sample(self, n: int):
        z = self.sample_prior(n)
        return z, self.sample_observations(z.transpose(0, 1))

    def decoder_logits(self, z):  # the MLP decoder of rbm_vae has no counterpart here
        raise TypeError("conv_vae has no decoder logits of z alone; use prior_image_means or log_likelihood")


class ConvVAENormal(_ConvFamily, LatentVariableModel):
    """DVAE++ Table 3's "Normal / Normal" row and PixelVAE++'s Gaussian prior: the same networks with global
    z ∈ ℝ^D, p(z) = N(0, I) and q(z | x) a diagonal Gaussian (the first fully connected layer gives its mean and log
    standard deviation), and normal local latents, all reparameterised (``vae``, ``iwae``)."""

    latent_kind = "normal"
    provides = (REPARAMETERISED,)
    default_dataset = "mnist5k-bern0"
    data_statistics = ("train_mean",)
    data_kinds = ("binary", "colour")
    revisions = (_FEATURES_ONCE,)

    def __init__(self, seeds: Sequence[int] = (0,), dataset: str = "mnist5k-bern0", latent_dim: int = 16,
                 local_groups: int = 2, local_channels: int = 4, likelihood: str = "bernoulli", downsample: int = 2,
                 scales: int = 1, width: int = 16, blocks: int = 1, n_mix: int = 10, pixelcnn_resnets: int = 1,
                 pixelcnn_filters: int = 16, train_mean: Optional[torch.Tensor] = None):
        super().__init__(seeds)
        if isinstance(latent_dim, bool) or int(latent_dim) != latent_dim or latent_dim < 1:
            raise ValueError(f"latent_dim must be a positive integer, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)
        self._setup(self.seeds, dataset, downsample, scales, width, blocks, (self.latent_dim,), True, False,
                    local_groups, local_channels, "normal", 10.0, "sample", likelihood, n_mix,
                    pixelcnn_resnets, pixelcnn_filters, train_mean)
        self.latent = NormalLatent(self.latent_dim)
        self.provides = (REPARAMETERISED,) + ((TRAINING_MEAN,) if self.kind == "binary" else ())

    statistics_query = classmethod(image_statistics_query)

    def generative_parameters(self) -> List[nn.Parameter]:
        return self._net_parameters(guide=False)

    def guide_parameters(self) -> List[nn.Parameter]:
        return self._net_parameters(guide=True)

    def guide(self, x: torch.Tensor) -> Independent:
        ff, lead = _lead_to_rn(self.features(x), self.replicates, 3)
        loc, log_scale = _rn_to_lead(self.net(ff, "global", 0), lead).chunk(2, dim=-1)
        return Independent(Normal(loc, log_scale.clamp(min=LOG_SCALE_MIN).exp(), validate_args=False), 1)

    def guide_rsample(self, x: torch.Tensor, num_particles: int):
        q = self.guide(x)
        z = q.rsample((int(num_particles),))
        return z, q.log_prob(z)

    def log_joint(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        prior = Normal(torch.zeros((), dtype=z.dtype, device=z.device), 1.0).log_prob(z).sum(-1)
        return prior + self._decode(x, z, relaxed=True)

    @torch.no_grad()
    def sample_prior(self, n: int) -> torch.Tensor:
        """``n`` draws of N(0, I), ``[R, n, D]``."""
        return torch.randn(self.replicates, int(n), self.latent_dim, dtype=self.dtype, device=self.device)

    @torch.no_grad()
    def sample(self, n: int):
        z = self.sample_prior(n)
        return z, self.sample_observations(z.transpose(0, 1))
