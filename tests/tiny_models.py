"""A tiny Bernoulli-latent model used only by the tests, to check that the contracts and the
exact harness work beyond the categorical GMM (factorised q over 3 bits, 8 states)."""
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from estibench.models.base import LatentVariableModel
from estibench.models.latents import BernoulliLatent
from estibench.models.nn import StackedMLP
from estibench.models.protocols import LAYERED_BERNOULLI, RELAXED_LOG_JOINT, bernoulli_log_mass


class TinyBernoulli(LatentVariableModel):
    """z ∈ {0,1}³ with a factorised prior σ(b); x | z ~ Normal(Wz, 1) in R²; q(z|x) = σ(MLP(x))."""

    obs_shape = (2,)

    def __init__(self, seeds=(0,), bits=3):
        super().__init__(seeds)
        self.latent = BernoulliLatent(bits)
        gen = torch.Generator().manual_seed(11)
        self.prior_logits = nn.Parameter(torch.randn(bits, generator=gen).expand(self.replicates, bits).clone())
        self.weight = nn.Parameter((2 * torch.randn(bits, 2, generator=gen)).expand(self.replicates, bits, 2).clone())
        self.guide_net = StackedMLP(self.seeds, [2, 8, bits], activation="tanh")

    def generative_parameters(self):
        return [self.prior_logits, self.weight]

    def guide_parameters(self):
        return list(self.guide_net.parameters())

    def guide(self, x):
        return Independent(Bernoulli(logits=self.guide_net(x), validate_args=False), 1)

    def log_joint(self, x, z):
        R = self.replicates
        prior = Independent(Bernoulli(logits=self.prior_logits.view(R, 1, -1), validate_args=False), 1).log_prob(z)
        mean = torch.einsum("...rbk,rkd->...rbd", z, self.weight)
        return prior + Normal(mean, 1.0).log_prob(x).sum(-1)

    @torch.no_grad()
    def sample(self, n):
        R = self.replicates
        z = Bernoulli(logits=self.prior_logits.view(R, 1, -1).expand(R, n, -1)).sample()
        x = torch.einsum("rbk,rkd->rbd", z, self.weight) + torch.randn(R, n, 2)
        return z, x


class GuideHalf:
    """The guide's half of the layered Bernoulli interface for TinyBernoulli (one layer)."""

    def split(self, z):
        return [z]

    def join(self, layers):
        return layers[0]

    def guide_layer(self, l, h):
        return self.guide_net(h)


class TinyLayered(GuideHalf, TinyBernoulli):
    """TinyBernoulli with the layered Bernoulli interface (one layer; ``models/protocols.py``), so the
    estimators that need it are exercised on a model other than the SBN."""

    provides = (LAYERED_BERNOULLI, RELAXED_LOG_JOINT)

    def relaxed_log_joint(self, x, z):  # the Bernoulli log-mass z·l − softplus(l) is linear in z: as is
        return self.log_joint(x, z)

    @property
    def layer_sizes(self):
        return (self.latent.num_bits,)

    def prior_layer(self, l, h=None):
        return self.prior_logits.view(self.replicates, 1, -1)

    def log_likelihood(self, x, z0):
        mean = torch.einsum("...rbk,rkd->...rbd", z0, self.weight)
        return Normal(mean, 1.0).log_prob(x).sum(-1)

    def log_prior(self, layers):
        return bernoulli_log_mass(self.prior_layer(0), layers[0])


class PartialLayered(GuideHalf, TinyBernoulli):
    """Declares the layered Bernoulli interface but implements only the guide's half (no
    ``prior_layer``, ``log_likelihood`` or ``log_prior``): must be refused before any work."""

    provides = (LAYERED_BERNOULLI,)
    layer_sizes = (3,)
