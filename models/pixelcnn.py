"""PixelCNN++ (Salimans, Karpathy, Chen & Kingma, ICLR 2017, §2.3–2.6) as a conditional decoder for PixelVAE++.

What the paper specifies (and this module implements):

* §2.1–2.2: the output is the discretised logistic mixture of :mod:`models.logistic_mixture` (``P = 10 K`` maps per
  pixel for RGB, ``3 K`` for one channel);
* §2.3: conditioning on whole pixels (the channel dependence is in the likelihood, not the network), so the output
  at pixel ``(i, j)`` depends on all channels of the pixels before it in raster order and on none at or after it;
* §2.4: down-sampling by strided convolutions (×2, twice) instead of dilation, giving three resolutions;
* §2.5: short-cut connections from the up pass (layers 1–3) to the down pass (layers 4–6), the ``u``/``ul`` lists;
* §2.6: dropout on the residual path of each gated block (off by default here);
* the network of §3 / Fig. 2: 6 blocks of ``n`` gated ResNet layers; blocks 1–3 run up (full, ½, ¼ resolution,
  strided conv between them), blocks 4–6 run down (¼, ½, full, transposed conv between them); two streams as in the
  Gated PixelCNN (van den Oord et al. 2016): ``u`` sees the rows above (down-shifted 2×3 convolutions) and ``ul``
  the rows above and the pixels to the left (down-right-shifted 2×2 convolutions), combined so there is no blind
  spot.  Causality comes from padding and shifting, not from masked kernels.

Gated ResNet layer (the authors' design; our own code): ``c1 = conv(concat_elu(x)) [+ nin(concat_elu(a))]``,
``c2 = conv(dropout(concat_elu(c1))) [+ W_h h]``, ``x + c2ᵃ ⊙ σ(c2ᵇ)`` with ``c2 = [c2ᵃ, c2ᵇ]``; ``a`` is the
auxiliary input (the ``u`` stream for ``ul``; the short-cuts in the down pass), ``concat_elu(x) = elu([x, −x])``.

Choices that are ours:

* conditioning: the paper conditions on a class vector ``h`` (``W_h h`` added before the gate); PixelVAE++ conditions
  the decoder on latents, so ``h`` may be a feature map ``[B, cond_channels, H, W]`` (or ``[B, cond_channels]`` /
  ``[B, cond_channels, 1, 1]``, broadcast over space).  Each gated layer adds a 1×1 convolution of ``h`` (no bias)
  before the gate; at ½ and ¼ resolution ``h`` is average-pooled by 2 and 4.  ``h`` is not constrained causally;
* plain PyTorch-initialised convolutions; the authors' code uses weight normalisation with data-dependent init;
* like the authors' code, a constant channel of ones is appended to the input so that the zero padding differs from
  a black image, and the output head is ``nin(elu(ul))``;
* images must be ``H, W`` divisible by 4 (two ×2 down-samplings); 28×28 (MNIST) and 32×32 (CIFAR-10) both are;
* one replicate: this is a plain ``nn.Module`` (leading dimensions of ``x`` such as the project's ``[R, B]`` are
  flattened into the batch and share the parameters).  ``R`` independent parameter copies (as
  :class:`models.nn.StackedMLP` does for MLPs, e.g. via grouped convolutions) are left for later.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .logistic_mixture import dlm_log_prob, dlm_num_params, dlm_sample


def concat_elu(x: torch.Tensor) -> torch.Tensor:
    return F.elu(torch.cat([x, -x], dim=1))


def down_shift(x: torch.Tensor) -> torch.Tensor:
    """Move the map one row down (zeros in row 0)."""
    return F.pad(x[:, :, :-1, :], (0, 0, 1, 0))


def right_shift(x: torch.Tensor) -> torch.Tensor:
    """Move the map one column right (zeros in column 0)."""
    return F.pad(x[:, :, :, :-1], (1, 0, 0, 0))


class DownShiftedConv2d(nn.Module):
    """Convolution whose output at row ``i`` sees input rows ``≤ i`` only (padded above, centred across)."""

    def __init__(self, cin: int, cout: int, kernel: Tuple[int, int] = (2, 3), stride: int = 1):
        super().__init__()
        kh, kw = kernel
        self.pad = ((kw - 1) // 2, (kw - 1) // 2, kh - 1, 0)
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class DownRightShiftedConv2d(nn.Module):
    """Convolution whose output at ``(i, j)`` sees inputs at rows ``≤ i`` and columns ``≤ j`` only."""

    def __init__(self, cin: int, cout: int, kernel: Tuple[int, int] = (2, 2), stride: int = 1):
        super().__init__()
        kh, kw = kernel
        self.pad = (kw - 1, 0, kh - 1, 0)
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.pad))


class DownShiftedDeconv2d(nn.Module):
    """×2 transposed convolution (2×3), cropped so output row ``i`` sees input rows ``≤ i / 2``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, (2, 3), stride=2, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.deconv(x)[:, :, :2 * h, 1:2 * w + 1]


class DownRightShiftedDeconv2d(nn.Module):
    """×2 transposed convolution (2×2), cropped so output ``(i, j)`` sees inputs at ``≤ (i / 2, j / 2)``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.deconv = nn.ConvTranspose2d(cin, cout, (2, 2), stride=2, output_padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        return self.deconv(x)[:, :, :2 * h, :2 * w]


class GatedResnet(nn.Module):
    """``x + a ⊙ σ(b)``, ``[a, b] = conv(dropout(concat_elu(conv(concat_elu(x)) + nin(concat_elu(aux))))) + W_h h``."""

    def __init__(self, filters: int, conv, aux_channels: int = 0, cond_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        self.conv1 = conv(2 * filters, filters)
        self.aux = nn.Conv2d(2 * aux_channels, filters, 1) if aux_channels else None
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None
        self.conv2 = conv(2 * filters, 2 * filters)
        self.cond = nn.Conv2d(cond_channels, 2 * filters, 1, bias=False) if cond_channels else None

    def forward(self, x: torch.Tensor, aux: Optional[torch.Tensor] = None,
                h: Optional[torch.Tensor] = None) -> torch.Tensor:
        c1 = self.conv1(concat_elu(x))
        if self.aux is not None:
            c1 = c1 + self.aux(concat_elu(aux))
        c1 = concat_elu(c1)
        if self.dropout is not None:
            c1 = self.dropout(c1)
        c2 = self.conv2(c1)
        if self.cond is not None:
            c2 = c2 + self.cond(h)
        a, b = c2.chunk(2, dim=1)
        return x + a * torch.sigmoid(b)


class PixelCNNpp(nn.Module):
    """PixelCNN++: images ``x [..., C, H, W]`` in ``[−1, 1]`` (optionally with ``h``) → mixture parameters
    ``[..., P, H, W]`` for :func:`models.logistic_mixture.dlm_log_prob` (see the module docstring)."""

    def __init__(self, channels: int = 3, filters: int = 160, n_blocks: int = 5, n_mix: int = 10,
                 cond_channels: int = 0, dropout: float = 0.0):
        super().__init__()
        for name, value, low in (("channels", channels, 1), ("filters", filters, 1), ("n_blocks", n_blocks, 1),
                                 ("n_mix", n_mix, 1), ("cond_channels", cond_channels, 0)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer ≥ {low}, got {value!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout!r}")
        self.channels, self.filters, self.n_blocks, self.n_mix = channels, filters, n_blocks, n_mix
        self.cond_channels = cond_channels
        self.n_params = dlm_num_params(channels, n_mix)
        f, cin = filters, channels + 1

        def u_block(aux):
            return GatedResnet(f, DownShiftedConv2d, aux, cond_channels, dropout)

        def ul_block(aux):
            return GatedResnet(f, DownRightShiftedConv2d, aux, cond_channels, dropout)

        self.u_init = DownShiftedConv2d(cin, f, (2, 3))
        self.ul_init_up = DownShiftedConv2d(cin, f, (1, 3))
        self.ul_init_left = DownRightShiftedConv2d(cin, f, (2, 1))
        # up pass: blocks 1–3 at 1, 1/2, 1/4 resolution
        self.up_u = nn.ModuleList(nn.ModuleList(u_block(0) for _ in range(n_blocks)) for _ in range(3))
        self.up_ul = nn.ModuleList(nn.ModuleList(ul_block(f) for _ in range(n_blocks)) for _ in range(3))
        self.down_u = nn.ModuleList(DownShiftedConv2d(f, f, (2, 3), stride=2) for _ in range(2))
        self.down_ul = nn.ModuleList(DownRightShiftedConv2d(f, f, (2, 2), stride=2) for _ in range(2))
        # down pass: blocks 4–6 at 1/4, 1/2, 1 resolution (n, n + 1, n + 1 layers: one short-cut each)
        sizes = (n_blocks, n_blocks + 1, n_blocks + 1)
        self.dn_u = nn.ModuleList(nn.ModuleList(u_block(f) for _ in range(k)) for k in sizes)
        self.dn_ul = nn.ModuleList(nn.ModuleList(ul_block(2 * f) for _ in range(k)) for k in sizes)
        self.up_u_deconv = nn.ModuleList(DownShiftedDeconv2d(f, f) for _ in range(2))
        self.up_ul_deconv = nn.ModuleList(DownRightShiftedDeconv2d(f, f) for _ in range(2))
        self.head = nn.Conv2d(f, self.n_params, 1)

    # ------------------------------------------------------------------ checks
    def _check(self, x: torch.Tensor, h: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        if x.dim() < 4:
            raise ValueError(f"x must be [..., {self.channels}, H, W] with a batch dimension, got shape "
                             f"{tuple(x.shape)}")
        if x.shape[-3] != self.channels:
            raise ValueError(f"this PixelCNN++ models {self.channels}-channel images, got {x.shape[-3]} channels")
        hh, ww = x.shape[-2:]
        if hh % 4 or ww % 4:
            raise ValueError(f"image size {hh}×{ww} is not divisible by 4 (PixelCNN++ down-samples twice by 2)")
        lead = x.shape[:-3]
        x = x.reshape(-1, *x.shape[-3:])
        if self.cond_channels == 0:
            if h is not None:
                raise ValueError("h given but this PixelCNN++ has cond_channels=0")
            return x, None
        if h is None:
            raise ValueError(f"this PixelCNN++ is conditional (cond_channels={self.cond_channels}); pass h")
        nl = len(lead)
        if h.shape[:nl] != lead:
            raise ValueError(f"h's leading dimensions {tuple(h.shape[:nl])} differ from x's {tuple(lead)}")
        rest = h.shape[nl:]
        if len(rest) == 1:
            rest = (rest[0], 1, 1)
        ok = len(rest) == 3 and rest[0] == self.cond_channels and tuple(rest[1:]) in ((1, 1), (hh, ww))
        if not ok:
            raise ValueError(f"h must be [..., {self.cond_channels}], [..., {self.cond_channels}, 1, 1] or "
                             f"[..., {self.cond_channels}, {hh}, {ww}], got shape {tuple(h.shape)}")
        return x, h.reshape(-1, *rest)

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, h: Optional[torch.Tensor] = None) -> torch.Tensor:
        lead = x.shape[:-3]
        x, h = self._check(x, h)
        if h is None:
            hs: List[Optional[torch.Tensor]] = [None, None, None]
        elif h.shape[-1] == 1 and h.shape[-2] == 1:
            hs = [h, h, h]
        else:
            hs = [h, F.avg_pool2d(h, 2), F.avg_pool2d(h, 4)]
        x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
        u_list = [down_shift(self.u_init(x))]
        ul_list = [down_shift(self.ul_init_up(x)) + right_shift(self.ul_init_left(x))]
        for level in range(3):
            for ub, ulb in zip(self.up_u[level], self.up_ul[level]):
                u_list.append(ub(u_list[-1], h=hs[level]))
                ul_list.append(ulb(ul_list[-1], u_list[-1], h=hs[level]))
            if level < 2:
                u_list.append(self.down_u[level](u_list[-1]))
                ul_list.append(self.down_ul[level](ul_list[-1]))
        u, ul = u_list.pop(), ul_list.pop()
        for level in range(3):
            for ub, ulb in zip(self.dn_u[level], self.dn_ul[level]):
                u = ub(u, u_list.pop(), h=hs[2 - level])
                ul = ulb(ul, torch.cat([u, ul_list.pop()], dim=1), h=hs[2 - level])
            if level < 2:
                u = self.up_u_deconv[level](u)
                ul = self.up_ul_deconv[level](ul)
        assert not u_list and not ul_list
        out = self.head(F.elu(ul))
        return out.reshape(*lead, *out.shape[-3:])

    # ------------------------------------------------------------------ likelihood and sampling
    def log_prob(self, x: torch.Tensor, h: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log p(x | h) per image (``x`` on the 8-bit grid ``2v/255 − 1``)."""
        return dlm_log_prob(x, self(x, h), self.n_mix)

    @torch.no_grad()
    def sample(self, n: int, size: Tuple[int, int], h: Optional[torch.Tensor] = None,
               generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``n`` images ``[n, C, H, W]`` drawn pixel by pixel in raster order (``H·W`` forward passes)."""
        p = next(self.parameters())
        x = torch.zeros(n, self.channels, *size, device=p.device, dtype=p.dtype)
        for i in range(size[0]):
            for j in range(size[1]):
                params = self(x, h)[..., i:i + 1, j:j + 1]
                x[..., i, j] = dlm_sample(params, self.n_mix, self.channels, generator)[..., 0, 0]
        return x
