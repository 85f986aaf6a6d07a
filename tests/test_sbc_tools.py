"""The simulation-based-calibration helpers of popmodel.testing: ranks and the pooled tests.

The pooled rank test must hold its level when one mock's ranks are correlated (they share the
mock's data), which the plain chi-square does not: checked by simulation under the null.
"""

import numpy as np
import pytest
from scipy import stats

from popmodel.testing import sbc_rank_test, sbc_rank_test_clustered, sbc_ranks


def test_sbc_ranks_counts_draws_below_truth():
    draws = np.arange(100.0)
    assert sbc_ranks(draws, -1.0, 49) == 0
    assert sbc_ranks(draws, 1000.0, 49) == 49
    # 49 draws thinned evenly from 0..99: values 0, 2.06, ...; truth 50 has 25 below it
    assert sbc_ranks(draws, 50.0, 49) == int(np.sum(np.linspace(0, 99, 49).round() < 50.0))


def _clustered_null(rng, n_mocks=50, n_q=14, rho=0.6, n_keep=49):
    """Ranks uniform in 0..n_keep for every quantity, correlated within a mock (Gaussian
    copula with correlation rho)."""
    common = rng.standard_normal((n_mocks, 1))
    x = np.sqrt(rho) * common + np.sqrt(1 - rho) * rng.standard_normal((n_mocks, n_q))
    return np.minimum((stats.norm.cdf(x) * (n_keep + 1)).astype(int), n_keep)


def test_clustered_test_holds_its_level_where_the_plain_test_does_not():
    rng = np.random.default_rng(11)
    trials = 600
    p_naive, p_rs = [], []
    for _ in range(trials):
        r = _clustered_null(rng, rho=0.3)  # design effect ~2; the CV calibration's is 1.1-1.4
        p_naive.append(sbc_rank_test(r.ravel(), 49, 5))
        p_rs.append(sbc_rank_test_clustered(r, 49, 5)["p_value"])
    p_naive, p_rs = np.array(p_naive), np.array(p_rs)
    lo, hi = stats.binom.interval(0.99, trials, 0.05)
    # the plain pooled test rejects a calibrated fit far more often than 5%
    assert np.mean(p_naive < 0.05) > 3 * 0.05
    # the corrected one rejects at about the nominal rate (the second-order Rao-Scott
    # correction is approximate: allow the 99% binomial band around 5% widened by 2 points)
    assert lo / trials - 0.02 <= np.mean(p_rs < 0.05) <= hi / trials + 0.02, np.mean(p_rs < 0.05)


def test_clustered_test_equals_plain_test_for_independent_ranks():
    rng = np.random.default_rng(3)
    r = rng.integers(0, 50, size=(400, 14))
    res = sbc_rank_test_clustered(r, 49, 5)
    assert res["design_effect"] == pytest.approx(1.0, abs=0.15)
    assert res["p_value_naive"] == pytest.approx(sbc_rank_test(r.ravel(), 49, 5), rel=1e-12)


def test_clustered_test_detects_a_shifted_posterior():
    """Ranks of a posterior biased high (truth in its lower half too often) are rejected."""
    rng = np.random.default_rng(5)
    r = _clustered_null(rng, rho=0.3)
    biased = np.minimum((r * 0.7).astype(int), 49)  # piles ranks toward 0
    assert sbc_rank_test_clustered(biased, 49, 5)["p_value"] < 1e-3
    with pytest.raises(ValueError, match="n_mocks"):
        sbc_rank_test_clustered(r[0], 49)
