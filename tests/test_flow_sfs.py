"""SFS statistics against closed forms: Gaussian and two-component mixtures."""

import os

import numpy as np
import pytest
from scipy import optimize, stats

from popmodel.flow.sfs import log_ssfr_cut, sequence_statistics

LN10 = np.log(10.0)
GRID = np.arange(-5.0, 5.0001, 0.005)


def _mixture(grid, comps):
    return np.log(sum(w * stats.norm.pdf(grid, mu, sig) for w, mu, sig in comps))


def _mixture_quantile(q, comps):
    cdf = lambda x: sum(w * stats.norm.cdf(x, mu, sig) for w, mu, sig in comps) - q
    return optimize.brentq(cdf, -10, 10, xtol=1e-10)


def test_gaussian_closed_forms():
    mu = np.array([0.2, 1.0, -0.5])
    sig = np.array([0.3, 0.25, 0.5])
    lp = stats.norm.logpdf(GRID[None, :], mu[:, None], sig[:, None]) + 3.0  # unnormalised
    st = sequence_statistics(GRID, lp, np.array([10.0, 10.0, 9.0]), np.array([1.0, 2.0, 0.5]))
    assert np.allclose(st.ridge, mu, atol=1e-4)
    # log10 <SFR> of a log-normal: mu + ln(10) sigma^2 / 2 (not the mean of log SFR)
    assert np.allclose(st.log_mean_sfr, mu + 0.5 * LN10 * sig**2, atol=1e-4)
    assert np.allclose(st.q50, mu, atol=1e-4)
    assert np.allclose(st.q16, mu + sig * stats.norm.ppf(0.16), atol=1e-4)
    assert np.allclose(st.q84, mu + sig * stats.norm.ppf(0.84), atol=1e-4)
    assert np.allclose(st.scatter, sig * stats.norm.ppf(0.84), atol=1e-4)
    assert not st.bimodal.any()


def test_mixture_ridge_on_star_forming_branch_and_bimodal_flag():
    # logM = 11 at z = 1: cut at log SFR = 11 + log10(0.1 / t_age) ~ 0.23
    cut = 11.0 + log_ssfr_cut(1.0)
    assert -0.5 < cut < 0.8
    sf = (0.35, 1.3, 0.3)     # star-forming peak, lower than the quiescent peak
    q = (0.65, -0.8, 0.35)    # quiescent peak, below the cut
    comps = [sf, q]
    lp = _mixture(GRID, comps)[None, :]
    st = sequence_statistics(GRID, lp, np.array([11.0]), np.array([1.0]))
    # the global mode is quiescent; the ridge is the star-forming local maximum
    assert GRID[np.argmax(lp)] < cut
    dens = lambda x: -_mixture(np.array([x]), comps)[0]
    sf_mode = optimize.minimize_scalar(dens, bounds=(0.5, 2.0), method="bounded", options={"xatol": 1e-9}).x
    assert abs(st.ridge[0] - sf_mode) < 1e-3
    assert st.bimodal[0]
    want_mean = np.log10(sum(w * 10 ** (mu + 0.5 * LN10 * s**2) for w, mu, s in comps))
    assert abs(st.log_mean_sfr[0] - want_mean) < 1e-4
    for name, qq in (("q16", 0.16), ("q50", 0.5), ("q84", 0.84)):
        assert abs(getattr(st, name)[0] - _mixture_quantile(qq, comps)) < 1e-3


def test_no_ridge_when_only_quiescent():
    lp = stats.norm.logpdf(GRID, -1.0, 0.3)[None, :]
    st = sequence_statistics(GRID, lp, np.array([11.0]), np.array([1.0]))
    assert np.isnan(st.ridge[0])
    assert not st.bimodal[0]


def test_weak_second_peak_not_bimodal():
    comps = [(0.97, 1.0, 0.3), (0.03, -1.0, 0.3)]  # second peak 3% of the first: below 10%
    st = sequence_statistics(GRID, _mixture(GRID, comps)[None, :], np.array([10.5]), np.array([1.0]))
    assert not st.bimodal[0]
    comps = [(0.8, 1.0, 0.3), (0.2, -1.0, 0.3)]
    st = sequence_statistics(GRID, _mixture(GRID, comps)[None, :], np.array([10.5]), np.array([1.0]))
    assert st.bimodal[0]


def test_ssfr_cut_values():
    # t_age(WMAP9) = 5.86 Gyr at z=1, 3.29 Gyr at z=2
    assert np.allclose(log_ssfr_cut([1.0, 2.0]), [-10.77, -10.52], atol=0.01)


def test_bad_inputs():
    lp = np.zeros((2, GRID.size))
    with pytest.raises(ValueError, match="evenly spaced"):
        sequence_statistics(GRID**3, lp, [10, 10], [1, 1])
    with pytest.raises(ValueError, match="columns"):
        sequence_statistics(GRID, lp[:, :-1], [10, 10], [1, 1])
    with pytest.raises(ValueError, match="entries"):
        sequence_statistics(GRID, lp, [10, 10, 10], [1, 1, 1])
    with pytest.raises(ValueError, match="no finite value at nodes \\[1\\]"):
        sequence_statistics(GRID, np.stack([lp[0], np.full(GRID.size, -np.inf)]), [10, 10], [1, 1])
    with pytest.raises(ValueError, match="doubling_cut"):
        log_ssfr_cut(1.0, doubling_cut=0.0)


class _WigglyGaussian:
    """Stand-in for a trained flow: p(log SFR | M, z) = N(mu(M), 0.3) x (1 + a cos(2 pi (s - phi) / lam)).

    Members with phases phi evenly spaced over one period average to the Gaussian exactly (the
    cosines sum to zero), while each member's own mode is pulled off mu by its wiggle.
    """

    def __init__(self, phase: float, amplitude: float = 0.15, wavelength: float = 0.5) -> None:
        self.phase, self.amplitude, self.wavelength = phase, amplitude, wavelength

    @staticmethod
    def mu(log_mass: np.ndarray) -> np.ndarray:
        return 0.8 * (np.asarray(log_mass) - 10.0) + 0.6

    def conditional_log_density(self, log_mass, z, grid):
        m = np.atleast_1d(log_mass)[:, None]
        g = np.asarray(grid)[None, :]
        wiggle = 1.0 + self.amplitude * np.cos(2 * np.pi * (g - self.phase) / self.wavelength)
        return stats.norm.logpdf(g, self.mu(m), 0.3) + np.log(wiggle)


@pytest.mark.parametrize("estimator", ["pooled", "median"])
def test_sfs_table_pooled_ridge_averages_member_wiggles(estimator):
    from popmodel.flow.fit import SFSConfig, sfs_table

    k = 5
    flows = [_WigglyGaussian(0.5 * j / k + 0.013) for j in range(k)]
    m = np.array([9.5, 9.8, 10.0, 10.3, 10.5])
    z = np.full(m.size, 1.0)
    cfg = SFSConfig(ridge_estimator=estimator, ridge_smoothing=0.1)
    table, member_stats = sfs_table(flows, m, z, np.full(m.size, 9.0), cfg)
    truth = _WigglyGaussian.mu(m)
    members = np.stack([s.ridge for s in member_stats])
    # each member's mode is off by up to several hundredths of a dex ...
    assert np.max(np.abs(members - truth)) > 0.02
    np.testing.assert_allclose(table["ridge_members_p50"], np.median(members, axis=0))
    t84 = stats.t.ppf(0.84, k - 1)
    sd = np.std(members, axis=0, ddof=1)
    np.testing.assert_allclose(table["ridge_p16"], table["ridge_p50"] - t84 * sd)
    np.testing.assert_allclose(table["ridge_p84"], table["ridge_p50"] + t84 * sd)
    if estimator == "pooled":
        # ... but the average density is the Gaussian, whose mode is mu (parabolic refinement
        # of a 0.01 dex grid: well below 1e-3 dex)
        np.testing.assert_allclose(table["ridge_p50"], truth, atol=1e-3)
    else:
        np.testing.assert_allclose(table["ridge_p50"], table["ridge_members_p50"])


def test_sfs_config_rejects_unknown_ridge_estimator():
    from popmodel.flow.fit import SFSConfig

    with pytest.raises(ValueError, match="ridge_estimator"):
        SFSConfig(ridge_estimator="mean")


def test_ridge_band_covers_68_percent_where_member_percentiles_do_not():
    """Members scattered about the central estimate as it scatters about the truth (the
    bootstrap picture): the Student-t band covers 68%, the members' 16-84th percentiles less."""
    from popmodel.flow.sfs import ridge_band

    rng = np.random.default_rng(5)
    n = 20000
    for k, pct_cover in ((3, 0.37), (5, 0.48)):
        truth = np.zeros(n)
        sigma = rng.uniform(0.01, 0.1, n)  # a different noise level at every node
        center = truth + sigma * rng.standard_normal(n)
        members = center + sigma * rng.standard_normal((k, n))
        lo, hi = ridge_band(members, center)
        cover = np.mean((lo <= truth) & (truth <= hi))
        p16, p84 = np.percentile(members, [16, 84], axis=0)
        old = np.mean((p16 <= truth) & (truth <= p84))
        assert abs(cover - 0.68) < 0.015, (k, cover)
        assert abs(old - pct_cover) < 0.03 and old < 0.55, (k, old)
    # fewer than two members with a ridge: the members' percentiles; a NaN centre: the median
    lo, hi = ridge_band(np.array([[1.0, np.nan, 2.0], [np.nan, np.nan, 2.2]]), np.array([0.9, np.nan, np.nan]))
    assert lo[0] == hi[0] == 1.0 and np.isnan(lo[1]) and np.isnan(hi[1])
    assert lo[2] < 2.1 < hi[2]


def test_member_threads_fill_the_last_round():
    from popmodel.flow.fit import SFSConfig, _member_threads, resolve_workers
    from popmodel.flow.train import TrainConfig

    def threads(n, w, t=None):
        cfg = SFSConfig(n_members=n, n_workers=w, train=TrainConfig(threads=t))
        return [_member_threads(cfg, k, resolve_workers(cfg)) for k in range(n)]

    assert threads(5, 1) == [None] * 5
    assert threads(5, 2) == [1, 1, 1, 1, 2]
    assert threads(5, 2, 2) == [2, 2, 2, 2, 4]
    assert threads(6, 2) == [1] * 6
    assert threads(7, 3) == [1] * 6 + [3]
    assert threads(8, 3) == [1] * 6 + [1, 1]
    assert threads(2, 4) == [1, 1]
    assert threads(1, 4) == [None]  # one member: trained in this process
    assert resolve_workers(SFSConfig(n_members=5)) == min(5, len(os.sched_getaffinity(0)))
    assert resolve_workers(SFSConfig(n_members=1)) == 1
    with pytest.raises(ValueError, match="n_workers"):
        SFSConfig(n_workers=0)
