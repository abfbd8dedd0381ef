"""The RBM-prior paper's two-stage pretraining ("Learning Deep Generative Models with Discrete Latent
Variables", ``000_…`` §3.1 and its appendix "Experimental setup"), run by :class:`estibench.studies.rbm.task.RBMTask`
before joint training when the cell's study options ask for it.

The paper:
1. **Autoencoder.**  The inference network E and the generator are trained jointly as an autoencoder by
   maximising log p(x | B(E(x))), with the soft-binarising bottleneck (its Eq. 3)
       B(z) = f(z + U(−½, ½)),   f(t) = min(max(t, 0), 1),
   which pushes E(x) out of (−½, 1½) so that the codes are nearly binary; after it "we remove B and
   append a sigmoid": the inference network is q(z = 1 | x) = σ(E(x)).
2. **RBM.**  The RBM is pretrained on the codes z by contrastive divergence "starting from 1 step (CD1)
   and gradually increase to 25 steps (CD25)", then by persistent CD with 25 steps (PCD25), with "SGD with
   learning rate decay for learning RBMs and Adam ... elsewhere".
3. Then all three components are trained jointly (Contrastive RWS or VIMCO, the cell's estimator), the
   persistent chains continuing from the PCD chains.

This file: stage 1 for ``ae_steps`` Adam steps (the cell's learning rate) on batches of the cell's
size, E(x) = ``model.encoder_logits`` (RELAXED_BOLTZMANN; a hierarchical guide's second group reads the
first group's B(E₀(x))), log p(x | ·) = ``model.log_likelihood``; the codes for stage 2 are B without the
noise, rounded (z = 1[E(x) ≥ ½]).  Stage 2 for ``cd_steps`` CD-k steps with k rising linearly from 1 to 25,
then ``pcd_steps`` PCD-25 steps on the model's own persistent chains, each minimising
mean(−log p*(z_data)) − mean(−log p*(z⁻)) (the CD gradient of the RBM's log-likelihood; −log p* is the
energy or, for the RBM-prior paper's prior, the free energy), plain SGD whose learning rate ``rbm_lr`` decays
linearly to a tenth.  Deviations, stated: the paper's dropout after B is not used; its schedule lengths
are not given (ours are options); every replicate is pretrained at once (its own parameters, its own data
draws).
"""
from __future__ import annotations

from typing import Dict

import torch

#: CD-k's k rises linearly from 1 to this during the CD stage; PCD uses this many sweeps (the paper's 25)
CD_MAX_SWEEPS = 25


def soft_binarise(e: torch.Tensor, noise: bool = True) -> torch.Tensor:
    """B(z) = clamp(z + U(−½, ½), 0, 1) (the paper's Eq. 3); without noise, clamp(z, 0, 1)."""
    if noise:
        e = e + (torch.rand_like(e) - 0.5)
    return e.clamp(0.0, 1.0)


def encode(model, x: torch.Tensor, noise: bool = True) -> torch.Tensor:
    """B(E(x)) over all latent groups, ``[R, B, D]``."""
    b = soft_binarise(model.encoder_logits(0, x), noise)
    if model.hierarchical_guide:
        b = torch.cat([b, soft_binarise(model.encoder_logits(1, x, b), noise)], -1)
    return b


def pretrain(model, batches, lr: float, ae_steps: int = 0, cd_steps: int = 0, pcd_steps: int = 0,
             rbm_lr: float = 0.05) -> Dict[str, torch.Tensor]:
    """Run the two stages on ``model`` in place; ``batches()`` returns a training batch ``[R, B, pixels]``.
    Returns per-replicate diagnostics: the autoencoder's reconstruction log-likelihood per point over its
    first and last tenth of steps (``ae_first`` / ``ae_last``) and the fraction of codes E(x) outside
    (−½, 1½), i.e. binary under B (``ae_binary``)."""
    out = {}
    if ae_steps > 0:
        params = [p for p in model.parameters() if id(p) in {id(q) for q in model.guide_parameters()}
                  or id(p) in {id(q) for q in model.decoder.parameters()}]
        opt = torch.optim.Adam(params, lr=lr)
        tenth = max(1, ae_steps // 10)
        first, last = torch.zeros(model.replicates), torch.zeros(model.replicates)
        for step in range(ae_steps):
            x = batches()
            rec = model.log_likelihood(x, encode(model, x)).mean(-1)  # [R]
            opt.zero_grad(set_to_none=True)
            (-rec.sum()).backward()
            opt.step()
            if step < tenth:
                first += rec.detach().cpu() / tenth
            if step >= ae_steps - tenth:
                last += rec.detach().cpu() / tenth
        with torch.no_grad():
            e = model.encoder_logits(0, batches())
            out.update(ae_first=first, ae_last=last,
                       ae_binary=((e <= -0.5) | (e >= 1.5)).to(torch.float32).mean((-1, -2)).cpu())
    rbm_params = list(model.rbm.parameters())
    total = cd_steps + pcd_steps
    if total > 0:
        opt = torch.optim.SGD(rbm_params, lr=rbm_lr)
        decay = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 1.0 - 0.9 * t / max(1, total - 1))
        for step in range(total):
            with torch.no_grad():
                z = (encode(model, batches(), noise=False) >= 0.5).to(model.dtype)  # [R, B, D]
                if step < cd_steps:  # CD-k from the data, k from 1 to 25
                    k = 1 + round((CD_MAX_SWEEPS - 1) * step / max(1, cd_steps - 1))
                    v, h = model.rbm.gibbs(visible_side(model, z), k)
                    if step == cd_steps - 1:  # PCD continues from the last CD states (tiled over the chains)
                        model.chains.reset(v[torch.arange(model.chains.v.shape[1], device=v.device) % v.shape[0]])
                else:
                    v, h = model.chains.advance(model.rbm, CD_MAX_SWEEPS)
                negatives = model.latents_of(v, h).transpose(0, 1)  # [R, n, D]
            loss = (model.log_prior_unnormalised(negatives).mean(-1) - model.log_prior_unnormalised(z).mean(-1)).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            decay.step()
    for p in model.parameters():
        p.grad = None
    return out


def visible_side(model, z: torch.Tensor) -> torch.Tensor:
    """The RBM's visible states for latents ``z [R, B, D]``, as the RBM wants them ``[B, R, n_v]``."""
    v = z if model.rbm_hidden else model.split(z)[0]
    return v.transpose(0, 1)
