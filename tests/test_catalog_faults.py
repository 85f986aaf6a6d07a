"""Faulty catalogue files and tables (issue 15, "nothing silently wrong"; faults 2, 3, 4, 20 and
23-26 of ../shared/docs/faults.md): each must be a CatalogError that names the file, column,
row or galaxy, or read exactly as the clean catalogue; never a result that is silently wrong nor
a bare library exception."""

import json
import logging
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from popmodel.catalog import (
    OPTIONAL_COLUMNS,
    REQUIRED_COLUMNS,
    CatalogError,
    CatalogFileError,
    CatalogFileNotFoundError,
    PosteriorCatalog,
)
from popmodel.smf.data import _check_support

N_GAL, N_SAMP = 20, 8
EXT = {"hdf5": ".h5", "fits": ".fits", "ecsv": ".ecsv", "parquet": ".parquet"}
META = {"source": "test_catalog_faults", "settings": {"n": 3}}


def clean_catalog(obs: bool = False) -> PosteriorCatalog:
    """20 galaxies x 8 samples in two fields, with weights and interim prior (and, with ``obs``,
    the catalogue point estimates); one galaxy repeats a sample, as MCMC chains do."""
    rng = np.random.default_rng(15)
    s = N_GAL * N_SAMP
    log_mass = rng.normal(10.0, 0.4, s)
    log_mass[1] = log_mass[0]
    extra = {}
    if obs:
        extra = {"obs_log_mass": rng.normal(10.0, 0.4, N_GAL), "obs_z": rng.uniform(0.5, 2.0, N_GAL)}
    return PosteriorCatalog.from_arrays(
        [f"g{i:03d}" for i in range(N_GAL)], ["F0" if i % 3 else "F1" for i in range(N_GAL)],
        log_mass, rng.uniform(0.3, 2.5, s), galaxy_index=np.repeat(np.arange(N_GAL), N_SAMP),
        weight=rng.uniform(0.2, 1.0, s), log_prior=rng.normal(-1.0, 0.2, s), meta=META, **extra,
    )


CLEAN = {False: clean_catalog(False), True: clean_catalog(True)}


def write_table(table: Table, path: Path, fmt: str) -> None:
    """Write a (possibly corrupted) long table as :meth:`PosteriorCatalog.write` writes one."""
    table = table.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. astropy converting str columns to bytes
        if fmt == "hdf5":
            table.write(path, format="hdf5", path="catalog", serialize_meta=True, overwrite=True)
        elif fmt == "fits":
            table.meta = {"PMMETA": json.dumps(table.meta)}
            table.write(path, format="fits", overwrite=True)
        elif fmt == "ecsv":
            table.write(path, format="ascii.ecsv", overwrite=True)
        else:
            table.write(path, format="parquet", overwrite=True)


def assert_catalogs_equal(a: PosteriorCatalog, b: PosteriorCatalog) -> None:
    for name in ("ids", "fields", "offsets", "log_mass", "z", "log_sfr", "log_prior", "weight",
                 "obs_log_mass", "obs_z"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            np.testing.assert_array_equal(va, vb, err_msg=name)
    assert a.meta == b.meta


def as_text(values: np.ndarray) -> np.ndarray:
    """Numbers stored as text that parses back to the same float64 (``repr``)."""
    return np.array([repr(float(v)) for v in values])


# ---------------------------------------------------------------- faults 2 and 3: misspelt names
@pytest.mark.parametrize("fmt", ["hdf5", "parquet"])
def test_fault_02_misspelt_weights_column_is_an_error(tmp_path: Path, fmt: str) -> None:
    t = CLEAN[False].to_table()
    t.rename_column("weight", "weights")
    path = tmp_path / f"cat{EXT[fmt]}"
    write_table(t, path, fmt)
    with pytest.raises(CatalogError, match=r"'weights' looks like the optional column 'weight'"
                       r".*rename") as info:
        PosteriorCatalog.read(path)
    assert str(path) in str(info.value)
    with pytest.raises(CatalogError, match="'weights'.*'weight'"):
        PosteriorCatalog.from_table(t)


def test_fault_03_misspelt_logprior_column_is_an_error(tmp_path: Path) -> None:
    t = CLEAN[False].to_table()
    t.rename_column("log_prior", "logprior")
    path = tmp_path / "cat.fits"
    write_table(t, path, "fits")
    with pytest.raises(CatalogError, match=r"'logprior' looks like the optional column 'log_prior'"):
        PosteriorCatalog.read(path)


@pytest.mark.parametrize("old, new", [
    ("weight", "Weight"), ("weight", "weigth"), ("log_prior", "ln_prior"), ("log_prior", "log-prior"),
    ("log_mass", "LOG_MASS"), ("log_mass", "logmass"), ("id", "ID"), ("id", "ids"), ("z", "Z"),
    ("field", "fields"), ("log_sfr", "log_sfrs"),
])
def test_fault_02_03_names_close_to_a_popmodel_column_are_errors(old: str, new: str) -> None:
    t = CLEAN[False].to_table()
    if old == "log_sfr":
        t["log_sfr"] = 1.0
    t.rename_column(old, new)
    kind = "required" if old in REQUIRED_COLUMNS else "optional"
    with pytest.raises(CatalogError, match=f"column '{new}' looks like the {kind} column '{old}'"):
        PosteriorCatalog.from_table(t)


def test_fault_02_03_close_name_beside_the_real_column_is_an_error() -> None:
    t = CLEAN[False].to_table()
    t["weights"] = t["weight"]
    with pytest.raises(CatalogError, match="'weights' looks like .* 'weight', which is also present"):
        PosteriorCatalog.from_table(t)


@pytest.mark.parametrize("extra", ["ra", "dec", "x", "z_spec", "z_err", "log_ssfr", "log_prob",
                                   "log_mass_16", "chain", "log_mass_true", "sfr", "mass"])
def test_other_extra_columns_are_ignored_and_logged(extra: str, caplog) -> None:
    """Extra columns keep working (faults.md, "handled well today"), and are named in the log."""
    t = CLEAN[False].to_table()
    t[extra] = np.arange(len(t), dtype=float)
    with caplog.at_level(logging.WARNING, logger="popmodel.catalog"):
        cat = PosteriorCatalog.from_table(t)
    assert_catalogs_equal(cat, CLEAN[False])
    assert f"'{extra}'" in caplog.text and "ignoring" in caplog.text


# ---------------------------------------------------------------- fault 4: an id used twice
def test_fault_04_two_galaxies_sharing_an_id_is_an_error(tmp_path: Path) -> None:
    cat = CLEAN[False]
    t = cat.to_table()
    # galaxy 13 (field F0, like galaxy 2) is given galaxy 2's id: today merged into one galaxy
    rows13 = slice(13 * N_SAMP, 14 * N_SAMP)
    assert cat.fields[13] == cat.fields[2]
    t["id"][rows13] = "g002"
    path = tmp_path / "dup.h5"
    write_table(t, path, "hdf5")
    with pytest.raises(CatalogError, match=r"'g002'.*not contiguous.*rows 16-23, 104-111") as info:
        PosteriorCatalog.read(path)
    assert str(path) in str(info.value)
    # asked for, interleaved rows are grouped (and the two galaxies merged)
    merged = PosteriorCatalog.from_table(t, allow_interleaved=True)
    assert merged.n_galaxies == N_GAL - 1 and merged.n_samples[2] == 2 * N_SAMP


def test_fault_04_shared_id_with_obs_columns_names_the_id() -> None:
    t = CLEAN[True].to_table()
    t["id"][13 * N_SAMP:14 * N_SAMP] = "g002"
    with pytest.raises(CatalogError, match=r"'log_mass_obs' changes within galaxy id\(s\) 'g002'"):
        PosteriorCatalog.from_table(t)


def test_fault_04_written_catalogues_and_stacked_tables() -> None:
    """What :meth:`to_table` writes is grouped; a table stacked chain by chain is not."""
    from astropy.table import vstack

    t = CLEAN[False].to_table()
    assert_catalogs_equal(PosteriorCatalog.from_table(t), CLEAN[False])
    half = np.tile(np.arange(N_SAMP) < N_SAMP // 2, N_GAL)
    stacked = vstack([t[half], t[~half]])
    with pytest.raises(CatalogError, match="not contiguous"):
        PosteriorCatalog.from_table(stacked)
    cat = PosteriorCatalog.from_table(stacked, allow_interleaved=True)
    np.testing.assert_array_equal(cat.n_samples, N_SAMP)


# ---------------------------------------------------------------- fault 20: text in a number column
@pytest.mark.parametrize("fmt", ["hdf5", "fits", "ecsv", "parquet"])
def test_fault_20_string_in_log_mass_names_column_row_and_galaxy(tmp_path: Path, fmt: str) -> None:
    t = CLEAN[False].to_table()
    t["log_mass"] = as_text(t["log_mass"])
    path = tmp_path / f"cat{EXT[fmt]}"
    write_table(t, path, fmt)
    # numbers stored as text keep working (faults.md, "handled well today")
    assert_catalogs_equal(PosteriorCatalog.read(path), CLEAN[False])
    t["log_mass"][45] = "abc"  # row 45: galaxy g005
    write_table(t, path, fmt)
    with pytest.raises(CatalogError, match=r"column 'log_mass' has values that are not numbers "
                       r"\('abc'\) in row\(s\) 45 \(galaxy id\(s\) 'g005'\)") as info:
        PosteriorCatalog.read(path)
    assert str(path) in str(info.value)


# ---------------------------------------------------------------- faults 23-26: broken files
@pytest.fixture
def clean_files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for fmt, ext in EXT.items():
        out[fmt] = tmp_path / f"clean{ext}"
        CLEAN[False].write(out[fmt])
    return out


def test_fault_23_truncated_hdf5_names_the_file(clean_files, tmp_path: Path) -> None:
    data = clean_files["hdf5"].read_bytes()
    path = tmp_path / "truncated.h5"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CatalogFileError, match=r"'.*truncated\.h5' as HDF5.*truncated or corrupt"):
        PosteriorCatalog.read(path)


def test_fault_24_corrupted_hdf5_names_the_file(clean_files, tmp_path: Path) -> None:
    """Random bytes over the middle of the file (here: over the stored ids, which is what gave
    a UnicodeDecodeError)."""
    data = bytearray(clean_files["hdf5"].read_bytes())
    start = data.find(b"g010")
    assert 0 < start < len(data) - 64
    data[start:start + 4] = bytes([0xA3, 0xFF, 0x00, 0x9C])
    path = tmp_path / "corrupt.h5"
    path.write_bytes(bytes(data))
    with pytest.raises(CatalogError, match=r"corrupt\.h5.*column 'id' holds bytes that are not text"
                       r".*row\(s\) 80.*corrupt"):
        PosteriorCatalog.read(path)


@pytest.mark.parametrize("seed", range(12))
def test_fault_24_random_bytes_in_an_hdf5_file_never_raise_a_library_error(
    clean_files, tmp_path: Path, seed: int
) -> None:
    """Wherever 32 random bytes land, reading gives a catalogue or a CatalogError naming the
    file (bytes that land in the numbers change them without a trace: HDF5 stores no
    checksums, so that case cannot be told apart from a valid file)."""
    rng = np.random.default_rng(seed)
    data = bytearray(clean_files["hdf5"].read_bytes())
    at = int(rng.integers(len(data) // 4, 3 * len(data) // 4))
    data[at:at + 32] = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
    path = tmp_path / "corrupt.h5"
    path.write_bytes(bytes(data))
    try:
        PosteriorCatalog.read(path)
    except CatalogError as exc:
        assert "corrupt.h5" in str(exc)


def test_fault_25_truncated_fits_names_the_file(clean_files, tmp_path: Path) -> None:
    data = clean_files["fits"].read_bytes()
    path = tmp_path / "truncated.fits"
    path.write_bytes(data[: 2 * len(data) // 3])
    with pytest.raises(CatalogFileError, match=r"'.*truncated\.fits' as FITS.*truncated or corrupt"
                       r".*File may have been truncated"):
        PosteriorCatalog.read(path)


def test_fault_26_random_bytes_as_fits_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "random.fits"
    path.write_bytes(np.random.default_rng(26).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(CatalogFileError, match=r"'.*random\.fits' as FITS: it is not a FITS file"):
        PosteriorCatalog.read(path)


@pytest.mark.parametrize("fmt", ["hdf5", "parquet", "ecsv"])
def test_random_bytes_and_empty_files_name_the_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"random{EXT[fmt]}"
    path.write_bytes(np.random.default_rng(1).integers(0, 256, 3000, dtype=np.uint8).tobytes() + b"\n")
    with pytest.raises(CatalogFileError, match=r"random\."):
        PosteriorCatalog.read(path)
    path.write_bytes(b"")
    with pytest.raises(CatalogFileError, match=r"random\..* is empty"):
        PosteriorCatalog.read(path)


def test_truncated_ecsv_is_an_error(clean_files, tmp_path: Path) -> None:
    """A text file cut in the middle of a line could still parse (10.53 read as 10.5)."""
    data = clean_files["ecsv"].read_bytes()
    path = tmp_path / "cut.ecsv"
    path.write_bytes(data[:-3])
    with pytest.raises(CatalogFileError, match=r"cut\.ecsv.*does not end with a newline"):
        PosteriorCatalog.read(path)


def test_hdf5_without_the_catalog_dataset_lists_what_it_holds(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    CLEAN[False].to_table().write(path, format="hdf5", path="samples/table", serialize_meta=True)
    with pytest.raises(CatalogFileError, match=r"other\.h5' has no dataset at path 'catalog' "
                       r"\(its datasets are 'samples/table'"):
        PosteriorCatalog.read(path)


def test_missing_file_is_a_one_line_catalog_error(tmp_path: Path) -> None:
    path = tmp_path / "nope.h5"
    with pytest.raises(CatalogFileNotFoundError) as info:
        PosteriorCatalog.read(path)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, CatalogError)
    assert str(info.value) == f"catalogue file {str(path)!r} does not exist"


def test_fault_02_through_the_command_line(tmp_path: Path, capsys) -> None:
    """``popmodel fit-smf`` stops before any fit: exit status 2 and the message (or, without
    the command line's error handler, the CatalogError itself)."""
    from popmodel.cli import main
    from popmodel.testing import deep_survey

    survey = tmp_path / "survey.toml"
    deep_survey(1, 30.0).write(survey)
    t = CLEAN[False].to_table()
    t.rename_column("weight", "weights")
    path = tmp_path / "cat.h5"
    write_table(t, path, "hdf5")
    argv = ["fit-smf", str(path), "--survey", str(survey), "--out", str(tmp_path / "res")]
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level  # main() sets up logging to this stderr
    try:
        rc = main(argv)
        message = capsys.readouterr().err
    except SystemExit as exc:
        rc, message = exc.code, capsys.readouterr().err
    except CatalogError as exc:
        rc, message = 2, str(exc)
    finally:
        root.handlers[:], root.level = handlers, level
    assert rc == 2
    assert "'weights' looks like the optional column 'weight'" in message


# ---------------------------------------------------------------- random corruptions
NUMERIC = ("log_mass", "z", "weight", "log_prior")
FAR_NAMES = ("col7", "qq", "wgt_x", "extra_data")


def _near_names(name: str) -> list[str]:
    """Misspellings that must be caught: case, separators, plurals and (for the long names)
    one deleted or swapped character."""
    out = [name.upper(), name.title().replace("_", ""), name.replace("_", "-")]
    if len(name) > 1:
        out.append(name + "s")
    if len(name) >= 4:
        out += [name[:-1], name[:1] + name[2:], name[:2] + name[3] + name[2] + name[4:]]
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    return [n for n in dict.fromkeys(out) if n != name and n not in known]


corruption = st.one_of(
    st.tuples(st.just("nonfinite"), st.sampled_from(NUMERIC + ("log_mass_obs",)),
              st.integers(0, N_GAL * N_SAMP - 1), st.sampled_from([np.nan, np.inf, -np.inf])),
    st.tuples(st.just("text"), st.sampled_from(NUMERIC + ("z_obs",)),
              st.integers(0, N_GAL * N_SAMP - 1), st.sampled_from(["abc", "1.0.0", "--", "x1"])),
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("near_name"), st.sampled_from(REQUIRED_COLUMNS + ("weight", "log_prior")),
              st.integers(0, 20)),
    st.tuples(st.just("far_name"), st.sampled_from(REQUIRED_COLUMNS + ("weight", "log_prior")),
              st.sampled_from(FAR_NAMES)),
    st.tuples(st.just("support"), st.sampled_from(["linear", "1e10", "negative_z"])),
    st.tuples(st.just("ignored"), st.sampled_from([np.nan, np.inf, "abc"])),
    st.tuples(st.just("shared_id"), st.integers(0, N_GAL - 1), st.integers(2, N_GAL - 2)),
    st.tuples(st.just("field"), st.integers(0, N_GAL * N_SAMP - 1)),
)


def _corrupt(t: Table, c: tuple) -> tuple[Table, list[str]]:
    """The corrupted table, and the words an error about it must contain (any one of them)."""
    kind = c[0]
    if kind == "truncate":  # done to the file, in the test
        return t, []

    def gal_of_row(row: int) -> str:
        return f"g{row // N_SAMP:03d}"

    if kind == "nonfinite":
        _, col, row, value = c
        if col not in t.colnames:
            col = "log_mass"
        t[col][row] = value
        return t, [f"'{col}'", gal_of_row(row)]
    if kind == "text":
        _, col, row, text = c
        if col not in t.colnames:
            col = "z"
        t[col] = as_text(t[col])
        t[col][row] = text
        return t, [f"'{col}'", gal_of_row(row), text]
    if kind == "near_name":
        _, col, k = c
        names = _near_names(col)
        new = names[k % len(names)]
        t.rename_column(col, new)
        return t, [f"'{new}' looks like the", f"column '{col}'"]
    if kind == "far_name":
        _, col, new = c
        t.rename_column(col, new)
        return t, [f"'{col}'"]
    if kind == "support":
        if c[1] == "linear":
            t["log_mass"] = 10 ** t["log_mass"]
        elif c[1] == "1e10":
            t["log_mass"] = 10 ** (t["log_mass"] - 10)
        else:
            t["z"][N_SAMP * 3 + 2] = -0.1
        return t, ["'log_mass'" if c[1] != "negative_z" else "'z'"]
    if kind == "ignored":
        t["note"] = np.ones(len(t)) if not isinstance(c[1], str) else np.full(len(t), "text")
        t["note"][7] = c[1]
        return t, []
    if kind == "shared_id":
        _, i, shift = c
        j = (i + shift) % N_GAL  # never a neighbour: then the rows would merge unseen
        t["id"][j * N_SAMP:(j + 1) * N_SAMP] = f"g{i:03d}"
        return t, [f"'g{i:03d}'"]
    if kind == "field":
        row = c[1]
        t["field"][row] = "F1" if t["field"][row] == "F0" else "F0"
        return t, ["'field'", gal_of_row(row)]
    raise AssertionError(kind)


@settings(derandomize=True, max_examples=400, deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(fmt=st.sampled_from(sorted(EXT)), obs=st.booleans(), c=corruption)
def test_random_corruptions_are_named_errors_or_change_nothing(fmt: str, obs: bool, c: tuple) -> None:
    """A corrupted copy of a valid catalogue file: either a CatalogError whose message names the
    problem (before or by the model's support check), or the clean catalogue unchanged. Two
    outcomes are legitimately different and are checked as such: an ECSV file cut exactly at
    the end of a line is a valid, shorter table (a prefix of the clean rows), and an optional
    column renamed to an unrelated name is left out (and named in the log)."""
    clean = CLEAN[obs]
    t, words = _corrupt(clean.to_table(), c)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"cat{EXT[fmt]}"
        write_table(t, path, fmt)
        cut_at_newline = False
        if c[0] == "truncate":
            data = path.read_bytes()
            cut = int(c[1] * len(data))
            path.write_bytes(data[:cut])
            cut_at_newline = fmt == "ecsv" and data[:cut].endswith(b"\n")
            words = [os.fspath(path)]
        records: list[logging.LogRecord] = []
        handler = logging.Handler()
        handler.emit = records.append
        log = logging.getLogger("popmodel.catalog")
        log.addHandler(handler)
        try:
            cat = PosteriorCatalog.read(path)
            _check_support(cat)
        except CatalogError as exc:
            assert words, f"{c}: a corruption of an ignored column gave {exc}"
            assert any(w in str(exc) for w in words), (c, str(exc))
            event(f"{c[0]}: CatalogError")
            return
        finally:
            log.removeHandler(handler)
    if cut_at_newline:
        rows, full = cat.to_table(), clean.to_table()
        assert len(rows) < len(full)
        for name in full.colnames:
            np.testing.assert_array_equal(rows[name], full[name][: len(rows)])
        event(f"{c[0]}: ECSV cut at a line end, a prefix")
        return
    if c[0] == "far_name" and c[1] in OPTIONAL_COLUMNS:
        assert getattr(cat, c[1]) is None
        assert any(c[2] in r.getMessage() for r in records)
        full = clean.to_table()
        clean = PosteriorCatalog.from_table(full[[n for n in full.colnames if n != c[1]]])
    assert_catalogs_equal(cat, clean)
    event(f"{c[0]}: read unchanged")
