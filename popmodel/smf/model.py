"""The thin NumPyro model of the mass function: priors on the 11 parameters, then the likelihood.

Priors (design; Leja et al. 2020 did not publish theirs):
broad uniforms, log phi* in [-7, -1] at every anchor, log M* in [9.5, 12], alpha1 in
(-1, 1) and alpha2 in (-1.99, -1). The two slopes live in non-overlapping ranges, so the two
components cannot swap (no label switching) and no -inf factor is needed, and alpha2 > -2
keeps every mass integral (rho_*, the number above a limit) convergent. A parameter may
instead carry a normal prior truncated to its range (used for simulation-based calibration).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from popmodel.smf.evolution import DEFAULT_ANCHORS, ContinuityParams, parameter_names
from popmodel.smf.likelihood import LikelihoodData, log_likelihood

__all__ = ["SMFPrior", "likelihood_sites", "smf_model"]


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
        bounds: name -> (low, high), the support of each parameter (uniform prior).
        normal: name -> (mean, sigma): a normal prior truncated to ``bounds`` instead.
        density_terms: labels ``delta_<field>_z<lo>_<hi>`` of the cosmic-variance terms
            (:mod:`popmodel.smf.density`), in the data's order; each gets a non-centred
            ``<label>_eta ~ N(0, 1)`` and ``<label> = sigma_DM * eta`` (``L eta`` for nested
            fields, :mod:`popmodel.smf.density`). Empty: no terms.
    """

    anchor_z: tuple[float, ...] = DEFAULT_ANCHORS
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    normal: dict[str, tuple[float, float]] = field(default_factory=dict)
    density_terms: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        b = _default_bounds(tuple(self.anchor_z))
        b.update(self.bounds)
        object.__setattr__(self, "bounds", b)
        object.__setattr__(self, "anchor_z", tuple(float(z) for z in self.anchor_z))
        object.__setattr__(self, "density_terms", tuple(str(t) for t in self.density_terms))
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
        return dist.Uniform(lo, hi)

    def describe(self) -> dict[str, str]:
        out = {}
        for n in self.names:
            lo, hi = self.bounds[n]
            if n in self.normal:
                out[n] = f"Normal({self.normal[n][0]}, {self.normal[n][1]}) truncated to [{lo}, {hi}]"
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
