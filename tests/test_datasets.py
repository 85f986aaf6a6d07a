"""Tests of the packaged 3D-HST data set, its survey description and approximate catalogue."""

import numpy as np
import pytest
from astropy.table import Table

from popmodel.datasets import (
    FAST_COMPLETENESS_TOMCZAK14,
    THREEDHST_FIELDS,
    catalog_from_3dhst_table,
    load_3dhst_table,
    threedhst_catalog,
    threedhst_survey,
)
from popmodel.survey import Survey
from popmodel.units import ARCMIN2_PER_SR

FIELDS = ("AEGIS", "COSMOS", "GOODSN", "GOODSS", "UDS")


@pytest.fixture(scope="module")
def td_new() -> Table:
    return load_3dhst_table("td_new")


@pytest.fixture(scope="module")
def subset(td_new: Table) -> Table:
    """2,000 td_new rows spread over all five fields (every 31st row)."""
    return td_new[::31][:2000]


def test_packaged_row_counts(td_new: Table) -> None:
    # Numbers from popmodel/data/README.md (and ../shared/data/leja2019_3dhst_td_sample).
    everything = load_3dhst_table("all")
    assert len(everything) == 75_601
    assert len(td_new) == 63_430
    assert len(load_3dhst_table("td_huge")) == 65_858
    assert sorted(set(everything["field"])) == list(FIELDS)
    assert list(np.bincount(everything["z_best_s"])[1:]) == [3_651, 14_797, 57_153]
    with pytest.raises(ValueError, match="sample must be one of"):
        load_3dhst_table("td_old")


def test_fields_match_catalogue_and_total_area() -> None:
    assert tuple(THREEDHST_FIELDS) == FIELDS
    survey = threedhst_survey()
    assert survey.field_names == list(FIELDS)
    assert survey.total_area_arcmin2 == pytest.approx(900.0, rel=0.05)
    for name, fp in THREEDHST_FIELDS.items():
        short, long = fp.shape_arcmin
        assert short * long == pytest.approx(fp.area_arcmin2, rel=1e-12)
        assert short <= long
        assert survey.field(name).area_arcmin2 == pytest.approx(fp.area_arcmin2, rel=1e-12)
    cosmo = survey.cosmology
    assert cosmo.H0.value == 70.0 and cosmo.Om0 == 0.3


def test_survey_completeness_and_z_cap() -> None:
    survey = threedhst_survey(z_min=0.5, z_max=2.5, mass_error_dex=0.15)
    f = survey.field("GOODSS")
    np.testing.assert_array_equal(f.completeness_z, FAST_COMPLETENESS_TOMCZAK14["z"])
    np.testing.assert_array_equal(f.completeness_log_mass, FAST_COMPLETENESS_TOMCZAK14["log_mass"])
    assert f.mass_error_dex == (0.15,)
    assert f.log_mass_limit(0.95) == pytest.approx(8.8)
    with pytest.raises(ValueError, match="completeness limit"):
        threedhst_survey(z_max=3.0)


def test_survey_toml_round_trip(tmp_path) -> None:
    survey = threedhst_survey(z_min=0.75, z_max=2.25, mass_error_dex=0.12, z_error=0.02)
    path = tmp_path / "threedhst.toml"
    survey.write(path)
    back = Survey.read(path)
    assert back.to_dict() == survey.to_dict()
    assert back.cosmology.H0 == survey.cosmology.H0
    assert back.cosmology.Om0 == survey.cosmology.Om0
    assert back.total_area_arcmin2 == pytest.approx(survey.total_area_arcmin2, rel=1e-12)


def test_catalogue_exact_spec_z_and_outside_68_counts(subset: Table) -> None:
    n_samples = 16
    catalog, prov = catalog_from_3dhst_table(subset, n_samples=n_samples, seed=3)
    assert catalog.ids.size == len(subset)
    expect_ids = [f"{f}_{i}" for f, i in zip(subset["field"], subset["phot_id"], strict=True)]
    assert list(catalog.ids) == expect_ids
    z = catalog.z.reshape(len(subset), n_samples)
    spec = np.asarray(subset["z_best_s"]) == 1
    assert spec.sum() > 10
    np.testing.assert_array_equal(
        z[spec], np.repeat(subset["z_best"][spec][:, None], n_samples, 1)
    )
    assert np.all(np.ptp(z[~spec], axis=1) > 0)

    zb = np.asarray(subset["z_best"])
    lo, hi = np.asarray(subset["z_best_l68"]), np.asarray(subset["z_best_u68"])
    direct = int(np.sum(~spec & ((zb < lo) | (zb > hi))))
    assert direct > 0
    counts = prov["counts"]
    assert counts["median_outside_68"] == direct
    assert counts["input"] == counts["kept"] == len(subset)
    assert counts["spec_z_exact"] == int(spec.sum())
    assert counts["z_best_s"]["spectroscopic"] == int(spec.sum())
    assert counts["z_best_s"]["grism"] == int(np.sum(subset["z_best_s"] == 2))
    assert counts["z_best_s"]["photometric"] == int(np.sum(subset["z_best_s"] == 3))
    assert counts["invalid_mass_dropped"] == 0
    assert "assumed mass uncertainty" in prov["mass_error_note"]
    assert prov["seed"] == 3 and prov["n_samples"] == n_samples
    assert prov["cosmology"]["H0"] == 70.0 and prov["cosmology"]["Om0"] == 0.3
    assert catalog.meta["provenance"] == prov


def test_exact_z_mass_samples_centred_on_fast_mass(subset: Table) -> None:
    spec = subset[np.asarray(subset["z_best_s"]) == 1]
    n_samples = 1024  # standard error of a median: 1.25 * 0.1 / 32 = 0.004 dex
    catalog, _ = catalog_from_3dhst_table(spec, n_samples=n_samples, mass_error_dex=0.1)
    mass = catalog.log_mass.reshape(len(spec), n_samples)
    offsets = np.median(mass, axis=1) - np.asarray(spec["fast_lmass"])
    assert np.all(np.abs(offsets) < 0.02)
    np.testing.assert_allclose(np.std(mass, axis=1), 0.1, rtol=0.1)


def test_invalid_masses_are_counted_and_dropped(subset: Table) -> None:
    table = subset[:50].copy()
    table["fast_lmass"][3] = -99.0
    table["fast_lmass"][7] = np.nan
    catalog, prov = catalog_from_3dhst_table(table, n_samples=4)
    assert prov["counts"]["invalid_mass_dropped"] == 2
    assert prov["counts"]["kept"] == 48
    dropped = {f"{table['field'][i]}_{table['phot_id'][i]}" for i in (3, 7)}
    assert dropped.isdisjoint(catalog.ids)


def test_redshift_window_pretrim(td_new: Table) -> None:
    catalog, prov = threedhst_catalog(n_samples=2, z_min=1.0, z_max=1.5)
    zb = np.asarray(td_new["z_best"])
    inside = (zb >= 0.7) & (zb <= 1.8)
    assert prov["counts"]["kept"] == int(inside.sum()) == catalog.ids.size
    assert prov["counts"]["outside_z_window_dropped"] == int((~inside).sum())
    assert prov["z_window"]["margin"] == 0.3
    assert prov["sample"] == "td_new"


def test_binned_mass_function_matches_tomczak14(td_new: Table) -> None:
    """Plain 1/V number density from the FAST masses (no posteriors) against Tomczak+14.

    Tomczak et al. 2014 Table 1: log Phi = -2.52 at log M = 10.5, 0.75 < z < 1.0.
    """
    survey = threedhst_survey()
    z = np.asarray(td_new["z_best"])
    m = np.asarray(td_new["fast_lmass"])
    z_lo, z_hi, m_lo, m_hi = 0.75, 1.0, 10.4, 10.6
    n = np.sum((z > z_lo) & (z < z_hi) & (m >= m_lo) & (m < m_hi))
    cosmo = survey.cosmology
    d_lo, d_hi = cosmo.comoving_distance([z_lo, z_hi]).to_value("Mpc")
    area_sr = survey.total_area_arcmin2 / ARCMIN2_PER_SR
    volume = area_sr / 3.0 * (d_hi**3 - d_lo**3)  # flat: V = Omega/3 (D_C2^3 - D_C1^3)
    volume_astropy = (
        (cosmo.comoving_volume(z_hi) - cosmo.comoving_volume(z_lo)).to_value("Mpc3")
        * area_sr
        / (4 * np.pi)
    )
    assert volume == pytest.approx(volume_astropy, rel=1e-6)
    log_phi = np.log10(n / volume / (m_hi - m_lo))
    assert n > 100
    assert abs(log_phi - (-2.52)) < 0.15


def test_tomczak_table_packaged() -> None:
    from importlib import resources

    text = (resources.files("popmodel") / "data" / "tomczak2014_smf.txt").read_text()
    rows = np.loadtxt(text.splitlines(), comments="#")
    row = rows[np.isclose(rows[:, 0], 10.5)][0]
    assert row[4] == pytest.approx(-2.52)  # 0.75 < z < 1.0 column, as used above
