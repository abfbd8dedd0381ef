"""estibench: a PyTorch harness comparing gradient estimators for models with discrete latents.

One distribution, one namespace.  The design card's top-level folders are mapped by the build
configuration (``pyproject.toml``, ``[tool.setuptools] package-dir``) onto subpackages:

=====================  ===================================================
``estibench.estimators``  ``estimators/``: the estimator registry
``estibench.models``      ``models/``: the model registry and capability protocols
``estibench.harness``     ``harness/``: exact ground truth, runner, sweep, store
``estibench.reports``     ``reports/``: tables, figures and the static site
``estibench.data``        ``data/``: datasets
``estibench.studies``     ``studies/``: one object per study (task, suites, presets, report page)
``estibench.cli``         ``cli/``: the command line, one module per command
=====================  ===================================================

So a name reads as a path: ``estibench.X.Y`` is the file ``X/Y.py`` (or the folder ``X/Y/``) of the checkout, e.g.
``estibench.studies.gmm.task`` is ``studies/gmm/task.py``; ``estibench.files`` is ``estibench/files.py``, and
``estibench.testing`` (``estibench/testing.py``) runs ``estibench check``'s checks in your own pytest suite.  Nothing
else is installed at the top of site-packages.  A checkout is used through an editable install (``pip install -e
.``), which maps the same names onto the same folders; no path is added at run time, so what a reader or a tool
follows is what Python imports.
"""
import importlib as _importlib

__version__ = "0.1.0"

_SUBPACKAGES = ("estimators", "models", "harness", "reports", "data", "studies", "cli", "testing")


def __getattr__(name):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    if name == "grad":  # the functional API: estimators.grad.grad (estibench.grad(dist, f, "disarm"))
        return _importlib.import_module(f"{__name__}.estimators.grad").grad
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None) -> int:
    """The ``estibench`` console command: the same subcommands and flags as ``python run_all.py``."""
    from estibench.cli import main as cli_main
    return cli_main(argv)


__all__ = list(_SUBPACKAGES) + ["grad", "main", "__version__"]
