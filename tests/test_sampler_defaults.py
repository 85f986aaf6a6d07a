"""The sampler's defaults: the metric rule (:func:`popmodel.smf.fit.adapt_metric`), its
command-line switch, the command line's defaults against ``FitConfig``'s, and the MAP's Newton
steps after L-BFGS."""

import numpy as np
import pytest

from popmodel.cli import build_parser
from popmodel.cli.smf import _fit_config
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.fit import ADAPT_MAX_PARAMETERS, ADAPT_MIN_WARMUP, FitConfig, adapt_metric
from popmodel.smf.inference import find_map
from popmodel.smf.model import SMFPrior
from popmodel.testing import deep_survey


def test_adapt_metric_rule():
    cfg = FitConfig()
    assert cfg.adapt_mass_matrix is None and cfg.num_warmup >= ADAPT_MIN_WARMUP
    assert adapt_metric(cfg, 11)  # the mass function alone: re-estimated
    assert not adapt_metric(cfg, 36)  # 3D-HST with its 25 density terms: the Laplace metric
    assert adapt_metric(cfg, ADAPT_MAX_PARAMETERS) and not adapt_metric(cfg, ADAPT_MAX_PARAMETERS + 1)
    short = FitConfig(num_warmup=ADAPT_MIN_WARMUP - 1)
    assert not adapt_metric(short, 11)
    assert adapt_metric(FitConfig(adapt_mass_matrix=True), 36)
    assert not adapt_metric(FitConfig(adapt_mass_matrix=False), 11)


@pytest.mark.parametrize("flag, value", [(None, None), ("laplace", False), ("adapt", True)])
def test_cli_metric_switch(flag, value):
    argv = ["fit-smf", "c.h5", "--survey", "s.toml", "--out", "o"]
    if flag:
        argv += ["--metric", flag]
    assert _fit_config(build_parser().parse_args(argv)).adapt_mass_matrix is value


def test_fit_smf_cli_defaults_are_fit_configs():
    """`popmodel fit-smf` with no flags runs FitConfig()'s sampler and prior."""
    got = _fit_config(build_parser().parse_args(["fit-smf", "c.h5", "--survey", "s", "--out", "o"]))
    ref = FitConfig()
    for k in ("num_warmup", "num_samples", "num_chains", "target_accept", "adapt_mass_matrix",
              "amplitude_prior", "dtype", "posterior", "anchor_z", "seed"):
        assert getattr(got, k) == getattr(ref, k), k
    h3 = _fit_config(build_parser().parse_args(["fit-3dhst", "--out", "o"]))
    assert (h3.num_warmup, h3.num_samples, h3.target_accept) == (200, 1000, 0.95)
    assert h3.amplitude_prior == "linear" and h3.adapt_mass_matrix is None


def test_newton_steps_finish_a_map_that_lbfgs_left_short():
    """L-BFGS stopped after 3 iterations from a point near the peak: the Newton steps reach
    the MAP found by a full run (log posterior within 1e-6, parameters within 0.02 sigma, as a
    Newton decrement below 1e-4 allows) and
    the fit counts as converged; a full run needs none of them."""
    survey = deep_survey(1, 8.0, mass_error_dex=0.1, z_error=0.0)
    cat, _ = draw_mock(survey, seed=5, n_samples=4)
    data = prepare_smf_data(cat, survey, cosmic_variance=False, posterior="gauss-hermite")
    prior = SMFPrior()
    full = find_map(data, prior)
    assert full.converged, full.message
    start = {k: v + 0.3 * full.sigma[k] for k, v in full.params.items() if k in full.sigma}
    short = find_map(data, prior, init=start, maxiter=3)
    assert "Newton step" in short.message, short.message
    assert short.converged, short.message
    assert short.log_posterior == pytest.approx(full.log_posterior, abs=1e-6)
    for k in prior.names:
        assert abs(short.params[k] - full.params[k]) < 0.02 * full.sigma[k], k
    np.testing.assert_allclose(short.cov_u, full.cov_u, rtol=0.05, atol=1e-6)
