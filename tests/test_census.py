"""The cosmic census: closed forms against quadrature, science.md check 4, priors, tension, CLI."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from astropy.cosmology import WMAP9
from scipy.integrate import quad
from scipy.special import gammaincc
from scipy.stats import norm

from popmodel import census as C
from popmodel.census.sfrd import _eq10, _z_of_t_table
from popmodel.literature import leja2022_coefficients, leja2022_sfs, madau_dickinson2014_sfrd
from popmodel.smf.derived import anchor_basis
from popmodel.smf.evolution import (
    LEJA2020_MEDIAN,
    LEJA2020_SIGMA,
    ContinuityParams,
    anchor_polynomial,
    leja2020_params,
)
from popmodel.smf.schechter import log10_phi

Z4 = np.array([0.5, 1.0, 1.5, 2.0, 2.5])


@pytest.fixture(scope="module")
def median() -> ContinuityParams:
    return leja2020_params()


@pytest.fixture(scope="module")
def gauss_draws() -> ContinuityParams:
    """Leja+20 medians with independent Gaussian errors (their Appendix B recipe), D = 300."""
    rng = np.random.default_rng(20200311)
    return ContinuityParams.from_dict(
        {k: LEJA2020_MEDIAN[k] + LEJA2020_SIGMA[k] * rng.standard_normal(300) for k in LEJA2020_MEDIAN})


def _phi_fn(z: float, p: ContinuityParams) -> Callable[[float], float]:
    """Leja+20 double Schechter per dex at one z, written out independently (plain floats)."""
    lp1, lp2, lms = (float(v) for v in p.at(z))
    a1, a2 = float(p.alpha1), float(p.alpha2)

    def phi(m: float) -> float:
        x = 10.0 ** (m - lms)
        return float(np.log(10) * np.exp(-x) * (10**lp1 * x ** (a1 + 1) + 10**lp2 * x ** (a2 + 1)))

    return phi


# ---------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("a", [-2.5, -1.9, -1.0, -0.48, 0.0, 0.52, 1.7, -3.0])
def test_upper_incomplete_gamma_against_quad(a: float) -> None:
    x = np.array([1e-4, 0.03, 0.3, 1.0, 5.0, 30.0])
    got = C.upper_incomplete_gamma(a, x)
    # in u = ln t the integrand t^a e^-t is smooth even for a << 0
    ref = np.array([quad(lambda v: np.exp(a * v - np.exp(v)), np.log(xx), np.log(xx + 200.0),
                         epsabs=0, epsrel=1e-12, limit=400)[0] for xx in x])
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    if a < 0:  # the regularised scipy function has no answer here: why the recurrence exists
        assert np.all(np.isnan(gammaincc(a, x)))


def test_number_density_against_quad(median: ContinuityParams, gauss_draws: ContinuityParams) -> None:
    z = np.array([0.3, 1.0, 2.2])
    for lo, hi in ((8.0, None), (9.5, None), (11.0, None), (8.5, 10.5)):
        n = C.number_density(median, z, lo, hi)[0]
        ref = [quad(_phi_fn(zz, median), lo, 16.0 if hi is None else hi, epsabs=0, epsrel=1e-11,
                    limit=200)[0] for zz in z]
        np.testing.assert_allclose(n, ref, rtol=1e-8)
    # a few posterior draws, one redshift
    sub = ContinuityParams.from_vector(np.asarray(gauss_draws.to_vector())[:4])
    n = C.number_density(sub, [1.3], 9.0)[:, 0]
    ref = [quad(_phi_fn(1.3, ContinuityParams.from_vector(v)), 9.0, 16.0, epsrel=1e-11)[0]
           for v in np.asarray(sub.to_vector())]
    np.testing.assert_allclose(n, ref, rtol=1e-8)


def test_rho_star_reproduces_check3_and_derived(median: ContinuityParams,
                                                gauss_draws: ContinuityParams) -> None:
    z = np.array([0.2, 0.5, 1.0, 2.0, 3.0])
    lr = np.log10(C.rho_star_draws(median, z, 8.0, 13.0))[0]
    np.testing.assert_allclose(lr, [8.524, 8.453, 8.304, 7.930, 7.598], atol=0.005)
    np.testing.assert_allclose(np.log10(C.rho_star_draws(median, [0.5, 1.0, 2.0], 9.0, 13.0))[0],
                               [8.437, 8.287, 7.906], atol=0.005)
    np.testing.assert_allclose(np.log10(C.rho_star_draws(median, [0.5, 1.0, 2.0], None, None))[0],
                               [8.460, 8.311, 7.940], atol=0.005)
    # the same closed form as popmodel.smf.derived.rho_star (JAX)
    from popmodel.smf.derived import rho_star

    for lo, hi in ((8.0, 13.0), (None, 12.0)):
        ref = np.asarray(rho_star(gauss_draws, np.array([0.4, 1.7]), lo, hi))
        np.testing.assert_allclose(C.rho_star_draws(gauss_draws, [0.4, 1.7], lo, hi), ref, rtol=1e-12)


def test_drho_dz_closed_form_matches_finite_difference(gauss_draws: ContinuityParams) -> None:
    z = np.array([0.3, 1.1, 1.9, 2.8])
    h = 1e-5
    for lo, hi in ((8.0, 13.0), (9.0, None), (None, None)):
        fd = (C.rho_star_draws(gauss_draws, z + h, lo, hi)
              - C.rho_star_draws(gauss_draws, z - h, lo, hi)) / (2 * h)
        np.testing.assert_allclose(C.drho_star_dz(gauss_draws, z, lo, hi), fd, rtol=1e-6)


def test_lagrange_derivative_four_anchors() -> None:
    anchors = (0.2, 1.0, 2.0, 3.0)
    z = np.array([0.25, 0.9, 1.6, 2.9])
    basis, deriv = anchor_basis(anchors, z)
    np.testing.assert_allclose(basis, np.asarray(anchor_polynomial(anchors, z)), atol=1e-13)
    h = 1e-6
    fd = (np.asarray(anchor_polynomial(anchors, z + h)) - np.asarray(anchor_polynomial(anchors, z - h))) / (2 * h)
    np.testing.assert_allclose(deriv, fd, atol=1e-7)


# ---------------------------------------------------------------------------- route 1


def test_sfrd_from_rho_reproduces_check4(median: ContinuityParams) -> None:
    r = C.sfrd_from_rho(median, Z4, return_fraction=0.36, log_m_lo=8.0, log_m_hi=13.0)
    np.testing.assert_allclose(r.log_sfrd[0], [-1.435, -1.225, -1.133, -1.140, -1.218], atol=0.01)
    r0 = C.sfrd_from_rho(median, Z4, return_fraction=0.0)
    np.testing.assert_allclose(r.log_sfrd - r0.log_sfrd, -np.log10(0.64), atol=1e-12)
    np.testing.assert_allclose(r0.log_sfrd[0] - r.log_sfrd[0], -0.194, atol=0.001)
    # peak of d rho/dt (log M > 8) at z ~ 1.70
    zz = np.linspace(1.0, 2.5, 1501)
    psi = C.sfrd_from_rho(median, zz, return_fraction=0.36).log_sfrd[0]
    assert abs(zz[np.argmax(psi)] - 1.70) < 0.02


def test_dt_from_astropy_cosmology(median: ContinuityParams) -> None:
    """dt/dz = -1/((1+z)H): compare with a finite difference of astropy's age."""
    z = np.array([0.5, 1.5])
    psi = 10 ** C.sfrd_from_rho(median, z, return_fraction=0.0, cosmology=WMAP9).log_sfrd[0]
    h = 1e-4
    dtdz = [(WMAP9.age(zz + h) - WMAP9.age(zz - h)).to_value("yr") / (2 * h) for zz in z]
    np.testing.assert_allclose(psi, C.drho_star_dz(median, z)[0] / np.array(dtdz), rtol=1e-6)


def test_return_fraction_prior_band_contains_fixed_value_and_widens(
        median: ContinuityParams, gauss_draws: ContinuityParams) -> None:
    z = np.array([0.5, 1.5, 2.5])
    rep = ContinuityParams.from_vector(np.repeat(np.asarray(median.to_vector())[None], 400, 0))
    prior = C.ReturnFractionPrior(0.30, 0.45)
    r = C.sfrd_from_rho(rep, z, return_fraction=prior, seed=3)
    fixed = C.sfrd_from_rho(median, z, return_fraction=0.36).log_sfrd[0]
    b = np.percentile(r.log_sfrd, [16, 50, 84], axis=0)
    assert np.all((b[0] < fixed) & (fixed < b[2]))
    # for U(0.30, 0.45) the 16-84% width of log 1/(1-R) is 0.068*0.105 = 0.071 dex
    width = b[2] - b[0]
    exp_w = np.log10(1 / (1 - (0.30 + 0.84 * 0.15))) - np.log10(1 / (1 - (0.30 + 0.16 * 0.15)))
    np.testing.assert_allclose(width, exp_w, atol=0.006)
    assert np.all((r.return_fraction >= 0.30) & (r.return_fraction <= 0.45))
    # on posterior draws: R marginalised widens the band
    w_fix = np.ptp(np.percentile(C.sfrd_from_rho(gauss_draws, z, return_fraction=0.36).log_sfrd,
                                 [16, 84], axis=0), axis=0)
    w_pri = np.ptp(np.percentile(C.sfrd_from_rho(gauss_draws, z, return_fraction=prior).log_sfrd,
                                 [16, 84], axis=0), axis=0)
    assert np.all(w_pri > w_fix + 0.005)


def test_remnant_matched_return_fraction() -> None:
    rng = np.random.default_rng(1)
    gas = C.ReturnFractionPrior(0.30, 0.45).sample(2000, np.random.default_rng(1))
    lost = C.ReturnFractionPrior(0.30, 0.45, masses_include_remnants=False).sample(2000, rng)
    assert np.all(lost > gas + 0.04)  # remnants hold >= ~5% of the formed mass after ~0.3 Gyr
    # the mapping goes through the age where the IMF calculation returns that much gas
    age = np.geomspace(1e8, 1.3e10, 50)
    b = C.imf_mass_budget(age)
    r = C.ReturnFractionPrior(float(b["gas"][20]), float(b["gas"][20]), False).sample(1, rng)[0]
    assert abs(r - (1 - b["living"][20])) < 2e-3


def test_imf_budget_and_mass_loss_kernels() -> None:
    # Chabrier (2003) Table 1: the power law above 1 Msun has amplitude 4.43e-2
    assert abs(C.chabrier2003_imf(np.array([2.0]))[0] * 2.0**1.3 - 0.0443) < 3e-4
    t = C.raiteri1996_lifetime(np.array([1.0, 10.0, 100.0]))
    assert 9e9 < t[0] < 1.1e10 and 1.5e7 < t[1] < 4e7 and 2e6 < t[2] < 5e6
    age = np.geomspace(1e7, 1.3e10, 40)
    b = C.imf_mass_budget(age)
    np.testing.assert_allclose(b["gas"] + b["remnants"] + b["living"], 1.0, atol=1e-12)
    assert np.all(np.diff(b["gas"]) >= 0) and np.all(np.diff(b["living"]) <= 0)
    # independent fits of the same Chabrier quantity: the IMF calculation agrees with
    # Behroozi+13 to 0.02 and with Leitner & Kravtsov 2011 to 0.07 at all ages
    b13 = C.MassLossKernel.behroozi2013()(age)
    lk = C.MassLossKernel.leitner_kravtsov2011()(age)
    assert np.max(np.abs(b["gas"] - b13)) < 0.02
    assert np.max(np.abs(b["gas"] - lk)) < 0.07
    np.testing.assert_allclose(b13, 0.05 * np.log1p(age / 1.4e6), rtol=1e-6)
    k = C.MassLossKernel.from_imf()
    tau = np.array([3e7, 2e9, 1e10])
    ref = []
    for tt in tau:  # dense trapezoid on a grid unrelated to the kernel's own table
        x = np.concatenate([[0.0], np.geomspace(1.0, tt, 200001)])
        ref.append(np.trapezoid(k(x), x))
    np.testing.assert_allclose(k.integral(tau), ref, rtol=1e-4)


def test_constant_kernel_equals_instantaneous_recycling(median: ContinuityParams) -> None:
    inst = C.sfrd_from_rho(median, Z4, return_fraction=0.36).log_sfrd
    kern = C.sfrd_from_rho(median, Z4, kernel=C.MassLossKernel.constant(0.36)).log_sfrd
    np.testing.assert_allclose(kern, inst, atol=0.002)


def test_kernel_inversion_recovers_injected_history() -> None:
    """psi(t) = MD14 shape; rho(t) = int psi (1 - f) by quadrature; the solver gets psi back."""
    kern = C.MassLossKernel.behroozi2013()
    zt, tt = _z_of_t_table(WMAP9)

    def psi(t: np.ndarray) -> np.ndarray:
        return madau_dickinson2014_sfrd(np.interp(t, tt, zt))

    t_edges = np.linspace(WMAP9.age(3.0).to_value("yr"), WMAP9.age(0.3).to_value("yr"), 201)

    def rho(t: float) -> float:  # dense trapezoid in age, unrelated to the solver's grid
        tau = np.concatenate([[0.0], np.geomspace(1.0, t, 20001)])
        return np.trapezoid(psi(t - tau) * (1 - kern(tau)), tau)

    rho_e = np.array([rho(t) for t in t_edges])[None]
    got = C.sfr_history_from_mass(t_edges, rho_e, kern, pre_history=psi)[0]
    tm = 0.5 * (t_edges[1:] + t_edges[:-1])
    np.testing.assert_allclose(got, psi(tm), rtol=0.01)
    # a wrong kernel (no mass loss) gives a clearly different history
    wrong = C.sfr_history_from_mass(t_edges, rho_e, C.MassLossKernel.constant(0.0), pre_history=psi)[0]
    assert np.median(np.abs(wrong / psi(tm) - 1)) > 0.2


# ---------------------------------------------------------------------------- route 2


def test_sfrd_from_sfs_reproduces_check4(median: ContinuityParams) -> None:
    z = Z4[:4]
    a = C.sfrd_from_sfs(median, z, log_m_lo=8.0, log_m_hi=13.0)
    np.testing.assert_allclose(a.log_sfrd[0], [-1.448, -1.220, -1.076, -0.998], atol=0.01)
    b = C.sfrd_from_sfs(median, z, log_m_lo=9.0, log_m_hi=13.0)
    np.testing.assert_allclose(b.log_sfrd[0], [-1.511, -1.293, -1.163, -1.108], atol=0.01)
    assert "Table 1" in a.source


def test_fraction_below_limit_against_quad(median: ContinuityParams) -> None:
    z = np.array([0.7, 1.8])
    r = C.sfrd_from_sfs(median, z)
    for k, zz in enumerate(z):
        mc = C.leja2022_completeness(zz)
        phi = _phi_fn(zz, median)
        q = leja2022_coefficients(zz)

        def f(m: float, phi: Callable = phi, q: dict = q) -> float:
            x = m - float(q["log_mt"])
            return phi(m) * 10 ** (float(q["a"] if x > 0 else q["b"]) * x + float(q["c"]))

        below = quad(f, 8.0, mc, epsrel=1e-10)[0]
        total = below + quad(f, mc, 13.0, epsrel=1e-10, limit=200)[0]
        assert abs(r.frac_below_limit[0, k] - below / total) < 2e-4
        assert abs(10 ** r.log_sfrd[0, k] / total - 1) < 2e-4


def test_sfs_route_uses_the_fit_not_the_extrapolation(median: ContinuityParams) -> None:
    """A model equal to Table 1 above log M_c and absurd below it: the below-limit part comes
    from the Eq. 10 fit to the model above the limit, so check 4 is reproduced."""
    z = Z4[:4]

    def model(lm: np.ndarray, zz: np.ndarray) -> np.ndarray:
        y = leja2022_sfs(lm[None, :], zz[:, None], "mean")
        below = lm[None, :] < C.leja2022_completeness(zz)[:, None]
        return np.where(below, y + 3.0, y)

    r = C.sfrd_from_sfs(median, z, mean_log_sfr=model)
    np.testing.assert_allclose(r.log_sfrd[0], [-1.448, -1.220, -1.076, -0.998], atol=0.01)
    ref = {k: v for k, v in leja2022_coefficients(z).items()}
    for key, tol in (("a", 0.03), ("b", 0.03), ("c", 0.03), ("log_mt", 0.05)):
        assert np.max(np.abs(r.eq10_fits[key][0] - ref[key])) < tol, key
    assert "fitted to the model above the limit" in r.source


def test_fit_leja2022_form_recovers_known_curve() -> None:
    lm = np.linspace(9.0, 11.5, 51)
    z = np.array([0.8, 2.1])
    truth = {"a": np.array([0.25, 0.1]), "b": np.array([0.9, 0.7]), "c": np.array([1.0, 1.6]),
             "log_mt": np.array([10.4, 10.7])}
    y = _eq10(lm, truth)
    fit = C.fit_leja2022_form(lm, y, z, prior_sigma=(10.0, 10.0, 10.0, 10.0))
    for k, v in truth.items():
        np.testing.assert_allclose(fit[k], v, atol=0.012)


def test_sfs_members_pair_with_draws(gauss_draws: ContinuityParams) -> None:
    """E members shifted by known constants: draw d uses member d mod E."""
    z = np.array([1.0])
    shifts = np.array([0.0, 0.2, -0.1])

    def model(lm: np.ndarray, zz: np.ndarray) -> np.ndarray:
        return leja2022_sfs(lm[None, :], zz[:, None], "mean")[None] + shifts[:, None, None]

    base = C.sfrd_from_sfs(gauss_draws, z, completeness=None)
    got = C.sfrd_from_sfs(gauss_draws, z, mean_log_sfr=model, completeness=None)
    d = np.arange(n := got.log_sfrd.shape[0])
    np.testing.assert_allclose(got.log_sfrd[:, 0] - base.log_sfrd[:, 0], shifts[d % 3], atol=1e-12)
    assert n == 300 and np.all(np.isnan(got.frac_below_limit))


# ---------------------------------------------------------------------------- tension


def test_tension_of_identical_routes_is_zero(gauss_draws: ContinuityParams) -> None:
    lp = C.sfrd_from_rho(gauss_draws, Z4).log_sfrd
    t = C.sfrd_tension(lp, lp.copy(), Z4)
    assert np.all(t.delta_p50 == 0) and np.all(t.prob_positive == 0.5)
    assert np.all(t.n_sigma == 0) and np.all(t.z_score == 0)


def test_tension_statistics_on_known_difference() -> None:
    rng = np.random.default_rng(5)
    a = rng.normal(-1.2, 0.1, size=(20000, 2))
    b = a + rng.normal([0.1, -0.05], 0.1, size=(20000, 2))
    t = C.sfrd_tension(a, b, np.array([1.0, 2.0]))
    np.testing.assert_allclose(t.n_sigma, [1.0, -0.5], atol=0.03)
    np.testing.assert_allclose(t.prob_positive, norm.cdf([1.0, -0.5]), atol=0.01)
    np.testing.assert_allclose(t.delta_p50, [0.1, -0.05], atol=0.005)
    # a non-positive route-1 SFRD counts as "route 2 higher"
    a2 = a.copy()
    a2[:100, 0] = -np.inf
    t2 = C.sfrd_tension(a2, b, np.array([1.0, 2.0]))
    assert t2.prob_positive[0] > t.prob_positive[0] and np.isnan(t2.z_score[0])


def test_parameterisation_sensitivity_three_vs_four_anchors(gauss_draws: ContinuityParams) -> None:
    """Four anchors placed on each draw's own quadratic describe the same model: zero shift;
    moving the fourth anchor moves the census."""
    z_new = 2.3
    lp1, lp2, lms = (np.asarray(v) for v in gauss_draws.at(np.array(z_new)))

    def four(extra: float) -> ContinuityParams:
        cat = [np.concatenate([np.asarray(getattr(gauss_draws, n)), y[:, None]], axis=1)
               for n, y in (("log_phi1", lp1), ("log_phi2", lp2 + extra), ("log_mstar", lms))]
        order = np.argsort((0.2, 1.6, 3.0, z_new))
        return ContinuityParams(*(c[:, order] for c in cat), np.asarray(gauss_draws.alpha1),
                                np.asarray(gauss_draws.alpha2), (0.2, 1.6, 2.3, 3.0))

    z = np.array([0.5, 1.5, 2.5])
    same = C.parameterisation_sensitivity(gauss_draws, four(0.0), z)
    for c in ("log_rho_star_shift", "log_sfrd_from_rho_shift", "log_sfrd_from_sfs_shift"):
        assert np.max(np.abs(same[c])) < 1e-8
    moved = C.parameterisation_sensitivity(gauss_draws, four(0.15), z)
    assert moved["log_rho_star_shift"][2] > 0.02
    assert moved.meta["anchors_b"] == [0.2, 1.6, 2.3, 3.0]


# ---------------------------------------------------------------------------- SF / Q, offsets


def test_sf_q_mass_functions_sum_to_phi(gauss_draws: ContinuityParams) -> None:
    lm = np.linspace(8.5, 11.5, 31)
    z = np.array([0.7, 1.9])

    def p_sf(m: np.ndarray, zz: np.ndarray) -> np.ndarray:  # analytic: quenching above ~10.6
        return 1.0 / (1.0 + np.exp((m[None, :] - 10.6 - 0.2 * zz[:, None]) / 0.25))

    sf, q = C.sf_q_mass_functions(gauss_draws, lm, z, p_sf)
    phi = C.log10_phi_grid(gauss_draws, lm, z)
    np.testing.assert_allclose(np.log10(10**sf + 10**q), phi, atol=1e-12)
    np.testing.assert_allclose(sf - phi, np.broadcast_to(np.log10(p_sf(lm, z)), sf.shape), atol=1e-12)
    ref = np.array([[float(log10_phi(m, zz, ContinuityParams.from_vector(np.asarray(gauss_draws.to_vector())[0])))
                     for m in lm] for zz in z])
    np.testing.assert_allclose(phi[0], ref, atol=1e-10)


def test_split_normal_probability() -> None:
    c = np.array([-1.0, 0.2, 0.5, 1.3])
    # symmetric percentiles: a normal distribution
    np.testing.assert_allclose(C.p_above_cut_split_normal(c, -0.3, 0.2, 0.7), norm.sf(c, 0.2, 0.5),
                               atol=1e-12)
    # asymmetric: the percentiles themselves are reproduced
    got = C.p_above_cut_split_normal(np.array([-0.8, 0.2, 0.5]), -0.8, 0.2, 0.5)
    np.testing.assert_allclose(got, [norm.sf(-1.0), 0.5, norm.sf(1.0)], atol=1e-12)
    assert np.all(np.diff(C.p_above_cut_split_normal(np.linspace(-2, 2, 50), -0.8, 0.2, 0.5)) < 0)


def test_ssfr_cut() -> None:
    z = np.array([0.0, 1.0, 2.0])
    np.testing.assert_allclose(C.ssfr_cut(z, "hubble"), np.log10(0.2 / WMAP9.age(z).to_value("yr")))
    assert np.all(C.ssfr_cut(z, "constant") == -11.0)


def test_mass_offset_shifts_masses(median: ContinuityParams) -> None:
    off = np.array([0.0, 0.2, -0.15])
    p = C.apply_mass_offset(median, off)
    lm = np.linspace(9, 11.5, 6)
    phi = C.log10_phi_grid(p, lm, np.array([1.2]))[:, 0]
    for k, d in enumerate(off):
        np.testing.assert_allclose(phi[k], C.log10_phi_grid(median, lm - d, np.array([1.2]))[0, 0],
                                   atol=1e-12)
    tot = C.rho_star_draws(p, [1.0], None, None)[:, 0]
    np.testing.assert_allclose(tot / tot[0], 10**off, rtol=1e-10)


def test_compute_census_labels_seeds_and_offsets(gauss_draws: ContinuityParams) -> None:
    z = np.array([0.5, 1.0, 2.0])
    a = C.compute_census(gauss_draws, z, seed=7)
    b = C.compute_census(gauss_draws, z, seed=7)
    assert a.meta["band_label"] == "statistical only"
    np.testing.assert_array_equal(a.log_sfrd_from_rho, b.log_sfrd_from_rho)
    c = C.compute_census(gauss_draws, z, seed=7, mass_offset=C.MassOffsetPrior("normal", 0.0, 0.15))
    np.testing.assert_array_equal(a.return_fraction, c.return_fraction)  # independent streams
    assert c.meta["band_label"].startswith("statistical + ")
    wa = np.ptp(a.bands("log_rho_star")[[0, 2]], axis=0)
    wc = np.ptp(c.bands("log_rho_star")[[0, 2]], axis=0)
    assert np.all(wc > 2 * wa)
    t = a.table()
    for col in ("z", "log_rho_star_p50", "log_sfrd_from_rho_p16", "log_sfrd_from_sfs_p84",
                "frac_sfrd_below_limit_p50", "tension_n_sigma"):
        assert col in t.colnames
    # the median census matches check 3/4 within the posterior scatter
    assert abs(t["log_rho_star_p50"].value[1] - 8.304) < 0.03


# ---------------------------------------------------------------------------- bad input


def test_bad_input_raises_clear_errors(median: ContinuityParams) -> None:
    with pytest.raises(ValueError, match="low <= high"):
        C.ReturnFractionPrior(0.45, 0.30)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        C.sfrd_from_rho(median, Z4, return_fraction=1.2)
    with pytest.raises(ValueError, match="mean_log_sfr returned shape"):
        C.sfrd_from_sfs(median, Z4, mean_log_sfr=lambda m, z: np.zeros((3, 3)))
    with pytest.raises(ValueError, match="probabilities"):
        C.sf_q_mass_functions(median, np.array([10.0]), np.array([1.0]), lambda m, z: np.full((1, 1), 1.5))
    bad = median.replace(alpha2=np.float64(np.nan))
    with pytest.raises(ValueError, match="alpha2"):
        C.rho_star_draws(bad, [1.0])
    with pytest.raises(ValueError, match="alpha1 has shape"):
        C.number_density(median.replace(alpha1=np.zeros(3)), [1.0], 9.0)
    with pytest.raises(ValueError, match="equal shapes"):
        C.sfrd_tension(np.zeros((3, 2)), np.zeros((4, 2)), [1.0, 2.0])
    with pytest.raises(ValueError, match="x > 0"):
        C.upper_incomplete_gamma(-0.5, 0.0)
    with pytest.raises(ValueError, match="kind"):
        C.MassOffsetPrior("lognormal")
    with pytest.raises(ValueError, match="z_start"):
        C.sfrd_from_rho(median, [3.5], kernel=C.MassLossKernel.constant(0.3), z_start=3.0)
    with pytest.raises(TypeError, match="ContinuityParams"):
        C.rho_star_draws({"alpha1": 1.0}, [1.0])


def test_completeness_limits() -> None:
    np.testing.assert_allclose(C.leja2022_completeness(np.array([0.175, 0.5, 1.0, 3.0])),
                               [8.57779419, 8.86614882, 9.07108637, 10.15444536])


# ---------------------------------------------------------------------------- command line


def _write_fake_smf(path: Path, n: int = 120, seed: int = 0) -> None:
    """An SMF result folder in the layout of popmodel.io.smf (posterior via ArviZ + h5netcdf)."""
    from popmodel.io.smf import write_smf_posterior

    rng = np.random.default_rng(seed)
    samples = {k: (LEJA2020_MEDIAN[k] + LEJA2020_SIGMA[k] * rng.standard_normal((2, n // 2)))
               for k in LEJA2020_MEDIAN}
    write_smf_posterior(path / "smf_posterior.nc", samples, (0.2, 1.6, 3.0), method="draws",
                        attrs={"cosmology_config": {"name": "WMAP9"}, "data_z_range": [0.5, 2.5]})


def _write_fake_sfs(path: Path) -> None:
    """An sfs.ecsv in the flow module's contract: Table 1 mean +- 0.05, percentiles around it."""
    from astropy.table import Table

    rows = []
    for z in np.arange(0.25, 2.751, 0.25):
        for m in np.arange(8.5, 11.51, 0.25):
            if m < C.leja2022_completeness(z):
                continue
            mu = float(leja2022_sfs(m, z, "mean"))
            ridge = float(leja2022_sfs(m, z, "ridge"))
            rows.append((z, m, ridge - 0.05, ridge, ridge + 0.05, mu - 0.05, mu, mu + 0.05,
                         ridge - 0.6, ridge - 0.1, ridge + 0.3, False))
    names = ("z", "log_mass", "ridge_p16", "ridge_p50", "ridge_p84", "log_mean_sfr_p16",
             "log_mean_sfr_p50", "log_mean_sfr_p84", "log_sfr_q16", "log_sfr_q50", "log_sfr_q84",
             "bimodal")
    path.mkdir(parents=True, exist_ok=True)
    Table(rows=rows, names=names).write(path / "sfs.ecsv", format="ascii.ecsv")


def test_census_command_writes_table_and_figures(tmp_path: Path) -> None:
    from astropy.table import Table

    from popmodel.cli import census as census_cli

    smf, sfs = tmp_path / "smf", tmp_path / "sfs"
    _write_fake_smf(smf)
    _write_fake_sfs(sfs)
    ap = argparse.ArgumentParser()
    census_cli.register(ap.add_subparsers(dest="cmd"))
    for sub, extra in (("nosfs", []), ("withsfs", ["--sfs", str(sfs), "--no-figures"])):
        out = tmp_path / sub
        a = ap.parse_args(["census", "--smf", str(smf), "--out", str(out), "--dz", "0.25",
                           "--max-draws", "60", *extra])
        assert a.func(a) == 0
        t = Table.read(out / "census.ecsv", format="ascii.ecsv")
        for col in ("z", "log_rho_star_p16", "log_rho_star_p50", "log_rho_star_p84",
                    "log_sfrd_from_rho_p50", "log_sfrd_from_sfs_p50", "extrapolated"):
            assert col in t.colnames
        assert t.meta["band_label"] == "statistical only"
        for stem in ("census_rho_star", "census_sfrd", "census_sf_q"):
            for ext in ("png", "pdf"):
                assert (out / f"{stem}.{ext}").is_file() == (sub == "nosfs")
                if sub == "nosfs":
                    assert (out / f"{stem}.{ext}").stat().st_size > 5000
        sfq = Table.read(out / "census_sf_q.ecsv", format="ascii.ecsv")
        assert np.any(np.isfinite(sfq["log_phi_q_p50"]))
        if sub == "nosfs":
            assert "no SFS folder given" in t.meta["sfrd_from_sfs_source"]
            base = np.asarray(t["log_sfrd_from_sfs_p50"])
        else:
            assert "sfs.ecsv" in t.meta["sfrd_from_sfs_source"]
            # the SFS file is Table 1 on a 0.25-dex grid: route 2 agrees with the Table 1 run
            ok = (t["z"] >= 0.5) & (t["z"] <= 2.5)
            np.testing.assert_allclose(np.asarray(t["log_sfrd_from_sfs_p50"])[ok], base[ok], atol=0.03)
    assert np.all(t["extrapolated"] == ((t["z"] < 0.5) | (t["z"] > 2.5)))


@pytest.mark.slow
def test_released_flow_times_leja2020_smf_matches_check4(shared_data: Path) -> None:
    """Leja's released flow (its log <SFR> above log M_c, the Eq. 10 fit to it below) times the
    Leja+20 median SMF reproduces check 4's Phi x <SFR>_mean-fit for 9 < log M < 13 (issue 5
    asks for 0.08 dex; measured +0.020, +0.011, +0.004 dex with a finer quadrature)."""
    mod = pytest.importorskip("popmodel.flow.leja2022")
    if not hasattr(getattr(mod, "Leja2022Flow", None), "conditional_log_density"):
        pytest.skip("popmodel.flow.leja2022 has no Leja2022Flow.conditional_log_density")
    flow = mod.Leja2022Flow.load(shared_data / "sfs_leja2022_trained_flow" / "trained_flow_nsamp100.pth")
    zs = np.array([1.0, 1.5, 2.0])
    grid = np.arange(-2.5, 3.5001, 0.025)
    means = {}
    for zz, mc in zip(zs, C.leja2022_completeness(zs), strict=True):
        lm = np.arange(np.floor(mc * 10) / 10, 11.51, 0.1)
        lp = flow.conditional_log_density(lm, np.full(lm.size, zz), grid, n_dummy=15, dummy_max=4.5)
        means[float(zz)] = (lm, np.log10(np.trapezoid(np.exp(lp) * 10**grid, grid, axis=1)))

    def mean_log_sfr(lm: np.ndarray, z: np.ndarray) -> np.ndarray:
        return np.array([np.interp(lm, *means[float(zz)], left=np.nan, right=np.nan) for zz in z])

    r = C.sfrd_from_sfs(leja2020_params(), zs, mean_log_sfr=mean_log_sfr, log_m_lo=9.0, log_m_hi=13.0)
    np.testing.assert_allclose(r.log_sfrd[0], [-1.293, -1.163, -1.108], atol=0.05)
