"""Convolutional building blocks for DVAE++'s convolutional model (Vahdat, Macready, Bian, Khoshaman & Andriyash,
ICML 2018, "DVAE++: Discrete Variational Autoencoders with Overlapping Transformations", §6.2 and §7.3).

What the paper says (§6.2, "Neural Network Architecture"): the networks use residual connections (He et al. 2016)
with squeeze-and-excitation (SE) blocks (Hu et al. 2017/2018); "a SE-ResNet block" is the residual block; the encoder
is "a series of downsampling residual blocks" that "extracts convolutional feature maps at different scales"
(the top scale feeds fully-connected nets for the global q(z_i|x, ζ_<i), an intermediate scale feeds residual nets
for the local q(h_j|…)); the decoder upsamples the global latents to the intermediate scale, runs residual nets for
p(h_j|ζ, h_<j) "at the same scale", then "progressively scales … up to the data space" with upsampling residual
networks.  §7.3: 16 local groups × 32 variables per spatial position; 16 (binary data) or 128 (CIFAR-10) RBM
units.  The full architecture is in the paper's Appendix G, which is **not** in our copy: every layer-level detail
below (kernel sizes, channel counts, order of operations, normalisation, resampling layers) is ours.

Sources of the pieces:

* :class:`SqueezeExcite` — Hu, Shen & Sun, "Squeeze-and-Excitation Networks" (CVPR 2018), §3: squeeze
  ``s_c = mean_{i,j} u_c(i, j)`` (Eq. 2), excitation ``e = σ(W₂ δ(W₁ s))`` with ``W₁ ∈ R^{C/r × C}``, ``δ = ReLU``
  (Eq. 3), scaling ``x̃_c = e_c · u_c`` (Eq. 4).  Reduction ratio ``r = 16`` is their default (§6.1); the hidden
  width is ``max(1, C // r)`` (the floor and the minimum of 1 are ours).  Both FC layers have biases, as in their
  released models.  PyTorch default initialisation.  Caveat: at initialisation the pooled input ``s`` of an SE unit
  on a residual branch is nearly the same for every item (dominated by the conv bias and the mean of the ReLU
  output), so each bottleneck ReLU tends to be on for all items or off for all; when all ``C // r`` of them are off
  the gates are the constant ``σ(b₂)`` and ``fc1``/``fc2.weight`` get zero gradient until ``s`` moves (seen in
  2–3 of 12 seeds with ``C // r = 2``; rarer for wider bottlenecks).
* :class:`SEResidualBlock` — residual learning ``y = x + F(x)`` (He, Zhang, Ren & Sun, CVPR 2016, Eq. 1) with the
  SE unit on the residual branch before the addition (Hu et al. §4, Fig. 3, "SE-ResNet module").  Ours: the branch
  is ``conv3×3 → [norm] → act → conv3×3 → [norm] → SE`` and nothing follows the addition (a pure identity skip as
  argued in He et al., ECCV 2016, "Identity Mappings in Deep Residual Networks"), so zeroing the last convolution
  makes the block the identity.
* :class:`DownStack` / :class:`UpStack` — ours: 3×3 stem convolution; between scales a stride-2 4×4 convolution
  (down) or a stride-2 4×4 transposed convolution (up), both padding 1 so every size halves/doubles exactly;
  ``blocks_per_scale`` SE-residual blocks at every scale 1/2, 1/4, …, 1/2**scales.  ``DownStack`` returns the
  feature map after each scale's blocks (index ``i`` ↔ scale ``1/2**(i+1)``); ``UpStack`` takes the coarsest map and
  returns the output at full resolution plus its own feature maps, indexed the same way.  Its ``cond`` hook merges
  a tensor (e.g. latent samples ``h`` at that scale) into the features before that scale's blocks, as
  ``x + Conv1×1(cond)``: this is concatenation followed by a 1×1 convolution whose ``x`` part is the identity.

Normalisation (our choice): **none** by default.  Batch normalisation couples the items of a batch: in this
benchmark the batch holds the K importance samples of a data point and the project's replicate dimension R, so
BN would make the K log-weights (and the per-sample gradients whose variance the benchmark measures) depend on each
other and on the batch composition, and would give train/eval-mode differences in the 4,000-sample evaluation
(§7.3).  ``norm="batch"`` is available for comparison.  Activation: ``"relu"`` by default (He et al.); ``"elu"`` and
``"silu"`` selectable.  Initialisation: PyTorch defaults (seed with ``torch.manual_seed``).

Shapes: plain ``nn.Module``\\ s for one replicate.  Inputs are ``[..., C, H, W]`` with at least one leading
dimension; leading dimensions such as the project's ``[R, B]`` (or ``[R, K, B]``) are flattened into the batch and
share the parameters, and restored on the outputs.

Sizing without a GPU: :func:`param_count` sums ``numel`` over parameters; :func:`activation_estimate` runs the
module once on the ``meta`` device at the real input shape (no memory, no arithmetic) with forward hooks on every
sub-module and sums the elements of every distinct tensor the sub-modules return (inputs excluded).  That counts
each layer's output once; it is a proxy for what autograd keeps for the backward pass (which saves inputs of
convolutions, activations and the SE products: same order of magnitude, not byte-exact); functional
intermediates inside a ``forward`` that no sub-module returns (the SE pooled vector ``s``) are not counted, while
the residual sum is, as the block's output.

Sizes of a configuration we guess for the paper (Appendix G missing; 2 scales, 28→14→7 and 32→16→8; one width
for all scales, 64 on 28×28×1 binary data and 128 on CIFAR-10; r = 16; UpStack cond of 32 channels — one local
group's 32 variables per position, §7.3 — at the coarsest scale): DownStack 280,712 / UpStack 282,761 parameters
with 1 block per scale, 429,584 / 431,633 with 2 (28×28×1, width 64); 1,122,832 / 1,126,931 and 1,717,536 /
1,721,635 (32×32×3, width 128).  Trunks only: the 16 local-group networks, the global FC networks and the
per-scale output networks of §6.2 are not here.
"""
from __future__ import annotations

import copy
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "elu": nn.ELU, "silu": nn.SiLU}
NORMS = ("none", "batch")

Cond = Union[None, Sequence[Optional[torch.Tensor]], Callable[[int, torch.Tensor], Optional[torch.Tensor]]]


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer ≥ 1, got {value!r}")
    return value


def _channel_list(channels, scales: int) -> List[int]:
    if isinstance(channels, int) and not isinstance(channels, bool):
        channels = [channels] * scales
    channels = list(channels)
    if len(channels) != scales:
        raise ValueError(f"channels must be one int or {scales} ints (one per scale), got {len(channels)}")
    if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in channels):
        raise ValueError(f"channels must be integers ≥ 1, got {channels!r}")
    return channels


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose from {sorted(choices)}")


def _flatten(x: torch.Tensor, channels: int, who: str) -> Tuple[torch.Tensor, Tuple[int, ...]]:
    """``[..., C, H, W]`` → ``[N, C, H, W]`` and the leading shape; refuses a wrong rank or channel count."""
    if not isinstance(x, torch.Tensor) or x.dim() < 4:
        raise ValueError(f"{who} expects [..., {channels}, H, W] with a batch dimension, got shape "
                         f"{tuple(getattr(x, 'shape', ()))}")
    if x.shape[-3] != channels:
        raise ValueError(f"{who} expects {channels} input channels, got {x.shape[-3]}")
    lead = tuple(x.shape[:-3])
    return x.reshape(-1, *x.shape[-3:]), lead


def _check_size(h: int, w: int, scales: int, who: str) -> None:
    f = 2 ** scales
    if h % f or w % f:
        raise ValueError(f"{who}: image size {h}×{w} is not divisible by 2**scales = {f}")


class SqueezeExcite(nn.Module):
    """SE unit (Hu et al. 2018, §3, Eqs. 2–4): ``x · σ(W₂ ReLU(W₁ mean_hw(x) + b₁) + b₂)`` per channel."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.channels = _positive_int("channels", channels)
        _positive_int("reduction", reduction)
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """The per-channel scales ``e ∈ (0, 1)^C``, shape ``[N, C]`` for ``x`` of shape ``[N, C, H, W]``."""
        s = x.mean(dim=(-2, -1))                      # squeeze, Eq. 2
        return torch.sigmoid(self.fc2(F.relu(self.fc1(s))))  # excitation, Eq. 3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat, lead = _flatten(x, self.channels, "SqueezeExcite")
        out = flat * self.gates(flat)[:, :, None, None]  # scale, Eq. 4
        return out.reshape(*lead, *out.shape[1:])


class SEResidualBlock(nn.Module):
    """``y = x + SE(conv(act(norm(conv(x)))))`` (norm after each conv when ``norm="batch"``); shape-preserving."""

    def __init__(self, channels: int, reduction: int = 16, activation: str = "relu", norm: str = "none",
                 kernel_size: int = 3):
        super().__init__()
        self.channels = _positive_int("channels", channels)
        _check_choice("activation", activation, ACTIVATIONS)
        _check_choice("norm", norm, NORMS)
        if _positive_int("kernel_size", kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be odd (same-size padding), got {kernel_size}")
        pad = kernel_size // 2
        use_bn = norm == "batch"
        layers: List[nn.Module] = [nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=not use_bn)]
        if use_bn:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(ACTIVATIONS[activation]())
        self._last = len(layers)  # an index, not a second registration (an alias breaks functional_call's restore)
        layers.append(nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=not use_bn))
        if use_bn:
            layers.append(nn.BatchNorm2d(channels))
        layers.append(SqueezeExcite(channels, reduction))
        self.branch = nn.Sequential(*layers)

    @property
    def last_conv(self) -> nn.Conv2d:
        """The branch's last convolution (zero it and the block is the identity)."""
        return self.branch[self._last]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat, lead = _flatten(x, self.channels, "SEResidualBlock")
        out = flat + self.branch(flat)
        return out.reshape(*lead, *out.shape[1:])


def _blocks(c: int, n: int, **kw) -> nn.Sequential:
    return nn.Sequential(*(SEResidualBlock(c, **kw) for _ in range(n)))


class DownStack(nn.Module):
    """Encoder trunk: ``[..., in_channels, H, W]`` → ``[f_1, …, f_S]``, ``f_i`` of shape
    ``[..., channels[i-1], H/2**i, W/2**i]`` (stem conv3×3; per scale a stride-2 conv4×4 then the blocks)."""

    def __init__(self, in_channels: int, channels: Union[int, Sequence[int]], scales: int, blocks_per_scale: int = 1,
                 reduction: int = 16, activation: str = "relu", norm: str = "none"):
        super().__init__()
        self.in_channels = _positive_int("in_channels", in_channels)
        self.scales = _positive_int("scales", scales)
        self.channels = _channel_list(channels, scales)
        _positive_int("blocks_per_scale", blocks_per_scale)
        kw = dict(reduction=reduction, activation=activation, norm=norm)
        c = self.channels
        self.stem = nn.Conv2d(in_channels, c[0], 3, padding=1)
        self.down = nn.ModuleList(nn.Conv2d(c[max(i - 1, 0)], c[i], 4, stride=2, padding=1) for i in range(scales))
        self.blocks = nn.ModuleList(_blocks(c[i], blocks_per_scale, **kw) for i in range(scales))

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        flat, lead = _flatten(x, self.in_channels, "DownStack")
        _check_size(flat.shape[-2], flat.shape[-1], self.scales, "DownStack")
        h = self.stem(flat)
        feats = []
        for down, blocks in zip(self.down, self.blocks):
            h = blocks(down(h))
            feats.append(h.reshape(*lead, *h.shape[1:]))
        return feats


class UpStack(nn.Module):
    """Decoder trunk: the coarsest map ``[..., channels[-1], H/2**S, W/2**S]`` → ``(out, feats)`` with ``out`` of shape
    ``[..., out_channels, H, W]`` and ``feats[i]`` of shape ``[..., channels[i], H/2**(i+1), W/2**(i+1)]``.

    Per scale, coarsest first: merge ``cond`` (``x + Conv1×1(c)``), the blocks, then a stride-2 transposed conv4×4 up
    (to ``channels[i-1]``, or ``channels[0]`` into full resolution); a final conv3×3 gives ``out_channels``.

    ``cond`` is ``None``, a list of ``S`` tensors or ``None``\\ s (``cond[i]`` of shape
    ``[..., cond_channels[i], H/2**(i+1), W/2**(i+1)]``), or a callable ``cond(i, x) -> tensor or None`` called with
    the (flattened, ``[N, C, h, w]``) features at scale ``i`` before the merge — the hook for sampling a latent group
    from the decoder's own features and feeding the sample back.  ``cond_channels[i] = 0`` means no merge at scale i.
    """

    def __init__(self, channels: Union[int, Sequence[int]], out_channels: int, scales: int,
                 cond_channels: Union[int, Sequence[int]] = 0, blocks_per_scale: int = 1, reduction: int = 16,
                 activation: str = "relu", norm: str = "none"):
        super().__init__()
        self.scales = _positive_int("scales", scales)
        self.channels = _channel_list(channels, scales)
        self.out_channels = _positive_int("out_channels", out_channels)
        if isinstance(cond_channels, int) and not isinstance(cond_channels, bool):
            cond_channels = [cond_channels] * scales
        cond_channels = list(cond_channels)
        if len(cond_channels) != scales or any(not isinstance(k, int) or isinstance(k, bool) or k < 0
                                               for k in cond_channels):
            raise ValueError(f"cond_channels must be one int ≥ 0 or {scales} of them, got {cond_channels!r}")
        self.cond_channels = cond_channels
        _positive_int("blocks_per_scale", blocks_per_scale)
        kw = dict(reduction=reduction, activation=activation, norm=norm)
        c = self.channels
        self.merge = nn.ModuleList(nn.Conv2d(k, c[i], 1) if k else nn.Identity() for i, k in enumerate(cond_channels))
        self.blocks = nn.ModuleList(_blocks(c[i], blocks_per_scale, **kw) for i in range(scales))
        self.up = nn.ModuleList(nn.ConvTranspose2d(c[i], c[max(i - 1, 0)], 4, stride=2, padding=1)
                                for i in range(scales))
        self.head = nn.Conv2d(c[0], out_channels, 3, padding=1)

    def _cond_at(self, cond: Cond, i: int, h: torch.Tensor, lead: Tuple[int, ...]) -> Optional[torch.Tensor]:
        c = cond(i, h) if callable(cond) else (None if cond is None else cond[i])
        k = self.cond_channels[i]
        if c is None:
            if k:
                raise ValueError(f"UpStack: scale {i} has cond_channels={k}; cond[{i}] is missing")
            return None
        if not k:
            raise ValueError(f"UpStack: cond given at scale {i} but cond_channels[{i}] = 0")
        if not callable(cond):
            if tuple(c.shape[:-3]) != lead:
                raise ValueError(f"UpStack: cond[{i}] leading dims {tuple(c.shape[:-3])} differ from x's {lead}")
        c, _ = _flatten(c, k, f"UpStack cond[{i}]")
        if c.shape[0] != h.shape[0] or c.shape[-2:] != h.shape[-2:]:
            raise ValueError(f"UpStack: cond[{i}] is {tuple(c.shape)} (flattened); expected "
                             f"[{h.shape[0]}, {k}, {h.shape[-2]}, {h.shape[-1]}]")
        return c

    def forward(self, x: torch.Tensor, cond: Cond = None) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        h, lead = _flatten(x, self.channels[-1], "UpStack")
        if cond is not None and not callable(cond) and len(cond) != self.scales:
            raise ValueError(f"UpStack: cond must hold {self.scales} entries (one per scale), got {len(cond)}")
        feats: List[Optional[torch.Tensor]] = [None] * self.scales
        for i in reversed(range(self.scales)):
            c = self._cond_at(cond, i, h, lead)
            if c is not None:
                h = h + self.merge[i](c)
            h = self.blocks[i](h)
            feats[i] = h.reshape(*lead, *h.shape[1:])
            h = self.up[i](h)
        out = self.head(h)
        return out.reshape(*lead, *out.shape[1:]), feats  # type: ignore[return-value]


def param_count(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (each shared parameter once)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def _to_meta(obj):
    if isinstance(obj, torch.Tensor):
        return torch.empty(obj.shape, dtype=obj.dtype, device="meta")
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_meta(o) for o in obj)
    return obj


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            yield from _tensors(o)
    elif isinstance(obj, dict):
        for o in obj.values():
            yield from _tensors(o)


def activation_estimate(module: nn.Module, input_shape: Sequence[int], dtype: torch.dtype = torch.float32,
                        **forward_kwargs) -> Dict[str, int]:
    """Elements (and bytes at ``dtype``) of the activations of one forward pass at ``input_shape``.

    Method: a deep copy of ``module`` is moved to the ``meta`` device and run on a meta input of the real shape
    under ``torch.no_grad`` (shapes only: no memory, no arithmetic, any size); forward hooks on every sub-module
    (the module itself included) collect the tensors they return, and each distinct tensor is counted once, a view
    as its base (so a container's output, or a reshaped output, is not counted again on top of its layer's).
    Tensors among ``forward_kwargs`` (e.g. ``cond`` for :class:`UpStack`) are replaced by meta tensors of the same
    shape.  See the module docstring for
    what this does and does not count.  Returns ``{"elements", "bytes", "parameters"}``.
    """
    meta = copy.deepcopy(module).to("meta")
    seen: Dict[int, torch.Tensor] = {}

    def hook(_mod, _inp, out):
        for t in _tensors(out):
            base = t._base if t._base is not None else t  # a view (our reshapes) is its base's memory
            seen.setdefault(id(base), base)  # the dict keeps base alive, so ids stay unique

    handles = [m.register_forward_hook(hook) for m in meta.modules()]
    try:
        with torch.no_grad():
            x = torch.empty(tuple(input_shape), dtype=dtype, device="meta")
            meta(x, **{k: _to_meta(v) for k, v in forward_kwargs.items()})
    finally:
        for h in handles:
            h.remove()
    elements = sum(t.numel() for t in seen.values())
    return {"elements": int(elements), "bytes": int(elements * torch.empty((), dtype=dtype).element_size()),
            "parameters": param_count(module)}
