"""The estimators' arithmetic, written once as functions of samples, scores and objective values (the pattern of
DeepMind's ``mc_gradients``): no model, no distribution object, no state.  The registered estimators (the files of
this folder, which see a model through its contract) and the functional API :func:`estibench.grad`
(:mod:`estimators.grad`, which sees a ``torch.distributions`` object and a function f) both call these functions,
so an estimator's formula lives in one place.  Each function's docstring names the estimator and the paper's
equation; the estimator's own file states the paper, the reference code and the deviations.

Conventions: a *surrogate* is a tensor whose gradient is the estimate of ∇ E[f] (to maximise; a training loss is its
negative); particles lead (dimension 0, K); f values are per particle and item; logits ``a`` of Bernoulli latents
have one trailing bit dimension D that f values do not have.  Nothing here draws random numbers but from the noise
it is given (``u``, ``eps``), so a caller controls and shares the draws.
"""
from .antithetic import arm_logit_gradient, disarm_logit_gradient
from .relaxed import gumbel_straight_through_bernoulli, logit, relax, straight_through, straight_through_bernoulli
from .score import leave_one_out, rloo, score_function
# IMPORT-ANCHOR-COUPLED
# IMPORT-ANCHOR-ENUMERATION
# IMPORT-ANCHOR-WEIGHTS
# IMPORT-ANCHOR-SMOOTHING

__all__ = ["arm_logit_gradient", "disarm_logit_gradient", "gumbel_straight_through_bernoulli", "leave_one_out",
           "logit", "relax", "rloo", "score_function", "straight_through", "straight_through_bernoulli"]
# ALL-ANCHOR-COUPLED
# ALL-ANCHOR-ENUMERATION
# ALL-ANCHOR-WEIGHTS
# ALL-ANCHOR-SMOOTHING

