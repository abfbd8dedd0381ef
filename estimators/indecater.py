"""IndeCateR: the CatLog-derivative trick for products of independent categoricals (De Smet, Sansone &
Zuidberg Dos Martires, 2023).

The paper: De Smet et al., "Differentiable Sampling of Categorical Distributions Using the CatLog-Derivative
Trick", NeurIPS 2023 (Eq. numbers not verified).  For q(z) = Π_d q_d(z_d) with q_d categorical over C
states, the CatLog-derivative trick sums the score of variable d over its C values instead of sampling it:
    ∇_φ E_q[f(z)] = Σ_d E_{z ~ q} [ Σ_c ∇_φ q_d(c) f(z_{d←c}) ],
z_{d←c} the sample z with its d-th variable set to c (the expectation over z_d is then exact, a
Rao-Blackwellisation of REINFORCE).  IndeCateR estimates it with N samples z^(1..N), the same for every d:
    ĝ = Σ_d Σ_c ∇_φ q_d(c) · (1/N) Σ_n f(z^(n)_{d←c}),       D·C·N evaluations of f.

The reference code (github ML-KULeuven/catlog, ``DVAE/dave.py``, ``CategoricalDave.indecater_grads``, read to
learn the setting): the surrogate Σ_d Σ_c stop_gradient(mean_n f(z^(n)_{d←c})) · softmax(θ)_dc added to the
loss at the N samples (which trains the decoder), f the negative ELBO with the KL to a uniform prior in closed
form; the same samples serve every d, as in the formula above.

This file: f(y) = log p_θ(x, y) − log q_φ(y|x) at one-hot codes (``estimators/onehot.py``), N = K particles;
the φ-surrogate Σ_{d,c} q_dc · F̄_dc with F̄_dc = (1/K) Σ_k f(y_k, with row d set to e_c) held fixed; θ gets
(1/K) Σ_k ∇_θ log p_θ(x, y_k) at the K samples (the reference code's decoder gradient); the objective is the
K-sample ELBO average (1/K) Σ_k f(y_k), averaged over points.  Target: the ELBO (``guide_target =
generative_target = "elbo"``).  Deviations: f includes −log q (the reference code's closed-form KL is a
property of its model, not of the estimator), and the direct term E[∇_φ f] = −E[∇_φ log q] = 0 is dropped
(it has zero mean and only adds noise); for D = 1 the K samples are irrelevant (z_{1←c} = c), so f is
evaluated once per category (C evaluations), and the φ-gradient is the exact gradient of the ELBO.
Unbiased.  The arithmetic (z_{d←c} and the surrogate Σ_{d,c} q_dc F̄_dc) is ``estimators/functional/enumeration.py``
(:func:`substituted`, :func:`indecater`), shared with ``estibench.grad``.
"""
import torch

from .base import Estimate, Estimator, batch_loss
from .functional.enumeration import indecater, substituted
from .onehot import NEEDS, ONEHOT_LATENTS, elbo_terms, log_probs, log_q, onehot_sample


class Indecater(Estimator):
    display_name = "IndeCateR"
    latent_types = ONEHOT_LATENTS
    needs = NEEDS
    guide_target = "elbo"
    generative_target = "elbo"
    cost_hint = 10.0  # D·C evaluations per particle

    def surrogate(self, model, x, num_particles):
        ell = log_probs(model, x)                               # [R, B, D, C]
        D, C = ell.shape[-2:]
        y = onehot_sample(ell, num_particles)                   # [K, R, B, D, C]
        log_p, lq = elbo_terms(model, x, ell, y)                # [K, R, B]
        f = (log_p - lq).detach()
        with torch.no_grad():
            # D = 1: z_{1←c} is c whatever the sample, so one evaluation per category suffices
            base = y[:1] if D == 1 else y
            ys = substituted(base)                              # [D, C, K', R, B, D, C]
            f_sub = model.log_joint_onehot(x, ys) - log_q(ell, ys)
        score = indecater(ell, f_sub)                           # Σ_d Σ_c q_dc F̄_dc, [R, B]
        per_point = log_p.mean(0) + score
        return Estimate(batch_loss(per_point), f.mean(0).mean(-1))
