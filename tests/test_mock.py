"""Tests for popmodel.mock: reproducibility, selection, posterior samples and the drawn population."""

from importlib import resources

import astropy.units as u
import numpy as np
import pytest
from scipy import integrate, stats

from popmodel.cosmology import VolumeTable
from popmodel.mock import ProspectorBetaLikePrior, draw_mock
from popmodel.smf.evolution import DEFAULT_ANCHORS, leja2020_params
from popmodel.survey import Field, Survey

LN10 = np.log(10.0)
THREEDHST_Z = [0.65, 1.0, 1.5, 2.1, 3.0]
THREEDHST_M = [8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536]


def np_phi(log_m, z):
    """The Leja et al. (2020) median Phi [Mpc^-3 dex^-1], numpy only."""
    v = np.asarray(leja2020_params().to_vector())
    lp1, lp2, lms = (
        np.polyval(np.polyfit(DEFAULT_ANCHORS, v[3 * k : 3 * k + 3], 2), z) for k in range(3)
    )
    x = 10.0 ** (np.asarray(log_m) - lms)
    return LN10 * np.exp(-x) * (10.0**lp1 * x ** (v[9] + 1) + 10.0**lp2 * x ** (v[10] + 1))


@pytest.fixture(scope="module")
def survey() -> Survey:
    return Survey(
        (
            Field(
                "A",
                25.0 * u.arcmin**2,
                0.8,
                2.2,
                THREEDHST_Z,
                THREEDHST_M,
                mass_error_dex=[0.2],
                z_error=0.04,
            ),
            Field(
                "B",
                20.0 * u.arcmin**2,
                1.0,
                1.5,
                [1.0, 1.5],
                [9.3, 9.6],
                mass_error_dex=[0.1, 0.3],
            ),
        )
    )


@pytest.fixture(scope="module")
def volume(survey) -> VolumeTable:
    return VolumeTable.build(survey.cosmology)


@pytest.fixture(scope="module")
def mock(survey, volume):
    return draw_mock(survey, seed=21, n_samples=8, volume=volume)


def test_same_seed_same_catalogue(survey, volume, mock) -> None:
    cat, truth = mock
    again, truth2 = draw_mock(survey, seed=21, n_samples=8, volume=volume)
    for name in ("ids", "fields", "offsets", "log_mass", "z", "obs_log_mass", "obs_z"):
        np.testing.assert_array_equal(getattr(again, name), getattr(cat, name), err_msg=name)
    np.testing.assert_array_equal(truth2.true_log_mass, truth.true_log_mass)
    assert truth2.n_true == truth.n_true and truth2.n_selected == truth.n_selected
    other, _ = draw_mock(survey, seed=22, n_samples=8, volume=volume)
    assert other.n_galaxies != cat.n_galaxies or not np.array_equal(other.log_mass, cat.log_mass)
    n = min(other.n_galaxies, cat.n_galaxies)
    assert not np.allclose(other.obs_log_mass[:n], cat.obs_log_mass[:n])


def test_selected_galaxies_pass_cut_on_observed_values(survey, mock) -> None:
    cat, truth = mock
    assert cat.n_galaxies > 100
    assert truth.true_log_mass.shape == truth.true_z.shape == (cat.n_galaxies,)
    for f in survey.fields:
        sel = cat.fields == f.name
        assert sel.sum() == truth.n_selected[f.name]
        assert truth.n_selected[f.name] < truth.n_true[f.name]
        assert np.all(cat.obs_z[sel] >= f.z_min) and np.all(cat.obs_z[sel] <= f.z_max)
        assert np.all(cat.obs_log_mass[sel] >= f.log_mass_limit(cat.obs_z[sel]))
    # field B has no redshift errors: its true redshifts are its catalogue redshifts
    b = cat.fields == "B"
    np.testing.assert_array_equal(truth.true_z[b], cat.obs_z[b])
    # ... but mass errors, so some true masses lie below the limit (selection acts on observed)
    assert np.any(truth.true_log_mass[b] < survey.field("B").log_mass_limit(truth.true_z[b]))


def test_true_counts_are_poisson_in_expected(mock) -> None:
    _, truth = mock
    for name, lam in truth.expected_true.items():
        assert abs(truth.n_true[name] - lam) < 4.0 * np.sqrt(lam)


def test_posterior_samples_centred_on_observed_values(survey, mock) -> None:
    cat, _ = mock
    a = cat.fields == "A"  # one mass width (0.2 dex) and z errors 0.04 (1 + z)
    s = cat.n_samples[0]
    m = cat.log_mass.reshape(-1, s)[a]
    z = cat.z.reshape(-1, s)[a]
    tm = (m - cat.obs_log_mass[a, None]) / 0.2
    tz = (z - cat.obs_z[a, None]) / (0.04 * (1.0 + cat.obs_z[a, None]))
    for t in (tm, tz):
        n = t.size
        assert abs(t.mean()) < 4.0 / np.sqrt(n)
        assert abs(t.std() - 1.0) < 4.0 / np.sqrt(2.0 * n)
    b = cat.fields == "B"  # no z errors: every z sample is the catalogue redshift
    np.testing.assert_array_equal(
        cat.z.reshape(-1, s)[b], np.repeat(cat.obs_z[b, None], s, axis=1)
    )
    assert cat.log_prior is None


# --------------------------------------------------------------------- Prospector-beta interim prior
@pytest.fixture(scope="module")
def beta_mock():
    survey = Survey(
        (Field("P", 2.0 * u.arcmin**2, 0.5, 2.5, THREEDHST_Z, THREEDHST_M, mass_error_dex=[0.25]),)
    )
    return survey, *draw_mock(survey, seed=4, n_samples=2000, interim_prior="prospector-beta")


def test_prospector_beta_log_prior_recorded(beta_mock) -> None:
    _, cat, _ = beta_mock
    assert cat.n_galaxies >= 5
    expected = ProspectorBetaLikePrior().log_density(cat.log_mass, cat.z)
    assert np.all(np.isfinite(expected))
    np.testing.assert_allclose(cat.log_prior, expected, rtol=1e-12)


def test_prospector_beta_prior_is_leja_mass_function_times_pz() -> None:
    prior = ProspectorBetaLikePrior()
    tab = np.loadtxt(resources.files("popmodel") / "data" / "pdf_of_z_l20.txt")
    pz_norm = tab[:, 1] / np.trapezoid(tab[:, 1], tab[:, 0])
    m = np.linspace(7.0, 12.0, 11)
    mg = np.linspace(6.0, 12.5, 20001)
    for z in (0.7, 1.9):
        diff = prior.log_density(m, np.full_like(m, z)) - np.log(np_phi(m, z))
        np.testing.assert_allclose(diff, diff[0], atol=1e-10)  # the mass shape is Leja's Phi
        # integrating over mass on [6, 12.5] leaves the p(z) of the Prospector table (to the
        # accuracy of the normalisation, which the class tabulates in steps of 0.01 in z)
        dens = np.exp(prior.log_density(mg, np.full_like(mg, z)))
        np.testing.assert_allclose(
            np.trapezoid(dens, mg), np.interp(z, tab[:, 0], pz_norm), rtol=1e-3
        )
    assert prior.log_density(12.6, 1.0) == -np.inf and prior.log_density(5.9, 1.0) == -np.inf


def test_prospector_beta_samples_follow_exact_posterior(beta_mock) -> None:
    _, cat, _ = beta_mock
    s = 2000
    # galaxies nearest the limit (where the prior's slope shifts the posterior most) and a massive one
    order = np.argsort(cat.obs_log_mass)
    for i in (order[0], order[1], order[-1]):
        mo, zo = cat.obs_log_mass[i], cat.obs_z[i]
        samples = cat.log_mass[i * s : (i + 1) * s]
        np.testing.assert_array_equal(cat.z[i * s : (i + 1) * s], zo)
        grid = np.linspace(mo - 8 * 0.25, mo + 8 * 0.25, 40001)
        post = (
            np.exp(-0.5 * ((mo - grid) / 0.25) ** 2)
            * np_phi(grid, zo)
            * (grid >= 6.0)
            * (grid <= 12.5)
        )
        cdf = integrate.cumulative_trapezoid(post, grid, initial=0.0)
        cdf /= cdf[-1]
        p = stats.kstest(samples, lambda x, g=grid, c=cdf: np.interp(x, g, c)).pvalue
        assert p > 1e-3, (i, mo, p)
        # and the sample mean sits where the exact posterior's does (below mo: falling Phi)
        mean = np.trapezoid(grid * post, grid) / np.trapezoid(post, grid)
        assert abs(samples.mean() - mean) < 4.0 * samples.std() / np.sqrt(s)
    # power: for the faintest galaxy the prior matters, the bare likelihood N(mo, 0.25) is rejected
    i = order[0]
    assert (
        stats.kstest(
            cat.log_mass[i * s : (i + 1) * s], "norm", args=(cat.obs_log_mass[i], 0.25)
        ).pvalue
        < 1e-3
    )


def test_prospector_beta_needs_exact_redshifts(survey) -> None:
    with pytest.raises(ValueError, match="exact redshifts"):
        draw_mock(survey, interim_prior="prospector-beta")
    with pytest.raises(ValueError, match="unknown interim_prior"):
        draw_mock(survey, interim_prior="uniform")


# --------------------------------------------------------------------- the drawn population
def test_true_masses_follow_schechter_shape() -> None:
    z_lo, z_hi = 1.0, 1.5
    f = Field("S", 200.0 * u.arcmin**2, z_lo, z_hi, THREEDHST_Z, THREEDHST_M, mass_error_dex=[0.1])
    survey = Survey((f,))
    _, truth = draw_mock(survey, seed=9, n_samples=1)
    m_thr = (
        float(np.max(f.log_mass_limit(np.linspace(z_lo, z_hi, 101)))) + 0.5
    )  # selection ~ 1 above
    sel = truth.true_log_mass > m_thr
    m = truth.true_log_mass[sel]
    # model: n(m) ∝ ∫_bin Phi(m, z) dV/dz dz, for m > m_thr
    zg = np.linspace(z_lo, z_hi, 201)
    mg = np.linspace(m_thr, 13.0, 4001)
    dv = survey.cosmology.differential_comoving_volume(zg).to_value(u.Mpc**3 / u.sr)
    n_m = np.trapezoid(np_phi(mg[:, None], zg[None, :]) * dv[None, :], zg, axis=1)
    cdf = integrate.cumulative_trapezoid(n_m, mg, initial=0.0)
    expected_count = cdf[-1] * f.area_sr
    assert abs(m.size - expected_count) < 4.0 * np.sqrt(expected_count), (m.size, expected_count)
    assert m.size > 200
    p = stats.kstest(m, lambda x: np.interp(x, mg, cdf / cdf[-1])).pvalue
    assert p > 1e-3, p
    # power: a Schechter with a different slope is rejected
    alt = integrate.cumulative_trapezoid(n_m * 10 ** (0.5 * (mg - m_thr)), mg, initial=0.0)
    assert stats.kstest(m, lambda x: np.interp(x, mg, alt / alt[-1])).pvalue < 1e-3
