"""A restricted Boltzmann machine as a component: energy, free energies, block Gibbs sampling,
persistent chains, and log Z exactly (enumeration), by AIS and by reverse AIS; RAISE for log p(v).

The RBM is the prior of the RBM-prior VAEs (DVAE++ §5, ``001_…``; the RBM-prior hybrid model §3 and
§3.3, ``000_…``; PixelVAE++ §2.1, ``003_…``).  Every tensor carries the model's replicate dimension
``R`` (one independent RBM per seed, as :mod:`estibench.models.nn`): parameters are ``a [R, n_v]``
(visible biases), ``b [R, n_h]`` (hidden biases), ``W [R, n_v, n_h]``; states are ``[..., R, n]``.

Formulas (p(v, h) = e^{−E(v, h)} / Z over v ∈ {0,1}^{n_v}, h ∈ {0,1}^{n_h})
-----------------------------------------------------------------------------
* Energy ``E(v, h) = −aᵀv − bᵀh − vᵀWh``.
* Free energies ``F(v) = −aᵀv − Σ_j softplus(b_j + (vᵀW)_j)`` (h summed out) and
  ``F_h(h) = −bᵀh − Σ_i softplus(a_i + (Wh)_i)`` (v summed out); ``p(v) = e^{−F(v)} / Z``.
* Exact ``log Z = logsumexp_v −F(v)`` over the smaller side (float64, in chunks; up to
  :data:`MAX_ENUMERATED_BITS` bits).
* AIS (Salakhutdinov & Murray 2008, the RBM-prior paper §3.3) from the base-rate model
  ``p_A(v) = Π Bern(σ(a_A))`` with hidden units uniform, through
  ``log f_k(v) = (1 − β_k) a_Aᵀv + β_k aᵀv + Σ_j softplus(β_k (b_j + (vᵀW)_j))``, 0 = β_0 < … < β_K = 1;
  ``log Z_A = Σ_i softplus(a_A,i) + n_h log 2``.  Forward AIS: v_0 ~ p_A; for k = 1..K add
  ``log f_k(v_{k−1}) − log f_{k−1}(v_{k−1})`` to log w, then v_k ~ T_k(·|v_{k−1}) (one block-Gibbs sweep
  at β_k); ``log Ẑ = log Z_A + logmeanexp(log w)``: E[Ẑ] = Z, so log Ẑ is a stochastic *lower* bound.
* Reverse AIS (Burda et al. 2015) from samples of the target: for k = K..1 add
  ``log f_{k−1}(v_k) − log f_k(v_k)`` then v_{k−1} ~ T_{k−1}(·|v_k); ``log Ẑ_rev = log Z_A −
  logmeanexp(log w)``: E[1/Ẑ_rev] = 1/Z, so log Ẑ_rev is a stochastic *upper* bound; the two bracket log Z.
* RAISE (Burda, Grosse & Salakhutdinov 2015) for log p(v) of one visible vector: start at v_K = v,
  for k = K..1 draw v_{k−1} ~ T_k(·|v_k) (Gibbs sweeps are reversible w.r.t. the v-marginal p_k), and
  ``log p̂(v) = log p_A(v_0) + Σ_{k=1}^{K} [log f_k(v_k) − log f_k(v_{k−1})]``; p̂ is an unbiased estimate
  of the annealing model's p_ann(v), needs no log Z, and is conservative: for v drawn from the RBM,
  E[log p̂(v)] ≤ E[log p_ann(v)] ≤ E[log p(v)] (the last by Gibbs' inequality).

A transition T_k is one block-Gibbs sweep at inverse temperature β_k of the annealed model:
``h ~ Bern(σ(β_k (b + vᵀW)))``, ``v ~ Bern(σ((1 − β_k) a_A + β_k (a + W h)))``.

Persistent chains (:class:`PersistentChains`) are a buffer of a module, so they are part of the
state (``state_dict``) of whatever owns them and really persist across training steps.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn.functional import softplus

from .nn import seeded_uniform

#: the most bits :meth:`RBM.log_partition_exact` enumerates on the smaller side
MAX_ENUMERATED_BITS = 24


def _logmeanexp(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def linear_schedule(steps: int, dtype=torch.float64) -> torch.Tensor:
    """``steps + 1`` inverse temperatures 0 = β_0 < … < β_K = 1, evenly spaced (K = ``steps`` ≥ 1)."""
    steps = int(steps)
    if steps < 1:
        raise ValueError(f"an AIS schedule needs at least 2 temperatures (steps >= 1), got steps={steps}")
    return torch.linspace(0.0, 1.0, steps + 1, dtype=dtype)


def check_schedule(betas: torch.Tensor) -> torch.Tensor:
    betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
    if betas.numel() < 2:
        raise ValueError(f"an AIS schedule needs at least 2 temperatures, got {betas.numel()}")
    if betas[0] != 0 or betas[-1] != 1 or not bool((betas[1:] > betas[:-1]).all()):
        raise ValueError("an AIS schedule must rise strictly from β = 0 to β = 1")
    return betas


def all_states(bits: int, dtype=torch.float64, device=None, start: int = 0, stop: Optional[int] = None):
    """The binary vectors with integer codes ``start..stop-1`` (bit i = (code >> i) & 1), ``[N, bits]``."""
    stop = 2 ** bits if stop is None else stop
    codes = torch.arange(start, stop, device=device)
    return ((codes[:, None] >> torch.arange(bits, device=device)) & 1).to(dtype)


class RBM(nn.Module):
    """``R`` independent bipartite RBMs with ``n_visible`` + ``n_hidden`` binary units.

    Initialised with W ~ U(±``init_scale``) and zero biases, replicate r from ``seeds[r]`` (``salt``
    separates this RBM's streams from those of the networks beside it)."""

    def __init__(self, seeds: Sequence[int], n_visible: int, n_hidden: int, init_scale: float = 0.01,
                 salt: int = 900):
        super().__init__()
        if int(n_visible) < 1 or int(n_hidden) < 1:
            raise ValueError(f"an RBM needs at least one unit on each side, got {n_visible} + {n_hidden}")
        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        seeds = tuple(int(s) for s in seeds)
        R = len(seeds)
        self.W = nn.Parameter(seeded_uniform(seeds, (self.n_visible, self.n_hidden), float(init_scale), salt))
        self.a = nn.Parameter(torch.zeros(R, self.n_visible))
        self.b = nn.Parameter(torch.zeros(R, self.n_hidden))

    @property
    def replicates(self) -> int:
        return self.W.shape[0]

    # -- energies ---------------------------------------------------------------------------------
    def hidden_logits(self, v: torch.Tensor) -> torch.Tensor:
        """``b + vᵀW``: the logits of p(h | v), ``[..., R, n_h]``."""
        return self.b + torch.einsum("...ri,rij->...rj", v.to(self.W.dtype), self.W)

    def visible_logits(self, h: torch.Tensor) -> torch.Tensor:
        """``a + W h``: the logits of p(v | h), ``[..., R, n_v]``."""
        return self.a + torch.einsum("...rj,rij->...ri", h.to(self.W.dtype), self.W)

    def energy(self, v: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """E(v, h), ``[..., R]``; relaxed states in [0, 1] are evaluated as they are."""
        v, h = v.to(self.W.dtype), h.to(self.W.dtype)
        coupling = (torch.einsum("...ri,rij->...rj", v, self.W) * h).sum(-1)
        return -(self.a * v).sum(-1) - (self.b * h).sum(-1) - coupling

    def free_energy(self, v: torch.Tensor) -> torch.Tensor:
        """F(v) = −log Σ_h e^{−E(v, h)}, ``[..., R]``."""
        return -(self.a * v.to(self.W.dtype)).sum(-1) - softplus(self.hidden_logits(v)).sum(-1)

    def free_energy_hidden(self, h: torch.Tensor) -> torch.Tensor:
        """F_h(h) = −log Σ_v e^{−E(v, h)}, ``[..., R]``."""
        return -(self.b * h.to(self.W.dtype)).sum(-1) - softplus(self.visible_logits(h)).sum(-1)

    # -- sampling ---------------------------------------------------------------------------------
    @torch.no_grad()
    def gibbs(self, v: torch.Tensor, sweeps: int = 1, generator: Optional[torch.Generator] = None
              ) -> Tuple[torch.Tensor, torch.Tensor]:
        """``sweeps`` block-Gibbs sweeps (h | v, then v | h) from ``v``; returns (v, h) of the last sweep."""
        if int(sweeps) < 1:
            raise ValueError(f"Gibbs sampling needs at least one sweep, got {sweeps}")
        v = v.to(self.W.dtype)
        for _ in range(int(sweeps)):
            h = torch.bernoulli(torch.sigmoid(self.hidden_logits(v)), generator=generator)
            v = torch.bernoulli(torch.sigmoid(self.visible_logits(h)), generator=generator)
        return v, h

    @torch.no_grad()
    def random_visible(self, chains: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """``[chains, R, n_v]`` uniform random visible states (a start for chains)."""
        shape = (int(chains), self.replicates, self.n_visible)
        return torch.bernoulli(torch.full(shape, 0.5, dtype=self.W.dtype, device=self.W.device), generator=generator)

    # -- exact quantities --------------------------------------------------------------------------
    def _enumerated_side(self) -> str:
        return "visible" if self.n_visible <= self.n_hidden else "hidden"

    def enumerable(self) -> bool:
        return min(self.n_visible, self.n_hidden) <= MAX_ENUMERATED_BITS

    def _check_enumerable(self, what: str) -> None:
        if not self.enumerable():
            raise ValueError(f"{what} enumerates 2^{min(self.n_visible, self.n_hidden)} states of an RBM with "
                             f"{self.n_visible} + {self.n_hidden} units; at most 2^{MAX_ENUMERATED_BITS} are "
                             "allowed: use AIS (log_partition_ais) instead")

    def log_partition(self, chunk: int = 1 << 16) -> torch.Tensor:
        """Exact log Z per replicate, ``[R]``, in the RBM's own dtype and differentiable in its parameters
        (for exact gradients that include the log Z term), by enumerating the smaller side."""
        self._check_enumerable("exact log Z")
        side = self._enumerated_side()
        bits = self.n_visible if side == "visible" else self.n_hidden
        free = self.free_energy if side == "visible" else self.free_energy_hidden
        parts = []
        for start in range(0, 2 ** bits, chunk):
            states = all_states(bits, dtype=self.W.dtype, device=self.W.device, start=start,
                                stop=min(2 ** bits, start + chunk))
            parts.append(torch.logsumexp(-free(states[:, None, :].expand(-1, self.replicates, -1)), dim=0))
        return torch.logsumexp(torch.stack(parts), dim=0)

    @torch.no_grad()
    def log_partition_exact(self, chunk: int = 1 << 16) -> torch.Tensor:
        """Exact log Z per replicate, ``[R]`` float64, by enumerating the smaller side in chunks."""
        self._check_enumerable("exact log Z")
        rbm = _as_double(self)
        side = rbm._enumerated_side()
        bits = rbm.n_visible if side == "visible" else rbm.n_hidden
        free = rbm.free_energy if side == "visible" else rbm.free_energy_hidden
        parts = []
        for start in range(0, 2 ** bits, chunk):
            states = all_states(bits, device=rbm.W.device, start=start, stop=min(2 ** bits, start + chunk))
            states = states[:, None, :].expand(-1, rbm.replicates, -1)
            parts.append(torch.logsumexp(-free(states), dim=0))
        return torch.logsumexp(torch.stack(parts), dim=0)

    @torch.no_grad()
    def sample_exact(self, n: int, generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``n`` exact samples (v, h) ``[n, R, ·]`` per replicate: the smaller side from its enumerated
        marginal, the other from its conditional."""
        self._check_enumerable("exact sampling")
        rbm = _as_double(self)
        side = rbm._enumerated_side()
        bits = rbm.n_visible if side == "visible" else rbm.n_hidden
        states = all_states(bits, device=rbm.W.device)
        free = rbm.free_energy if side == "visible" else rbm.free_energy_hidden
        logits = -free(states[:, None, :].expand(-1, rbm.replicates, -1)).T  # [R, 2^bits]
        codes = torch.multinomial(torch.softmax(logits, -1), int(n), replacement=True, generator=generator).T
        first = states[codes]  # [n, R, bits]
        if side == "visible":
            v = first
            h = torch.bernoulli(torch.sigmoid(rbm.hidden_logits(v)), generator=generator)
        else:
            h = first
            v = torch.bernoulli(torch.sigmoid(rbm.visible_logits(h)), generator=generator)
        return v.to(self.W.dtype), h.to(self.W.dtype)

    # -- annealing ----------------------------------------------------------------------------------
    def _base(self, base_logits: Optional[torch.Tensor]) -> torch.Tensor:
        base = self.a.detach() if base_logits is None else torch.as_tensor(base_logits, dtype=self.W.dtype,
                                                                          device=self.W.device)
        return base.expand(self.replicates, self.n_visible).to(torch.float64)

    def _log_f(self, rbm: "RBM", base: torch.Tensor, v: torch.Tensor, beta: float) -> torch.Tensor:
        return (((1 - beta) * base + beta * rbm.a) * v).sum(-1) + softplus(beta * rbm.hidden_logits(v)).sum(-1)

    def _sweep(self, rbm: "RBM", base: torch.Tensor, v: torch.Tensor, beta: float, generator) -> torch.Tensor:
        h = torch.bernoulli(torch.sigmoid(beta * rbm.hidden_logits(v)), generator=generator)
        return torch.bernoulli(torch.sigmoid((1 - beta) * base + beta * rbm.visible_logits(h)), generator=generator)

    def log_base_partition(self, base_logits: Optional[torch.Tensor] = None) -> torch.Tensor:
        """log Z_A = Σ_i softplus(a_A,i) + n_h log 2 of the base-rate model, ``[R]``."""
        return softplus(self._base(base_logits)).sum(-1) + self.n_hidden * math.log(2.0)

    @torch.no_grad()
    def log_partition_ais(self, chains: int = 1000, betas=None, steps: int = 1000,
                          base_logits: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None
                          ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Forward AIS: (log Ẑ ``[R]``, log w ``[chains, R]``), float64.  ``betas`` (a rising schedule from 0
        to 1) or ``steps`` for a linear one; ``base_logits`` the base-rate model's logits (default: the
        RBM's visible biases)."""
        if int(chains) < 1:
            raise ValueError(f"AIS needs at least one chain, got {chains}")
        betas = check_schedule(linear_schedule(steps) if betas is None else betas).tolist()
        rbm, base = _as_double(self), self._base(base_logits)
        v = torch.bernoulli(torch.sigmoid(base).expand(int(chains), -1, -1).contiguous(), generator=generator)
        log_w = torch.zeros(int(chains), self.replicates, dtype=torch.float64, device=self.W.device)
        for k in range(1, len(betas)):
            log_w += self._log_f(rbm, base, v, betas[k]) - self._log_f(rbm, base, v, betas[k - 1])
            if k < len(betas) - 1:
                v = self._sweep(rbm, base, v, betas[k], generator)
        return self.log_base_partition(base_logits) + _logmeanexp(log_w, 0), log_w

    @torch.no_grad()
    def log_partition_reverse_ais(self, v: torch.Tensor, betas=None, steps: int = 1000,
                                  base_logits: Optional[torch.Tensor] = None,
                                  generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """Reverse AIS from samples ``v [chains, R, n_v]`` of the RBM (exact, or from long-run chains):
        (log Ẑ_rev ``[R]``, log w ``[chains, R]``); a stochastic upper bound on log Z."""
        betas = check_schedule(linear_schedule(steps) if betas is None else betas).tolist()
        rbm, base = _as_double(self), self._base(base_logits)
        v = v.to(torch.float64)
        log_w = torch.zeros(v.shape[:-1], dtype=torch.float64, device=self.W.device)
        for k in range(len(betas) - 1, 0, -1):
            log_w += self._log_f(rbm, base, v, betas[k - 1]) - self._log_f(rbm, base, v, betas[k])
            if k > 1:
                v = self._sweep(rbm, base, v, betas[k - 1], generator)
        return self.log_base_partition(base_logits) - _logmeanexp(log_w, 0), log_w

    @torch.no_grad()
    def log_prob_raise(self, v: torch.Tensor, chains: int = 100, betas=None, steps: int = 1000,
                       base_logits: Optional[torch.Tensor] = None, generator: Optional[torch.Generator] = None
                       ) -> torch.Tensor:
        """RAISE estimate of log p(v) for visible vectors ``v [..., R, n_v]`` (``chains`` reverse chains
        each), ``[..., R]`` float64: conservative, no log Z needed."""
        if int(chains) < 1:
            raise ValueError(f"RAISE needs at least one chain, got {chains}")
        betas = check_schedule(linear_schedule(steps) if betas is None else betas).tolist()
        rbm, base = _as_double(self), self._base(base_logits)
        v = v.to(torch.float64).expand(int(chains), *v.shape).contiguous()
        log_p = torch.zeros(v.shape[:-1], dtype=torch.float64, device=self.W.device)
        for k in range(len(betas) - 1, 0, -1):
            log_p += self._log_f(rbm, base, v, betas[k])
            v = self._sweep(rbm, base, v, betas[k], generator)
            log_p -= self._log_f(rbm, base, v, betas[k])
        log_p0 = (base * v).sum(-1) - softplus(base).sum(-1)  # log p_A(v_0), the base's v-marginal
        return _logmeanexp(log_p + log_p0, 0)


def _as_double(rbm: RBM) -> RBM:
    """A float64 view of ``rbm``'s parameters (detached), for the exact and annealed estimates."""
    if rbm.W.dtype == torch.float64 and not rbm.W.requires_grad:
        return rbm
    out = RBM.__new__(RBM)
    nn.Module.__init__(out)
    out.n_visible, out.n_hidden = rbm.n_visible, rbm.n_hidden
    out.W = nn.Parameter(rbm.W.detach().to(torch.float64), requires_grad=False)
    out.a = nn.Parameter(rbm.a.detach().to(torch.float64), requires_grad=False)
    out.b = nn.Parameter(rbm.b.detach().to(torch.float64), requires_grad=False)
    return out


class PersistentChains(nn.Module):
    """``chains`` persistent Gibbs chains per replicate for an RBM's negative phase (PCD; DVAE# code:
    1,000 chains, 40 sweeps per step).  The visible states are a buffer (stored replicate-first,
    ``[R, chains, n_v]``, like every per-replicate tensor of a model), so they are saved and loaded with
    the owner's ``state_dict`` and each call continues where the last one stopped."""

    def __init__(self, rbm: RBM, chains: int = 1000, seed: int = 0):
        super().__init__()
        if int(chains) < 1:
            raise ValueError(f"persistent chains need at least one chain, got {chains}")
        gen = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        shape = (rbm.replicates, int(chains), rbm.n_visible)
        self.register_buffer("v", torch.bernoulli(torch.full(shape, 0.5), generator=gen))
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    @property
    def states(self) -> torch.Tensor:
        """The chains' visible states, ``[chains, R, n_v]``."""
        return self.v.transpose(0, 1)

    @torch.no_grad()
    def advance(self, rbm: RBM, sweeps: int = 1, generator: Optional[torch.Generator] = None
                ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Run ``sweeps`` block-Gibbs sweeps from the stored states, store the result, return (v, h),
        each ``[chains, R, ·]``."""
        v, h = rbm.gibbs(self.states.to(rbm.W.dtype), sweeps, generator=generator)
        self.v.copy_(v.transpose(0, 1).to(self.v.dtype))
        self.steps += int(sweeps)
        return v, h

    @torch.no_grad()
    def reset(self, v: torch.Tensor) -> None:
        """Restart every chain from ``v [chains, R, n_v]`` (CD-k starts the chains at the data)."""
        self.v.copy_(v.to(self.v.dtype).transpose(0, 1).expand_as(self.v))
