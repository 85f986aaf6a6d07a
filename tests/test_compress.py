"""Tests for popmodel.compress (Gauss-Hermite compression of per-galaxy posteriors)."""

import dataclasses

import astropy.units as u
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, stats

from popmodel.catalog import CallablePrior, CatalogError, PosteriorCatalog
from popmodel.compress import gauss_hermite, gaussianity, quadrature_galaxies
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.evolution import leja2020_params
from popmodel.smf.likelihood import galaxy_log_terms, log_likelihood
from popmodel.smf.schechter import ln_phi
from popmodel.survey import Field, Survey

RNG_SEED = 1058390


def gaussian_catalog(mu_m, mu_z, sd_m, sd_z, rho, n_samples=4000, seed=RNG_SEED):
    """Galaxies whose samples have exactly the given mean and covariance (whitened draws)."""
    rng = np.random.default_rng(seed)
    n = len(mu_m)
    ms, zs = [], []
    for i in range(n):
        e = rng.standard_normal((n_samples, 2))
        e -= e.mean(axis=0)
        e = e @ np.linalg.inv(np.linalg.cholesky(np.cov(e.T, bias=True))).T  # exact whitening
        cov = np.array([[sd_m[i] ** 2, rho[i] * sd_m[i] * sd_z[i]],
                        [rho[i] * sd_m[i] * sd_z[i], sd_z[i] ** 2]])
        x = e @ np.linalg.cholesky(cov).T + [mu_m[i], mu_z[i]]
        ms.append(x[:, 0])
        zs.append(x[:, 1])
    return PosteriorCatalog.from_arrays(
        ids=[f"g{i}" for i in range(n)], fields=["F"] * n,
        log_mass=np.concatenate(ms), z=np.concatenate(zs),
        galaxy_index=np.repeat(np.arange(n), n_samples),
    )


MU_M, MU_Z = [10.0, 11.2, 9.4], [1.0, 2.0, 0.7]
SD_M, SD_Z, RHO = [0.3, 0.2, 0.15], [0.05, 0.1, 0.08], [0.6, -0.3, 0.0]


def _node_sum(cat, f):
    return np.bincount(cat.galaxy_index, cat.weight * f(cat.log_mass, cat.z))


def test_rule_integrates_gaussian_moments_exactly():
    """E[m^a z^b] of a correlated Gaussian: exact for total degree <= 5 with 8 x 3 nodes."""
    gh = gauss_hermite(gaussian_catalog(MU_M, MU_Z, SD_M, SD_Z, RHO), n_mass=8, n_z=3)
    assert np.all(gh.n_samples == 24)
    mm, mz = np.array(MU_M), np.array(MU_Z)
    sm, sz, r = np.array(SD_M), np.array(SD_Z), np.array(RHO)
    np.testing.assert_allclose(_node_sum(gh, lambda m, z: np.ones_like(m)), 1.0, rtol=1e-12)
    np.testing.assert_allclose(_node_sum(gh, lambda m, z: (m - mm[gh.galaxy_index]) ** 4),
                               3 * sm**4, rtol=1e-10)
    np.testing.assert_allclose(_node_sum(gh, lambda m, z: (z - mz[gh.galaxy_index]) ** 2),
                               sz**2, rtol=1e-10)
    np.testing.assert_allclose(
        _node_sum(gh, lambda m, z: (m - mm[gh.galaxy_index]) * (z - mz[gh.galaxy_index])),
        r * sm * sz, atol=1e-12)


def test_rule_matches_quadrature_of_schechter_tail():
    """A Gaussian mass posterior on the exponential cut-off: 8 nodes against scipy quad."""
    p = leja2020_params()
    cat = gaussian_catalog([10.5, 11.0, 11.5], [1.0, 1.0, 1.0], [0.3, 0.3, 0.3],
                           [1e-9, 1e-9, 1e-9], [0.0, 0.0, 0.0])
    cat = dataclasses.replace(cat, z=np.ones_like(cat.z))  # exact redshift: one z node
    gh = gauss_hermite(cat, n_mass=8)
    assert np.all(gh.n_samples == 8)
    phi = np.exp(np.asarray(ln_phi(jnp.asarray(gh.log_mass), jnp.asarray(gh.z), p)))
    approx = np.bincount(gh.galaxy_index, gh.weight * phi)
    for i, mu in enumerate([10.5, 11.0, 11.5]):
        def f(m, mu=mu):
            return float(np.exp(ln_phi(jnp.asarray(m), jnp.asarray(1.0), p))) * stats.norm.pdf(m, mu, 0.3)
        exact = integrate.quad(f, mu - 3.0, mu + 3.0, epsabs=0, epsrel=1e-10, limit=200)[0]
        assert abs(np.log(approx[i] / exact)) < 2e-3, (mu, approx[i], exact)


def test_kept_galaxies_unchanged_and_marked():
    cat = gaussian_catalog(MU_M, MU_Z, SD_M, SD_Z, RHO, n_samples=50)
    keep = np.array([False, True, False])
    gh = gauss_hermite(cat, keep_samples=keep)
    np.testing.assert_array_equal(gh.n_samples, [24, 50, 24])
    np.testing.assert_array_equal(gh.log_mass[24:74], cat.log_mass[50:100])
    np.testing.assert_array_equal(quadrature_galaxies(gh), ~keep)
    np.testing.assert_array_equal(quadrature_galaxies(cat), [False, False, False])
    assert gh.meta["compression"]["n_kept_as_samples"] == 1


def test_interim_prior_evaluated_at_nodes():
    cat = gaussian_catalog(MU_M, MU_Z, SD_M, SD_Z, RHO, n_samples=50)

    def lp(m, z, sfr=None):
        return -0.5 * m + np.log1p(z)

    with_col = cat.with_interim_prior(CallablePrior(lp))
    with pytest.raises(CatalogError, match="interim_prior"):
        gauss_hermite(with_col)
    gh = gauss_hermite(with_col, interim_prior=CallablePrior(lp))
    np.testing.assert_allclose(gh.log_prior, lp(gh.log_mass, gh.z))


def test_invalid_nodes_named_or_kept():
    cat = gaussian_catalog([10.0, 10.0], [1.0, 0.15], [0.2, 0.2], [0.1, 0.1], [0.0, 0.0], 40)
    with pytest.raises(CatalogError, match="g1"):
        gauss_hermite(cat)
    gh = gauss_hermite(cat, on_invalid="keep")
    np.testing.assert_array_equal(quadrature_galaxies(gh), [True, False])
    with pytest.raises(CatalogError, match="node counts"):
        gauss_hermite(cat, n_mass=0)
    # the mass support's lower end and the redshift support's upper end too (galaxy g0: its
    # 8-node rule reaches 4.1 sigma = 0.83 dex below its mean; the 3 z nodes reach +0.17)
    cat = gaussian_catalog([4.5, 10.0], [1.0, 1.0], [0.2, 0.2], [0.1, 0.1], [0.0, 0.0], 40)
    with pytest.raises(CatalogError, match=r"g0.*4\.0 <= log M"):
        gauss_hermite(cat, log_mass_min=4.0)
    gh = gauss_hermite(cat, on_invalid="keep", log_mass_min=4.0)
    np.testing.assert_array_equal(quadrature_galaxies(gh), [False, True])
    assert np.all(quadrature_galaxies(gauss_hermite(cat)))  # no lower bound by default
    gh = gauss_hermite(cat, on_invalid="keep", z_max=1.1)
    np.testing.assert_array_equal(quadrature_galaxies(gh), [False, False])


def test_gaussianity_flags_skewed_posterior():
    rng = np.random.default_rng(RNG_SEED)
    m = np.concatenate([rng.normal(10, 0.2, 4000), 10 + rng.lognormal(0, 0.8, 4000)])
    cat = PosteriorCatalog.from_arrays(ids=["sym", "skew"], fields=["F", "F"], log_mass=m,
                                       z=np.concatenate([rng.normal(1, 0.05, 8000)]),
                                       galaxy_index=np.repeat([0, 1], 4000))
    g = gaussianity(cat)
    assert abs(g["skew_log_mass"][0]) < 0.15 and g["skew_log_mass"][1] > 1.0
    assert abs(g["kurt_z"][0]) < 0.3


@pytest.fixture(scope="module")
def survey():
    f = Field("F", 30 * u.arcmin**2, 0.5, 2.5, [0.65, 3.0], [9.0, 10.0], mass_error_dex=0.3,
              z_error=0.02)
    return Survey([f])


def test_compressed_likelihood_no_jensen_and_close_to_many_samples(survey):
    """Fully compressed data get no Jensen term; the compressed ln L is close to the one from
    many moment-matched samples (Monte Carlo noise aside) and differences between parameter
    points agree."""
    cat, _ = draw_mock(survey, seed=3, n_samples=512, moment_matched=True)
    dense = prepare_smf_data(cat, survey)
    gh = prepare_smf_data(cat, survey, posterior="gauss-hermite")
    assert gh.report.posterior == "gauss-hermite" and gh.report.n_kept_as_samples == 0
    p0 = leja2020_params()
    p1 = p0.replace(log_mstar=p0.log_mstar + 0.05)
    a = float(log_likelihood(p0, gh.arrays, True))
    assert a == pytest.approx(float(log_likelihood(p0, gh.arrays, False)), abs=1e-9)
    d_gh = float(log_likelihood(p1, gh.arrays) - log_likelihood(p0, gh.arrays))
    d_mc = float(log_likelihood(p1, dense.arrays) - log_likelihood(p0, dense.arrays))
    n = cat.n_galaxies
    assert abs(d_gh - d_mc) < 0.02 * abs(d_mc) + 0.5, (d_gh, d_mc, n)
    # per galaxy, up to the constant that differs between the two representations
    t_gh = np.concatenate([np.asarray(t).ravel() for t in galaxy_log_terms(p0, gh.arrays)])
    assert np.all(np.isfinite(t_gh[np.abs(t_gh) < 1e29]))


def test_moment_matched_mock_has_exact_moments(survey):
    cat, _ = draw_mock(survey, seed=4, n_samples=6, moment_matched=True)
    m = cat.log_mass.reshape(-1, 6)
    np.testing.assert_allclose(m.mean(axis=1), cat.obs_log_mass, atol=1e-12)
    np.testing.assert_allclose(m.std(axis=1), 0.3, rtol=1e-12)
    with pytest.raises(ValueError, match="moment_matched"):
        draw_mock(survey, seed=4, n_samples=1, moment_matched=True)


def test_gaussian_galaxies_and_auto_representation(survey):
    """`gaussian_galaxies` passes Gaussian posteriors and flags bimodal ones; posterior="auto"
    compresses the former and leaves the latter's samples (and likelihood terms) untouched."""
    from popmodel.compress import gaussian_galaxies

    cat, _ = draw_mock(survey, seed=4, n_samples=100, moment_matched=True)
    assert gaussian_galaxies(cat).mean() > 0.99
    # eight equal-weight samples are enough to be judged (1/sum(w^2) = 8 up to rounding)
    few, _ = draw_mock(survey, seed=4, n_samples=8)
    assert gaussian_galaxies(few).mean() > 0.95
    # every 7th galaxy: a bimodal mass posterior (two peaks 0.8 dex apart, same mean)
    bad = np.arange(cat.n_galaxies) % 7 == 0
    lm = cat.log_mass.copy()
    j = np.arange(lm.size) - cat.offsets[cat.galaxy_index]
    sel = bad[cat.galaxy_index]
    mean = np.add.reduceat(cat.log_mass, cat.offsets[:-1]) / np.diff(cat.offsets)
    lm[sel] = mean[cat.galaxy_index[sel]] + np.where(j[sel] % 2 == 0, 0.4, -0.4) + 0.02 * (j[sel] % 5 - 2)
    bi = dataclasses.replace(cat, log_mass=lm)
    flagged = ~gaussian_galaxies(bi)
    assert np.all(flagged[bad])
    assert flagged[~bad].mean() < 0.01
    auto = prepare_smf_data(bi, survey, posterior="auto", gh_nodes=(8, 2))
    samples = prepare_smf_data(bi, survey)
    gh = prepare_smf_data(bi, survey, posterior="gauss-hermite", gh_nodes=(8, 2))
    used_bad = np.isin(auto.catalog.ids, bi.ids[bad])
    kinds = np.array(auto.catalog.meta["compression"]["kind"])
    kept_bad = used_bad & (kinds == "samples")
    # (a piecewise model's scores pass by chance for a few: 2 of 147 in a measured run)
    assert kept_bad.sum() >= 0.95 * used_bad.sum() and used_bad.sum() > 20
    p = leja2020_params().replace(log_mstar=leja2020_params().log_mstar + 0.1)

    def terms(d):
        return d.index.gather_galaxies(list(galaxy_log_terms(p, d.arrays)), d.catalog.n_galaxies)

    t_auto, t_s, t_gh = terms(auto), terms(samples), terms(gh)
    # the bimodal galaxies keep their sample-based terms exactly
    np.testing.assert_allclose(t_auto[kept_bad], t_s[kept_bad], rtol=0, atol=1e-9)
    # where the Gaussian rule would misrepresent them (steep part of Phi), it differs
    assert np.max(np.abs(t_gh[used_bad] - t_s[used_bad])) > 0.05
    # the Gaussian galaxies get the rule
    good = ~used_bad & (kinds == "gaussian")
    assert good.mean() > 0.6  # measured 0.64: 1 in 7 is bimodal, ~17% of the rest fail the check by chance
    np.testing.assert_allclose(t_auto[good], t_gh[good], rtol=0, atol=1e-9)
