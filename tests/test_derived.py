"""Tests for popmodel.smf.derived: rho_* in closed form against quadrature, and Phi draws."""

import numpy as np
import pytest
from scipy import integrate, special

from popmodel.smf.derived import log10_phi_draws, log10_rho_star, rho_star
from popmodel.smf.evolution import DEFAULT_ANCHORS, ContinuityParams, leja2020_params
from popmodel.smf.model import SMFPrior

LN10 = np.log(10.0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(8)


def prior_draws(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 11) draws from the default uniform priors of popmodel.smf.model."""
    b = SMFPrior().bounds
    lo, hi = np.array([b[k] for k in SMFPrior().names]).T
    return rng.uniform(lo, hi, size=(n, lo.size))


def schechter_params_at(v: np.ndarray, z: float) -> tuple[float, float, float, float, float]:
    """(log phi1, log phi2, log M*, alpha1, alpha2) at z, via np.polyfit through the anchors."""
    out = [np.polyval(np.polyfit(DEFAULT_ANCHORS, v[3 * k : 3 * k + 3], 2), z) for k in range(3)]
    return (*out, v[9], v[10])


def numpy_phi(log_m, lp1, lp2, lms, a1, a2):
    x = 10.0 ** (np.asarray(log_m) - lms)
    return LN10 * np.exp(-x) * (10.0**lp1 * x ** (a1 + 1) + 10.0**lp2 * x ** (a2 + 1))


def quad_rho(v: np.ndarray, z: float, lo: float, hi: float) -> float:
    lp1, lp2, lms, a1, a2 = schechter_params_at(v, z)
    val, _ = integrate.quad(
        lambda m: numpy_phi(m, lp1, lp2, lms, a1, a2) * 10.0**m,
        lo,
        hi,
        points=[lms] if lo < lms < hi else None,
        epsabs=0.0,
        epsrel=1e-12,
        limit=200,
    )
    return val


# --------------------------------------------------------------------- science.md check 3
@pytest.mark.parametrize(
    ("z", "expected"),
    [
        (0.2, 8.524),
        (0.5, 8.453),
        (0.75, 8.383),
        (1.0, 8.304),
        (1.25, 8.216),
        (1.5, 8.123),
        (2.0, 7.930),
        (2.5, 7.748),
        (3.0, 7.598),
    ],
)
def test_check3_rho_star_8_13(z: float, expected: float) -> None:
    assert abs(float(log10_rho_star(leja2020_params(), z)) - expected) < 0.005


def test_check3_rho_star_other_limits_vectorised_z() -> None:
    p = leja2020_params()
    z = np.array([0.5, 1.0, 2.0])
    np.testing.assert_allclose(log10_rho_star(p, z, 9.0, 13.0), [8.437, 8.287, 7.906], atol=0.005)
    np.testing.assert_allclose(log10_rho_star(p, z, 10.0, 13.0), [8.377, 8.225, 7.818], atol=0.005)
    np.testing.assert_allclose(log10_rho_star(p, z, None, None), [8.460, 8.311, 7.940], atol=0.005)
    np.testing.assert_allclose(log10_rho_star(p, z, None, 13.0), [8.460, 8.311, 7.940], atol=0.005)


# --------------------------------------------------------------------- closed form vs quadrature
def test_rho_star_closed_form_vs_quad(rng: np.random.Generator) -> None:
    draws = prior_draws(rng, 12)
    for i, v in enumerate(draws):
        p = ContinuityParams.from_vector(v)
        z = float(rng.uniform(0.2, 3.0))
        lo, hi = (
            (8.0, 13.0)
            if i % 3 == 0
            else (float(rng.uniform(4.0, 10.0)), float(rng.uniform(10.5, 13.0)))
        )
        got = float(rho_star(p, z, lo, hi))
        np.testing.assert_allclose(got, quad_rho(v, z, lo, hi), rtol=1e-6, err_msg=f"draw {i}")


def test_rho_star_open_upper_limit_vs_quad(rng: np.random.Generator) -> None:
    for v in prior_draws(rng, 4):
        p = ContinuityParams.from_vector(v)
        lms = schechter_params_at(v, 1.3)[2]
        np.testing.assert_allclose(
            float(rho_star(p, 1.3, 9.0, None)), quad_rho(v, 1.3, 9.0, lms + 3.0), rtol=1e-6
        )


def test_unbounded_total_is_gamma_sum(rng: np.random.Generator) -> None:
    for v in prior_draws(rng, 10):
        p = ContinuityParams.from_vector(v)
        z = float(rng.uniform(0.2, 3.0))
        lp1, lp2, lms, a1, a2 = schechter_params_at(v, z)
        expected = 10.0**lms * (
            10.0**lp1 * special.gamma(a1 + 2) + 10.0**lp2 * special.gamma(a2 + 2)
        )
        np.testing.assert_allclose(float(rho_star(p, z, None, None)), expected, rtol=1e-10)
        # a finite lower limit removes exactly the lower incomplete gamma (scipy's gammainc)
        x = 10.0 ** (-5.0 - lms)
        lower = 10.0**lms * (
            10.0**lp1 * special.gamma(a1 + 2) * special.gammainc(a1 + 2, x)
            + 10.0**lp2 * special.gamma(a2 + 2) * special.gammainc(a2 + 2, x)
        )
        np.testing.assert_allclose(float(rho_star(p, z, -5.0, None)), expected - lower, rtol=1e-10)


# --------------------------------------------------------------------- draw axes
def test_batched_draws_equal_loop(rng: np.random.Generator) -> None:
    v = prior_draws(rng, 6)
    pb = ContinuityParams.from_vector(v)
    z = np.array([0.3, 1.0, 2.2, 2.9])
    batched = np.asarray(rho_star(pb, z, 9.0, 13.0))
    assert batched.shape == (6, 4)
    scalar_z = np.asarray(rho_star(pb, 1.7, 9.0, 13.0))
    assert scalar_z.shape == (6,)
    for d in range(6):
        p = ContinuityParams.from_vector(v[d])
        np.testing.assert_allclose(batched[d], np.asarray(rho_star(p, z, 9.0, 13.0)), rtol=1e-13)
        np.testing.assert_allclose(scalar_z[d], float(rho_star(p, 1.7, 9.0, 13.0)), rtol=1e-13)
        np.testing.assert_allclose(batched[d, 1], quad_rho(v[d], 1.0, 9.0, 13.0), rtol=1e-6)


def test_log10_phi_draws_vs_direct(rng: np.random.Generator) -> None:
    v = prior_draws(rng, 5)
    log_m = np.linspace(8.0, 12.0, 9)
    z = 1.4
    got = log10_phi_draws(ContinuityParams.from_vector(v), log_m, z)
    assert got.shape == (5, 9)
    for d in range(5):
        expected = np.log10(numpy_phi(log_m, *schechter_params_at(v[d], z)))
        np.testing.assert_allclose(got[d], expected, rtol=0, atol=1e-10)
    one = log10_phi_draws(leja2020_params(), log_m, z)
    assert one.shape == (1, 9)
    expected = np.log10(numpy_phi(log_m, *schechter_params_at(leja2020_params().to_vector(), z)))
    np.testing.assert_allclose(one[0], expected, atol=1e-10)
