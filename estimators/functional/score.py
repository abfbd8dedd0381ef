"""Score-function estimators with baselines from the other particles: REINFORCE and RLOO."""
from __future__ import annotations

import torch


def score_function(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """REINFORCE (Williams, 1992; RWS, Le et al., Eq. 2 for the IWAE bound): ``f.detach() · log q + f``.  Its gradient
    is f ∇ log q (the score term) plus f's own gradient at the fixed sample: an unbiased estimate of ∇ E_q[f]."""
    return f.detach() * log_q + f


def leave_one_out(f: torch.Tensor) -> torch.Tensor:
    """(1/(K−1)) Σ_{j≠k} f_j for every k, along dim 0 (RLOO's baseline)."""
    K = f.shape[0]
    return (f.sum(0, keepdim=True) - f) / (K - 1)


def rloo(f: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """RLOO (Kool, van Hoof & Welling, 2019): mean_k [(f_k − mean_{j≠k} f_j) ∇ log q(z_k)] plus f's own gradient,
    as the surrogate mean_k [(f_k − loo_k).detach() · log q_k + f_k]; K ≥ 2, unbiased.  ``f``, ``log_q``:
    ``[K, ...]`` → ``[...]``."""
    signal = (f - leave_one_out(f)).detach()
    return (signal * log_q + f).mean(0)
