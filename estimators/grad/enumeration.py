"""Methods of :func:`estibench.grad` that evaluate f beyond the samples: IndeCateR (every category of every
variable) and the unordered set estimator (a sample without replacement)."""
from __future__ import annotations

import torch

from ..base import IncompatibleError
from ..functional.enumeration import indecater, log_rest_mass, log_set_ratios, substituted, unordered_set
from ..onehot import onehot_sample
from ..unordered_set import stochastic_beam_search

from .core import _evaluate, Method, _DISCRETE


def _categorical_table(view):
    """(ℓ ``[*batch, D, C]``, the normalised log-probabilities with D the flattened event, and ``values``, which turns
    one-hot codes ``[n, *batch, D, C]`` into what f takes: one-hot ``[n, *batch, *event, C]`` or indices for a
    categorical, the bits ``[n, *batch, *event]`` for Bernoulli latents, as D categoricals of C = 2 states, (1 − σ(a),
    σ(a)))."""
    if view.kind == "bernoulli":
        a = view.logits
        event = tuple(a.shape[len(view.batch):])
        flat = a.reshape(*view.batch, -1)
        ell = torch.stack([torch.nn.functional.logsigmoid(-flat), torch.nn.functional.logsigmoid(flat)], -1)
        return ell, lambda y: y[..., 1].reshape(*y.shape[:1 + len(view.batch)], *event)
    ell = view.logits
    event = tuple(ell.shape[len(view.batch):-1])
    C = ell.shape[-1]

    def values(y):
        y = y.reshape(*y.shape[:1 + len(view.batch)], *event, C)
        return y.argmax(-1) if view.indices else y

    return ell.reshape(*view.batch, -1, C), values


def _indecater(view, f, K):
    """IndeCateR (De Smet et al., 2023; ``estimators/indecater.py``): K samples, f at every single-variable
    substitution z_{d←c} of each (one call of f with D·C·K particles, no gradient; D·C for one variable, where the
    samples do not matter), surrogate mean_k f(z_k) + Σ_{d,c} q_dc F̄_dc (:func:`estimators.functional.indecater`)."""
    ell, values = _categorical_table(view)
    D, C = ell.shape[-2:]
    y = onehot_sample(ell, K)                                         # [K, *batch, D, C]
    z = values(y)
    fz = _evaluate(f, z, K, view.batch)
    with torch.no_grad():
        base = y[:1] if D == 1 else y                                 # D = 1: z_{1←c} is c whatever the sample
        ys = substituted(base)                                        # [D, C, K', *batch, D, C]
        n = D * C * base.shape[0]
        f_sub = _evaluate(f, values(ys.reshape(n, *ys.shape[3:])), n, view.batch)
        f_sub = f_sub.reshape(D, C, base.shape[0], *view.batch)
    return fz.mean(0) + indecater(ell, f_sub), fz.detach().mean(0), z


def _unordered_set(view, f, K, nodes):
    """The unordered set estimator (Kool et al., 2020; ``estimators/unordered_set.py``): K distinct states by
    stochastic beam search, e^USBL for q's parameters and e^US of ∇f for f's own
    (:func:`estimators.functional.unordered_set`); the value is the e^US estimate of E_q[f] (the states are not
    independent draws, so their plain mean would be biased)."""
    ell, values = _categorical_table(view)
    D, C = ell.shape[-2:]
    if K > C ** D:
        raise IncompatibleError(f"estibench.grad: 'unordered_set' draws K = {K} distinct states without replacement, "
                                f"but the distribution has only C^D = {C}^{D} = {C ** D}")
    if int(nodes) < 16:
        raise IncompatibleError(f"estibench.grad: unordered_set needs at least 16 quadrature nodes, got {nodes}")
    codes = stochastic_beam_search(ell.detach(), K)                   # [K, *batch, D]
    y = torch.nn.functional.one_hot(codes, C).to(ell.dtype)
    z = values(y)
    fz = _evaluate(f, z, K, view.batch)
    lq = (y * ell).sum((-1, -2))                                      # log q(s), [K, *batch]
    lq0 = lq.detach()
    log_r1, log_r2 = log_set_ratios(lq0, log_rest_mass(ell.detach(), codes, lq0), int(nodes))
    surrogate, estimate = unordered_set(fz, lq, log_r1, log_r2)
    return surrogate, estimate, z


#: the methods of this family, by their registry names
METHODS = (
    Method("indecater", _DISCRETE, _indecater, {}, unbiased=True),
    Method("unordered_set", _DISCRETE, _unordered_set, {"nodes": 256}, unbiased=True, particles=2,
           min_particles=2),
)
