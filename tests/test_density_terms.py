"""Tests for the cosmic-variance density terms of the mass-function fit (popmodel.smf.density).

The factor exp(b delta - b^2 sigma^2 / 2) is checked on prior draws of the model itself (mean
1, fractional rms ~ b sigma), the likelihood with density terms against a numpy evaluation, and
the mock generator's injected over-densities against the counts they produce.
"""

import dataclasses

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from scipy.special import logsumexp

from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.density import build_density_terms
from popmodel.smf.evolution import leja2020_params
from popmodel.smf.likelihood import expected_number, galaxy_sum, log_likelihood
from popmodel.smf.model import SMFPrior, smf_model
from popmodel.smf.schechter import ln_phi
from popmodel.survey import Field, Survey
from popmodel.testing import LEJA_COMPLETENESS_3DHST as LC


def _survey(n=3, side=(10.0, 15.0), z=(0.5, 2.5), err=0.2):
    fields = [Field(f"F{k}", side[0] * side[1] * u.arcmin**2, z[0], z[1], LC[0], LC[1],
                    mass_error_dex=err, z_error=0.0, side_arcmin=side) for k in range(n)]
    return Survey(fields)


@pytest.fixture(scope="module")
def survey():
    return _survey()


@pytest.fixture(scope="module")
def data(survey):
    cat, _ = draw_mock(survey, seed=2, n_samples=4, cosmic_variance=True)
    return prepare_smf_data(cat.subset(np.arange(300)), survey)


def test_terms_cover_each_field_in_slices(survey):
    t = build_density_terms(survey, dz=0.5)
    assert t.n_terms == 3 * 4
    assert t.labels[0] == "delta_F0_z0.5_1" and t.labels[-1] == "delta_F2_z2_2.5"
    np.testing.assert_allclose(t.z_hi - t.z_lo, 0.5)
    # sigma_DM falls with redshift in a fixed angular field (larger volume, less growth)
    s = t.sigma_dm[t.field_index == 0]
    assert np.all(np.diff(s) < 0) and 0.03 < s[-1] < s[0] < 0.3
    assert build_density_terms(_survey(side=(10.0, 15.0)), dz=0.5).sigma_dm == pytest.approx(t.sigma_dm)


def test_no_geometry_no_terms():
    f = Field("A", 100 * u.arcmin**2, 0.5, 2.5, LC[0], LC[1])
    assert build_density_terms(Survey([f])) is None
    with pytest.raises(ValueError, match="positive"):
        build_density_terms(_survey(), dz=0.0)


def test_assign_slices_and_bias(survey):
    from popmodel.cosmic_variance import galaxy_bias

    t = build_density_terms(survey, dz=0.5)
    g = np.array([0, 1, 2, 2, 0])
    z = np.array([0.4, 0.99, 1.01, 2.7, 1.5])  # 0.4 and 2.7: outside, nearest slice
    m = np.array([10.0, 9.0, 11.0, 10.5, 10.25])
    idx, b = t.assign(g, m, z)
    assert [t.labels[i] for i in idx] == ["delta_F0_z0.5_1", "delta_F1_z0.5_1",
                                          "delta_F2_z1_1.5", "delta_F2_z2_2.5", "delta_F0_z1.5_2"]
    np.testing.assert_allclose(b, galaxy_bias(m, z))


def test_factor_on_prior_draws_has_mean_one_and_rms_b_sigma(data):
    """Prior draws of the model's delta sites: F = exp(b delta - b^2 sigma^2/2) has mean 1 and
    fractional rms sqrt(exp(b^2 sigma^2) - 1) ~ b sigma_DM = sigma_gg."""
    prior = SMFPrior(density_terms=data.density.labels)
    draws = Predictive(smf_model, num_samples=40_000)(jax.random.key(0), data.arrays, prior)
    sig = np.asarray(data.arrays.cv_sigma)
    for i, lab in enumerate(prior.density_terms):
        d = np.asarray(draws[lab])
        assert np.std(d) == pytest.approx(sig[i], rel=0.03)
        for b in (1.2, 2.5):
            f = np.exp(b * d - 0.5 * (b * sig[i]) ** 2)
            se = np.std(f) / np.sqrt(f.size)
            assert abs(np.mean(f) - 1.0) < 4 * se
            assert np.std(f) == pytest.approx(np.sqrt(np.expm1((b * sig[i]) ** 2)), rel=0.04)
            assert np.std(f) == pytest.approx(b * sig[i], rel=0.1)


def test_likelihood_with_deltas_vs_numpy(data):
    """ln L with density contrasts equals a direct numpy evaluation over samples and grid."""
    p = leja2020_params()
    a = data.arrays
    rng = np.random.default_rng(3)
    delta = rng.normal(0, 1, a.n_density_terms) * np.asarray(a.cv_sigma)
    sig = np.asarray(a.cv_sigma)
    total = 0.0
    for blk in a.blocks:
        lm, z, off = (np.asarray(x) for x in (blk.log_mass, blk.z, blk.offset))
        idx, b = np.asarray(blk.cv_index), np.asarray(blk.cv_bias)
        v = np.asarray(ln_phi(jnp.asarray(lm), jnp.asarray(z), p)) + off
        v = v + b * delta[idx] - 0.5 * (b * sig[idx]) ** 2
        lg = logsumexp(v, axis=-1)
        q = np.exp(v - lg[..., None])
        w = np.asarray(blk.weight)
        sw2 = np.sum(w * w, axis=-1)  # the Bessel-like factor 1 / (1 - sum w^2)
        kappa = np.where(sw2 < 1 - 1e-9, 1.0 / np.maximum(1.0 - sw2, 1e-12), 0.0)
        jensen = 0.5 * kappa * np.sum((q - w) ** 2, axis=-1)
        lg = lg + np.where(np.asarray(blk.monte_carlo), jensen, 0.0)
        lg = lg + np.asarray(blk.galaxy_offset)
        total += np.sum(np.where(np.asarray(blk.valid), lg, 0.0))
    gi, gb = np.asarray(a.grid_cv_index), np.asarray(a.grid_cv_bias)
    lnf = gb * delta[gi] - 0.5 * (gb * sig[gi]) ** 2
    nexp = np.sum(np.exp(np.asarray(ln_phi(jnp.asarray(a.grid_log_mass), jnp.asarray(a.grid_z), p))
                         + np.asarray(a.grid_log_weight) + lnf))
    got = float(log_likelihood(p, a, delta=jnp.asarray(delta)))
    assert got == pytest.approx(total - nexp, rel=1e-10, abs=1e-6)
    assert float(expected_number(p, a, jnp.asarray(delta))) == pytest.approx(nexp, rel=1e-10)
    # a positive contrast everywhere raises the expected number
    assert float(expected_number(p, a, jnp.asarray(np.abs(delta)))) > float(expected_number(p, a, None))


def test_expected_number_per_slice_vs_quadrature(data, survey):
    """Each density term's expected number (its field and slice, with its contrast) equals
    nested adaptive quadrature over that slice alone to 1e-5. The completeness table's knots
    (0.65, 1.0, 1.5, 2.1) do not include the slice edge z = 2.0: the z quadrature must break
    there too, or part of one slice's volume is counted with its neighbour's factor (before
    the fix, 1.5 < z < 2 held ~0.5% too much volume and 2 < z < 2.5 too little)."""
    from scipy import integrate, special

    from popmodel.cosmic_variance import galaxy_bias

    p = leja2020_params()
    a = data.arrays
    t = data.density
    sig = np.asarray(a.cv_sigma)
    delta = np.random.default_rng(5).normal(0, 1, t.n_terms) * sig
    gi, gb = np.asarray(a.grid_cv_index), np.asarray(a.grid_cv_bias)
    lnf = gb * delta[gi] - 0.5 * (gb * sig[gi]) ** 2
    e = np.exp(np.asarray(ln_phi(jnp.asarray(a.grid_log_mass), jnp.asarray(a.grid_z), p))
               + np.asarray(a.grid_log_weight) + lnf)
    f = survey.fields[0]  # the fixture's galaxies all lie in F0: the other fields have no terms
    assert set(t.field_index) == {0}
    got = np.bincount(gi, weights=np.where(np.asarray(a.grid_group) == 0, e, 0.0),
                      minlength=t.n_terms)
    s_m = float(f.mass_error_dex[0])
    cosmo = survey.cosmology

    def dvdz(z):
        return float(cosmo.differential_comoving_volume(z).to_value("Mpc3 / sr"))

    def integrand(m, z, k, lp1, lp2, lms, mc):  # numpy double Schechter at fixed z
        x = m - lms
        phi = np.log(10.0) * (10.0 ** (lp1 + x * (p.alpha1 + 1)) + 10.0 ** (lp2 + x * (p.alpha2 + 1)))
        b = float(galaxy_bias(m, z))
        return (phi * np.exp(-(10.0 ** x)) * np.exp(b * delta[k] - 0.5 * (b * sig[k]) ** 2)
                * special.ndtr((m - mc) / s_m))

    for k in np.flatnonzero(t.field_index == 0):
        def over_mass(z, k=k):
            mc = float(np.interp(z, f.completeness_z, f.completeness_log_mass))
            lp1, lp2, lms = (float(v) for v in p.at(jnp.asarray(z)))
            kinks = [mc] + [x for x in np.arange(8.75, 11.3, 0.5) if mc - 8 * s_m < x < 14.0]
            return integrate.quad(integrand, mc - 8 * s_m, 14.0, args=(z, k, lp1, lp2, lms, mc),
                                  points=kinks, epsabs=0, epsrel=1e-8, limit=200)[0] * dvdz(z)

        lo, hi = t.z_lo[k], t.z_hi[k]
        pts = [x for x in f.completeness_z if lo < x < hi]
        ref = integrate.quad(over_mass, lo, hi, points=pts or None, epsabs=0, epsrel=1e-8,
                             limit=100)[0] * f.area_sr
        assert got[k] == pytest.approx(ref, rel=1e-5), t.labels[k]


def test_prior_data_mismatch_is_an_error(data):
    prior = SMFPrior(density_terms=("delta_X_z0_1",))
    with pytest.raises(ValueError, match="density terms"):
        Predictive(smf_model, num_samples=1)(jax.random.key(0), data.arrays, prior)


def test_mock_injected_overdensity_raises_counts():
    """A +0.4 contrast in one field's slice: its count over the other fields' mean matches
    the mean of exp(b delta - b^2 sigma^2/2) over the galaxies' masses (Poisson tolerance)."""
    s = _survey(n=4, side=(20.0, 30.0), err=0.01)
    t = build_density_terms(s, dz=0.5)
    fixed = {lab: 0.0 for lab in t.labels}
    fixed["delta_F0_z1_1.5"] = 0.4
    cat, truth = draw_mock(s, seed=5, n_samples=2, cosmic_variance=True, deltas=fixed)
    assert truth.deltas["delta_F0_z1_1.5"] == 0.4
    in_slice = (cat.obs_z >= 1.0) & (cat.obs_z < 1.5)
    n = np.array([np.sum(in_slice & (cat.fields == f"F{k}")) for k in range(4)])
    ratio = n[0] / n[1:].mean()
    from popmodel.cosmic_variance import galaxy_bias

    sel = in_slice & (cat.fields != "F0")
    sig = t.sigma_dm[t.labels.index("delta_F0_z1_1.5")]
    b_other = galaxy_bias(cat.obs_log_mass[sel], cat.obs_z[sel])
    b0 = galaxy_bias(cat.obs_log_mass[in_slice & (cat.fields == "F0")], 1.25)
    zero = np.exp(-0.5 * (b_other * sig) ** 2).mean()  # the others' mean factor (delta = 0)
    # expected ratio, evaluated with the other fields' mass distribution
    expect = np.exp(0.4 * b_other - 0.5 * (b_other * sig) ** 2).mean() / zero
    err = ratio * np.sqrt(1 / n[0] + 1 / n[1:].sum())
    assert abs(ratio - expect) < 4 * err, (ratio, expect, err, n)
    assert ratio > 1.5 and b0.mean() > 1.0
    with pytest.raises(ValueError, match="unknown density term"):
        draw_mock(s, seed=5, cosmic_variance=True, deltas={"delta_nope": 1.0})


def test_cosmic_variance_off_gives_the_old_likelihood(survey, data):
    cat, _ = draw_mock(survey, seed=2, n_samples=4)
    on = prepare_smf_data(cat.subset(np.arange(200)), survey)
    off = prepare_smf_data(cat.subset(np.arange(200)), survey, cosmic_variance=False)
    p = leja2020_params()
    assert off.density is None and off.arrays.n_density_terms == 0
    # the galaxy terms are identical; the expected number differs only by quadrature error,
    # as the grid with terms also breaks at the slices' edges (measured 2e-5 here)
    assert float(galaxy_sum(p, on.arrays)) == pytest.approx(float(galaxy_sum(p, off.arrays)),
                                                            rel=1e-12)
    assert float(expected_number(p, on.arrays)) == pytest.approx(
        float(expected_number(p, off.arrays)), rel=1e-7)
    d_lnl = float(log_likelihood(p, on.arrays)) - float(log_likelihood(p, off.arrays))
    d_nexp = float(expected_number(p, on.arrays)) - float(expected_number(p, off.arrays))
    assert d_lnl == pytest.approx(-d_nexp, abs=1e-8)
    prior = dataclasses.replace(SMFPrior(), density_terms=on.density.labels)
    assert prior.latent_names[-1].endswith("_eta") and len(prior.eta_names) == on.density.n_terms


def test_map_and_bootstrap_keep_the_density_terms(data):
    """MAP with density terms, then the sample bootstrap (which rebuilds the data arrays) on
    the same model: the terms must survive the rebuild (a replicate equal to the data moves
    nothing)."""
    from popmodel.smf.inference import bootstrap_map_shift, find_map
    from popmodel.testing import narrow_prior

    prior = dataclasses.replace(narrow_prior(2.0), density_terms=data.density.labels)
    m = find_map(data, prior)
    assert set(data.density.labels) <= set(m.params)
    assert len(m.u) == 11 + data.density.n_terms
    b = bootstrap_map_shift(data, prior, m, n_boot=2, seed=1)
    assert np.all(np.isfinite(b["shift_sigma"]))
    assert any(n.endswith("_eta") for n in b["u_names"])
