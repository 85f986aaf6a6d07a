"""Tests for popmodel.percentiles: quantile-matched sampling and catalogs from percentiles."""

from pathlib import Path

import numpy as np
import pytest
from astropy.cosmology import FlatLambdaCDM, Planck18

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.percentiles import (
    PercentileReport,
    catalog_from_percentiles,
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
    assert cat.meta["cosmology"]["H0"] == 70.0 and cat.meta["cosmology"]["Om0"] == 0.3


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
        ref = FlatLambdaCDM(H0=70, Om0=0.3) if cosmo is None else cosmo
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
