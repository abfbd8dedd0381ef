"""A tiny Bernoulli-latent model used only by the tests, to check that the contracts and the
exact harness work beyond the categorical GMM (factorised q over 3 bits, 8 states)."""
import torch
from torch import nn
from torch.distributions import Bernoulli, Independent, Normal

from estibench.models.base import LatentVariableModel
from estibench.models.latents import BernoulliLatent, StructuredLatent
from estibench.models.nn import StackedMLP
from estibench.models.protocols import LAYERED_BERNOULLI, RELAXED_LOG_JOINT, STRUCTURED_RSAMPLE, bernoulli_log_mass


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


class ContinuousThenCategorical(torch.distributions.Distribution):
    """q(u, c, v | x) of :class:`TinyStructured` over the flat layout [u, c, v], batch shape ``[R, B]``."""

    arg_constraints: dict = {}
    support = torch.distributions.constraints.real_vector

    def __init__(self, model, x):
        self.model, self.x = model, x
        super().__init__(batch_shape=x.shape[:2], event_shape=(3,), validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        with torch.no_grad():
            return self.model.guide_pass(self.x, tuple(sample_shape), mode="sample")[0]

    def log_prob(self, z):
        _, log_d, log_c = self.model.guide_pass(self.x, tuple(z.shape[:-3]), z=z, mode="score")
        return log_d + log_c


class DefensiveTiny(torch.distributions.Distribution):
    """δ-WW's defensive component on [u, c, v]: u, v ~ N(0, 3²), c uniform."""

    arg_constraints: dict = {}
    support = torch.distributions.constraints.real_vector

    def __init__(self, classes, batch_shape, device=None):
        self.classes = classes
        super().__init__(batch_shape=torch.Size(batch_shape), event_shape=(3,), validate_args=False)

    def sample(self, sample_shape=torch.Size()):
        shape = tuple(sample_shape) + tuple(self.batch_shape)
        c = torch.randint(0, self.classes, shape).float()
        return torch.stack([3 * torch.randn(shape), c, 3 * torch.randn(shape)], -1)

    def log_prob(self, z):
        import math
        return Normal(0.0, 3.0).log_prob(z[..., 0]) + Normal(0.0, 3.0).log_prob(z[..., 2]) - math.log(self.classes)


class TinyStructured(LatentVariableModel):
    """A structured latent (kind "structured", STRUCTURED_RSAMPLE) small enough for statistical tests: a continuous
    choice, then a discrete one that depends on it, then a continuous one that depends on that, as AIR's
    where/what and step-count choices do.  Flat layout z = [u, c, v] (c stored as a float index):
        p: u ~ N(0, 1), c | u ~ Cat(softmax(a u + b)) over 3 classes, v | c ~ N(μ_c, 1), x | u, v ~ N(W [u, v], I₂);
        q: u ~ N(m(x), s_u²), c | x, u ~ Cat(softmax(MLP([x, u]))), v | x, c ~ N(MLP([x, onehot c]), s_v²)."""

    obs_shape = (2,)
    provides = (STRUCTURED_RSAMPLE,)

    def __init__(self, seeds=(0,), classes=3):
        super().__init__(seeds)
        self.classes = C = int(classes)
        self.latent = StructuredLatent(3, defensive=lambda shape, device: DefensiveTiny(C, shape, device))
        gen = torch.Generator().manual_seed(13)
        R = self.replicates
        rep = lambda t: nn.Parameter(t.expand(R, *t.shape).clone())  # noqa: E731
        self.a = rep(torch.randn(C, generator=gen))
        self.b = rep(0.5 * torch.randn(C, generator=gen))
        self.mu = rep(2 * torch.randn(C, generator=gen))
        self.weight = rep(torch.randn(2, 2, generator=gen))
        self.u_net = StackedMLP(self.seeds, [2, 8, 2], activation="tanh", salt=1)
        self.c_net = StackedMLP(self.seeds, [3, 8, C], activation="tanh", salt=2)
        self.v_net = StackedMLP(self.seeds, [2 + C, 8, 2], activation="tanh", salt=3)

    def generative_parameters(self):
        return [self.a, self.b, self.mu, self.weight]

    def guide_parameters(self):
        ids = {id(p) for p in self.generative_parameters()}
        return [p for p in self.parameters() if id(p) not in ids]

    def guide(self, x):
        return ContinuousThenCategorical(self, x)

    def guide_rsample_structured(self, x, num_particles):
        return self.guide_pass(x, (int(num_particles),), mode="rsample")

    def guide_pass(self, x, sample_shape, z=None, mode="sample"):
        from estibench.models.sbn import apply_stacked
        R, B = x.shape[:2]
        P = 1
        for s in sample_shape:
            P *= int(s)
        flat = None if z is None else z.reshape(P, R, B, 3)
        u_loc, u_ls = apply_stacked(self.u_net, x).unbind(-1)
        q_u = Normal(u_loc.expand(P, R, B), u_ls.exp().expand(P, R, B))
        u = flat[..., 0] if mode == "score" else (q_u.rsample() if mode == "rsample" else q_u.sample())
        c_logits = apply_stacked(self.c_net, torch.cat([x.expand(P, R, B, 2), u.unsqueeze(-1)], -1))
        q_c = torch.distributions.Categorical(logits=c_logits)
        c = flat[..., 1].long() if mode == "score" else q_c.sample()
        onehot = torch.nn.functional.one_hot(c, self.classes).to(x.dtype)
        v_loc, v_ls = apply_stacked(self.v_net, torch.cat([x.expand(P, R, B, 2), onehot], -1)).unbind(-1)
        q_v = Normal(v_loc, v_ls.exp())
        v = flat[..., 2] if mode == "score" else (q_v.rsample() if mode == "rsample" else q_v.sample())
        out = torch.stack([u, c.to(x.dtype), v], -1).reshape(*sample_shape, R, B, 3)
        shape = tuple(sample_shape) + (R, B)
        return out, q_c.log_prob(c).reshape(shape), (q_u.log_prob(u) + q_v.log_prob(v)).reshape(shape)

    def log_joint(self, x, z):
        R = self.replicates
        u, c, v = z[..., 0], z[..., 1].long(), z[..., 2]
        lead = [1] * (z.dim() - 3)
        a, b = self.a.view(*lead, R, 1, -1), self.b.view(*lead, R, 1, -1)
        log_c = torch.log_softmax(a * u.unsqueeze(-1) + b, -1).gather(-1, c.unsqueeze(-1)).squeeze(-1)
        mu = self.mu.view(*lead, R, 1, -1).expand(*c.shape, self.classes).gather(-1, c.unsqueeze(-1)).squeeze(-1)
        mean = torch.einsum("...rbk,rkd->...rbd", torch.stack([u, v], -1), self.weight)
        return (Normal(0.0, 1.0).log_prob(u) + log_c + Normal(mu, 1.0).log_prob(v)
                + Normal(mean, 1.0).log_prob(x).sum(-1))

    @torch.no_grad()
    def sample(self, n):
        R = self.replicates
        u = torch.randn(R, n)
        c = torch.distributions.Categorical(logits=self.a.view(R, 1, -1) * u.unsqueeze(-1) + self.b.view(R, 1, -1)).sample()
        v = self.mu.gather(1, c) + torch.randn(R, n)
        x = torch.einsum("rbk,rkd->rbd", torch.stack([u, v], -1), self.weight) + torch.randn(R, n, 2)
        return torch.stack([u, c.float(), v], -1), x
