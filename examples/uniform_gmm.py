"""The 20-cluster GMM started from a uniform prior: an example of a model of your own.

Le et al., Revisiting Reweighted Wake-Sleep, §4.3 (the GMM of ``models/gmm.py``, whose docstring
gives every equation), with θ = 0 at the start (the ``init=uniform`` option) instead of the
authors' far initialisation.  It inherits the GMM's declared studies and capabilities, so::

    python run_all.py --model estibench.examples.uniform_gmm:UniformGMM --estimators ww,vimco --particles 2
"""
from estibench.models.gmm import GMM


class UniformGMM(GMM):
    def __init__(self, seeds=(0,), **options):
        options.setdefault("init", "uniform")
        super().__init__(seeds=seeds, **options)
