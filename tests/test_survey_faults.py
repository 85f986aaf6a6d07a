"""Issue 15 ("nothing silently wrong"), the survey reader: faults 7-11, 28, 29 of
docs/faults.md, unused and conflicting keys, the ``empty`` flag, and random corruptions of a
valid survey file (every one an error that names the problem, or the same survey)."""

import copy
import functools
import logging
import re
import tomllib

import astropy.cosmology as apc
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from popmodel.survey import Field, Survey, SurveyError

# a valid two-field survey: DEEP lies inside WIDE and owns their common redshifts
CLEAN = """\
name = "survey"

[cosmology]
H0 = 70.0
Om0 = 0.3

[[fields]]
name = "DEEP"
area_arcmin2 = 8.0
z_min = 0.5
z_max = 2.5
mass_error_dex = 0.1
z_error = 0.0
side_arcmin = [2.0, 4.0]
inside = "WIDE"

[fields.completeness]
z = [0.5, 1.0, 2.5]
log_mass = [8.1, 8.8, 9.5]

[[fields]]
name = "WIDE"
area_deg2 = 0.01
z_min = 0.2
z_max = 1.0
sigma_dm = 0.1

[fields.completeness]
z = [0.2, 1.0]
log_mass = [8.5, 9.0]

[[ownership]]
fields = ["DEEP", "WIDE"]
owner = "DEEP"
z = [0.5, 1.0]
"""

SMALL = """\
[cosmology]
{cosmology}

[[fields]]
name = "AEGIS"
area_arcmin2 = 8.0
z_min = 0.5
z_max = 2.5
{field}
[fields.completeness]
z = {z}
log_mass = {log_mass}
{completeness}
"""


def small(tmp_path, *, cosmology: str = 'name = "WMAP9"', field: str = "",
          z: str = "[0.5, 1.0, 2.5]", log_mass: str = "[8.1, 8.8, 9.5]",
          completeness: str = "") -> Survey:
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(cosmology=cosmology, field=field, z=z, log_mass=log_mass,
                                 completeness=completeness))
    return Survey.read(path)


def _comoving(cosmo: apc.Cosmology) -> np.ndarray:
    return cosmo.comoving_distance(np.array([0.5, 1.0, 2.5])).value


# --------------------------------------------------------------------- fault 7: Ode0
def test_fault7_ode0_gives_a_non_flat_cosmology(tmp_path) -> None:
    s = small(tmp_path, cosmology="H0 = 70.0\nOm0 = 0.3\nOde0 = 0.5")
    ref = apc.LambdaCDM(H0=70.0, Om0=0.3, Ode0=0.5, Tcmb0=0.0)
    assert s.cosmology.Ode0 == 0.5 and not s.cosmology.is_flat
    np.testing.assert_allclose(_comoving(s.cosmology), _comoving(ref), rtol=1e-12)
    s.write(tmp_path / "back.toml")  # the survey file keeps the curvature
    back = Survey.read(tmp_path / "back.toml")
    assert back.to_dict() == s.to_dict() and back.cosmology.Ode0 == 0.5
    np.testing.assert_allclose(_comoving(back.cosmology), _comoving(ref), rtol=1e-12)


def test_fault7_non_flat_cosmology_in_metadata_and_round_trip() -> None:
    from popmodel.cosmology import cosmology_from_config, cosmology_to_config, describe_cosmology

    cosmo = apc.LambdaCDM(H0=68.0, Om0=0.31, Ode0=0.6, Tcmb0=2.725, Ob0=0.049, Neff=3.2)
    back = cosmology_from_config(cosmology_to_config(cosmo))
    z = np.array([0.1, 1.0, 3.0, 8.0])
    np.testing.assert_allclose(back.differential_comoving_volume(z).value,
                               cosmo.differential_comoving_volume(z).value, rtol=1e-12)
    assert (back.Ob0, back.Neff) == (cosmo.Ob0, cosmo.Neff)
    assert "Ok0=" in describe_cosmology(cosmo) and "Ok0" not in describe_cosmology(apc.WMAP9)


def test_fault7_unwritable_cosmology_is_refused_on_write(tmp_path) -> None:
    f = Field("A", 8.0, 0.5, 2.5, [0.5, 2.5], [8.5, 9.5], area_unit="arcmin2")
    s = Survey((f,), cosmology=apc.FlatwCDM(H0=70.0, Om0=0.3, w0=-0.8), name="w")
    with pytest.raises(SurveyError, match=r"survey 'w' cannot be written.*FlatwCDM"):
        s.write(tmp_path / "w.toml")


@pytest.mark.parametrize(
    ("cosmology", "match"),
    [
        ("H0 = 70.0\nOm0 = 0.3\nOde0 = 2.0", r"not physical: H\(z\)\^2 <= 0"),
        ("H0 = 70.0\nOm0 = 0.3\nOde0 = nan", "Ode0 = nan"),
        ("H0 = 70.0\nOm0 = 0.3\nTcmb0 = -1.0", "Tcmb0"),
        ('H0 = "70"\nOm0 = 0.3', "H0 must be a number"),
        ("H0 = 70.0\nOm0 = true", "Om0 must be a number"),
    ],
)
def test_fault7_bad_cosmology_parameters_are_named(tmp_path, cosmology: str, match: str) -> None:
    with pytest.raises(SurveyError, match=match):
        small(tmp_path, cosmology=cosmology)


# --------------------------------------------------------------------- fault 8: conflicts
@pytest.mark.parametrize(
    "cosmology",
    ['name = "Planck18"\nOm0 = 0.5', 'name = "Planck18"\nH0 = 70.0\nOm0 = 0.5'],
    ids=["name+Om0", "name+H0+Om0"],
)
def test_fault8_builtin_name_with_parameters_is_an_error(tmp_path, cosmology: str) -> None:
    with pytest.raises(SurveyError, match=r"'Planck18' is an astropy built-in.*'Om0'.*conflict"):
        small(tmp_path, cosmology=cosmology)


def test_fault8_a_label_with_parameters_is_fine(tmp_path) -> None:
    s = small(tmp_path, cosmology='name = "mine"\nH0 = 70.0\nOm0 = 0.3')
    assert s.cosmology.name == "mine" and s.cosmology.Om0 == 0.3 and s.cosmology.is_flat


@pytest.mark.parametrize("key", ["Omega_m", "h", "w0"])
def test_unknown_cosmology_key_is_named(tmp_path, key: str) -> None:
    with pytest.raises(SurveyError, match=rf"unknown key\(s\) \['{key}'\]"):
        small(tmp_path, cosmology=f"H0 = 70.0\nOm0 = 0.3\n{key} = 0.3")


# --------------------------------------------------------------------- fault 9, 29: areas
def test_fault9_both_area_keys_are_an_error(tmp_path) -> None:
    with pytest.raises(SurveyError,
                       match=r"field 'AEGIS': give area_arcmin2 or area_deg2, not both"):
        small(tmp_path, field="area_deg2 = 1.0")


@pytest.mark.parametrize("value", ['"8 arcmin2"', "true", "[8.0]", "{ a = 1 }"])
def test_fault29_area_that_is_not_a_number_names_field_and_key(tmp_path, value: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SMALL.format(cosmology='name = "WMAP9"', field="", z="[0.5, 2.5]",
                                 log_mass="[8.5, 9.5]", completeness="")
                    .replace("area_arcmin2 = 8.0", f"area_arcmin2 = {value}"))
    with pytest.raises(SurveyError, match=r"s\.toml: field 'AEGIS': area_arcmin2 must be a number"):
        Survey.read(path)


@pytest.mark.parametrize(
    ("field", "match"),
    [
        ("z_min = true", "z_min must be a number"),
        ('mass_error_dex = "0.1"', "mass_error_dex must be numbers"),
        ("z_error = [true]", "z_error must be numbers"),
        ('side_deg = ["a", "b"]', "side_deg must be two lengths"),
        ("side_arcmin = [2.0, 4.0]\nside_deg = [0.1, 0.1]", "side_arcmin or side_deg, not both"),
        ('inside = 5', "inside must be field name"),
        ("overlap_arcmin2 = { X = true }", "overlap_arcmin2.X must be a number"),
    ],
)
def test_values_of_the_wrong_type_are_named(tmp_path, field: str, match: str) -> None:
    text = SMALL.format(cosmology='name = "WMAP9"', field="", z="[0.5, 2.5]",
                        log_mass="[8.5, 9.5]", completeness="")
    key = field.split(" = ")[0].split("\n")[0]
    if key in text:  # replace, do not duplicate (a duplicate key is a TOML error)
        text = re.sub(rf"^{key} = .*$", field, text, flags=re.MULTILINE)
    else:
        text = text.replace("z_max = 2.5\n", f"z_max = 2.5\n{field}\n")
    (tmp_path / "s.toml").write_text(text)
    with pytest.raises(SurveyError, match=rf"field 'AEGIS': .*{match}"):
        Survey.read(tmp_path / "s.toml")


# --------------------------------------------------------------------- unused keys
@pytest.mark.parametrize(
    ("where", "match"),
    [
        ("top", r"top level\): unknown key\(s\) \['colour'\]"),
        ("cosmology", r"\[cosmology\]: .*unknown key\(s\) \['colour'\]"),
        ("field", r"field 'AEGIS': unknown key\(s\) \['colour'\]"),
        ("completeness", r"field 'AEGIS': \[fields.completeness\]: unknown key\(s\) \['colour'\]"),
        ("sigma_dm", r"field 'AEGIS': sigma_dm has unknown keys \['colour'\]"),
        ("ownership", r"\[\[ownership\]\] table .*unknown \['colour'\]"),
        ("survey", r"survey 'S': unknown key\(s\) \['colour'\]"),
    ],
)
def test_every_unused_key_is_an_error_naming_it(tmp_path, where: str, match: str) -> None:
    d = {"name": "s", "cosmology": {"name": "WMAP9"},
         "fields": [{"name": "AEGIS", "area_arcmin2": 8.0, "z_min": 0.5, "z_max": 2.5,
                     "sigma_dm": {"value": 0.1},
                     "completeness": {"z": [0.5, 2.5], "log_mass": [8.5, 9.5]}}]}
    target = {"top": d, "cosmology": d["cosmology"], "field": d["fields"][0],
              "completeness": d["fields"][0]["completeness"],
              "sigma_dm": d["fields"][0]["sigma_dm"]}
    if where == "ownership":
        d["ownership"] = [{"fields": ["AEGIS", "X"], "owner": "AEGIS", "z": [0.5, 1.0],
                           "colour": 1}]
    elif where == "survey":
        d["survey"] = [{"name": "S", "fields": d.pop("fields"), "colour": 1}]
    else:
        target[where]["colour"] = "red"
    with pytest.raises(SurveyError, match=match):
        Survey.from_dict(d)


def test_fields_that_are_not_an_array_of_tables(tmp_path) -> None:
    (tmp_path / "s.toml").write_text('fields = 5\n')
    with pytest.raises(SurveyError, match=r"fields must be an array of tables"):
        Survey.read(tmp_path / "s.toml")
    (tmp_path / "t.toml").write_text('[fields]\nname = "A"\n')
    with pytest.raises(SurveyError, match=r"fields must be an array of tables"):
        Survey.read(tmp_path / "t.toml")


def test_a_file_that_is_not_text_names_the_file(tmp_path) -> None:
    (tmp_path / "bytes.toml").write_bytes(bytes(range(128, 256)))
    with pytest.raises(SurveyError, match=r"bytes\.toml: not valid TOML"):
        Survey.read(tmp_path / "bytes.toml")


# --------------------------------------------------------------------- fault 10: falling limit
def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "popmodel.survey" and r.levelno >= logging.WARNING]


def test_fault10_falling_completeness_limit_is_reported(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="popmodel.survey")
    s = small(tmp_path, log_mass="[9.5, 8.5, 10.9]", z="[0.5, 1.0, 2.5]")
    (msg,) = _warnings(caplog)
    assert "field 'AEGIS'" in msg and "falls with redshift by more than 0.5 dex" in msg
    assert "9.5 at z=0.5 -> 8.5 at z=1" in msg
    # reported, not refused or changed
    np.testing.assert_array_equal(s.fields[0].completeness_log_mass, [9.5, 8.5, 10.9])
    caplog.clear()
    small(tmp_path, log_mass="[9.5, 8.5, 10.9, 8.1]", z="[0.5, 1.0, 1.5, 2.5]")
    (msg,) = _warnings(caplog)
    assert "9.5 at z=0.5 -> 8.5 at z=1; 10.9 at z=1.5 -> 8.1 at z=2.5" in msg


def test_fault10_rule_is_against_the_highest_limit_so_far(caplog) -> None:
    caplog.set_level(logging.WARNING, logger="popmodel.survey")
    Field("UP", 1e-5, 0.5, 2.5, [0.5, 1.0, 2.5], [8.1, 8.8, 9.5])  # rising: silent
    Field("DIP", 1e-5, 0.5, 2.5, [0.5, 1.0, 2.5], [9.0, 8.6, 9.5])  # 0.4 dex dip: silent
    assert _warnings(caplog) == []
    Field("SLIDE", 1e-5, 0.5, 2.5, [0.5, 1.0, 1.5, 2.5], [9.5, 9.2, 8.95, 9.6])
    (msg,) = _warnings(caplog)  # 0.25 dex steps, 0.55 below the first node
    assert "field 'SLIDE'" in msg and "9.5 at z=0.5 -> 8.95 at z=1.5" in msg


# --------------------------------------------------------------------- fault 11: span
def test_fault11_table_short_of_the_field_range_is_an_error(tmp_path) -> None:
    with pytest.raises(SurveyError, match=r"field 'AEGIS': the completeness table covers "
                       r"1 <= z <= 1\.5, not all of the field's 0\.5 <= z <= 2\.5.*"
                       r'extrapolate = "flat"'):
        small(tmp_path, z="[1.0, 1.5]", log_mass="[8.8, 9.3]")


def test_fault11_flat_extrapolation_is_explicit_and_logged(tmp_path, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="popmodel.survey")
    s = small(tmp_path, z="[1.0, 1.5]", log_mass="[8.8, 9.3]", completeness='extrapolate = "flat"')
    (msg,) = _warnings(caplog)
    assert "field 'AEGIS'" in msg and "extrapolated flat" in msg
    assert "at 8.8 for 0.5 <= z < 1" in msg and "at 9.3 for 1.5 < z <= 2.5" in msg
    np.testing.assert_array_equal(s.fields[0].log_mass_limit([0.5, 2.5]), [8.8, 9.3])
    s.write(tmp_path / "back.toml")
    assert 'extrapolate = "flat"' in (tmp_path / "back.toml").read_text()
    assert Survey.read(tmp_path / "back.toml").to_dict() == s.to_dict()
    with pytest.raises(SurveyError, match=r"extrapolate must be one of \['none', 'flat'\]"):
        small(tmp_path, z="[1.0, 1.5]", log_mass="[8.8, 9.3]",
              completeness='extrapolate = "linear"')


def test_fault11_one_node_is_a_constant_limit(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="popmodel.survey")
    s = small(tmp_path, z="[1.0]", log_mass="[9.0]")
    assert caplog.records == []
    np.testing.assert_array_equal(s.fields[0].log_mass_limit([0.5, 2.5]), [9.0, 9.0])


def test_fault11_python_fields_keep_flat_default_and_write_it_out(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="popmodel.survey")
    f = Field("PY", 8.0, 0.2, 3.0, [0.65, 1.0, 3.0], [8.87, 9.07, 10.15], area_unit="arcmin2")
    (rec,) = [r for r in caplog.records if r.name == "popmodel.survey"]
    assert rec.levelno == logging.INFO and "field 'PY'" in rec.getMessage()
    s = Survey((f,), cosmology="WMAP9")
    s.write(tmp_path / "py.toml")
    assert 'extrapolate = "flat"' in (tmp_path / "py.toml").read_text()
    assert Survey.read(tmp_path / "py.toml").to_dict() == s.to_dict()
    with pytest.raises(SurveyError, match="field 'NO': the completeness table covers"):
        Field("NO", 8.0, 0.2, 3.0, [0.65, 3.0], [8.87, 10.15], area_unit="arcmin2",
              completeness_extrapolate="none")


def test_packaged_3dhst_survey_spans_its_table(tmp_path) -> None:
    from popmodel.datasets import threedhst_survey

    s = threedhst_survey(z_error=0.02)
    assert all(f.completeness_spans for f in s.fields)
    s.write(tmp_path / "3dhst.toml")
    assert "extrapolate" not in (tmp_path / "3dhst.toml").read_text()
    assert Survey.read(tmp_path / "3dhst.toml").to_dict() == s.to_dict()


# --------------------------------------------------------------------- fault 28: mock
def test_fault28_mock_of_a_field_that_can_hold_no_galaxy_names_it() -> None:
    from popmodel.mock import draw_mock

    ok = Field("OK", 8.0, 0.5, 2.5, [0.5, 2.5], [8.5, 9.5], area_unit="arcmin2")
    high = Field("HIGH", 8.0, 0.5, 2.5, [0.5, 2.5], [14.5, 14.5], area_unit="arcmin2")
    with pytest.raises(SurveyError, match=r"mock: field 'HIGH' can hold no galaxy.*log10 Msun"):
        draw_mock(Survey((ok, high)), seed=1, n_samples=4, n_grid_z=40)


FAULTS_10_11 = """\
[[fields]]
name = "AEGIS"
area_arcmin2 = 8.0
z_min = 0.5
z_max = 2.5
[fields.completeness]
z = [0.5, 1.0, 1.5, 2.5]
log_mass = [9.5, 8.5, 10.9, 8.1]

[[fields]]
name = "COSMOS"
area_arcmin2 = 8.0
z_min = 0.5
z_max = 2.5
[fields.completeness]
z = [1.0, 1.5]
log_mass = [8.8, 9.3]
"""


def test_fault28_survey_of_faults_10_and_11_mocks_once_extrapolation_is_explicit(
        tmp_path) -> None:
    from popmodel.mock import draw_mock

    (tmp_path / "s.toml").write_text(FAULTS_10_11)
    with pytest.raises(SurveyError, match="field 'COSMOS': the completeness table covers"):
        Survey.read(tmp_path / "s.toml")
    (tmp_path / "s.toml").write_text(FAULTS_10_11 + 'extrapolate = "flat"\n')
    s = Survey.read(tmp_path / "s.toml")
    cat, truth = draw_mock(s, seed=1, n_samples=4, n_grid_z=60)
    assert set(truth.n_selected) == {"AEGIS", "COSMOS"} and cat.n_galaxies > 0


# --------------------------------------------------------------------- empty = true
def test_empty_flag_is_read_checked_and_written_only_when_true(tmp_path) -> None:
    s = small(tmp_path, field="empty = true")
    assert s.fields[0].empty is True
    s.write(tmp_path / "e.toml")
    assert "empty = true" in (tmp_path / "e.toml").read_text()
    assert Survey.read(tmp_path / "e.toml").fields[0].empty is True
    plain = small(tmp_path)
    assert plain.fields[0].empty is False and "empty" not in plain.fields[0].to_dict()
    assert Field("P", 1e-5, 0.5, 2.5, [0.5, 2.5], [8.5, 9.5]).empty is False
    for bad in ('"yes"', "1"):
        with pytest.raises(SurveyError, match="field 'AEGIS': empty must be true or false"):
            small(tmp_path, field=f"empty = {bad}")


# --------------------------------------------------------------------- random corruptions
LINES = CLEAN.splitlines(keepends=True)
KEY_LINES = [i for i, ln in enumerate(LINES) if " = " in ln]
BAD_VALUES = ["nan", "inf", "-inf", "-1.0", '"8 arcmin2"', '"abc"', "true", "[]", "{}",
              '[1.0, "x"]']
#: optional keys whose loss leaves a valid survey without them (what it must equal then)
OPTIONAL = {"side_arcmin", "sigma_dm"}


def _context(i: int) -> set[str]:
    """Names an error about line i may give: its table, and the field it belongs to."""
    out: set[str] = set()
    header = ""
    for ln in LINES[: i + 1]:
        if ln.startswith("["):
            header = ln.strip().strip("[]")
    out.update(header.split("."))
    if header.startswith("fields"):
        starts = [k for k in range(i + 1) if LINES[k].startswith("[[fields]]")]
        block = LINES[starts[-1]:] if starts else LINES[i:]
        name = next(ln for ln in block if ln.startswith("name = "))
        out.add(name.split('"')[1])
    return out - {""}


@functools.cache
def _clean() -> dict:
    return Survey.from_dict(tomllib.loads(CLEAN)).to_dict()


def _expected_without(key: str) -> dict:
    d = copy.deepcopy(_clean())
    for f in d["fields"]:
        f.pop(key, None)
    return d


corruptions = st.one_of(
    st.tuples(st.just("drop"), st.sampled_from(range(len(LINES))), st.just("")),
    st.tuples(st.just("rename"), st.sampled_from(KEY_LINES),
              st.sampled_from(["append", "chop", "upper"])),
    st.tuples(st.just("value"), st.sampled_from(KEY_LINES), st.sampled_from(BAD_VALUES)),
    st.tuples(st.just("truncate"), st.integers(0, len(CLEAN) - 1), st.just("")),
)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(corruptions)
def test_random_corruptions_are_named_errors_or_harmless(tmp_path_factory, corruption) -> None:
    kind, where, how = corruption
    clean = _clean()
    lines = list(LINES)
    names: set[str] = set()
    expected = [clean]
    if kind == "truncate":
        text = CLEAN[:where]
    else:
        line = lines[where]
        key, _, value = line.partition(" = ")
        names = _context(where) | {key.strip("[]\n ")}
        if kind == "drop":
            lines[where] = ""
            if key in OPTIONAL:
                expected = [_expected_without(key)]
        elif kind == "rename":
            new = {"append": key + "x", "chop": key[:-1] or key + "y", "upper": key.upper()}[how]
            if new == key:
                new = key + "Z"
            names.add(new)
            lines[where] = f"{new} = {value}"
        else:
            if line.startswith("name = ") and _context(where) == set() and how.startswith('"'):
                return  # another string as the survey's name is another valid label
            lines[where] = f"{key} = {how}\n"
        text = "".join(lines)
    path = tmp_path_factory.mktemp("corrupt") / "corrupt.toml"
    path.write_text(text)
    try:
        got = Survey.read(path)
    except SurveyError as err:
        msg = str(err)
        assert msg.startswith(f"{path}: ")
        msg = msg[len(f"{path}: "):]
        if kind != "truncate" and not msg.startswith("not valid TOML"):
            assert any(n in msg for n in names), (kind, where, how, msg, names)
        return
    assert got.to_dict() in expected, (kind, where, how)
