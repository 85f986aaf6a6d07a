"""The thin NumPyro model of the mass function: priors on the 11 parameters, then the likelihood.

Priors (design; Leja et al. 2020 did not publish theirs):
log phi* in [-7, -1] at every anchor with a density uniform in phi* (p(log phi*) proportional
to phi*, :class:`UniformInAmplitude`), log M* uniform in [9.5, 12], alpha1 uniform in (-1, 1) and
alpha2 uniform in (-1.99, -1). The two slopes live in non-overlapping ranges, so the two
components cannot swap (no label switching) and no -inf factor is needed, and alpha2 > -2
keeps every mass integral (rho_*, the number above a limit) convergent. A parameter may
instead carry a normal prior truncated to its range (used for simulation-based calibration).

Why uniform in phi* rather than in log phi*: a prior flat in log phi* gives every decade of an
amplitude the same weight, so where the data cannot tell a faint second component from none
(a single field, or the low-mass end near the completeness limits) the posterior runs along a
curved ridge towards phi2 -> 0 with alpha1 -> -1 and alpha2 -> -2, over decades that the data
do not rule out. NUTS cannot sample that ridge cleanly (it narrows as phi2 fades). For a
component that is faint against the other, the Fisher information of an inhomogeneous Poisson
process about its amplitude stays finite as the amplitude goes to zero, so Jeffreys' rule is
flat in the amplitude itself there: the prior uniform in phi* is that limit, and it cuts the
ridge where the data leave it open. ``SMFPrior(amplitude="log")`` restores the prior flat in
log phi*.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro.distributions import constraints
from numpyro.distributions.util import promote_shapes

from popmodel.smf.evolution import DEFAULT_ANCHORS, ContinuityParams, parameter_names
from popmodel.smf.likelihood import LikelihoodData, log_likelihood

__all__ = ["AMPLITUDE_PRIORS", "SMFPrior", "UniformInAmplitude", "likelihood_sites", "smf_model"]

#: the priors of the log phi* anchors: "linear" (uniform in phi*, the default) or "log"
AMPLITUDE_PRIORS = ("linear", "log")


class UniformInAmplitude(dist.Distribution):
    """log10 phi on [low, high] with a density uniform in phi = 10^y: p(y) = r e^(r y) /
    (e^(r high) - e^(r low)), r = ln 10 (a truncated exponential in y).

    ``biject_to(support)`` maps it to the real line like a uniform on the same interval.
    """

    arg_constraints: ClassVar[dict] = {"low": constraints.real, "high": constraints.real}
    reparametrized_params: ClassVar[list] = ["low", "high"]
    RATE = float(np.log(10.0))

    def __init__(self, low=0.0, high=1.0, *, validate_args=None):
        self.low, self.high = promote_shapes(low, high)
        batch_shape = jnp.broadcast_shapes(jnp.shape(low), jnp.shape(high))
        super().__init__(batch_shape=batch_shape, validate_args=validate_args)

    @constraints.dependent_property(is_discrete=False, event_dim=0)
    def support(self):
        return constraints.interval(self.low, self.high)

    def _log_norm(self):
        r, width = self.RATE, self.high - self.low
        # log of the integral of e^(r y) over [low, high], without overflow
        return r * self.high + jnp.log(-jnp.expm1(-r * width)) - jnp.log(r)

    def log_prob(self, value):
        return self.RATE * value - self._log_norm()

    def icdf(self, q):
        r, width = self.RATE, self.high - self.low
        return self.high + jnp.log(q + (1.0 - q) * jnp.exp(-r * width)) / r

    def cdf(self, value):
        r = self.RATE
        return jnp.expm1(r * (value - self.low)) / jnp.expm1(r * (self.high - self.low))

    def sample(self, key, sample_shape=()):
        q = jax.random.uniform(key, sample_shape + self.batch_shape)
        return self.icdf(q)

    @property
    def mean(self):
        r, width = self.RATE, self.high - self.low
        return self.high - 1.0 / r + width / jnp.expm1(r * width)


def _default_bounds(anchor_z: tuple[float, ...]) -> dict[str, tuple[float, float]]:
    b = {}
    for n in parameter_names(anchor_z):
        if n.startswith("log_phi"):
            b[n] = (-7.0, -1.0)
        elif n.startswith("log_mstar"):
            b[n] = (9.5, 12.0)
    b["alpha1"] = (-1.0, 1.0)
    b["alpha2"] = (-1.99, -1.0)
    return b


@dataclass(frozen=True)
class SMFPrior:
    """Priors of the continuity model.

    Attributes:
        anchor_z: anchor redshifts.
        bounds: name -> (low, high), the support of each parameter's prior.
        normal: name -> (mean, sigma): a normal prior truncated to ``bounds`` instead.
        amplitude: prior of the log phi* anchors that carry no normal prior: "linear"
            (default; uniform in phi*, :class:`UniformInAmplitude`) or "log" (uniform in
            log phi*). The module docstring gives the reason for the default.
        density_terms: labels ``delta_<field>_z<lo>_<hi>`` of the cosmic-variance terms
            (:mod:`popmodel.smf.density`), in the data's order; each gets a non-centred
            ``<label>_eta ~ N(0, 1)`` and ``<label> = sigma_DM * eta`` (``L eta`` for nested
            fields, :mod:`popmodel.smf.density`). Empty: no terms.
    """

    anchor_z: tuple[float, ...] = DEFAULT_ANCHORS
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    normal: dict[str, tuple[float, float]] = field(default_factory=dict)
    density_terms: tuple[str, ...] = ()
    amplitude: str = "linear"

    def __post_init__(self) -> None:
        b = _default_bounds(tuple(self.anchor_z))
        b.update(self.bounds)
        object.__setattr__(self, "bounds", b)
        object.__setattr__(self, "anchor_z", tuple(float(z) for z in self.anchor_z))
        object.__setattr__(self, "density_terms", tuple(str(t) for t in self.density_terms))
        if self.amplitude not in AMPLITUDE_PRIORS:
            raise ValueError(f"amplitude must be one of {AMPLITUDE_PRIORS}, got {self.amplitude!r}")
        unknown = (set(self.bounds) | set(self.normal)) - set(self.names)
        if unknown:
            raise ValueError(f"unknown parameter(s) in prior: {sorted(unknown)}; known: {self.names}")
        if self.bounds["alpha2"][1] > self.bounds["alpha1"][0]:
            raise ValueError("alpha2's range must lie below alpha1's (the components must not swap)")
        if self.bounds["alpha2"][0] <= -2.0:
            raise ValueError("alpha2 must stay above -2 so that the mass integrals converge")

    @property
    def names(self) -> list[str]:
        """The mass-function parameters."""
        return parameter_names(self.anchor_z)

    @property
    def eta_names(self) -> list[str]:
        """The standard-normal latent variables of the density terms."""
        return [f"{t}_eta" for t in self.density_terms]

    @property
    def latent_names(self) -> list[str]:
        """Every sampled site."""
        return self.names + self.eta_names

    def distribution(self, name: str) -> dist.Distribution:
        lo, hi = self.bounds[name]
        if name in self.normal:
            mu, sd = self.normal[name]
            return dist.TruncatedNormal(mu, sd, low=lo, high=hi)
        if self.linear_amplitude(name):
            return UniformInAmplitude(lo, hi)
        return dist.Uniform(lo, hi)

    def linear_amplitude(self, name: str) -> bool:
        """Whether ``name`` carries the prior uniform in phi* (:class:`UniformInAmplitude`)."""
        return (self.amplitude == "linear" and name.startswith("log_phi")
                and name not in self.normal)

    def describe(self) -> dict[str, str]:
        out = {}
        for n in self.names:
            lo, hi = self.bounds[n]
            if n in self.normal:
                out[n] = f"Normal({self.normal[n][0]}, {self.normal[n][1]}) truncated to [{lo}, {hi}]"
            elif self.linear_amplitude(n):
                out[n] = f"uniform in 10^x (p(x) proportional to 10^x) on [{lo}, {hi}]"
            else:
                out[n] = f"Uniform({lo}, {hi})"
        return out


def smf_model(data: LikelihoodData, prior: SMFPrior) -> dict:
    """NumPyro model: sample the 11 parameters (and the density terms), add ln L as a factor.

    Returns the sampled mass-function parameters (name -> value).
    """
    vals = {n: numpyro.sample(n, prior.distribution(n)) for n in prior.names}
    likelihood_sites(vals, data, prior)
    return vals


def likelihood_sites(vals: dict, data: LikelihoodData, prior: SMFPrior) -> None:
    """The model's sites after the mass-function parameters ``vals``: the non-centred density
    terms (sampled ``<label>_eta``, deterministic ``<label>``) and ln L as a factor."""
    p = ContinuityParams.from_dict(vals, prior.anchor_z)
    delta = None
    if prior.density_terms:
        if data.n_density_terms != len(prior.density_terms):
            raise ValueError(f"the prior names {len(prior.density_terms)} density terms, the "
                             f"data have {data.n_density_terms}")
        eta = jnp.stack([numpyro.sample(n, dist.Normal(0.0, 1.0)) for n in prior.eta_names])
        delta = data.delta_from_eta(eta)
        for i, t in enumerate(prior.density_terms):
            numpyro.deterministic(t, delta[i])
    numpyro.factor("log_likelihood", log_likelihood(p, data, delta=delta))
