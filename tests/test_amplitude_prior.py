"""The default prior of the log phi* anchors, uniform in phi* (:class:`UniformInAmplitude`),
against scipy's truncated exponential, and through the model and the recorded priors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.distributions.transforms import biject_to
from numpyro.infer.util import log_density
from scipy import integrate, stats

from popmodel.smf.fit import FitConfig, prior_sd
from popmodel.smf.model import SMFPrior, UniformInAmplitude
from popmodel.testing import draw_from_prior

LO, HI = -7.0, -1.0
R = np.log(10.0)


def scipy_ref():
    # x = HI - y follows an exponential of rate ln 10 truncated at HI - LO
    return stats.truncexpon((HI - LO) * R, scale=1.0 / R)


def test_log_prob_is_scipys_truncated_exponential():
    d = UniformInAmplitude(LO, HI)
    y = np.linspace(LO + 1e-6, HI - 1e-6, 41)
    ref = scipy_ref().logpdf(HI - y)
    np.testing.assert_allclose(np.asarray(d.log_prob(jnp.asarray(y))), ref, rtol=1e-10, atol=1e-10)
    total, _ = integrate.quad(lambda v: float(np.exp(d.log_prob(v))), LO, HI, points=[-2.0, -1.5])
    assert total == pytest.approx(1.0, rel=1e-8)


def test_density_is_uniform_in_phi():
    """p(y) dy = p(phi) dphi with p(phi) constant: p(y) / 10^y is the same everywhere."""
    d = UniformInAmplitude(-4.0, -2.0)
    y = jnp.asarray([-3.9, -3.0, -2.5, -2.1])
    ratio = np.asarray(d.log_prob(y)) - np.asarray(y) * R
    np.testing.assert_allclose(ratio, ratio[0], atol=1e-12)
    np.testing.assert_allclose(float(np.exp(ratio[0])), 1.0 / (1e-2 - 1e-4) * R, rtol=1e-12)


def test_samples_and_moments():
    d = UniformInAmplitude(LO, HI)
    x = np.asarray(d.sample(jax.random.key(3), (200_000,)))
    assert LO <= x.min() and x.max() <= HI
    ref = scipy_ref()
    assert float(d.mean) == pytest.approx(HI - ref.mean(), rel=1e-10)
    assert x.mean() == pytest.approx(HI - ref.mean(), abs=4 * ref.std() / np.sqrt(x.size))
    ks = stats.kstest(HI - x, ref.cdf)
    assert ks.pvalue > 1e-3
    q = jnp.asarray([0.1, 0.5, 0.9])
    np.testing.assert_allclose(np.asarray(d.cdf(d.icdf(q))), np.asarray(q), rtol=1e-10)


def test_prior_sd_and_draws_follow_the_default():
    prior = SMFPrior()
    assert prior.amplitude == "linear"
    assert prior_sd(prior, "log_phi2_z1.6") == pytest.approx(scipy_ref().std(), rel=1e-10)
    assert prior_sd(SMFPrior(amplitude="log"), "log_phi2_z1.6") == pytest.approx(6 / np.sqrt(12))
    rng = np.random.default_rng(0)
    draws = np.array([draw_from_prior(SMFPrior(bounds={"log_phi2_z1.6": (-4.0, -2.0)}), rng)
                      .log_phi2 for _ in range(4000)])
    ref = stats.truncexpon(2 * R, scale=1 / R)
    mid = draws[:, 1]  # the anchor at z = 1.6
    assert stats.kstest(-2.0 - mid, ref.cdf).pvalue > 1e-3


def test_model_uses_it_and_describe_records_it():
    prior = SMFPrior()
    assert isinstance(prior.distribution("log_phi1_z0.2"), UniformInAmplitude)
    assert not isinstance(prior.distribution("alpha1"), UniformInAmplitude)
    desc = prior.describe()
    assert "10^x" in desc["log_phi2_z3.0"] and desc["log_phi2_z3.0"].endswith("[-7.0, -1.0]")
    assert desc["alpha1"] == "Uniform(-1.0, 1.0)"
    assert SMFPrior(amplitude="log").describe()["log_phi2_z3.0"] == "Uniform(-7.0, -1.0)"
    # a normal prior wins over the amplitude prior
    assert "Normal" in SMFPrior(normal={"log_phi1_z1.6": (-3.0, 0.1)}).describe()["log_phi1_z1.6"]
    with pytest.raises(ValueError, match="amplitude"):
        SMFPrior(amplitude="jeffreys")
    assert FitConfig().amplitude_prior == "linear"
    # the unconstrained map is the interval's, as for a uniform
    t = biject_to(prior.distribution("log_phi1_z1.6").support)
    assert float(t(0.0)) == pytest.approx(-4.0)


def test_model_log_density_differs_from_log_uniform_by_the_tilt():
    """ln p(theta) of the model under the two amplitude priors differs by ln 10 times the
    sum of the six log phi* anchors, plus a constant (the normalisations)."""
    import numpyro

    def prior_only(prior):
        for n in prior.names:
            numpyro.sample(n, prior.distribution(n))

    def lp(prior, vals):
        return float(log_density(prior_only, (prior,), {}, vals)[0])

    a, b = SMFPrior(), SMFPrior(amplitude="log")
    base = {n: float(np.mean(a.bounds[n])) for n in a.names}
    shifted = dict(base, **{"log_phi2_z1.6": base["log_phi2_z1.6"] + 1.3,
                            "log_phi1_z0.2": base["log_phi1_z0.2"] - 0.4})
    d0 = lp(a, base) - lp(b, base)
    d1 = lp(a, shifted) - lp(b, shifted)
    assert d1 - d0 == pytest.approx(R * (1.3 - 0.4), rel=1e-10)
