"""The pooled NUTS metric (``run_nuts(metric="pooled")``): the covariance of all chains' pilot
draws, shrunk towards the Laplace covariance, then the draws with that matrix."""

import arviz as az
import numpy as np
import pytest

from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.inference import (
    POOLED_PRIOR_DRAWS,
    _Potential,
    find_map,
    pooled_metric,
    run_nuts,
    unconstrained_draws,
)
from popmodel.smf.model import SMFPrior
from popmodel.testing import deep_survey


def test_pooled_metric_recovers_a_wider_direction():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(5, 5))
    lap = a @ a.T + 5 * np.eye(5)
    v = rng.normal(size=5)
    lv = lap @ v
    true = lap + 3.0 * np.outer(lv, lv) / (v @ lv)  # 4x Laplace's variance along one direction
    u = rng.multivariate_normal(np.zeros(5), true, size=40_000).reshape(4, 10_000, 5)
    cov, rep = pooled_metric(u, lap)
    assert rep["pilot_draws"] == 40_000
    assert rep["variance_ratio_max"] == pytest.approx(4.0, rel=0.05)
    assert rep["variance_ratio_min"] == pytest.approx(1.0, rel=0.05)
    np.testing.assert_allclose(cov, true, atol=0.05 * np.abs(true).max())
    # draws narrower than Laplace in some direction: the metric keeps Laplace's variance
    # there (a short pilot under-samples tails); wider ones are taken as they are
    narrow = lap - 0.75 * np.outer(lv, lv) / (v @ lv)  # 1/4 of Laplace's along v
    un = rng.multivariate_normal(np.zeros(5), narrow, size=40_000).reshape(4, 10_000, 5)
    covn, repn = pooled_metric(un, lap)
    assert repn["variance_ratio_min"] == pytest.approx(0.25, rel=0.05)
    np.testing.assert_allclose(covn, lap, atol=0.03 * np.abs(lap).max())
    # few draws: the Laplace matrix carries the weight of POOLED_PRIOR_DRAWS draws
    cov2, rep2 = pooled_metric(u[:, :1], lap)
    n = 4
    assert rep2["pilot_draws"] == n
    w = np.linalg.eigvalsh(np.linalg.solve(np.linalg.cholesky(lap), np.linalg.solve(
        np.linalg.cholesky(lap), cov2).T))  # eigenvalues of L^-1/2 cov L^-1/2
    assert np.all(w >= 1 - 1e-9)  # never narrower than Laplace
    top = (n * max(rep2["variance_ratio_max"], 1.0) + POOLED_PRIOR_DRAWS) / (n + POOLED_PRIOR_DRAWS)
    assert w.max() == pytest.approx(top, rel=1e-9)


@pytest.fixture(scope="module")
def small():
    survey = deep_survey(1, 6.0, mass_error_dex=0.1, z_error=0.0)
    cat, _ = draw_mock(survey, seed=5, n_samples=4)
    data = prepare_smf_data(cat, survey, cosmic_variance=False, posterior="gauss-hermite")
    prior = SMFPrior()
    return data, prior, find_map(data, prior)


def test_unconstrained_draws_invert_the_constraint(small):
    data, prior, mp = small
    pot = _Potential(prior, data.arrays)
    c = pot.constrain(mp.u, data.arrays)
    samples = {k: np.full((2, 3), c[k]) for k in prior.latent_names}
    u = unconstrained_draws(samples, prior, data.arrays, pot)
    assert u.shape == (2, 3, mp.u.size)
    np.testing.assert_allclose(u, np.broadcast_to(mp.u, u.shape), atol=1e-10)


def test_pooled_run_samples_the_same_posterior(small):
    data, prior, mp = small
    kw = {"num_chains": 2, "seed": 4, "init_spread": True, "chain_method": "sequential",
          "progress_bar": False}
    pooled = run_nuts(data, prior, mp, num_warmup=100, num_samples=400, metric="pooled", **kw)
    rep = pooled.metric_report
    assert rep["pilot_draws"] == 2 * 50
    assert rep["variance_ratio_min"] < 1.0 < rep["variance_ratio_max"]
    ref = run_nuts(data, prior, mp, num_warmup=200, num_samples=1500, **kw)
    assert ref.metric_report is None
    a = pooled.get_samples(group_by_chain=True)
    b = ref.get_samples(group_by_chain=True)
    # Means only: on this 6 arcmin^2 mock most parameters reach their prior's bounds in rare
    # long excursions (the reference's sd of log phi1 at z = 1.6 was 0.86, set by a few of
    # them), so the widths of 400 draws scatter beyond any error bar their ESS gives
    for k in prior.names:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.shape == (2, 400)
        # means agree within the Monte Carlo errors of both runs (ESS-based)
        se = np.hypot(x.std() / np.sqrt(az.ess(x)), y.std() / np.sqrt(az.ess(y)))
        assert abs(x.mean() - y.mean()) < 4 * se, k


def test_pooled_metric_refuses_what_it_cannot_do(small):
    data, prior, mp = small
    with pytest.raises(ValueError, match="metric must be"):
        run_nuts(data, prior, mp, metric="adaptive")
    with pytest.raises(ValueError, match="needs a MAP"):
        run_nuts(data, prior, None, metric="pooled")
    with pytest.raises(ValueError, match="num_warmup >= 4"):
        run_nuts(data, prior, mp, metric="pooled", num_warmup=2)


def test_fit_smf_cli_records_the_pooled_metric(tmp_path):
    """``popmodel fit-smf --metric pooled``: the pilot and the variance ratios go into
    summary.json's diagnostics and the setting into the recorded configuration."""
    import json

    from popmodel.cli import main

    survey = tmp_path / "s.toml"
    deep_survey(1, 3.0, mass_error_dex=0.1).write(survey)
    cat = tmp_path / "m.h5"
    assert main(["mock", "--survey", str(survey), "--out", str(cat), "--n-samples", "4"]) == 0
    out = tmp_path / "fit"
    assert main(["fit-smf", str(cat), "--survey", str(survey), "--out", str(out),
                 "--metric", "pooled", "--warmup", "20", "--samples", "20", "--chains", "2",
                 "--bootstrap", "0", "--no-figures", "--no-progress", "--no-cosmic-variance",
                 "--posterior", "samples"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["metric"] == "pooled"
    rep = summary["diagnostics"]["pooled_metric"]
    assert rep["pilot_draws"] == 2 * 10
    assert rep["variance_ratio_min"] <= rep["variance_ratio_max"]
    assert len(summary["diagnostics"]["e_bfmi"]) == 2
