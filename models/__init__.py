"""Registry of models.  ``models.get(name, **options)`` builds one; ``models.names()`` lists them.

Adding a model: one module implementing :class:`models.base.LatentVariableModel` plus one line
below.  The contract tests in ``tests/test_contracts.py`` run over every registered name.
"""
from .air import AIR
from .base import LatentVariableModel
from .gmm import GMM
from .latents import BernoulliLatent, CategoricalLatent, LatentSpace, NormalLatent, StructuredLatent
from .gaussian_vae import GaussianVAE
from .linear_gaussian import LinearGaussian
from .registry import Registry, UnknownNameError
from .rbm_vae import RBMVAE, TinyRBMVAE
from .conv_vae import ConvVAE, ConvVAENormal
from .sbn import SigmoidBeliefNet, TinySigmoidBeliefNet
from .categorical_sbn import CategoricalSBN, TinyCategoricalSBN

REGISTRY = Registry("model", base=LatentVariableModel)
REGISTRY.register("gmm")(GMM)
REGISTRY.register("sbn")(SigmoidBeliefNet)
REGISTRY.register("sbn_tiny")(TinySigmoidBeliefNet)
REGISTRY.register("sbn_categorical")(CategoricalSBN)
REGISTRY.register("sbn_categorical_tiny")(TinyCategoricalSBN)
REGISTRY.register("rbm_vae")(RBMVAE)
REGISTRY.register("rbm_vae_tiny")(TinyRBMVAE)
REGISTRY.register("linear_gaussian")(LinearGaussian)
REGISTRY.register("gaussian_vae")(GaussianVAE)
REGISTRY.register("air")(AIR)
REGISTRY.register("conv_vae")(ConvVAE)
REGISTRY.register("conv_vae_normal")(ConvVAENormal)

get = REGISTRY.get
names = REGISTRY.names

__all__ = ["get", "names", "REGISTRY", "LatentVariableModel", "GMM", "SigmoidBeliefNet", "TinySigmoidBeliefNet", "CategoricalSBN",
           "TinyCategoricalSBN", "LatentSpace", "CategoricalLatent",
           "BernoulliLatent", "NormalLatent", "StructuredLatent", "AIR", "LinearGaussian", "GaussianVAE", "ConvVAE", "ConvVAENormal", "Registry", "UnknownNameError"]
