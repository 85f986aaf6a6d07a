"""Slow injection-recovery tests of the deconvolving flow (issue 4; CI budget 10 minutes).

Small mocks and a single member each, so the tolerances are those of ~10^4 galaxies; the
full-size checks (6x10^4 galaxies, 5-member ensembles, the issue's 0.05 / 0.03 dex) are in
``analyses/validate_sfs.py`` with their output in ``analyses/recorded/``.
"""

from dataclasses import replace

import numpy as np
import pytest

from popmodel.flow.fit import SFSConfig, fit_sfs
from popmodel.flow.mock import sequence_mock
from popmodel.flow.sfs import sequence_statistics
from popmodel.flow.train import TrainConfig

pytestmark = pytest.mark.slow

M = np.array([9.5, 10.0, 10.5, 9.5, 10.0, 10.5])
Z = np.array([1.0, 1.0, 1.0, 2.0, 2.0, 2.0])
GRID = np.arange(-4.0, 4.0001, 0.01)


def _stats(fit, m=M, z=Z):
    f = fit.flows[0]
    return sequence_statistics(GRID, f.conditional_log_density(m, z, GRID), m, z,
                               ridge_smoothing=fit.config.ridge_smoothing)


@pytest.fixture(scope="module")
def sequence_fits():
    cat, _, truth = sequence_mock(10000, n_samples=32, scatter=0.3, sfr_error=0.4, mass_error=0.1,
                                  schechter=(10.8, -1.0), seed=11)
    cfg = SFSConfig(n_members=1, bootstrap=False, train=TrainConfig(max_epochs=25, progress=False, seed=3))
    fits = {
        "deconvolved": fit_sfs(cat, None, cfg),
        "naive": fit_sfs(cat, None, replace(cfg, max_samples=8, train=replace(cfg.train, method="naive"))),
        "noise_free": fit_sfs(truth.noise_free_catalog(cat.ids, cat.fields), None, replace(cfg, max_samples=1)),
    }
    return truth, {k: _stats(v) for k, v in fits.items()}


def test_deconvolution_recovers_scatter_and_mean_naive_fails(sequence_fits):
    truth, st = sequence_fits
    mean_true = truth.log_mean_sfr(M, Z)
    d, n = st["deconvolved"], st["naive"]
    d_scat, d_mean = d.scatter - 0.3, d.log_mean_sfr - mean_true
    n_scat, n_mean = n.scatter - 0.3, n.log_mean_sfr - mean_true
    print("deconvolved scatter error", np.round(d_scat, 3), "log mean error", np.round(d_mean, 3))
    print("naive       scatter error", np.round(n_scat, 3), "log mean error", np.round(n_mean, 3))
    # measured (seeded): scatter errors |.| <= 0.044 (mean 0.019), log mean errors <= 0.10 (mean
    # 0.034); one member and 10^4 galaxies, so 0.1 dex excursions happen where galaxies are few
    assert np.mean(np.abs(d_scat)) < 0.04 and np.max(np.abs(d_scat)) < 0.08
    assert np.mean(np.abs(d_mean)) < 0.05 and np.max(np.abs(d_mean)) < 0.13
    # the naive flow learns the density of the noisy samples: sqrt(0.3^2 + 2 x 0.4^2) = 0.64 dex
    assert np.min(n_scat) > 0.2 and np.min(n_mean) > 0.2


def test_noise_free_and_deconvolved_agree_check_11b(sequence_fits):
    _, st = sequence_fits
    d, f, n = st["deconvolved"], st["noise_free"], st["naive"]
    dr, ds = d.ridge - f.ridge, d.scatter - f.scatter
    print("ridge difference", np.round(dr, 3), "scatter difference", np.round(ds, 3))
    # measured (seeded): ridge differences <= 0.14 (mean 0.055), scatter differences <= 0.039
    assert np.mean(np.abs(dr)) < 0.07 and np.max(np.abs(dr)) < 0.16
    assert np.mean(np.abs(ds)) < 0.04 and np.max(np.abs(ds)) < 0.08
    assert np.all(d.scatter < n.scatter - 0.2)  # deconvolved much narrower than naive
    assert np.max(np.abs(f.scatter - 0.3)) < 0.06  # noise-free training recovers the truth too


def test_selection_on_observed_mass_recovered_above_the_cut():
    limit = (np.array([0.3, 2.7]), np.array([9.25, 9.75]))
    cat, survey, truth = sequence_mock(10000, n_samples=16, scatter=0.3, sfr_error=0.3, mass_error=0.2,
                                       log_mass_limit=limit, log_mass_rolloff=8.0, seed=12)
    assert np.mean(truth.true_log_mass < np.interp(truth.true_z, *limit)) > 0.08  # Eddington bias
    fit = fit_sfs(cat, survey, SFSConfig(n_members=1, bootstrap=False,
                                         train=TrainConfig(max_epochs=25, progress=False, seed=5)))
    assert fit.cuts["n_kept"] == cat.n_galaxies
    m = np.array([9.75, 10.25, 10.0, 10.5])
    z = np.array([1.0, 1.0, 2.0, 2.0])
    st = _stats(fit, m, z)
    dmed = st.q50 - truth.ridge(m, z)
    dscat = st.scatter - 0.3
    print("median error", np.round(dmed, 3), "scatter error", np.round(dscat, 3))
    assert np.mean(np.abs(dmed)) < 0.04 and np.max(np.abs(dmed)) < 0.08
    assert np.max(np.abs(dscat)) < 0.08
    # the SFS table starts at the completeness limit of each redshift
    t = fit.table
    assert np.all(t["log_mass"] >= t["log_mass_limit"] - 1e-9)


def test_default_settings_recover_the_sequence():
    """``fit_sfs(catalog, survey)`` with every default (5 bootstrap members, 32 samples, the
    cosine schedule, here 26 epochs for its 1,500 steps) on a mock like the issue's: 20% quiescent galaxies 1-2.5 dex
    below the Leja et al. 2022 ridge, SFR errors of 0.15-0.35 dex, selection on observed mass."""
    limit = (np.array([0.3, 2.7]), np.array([9.25, 9.75]))
    cat, survey, truth = sequence_mock(15000, n_samples=32, scatter=0.3, sfr_error=(0.15, 0.35),
                                       mass_error=0.1, log_mass_limit=limit, log_mass_rolloff=8.0,
                                       schechter=(10.8, -1.0), quiescent_fraction=0.2, seed=31)
    fit = fit_sfs(cat, survey)
    # 15,000 galaxies make 59 steps an epoch: 26 epochs reach the default's 1,500 steps
    assert all(r.n_epochs == 26 and len(r.history) <= 26 for r in fit.results) and len(fit.flows) == 5
    print("epochs", [len(r.history) for r in fit.results], [r.stop_reason for r in fit.results])
    t = fit.table
    z, m = np.asarray(t["z"]), np.asarray(t["log_mass"])
    rows = np.isin(z, [1.0, 1.5, 2.0]) & np.isin(m, [10.0, 10.5, 11.0])
    assert rows.sum() == 9
    d = np.asarray(t["ridge_p50"])[rows] - truth.ridge(m[rows], z[rows])
    print("ridge - truth", np.round(d, 3))
    assert np.mean(np.abs(d)) < 0.05 and np.max(np.abs(d)) < 0.12
