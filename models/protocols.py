"""Model capabilities as declared protocols, stated once.

A model *declares* what it provides (``provides = (LAYERED_BERNOULLI, ...)``, a class attribute);
its latent space contributes its kind (:data:`CATEGORICAL`, :data:`BERNOULLI`) and, when it is small
enough to enumerate, :data:`ENUMERABLE`.  An estimator *declares* what it needs (``needs``) and which
of the special capabilities it handles (``handles``: an unnormalised prior's log Z gradient), and
which it uses where a model provides them and does without otherwise (``uses``: never a reason to
refuse); it asks a model only about what it declared (``Estimator.provided``), never probes attributes.
:func:`refusal` (called by ``Estimator.check`` and the harness, before any work) returns one line
naming the first missing capability, or the first member of a declared capability that the model
lacks, so a partial model is refused up front instead of failing at its first step.

The protocols
-------------
:data:`CATEGORICAL`        one categorical variable, stored as an integer index (``latent.num_categories``)
:data:`BERNOULLI`          a vector of binary variables in {0, 1} (``latent.num_bits``)
:data:`MULTICATEGORICAL`   a vector of D categorical variables of C states each, stored as integer indices ``[*, D]``
                           (``latent.num_vars``, ``latent.num_categories``)
:data:`NORMAL`             a vector of real-valued variables (``latent.dim``) with a Gaussian guide
:data:`STRUCTURED`         a sequence of discrete and continuous choices (AIR's step count and per-step where / what),
                           stored flat (``latent.dim`` numbers per particle; the model's docstring gives the layout)
:data:`ENUMERABLE`         ``enumerate_latents()``: every latent state, for exact results
:data:`RELAXED_LOG_JOINT`  ``relaxed_log_joint(x, z̃)``: log p_θ(x, z̃) at a relaxed latent (simplex or [0, 1])
:data:`RELAXED_LOG_JOINT_MASS`  ``relaxed_log_joint_mass(x, z̃)``: the categorical relaxation that averages
                           log-masses (Σ_c z̃_c log p_c), for ``concrete[relaxation=mass]``
:data:`FACTORIAL_CATEGORICAL` a guide that factorises over D categorical variables of C states, for the estimators
    that work on one-hot codes (categorical DisARM, IndeCateR, unordered sets, Gumbel-Rao, GST, ReinMax, ZGR):
    ``categorical_shape``       (D, C)
    ``guide_logits(x)``         the logits of q(z_d | x), ``[R, B, D, C]`` (normalised or not)
    ``log_joint_onehot(x, y)``  log p_θ(x, z) at the one-hot code y of z, ``[*particles, R, B]`` for y
                                ``[*particles, R, B, D, C]``; exact at one-hot y and differentiable in y (the
                                straight-through estimators' backward pass goes through it; the model's docstring
                                says how it extends to non-one-hot y)
:data:`LAYERED_BERNOULLI`  the layered interface of sigmoid belief networks (layer 0 is nearest x):
    ``layer_sizes``            stochastic layer sizes; z = cat(z₀, z₁, …)
    ``guide_layer(l, h)``      logits of q(z_l | h): h = x for l = 0, else z_{l−1}
    ``prior_layer(l, h)``      logits of p(z_l | h): h = z_{l+1}; the top layer ignores h
    ``log_likelihood(x, z0)``  log p(x | z₀), ``[*particles, R, B]``
    ``log_prior(layers)``      Σ_l log p(z_l | z_{l+1})
    ``split(z)`` / ``join(layers)``  z ↔ list of layers
    Every member accepts relaxed z ∈ [0, 1] (the Bernoulli log-mass below, evaluated as is).
:data:`UNNORMALISED_PRIOR` a prior known up to its normaliser (RBM priors): ``log_joint`` omits −log Z;
    ``log_partition()`` returns an exact or estimated log Z per replicate, ``negative_samples(n)``
    samples of the prior ``[n, R, D]`` and ``log_prior_unnormalised(z)`` log p*(z) = log p(z) + log Z
    (``[*, R, B]``), for the −∇ log Z term (``estimators.base.log_partition_term``); and
    ``sample_observations(z)``: x ~ p(x | z) for prior samples ``[n, R, D]``, ``[R, n, *obs]`` (a sleep
    phase on the negative samples).  Handled in one place: an estimator whose
    ``handles`` does not list it is refused for such a model.
:data:`RELAXED_BOLTZMANN` the relaxed interface of a VAE with a Boltzmann prior (``rbm_vae``), for the estimators
    that feed a continuous relaxation ζ of z to the decoder and the guide (``gumbolt``, the DVAE++ smoothings):
    ``split_sizes``             (n₁, n₂): z = [z₁, z₂], the two groups of the prior (and of a hierarchical guide)
    ``hierarchical_guide``      False: q(z | x) factorial over all bits, logits ``encoder_logits(0, x)``;
                                True: q(z₁ | x) ``encoder_logits(0, x)`` and q(z₂ | x, ζ₁) ``encoder_logits(1, x, ζ₁)``
    ``encoder_logits(g, x, ζ₁)`` those logits, ζ₁ relaxed or binary
    ``log_likelihood(x, ζ)``    log p(x | ζ) at relaxed (or binary) latents, ``[*particles, R, B]``
    and ``log_prior_unnormalised`` of UNNORMALISED_PRIOR, evaluated as is at relaxed z.
:data:`MULTILINEAR_ENERGY` ``log_prior_unnormalised(z)`` is affine in every bit given the others (−E(z) of an RBM
    over z = [z₁, z₂]; not −F(z) with hidden units summed out), so at independent means m it equals
    E[log p*(z)] under factorial Bernoullis with those means: DVAE++'s analytic cross-entropy (§5).
:data:`REPARAMETERISED`    continuous latents with ``guide_rsample(x, K)`` returning (z, log q) differentiable in φ.
:data:`STRUCTURED_RSAMPLE`  ``guide_rsample_structured(x, K)`` for structured latents: (z, log q of the discrete
    choices, log q of the continuous ones), each ``[K, R, B]`` but z; the continuous choices reparameterised (differentiable
    in φ, and every later choice's distribution computed from them), the discrete ones sampled (their log q
    differentiable in φ through its parameters, including the path through earlier continuous choices), so
    Σ ∇ log q_disc · signal + ∇(pathwise) is the score-function-plus-reparameterisation gradient (VIMCO on AIR).
:data:`TRAINING_MEAN`      ``train_mean``: x̄, the mean training observation (flat ``[obs]``, from the data layer), for
    centring inputs; an estimator that centres its own networks' inputs with it (NVIL's and the REBAR code's
    baselines) lists it in ``uses`` and does without it on a model that does not provide it.
:data:`CLOSED_FORM_GAUSSIAN` exact ground truth in closed form for a continuous model (the role enumeration plays
    for discrete ones): ``log_marginal_exact(x)``, ``elbo_exact(x)`` and ``negative_inclusive_kl_exact(x)``,
    each ``[R, B]`` and differentiable in θ and φ (``harness.exact`` dispatches on it).
:data:`GMM_TRUTH`          the true parameters of a Gaussian mixture, for a study that measures a model against its
    truth (the GMM study of RWS §4.3): ``true_model()`` (a frozen copy with θ at the truth, whose ``sample(n)``
    draws the study's data), ``prior_probs()`` (the mixture weights ``[R, C]``), ``means`` ``[C]`` and ``std`` (the
    clusters' common standard deviation).  Declared by a model (``provides``), never probed; a study states it in
    ``Study.needs``.

A study states what it needs from a model the same way (``Study.needs``, the names of these constants), and the
command line refuses a model that does not provide it in one line before any work (:func:`named` reads a name).

The layered helpers (the Bernoulli log-mass and the ancestral pass through the guide's layers) live
here, next to the protocol, once.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, FrozenSet, Iterable, List, Optional, Tuple

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Capability:
    """A named protocol: the members (methods or attributes) a model that provides it must have."""

    name: str
    members: Tuple[str, ...] = ()
    doc: str = ""

    def missing(self, model) -> List[str]:
        """The members a model that declares this capability lacks (none for a complete one)."""
        return [m for m in self.members if getattr(model, m, None) is None]

    def __str__(self) -> str:
        return self.name


CATEGORICAL = Capability("categorical latent", ("latent",), "one categorical variable (integer index)")
BERNOULLI = Capability("bernoulli latent", ("latent",), "a vector of binary variables in {0, 1}")
MULTICATEGORICAL = Capability("multicategorical latent", ("latent",),
                              "a vector of categorical variables (integer indices)")
FACTORIAL_CATEGORICAL = Capability("factorial categorical interface",
                                   ("categorical_shape", "guide_logits", "log_joint_onehot"),
                                   "a guide factorised over D categoricals; log p_θ(x, z) at one-hot codes")
NORMAL = Capability("normal latent", ("latent",), "a vector of real-valued variables (Gaussian guides)")
STRUCTURED = Capability("structured latent", ("latent",), "a sequence of discrete and continuous choices, stored flat")
ENUMERABLE = Capability("enumerable latents", ("enumerate_latents",), "every latent state can be listed")
RELAXED_LOG_JOINT = Capability("relaxed log joint", ("relaxed_log_joint",),
                               "log p_θ(x, z̃) at a relaxed latent")
RELAXED_LOG_JOINT_MASS = Capability("relaxed log joint (log-mass average)", ("relaxed_log_joint_mass",),
                                    "Σ_c z̃_c log p_θ(x, z = c) at a relaxed categorical latent")
LAYERED_BERNOULLI = Capability(
    "layered Bernoulli interface",
    ("layer_sizes", "guide_layer", "prior_layer", "log_likelihood", "log_prior", "split", "join"),
    "a chain of factorial Bernoulli layers in the guide and the generative model")
UNNORMALISED_PRIOR = Capability("unnormalised prior", ("log_partition", "negative_samples", "log_prior_unnormalised",
                                                       "sample_observations"),
                                "a prior known up to log Z, with log Z estimates and prior samples")
RELAXED_BOLTZMANN = Capability("relaxed Boltzmann-prior interface",
                              ("split_sizes", "hierarchical_guide", "encoder_logits", "log_likelihood",
                               "log_prior_unnormalised"),
                              "the guide's groups, the decoder and the unnormalised prior at relaxed latents")
MULTILINEAR_ENERGY = Capability("multilinear energy", ("log_prior_unnormalised",),
                                "log p*(z) affine in every bit, so its mean under factorial q is log p* at the means")
CLOSED_FORM_GAUSSIAN = Capability("closed-form Gaussian ground truth",
                                  ("log_marginal_exact", "elbo_exact", "negative_inclusive_kl_exact"),
                                  "exact log p(x), ELBO and −KL(p(z|x) ‖ q(z|x)) in closed form")
REPARAMETERISED = Capability("reparameterised continuous latents", ("guide_rsample",),
                             "z = g_φ(ε, x) differentiable in φ")

STRUCTURED_RSAMPLE = Capability("structured reparameterised sampling", ("guide_rsample_structured",),
                                "continuous choices reparameterised, discrete ones scored, log q split by kind")
TRAINING_MEAN = Capability("training mean", ("train_mean",),
                           "x̄, the mean training observation, for centring inputs")
GMM_TRUTH = Capability("true GMM parameters", ("true_model", "prior_probs", "means", "std"),
                       "the true mixture weights, means and std, and a frozen copy at the truth that draws data")

#: every protocol, for documentation and the ``estibench check`` table
ALL = (CATEGORICAL, BERNOULLI, MULTICATEGORICAL, NORMAL, STRUCTURED, ENUMERABLE, RELAXED_LOG_JOINT,
       RELAXED_LOG_JOINT_MASS, FACTORIAL_CATEGORICAL, LAYERED_BERNOULLI, UNNORMALISED_PRIOR, RELAXED_BOLTZMANN, MULTILINEAR_ENERGY, REPARAMETERISED, STRUCTURED_RSAMPLE, CLOSED_FORM_GAUSSIAN,
       TRAINING_MEAN, GMM_TRUTH)
#: capabilities an estimator must declare in ``handles`` to be used with a model that provides them
SPECIAL = (UNNORMALISED_PRIOR,)


def named(name: str) -> Capability:
    """The capability this module declares as ``name`` (``"GMM_TRUTH"``), as a study names what it needs
    (``Study.needs``) without importing torch; a one-line ValueError for a name that is none."""
    found = globals().get(name)
    if not isinstance(found, Capability):
        known = ", ".join(sorted(k for k, v in globals().items() if isinstance(v, Capability)))
        raise ValueError(f"no capability {name!r} in estibench.models.protocols (known: {known})")
    return found


def name_of(capability: Capability) -> str:
    """The name this module declares ``capability`` under (``GMM_TRUTH``), or its own name when it declares none."""
    return next((k for k, v in globals().items() if v is capability), capability.name)


def capabilities(model) -> FrozenSet[Capability]:
    """What a model provides: its declared ``provides``, its latent space's kind and, when the latent
    space is small enough, :data:`ENUMERABLE`."""
    latent = getattr(model, "latent", None)
    own = getattr(latent, "capability", None)
    out = set(getattr(model, "provides", ()))
    if own is not None:
        out.add(own)
        if latent.enumerable:
            out.add(ENUMERABLE)
    return frozenset(out)


def refusal(model, needs: Iterable[Capability], handles: Iterable[Capability] = (),
            who: str = "this estimator") -> Optional[str]:
    """One line saying why ``who`` cannot use ``model`` (``None`` when it can)."""
    kind = type(model).__name__
    declared = set(getattr(model, "provides", ()))
    for cap in sorted(declared, key=lambda c: c.name):
        lost = cap.missing(model)
        if lost:
            return (f"{kind} declares the {cap.name} but lacks {', '.join(lost)}; "
                    f"{who} cannot use it (see estibench.models.protocols)")
    have = capabilities(model)
    for cap in sorted(needs, key=lambda c: c.name):
        if cap not in have:
            members = f" ({', '.join(cap.members)})" if cap.members and cap.members != ("latent",) else ""
            return f"{who} needs the {cap.name}{members}, which {kind} does not provide"
        lost = cap.missing(model)
        if lost:
            return f"{who} needs the {cap.name}; {kind} lacks {', '.join(lost)}"
    handled = set(handles)
    for cap in SPECIAL:
        if cap in have and cap not in handled:
            return (f"{kind} has an {cap.name} (log Z): {who} does not handle its gradient −∇ log Z, so it "
                    f"would train the prior without it")
    return None


# -- the layered helpers (stated once) --------------------------------------------------------------
def bernoulli_log_mass(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Σ_d z_d l_d − softplus(l_d): log Bern(z; σ(l)) for z ∈ {0, 1}, and its linear extension on [0, 1]."""
    return (z * logits - F.softplus(logits)).sum(-1)


def bernoulli_log_mass_two_sums(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The same value summed as Σ_d z_d l_d − Σ_d softplus(l_d) (two reductions; differs from
    :func:`bernoulli_log_mass` in the last bits).  The DVAE++ estimators use it, so that the cells they
    stored reproduce bit for bit."""
    return (z * logits).sum(-1) - F.softplus(logits).sum(-1)


def guide_chain(model, x: torch.Tensor, num_particles: int,
                draw: Callable[[int, torch.Tensor], torch.Tensor]) -> Tuple[List[torch.Tensor], List[torch.Tensor]]:
    """Ancestral pass through the guide's layers (:data:`LAYERED_BERNOULLI`): a_0 = guide_layer(0, x)
    expanded to K particles, z_l = draw(l, a_l), a_{l+1} = guide_layer(l + 1, z_l).  Returns
    (logits, latents), one tensor per layer."""
    a = model.guide_layer(0, x)
    a = a.expand(num_particles, *a.shape)
    logits, layers = [], []
    for l in range(len(model.layer_sizes)):
        if l > 0:
            a = model.guide_layer(l, layers[-1])
        logits.append(a)
        layers.append(draw(l, a))
    return logits, layers
