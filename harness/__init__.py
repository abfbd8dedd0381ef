"""estibench's harness: exact ground truth, gradient samples, the vectorised runner, the sweep and the
results store.  Data flow: models → estimators → harness → studies → reports → the command line (``cli/``).

The names below are imported from their modules when first used (``from estibench.harness import Cell``), not when
the package is: a light module of the package (the option grammar, ``harness/grammar.py``, which the command line's
``--help`` needs) is then imported without torch."""
import importlib as _importlib

#: name → the module of the package that defines it
_EXPORTS = {
    "exclusive_kl": "exact", "inclusive_kl": "exact", "iwae_bound": "exact", "log_marginal": "exact",
    "log_posterior": "exact",
    "exact_gradient": "gradients", "gradient_draws": "gradients", "gradient_samples": "gradients",
    "Cell": "runner", "build": "runner", "build_model": "runner", "train_cell": "runner",
}


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value  # looked up once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))


__all__ = ["exact_gradient", "gradient_samples", "gradient_draws", "iwae_bound", "log_marginal",
           "log_posterior", "exclusive_kl", "inclusive_kl", "Cell", "build", "build_model", "train_cell"]
