"""Tests for popmodel.survey: fields, areas, completeness limits, TOML round trip, bad input."""

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
import pytest

from popmodel.survey import DEFAULT_MASS_ERROR_DEX, Field, SigmaDMOverride, Survey, SurveyError

THREEDHST_Z = [0.65, 1.0, 1.5, 2.1, 3.0]
THREEDHST_M = [8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536]


def field_dict(name: str = "GOODSS", **kw) -> dict:
    d = {
        "name": name,
        "area_arcmin2": 172.0,
        "z_min": 0.5,
        "z_max": 2.5,
        # the table stops at z = 2.0 of the field's 2.5: held flat beyond, as the file says
        "completeness": {"z": [0.5, 1.0, 2.0], "log_mass": [8.1, 8.8, 9.3],
                         "extrapolate": "flat"},
    }
    d.update(kw)
    return d


def make_survey() -> Survey:
    return Survey(
        fields=(
            Field(
                "AEGIS",
                0.05 * u.deg**2,
                0.5,
                3.0,
                THREEDHST_Z,
                THREEDHST_M,
                mass_error_dex=[0.08, 0.15, 0.3],
                z_error=0.02,
                side_arcmin=(6.0, 30.0) * u.arcmin,
            ),
            Field(
                "UDS",
                190.0,
                0.6,
                2.8,
                [1.0, 2.0],
                [9.0, 9.6],
                area_unit="arcmin2",
                sigma_dm={"z": [1.0, 2.0], "value": [0.16, 0.12], "dz": 0.25},
            ),
            Field(
                "COSMOS2015",
                1.6,
                0.2,
                0.8,
                [0.175, 0.5, 0.8],
                [8.58, 9.13, 9.55],
                mass_error_dex=0.12,
                area_unit="deg2",
                side_arcmin=(1.2 * u.deg, 80.0 * u.arcmin),
                sigma_dm=0.05,
            ),
            Field("TINY", 1e-5 * u.sr, 1.0, 1.5, [1.2], [9.5]),
        ),
        cosmology=apc.FlatLambdaCDM(H0=70.0, Om0=0.3),
        name="test-survey",
    )


def assert_fields_equal(a: Field, b: Field) -> None:
    assert a.name == b.name
    np.testing.assert_allclose(a.area_sr, b.area_sr, rtol=1e-13)
    assert (a.z_min, a.z_max, a.z_error) == (b.z_min, b.z_max, b.z_error)
    np.testing.assert_array_equal(a.completeness_z, b.completeness_z)
    np.testing.assert_array_equal(a.completeness_log_mass, b.completeness_log_mass)
    assert a.mass_error_dex == b.mass_error_dex
    if a.side_arcmin is None:
        assert b.side_arcmin is None
    else:
        np.testing.assert_allclose(a.side_arcmin, b.side_arcmin, rtol=1e-13)
    assert a.sigma_dm == b.sigma_dm


# --------------------------------------------------------------------- areas
def test_areas_in_all_units() -> None:
    s = make_survey()
    np.testing.assert_allclose(
        s.field("AEGIS").area_sr, (0.05 * u.deg**2).to_value(u.sr), rtol=1e-13
    )
    np.testing.assert_allclose(
        s.field("UDS").area_sr, (190.0 * u.arcmin**2).to_value(u.sr), rtol=1e-13
    )
    np.testing.assert_allclose(
        s.field("COSMOS2015").area_sr, (1.6 * u.deg**2).to_value(u.sr), rtol=1e-13
    )
    assert s.field("TINY").area_sr == 1e-5
    np.testing.assert_allclose(s.field("UDS").area_arcmin2, 190.0, rtol=1e-13)
    np.testing.assert_allclose(
        s.total_area_arcmin2,
        (0.05 * 3600 + 190.0 + 1.6 * 3600) + (1e-5 * u.sr).to_value(u.arcmin**2),
        rtol=1e-13,
    )
    deg = Field.from_dict(
        {k: v for k, v in field_dict(area_deg2=0.25).items() if k != "area_arcmin2"}
    )
    np.testing.assert_allclose(deg.area_sr, (0.25 * u.deg**2).to_value(u.sr), rtol=1e-13)
    arcmin = Field.from_dict(field_dict())
    np.testing.assert_allclose(arcmin.area_sr, (172.0 * u.arcmin**2).to_value(u.sr), rtol=1e-13)


def test_defaults_and_properties() -> None:
    f = Field.from_dict(field_dict())
    assert f.mass_error_dex == (DEFAULT_MASS_ERROR_DEX,)
    assert f.z_error == (0.0,)
    s = make_survey()
    assert s.field_names == ["AEGIS", "UDS", "COSMOS2015", "TINY"]
    assert s.z_range == (0.2, 3.0)
    assert s.field("AEGIS").mass_error_dex == (0.08, 0.15, 0.3)
    assert Survey((f,)).cosmology is apc.WMAP9


# --------------------------------------------------------------------- TOML round trip
def test_toml_round_trip(tmp_path) -> None:
    s = make_survey()
    path = tmp_path / "survey.toml"
    s.write(path)
    back = Survey.read(path)
    assert back.name == "test-survey"
    assert back.field_names == s.field_names
    for a, b in zip(s.fields, back.fields, strict=True):
        assert_fields_equal(a, b)
    assert back.cosmology.H0 == s.cosmology.H0 and back.cosmology.Om0 == s.cosmology.Om0
    z = np.array([0.5, 2.0])
    np.testing.assert_allclose(
        back.cosmology.comoving_distance(z).value,
        s.cosmology.comoving_distance(z).value,
        rtol=1e-12,
    )
    # second trip is a fixed point of the text
    back.write(tmp_path / "again.toml")
    assert (tmp_path / "again.toml").read_text() == path.read_text()


def test_toml_read_hand_written(tmp_path) -> None:
    text = """
name = "hand"
[cosmology]
name = "WMAP9"

[[fields]]
name = "A"
area_deg2 = 0.5
z_min = 0.2
z_max = 1.0
mass_error_dex = [0.1, 0.2]
[fields.completeness]
z = [0.2, 1.0]
log_mass = [8.5, 9.5]

[[fields]]
name = "B"
area_arcmin2 = 30.0
z_min = 1.0
z_max = 3.0
z_error = 0.03
[fields.completeness]
z = [2.0]
log_mass = [9.9]
"""
    (tmp_path / "s.toml").write_text(text)
    s = Survey.read(tmp_path / "s.toml")
    assert s.cosmology is apc.WMAP9
    a, b = s.fields
    np.testing.assert_allclose(a.area_sr, (0.5 * u.deg**2).to_value(u.sr), rtol=1e-13)
    np.testing.assert_allclose(b.area_sr, (30 * u.arcmin**2).to_value(u.sr), rtol=1e-13)
    assert a.mass_error_dex == (0.1, 0.2) and b.mass_error_dex == (DEFAULT_MASS_ERROR_DEX,)
    assert b.z_error == (0.03,)
    np.testing.assert_allclose(b.log_mass_limit([0.5, 2.0, 3.0]), 9.9)


def test_invalid_toml(tmp_path) -> None:
    (tmp_path / "bad.toml").write_text("[[fields]\nname = ")
    with pytest.raises(SurveyError, match="bad.toml"):
        Survey.read(tmp_path / "bad.toml")


# --------------------------------------------------------------------- completeness limit
def test_log_mass_limit_is_np_interp() -> None:
    f = Field("F", 1e-5, 0.5, 3.0, THREEDHST_Z, THREEDHST_M)
    z = np.concatenate([np.random.default_rng(0).uniform(0.0, 4.0, 200), THREEDHST_Z, [0.0, 5.0]])
    np.testing.assert_array_equal(f.log_mass_limit(z), np.interp(z, THREEDHST_Z, THREEDHST_M))
    # flat beyond the ends, linear between nodes
    assert f.log_mass_limit(0.1) == THREEDHST_M[0] and f.log_mass_limit(4.0) == THREEDHST_M[-1]
    mid = 0.5 * (THREEDHST_Z[1] + THREEDHST_Z[2])
    np.testing.assert_allclose(
        f.log_mass_limit(mid), 0.5 * (THREEDHST_M[1] + THREEDHST_M[2]), rtol=1e-15
    )


# --------------------------------------------------------------------- bad input
def test_negative_area_names_field() -> None:
    with pytest.raises(SurveyError, match=r"'NEG'.*area must be positive"):
        Field.from_dict(field_dict("NEG", area_arcmin2=-5.0))
    with pytest.raises(SurveyError, match=r"'ZERO'.*area must be positive"):
        Field("ZERO", 0.0 * u.arcmin**2, 0.5, 2.5, [1.0], [9.0])


def test_non_solid_angle_quantity_names_field() -> None:
    with pytest.raises(SurveyError, match=r"'LEN'.*not a solid angle"):
        Field("LEN", 3.0 * u.deg, 0.5, 2.5, [1.0], [9.0])


def test_missing_area_names_field() -> None:
    d = field_dict("NOAREA")
    del d["area_arcmin2"]
    with pytest.raises(SurveyError, match=r"'NOAREA'.*missing area"):
        Field.from_dict(d)


@pytest.mark.parametrize("zs", [[0.5, 1.0, 1.0], [1.0, 0.5, 2.0]])
def test_completeness_z_not_increasing_names_field(zs: list) -> None:
    d = field_dict("NONMONO", completeness={"z": zs, "log_mass": [8.1, 8.8, 9.3]})
    with pytest.raises(SurveyError, match=r"'NONMONO'.*strictly increasing"):
        Field.from_dict(d)


@pytest.mark.parametrize("key", ["z", "log_mass"])
def test_missing_completeness_key_names_field(key: str) -> None:
    d = field_dict("NOKEY")
    del d["completeness"][key]
    with pytest.raises(SurveyError, match=rf"'NOKEY'.*missing '{key}'"):
        Field.from_dict(d)


@pytest.mark.parametrize("key", ["completeness", "z_min", "z_max"])
def test_missing_field_key_names_field(key: str) -> None:
    d = field_dict("NOTAB")
    del d[key]
    with pytest.raises(SurveyError, match=rf"'NOTAB'.*missing key '{key}'"):
        Field.from_dict(d)


def test_completeness_lengths_differ_names_field() -> None:
    with pytest.raises(SurveyError, match=r"'LEN'.*equal length"):
        Field.from_dict(field_dict("LEN", completeness={"z": [0.5, 1.0], "log_mass": [8.1]}))


@pytest.mark.parametrize(("z_min", "z_max"), [(2.0, 2.0), (2.5, 0.5), (0.0, 1.0)])
def test_bad_z_range_names_field(z_min: float, z_max: float) -> None:
    with pytest.raises(SurveyError, match=r"'ZR'.*z_min < z_max"):
        Field.from_dict(field_dict("ZR", z_min=z_min, z_max=z_max))


def test_negative_errors_name_field() -> None:
    with pytest.raises(SurveyError, match=r"'ERR'.*mass_error_dex"):
        Field.from_dict(field_dict("ERR", mass_error_dex=[0.1, -0.2]))
    with pytest.raises(SurveyError, match=r"'ERR'.*z_error"):
        Field.from_dict(field_dict("ERR", z_error=-0.01))


def test_duplicate_field_names() -> None:
    with pytest.raises(SurveyError, match=r"duplicate field names: \['UDS'\]"):
        Survey.from_dict({"fields": [field_dict("UDS"), field_dict("COSMOS"), field_dict("UDS")]})


def test_unknown_field_lookup() -> None:
    with pytest.raises(SurveyError, match=r"unknown field 'GOODSN'.*AEGIS"):
        make_survey().field("GOODSN")


def test_no_fields() -> None:
    with pytest.raises(SurveyError, match="no \\[\\[fields\\]\\]"):
        Survey.from_dict({"name": "empty"})


# --------------------------------------------------------------------- cosmic-variance keys
def test_side_lengths_in_all_units() -> None:
    s = make_survey()
    assert s.field("AEGIS").side_arcmin == (6.0, 30.0)
    np.testing.assert_allclose(s.field("COSMOS2015").side_arcmin, (72.0, 80.0), rtol=1e-13)
    assert s.field("UDS").side_arcmin is None and s.field("TINY").side_arcmin is None
    f = Field("F", 0.04, 0.5, 2.5, [1.0], [9.0], area_unit="deg2", side_arcmin=[10.0, 14.4])
    assert f.side_arcmin == (10.0, 14.4)
    d = field_dict("DEG", area_arcmin2=120.0, side_deg=[0.2, 1 / 6])
    np.testing.assert_allclose(Field.from_dict(d).side_arcmin, (12.0, 10.0), rtol=1e-13)
    assert [f.has_cosmic_variance for f in s.fields] == [True, True, True, False]


def test_toml_hand_written_cosmic_variance_keys(tmp_path) -> None:
    text = """
[[fields]]
name = "A"
area_arcmin2 = 160.0
side_arcmin = [10.0, 16.0]
z_min = 0.5
z_max = 3.0
sigma_dm = 0.14
[fields.completeness]
z = [1.0]
log_mass = [9.0]

[[fields]]
name = "B"
area_arcmin2 = 100.0
side_deg = [0.1, 0.2777777777777778]
z_min = 0.5
z_max = 3.0
[fields.completeness]
z = [1.0]
log_mass = [9.0]
[fields.sigma_dm]
z = [0.5, 1.5]
value = [0.2, 0.1]
"""
    (tmp_path / "cv.toml").write_text(text)
    s = Survey.read(tmp_path / "cv.toml")
    a, b = s.fields
    assert a.sigma_dm == SigmaDMOverride(value=(0.14,), z=(), dz=0.2)
    assert b.sigma_dm == SigmaDMOverride(value=(0.2, 0.1), z=(0.5, 1.5), dz=0.2)
    np.testing.assert_allclose(b.side_arcmin, (6.0, 16.666666666666668), rtol=1e-12)
    # overrides: linear in z, flat beyond, sqrt(dz_ref / dz) for other slice widths
    np.testing.assert_allclose(b.sigma_dm_slice([0.5, 1.0, 2.0]), [0.2, 0.15, 0.1], rtol=1e-14)
    np.testing.assert_allclose(a.sigma_dm_slice([1.0, 2.0], 0.8), [0.07, 0.07], rtol=1e-14)
    np.testing.assert_allclose(s.sigma_dm("B", 1.0, 0.1), 0.15 * np.sqrt(2), rtol=1e-14)
    s.write(tmp_path / "again.toml")
    again = Survey.read(tmp_path / "again.toml")
    for x, y in zip(s.fields, again.fields, strict=True):
        assert_fields_equal(x, y)


def test_survey_sigma_dm_uses_survey_cosmology() -> None:
    from popmodel.cosmic_variance import sigma_dm

    strip = Field("COSMOS", 178.0, 0.5, 3.0, [1.0], [9.0], area_unit="arcmin2",
                  side_arcmin=(8.28, 21.5))  # fmt: skip
    planck = Survey((strip,), cosmology="Planck18")
    got = planck.sigma_dm("COSMOS", [1.0, 2.0], 0.3)
    np.testing.assert_allclose(got, sigma_dm(strip, [1.0, 2.0], 0.3, cosmology=apc.Planck18))
    wmap = Survey((strip,)).sigma_dm("COSMOS", [1.0, 2.0], 0.3)
    assert np.all(np.abs(got / wmap - 1) > 1e-3)  # a different spectrum and distances
    # a field with neither side lengths nor an override has no cosmic variance
    with pytest.raises(ValueError, match="'TINY' has no side lengths"):
        make_survey().sigma_dm("TINY", 1.2)


def test_sides_inconsistent_with_area_names_field() -> None:
    with pytest.raises(SurveyError, match=r"'RECT'.*differs from the area 172 arcmin\^2"):
        Field.from_dict(field_dict("RECT", side_arcmin=[10.0, 20.0]))
    # within 10% is accepted
    assert Field.from_dict(field_dict("RECT", side_arcmin=[10.0, 18.0])).side_arcmin == (10, 18)


@pytest.mark.parametrize(
    ("sides", "match"),
    [
        ([10.0], "two positive lengths"),
        ([10.0, -17.2], "two positive lengths"),
        ([10.0, float("nan")], "two positive lengths"),
        ("abc", "two lengths"),
        ((10.0, 17.2) * u.Mpc, "not angles"),
    ],
)
def test_bad_sides_name_field(sides: object, match: str) -> None:
    with pytest.raises(SurveyError, match=rf"'SIDES'.*{match}"):
        Field("SIDES", 172.0, 0.5, 2.5, [1.0], [9.0], area_unit="arcmin2", side_arcmin=sides)


def test_both_side_keys_rejected() -> None:
    with pytest.raises(SurveyError, match=r"'TWO'.*side_arcmin or side_deg"):
        Field.from_dict(field_dict("TWO", side_arcmin=[10.0, 17.2], side_deg=[0.1, 0.3]))


@pytest.mark.parametrize(
    ("override", "match"),
    [
        (-0.1, "values must be >= 0"),
        ({"value": [0.1, 0.2]}, "needs a z table"),
        ({"value": [0.1, 0.2], "z": [2.0, 1.0]}, "strictly increasing"),
        ({"value": [0.1, 0.2], "z": [1.0]}, "strictly increasing"),
        ({"value": 0.1, "dz": 0.0}, "dz must be > 0"),
        ({"z": [1.0]}, "needs 'value'"),
        ({"value": 0.1, "width": 0.2}, r"unknown keys \['width'\]"),
        ("big", "must be numbers"),
    ],
)
def test_bad_sigma_dm_override_names_field(override: object, match: str) -> None:
    with pytest.raises(SurveyError, match=rf"'CV'.*{match}"):
        Field.from_dict(field_dict("CV", sigma_dm=override))
