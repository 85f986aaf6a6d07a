"""Density terms of a field inside another (CANDELS-COSMOS inside COSMOS-2015): correlated.

A field inside another looks at part of its parent's volume, so its contrast shares the
parent's large-scale modes: Cov(delta_child, delta_parent) = sigma_parent^2 in each slice, and
the child keeps its own, larger, variance. Checked here: the covariance itself, the model's
prior draws against it (Monte Carlo), a mock whose nested field carries its own injected
contrast, and a fit in which independent terms would understate the error of rho_*.
"""

import dataclasses

import astropy.units as u
import jax
import numpy as np
import pytest
from numpyro.infer import Predictive

from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.density import build_density_terms
from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.model import SMFPrior, smf_model
from popmodel.survey import Field, Survey
from popmodel.testing import LEJA_COMPLETENESS_3DHST as LC

OWN = [{"fields": ["DEEP", "WIDE"], "owner": "DEEP", "z": [1.0, 2.0]}]


def _field(name: str, side: tuple[float, float], **kw) -> Field:
    return Field(name, side[0] * side[1] * u.arcmin**2, 1.0, 2.0, LC[0], LC[1],
                 mass_error_dex=0.15, z_error=0.0, side_arcmin=side, **kw)


def _survey(wide=(24.0, 24.0), deep=(8.0, 10.0), **deep_kw) -> Survey:
    return Survey([_field("WIDE", wide), _field("DEEP", deep, inside="WIDE", **deep_kw),
                   _field("OTHER", deep)], ownership=OWN)


@pytest.fixture(scope="module")
def survey():
    return _survey()


def test_covariance_of_a_nested_field(survey):
    t = build_density_terms(survey, dz=0.5)
    lab = list(t.labels)
    assert lab == ["delta_WIDE_z1_1.5", "delta_WIDE_z1.5_2", "delta_DEEP_z1_1.5",
                   "delta_DEEP_z1.5_2", "delta_OTHER_z1_1.5", "delta_OTHER_z1.5_2"]
    s = t.sigma_dm
    np.testing.assert_allclose(np.diag(t.cov), s**2, rtol=1e-12)
    for k in range(2):  # the child shares its parent's variance, slice by slice
        assert t.cov[2 + k, k] == pytest.approx(s[k] ** 2, rel=1e-12)
        assert t.cov[k, 2 + k] == pytest.approx(s[k] ** 2, rel=1e-12)
        assert s[2 + k] > s[k]  # a smaller volume varies more
    off = np.ones_like(t.cov, bool)
    off[np.diag_indices(6)] = False
    off[[2, 3, 0, 1], [0, 1, 2, 3]] = False
    assert np.all(t.cov[off] == 0.0)  # other slices and the unrelated field: independent
    np.testing.assert_allclose(t.chol @ t.chol.T, t.cov, atol=1e-15)
    # correlation of child and parent = sigma_parent / sigma_child
    np.testing.assert_allclose(t.cov[2, 0] / np.sqrt(t.cov[2, 2] * t.cov[0, 0]), s[0] / s[2])
    # without the nesting: independent, as before
    plain = Survey([_field("WIDE", (24.0, 24.0)), _field("OTHER", (8.0, 10.0))])
    assert build_density_terms(plain).cov is None
    # summary.json records the prior the fit used
    from popmodel.io.smf import _density_term_prior

    rec = _density_term_prior(t)
    assert rec["form"].startswith("multivariate normal") and rec["labels"] == lab
    np.testing.assert_array_equal(np.array(rec["covariance"]), t.cov)
    assert _density_term_prior(build_density_terms(plain))["form"].startswith("independent")


def test_a_child_varying_less_than_its_parent_is_refused():
    with pytest.raises(ValueError, match=r"delta_DEEP_z1_1.5.*inside 'WIDE'"):
        build_density_terms(_survey(sigma_dm=0.01))


@pytest.fixture(scope="module")
def nested_mock(survey):
    return draw_mock(survey, seed=4, n_samples=4, cosmic_variance=True)


def test_prior_draws_of_the_model_have_that_covariance(survey, nested_mock):
    cat, _ = nested_mock
    keep = np.concatenate([np.flatnonzero(cat.fields == f)[:150] for f in ("WIDE", "DEEP", "OTHER")])
    data = prepare_smf_data(cat.subset(keep), survey)
    assert data.arrays.cv_chol is not None
    prior = SMFPrior(density_terms=data.density.labels)
    n = 40_000
    draws = Predictive(smf_model, num_samples=n)(jax.random.key(1), data.arrays, prior)
    d = np.stack([np.asarray(draws[lab]) for lab in prior.density_terms], axis=-1)
    emp = np.cov(d, rowvar=False)
    cov = data.density.cov
    # Monte Carlo sd of a sample covariance: sqrt((C_ii C_jj + C_ij^2) / n)
    se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / n)
    assert np.all(np.abs(emp - cov) < 4.5 * se), (emp - cov) / se


def test_mock_gives_the_nested_field_its_own_contrast(survey):
    """+0.5 injected in DEEP's z 1-1.5 slice (WIDE and OTHER at 0): DEEP's counts there over
    OTHER's (same area and depth) match the mean factor exp(b delta - b^2 sigma^2 / 2)."""
    from popmodel.cosmic_variance import galaxy_bias

    t = build_density_terms(survey)
    fixed = dict.fromkeys(t.labels, 0.0)
    fixed["delta_DEEP_z1_1.5"] = 0.5
    cat, _ = draw_mock(survey, seed=6, n_samples=2, cosmic_variance=True, deltas=fixed)
    sl = (cat.obs_z >= 1.0) & (cat.obs_z < 1.5)
    n_deep, n_other = np.sum(sl & (cat.fields == "DEEP")), np.sum(sl & (cat.fields == "OTHER"))
    i_d, i_o = t.labels.index("delta_DEEP_z1_1.5"), t.labels.index("delta_OTHER_z1_1.5")
    b = galaxy_bias(cat.obs_log_mass[sl & (cat.fields == "OTHER")], cat.obs_z[sl & (cat.fields == "OTHER")])
    expect = (np.exp(0.5 * b - 0.5 * (b * t.sigma_dm[i_d]) ** 2).mean()
              / np.exp(-0.5 * (b * t.sigma_dm[i_o]) ** 2).mean())
    ratio = n_deep / n_other
    err = ratio * np.sqrt(1 / n_deep + 1 / n_other)
    assert abs(ratio - expect) < 4 * err, (ratio, expect, err)
    assert ratio > 1.5


def test_fit_with_a_nested_field_widens_rho_star(survey, nested_mock):
    """The same data fitted with the nested field's terms correlated (default) and, as a
    control, forced independent: independent terms treat DEEP as a fresh volume and understate
    the error of the cosmic rho_*; the correlated fit's band is wider."""
    from popmodel.smf.derived import log10_rho_star
    from popmodel.smf.inference import find_map, laplace_draws

    cat, _ = nested_mock
    data = prepare_smf_data(cat, survey, posterior="gauss-hermite")
    assert data.arrays.cv_chol is not None
    prior = SMFPrior(density_terms=data.density.labels)
    indep = dataclasses.replace(data, arrays=dataclasses.replace(data.arrays, cv_chol=None))
    sd = {}
    for name, d in (("correlated", data), ("independent", indep)):
        mp = find_map(d, prior)
        draws = laplace_draws(mp, prior, 4000, seed=2, data=d)
        lr = log10_rho_star(ContinuityParams.from_dict(draws), np.array([1.25, 1.75]))
        sd[name] = lr.std(axis=0)
    print("sd of log10 rho_*:", sd)
    assert np.all(sd["correlated"] > 1.05 * sd["independent"]), sd
