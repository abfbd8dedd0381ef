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

Nothing else is installed at the top of site-packages.  From a source checkout (``python
run_all.py`` without installing), this package adds the checkout's root to its ``__path__`` so the
same import names resolve to the same folders.
"""
import importlib as _importlib
import os as _os

__version__ = "0.1.0"

_ROOT = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
_SUBPACKAGES = ("estimators", "models", "harness", "reports", "data", "studies", "cli")
if (_os.path.isfile(_os.path.join(_ROOT, "pyproject.toml")) and _os.path.isfile(_os.path.join(_ROOT, "run_all.py"))
        and _ROOT not in __path__):  # a source checkout, not site-packages
    __path__.append(_ROOT)


def __getattr__(name):
    if name in _SUBPACKAGES:
        return _importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(argv=None) -> int:
    """The ``estibench`` console command: the same subcommands and flags as ``python run_all.py``."""
    from estibench.cli import main as cli_main
    return cli_main(argv)


__all__ = list(_SUBPACKAGES) + ["main", "__version__"]
