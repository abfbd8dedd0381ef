"""Registry of gradient estimators.  ``estimators.get(name, **options)``; ``estimators.names()``.

Adding an estimator: one module with a subclass of :class:`estimators.base.Estimator` (its
docstring names the paper and equation) plus one registry line below; the contract and
statistical tests in ``tests/`` run over every registered name.
"""
from estibench.models.registry import Registry, UnknownNameError

from .base import Estimate, Estimator, IncompatibleError
from .concrete import Concrete
from .dww import DefensiveWakeWake
from .rebar import Rebar
from .reinforce import Reinforce
from .relax import Relax
from .vimco import Vimco
from .ws import WakeSleep
from .ww import WakeWake
from .arm import Arm
from .disarm import DisArm
from .gumbel_st import GumbelStraightThrough
from .muprop import MuProp
from .nvil import Nvil
from .straight_through import StraightThrough
from .spike_exp import SpikeExp
from .overlap_exp import OverlapExp
from .overlap_logistic import OverlapLogistic
from .overlap_power import OverlapPower

REGISTRY = Registry("estimator")
REGISTRY.register("reinforce")(Reinforce)
REGISTRY.register("vimco")(Vimco)
REGISTRY.register("relax")(Relax)
REGISTRY.register("rebar")(Rebar)
REGISTRY.register("concrete")(Concrete)
REGISTRY.register("ws")(WakeSleep)
REGISTRY.register("ww")(WakeWake)
REGISTRY.register("dww")(DefensiveWakeWake)
REGISTRY.register("arm")(Arm)
REGISTRY.register("disarm")(DisArm)
REGISTRY.register("straight_through")(StraightThrough)
REGISTRY.register("gumbel_st")(GumbelStraightThrough)
REGISTRY.register("nvil")(Nvil)
REGISTRY.register("muprop")(MuProp)
REGISTRY.register("spike_exp")(SpikeExp)
REGISTRY.register("overlap_exp")(OverlapExp)
REGISTRY.register("overlap_logistic")(OverlapLogistic)
REGISTRY.register("overlap_power")(OverlapPower)

get = REGISTRY.get
names = REGISTRY.names

__all__ = ["get", "names", "REGISTRY", "Estimate", "Estimator", "IncompatibleError", "UnknownNameError"]
