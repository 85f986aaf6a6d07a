"""Tests for popmodel.smf.schechter and popmodel.smf.evolution (science.md sections 1.2-1.3, 4).

Reference numbers are the [D] values of science.md section 4 (checks 1-2) and the published
Fig. 6 curves of Leja et al. (2020); the polynomial is checked against the explicit
Appendix-B quadratic and against numpy's own polynomial tools.
"""

import numpy as np
import pytest

from popmodel.smf.evolution import (
    DEFAULT_ANCHORS,
    LEJA2020_MEDIAN,
    ContinuityParams,
    anchor_polynomial,
    leja2020_params,
    parameter_names,
)
from popmodel.smf.schechter import ln_double_schechter, ln_schechter, log10_phi

LN10 = np.log(10.0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(2020)


def leja_quadratic(y: np.ndarray, zs: tuple[float, float, float] = DEFAULT_ANCHORS):
    """The explicit (a, b, c) of Leja et al. (2020) Appendix B (science.md section 1.2)."""
    y1, y2, y3 = y
    z1, z2, z3 = zs
    a = ((y3 - y1) + (y2 - y1) / (z2 - z1) * (z1 - z3)) / (
        z3**2 - z1**2 + (z2**2 - z1**2) / (z2 - z1) * (z1 - z3)
    )
    b = ((y2 - y1) - a * (z2**2 - z1**2)) / (z2 - z1)
    c = y1 - a * z1**2 - b * z1
    return a, b, c


def numpy_phi(log_m, lp1, lp2, lms, a1, a2):
    """Double Schechter per dex written out in numpy."""
    x = 10.0 ** (np.asarray(log_m) - lms)
    return LN10 * np.exp(-x) * (10.0**lp1 * x ** (a1 + 1) + 10.0**lp2 * x ** (a2 + 1))


# --------------------------------------------------------------------- science.md checks 1-2
@pytest.mark.parametrize(
    ("z", "expected"),
    [
        (0.5, (-1.754, -2.190, -2.622, -3.745)),
        (1.0, (-1.887, -2.338, -2.786, -3.808)),
        (2.0, (-2.109, -2.604, -3.240, -4.268)),
    ],
)
def test_check1_log_phi_median_model(z: float, expected: tuple) -> None:
    got = np.asarray(log10_phi(np.array([9.0, 10.0, 11.0, 11.5]), z, leja2020_params()))
    np.testing.assert_allclose(got, expected, atol=1e-3)


@pytest.mark.parametrize(
    ("z", "expected"), [(1.0, (-2.754, -3.141, 10.857)), (2.0, (-3.340, -3.371, 10.882))]
)
def test_check1_parameters_at_z(z: float, expected: tuple) -> None:
    got = np.array([float(v) for v in leja2020_params().at(z)])
    np.testing.assert_allclose(got, expected, atol=1e-3)


def test_check2_leja2020_fig6(shared_data) -> None:
    tab = np.loadtxt(
        shared_data / "reference_values" / "leja2020_fig6_digitized.csv",
        delimiter=",",
        comments="#",
    )
    p = leja2020_params()
    for z in (0.3, 1.7):
        rows = tab[np.isclose(tab[:, 0], z)]
        assert len(rows) > 30
        got = np.asarray(log10_phi(rows[:, 1], z, p))
        diff = got - rows[:, 2]
        assert np.max(np.abs(diff)) <= 0.05, (z, np.max(np.abs(diff)))
        assert np.sqrt(np.mean(diff**2)) <= 0.03


# --------------------------------------------------------------------- Schechter form
def test_log10_phi_matches_numpy_double_schechter(rng: np.random.Generator) -> None:
    for _ in range(5):
        y = rng.uniform(
            [-4, -4, -4, -4, -4, -4, 10, 10, 10], [-2, -2, -2, -2, -2, -2, 11.5, 11.5, 11.5]
        )
        a1, a2 = rng.uniform(-1, 1), rng.uniform(-1.99, -1)
        p = ContinuityParams(y[:3], y[3:6], y[6:], np.float64(a1), np.float64(a2))
        z = rng.uniform(0.2, 3.0)
        log_m = np.linspace(7.0, 12.5, 23)
        coef = [np.polyfit(DEFAULT_ANCHORS, y[3 * k : 3 * k + 3], 2) for k in range(3)]
        lp1, lp2, lms = (np.polyval(c, z) for c in coef)
        expected = np.log10(numpy_phi(log_m, lp1, lp2, lms, a1, a2))
        np.testing.assert_allclose(
            np.asarray(log10_phi(log_m, z, p)), expected, rtol=0, atol=1e-10
        )


def test_ln_schechter_and_sum_closed_form() -> None:
    log_m = np.linspace(6.0, 12.0, 13)
    one = np.asarray(ln_schechter(log_m, -3.0, 10.8, -1.4))
    x = 10.0 ** (log_m - 10.8)
    np.testing.assert_allclose(one, np.log(LN10 * 1e-3 * x**-0.4 * np.exp(-x)), rtol=1e-12)
    two = np.asarray(ln_double_schechter(log_m, -2.5, -3.0, 10.8, -0.3, -1.4))
    np.testing.assert_allclose(
        two, np.log(numpy_phi(log_m, -2.5, -3.0, 10.8, -0.3, -1.4)), rtol=1e-12
    )


# --------------------------------------------------------------------- anchor polynomial
def test_anchor_polynomial_is_leja_quadratic(rng: np.random.Generator) -> None:
    z = rng.uniform(0.0, 4.0, 50)
    basis = np.asarray(anchor_polynomial(DEFAULT_ANCHORS, z))
    assert basis.shape == (50, 3)
    for _ in range(20):
        y = rng.normal(0.0, 3.0, 3)
        a, b, c = leja_quadratic(y)
        np.testing.assert_allclose(basis @ y, a * z**2 + b * z + c, rtol=1e-12, atol=1e-11)


def test_anchor_polynomial_interpolates_and_sums_to_one(rng: np.random.Generator) -> None:
    for anchors in (DEFAULT_ANCHORS, (0.2, 0.9, 1.7, 3.0), (0.1, 0.5, 1.0, 2.0, 4.0)):
        np.testing.assert_allclose(
            np.asarray(anchor_polynomial(anchors, np.array(anchors))),
            np.eye(len(anchors)),
            atol=1e-13,
        )
        z = rng.uniform(0, 5, 10)
        np.testing.assert_allclose(
            np.asarray(anchor_polynomial(anchors, z)).sum(-1), 1.0, rtol=1e-12
        )


@pytest.mark.parametrize(
    ("prefix", "coef"),
    [
        ("log_phi1", (-0.107143, -0.264286, -2.382857)),
        ("log_phi2", (0.045918, -0.368367, -2.818163)),
        ("log_mstar", (-0.033163, 0.123980, 10.766531)),
    ],
)
def test_published_polynomial_coefficients(prefix: str, coef: tuple) -> None:
    y = np.array([LEJA2020_MEDIAN[f"{prefix}_z{z}"] for z in ("0.2", "1.6", "3.0")])
    np.testing.assert_allclose(leja_quadratic(y), coef, atol=1e-6)
    z = np.linspace(0.0, 3.5, 36)
    got = np.asarray(
        getattr(leja2020_params(), prefix) @ np.asarray(anchor_polynomial(DEFAULT_ANCHORS, z)).T
    )
    i = ("log_phi1", "log_phi2", "log_mstar").index(prefix)
    got_at = np.asarray(leja2020_params().at(z)[i])
    np.testing.assert_allclose(got_at, got, rtol=1e-14)
    np.testing.assert_allclose(got_at, np.polyval(coef, z), atol=5e-6)


def test_four_anchor_params_reproduce_a_cubic(rng: np.random.Generator) -> None:
    anchors = (0.2, 1.0, 2.0, 3.0)
    cubics = [rng.normal(0, 1, 4) + np.array([0, 0, 0, c]) for c in (-3.0, -3.5, 10.8)]
    y = [np.polyval(c, np.array(anchors)) for c in cubics]
    p = ContinuityParams(y[0], y[1], y[2], np.float64(-0.3), np.float64(-1.5), anchors)
    z = rng.uniform(0.0, 3.5, 40)
    for got, c in zip(p.at(z), cubics, strict=True):
        np.testing.assert_allclose(np.asarray(got), np.polyval(c, z), rtol=1e-12, atol=1e-11)


# --------------------------------------------------------------------- parameter containers
def test_parameter_names_default() -> None:
    assert parameter_names(DEFAULT_ANCHORS) == [
        "log_phi1_z0.2",
        "log_phi1_z1.6",
        "log_phi1_z3.0",
        "log_phi2_z0.2",
        "log_phi2_z1.6",
        "log_phi2_z3.0",
        "log_mstar_z0.2",
        "log_mstar_z1.6",
        "log_mstar_z3.0",
        "alpha1",
        "alpha2",
    ]
    assert leja2020_params().names == parameter_names()
    assert parameter_names((0.5, 1, 2.25))[:3] == [
        "log_phi1_z0.5",
        "log_phi1_z1.0",
        "log_phi1_z2.25",
    ]


def test_vector_and_dict_round_trips(rng: np.random.Generator) -> None:
    for anchors in (DEFAULT_ANCHORS, (0.2, 1.0, 2.0, 3.0)):
        n = 3 * len(anchors) + 2
        names = parameter_names(anchors)
        for shape in ((), (5,), (2, 3)):
            v = rng.normal(size=shape + (n,))
            p = ContinuityParams.from_vector(v, anchors)
            assert p.anchor_z == anchors
            np.testing.assert_array_equal(np.asarray(p.to_vector()), v)
            np.testing.assert_array_equal(np.asarray(p.alpha2), v[..., -1])
            np.testing.assert_array_equal(
                np.asarray(p.log_mstar), v[..., 2 * len(anchors) : 3 * len(anchors)]
            )
            d = p.to_dict()
            assert list(d) == names
            for i, k in enumerate(names):
                np.testing.assert_array_equal(d[k], v[..., i])
            q = ContinuityParams.from_dict(d, anchors)
            np.testing.assert_array_equal(np.asarray(q.to_vector()), v)
    p = leja2020_params()
    assert {k: float(v) for k, v in p.to_dict().items()} == LEJA2020_MEDIAN


def test_batched_params_at_match_loop(rng: np.random.Generator) -> None:
    v = rng.normal(size=(4, 11))
    p = ContinuityParams.from_vector(v)
    z = np.array([0.3, 1.1, 2.7])
    batched = p.at(z[:, None])  # (3, 4)
    for d in range(4):
        q = ContinuityParams.from_vector(v[d])
        for zi, zz in enumerate(z):
            for k in range(3):
                np.testing.assert_allclose(
                    np.asarray(batched[k])[zi, d], np.asarray(q.at(zz)[k]), rtol=1e-13
                )
