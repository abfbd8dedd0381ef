"""Registry of gradient estimators.  ``estimators.get(name, **options)``; ``estimators.names()``.

Adding an estimator: one module with a subclass of :class:`estimators.base.Estimator` (its
docstring names the paper and equation; it declares ``latent_types``, ``needs`` and ``unbiased``)
plus one registry line below; the contract and statistical tests in ``tests/`` run over every
registered name.  An estimator with one algorithm per latent kind registers its implementations
behind one name: ``REGISTRY.register(name)(one_of(ForCategorical, ForBernoulli))``.
"""
from estibench.models.registry import Registry, UnknownNameError

from .base import Estimate, Estimator, Family, IncompatibleError, implementation_for, one_of
from .concrete import ConcreteBernoulli, ConcreteCategorical
from .dww import DefensiveWakeWake
from .rebar import Rebar
from .reinforce import Reinforce
from .relax import RelaxBernoulli, RelaxCategorical
from .vimco import Vimco, VimcoStructured
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
from .contrastive_rws import ContrastiveRWS
from .gumbolt import GumBolt, GumBoltPathDerivative
from .iwae import Iwae
from .rloo import Rloo
from .arms import Arms
from .double_cv import DoubleCV
from .rodeo import Rodeo
from .rw_rws import ReweightedWakeWakeSleep
from .vae import Vae
from .indecater import Indecater
from .unordered_set import UnorderedSet
from .categorical_disarm import CategoricalDisarm
from .carms import Carms
from .gumbel_rao import GumbelRao
from .zgr import ZgrBernoulli, ZgrCategorical
from .gst import Gst
from .reinmax import ReinMax
from .smoothed_rbm import OverlapExpRBM, OverlapLogisticRBM, OverlapPowerRBM, SpikeExpRBM

REGISTRY = Registry("estimator", base=Estimator)
REGISTRY.register("reinforce")(Reinforce)
REGISTRY.register("vimco")(one_of(Vimco, VimcoStructured))
REGISTRY.register("relax")(one_of(RelaxCategorical, RelaxBernoulli))
REGISTRY.register("rebar")(Rebar)
REGISTRY.register("concrete")(one_of(ConcreteCategorical, ConcreteBernoulli))
REGISTRY.register("ws")(WakeSleep)
REGISTRY.register("ww")(WakeWake)
REGISTRY.register("dww")(DefensiveWakeWake)
REGISTRY.register("arm")(Arm)
REGISTRY.register("disarm")(DisArm)
REGISTRY.register("straight_through")(StraightThrough)
REGISTRY.register("gumbel_st")(GumbelStraightThrough)
REGISTRY.register("nvil")(Nvil)
REGISTRY.register("muprop")(MuProp)
REGISTRY.register("spike_exp")(one_of(SpikeExp, SpikeExpRBM))
REGISTRY.register("overlap_exp")(one_of(OverlapExp, OverlapExpRBM))
REGISTRY.register("overlap_logistic")(one_of(OverlapLogistic, OverlapLogisticRBM))
REGISTRY.register("overlap_power")(one_of(OverlapPower, OverlapPowerRBM))
REGISTRY.register("contrastive_rws")(ContrastiveRWS)
REGISTRY.register("gumbolt")(GumBolt)
REGISTRY.register("gumbolt_pd")(GumBoltPathDerivative)
REGISTRY.register("vae")(Vae)
REGISTRY.register("iwae")(Iwae)
REGISTRY.register("rw+rws")(ReweightedWakeWakeSleep)
REGISTRY.register("gumbel_rao")(GumbelRao)
REGISTRY.register("zgr")(one_of(ZgrCategorical, ZgrBernoulli))
REGISTRY.register("gst")(Gst)
REGISTRY.register("reinmax")(ReinMax)
REGISTRY.register("indecater")(Indecater)
REGISTRY.register("unordered_set")(UnorderedSet)
REGISTRY.register("categorical_disarm")(CategoricalDisarm)
REGISTRY.register("carms")(Carms)
REGISTRY.register("rloo")(Rloo)
REGISTRY.register("arms")(Arms)
REGISTRY.register("double_cv")(DoubleCV)
REGISTRY.register("rodeo")(Rodeo)

get = REGISTRY.get
names = REGISTRY.names

__all__ = ["get", "names", "REGISTRY", "Estimate", "Estimator", "Family", "IncompatibleError", "UnknownNameError",
           "implementation_for", "one_of"]
