"""Mock generators: known-sequence mocks, the Leja+20 mass function, the conditional sampler."""

import numpy as np
import pytest
from scipy import stats

from popmodel.flow.mock import (
    _ConditionalSampler,
    leja2020_log_phi,
    leja2022_flow_mock,
    realistic_sfr_error,
    sequence_mock,
)
from popmodel.flow.parametric import leja2022_log_sfr


def test_leja2020_smf_check1():
    # science.md check 1 (log Phi at logM = 9, 10, 11, 11.5)
    m = np.array([9.0, 10.0, 11.0, 11.5])
    want = {0.5: (-1.754, -2.190, -2.622, -3.745), 1.0: (-1.887, -2.338, -2.786, -3.808),
            2.0: (-2.109, -2.604, -3.240, -4.268)}
    for z, w in want.items():
        assert np.allclose(leja2020_log_phi(m, z), w, atol=1e-3)


def test_sequence_mock_truth_and_noise():
    cat, _survey, truth = sequence_mock(20000, n_samples=4, scatter=0.3, sfr_error=0.4, mass_error=0.1, seed=3)
    resid = truth.true_log_sfr - leja2022_log_sfr(truth.true_log_mass, truth.true_z)
    assert abs(resid.std() - 0.3) < 0.01 and abs(resid.mean()) < 0.01
    obs_sfr = cat.log_sfr.reshape(-1, 4).mean(1)  # posterior means ~ observed values
    assert abs(np.std(obs_sfr - truth.true_log_sfr) - np.hypot(0.4, 0.4 / 2)) < 0.02
    spread = cat.log_mass.reshape(-1, 4).std(1, ddof=1)
    assert abs(np.sqrt(np.mean(spread**2)) - 0.1) < 0.005
    # log10 <SFR> of a log-normal
    assert np.isclose(truth.log_mean_sfr(10.0, 1.0) - truth.ridge(10.0, 1.0), 0.5 * np.log(10) * 0.09)
    assert np.all(cat.z.reshape(-1, 4) == truth.true_z[:, None])  # exact redshifts
    assert (truth.true_z.min() > 0.3) and (truth.true_z.max() < 2.7)


def test_sequence_mock_quiescent_and_error_range():
    cat, _survey, truth = sequence_mock(20000, n_samples=8, scatter=0.3, sfr_error=(0.15, 0.35),
                                        quiescent_fraction=0.2, quiescent_offset=(1.0, 2.5), seed=3)
    resid = truth.true_log_sfr - leja2022_log_sfr(truth.true_log_mass, truth.true_z)
    q = resid < -1.0 + 1e-12  # the quiescent galaxies; star-forming ones lie > 3.3 sigma above
    assert abs(q.mean() - 0.2) < 0.01
    assert resid[q].min() >= -2.5 and abs(resid[q].mean() + 1.75) < 0.02
    assert abs(resid[~q].std() - 0.3) < 0.01 and abs(resid[~q].mean()) < 0.01
    var = cat.log_sfr.reshape(-1, 8).var(1, ddof=1)  # per-galaxy posterior variances
    # E[sigma^2] over sigma ~ U(0.15, 0.35), and the spread of sigma^2 beyond the samples' noise
    assert abs(np.sqrt(var.mean()) - np.sqrt((0.35**3 - 0.15**3) / (3 * 0.2))) < 0.005
    assert var.std() > 1.2 * np.sqrt(2 / 7) * var.mean()
    # log10 <SFR> including the quiescent galaxies, against the draws
    mean_lin = np.mean(10.0 ** resid)
    assert abs(truth.log_mean_sfr(10.0, 1.0) - truth.ridge(10.0, 1.0) - np.log10(mean_lin)) < 0.01
    # the same seed without the new options draws the same catalogue as before
    a, _, _ = sequence_mock(500, n_samples=2, seed=9)
    b, _, _ = sequence_mock(500, n_samples=2, seed=9, sfr_error=(0.4, 0.4), quiescent_fraction=0.0)
    np.testing.assert_array_equal(a.log_sfr, b.log_sfr)


def test_sequence_mock_selects_on_observed_mass():
    limit = (np.array([0.3, 2.7]), np.array([9.2, 9.8]))
    cat, survey, truth = sequence_mock(5000, n_samples=2, mass_error=0.2, log_mass_limit=limit,
                                       log_mass_rolloff=8.0, seed=4)
    lim = np.interp(truth.true_z, *limit)
    assert np.all(cat.obs_log_mass > lim)
    assert np.mean(truth.true_log_mass < lim) > 0.08  # Eddington: ~12% have true masses below the cut
    assert truth.n_drawn > cat.n_galaxies
    f = survey.fields[0]
    assert f.mass_error_dex == (0.2,) and np.isclose(f.log_mass_limit(1.5), np.interp(1.5, *limit))


def test_conditional_sampler_reproduces_density():
    def log_density(m, z, g):
        mu = 0.8 * (m - 10) + 0.5 * z
        sig = 0.2 + 0.1 * z
        return stats.norm.logpdf(g[None, :], mu[:, None], sig[:, None])

    sampler = _ConditionalSampler(log_density, np.linspace(0.5, 2.5, 9), np.linspace(9, 11, 9),
                                  np.linspace(-4, 5, 1801))
    rng = np.random.default_rng(0)
    n = 20000
    z, m = rng.uniform(0.5, 2.5, n), rng.uniform(9, 11, n)
    s = sampler.sample(rng, z, m)
    u = (s - (0.8 * (m - 10) + 0.5 * z)) / (0.2 + 0.1 * z)
    assert abs(u.mean()) < 0.02 and abs(u.std() - 1) < 0.02
    assert stats.kstest(u, "norm").pvalue > 1e-3


def test_realistic_sfr_error():
    assert np.allclose(realistic_sfr_error([-9.0, -10.0, -10.75, -11.5, -13.0]), [0.25, 0.25, 0.425, 0.6, 0.6])


def test_leja_flow_mock_small(shared_data):
    import torch

    from popmodel.flow.leja2022 import Leja2022Flow

    flow = Leja2022Flow.load(shared_data / "sfs_leja2022_trained_flow/trained_flow_nsamp100.pth", dtype=torch.float32)
    cat, survey, truth = leja2022_flow_mock(flow, area_arcmin2=15.0, z_range=(0.8, 1.6), n_samples=4,
                                            z_step=0.2, m_step=0.25, n_dummy=5, seed=2)
    n_exp = truth.settings["n_expected_above_limit_minus_5sigma"]
    assert abs(truth.n_drawn - n_exp) < 5 * np.sqrt(n_exp)
    assert np.all(cat.obs_log_mass > survey.fields[0].log_mass_limit(cat.obs_z))
    assert np.all((truth.true_z >= 0.8) & (truth.true_z <= 1.6))
    # SFRs from the flow's conditional: a sequence with the Leja+22 slope, not the samples' (z, M)
    sf = truth.true_log_sfr - truth.true_log_mass > -10.5
    assert sf.mean() > 0.6
    resid = truth.true_log_sfr[sf] - leja2022_log_sfr(truth.true_log_mass[sf], truth.true_z[sf])
    assert abs(np.median(resid)) < 0.2
    with pytest.raises(FileNotFoundError):
        Leja2022Flow.load(shared_data / "nope.pth")
