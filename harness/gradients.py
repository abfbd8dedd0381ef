"""Gradient samples at frozen parameters and exact gradients, one sign convention.

Both return the gradient of the objective being *maximised*, averaged over the B data points
of each replicate, flattened over the chosen parameter group in ``parameters()`` order (all
replicates, replicate-major within each parameter tensor).

Draws at frozen parameters are measurements: they call ``estimator.gradients(..., with_own=False)``
and afterwards restore the model's and the estimator's state (every parameter, buffer and plain
attribute, :class:`harness.measurement.Snapshot`), whatever the estimator did to it; they draw from
the caller's random stream (the runner gives each evaluation a stream of its own).
"""
from __future__ import annotations

import torch

from .exact import exact_objective_gradient


def _group_indices(model, which: str):
    wanted = {id(p) for p in model.parameter_group(which)}
    return [i for i, p in enumerate(model.parameters()) if id(p) in wanted]


def _draw(model, estimator, x, num_particles, index):
    grads, _, _ = estimator.gradients(model, x, num_particles, with_own=False)
    return [grads[i].detach() for i in index]


def _restoring(model, estimator):
    """Snapshots of the model (its declared measurement caches excepted) and the estimator, restored on exit."""
    import contextlib

    from .measurement import Snapshot

    @contextlib.contextmanager
    def block():
        snaps = [Snapshot(model, model.measurement_caches), Snapshot(estimator)]
        try:
            yield
        finally:
            for snap in snaps:
                snap.restore()
    return block()


def gradient_draws(model, estimator, x, num_particles, num_samples, which="guide") -> torch.Tensor:
    """``[num_samples, R, D_r]``: independent estimates per replicate (ascent direction); the model's and the
    estimator's state are as they were afterwards."""
    estimator.prepare(model, num_particles)
    index = _group_indices(model, which)
    R = model.replicates
    with _restoring(model, estimator):
        return torch.stack([torch.cat([g.reshape(R, -1) for g in _draw(model, estimator, x, num_particles, index)],
                                      1) for _ in range(int(num_samples))]).neg()


def gradient_samples(model, estimator, x, num_particles, num_samples, which="guide") -> torch.Tensor:
    """``[num_samples, D]`` independent gradient estimates of the ``which`` group ("guide" or
    "generative") at frozen parameters, in the same layout as :func:`exact_gradient`."""
    estimator.prepare(model, num_particles)
    index = _group_indices(model, which)
    with _restoring(model, estimator):
        return torch.stack([torch.cat([g.reshape(-1) for g in _draw(model, estimator, x, num_particles, index)])
                            for _ in range(int(num_samples))]).neg()


def exact_gradient(model, estimator, x, num_particles, which="guide") -> torch.Tensor:
    """``[D]``: the exact gradient, by enumeration, of the objective the estimator targets for
    the ``which`` group (``estimator.guide_target`` / ``estimator.generative_target``)."""
    estimator.prepare(model, num_particles)
    target = estimator.guide_target if which == "guide" else estimator.generative_target
    return exact_objective_gradient(model, x, target, num_particles, which)


# -- batched draws ---------------------------------------------------------------------------------
def _tile(t: torch.Tensor, n: int) -> torch.Tensor:
    """``[R, ...]`` → ``[n·R, ...]``, draw-major: row ``s·R + r`` is a copy of row ``r``."""
    return t.detach().repeat(n, *([1] * (t.dim() - 1)))


def replicate(model, estimator, n: int, x=None):
    """(model, estimator) holding ``n`` identical copies of every replicate (replicate ``s·R + r``
    is a copy of replicate ``r``), so that one vectorised pass gives ``n`` independent draws.

    Model: a deep copy whose parameters (which lead with R, by the model contract) are tiled; its
    buffers are shared, except, when R > 1, those whose leading size is R, which are tiled.
    Estimator: a deep copy re-bound to the replicated model (``bind`` sizes its own parameters and
    buffers), then loaded with the original's state, tiled where the re-bound tensor is n times
    longer.  The result is checked on a few draws of ``guide``/``log_joint`` at the first data
    points of ``x`` (default: ``model.sample(3)``); a model this recipe does not fit raises
    ``NotImplementedError`` (use :func:`gradient_draws` for it)."""
    import copy

    R, n = model.replicates, int(n)
    big = copy.deepcopy(model)
    big.seeds = tuple(model.seeds) * n
    done = {}
    for module in big.modules():
        for name, p in list(module._parameters.items()):
            if p is None:
                continue
            if id(p) not in done:
                if p.dim() == 0 or p.shape[0] != R:
                    raise NotImplementedError(f"parameter {name!r} of {type(module).__name__} does not lead "
                                              f"with the {R} replicates; cannot replicate the model")
                done[id(p)] = torch.nn.Parameter(_tile(p, n), requires_grad=p.requires_grad)
            module._parameters[name] = done[id(p)]
        for name, b in list(module._buffers.items()):
            if b is not None and R > 1 and b.dim() > 0 and b.shape[0] == R:
                module._buffers[name] = _tile(b, n)
    est = copy.deepcopy(estimator)
    est.bind(big)
    own = est.state_dict(keep_vars=True)
    with torch.no_grad():
        for key, value in estimator.state_dict(keep_vars=True).items():
            if key not in own or own[key] is None or value is None:
                raise NotImplementedError(f"estimator state {key!r} changes on re-binding; cannot replicate it")
            target = own[key]
            if target.shape == value.shape:
                target.copy_(value)
            elif target.dim() > 0 and target.shape[0] == n * value.shape[0] and target.shape[1:] == value.shape[1:]:
                target.copy_(_tile(value, n))
            else:
                raise NotImplementedError(f"estimator state {key!r}: shape {tuple(value.shape)} re-bound as "
                                          f"{tuple(target.shape)}; cannot replicate it")
    _check_replica(model, big, n, x)
    return big, est


@torch.no_grad()
def _check_replica(model, big, n: int, x=None) -> None:
    """The replicated model must give the original's guide and joint log-densities, copy by copy."""
    R = model.replicates
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(0)
        x = model.sample(3)[1] if x is None else x[:, :3]
        q = model.guide(x)
        z = q.sample((2,))
        want_q, want_p = q.log_prob(z), model.log_joint(x, z)
        xb = _tile(x, n)
        zb = z.repeat(1, n, *([1] * (z.dim() - 2)))
        qb = big.guide(xb)
        got_q, got_p = qb.log_prob(zb), big.log_joint(xb, zb)
    for want, got in ((want_q, got_q), (want_p, got_p)):
        got = got.reshape(2, n, R, *got.shape[2:])
        if not torch.allclose(got, want.unsqueeze(1).expand_as(got), rtol=1e-5, atol=1e-5):
            raise NotImplementedError(f"replicating {type(model).__name__} changed its log-densities "
                                      f"(a per-replicate buffer?); use gradient_draws")


#: the automatic chunk keeps one pass's replicated parameters below PARAM_BUDGET elements and its
#: particle-points (chunk × R × B × K) below POINT_BUDGET, which measured fastest on a CPU core
PARAM_BUDGET = 2 ** 21
POINT_BUDGET = 2 ** 17


def auto_chunk(model, x, num_particles, num_samples) -> int:
    R = model.replicates
    per_copy = sum(p.numel() for p in model.parameters())
    points = R * (x.shape[1] if x.dim() > 1 else 1) * int(num_particles)
    return int(max(1, min(int(num_samples), PARAM_BUDGET // max(1, per_copy), POINT_BUDGET // max(1, points))))


def gradient_draws_batched(model, estimator, x, num_particles, num_samples, which="guide",
                           chunk=None) -> torch.Tensor:
    """``[num_samples, R, D_r]``, the layout of :func:`gradient_draws`, drawn ``chunk`` at a time in
    one vectorised pass each: the model and estimator are replicated ``chunk`` times
    (:func:`replicate`) and the data tiled, so replicate ``s·R + r`` of a pass is draw ``s`` for
    replicate ``r``.  Replicates are independent by the model/estimator contract, so the draws are
    independent and have the distribution of the loop's; with ``chunk=1`` they are the loop's
    numbers exactly (same random stream), otherwise the stream is consumed in another order.
    ``model`` and ``estimator`` are not modified (training-only state updates, if any, happen on
    the copies).  Memory grows linearly with ``chunk``; ``None`` picks it by :func:`auto_chunk`."""
    estimator.prepare(model, num_particles)
    n = int(num_samples)
    chunk = auto_chunk(model, x, num_particles, n) if chunk is None else max(1, int(chunk))
    R = model.replicates
    index = _group_indices(model, which)
    out, copies = [], {}
    done = 0
    while done < n:
        c = min(chunk, n - done)
        if c not in copies:
            copies[c] = replicate(model, estimator, c, x)
        big, est = copies[c]
        grads = _draw(big, est, _tile(x, c), num_particles, index)
        out.append(torch.cat([g.reshape(c, R, -1) for g in grads], -1))
        done += c
    return torch.cat(out, 0).neg()
