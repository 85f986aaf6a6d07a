"""Tests for popmodel.cosmic_variance: Moster et al. 2011 fits, the P(k) box integral, matching."""

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
import pytest
from scipy.integrate import trapezoid
from scipy.special import erf

from popmodel import cosmic_variance as cv
from popmodel.survey import Field

G = cv.MOSTER_GEOMETRIES
Z_CHECK = [0.5, 1.0, 2.0, 3.0]


def candels_field(name: str, sides: tuple[float, float], **kw) -> Field:
    return Field(
        name, sides[0] * sides[1], 0.5, 3.0, [1.0], [9.0], area_unit="arcmin2",
        side_arcmin=sides, **kw,
    )  # fmt: skip


# --------------------------------------------------------------------- science.md check 10
def test_check10_from_fitting_formulas() -> None:
    """sigma_gg (logM 10-10.5, dz=0.2): GOODS 0.235 (z=1), 0.293 (z=2); COSMOS 0.093; EGS 0.155."""
    got = {
        "GOODS z=1": cv.sigma_cv(G["GOODS"], 1.0, 0.2, 10.25),
        "GOODS z=2": cv.sigma_cv(G["GOODS"], 2.0, 0.2, 10.25),
        "COSMOS z=1": cv.sigma_cv(G["COSMOS"], 1.0, 0.2, 10.25),
        "EGS z=1": cv.sigma_cv(G["EGS"], 1.0, 0.2, 10.25),
    }
    ref = {"GOODS z=1": 0.235, "GOODS z=2": 0.293, "COSMOS z=1": 0.093, "EGS z=1": 0.155}
    for key, val in got.items():
        np.testing.assert_allclose(val, ref[key], rtol=0.05, err_msg=key)
        # the references have 3 digits (GOODS z=2 is 0.29386, quoted as 0.293)
        np.testing.assert_allclose(val, ref[key], atol=1e-3, err_msg=key)
    np.testing.assert_allclose(cv.sigma_dm(G["GOODS"], 1.0), 0.1408, atol=5e-5)
    np.testing.assert_allclose(cv.galaxy_bias(10.25, 1.0), 1.670, atol=5e-4)
    # the same numbers reached from bare side lengths (matched by shape) in any angle unit
    np.testing.assert_allclose(
        cv.sigma_cv((10 / 60, 16 / 60) * u.deg, [1.0, 2.0], 0.2, 10.25), [0.2351, 0.2939],
        atol=1e-4,
    )  # fmt: skip


def test_fit_dz_scaling_and_formula() -> None:
    g = G["EGS"]
    z = np.array([0.3, 1.0, 2.5])
    np.testing.assert_allclose(g.sigma_dm(z), 0.128 / (z**0.673 + 0.383), rtol=1e-14)
    np.testing.assert_allclose(g.sigma_dm(z, 0.5), g.sigma_dm(z) * np.sqrt(0.2 / 0.5), rtol=1e-14)


# --------------------------------------------------------------------- galaxy bias
def test_bias_exact_at_centres_and_linear_between() -> None:
    t = cv.MOSTER2011_BIAS
    z = np.linspace(0.0, 4.0, 9)[:, None]
    centres = np.asarray(t["log_mass"])
    exact = np.asarray(t["b0"]) * (1 + z) ** np.asarray(t["b1"]) + np.asarray(t["b2"])
    np.testing.assert_allclose(cv.galaxy_bias(centres, z), exact, rtol=1e-13)
    mid = 0.5 * (centres[:-1] + centres[1:])
    np.testing.assert_allclose(
        cv.galaxy_bias(mid, z), 0.5 * (exact[:, :-1] + exact[:, 1:]), rtol=1e-13
    )
    # held flat beyond the table, increasing with mass inside it (for 0 <= z <= 4)
    np.testing.assert_allclose(cv.galaxy_bias(7.0, z[:, 0]), exact[:, 0], rtol=1e-13)
    np.testing.assert_allclose(cv.galaxy_bias(12.5, z[:, 0]), exact[:, -1], rtol=1e-13)
    grid = cv.galaxy_bias(np.linspace(8.5, 11.5, 61), z)
    assert np.all(np.diff(grid, axis=1) >= 0)
    assert cv.galaxy_bias(np.zeros((2, 3)), 1.0).shape == (2, 3)


@pytest.mark.parametrize(("lm", "z", "match"), [(np.nan, 1.0, "log_mass"), (10.0, -0.5, "z")])
def test_bias_bad_input(lm: float, z: float, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        cv.galaxy_bias(lm, z)


# --------------------------------------------------------------------- window-function integral
def _gauss_1d(length: float, r: float) -> float:
    """(1/2pi) int dk exp(-k^2 r^2) sinc^2(k L/2), by Parseval with the triangle kernel."""
    return erf(length / (2 * r)) / length - 2 * r / (np.sqrt(np.pi) * length**2) * (
        1 - np.exp(-(length**2) / (4 * r**2))
    )


BOXES = [(1.3, 1.3, 460.0), (7.0, 11.0, 346.0), (57.0, 57.0, 346.0), (5.0, 5.0, 5.0),
         (300.0, 300.0, 20.0), (2000.0, 2000.0, 2000.0)]  # fmt: skip


@pytest.mark.parametrize("box", BOXES)
def test_box_variance_closed_forms(box: tuple[float, float, float]) -> None:
    """Constant P gives P/V; a Gaussian P(k) = exp(-k^2 R^2) factorises into 1-D closed forms."""
    np.testing.assert_allclose(
        cv.box_variance(box, lambda k: np.full_like(k, 3.0)), 3.0 / np.prod(box), rtol=1e-4
    )
    for r in (0.3, 3.0, 30.0, 300.0):
        exact = np.prod([_gauss_1d(side, r) for side in box])
        got = cv.box_variance(box, lambda k, r=r: np.exp(-(k**2) * r**2))
        np.testing.assert_allclose(got, exact, rtol=3e-4, err_msg=f"R={r}")


@pytest.mark.parametrize("box", [BOXES[0], BOXES[1], BOXES[3], BOXES[4]])
def test_box_variance_converged_for_cdm(box: tuple[float, float, float]) -> None:
    pk = cv.linear_power()
    fine = cv.box_variance(box, pk, n_gl=10, n_periods=24, n_tail=48)
    np.testing.assert_allclose(cv.box_variance(box, pk), fine, rtol=3e-4)


def test_box_variance_real_space_monte_carlo() -> None:
    """sigma^2 = <xi(|x - x'|)> over pairs of uniform points in the box (colossus xi)."""
    from colossus.cosmology import cosmology as colossus_cosmology

    cc = colossus_cosmology.Cosmology(
        name="t", flat=True, H0=69.32, Om0=0.2865, Ob0=0.04628, sigma8=0.82, ns=0.9608,
        Tcmb0=2.725, Neff=3.04, persistence="", print_warnings=False,
    )  # fmt: skip
    h = 0.6932
    r_grid = np.geomspace(1e-3, 300.0, 400)  # [Mpc/h]
    xi = cc.correlationFunction(r_grid, 0.0)
    pk = cv.linear_power("WMAP9")
    rng = np.random.default_rng(42)
    for box_h in [(20.0, 20.0, 20.0), (10.0, 10.0, 150.0)]:  # [Mpc/h]
        box_h = np.asarray(box_h)
        est = []
        for _ in range(3):
            d = (rng.random((1_500_000, 3)) - rng.random((1_500_000, 3))) * box_h
            r = np.sqrt(np.sum(d**2, axis=1))
            est.append(np.interp(np.log(r), np.log(r_grid), xi).mean())
        mc, mc_err = np.mean(est), np.std(est, ddof=1) / np.sqrt(len(est))
        got = cv.box_variance(box_h / h, pk)
        # MC error ~2e-4; colossus xi and its interpolation are good to a few 1e-4
        assert abs(got / mc - 1) < 2e-3, (box_h, got, mc, mc_err)


def test_box_variance_bad_sides() -> None:
    with pytest.raises(ValueError, match="three positive lengths"):
        cv.box_variance((1.0, -2.0, 3.0), lambda k: k)
    with pytest.raises(ValueError, match="three positive lengths"):
        cv.box_variance((1.0, 2.0), lambda k: k)


# --------------------------------------------------------------------- power spectrum, box
def test_linear_power_normalisation_and_growth() -> None:
    cosmo = apc.FlatLambdaCDM(H0=70.0, Om0=0.3, Ob0=0.045, Tcmb0=0.0)
    pk = cv.linear_power(cosmo, sigma8=0.8, ns=0.96)
    # sigma_8 from the table: tophat of 8/h Mpc
    k = np.geomspace(1e-5, 1e2, 20001)
    x = k * 8.0 / 0.7
    w = 3 * (np.sin(x) - x * np.cos(x)) / x**3
    s8 = np.sqrt(np.trapezoid(k**3 * pk(k) * w**2 / (2 * np.pi**2), np.log(k)))
    np.testing.assert_allclose(s8, 0.8, rtol=1e-3)

    # growth: flat Lambda-CDM without radiation, D ~ E(a) int_0^a da' / (a' E(a'))^3 (Heath 1977)
    def heath(z: float) -> float:
        a = np.geomspace(1e-6, 1 / (1 + z), 20001)
        return cosmo.efunc(z) * trapezoid(1 / (a * cosmo.efunc(1 / a - 1)) ** 3, a)

    for z in (0.5, 1.0, 2.0):
        np.testing.assert_allclose(pk.growth(z), heath(z) / heath(0.0), rtol=2e-4)
    np.testing.assert_allclose(pk(0.1, z=1.0), pk(0.1) * pk.growth(1.0) ** 2, rtol=1e-12)


def test_linear_power_parameters() -> None:
    w9 = cv.linear_power()
    assert (w9.sigma8, w9.ns, w9.model) == (0.82, 0.9608, "eisenstein98")
    assert w9.cosmology is apc.WMAP9
    p18 = cv.linear_power("Planck18")
    assert (p18.sigma8, p18.ns) == (0.8102, 0.9665)
    # the 3D-HST catalogue cosmology has no baryons, radiation, sigma8 or n_s: defaults apply
    bare = cv.linear_power({"H0": 70.0, "Om0": 0.3})
    assert (bare.sigma8, bare.ns) == (cv.DEFAULT_SIGMA8, cv.DEFAULT_NS)
    assert np.all(np.isfinite(bare(np.geomspace(1e-4, 10, 50))))
    assert cv.linear_power(sigma8=0.7).sigma8 == 0.7
    with pytest.raises(ValueError, match="colossus model"):
        cv.linear_power(model="nonsense")
    with pytest.raises(ValueError, match="only Lambda-CDM"):
        cv.linear_power(apc.FlatwpwaCDM(H0=70, Om0=0.3, wp=-0.9, wa=0.1, zp=0.5))


def test_slice_box_volume_is_frustum_volume() -> None:
    cosmo = apc.WMAP9
    z, dz = 1.2, 0.3
    box = cv.slice_box((10.0, 20.0), z, dz, cosmo)
    lo, hi = cosmo.comoving_distance([z - dz / 2, z + dz / 2]).to_value(u.Mpc)
    th = np.deg2rad(np.array([10.0, 20.0]) / 60)
    np.testing.assert_allclose(box[2], hi - lo, rtol=1e-12)
    np.testing.assert_allclose(np.prod(box), th[0] * th[1] * (hi**3 - lo**3) / 3, rtol=1e-8)
    np.testing.assert_allclose(box[:2], cv.slice_box((10.0, 20.0) * u.arcmin, z, dz)[:2])
    with pytest.raises(ValueError, match="z - dz/2 >= 0"):
        cv.slice_box((10.0, 20.0), 0.05, 0.2)


# --------------------------------------------------------------------- P(k) vs fitting formulas
def test_pk_reproduces_moster_table3_in_moster_cosmology() -> None:
    """Moster's own spectrum (Gamma = Om h, sigma8 = 0.77) gives Table 3 within 5% for all 5."""
    mp = cv.moster2011_power()
    for g in G.values():
        pk = cv.sigma_dm(g.side_arcmin, Z_CHECK, 0.2, method="pk", power=mp)
        np.testing.assert_allclose(pk, g.sigma_dm(Z_CHECK), rtol=0.05, err_msg=g.name)


CHECK10 = [("GOODS", 1.0), ("GOODS", 2.0), ("EGS", 1.0), ("COSMOS", 1.0)]


def _pk_over_fit(power: cv.LinearPower) -> dict[tuple[str, float], float]:
    return {
        (name, z): float(
            cv.sigma_dm(G[name].side_arcmin, z, 0.2, method="pk", power=power) / G[name].sigma_dm(z)
        )
        for name, z in CHECK10
    }


def test_pk_vs_fit_check10_fields() -> None:
    """Check 10 fields (GOODS z=1, 2; EGS z=1; COSMOS z=1): P(k) route vs Moster's Eq. 10.

    Measured pk/fit ratios, in the order above:

    =====================================================================  =========================
    spectrum                                                                pk / fit
    =====================================================================  =========================
    Moster's (BBKS, Gamma = Om h = 0.1872, sigma8 0.77, n_s 0.95)          0.989 0.995 0.997 0.995
    Moster's Om, h, sigma8, n_s; Eisenstein & Hu 1998, Omega_b = 0.044     1.016 1.038 1.065 1.139
    WMAP9, Eisenstein & Hu, sigma8 0.77, n_s 0.95                          1.012 1.034 1.052 1.110
    WMAP9, Eisenstein & Hu, sigma8 0.82, n_s 0.9608 (the default)          1.076 1.098 1.116 1.173
    =====================================================================  =========================

    Like for like (the spectrum Moster's fits were made from) the calculation agrees within 1.1%
    for all four, which is the check. In WMAP9 the 2 deg^2 COSMOS box is 17% above the fit, not
    because of the calculation: (i) sigma8 0.82 vs 0.77 scales sigma_DM by exactly 0.82/0.77
    (+6.5%, linear theory); (ii) the baryon-suppressed Eisenstein & Hu shape has more power on
    the 50-150 Mpc scales of the COSMOS box, relative to 8 h^-1 Mpc, than a BBKS spectrum with
    Gamma = Om h and no baryon correction (with Moster's own Om, h, sigma8 it alone gives +14%
    for COSMOS and +2-7% for the smaller fields, growing with the box). Neither the window (box
    vs frustum < 0.1%), the slice width (dz = 0.2 on both sides, sqrt(0.2/dz) scaling tested
    below) nor the bias (it cancels in sigma_gg / sigma_gg) contributes.
    """
    moster = _pk_over_fit(cv.moster2011_power())
    for key, r in moster.items():
        assert abs(r - 1) < 0.15, (key, r)  # the criterion ...
        assert abs(r - 1) < 0.02, (key, r)  # ... and what is measured
    # (i) sigma8 enters as a pure scale: ratio of the WMAP9 routes = 0.82 / 0.77
    w9_077 = _pk_over_fit(cv.linear_power(apc.WMAP9, sigma8=0.77))
    w9 = _pk_over_fit(cv.linear_power(apc.WMAP9))
    for key in CHECK10:
        assert w9[key] / w9_077[key] == pytest.approx(0.82 / 0.77, rel=1e-6), key
    # (ii) the shape: with Moster's Om, h, sigma8, n_s but the Eisenstein & Hu transfer
    # function, the excess grows with the field and is > 10% only for COSMOS
    c = cv.MOSTER2011_COSMOLOGY
    baryons = apc.FlatLambdaCDM(H0=c["H0"], Om0=c["Om0"], Ob0=0.044, Tcmb0=2.725)
    eh = _pk_over_fit(cv.linear_power(baryons, sigma8=c["sigma8"], ns=c["ns"]))
    shape = {k: eh[k] / moster[k] for k in CHECK10}
    assert shape[("GOODS", 1.0)] < shape[("EGS", 1.0)] < shape[("COSMOS", 1.0)], shape
    assert 1.10 < shape[("COSMOS", 1.0)] < 1.18, shape
    assert all(abs(shape[k] - 1) < 0.08 for k in CHECK10[:3]), shape
    # the default route: GOODS and EGS within 15%; COSMOS 17% high, as explained above
    for key in CHECK10[:3]:
        assert abs(w9[key] - 1) < 0.15, (key, w9[key])
    assert 1.15 < w9[("COSMOS", 1.0)] < 1.20, w9
    # galaxy sigma_gg via pk: same bias, so the same ratios
    np.testing.assert_allclose(
        cv.sigma_cv(G["GOODS"].side_arcmin, 1.0, 0.2, 10.25, method="pk"),
        0.235 * w9[("GOODS", 1.0)],
        rtol=2e-3,
    )


def test_pk_dz_scaling_matches_pencil_beam_limit() -> None:
    """The fitting formula's sqrt(0.2/dz) scaling holds for the P(k) route (GOODS, z=1)."""
    dz = np.array([0.1, 0.2, 0.4, 0.6])
    s = cv.sigma_dm(G["GOODS"].side_arcmin, 1.0, dz, method="pk")
    np.testing.assert_allclose(s / s[1], np.sqrt(0.2 / dz), rtol=0.02)


# --------------------------------------------------------------------- geometry matching
def test_matching_is_by_shape_not_name() -> None:
    # the 3D-HST/CANDELS "COSMOS" strip (~178 arcmin^2) is not Moster's 1.4 x 1.4 deg COSMOS
    candels_cosmos = candels_field("COSMOS", (8.28, 21.53))
    assert cv.match_moster_geometry(candels_cosmos.side_arcmin) is None
    s_auto = cv.sigma_dm(candels_cosmos, 1.0)
    np.testing.assert_allclose(s_auto, cv.sigma_dm(candels_cosmos, 1.0, method="pk"), rtol=0)
    assert s_auto > 2 * G["COSMOS"].sigma_dm(1.0)
    with pytest.raises(ValueError, match=r"field 'COSMOS': no Moster.*8.28' x 21.5'"):
        cv.sigma_dm(candels_cosmos, 1.0, method="fit")
    # names do not matter either way: a GOODS-sized field called "COSMOS" is GOODS
    goods_named_cosmos = candels_field("COSMOS", (10.24, 16.38))
    assert cv.match_moster_geometry(goods_named_cosmos.side_arcmin) is G["GOODS"]
    np.testing.assert_allclose(cv.sigma_dm(goods_named_cosmos, 1.0), 0.1408, atol=5e-5)
    big = candels_field("GOODSS", (84.0, 84.0))
    np.testing.assert_allclose(cv.sigma_dm(big, 1.0), G["COSMOS"].sigma_dm(1.0), rtol=0)
    with pytest.raises(TypeError, match="never by name"):
        cv.sigma_dm("COSMOS", 1.0)


def test_matching_tolerances() -> None:
    assert cv.match_moster_geometry((16.0, 10.0)) is G["GOODS"]  # orientation-free
    assert cv.match_moster_geometry((10.0, 16.0 * 1.14)) is G["GOODS"]  # area +14%
    assert cv.match_moster_geometry((10.0, 16.0 * 1.17)) is None  # area +17%
    s = np.sqrt(160.0 / 2.1)  # GOODS area, aspect 2.1 = 1.31 x GOODS's 1.6
    assert cv.match_moster_geometry((s, 2.1 * s)) is None
    assert cv.match_moster_geometry((s, 2.1 * s), aspect_rtol=0.4) is G["GOODS"]
    assert cv.match_moster_geometry((9.5, 80.0)) is G["EGS"]  # area +9%, aspect +20%
    assert cv.match_moster_geometry((3.4, 3.4)) is G["UDF"]
    assert cv.match_moster_geometry((28.0, 28.0) * u.arcmin) is G["GEMS"]


def test_sigma_dm_field_override_and_errors() -> None:
    f = candels_field("UDS", (9.22, 21.2), sigma_dm={"z": [1.0, 2.0], "value": [0.2, 0.1]})
    np.testing.assert_allclose(cv.sigma_dm(f, [1.5, 3.0], 0.4), np.array([0.15, 0.1]) / np.sqrt(2))
    # explicit methods ignore the override and use the geometry
    np.testing.assert_allclose(
        cv.sigma_dm(f, 1.0, method="pk"), cv.sigma_dm((9.22, 21.2), 1.0, method="pk")
    )
    nogeo = Field("BARE", 100.0, 0.5, 3.0, [1.0], [9.0], area_unit="arcmin2")
    with pytest.raises(ValueError, match=r"field 'BARE' has no side lengths"):
        cv.sigma_dm(nogeo, 1.0)
    with pytest.raises(ValueError, match="method"):
        cv.sigma_dm(G["GOODS"], 1.0, method="best")
    with pytest.raises(ValueError, match="dz"):
        cv.sigma_dm(G["GOODS"], 1.0, 0.0)
    with pytest.raises(ValueError, match="z must be"):
        cv.sigma_dm(G["GOODS"], [1.0, np.inf])
    with pytest.raises(ValueError, match="not angles"):
        cv.sigma_dm((1.0, 2.0) * u.Mpc, 1.0)
    with pytest.raises(ValueError, match="two positive"):
        cv.sigma_dm((1.0, 2.0, 3.0), 1.0)
    with pytest.raises(ValueError, match="share one cosmology"):
        cv.sigma_dm((5.0, 5.0), 1.0, method="pk", cosmology="Planck18", power=cv.linear_power())


def test_sigma_cv_vectorised() -> None:
    z = np.array([0.75, 1.25, 1.75])[:, None]
    lm = np.array([9.0, 10.0, 10.5, 11.0])
    sides = (8.28, 21.53)  # unmatched: the P(k) route
    got = cv.sigma_cv(sides, z, 0.25, lm)
    assert got.shape == (3, 4)
    sdm = cv.sigma_dm(sides, z[:, 0], 0.25)
    np.testing.assert_allclose(got, cv.galaxy_bias(lm, z) * sdm[:, None], rtol=1e-12)
    assert cv.sigma_dm(G["GOODS"], 1.0).shape == ()


# --------------------------------------------------------------------- independent fields
def test_combine_fields() -> None:
    np.testing.assert_allclose(cv.combine_fields([0.2] * 4, [100] * 4), 0.1, rtol=1e-14)
    sig = np.array([0.3, 0.15, 0.1])
    n = np.array([50.0, 200.0, 400.0])
    rng = np.random.default_rng(3)
    delta = rng.normal(size=(200_000, 3)) * sig
    frac = (n * (1 + delta)).sum(axis=1) / n.sum() - 1
    np.testing.assert_allclose(cv.combine_fields(sig, n), frac.std(), rtol=0.01)
    # fields along axis 0, other axes (e.g. redshift) kept
    assert cv.combine_fields(np.ones((3, 5)) * 0.1, n[:, None]).shape == (5,)
    with pytest.raises(ValueError, match="axis 0"):
        cv.combine_fields([0.1, 0.2], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="not all zero"):
        cv.combine_fields([0.1, 0.2], [0.0, 0.0])
    with pytest.raises(ValueError, match="sigma must be"):
        cv.combine_fields([0.1, -0.2], [1.0, 1.0])
