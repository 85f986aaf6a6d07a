"""Diagnostic of the CV calibration rank bias (see analyses/measurements/README.md)."""
import jax
import numpy as np

jax.config.update("jax_enable_x64", True)
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.derived import log10_rho_star
from popmodel.smf.evolution import ContinuityParams, leja2020_params
from popmodel.smf.inference import find_map
from popmodel.smf.model import SMFPrior
from popmodel.testing import cv_survey

truth = leja2020_params(); zs = np.array([0.5, 1.0, 2.0])
lt = log10_rho_star(truth, zs)
side = (40.0, 45.0)  # ~8.6x the calibration fields' area, no cosmic variance
for nodes, seed in [((4, 1), 1), ((8, 1), 1), ((4, 1), 2)]:
    sv = cv_survey(5, side)
    cat, _ = draw_mock(sv, truth, seed=seed, n_samples=4, moment_matched=True, cosmic_variance=False)
    d = prepare_smf_data(cat, sv, posterior="gauss-hermite", gh_nodes=nodes, dtype="float32",
                         cosmic_variance=False)
    m = find_map(d, SMFPrior())
    names = list(truth.to_dict())
    X = np.random.default_rng(0).multivariate_normal([m.params[n] for n in names], m.cov, 2000)
    lr = log10_rho_star(ContinuityParams.from_vector(X), zs)
    print(nodes, seed, cat.n_galaxies, "z-scores of rho_*(0.5,1,2):", np.round((np.median(lr, 0) - lt) / lr.std(0), 2), "dex:", np.round(np.median(lr, 0) - lt, 4), flush=True)
