"""estibench's harness: exact ground truth, gradient samples, the vectorised runner, the
results store and the command line.  Data flow: models → estimators → harness → reports."""
from .exact import exclusive_kl, inclusive_kl, iwae_bound, log_marginal, log_posterior
from .gradients import exact_gradient, gradient_draws, gradient_samples
from .runner import Cell, build, build_model, train_cell

__all__ = ["exact_gradient", "gradient_samples", "gradient_draws", "iwae_bound", "log_marginal",
           "log_posterior", "exclusive_kl", "inclusive_kl", "Cell", "build", "build_model", "train_cell"]
