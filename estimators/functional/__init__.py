"""The estimators' arithmetic, written once as functions of samples, scores and objective values (the pattern of
DeepMind's ``mc_gradients``): no model, no distribution object, no state.  The registered estimators (the files of
this folder, which see a model through its contract) and the functional API :func:`estibench.grad`
(:mod:`estimators.grad`, which sees a ``torch.distributions`` object and a function f) both call these functions,
so an estimator's formula lives in one place.  Each function's docstring names the estimator and the paper's
equation; the estimator's own file states the paper, the reference code and the deviations.

Modules, one per family: :mod:`.score` (REINFORCE, RLOO), :mod:`.antithetic` (ARM, DisARM), :mod:`.coupled` (ARMS,
CARMS, categorical DisARM), :mod:`.relaxed` (straight-through, RELAX's surrogate, REBAR's conditional noise),
:mod:`.control_variates` (double control variates, RODEO), :mod:`.enumeration` (IndeCateR, the unordered set
estimator), :mod:`.weights` (importance weights and bounds: IWAE, VIMCO, the wake-sleep family),
:mod:`.baselines` (NVIL, MuProp) and :mod:`.smoothing` (the DVAE smoothings, GumBolt).

Conventions: a *surrogate* is a tensor whose gradient is the estimate of ∇ E[f] (to maximise; a training loss is its
negative); particles lead (dimension 0, K); f values are per particle and item; logits ``a`` of Bernoulli latents
have one trailing bit dimension D that f values do not have.  Nothing here draws random numbers but from the noise
it is given (``u``, ``eps``), so a caller controls and shares the draws.
"""
from .antithetic import arm_logit_gradient, disarm_logit_gradient
from .baselines import centred_signal, muprop_layer, nvil, taylor_mean, taylor_residual, variance_scale
from .control_variates import double_cv_logit_gradient, rodeo_logit_gradient, stein_control_values
from .coupled import (antithetic_stick_breaking, arms_debias_factor, arms_logit_gradient, carms_categories,
                      carms_orders, carms_pair_pmf, carms_pair_ratio, carms_sampled_pair_pmf, carms_score,
                      categorical_disarm_iw_score, categorical_disarm_sb_score, dirichlet_bivariate_cdf,
                      dirichlet_copula_eps, dirichlet_log_uniforms, stick_breaking_categories,
                      stick_breaking_log_pair_weight, stick_breaking_logits)
from .enumeration import indecater, log_rest_mass, log_set_ratios, substituted, unordered_set
from .relaxed import (conditional_gumbel, conditional_logit, gumbel_straight_through_bernoulli, logit, relax,
                      straight_through, straight_through_bernoulli, tied_uniform)
from .score import leave_one_out, rloo, score_function
from .smoothing import (binary_concrete_sample, gumbolt_log_weight, gumbolt_pd_log_weight, mixture_log_density,
                        mixture_posterior_logits, overlap_exp_sample, overlap_logistic_sample,
                        overlap_power_log_density, overlap_power_posterior_logits, overlap_power_sample,
                        smoothed_sample, spike_boundary_term, spike_exp_sample)
from .weights import (defensive_log_proposal, direct_coefficient, direct_term, importance_bound, leave_one_out_bounds,
                      logmeanexp, normalised_weights, self_normalised, vimco, vimco_signal, wake_phi, wake_theta)

__all__ = ["antithetic_stick_breaking", "arm_logit_gradient", "arms_debias_factor", "arms_logit_gradient",
           "binary_concrete_sample", "carms_categories", "carms_orders", "carms_pair_pmf", "carms_pair_ratio",
           "carms_sampled_pair_pmf", "carms_score", "categorical_disarm_iw_score", "categorical_disarm_sb_score",
           "centred_signal", "conditional_gumbel", "conditional_logit", "defensive_log_proposal", "direct_coefficient",
           "direct_term", "dirichlet_bivariate_cdf", "dirichlet_copula_eps", "dirichlet_log_uniforms",
           "disarm_logit_gradient", "double_cv_logit_gradient", "gumbel_straight_through_bernoulli",
           "gumbolt_log_weight", "gumbolt_pd_log_weight", "importance_bound", "indecater", "leave_one_out",
           "leave_one_out_bounds", "log_rest_mass", "log_set_ratios", "logit", "logmeanexp", "mixture_log_density",
           "mixture_posterior_logits", "muprop_layer", "normalised_weights", "nvil", "overlap_exp_sample",
           "overlap_logistic_sample", "overlap_power_log_density", "overlap_power_posterior_logits",
           "overlap_power_sample", "relax", "rloo", "rodeo_logit_gradient", "score_function", "self_normalised",
           "smoothed_sample", "spike_boundary_term", "spike_exp_sample", "stein_control_values",
           "stick_breaking_categories", "stick_breaking_log_pair_weight", "stick_breaking_logits", "straight_through",
           "straight_through_bernoulli", "substituted", "taylor_mean", "taylor_residual", "tied_uniform",
           "unordered_set", "variance_scale", "vimco", "vimco_signal", "wake_phi", "wake_theta"]
