"""Tests for popmodel.percentiles: quantile-matched sampling and catalogs from percentiles."""

from pathlib import Path

import numpy as np
import pytest
from astropy.cosmology import Planck18
from astropy.table import Table
from scipy import stats
from scipy.special import ndtr, ndtri

from popmodel.analytic import quantile_sigmas
from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.cosmology import DEFAULT_COSMOLOGY, DEFAULT_IMF, cosmology_record
from popmodel.percentiles import (
    DEFAULT_MASS_ERROR_DEX,
    PercentileReport,
    catalog_from_percentiles,
    deflated_mass_sigmas,
    sample_quantile_matched,
)

PCTS = [2.5, 16.0, 50.0, 84.0, 97.5]


def test_sample_quantile_matched_reproduces_68_percentiles() -> None:
    rng = np.random.default_rng(1)
    median = np.array([1.0, 2.0, 0.5])
    p16 = np.array([0.8, 1.5, 0.45])
    p84 = np.array([1.5, 2.1, 0.7])
    x = sample_quantile_matched(rng, median, p16, p84, size=200_000)
    assert x.shape == (3, 200_000)
    got = np.percentile(x, [16, 50, 84], axis=1).T
    np.testing.assert_allclose(got, np.stack([p16, median, p84], axis=1), rtol=0.01)
    # without 95% percentiles the inner slopes continue: p97.5 = m + 1.95996/0.99446 * (p84 - m)
    upper = np.percentile(x, 97.5, axis=1)
    np.testing.assert_allclose(upper, median + 1.95996 / 0.99446 * (p84 - median), rtol=0.01)


def test_sample_quantile_matched_reproduces_95_percentiles() -> None:
    rng = np.random.default_rng(2)
    q = np.array([[1.3, 1.9, 2.0, 2.2, 3.5], [2.0, 2.9, 3.0, 3.05, 3.1]])  # heavy, light tails
    x = sample_quantile_matched(rng, q[:, 2], q[:, 1], q[:, 3], q[:, 0], q[:, 4], size=200_000)
    got = np.percentile(x, PCTS, axis=1).T
    np.testing.assert_allclose(got, q, rtol=0.01)
    # NaN in a 95% percentile means "not given" for that galaxy only
    x2 = sample_quantile_matched(
        rng, q[:, 2], q[:, 1], q[:, 3], np.array([1.3, np.nan]), q[:, 4], size=200_000
    )
    lower = np.percentile(x2, 2.5, axis=1)
    assert lower[0] == pytest.approx(1.3, rel=0.01)
    assert lower[1] == pytest.approx(3.0 - 1.95996 / 0.99446 * 0.1, rel=0.01)


def test_sample_quantile_matched_rejects_unordered() -> None:
    with pytest.raises(ValueError, match="p16 <= median"):
        sample_quantile_matched(np.random.default_rng(0), 1.0, 1.2, 1.5, size=3)


def _inputs() -> dict:
    return {
        "ids": ["spec1", "phot1", "out1", "phot2", "spec2", "out2"],
        "fields": ["COSMOS"] * 3 + ["UDS"] * 3,
        "z_median": np.array([0.5, 1.0, 2.0, 1.5, 0.8, 0.6]),
        "z_p16": np.array([-1.0, 0.9, 2.1, 1.3, np.nan, 0.1]),
        "z_p84": np.array([-1.0, 1.2, 2.4, 1.7, np.nan, 0.5]),
        "log_mass": np.array([10.0, 10.5, 11.0, 9.5, 9.0, 10.2]),
    }


def test_catalog_exact_z_and_median_outside_report() -> None:
    inputs = _inputs()
    # a third exact flavour: all percentiles equal to the median
    inputs["z_p16"][3] = inputs["z_p84"][3] = inputs["z_median"][3]
    cat, report = catalog_from_percentiles(**inputs, mass_error_dex=0.1, n_samples=200)
    assert isinstance(report, PercentileReport)
    assert report.n_galaxies == 6
    assert report.n_exact_z == 3
    assert report.n_median_outside_68 == 2
    assert report.ids_median_outside_68 == ["out1", "out2"]
    assert "not dropped or clipped" in report.how_handled
    np.testing.assert_array_equal(cat.ids, inputs["ids"])
    np.testing.assert_array_equal(cat.n_samples, np.full(6, 200))
    z = cat.z.reshape(6, 200)
    for i in (0, 3, 4):  # exact redshifts: no scatter at all
        np.testing.assert_array_equal(z[i], inputs["z_median"][i])
    assert z[1].std() > 0.05
    # median-outside galaxy: the posterior is centred on the interval, not on the median
    assert np.median(z[2]) == pytest.approx(2.25, abs=0.03)
    assert np.all(z[2] < 3.0) and np.all(z >= 1e-3)
    assert cat.log_prior is None
    assert cat.meta["report"] == report.as_dict()
    assert cat.meta["method"] == "percentiles, piecewise split-normal"
    assert "assumed mass uncertainty" in cat.meta["mass_error_note"]
    assert cat.meta["mass_error_dex"] == 0.1
    assert cat.meta["n_samples"] == 200 and cat.meta["seed"] == 0
    assert cat.meta["cosmology"] == cosmology_record(DEFAULT_COSMOLOGY)  # WMAP9
    assert cat.meta["imf"] == DEFAULT_IMF
    assert cat.meta["mass_error_source"] == report.mass_error_source == "one assumed value"


def test_mass_shift_equals_luminosity_distance_ratio() -> None:
    inputs = _inputs()
    for cosmo in (None, Planck18):
        cat, _ = catalog_from_percentiles(
            **inputs,
            mass_error_dex=0.0,
            n_samples=50,
            cosmology=cosmo,
            log_sfr=np.full(6, 1.0),
            sfr_error_dex=0.0,
        )
        ref = DEFAULT_COSMOLOGY if cosmo is None else cosmo
        z = cat.z.reshape(6, 50)
        d_l = ref.luminosity_distance(z).to_value("Mpc")
        d_l_med = ref.luminosity_distance(inputs["z_median"]).to_value("Mpc")
        expected = inputs["log_mass"][:, None] + 2 * np.log10(d_l / d_l_med[:, None])
        np.testing.assert_allclose(cat.log_mass.reshape(6, 50), expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(
            cat.log_sfr.reshape(6, 50), expected - inputs["log_mass"][:, None] + 1.0, atol=1e-6
        )
        # mass scatter is real for photo-z galaxies (the shift is tens of percent in dex)
        assert cat.log_mass.reshape(6, 50)[1].std() > 0.05


def test_mass_error_scatter_and_per_galaxy_errors() -> None:
    inputs = _inputs()
    sigma = np.array([0.05, 0.1, 0.1, 0.1, 0.3, 0.1])
    cat, _ = catalog_from_percentiles(**inputs, mass_error_dex=sigma, n_samples=20_000)
    m = cat.log_mass.reshape(6, -1)
    assert m[0].std() == pytest.approx(0.05, rel=0.03)  # exact z: scatter is the mass error
    assert m[4].std() == pytest.approx(0.3, rel=0.03)
    assert m[0].mean() == pytest.approx(10.0, abs=0.005)
    assert cat.meta["mass_error_dex"]["per_galaxy"] is True


def test_same_seed_identical_and_other_seed_differs(tmp_path: Path) -> None:
    a, ra = catalog_from_percentiles(**_inputs(), mass_error_dex=0.1, seed=7)
    b, rb = catalog_from_percentiles(**_inputs(), mass_error_dex=0.1, seed=7)
    c, _ = catalog_from_percentiles(**_inputs(), mass_error_dex=0.1, seed=8)
    for name in ("log_mass", "z"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.meta == b.meta and ra == rb
    assert not np.array_equal(a.z, c.z)
    path = tmp_path / "pct.h5"  # the metadata survives a file round trip
    a.write(path)
    back = PosteriorCatalog.read(path)
    assert back.meta == a.meta
    np.testing.assert_array_equal(back.z, a.z)


def test_low_redshift_draws_are_redrawn_and_counted() -> None:
    cat, _ = catalog_from_percentiles(
        ids=["low"],
        fields=["F"],
        z_median=[0.05],
        z_p16=[0.01],
        z_p84=[0.3],
        log_mass=[9.0],
        mass_error_dex=0.1,
        n_samples=2000,
        z_min_sample=0.02,
    )
    assert cat.z.min() >= 0.02
    n_redrawn = cat.meta["n_redrawn_below_z_min"]
    assert 100 < n_redrawn < 1000  # P(z < 0.02) = Phi(-0.746) = 0.23: ~456 draws + re-redraws
    assert f"{n_redrawn} redshift draws" in cat.meta["report"]["how_handled"]


@pytest.mark.parametrize(
    "column, index, value, pattern",
    [
        ("log_mass", 2, np.nan, "'log_mass'.*'out1'"),
        ("z_median", 1, np.inf, "'z_median'.*'phot1'"),
        ("z_median", 1, -0.2, "'z_median'.*'phot1'"),
        ("z_p16", 5, 0.7, "'z_p16' exceeds 'z_p84'.*'out2'"),
        ("z_p84", 1, np.inf, "'z_p84'.*'phot1'"),
    ],
)
def test_bad_inputs_name_galaxy_and_column(
    column: str, index: int, value: float, pattern: str
) -> None:
    inputs = _inputs()
    inputs[column][index] = value
    with pytest.raises(CatalogError, match=pattern):
        catalog_from_percentiles(**inputs, mass_error_dex=0.1)


def test_bad_errors_name_galaxy() -> None:
    with pytest.raises(CatalogError, match="'mass_error_dex'.*'phot2'"):
        catalog_from_percentiles(
            **_inputs(), mass_error_dex=np.array([0.1, 0.1, 0.1, -0.1, 0.1, 0.1])
        )
    with pytest.raises(CatalogError, match="sfr_error_dex"):
        catalog_from_percentiles(**_inputs(), mass_error_dex=0.1, log_sfr=np.zeros(6))
    with pytest.raises(CatalogError, match="'z_p2_5' exceeds 'z_p16'.*'phot1'"):
        catalog_from_percentiles(
            **_inputs(), mass_error_dex=0.1, z_p2_5=np.array([np.nan, 0.95, 1.0, 1.0, 0, 0])
        )


# ------------------------------------------------------------------ mass percentiles
U68, U95 = float(ndtri(0.84)), float(ndtri(0.975))


def _log10_dl(z: np.ndarray, cosmo: object = DEFAULT_COSMOLOGY) -> np.ndarray:
    return np.log10(cosmo.luminosity_distance(z).to_value("Mpc"))


def _quantile(median: float, sig: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The piecewise-linear quantile function, written out independently of the module."""
    out = np.where(u >= 0, sig[2] * u, sig[1] * u)
    out = np.where(u > U68, sig[2] * U68 + sig[3] * (u - U68), out)
    out = np.where(u < -U68, -sig[1] * U68 + sig[0] * (u + U68), out)
    return median + out


def _cdf(median: float, sig: np.ndarray):
    """CDF of :func:`_quantile` by interpolation on a fine grid of scores."""
    u = np.linspace(-8.0, 8.0, 200_001)
    x = _quantile(median, sig, u)
    return lambda v: ndtr(np.interp(v, x, u, left=-np.inf, right=np.inf))


def _one(z: list, m: list, **kw: object) -> tuple[PosteriorCatalog, PercentileReport]:
    """One galaxy from (p2.5, p16, p50, p84, p97.5) in z and in mass (None: not given)."""

    def arr(v: float | None) -> np.ndarray | None:
        return None if v is None else np.array([v], dtype=float)

    return catalog_from_percentiles(
        ["g"],
        "F",
        arr(z[2]),
        arr(z[1]),
        arr(z[3]),
        arr(m[2]),
        z_p2_5=arr(z[0]),
        z_p97_5=arr(z[4]),
        log_mass_p16=arr(m[1]),
        log_mass_p84=arr(m[3]),
        log_mass_p2_5=arr(m[0]),
        log_mass_p97_5=arr(m[4]),
        **kw,
    )


def test_deflation_formula_matches_astropy_derivative() -> None:
    """First order (no matching): sigma_cond^2 = sigma^2 - (2 dlog10 D_L/dz)^2 sigma_z^2 per
    piece, floored at 25% of sigma; the derivative by finite differences of astropy's D_L."""
    zq = np.array(
        [[0.65, 0.9, 1.0, 1.2, 1.45], [1.5, 1.9, 2.0, 2.1, 2.4], [0.3, 0.45, 0.5, 0.6, 1.0]]
    )
    mq = np.array(
        [
            [9.9, 10.3, 10.5, 10.8, 11.2],
            [9.9, 10.3, 10.5, 10.7, 11.0],
            [9.95, 10.0, 10.05, 10.1, 10.3],
        ]
    )  # the last: z term > mass width (floor)
    cat, report = catalog_from_percentiles(
        ["a", "b", "c"],
        "F",
        zq[:, 2],
        zq[:, 1],
        zq[:, 3],
        mq[:, 2],
        z_p2_5=zq[:, 0],
        z_p97_5=zq[:, 4],
        log_mass_p16=mq[:, 1],
        log_mass_p84=mq[:, 3],
        log_mass_p2_5=mq[:, 0],
        log_mass_p97_5=mq[:, 4],
        n_samples=4,
        match_mass_percentiles=False,
    )
    h = 1e-5
    k = 2 * (_log10_dl(zq[:, 2] + h) - _log10_dl(zq[:, 2] - h)) / (2 * h)
    sz = quantile_sigmas(zq[:, 2], zq[:, 1], zq[:, 3], zq[:, 0], zq[:, 4])
    sm = quantile_sigmas(mq[:, 2], mq[:, 1], mq[:, 3], mq[:, 0], mq[:, 4])
    expected = np.sqrt(np.maximum(sm**2 - (k[:, None] * sz) ** 2, (0.25 * sm) ** 2))
    np.testing.assert_allclose(cat.analytic.log_mass_sigma, expected, rtol=1e-5)
    assert report.n_mass_sigma_floored == 1 and report.ids_mass_sigma_floored == ["c"]
    assert cat.meta["mass_percentiles"]["n_at_floor"] == 1
    assert report.mass_error_source == cat.meta["mass_error_source"] == "percentiles"
    got, at_floor = deflated_mass_sigmas(sm, sz, k)
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    assert at_floor[2].any() and not at_floor[:2].any()


@pytest.mark.parametrize(
    "z, m",
    [
        # skewed redshift and skewed mass, 68% only (the inner slopes continue)
        ([None, 0.95, 1.0, 1.1, None], [None, 10.35, 10.5, 10.7, None]),
        # with 95% percentiles in both, heavy upper tails
        ([0.85, 0.95, 1.0, 1.1, 1.4], [10.1, 10.35, 10.5, 10.7, 11.0]),
    ],
)
def test_marginal_mass_quantiles_reproduce_the_percentiles(z: list, m: list) -> None:
    n = 400_000
    cat, report = _one(z, m, n_samples=n, seed=3)
    assert report.n_mass_sigma_floored == 0
    sm = quantile_sigmas(
        np.array([m[2]]),
        [m[1]],
        [m[3]],
        None if m[0] is None else [m[0]],
        None if m[4] is None else [m[4]],
    )[0]
    levels = np.array([0.025, 0.16, 0.84, 0.975])
    want = _quantile(m[2], sm, ndtri(levels))  # implied 95% ones when not given
    got = np.quantile(cat.log_mass, levels)
    # sampling error of a quantile: sqrt(p (1 - p) / n) / density
    dens = 0.02 / (
        np.quantile(cat.log_mass, levels + 0.01) - np.quantile(cat.log_mass, levels - 0.01)
    )
    se = np.sqrt(levels * (1 - levels) / n) / dens
    assert np.all(np.abs(got - want) < 4 * se), (got, want, se)
    # the marginal median is off log_mass by the convolution's skewness, as recorded
    offset = cat.meta["mass_percentiles"]["max_abs_marginal_median_offset_dex"]
    assert abs(abs(np.median(cat.log_mass) - m[2]) - offset) < 0.002
    assert offset < 0.03
    # the first-order widths alone would miss the 16-84 interval by far more than sampling
    first, _ = _one(z, m, n_samples=n, seed=3, match_mass_percentiles=False)
    miss = np.abs(np.quantile(first.log_mass, levels) - want)
    assert np.any(miss > 8 * se)


def test_samples_are_draws_from_the_analytic_description() -> None:
    """KS tests: z against the analytic quantile function, and the mass residual given z
    (mass - ref - 2 log10 D_L(z)/D_L(z_ref), with astropy's D_L) against the conditional one."""
    cat, _ = catalog_from_percentiles(
        ["pct", "err", "spec"],
        "F",
        np.array([1.0, 2.0, 0.7]),
        np.array([0.9, 1.8, -1.0]),
        np.array([1.3, 2.1, -1.0]),
        np.array([10.5, 11.0, 9.0]),
        z_p2_5=np.array([0.6, np.nan, -1]),
        z_p97_5=np.array([1.9, np.nan, -1]),
        log_mass_p16=np.array([10.3, 10.8, 8.9]),
        log_mass_p84=np.array([10.8, 11.3, 9.1]),
        n_samples=20_000,
        seed=5,
    )
    post = cat.analytic
    np.testing.assert_array_equal(post.z_ref, [1.0, 2.0, 0.7])
    np.testing.assert_array_equal(post.log_mass_ref, [10.5, 11.0, 9.0])
    np.testing.assert_array_equal(post.dl_coefficient, 2.0)
    np.testing.assert_allclose(
        post.z_sigma[:2],
        quantile_sigmas(
            np.array([1.0, 2.0]), [0.9, 1.8], [1.3, 2.1], [0.6, np.nan], [1.9, np.nan]
        ),
    )
    np.testing.assert_array_equal(post.z_sigma[2], 0.0)
    z = cat.z.reshape(3, -1)
    m = cat.log_mass.reshape(3, -1)
    np.testing.assert_array_equal(z[2], 0.7)
    for i in range(3):
        if i < 2:
            assert stats.kstest(z[i], _cdf(post.z_median[i], post.z_sigma[i])).pvalue > 1e-3
        resid = m[i] - post.log_mass_ref[i] - 2 * (_log10_dl(z[i]) - _log10_dl(post.z_ref[i]))
        assert stats.kstest(resid, _cdf(0.0, post.log_mass_sigma[i])).pvalue > 1e-3
        # and the error is independent of z (a conditional width, not a marginal one)
        assert abs(np.corrcoef(resid, z[i])[0, 1]) < 0.03


@pytest.mark.parametrize("ext", ["h5", "fits"])
def test_analytic_columns_round_trip(tmp_path: Path, ext: str) -> None:
    cat, _ = catalog_from_percentiles(
        **_inputs(),
        log_mass_p16=_inputs()["log_mass"] - 0.2,
        log_mass_p84=_inputs()["log_mass"] + 0.3,
        n_samples=8,
    )
    path = tmp_path / f"pct.{ext}"
    cat.write(path)
    back = PosteriorCatalog.read(path)
    assert back.analytic is not None
    for name, value in cat.analytic.to_columns().items():
        np.testing.assert_array_equal(back.analytic.to_columns()[name], value, err_msg=name)
    assert back.meta["mass_percentiles"] == cat.meta["mass_percentiles"]


def test_null_value_marks_missing_entries() -> None:
    base = _inputs()
    nulled = _inputs()
    for col in ("z_p16", "z_p84"):  # spec2: NaN -> -99 (an exact redshift either way)
        nulled[col][4] = -99.0
    hi95 = np.array([np.nan, 1.5, 2.6, 2.0, np.nan, 0.9])
    hi95_null = np.where(np.isnan(hi95), -99.0, hi95)
    hi95_null[3] = -99.0  # a missing 95% percentile: not given
    hi95[3] = np.nan
    a, ra = catalog_from_percentiles(**base, z_p97_5=hi95, n_samples=50)
    b, rb = catalog_from_percentiles(**nulled, z_p97_5=hi95_null, n_samples=50, null_value=-99)
    np.testing.assert_array_equal(a.z, b.z)
    np.testing.assert_array_equal(a.log_mass, b.log_mass)
    assert ra == rb and rb.ids_exact_z == ["spec1", "spec2"]
    assert b.meta["null_value"] == -99.0
    for column, i, name in (("log_mass", 1, "phot1"), ("z_median", 3, "phot2")):
        bad = _inputs()
        bad[column][i] = -99.0
        with pytest.raises(CatalogError, match=f"'{column}'.*'{name}'"):
            catalog_from_percentiles(**bad, null_value=-99)
    p84 = _inputs()["log_mass"] + 0.2
    p84[5] = -99.0
    with pytest.raises(CatalogError, match="'log_mass_p84'.*'out2'"):
        catalog_from_percentiles(
            **_inputs(), log_mass_p16=_inputs()["log_mass"] - 0.2, log_mass_p84=p84, null_value=-99
        )


def test_per_galaxy_error_default_and_conflicts() -> None:
    sigma = np.array([0.05, 0.1, 0.15, 0.2, 0.25, 0.3])
    cat, report = catalog_from_percentiles(**_inputs(), mass_error_dex=sigma, n_samples=8)
    assert report.mass_error_source == "per-galaxy errors"
    np.testing.assert_array_equal(cat.analytic.log_mass_sigma, np.repeat(sigma[:, None], 4, 1))
    cat, report = catalog_from_percentiles(**_inputs(), n_samples=8)
    assert report.mass_error_source == cat.meta["mass_error_source"] == "default"
    assert cat.meta["mass_error_dex"] == DEFAULT_MASS_ERROR_DEX == 0.1
    assert "default assumed mass uncertainty" in cat.meta["mass_error_note"]
    np.testing.assert_array_equal(cat.analytic.log_mass_sigma, 0.1)
    mass = _inputs()["log_mass"]
    with pytest.raises(CatalogError, match="not both"):
        catalog_from_percentiles(
            **_inputs(), mass_error_dex=0.1, log_mass_p16=mass - 0.1, log_mass_p84=mass + 0.1
        )
    with pytest.raises(CatalogError, match="both log_mass_p16 and log_mass_p84"):
        catalog_from_percentiles(**_inputs(), log_mass_p16=mass - 0.1)
    with pytest.raises(CatalogError, match="'log_mass_p16' exceeds 'log_mass'.*'phot2'"):
        p16 = mass - 0.1
        p16[3] = 9.6
        catalog_from_percentiles(**_inputs(), log_mass_p16=p16, log_mass_p84=mass + 0.1)
    cat, _ = catalog_from_percentiles(**_inputs(), n_samples=2, imf="Salpeter", cosmology=Planck18)
    assert cat.meta["imf"] == "salpeter" and cat.meta["cosmology"] == cosmology_record(Planck18)


def test_cli_with_mass_percentile_columns(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import json

    from popmodel.cli import main

    t = Table(
        {
            "id": ["a", "b", "c"],
            "field": ["F0"] * 3,
            "z": [1.0, 1.5, 0.8],
            "z_p16": [0.9, -99.0, 0.7],
            "z_p84": [1.2, -99.0, 0.95],
            "z_u95": [1.6, -99.0, -99.0],
            "log_mass": [10.0, 10.5, 9.8],
            "lm16": [9.8, 10.4, 9.6],
            "lm84": [10.3, 10.6, 10.1],
            "sig": [0.1, 0.2, 0.3],
        }
    )
    table = tmp_path / "pct.ecsv"
    t.write(table)
    out = tmp_path / "cat.h5"
    argv = [
        "catalog-from-percentiles",
        str(table),
        "--out",
        str(out),
        "--n-samples",
        "50",
        "--null-value",
        "-99",
        "--col-z-p97_5",
        "z_u95",
    ]
    assert main([*argv, "--col-log-mass-p16", "lm16", "--col-log-mass-p84", "lm84"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["mass_error_source"] == "percentiles" and printed["n_exact_z"] == 1
    cat = PosteriorCatalog.read(out)
    ref, _ = catalog_from_percentiles(
        t["id"],
        t["field"],
        t["z"],
        t["z_p16"],
        t["z_p84"],
        t["log_mass"],
        null_value=-99,
        z_p97_5=t["z_u95"],
        log_mass_p16=t["lm16"],
        log_mass_p84=t["lm84"],
        n_samples=50,
        cosmology=DEFAULT_COSMOLOGY,
    )
    np.testing.assert_allclose(cat.analytic.log_mass_sigma, ref.analytic.log_mass_sigma)
    np.testing.assert_array_equal(cat.analytic.z_sigma[1], 0.0)  # -99: exact redshift
    assert cat.meta["cosmology"] == cosmology_record(DEFAULT_COSMOLOGY)
    # a per-galaxy error column, and the default when no form is given
    out2 = tmp_path / "cat2.h5"
    assert main([*argv[:3], str(out2), *argv[4:], "--col-mass-error-dex", "sig"]) == 0
    np.testing.assert_allclose(
        PosteriorCatalog.read(out2).analytic.log_mass_sigma[:, 0], [0.1, 0.2, 0.3]
    )
    out3 = tmp_path / "cat3.h5"
    assert main([*argv[:3], str(out3), *argv[4:]]) == 0
    assert PosteriorCatalog.read(out3).meta["mass_error_source"] == "default"
    # two forms at once: a one-line error, nothing written
    out4 = tmp_path / "cat4.h5"
    assert (
        main(
            [
                *argv[:3],
                str(out4),
                *argv[4:],
                "--col-mass-error-dex",
                "sig",
                "--mass-error-dex",
                "0.1",
            ]
        )
        == 2
    )
    assert not out4.exists()
