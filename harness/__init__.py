"""estibench's harness: exact ground truth, gradient samples, the vectorised runner, the sweep and the
results store.  Data flow: models → estimators → harness → studies → reports → the command line (``cli/``)."""
from .exact import exclusive_kl, inclusive_kl, iwae_bound, log_marginal, log_posterior
from .gradients import exact_gradient, gradient_draws, gradient_samples
from .runner import Cell, build, build_model, train_cell

__all__ = ["exact_gradient", "gradient_samples", "gradient_draws", "iwae_bound", "log_marginal",
           "log_posterior", "exclusive_kl", "inclusive_kl", "Cell", "build", "build_model", "train_cell"]
