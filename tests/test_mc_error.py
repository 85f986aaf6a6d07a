"""Tests for the Monte Carlo error control of popmodel.smf.inference.

mc_error_diagnostics is checked against a brute-force bootstrap of each galaxy's samples
(numpy only), and bootstrap_map_shift (one Newton step per replicate) against real
re-optimisations of the posterior on bootstrap replicates.
"""

import astropy.units as u
import numpy as np
import pytest
from scipy import special

from popmodel.catalog import PosteriorCatalog
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.evolution import (
    DEFAULT_ANCHORS,
    LEJA2020_MEDIAN,
    LEJA2020_SIGMA,
    leja2020_params,
)
from popmodel.smf.inference import (
    bootstrap_counts,
    bootstrap_map_shift,
    find_map,
    mc_error_diagnostics,
)
from popmodel.smf.model import SMFPrior
from popmodel.survey import Field, Survey

LN10 = np.log(10.0)


def np_ln_f(v: np.ndarray, log_m: np.ndarray, z: np.ndarray, cosmo, area_sr: float) -> np.ndarray:
    """ln[Phi dV/dz Omega] in numpy/astropy (the interim prior is flat here)."""
    lp1, lp2, lms = (
        np.polyval(np.polyfit(DEFAULT_ANCHORS, v[3 * k : 3 * k + 3], 2), z) for k in range(3)
    )
    x = 10.0 ** (log_m - lms)
    phi = LN10 * np.exp(-x) * (10.0**lp1 * x ** (v[9] + 1) + 10.0**lp2 * x ** (v[10] + 1))
    return np.log(phi * cosmo.differential_comoving_volume(z).to_value(u.Mpc**3 / u.sr) * area_sr)


@pytest.fixture(scope="module")
def mock_setup():
    survey = Survey(
        (
            Field(
                "F",
                30.0 * u.arcmin**2,
                0.5,
                3.0,
                [0.65, 1.0, 1.5, 2.1, 3.0],
                [8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536],
                mass_error_dex=[0.15],
                z_error=0.03,
            ),
        )
    )
    mock, _ = draw_mock(survey, seed=3, n_samples=16)
    rng = np.random.default_rng(12)
    cat = PosteriorCatalog(  # the mock with per-sample weights
        ids=mock.ids,
        fields=mock.fields,
        offsets=mock.offsets,
        log_mass=mock.log_mass,
        z=mock.z,
        weight=rng.uniform(0.2, 2.0, mock.log_mass.size),
        obs_log_mass=mock.obs_log_mass,
        obs_z=mock.obs_z,
    )
    data = prepare_smf_data(cat, survey)
    assert data.report.n_used == cat.n_galaxies
    return survey, cat, data


def test_mc_error_diagnostics_vs_bootstrap(mock_setup) -> None:
    survey, cat, data = mock_setup
    v = np.asarray(leja2020_params().to_vector())
    diag = mc_error_diagnostics(data, leja2020_params())
    n, s = cat.n_galaxies, 16
    assert np.all(cat.n_samples == s)
    ln_f = np_ln_f(v, cat.log_mass, cat.z, survey.cosmology, survey.fields[0].area_sr).reshape(
        n, s
    )
    w = cat.weight.reshape(n, s)

    # (ii) ESS = 1 / sum q^2 with q_j = w_j f_j / sum_k w_k f_k
    q = w * np.exp(ln_f - ln_f.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    # rtol: the package interpolates ln dV/dz on a grid (~1e-6 relative at z > 0.5)
    np.testing.assert_allclose(diag["ess"], 1.0 / np.sum(q**2, axis=1), rtol=1e-5)
    assert diag["ess_min"] == pytest.approx(np.min(1.0 / np.sum(q**2, axis=1)), rel=1e-5)

    # (i) bootstrap: resample each galaxy's (sample, weight) pairs with replacement
    rng = np.random.default_rng(7)
    b = 2000
    rows = np.arange(n)[None, :, None]
    ln_lhat = []
    for _ in range(b // 250):  # in batches, to keep memory small
        idx = rng.integers(0, s, size=(250, n, s))
        wb, fb = w[rows, idx], ln_f[rows, idx]
        ln_lhat.append(special.logsumexp(fb, b=wb, axis=-1) - np.log(wb.sum(axis=-1)))
    ln_lhat = np.concatenate(ln_lhat)  # (B, N)
    var_boot = ln_lhat.var(axis=0, ddof=1)
    ratio = var_boot / diag["var_log_l"]
    assert 0.8 < np.median(ratio) < 1.2, np.median(ratio)
    assert diag["var_log_l_total"] == pytest.approx(np.sum(diag["var_log_l"]), rel=1e-12)
    assert var_boot.sum() == pytest.approx(diag["var_log_l_total"], rel=0.15)
    assert diag["sd_log_l_total"] == pytest.approx(np.sqrt(diag["var_log_l_total"]), rel=1e-12)


def test_mc_error_equal_weights_identity(mock_setup) -> None:
    """Without weights var ln L-hat = (1/ESS - 1/S) S / (S - 1) exactly (the docstring's
    identity, with the Bessel-like factor 1 / (1 - sum w^2) = S / (S - 1))."""
    survey, cat, _ = mock_setup
    flat = PosteriorCatalog(
        ids=cat.ids,
        fields=cat.fields,
        offsets=cat.offsets,
        log_mass=cat.log_mass,
        z=cat.z,
        obs_log_mass=cat.obs_log_mass,
        obs_z=cat.obs_z,
    )
    diag = mc_error_diagnostics(prepare_smf_data(flat, survey), leja2020_params())
    np.testing.assert_allclose(
        diag["var_log_l"], (1.0 / diag["ess"] - 1.0 / 16) * 16 / 15, rtol=1e-8, atol=1e-14
    )
    assert np.all(diag["ess"] <= 16 + 1e-9) and np.all(diag["ess"] >= 1 - 1e-9)


# --------------------------------------------------------------------- bootstrap MAP shift
@pytest.fixture(scope="module")
def map_fit(mock_setup):
    _, _, data = mock_setup
    prior = SMFPrior(
        normal={k: (LEJA2020_MEDIAN[k], 3.0 * LEJA2020_SIGMA[k]) for k in LEJA2020_MEDIAN}
    )
    res = find_map(data, prior)
    assert res.converged, res.message
    return prior, res


def test_bootstrap_map_shift_is_finite_and_reproducible(mock_setup, map_fit) -> None:
    _, _, data = mock_setup
    prior, res = map_fit
    out = bootstrap_map_shift(data, prior, res, n_boot=4, seed=1)
    shifts = out["shift_sigma"]
    assert shifts.shape == (4, 11)
    assert np.all(np.isfinite(shifts)) and np.any(shifts != 0)
    rms = np.sqrt(np.mean(shifts**2, axis=0))
    assert out["u_names"] == sorted(prior.names)
    np.testing.assert_allclose(
        [out["rms_shift_sigma"][k] for k in out["u_names"]], rms, rtol=1e-12
    )
    assert out["max_rms_shift_sigma"] == pytest.approx(rms.max())
    assert out["warn"] == bool(rms.max() > 0.3)
    again = bootstrap_map_shift(data, prior, res, n_boot=4, seed=1)
    np.testing.assert_array_equal(again["shift_sigma"], shifts)


@pytest.mark.slow
def test_bootstrap_map_shift_vs_reoptimisation(mock_setup, map_fit) -> None:
    survey, _, data = mock_setup
    prior, res = map_fit
    n_boot, seed = 5, 0
    newton = bootstrap_map_shift(data, prior, res, n_boot=n_boot, seed=seed)["shift_sigma"]
    used = data.catalog
    sd_u = np.sqrt(np.diag(res.cov_u))
    rng = np.random.default_rng(seed)  # the same replicates as bootstrap_map_shift draws
    actual = []
    for _ in range(n_boot):
        k = bootstrap_counts(used.offsets, rng)
        rep = PosteriorCatalog(
            ids=used.ids,
            fields=used.fields,
            offsets=used.offsets,
            log_mass=used.log_mass,
            z=used.z,
            weight=used.weight * k,
            obs_log_mass=used.obs_log_mass,
            obs_z=used.obs_z,
        )
        rb = find_map(prepare_smf_data(rep, survey, volume=data.volume), prior, init=res.params)
        assert rb.converged, rb.message
        assert rb.u_names == res.u_names
        actual.append((rb.u - res.u) / sd_u)
    actual = np.array(actual)
    assert np.all(np.isfinite(actual))
    ratio = np.sqrt(np.mean(newton**2)) / np.sqrt(np.mean(actual**2))
    assert 0.5 < ratio < 2.0, ratio
    # one Newton step is accurate replicate by replicate for shifts this small
    np.testing.assert_allclose(newton, actual, atol=0.03)
