"""Registry of gradient estimators.  ``estimators.get(name, **options)``; ``estimators.names()``.

Adding an estimator: one module with a subclass of :class:`estimators.base.Estimator` (its
docstring names the paper and equation) plus one registry line below; the contract and
statistical tests in ``tests/`` run over every registered name.
"""
from models.registry import Registry, UnknownNameError

from .base import Estimate, Estimator, IncompatibleError
from .concrete import Concrete
from .dww import DefensiveWakeWake
from .reinforce import Reinforce
from .relax import Relax
from .vimco import Vimco
from .ws import WakeSleep
from .ww import WakeWake

REGISTRY = Registry("estimator")
REGISTRY.register("reinforce")(Reinforce)
REGISTRY.register("vimco")(Vimco)
REGISTRY.register("relax")(Relax)
REGISTRY.register("concrete")(Concrete)
REGISTRY.register("ws")(WakeSleep)
REGISTRY.register("ww")(WakeWake)
REGISTRY.register("dww")(DefensiveWakeWake)

get = REGISTRY.get
names = REGISTRY.names

__all__ = ["get", "names", "REGISTRY", "Estimate", "Estimator", "IncompatibleError", "UnknownNameError"]
