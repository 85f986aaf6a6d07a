"""Tests for popmodel.readers: every layout read from files written here by independent h5py,
astropy and pyarrow code (never popmodel's writers), and the same SMF likelihood from each."""

import dataclasses
import json
import logging

import h5py
import jax
import numpy as np
import pytest
from astropy.table import Table

from popmodel.catalog import CatalogError, CatalogFileError, CatalogFileNotFoundError
from popmodel.readers import (
    collate_prospector,
    detect_format,
    parse_columns,
    read_posteriors,
)

TEXT = h5py.string_dtype("utf-8")


# --------------------------------------------------------------------- the galaxies
@pytest.fixture(scope="module")
def survey():
    from popmodel.testing import deep_survey

    return deep_survey(1, 12.0, mass_error_dex=(0.1, 0.2))


@pytest.fixture(scope="module")
def truth(survey):
    """A small mock with every per-sample column: log_sfr, log_prior, weight (S = 8)."""
    from popmodel.mock import draw_mock

    cat, _ = draw_mock(survey, seed=3, n_samples=8)
    rng = np.random.default_rng(7)
    s = cat.log_mass.size
    return dataclasses.replace(
        cat, log_sfr=rng.normal(0.5, 0.4, s), log_prior=rng.normal(-1.0, 0.3, s),
        weight=rng.uniform(0.2, 2.0, s))


def cube(cat, name):
    """``(N, S)`` array of per-sample column ``name`` (every galaxy has S samples)."""
    return np.asarray(getattr(cat, name)).reshape(cat.n_galaxies, -1)


def long_table(cat):
    """The long table, column by column (not PosteriorCatalog.to_table)."""
    gal = np.repeat(np.arange(cat.n_galaxies), np.diff(cat.offsets))
    return Table({"id": cat.ids[gal], "field": cat.fields[gal], "log_mass": cat.log_mass,
                  "z": cat.z, "log_sfr": cat.log_sfr, "log_prior": cat.log_prior,
                  "weight": cat.weight, "log_mass_obs": cat.obs_log_mass[gal],
                  "z_obs": cat.obs_z[gal]})


def wide_table(cat):
    return Table({"id": cat.ids, "field": cat.fields, "log_mass": cube(cat, "log_mass"),
                  "z": cube(cat, "z"), "log_sfr": cube(cat, "log_sfr"),
                  "log_prior": cube(cat, "log_prior"), "weight": cube(cat, "weight"),
                  "log_mass_obs": cat.obs_log_mass, "z_obs": cat.obs_z})


LABELS = ["dust2", "zred", "logsfr", "logzsol", "logmass"]  # permuted, with extra parameters


def write_chains(path, cat, *, labels=LABELS, byte_labels=False, field=True, extra=None):
    n = cat.n_galaxies
    rng = np.random.default_rng(11)
    source = {"logmass": cube(cat, "log_mass"), "mass": cube(cat, "log_mass"), "zred": cube(cat, "z"),
              "logsfr": cube(cat, "log_sfr")}
    chains = np.stack([source[lab] if lab in source else rng.normal(size=(n, 8))
                       for lab in labels], axis=-1)
    with h5py.File(path, "w") as f:
        f["chains"] = chains
        if byte_labels:
            f["theta_labels"] = np.array([lab.encode() for lab in labels], dtype="S16")
        else:
            f.create_dataset("theta_labels", data=np.array(labels, dtype=object), dtype=TEXT)
        f["objid"] = np.array([i.encode() for i in cat.ids])
        if field:
            f.create_dataset("field", data=np.array(cat.fields, dtype=object), dtype=TEXT)
        f["weights"] = 3.0 * cube(cat, "weight")  # not normalised
        f["lnprior"] = cube(cat, "log_prior")
        f["obs_log_mass"] = cat.obs_log_mass
        f["obs_z"] = cat.obs_z
        for k, v in (extra or {}).items():
            f[k] = v
    return path


@pytest.fixture(scope="module")
def files(truth, tmp_path_factory):
    """The same galaxies in every layout and file format."""
    d = tmp_path_factory.mktemp("readers")
    out = {}
    lt = long_table(truth)
    lt.write(d / "long.h5", format="hdf5", path="results/posterior")  # not the default path
    out["long-h5"] = d / "long.h5"
    lt.write(d / "long.fits", format="fits")
    out["long-fits"] = d / "long.fits"
    lt.write(d / "long.parquet", format="parquet")
    out["long-parquet"] = d / "long.parquet"
    lt.write(d / "long.ecsv", format="ascii.ecsv")
    out["long-ecsv"] = d / "long.ecsv"
    wt = wide_table(truth)
    wt.write(d / "wide.fits", format="fits")
    out["wide-fits"] = d / "wide.fits"
    wt.write(d / "wide.parquet", format="parquet")
    wt.write(d / "wide.ecsv", format="ascii.ecsv")
    out["wide-ecsv"] = d / "wide.ecsv"
    out["wide-parquet"] = d / "wide.parquet"
    # HDF5 wide table as h5py writes it: a compound dataset with sub-array fields
    s = 8
    dt = np.dtype([("id", "S16"), ("field", "S8"), ("log_mass", "f8", (s,)), ("z", "f8", (s,)),
                   ("log_sfr", "f8", (s,)), ("log_prior", "f8", (s,)), ("weight", "f8", (s,)),
                   ("log_mass_obs", "f8"), ("z_obs", "f8")])
    rec = np.zeros(truth.n_galaxies, dtype=dt)
    rec["id"] = [i.encode() for i in truth.ids]
    rec["field"] = [f.encode() for f in truth.fields]
    for c in ("log_mass", "z", "log_sfr", "log_prior", "weight"):
        rec[c] = cube(truth, c)
    rec["log_mass_obs"], rec["z_obs"] = truth.obs_log_mass, truth.obs_z
    with h5py.File(d / "wide.h5", "w") as f:
        f["galaxies"] = rec
    out["wide-h5"] = d / "wide.h5"
    # Parquet list columns (pyarrow, not astropy)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({
        "id": list(truth.ids), "field": list(truth.fields),
        **{c: pa.array([list(r) for r in cube(truth, c)])
           for c in ("log_mass", "z", "log_sfr", "log_prior", "weight")},
        "log_mass_obs": truth.obs_log_mass, "z_obs": truth.obs_z}), d / "wide_lists.parquet")
    out["wide-lists"] = d / "wide_lists.parquet"
    out["chains"] = write_chains(d / "chains.h5", truth)
    out["chains-bytes"] = write_chains(d / "chains_bytes.h5", truth, byte_labels=True,
                                       labels=LABELS[::-1])
    # PROVABGS-like: (N, S, P) samples with labels as an attribute and TARGETIDs
    labels = ["log_mstar", "beta1", "redshift_s", "logsfr"]
    with h5py.File(d / "provabgs.h5", "w") as f:
        data = np.stack([cube(truth, "log_mass"), np.zeros((truth.n_galaxies, s)),
                         cube(truth, "z"), cube(truth, "log_sfr")], axis=-1)
        ds = f.create_dataset("samples", data=data)
        ds.attrs["labels"] = np.array([lab.encode() for lab in labels])
        f["targetid"] = np.array([i.encode() for i in truth.ids])
        f["field"] = np.array([x.encode() for x in truth.fields])
        f["weights"] = cube(truth, "weight")
        f["lnprior"] = cube(truth, "log_prior")
        f["obs_log_mass"], f["obs_z"] = truth.obs_log_mass, truth.obs_z
    out["provabgs"] = d / "provabgs.h5"
    return out


READS = {
    "long-h5": {"format": None}, "long-fits": {"format": None},
    "long-parquet": {"format": None}, "long-ecsv": {"format": "long"},
    "wide-fits": {"format": None}, "wide-parquet": {"format": None},
    "wide-h5": {"format": None}, "wide-lists": {"format": None}, "wide-ecsv": {"format": None},
    "chains": {"format": None}, "chains-bytes": {"format": "chains"},
    "provabgs": {"format": None, "columns": "log_mass=log_mstar,z=redshift_s,log_sfr=logsfr"},
}
DETECTED = {"long-h5": "long", "long-fits": "long", "long-parquet": "long", "long-ecsv": "long",
            "wide-fits": "wide", "wide-parquet": "wide", "wide-h5": "wide", "wide-lists": "wide", "wide-ecsv": "wide",
            "chains": "chains", "chains-bytes": "chains", "provabgs": "provabgs"}


# --------------------------------------------------------------------- equivalence
@pytest.fixture(scope="module")
def smf(survey, truth):
    """ln L at 5 parameter points of a catalogue, and the reference from the mock itself."""
    import jax.numpy as jnp

    from popmodel.smf.data import prepare_smf_data
    from popmodel.smf.evolution import ContinuityParams, leja2020_params
    from popmodel.smf.likelihood import log_likelihood

    v0 = np.asarray(leja2020_params().to_vector())
    rng = np.random.default_rng(5)
    points = [v0] + [v0 + rng.normal(0.0, 0.05, v0.size) for _ in range(4)]
    params = [ContinuityParams.from_vector(jnp.asarray(v)) for v in points]
    fn = jax.jit(lambda p, d: log_likelihood(p, d, delta=None))
    ref_data = prepare_smf_data(truth, survey, posterior="samples", cosmic_variance=False)

    def lnl(cat):
        data = prepare_smf_data(cat, survey, posterior="samples", cosmic_variance=False,
                                volume=ref_data.volume)
        return np.array([float(fn(p, data.arrays)) for p in params])

    return lnl, lnl(truth)


@pytest.mark.parametrize("key", list(READS))
def test_every_layout_gives_the_mock_and_its_likelihood(key, files, truth, smf):
    assert detect_format(files[key]) == DETECTED[key]
    cat = read_posteriors(files[key], **READS[key])
    rep = cat.meta["read_report"]
    assert rep["format"] == DETECTED[key] and rep["n_failed"] == 0
    assert rep["n_rows"] == truth.n_galaxies and "effective completeness" in rep["note"]
    np.testing.assert_array_equal(cat.ids, truth.ids)
    np.testing.assert_array_equal(cat.fields, truth.fields)
    np.testing.assert_allclose(cat.log_mass, truth.log_mass, rtol=0, atol=0)
    np.testing.assert_allclose(cat.z, truth.z, rtol=0, atol=0)
    np.testing.assert_allclose(cat.log_sfr, truth.log_sfr, rtol=0, atol=0)
    np.testing.assert_allclose(cat.obs_log_mass, truth.obs_log_mass, rtol=0, atol=0)
    lnl, ref = smf
    np.testing.assert_allclose(lnl(cat), ref, rtol=1e-9)


# --------------------------------------------------------------------- chains
def small(truth, n=6):
    return truth.subset(np.arange(n))


def test_chains_padding_spectroscopic_z_and_failed_fits(truth, tmp_path, caplog):
    cat = small(truth)
    path = write_chains(tmp_path / "c.h5", cat)
    with h5py.File(path, "r+") as f:
        ch, w = f["chains"][()], f["weights"][()]
        ch[0, 5:] = np.nan  # object 0: a shorter chain, padded with NaN at weight 0
        w[0, 5:] = 0.0
        ch[2] = np.nan  # objects 2 and 4: failed fits (weights anything)
        ch[4] = np.nan
        del f["chains"], f["weights"]
        f["chains"], f["weights"] = ch, w
        z = np.full(cat.n_galaxies, np.nan)
        z[1] = 0.8123  # object 1 fitted at a spectroscopic redshift
        f["z"] = z
    with caplog.at_level(logging.WARNING, logger="popmodel.readers"):
        got = read_posteriors(path)
    assert "2 of 6 galaxies excluded" in caplog.text and cat.ids[2] in caplog.text
    rep = got.meta["read_report"]
    assert rep["n_failed"] == 2 and rep["failed_ids"] == [cat.ids[2], cat.ids[4]]
    assert rep["n_rows"] == 6 and rep["n_galaxies"] == 4
    np.testing.assert_array_equal(got.ids, cat.ids[[0, 1, 3, 5]])
    assert list(got.n_samples) == [5, 8, 8, 8]
    np.testing.assert_array_equal(got.log_mass[:5], cube(cat, "log_mass")[0, :5])
    np.testing.assert_array_equal(got.z[5:13], np.full(8, 0.8123))
    np.testing.assert_allclose(got.weight[5:13], 3.0 * cube(cat, "weight")[1])
    np.testing.assert_array_equal(got.log_prior[5:13], cube(cat, "log_prior")[1])
    assert got.meta["label_map"] == {"log_mass": "logmass", "z": "zred", "log_sfr": "logsfr"}


def test_chains_without_zred_use_the_fixed_redshift_and_lnprior_sfr(truth, tmp_path):
    cat = small(truth)
    lab = ["logmass", "logsfr"]
    lnp_sfr = np.random.default_rng(1).normal(-2.0, 0.1, (6, 8))
    path = write_chains(tmp_path / "c.h5", cat, labels=lab,
                        extra={"z": cat.obs_z, "lnprior_sfr": lnp_sfr})
    got = read_posteriors(path)
    np.testing.assert_array_equal(got.z, np.repeat(cat.obs_z, 8))
    np.testing.assert_array_equal(got.log_prior_sfr, lnp_sfr.ravel())
    with h5py.File(path, "r+") as f:
        z = f["z"][()]
        z[3] = np.nan
        del f["z"]
        f["z"] = z
    with pytest.raises(CatalogError, match=f"no redshift for object.*{cat.ids[3]}"):
        read_posteriors(path)


def test_chains_partly_nan_samples_with_weight_are_an_error_naming_the_galaxy(truth, tmp_path):
    cat = small(truth)
    path = write_chains(tmp_path / "c.h5", cat)
    with h5py.File(path, "r+") as f:
        ch = f["chains"][()]
        ch[3, 2, LABELS.index("logmass")] = np.nan
        del f["chains"]
        f["chains"] = ch
    with pytest.raises(CatalogError, match=f"some \\(not all\\) samples.*{cat.ids[3]}") as exc:
        read_posteriors(path)
    assert str(path) in str(exc.value) and "'log_mass'" in str(exc.value)


def test_chains_labels_mapping_and_unknown_labels(truth, tmp_path):
    cat = small(truth)
    path = write_chains(tmp_path / "c.h5", cat, labels=["mass", "zred", "logsfr"])
    with pytest.raises(CatalogError, match="'logmass'.*the default label.*\\['mass', 'zred', "
                       "'logsfr'\\]"):
        read_posteriors(path)
    got = read_posteriors(path, columns={"log_mass": "mass"})
    np.testing.assert_array_equal(got.log_mass, cat.log_mass)
    with pytest.raises(CatalogError, match="'logmstar'.*given in columns=.*'zred'"):
        read_posteriors(path, columns="log_mass=logmstar")
    with pytest.raises(CatalogError, match="weight.*cannot be mapped"):
        read_posteriors(path, columns={"log_mass": "mass", "weight": "w"})


def test_chains_field_from_argument_or_an_error(truth, tmp_path):
    cat = small(truth)
    path = write_chains(tmp_path / "c.h5", cat, field=False)
    with pytest.raises(CatalogError, match="no field dataset.*--field"):
        read_posteriors(path)
    assert set(read_posteriors(path, field="GOODSN").fields) == {"GOODSN"}
    with pytest.raises(CatalogError, match="field= only for a file without one"):
        read_posteriors(write_chains(tmp_path / "d.h5", cat), field="GOODSN")


def test_chains_labels_as_a_json_attribute(truth, tmp_path):
    cat = small(truth)
    path = write_chains(tmp_path / "c.h5", cat)
    with h5py.File(path, "r+") as f:
        del f["theta_labels"]
        f.attrs["theta_labels"] = json.dumps(LABELS)
    np.testing.assert_array_equal(read_posteriors(path).log_mass, cat.log_mass)


def test_provabgs_at_the_spectroscopic_redshift_and_row_numbers(truth, tmp_path, caplog):
    cat = small(truth)
    with h5py.File(tmp_path / "p.h5", "w") as f:
        g = f.create_group("bgs")
        ds = g.create_dataset("mcmc", data=np.stack([cube(cat, "log_mass"), cube(cat, "z")], -1))
        g["labels"] = np.array([b"logmstar", b"beta1"])
        g["redshift"] = cat.obs_z
        g["field"] = np.array([b"BGS"] * 6)
        assert ds.ndim == 3
    assert detect_format(tmp_path / "p.h5", hdf5_path="bgs") == "provabgs"
    with caplog.at_level(logging.WARNING, logger="popmodel.readers"):
        got = read_posteriors(tmp_path / "p.h5", hdf5_path="bgs/mcmc",
                              columns={"log_mass": "logmstar"})
    assert "row number" in caplog.text and got.ids.tolist() == [str(i) for i in range(6)]
    np.testing.assert_array_equal(got.z, np.repeat(cat.obs_z, 8))
    np.testing.assert_array_equal(got.log_mass, cat.log_mass)
    with pytest.raises(CatalogError, match="'logmass'.*\\['logmstar', 'beta1'\\]"):
        read_posteriors(tmp_path / "p.h5", hdf5_path="bgs", format="provabgs")


def test_formats_and_aliases(files):
    assert read_posteriors(files["long-h5"], format="hdf5").n_galaxies > 0
    with pytest.raises(CatalogError, match="unknown posterior format 'csv'; use one of long"):
        read_posteriors(files["long-h5"], format="csv")


# --------------------------------------------------------------------- tables
def test_long_table_excludes_failed_galaxies_and_drops_zero_weight_padding(truth, tmp_path):
    cat = small(truth)
    t = long_table(cat)
    for c in ("log_mass", "log_sfr", "z"):  # galaxy 1 failed: every sampled value NaN
        t[c][8:16] = np.nan
    t["log_mass"][3] = np.nan  # galaxy 0: one padding sample of weight 0
    t["weight"][3] = 0.0
    t.rename_column("log_mass", "LOGM")
    t.write(tmp_path / "l.fits")
    got = read_posteriors(tmp_path / "l.fits", columns={"log_mass": "LOGM"})
    assert got.meta["read_report"]["failed_ids"] == [cat.ids[1]]
    assert list(got.n_samples) == [7, 8, 8, 8, 8]
    t["weight"][3] = 1.0
    t.write(tmp_path / "l.fits", overwrite=True)
    with pytest.raises(CatalogError, match=f"'log_mass'.*{cat.ids[0]}"):
        read_posteriors(tmp_path / "l.fits", columns={"log_mass": "LOGM"})


def test_wide_vector_columns_must_have_shape_n_s(truth, tmp_path):
    cat = small(truth)
    t = wide_table(cat)
    t["z"] = cat.obs_z  # a scalar where a vector is expected
    t.write(tmp_path / "w.fits")
    with pytest.raises(CatalogError, match="column 'z' has shape \\(6,\\), expected a vector "
                       "column of shape \\(N, S\\) = \\(6, 8\\)"):
        read_posteriors(tmp_path / "w.fits", format="wide")
    t = wide_table(cat)
    t["weight"] = np.ones((6, 5))
    t.write(tmp_path / "w.fits", overwrite=True)
    with pytest.raises(CatalogError, match="column 'weight' has shape \\(6, 5\\), expected "
                       "\\(N, S\\) = \\(6, 8\\)"):
        read_posteriors(tmp_path / "w.fits")


def test_wide_failed_rows_and_field_argument(truth, tmp_path):
    cat = small(truth)
    t = wide_table(cat)
    t.remove_column("field")
    for c in ("log_mass", "log_sfr"):
        t[c][[0, 5]] = np.nan
    t["z"][0] = np.nan  # a failed photo-z fit; row 5 kept its (fixed) z
    t["z"][5] = 1.1
    t.write(tmp_path / "w.parquet")
    got = read_posteriors(tmp_path / "w.parquet", field="UDS")
    assert got.meta["read_report"]["failed_ids"] == [cat.ids[0], cat.ids[5]]
    assert set(got.fields) == {"UDS"} and got.n_galaxies == 4


def test_samples_outside_the_support_are_kept(truth, tmp_path):
    cat = small(truth)
    t = wide_table(cat)
    t["z"][2, 0] = 13.5
    t.write(tmp_path / "w.fits")
    assert read_posteriors(tmp_path / "w.fits").z.max() == 13.5


# --------------------------------------------------------------------- files and paths
def test_hdf5_paths_wrong_and_ambiguous_list_the_datasets(files, tmp_path):
    with pytest.raises(CatalogFileError, match="nothing at path 'catalog'.*'results/posterior'"):
        read_posteriors(files["long-h5"], hdf5_path="catalog")
    t = Table({"id": ["a"], "field": ["F"], "log_mass": [10.0], "z": [1.0]})
    t.write(tmp_path / "two.h5", path="a")
    t.write(tmp_path / "two.h5", path="b", append=True)
    with pytest.raises(CatalogFileError, match="several table datasets \\('a', 'b'\\).*--hdf5"):
        read_posteriors(tmp_path / "two.h5")
    assert read_posteriors(tmp_path / "two.h5", hdf5_path="b").ids.tolist() == ["a"]


def test_a_missing_file_is_one_line_naming_it(tmp_path):
    with pytest.raises(CatalogFileNotFoundError) as exc:
        read_posteriors(tmp_path / "nope.h5", format="chains")
    assert str(exc.value) == f"catalogue file {str(tmp_path / 'nope.h5')!r} does not exist"


def test_a_truncated_file_is_a_file_error_naming_it(truth, tmp_path):
    path = write_chains(tmp_path / "c.h5", small(truth))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CatalogFileError, match="c.h5"):
        read_posteriors(path)


def test_parse_columns():
    assert parse_columns("log_mass=LOGM, z=ZRED,log_sfr=LOGSFR") == {
        "log_mass": "LOGM", "z": "ZRED", "log_sfr": "LOGSFR"}
    assert parse_columns(None) == {} and parse_columns("") == {}
    with pytest.raises(CatalogError, match="item 'log_mass' is not NAME=COLUMN"):
        parse_columns("log_mass,z=ZRED")
    with pytest.raises(CatalogError, match="'mass', not a popmodel name; use one of id, field"):
        parse_columns("mass=LOGM")
    with pytest.raises(CatalogError, match="gives 'z' twice"):
        parse_columns("z=A,z=B")
    with pytest.raises(CatalogError, match="empty item"):
        parse_columns("z=A,,log_mass=B")


# --------------------------------------------------------------------- Prospector
def test_collate_prospector_v1_and_v2_layouts(tmp_path):
    rng = np.random.default_rng(2)
    labels = ["logmass", "logsfr_ratios_1", "logsfr_ratios_2", "zred"]
    # v1, dynesty: unstructured chain, normalised weights, JSON theta_labels on 'sampling'
    a = rng.normal(size=(50, 4))
    with h5py.File(tmp_path / "objA.h5", "w") as f:
        g = f.create_group("sampling")
        g["chain"], g["weights"], g["lnprobability"] = a, np.full(50, 0.02), rng.normal(size=50)
        g.attrs["theta_labels"] = json.dumps(labels)
    # v1, emcee: (walkers, iterations, params), no weights
    b = rng.normal(size=(4, 10, 4))
    with h5py.File(tmp_path / "objB.h5", "w") as f:
        g = f.create_group("sampling")
        g["chain"], g["lnprobability"] = b, rng.normal(size=(4, 10))
        g.attrs["theta_labels"] = json.dumps(labels)
    # v2: structured chain, one field per parameter (a vector parameter as a sub-array)
    dt = np.dtype([("logmass", "f8", (1,)), ("logsfr_ratios", "f8", (2,)), ("zred", "f8", (1,))])
    c = np.zeros(30, dtype=dt)
    cvals = rng.normal(size=(30, 4))
    c["logmass"], c["logsfr_ratios"], c["zred"] = cvals[:, :1], cvals[:, 1:3], cvals[:, 3:]
    with h5py.File(tmp_path / "objC.h5", "w") as f:
        g = f.create_group("sampling")
        g["chain"], g["weights"] = c, np.full(30, 1 / 30)
    paths = [tmp_path / f"obj{k}.h5" for k in "ABC"]
    info = collate_prospector(paths, tmp_path / "chains.h5", field="COSMOS")
    assert info["n_samples"] == 50 and info["theta_labels"] == labels
    with h5py.File(tmp_path / "chains.h5", "r") as f:
        assert f["chains"].shape == (3, 50, 4)
        np.testing.assert_array_equal(f["weights"][1, 40:], 0.0)
    got = read_posteriors(tmp_path / "chains.h5")
    assert got.ids.tolist() == ["objA", "objB", "objC"] and list(got.n_samples) == [50, 40, 30]
    np.testing.assert_array_equal(got.log_mass, np.concatenate([a[:, 0], b.reshape(-1, 4)[:, 0],
                                                                cvals[:, 0]]))
    np.testing.assert_array_equal(got.z[90:], cvals[:, 3])
    with h5py.File(tmp_path / "objB.h5", "r+") as f:
        f["sampling"].attrs["theta_labels"] = json.dumps(["logmass", "x", "y", "zred"])
    with pytest.raises(CatalogError, match="objB.h5.*has labels"):
        collate_prospector(paths, tmp_path / "c2.h5")
    with pytest.raises(CatalogFileNotFoundError, match="nope.h5"):
        collate_prospector([tmp_path / "nope.h5"], tmp_path / "c3.h5")


# --------------------------------------------------------------------- qp
def test_qp_ensemble_of_redshift_pdfs(tmp_path):
    qp = pytest.importorskip("qp")
    if not hasattr(qp, "Ensemble"):
        pytest.skip("the module named qp is not qp-prob")
    from scipy import stats
    from scipy.special import ndtri

    from popmodel.cosmology import cosmology_from_config

    loc, scale = np.array([0.6, 1.3, 2.2, 1.0]), np.array([0.05, 0.1, 0.2, 0.1])
    ens = qp.Ensemble(qp.stats.norm, data={"loc": loc[:, None], "scale": scale[:, None]})
    ens.set_ancil({"id": np.array([11, 12, 13, 14]),
                   "log_mass": np.array([9.8, 10.4, 11.0, np.nan])})  # 14: a failed SED fit
    ens.write_to(str(tmp_path / "pz.hdf5"))
    assert detect_format(tmp_path / "pz.hdf5") == "qp"
    got = read_posteriors(tmp_path / "pz.hdf5", field="F0", mass_error_dex=0.15)
    assert got.meta["read_report"]["failed_ids"] == ["14"]
    loc, scale = loc[:3], scale[:3]
    q = (np.arange(32) + 0.5) / 32
    z = stats.norm.ppf(q[None, :], loc[:, None], scale[:, None])
    np.testing.assert_allclose(got.z.reshape(3, 32), z, rtol=1e-6)
    dl = cosmology_from_config("WMAP9").luminosity_distance
    shift = 2 * np.log10(dl(z).value / dl(loc[:, None]).value)
    resid = (got.log_mass.reshape(3, 32) - np.array([9.8, 10.4, 11.0])[:, None] - shift) / 0.15
    np.testing.assert_allclose(np.sort(resid, axis=1), np.broadcast_to(ndtri(q), (3, 32)),
                               atol=1e-6)
    assert abs(np.corrcoef(resid[0], q)[0, 1]) < 0.3  # mass errors not tied to the z quantile
    assert got.ids.tolist() == ["11", "12", "13"]
    np.testing.assert_allclose(got.obs_z, loc, rtol=1e-6)
    with pytest.raises(CatalogError, match="no field column"):
        read_posteriors(tmp_path / "pz.hdf5")


# --------------------------------------------------------------------- command line
def test_fit_smf_accepts_a_chains_file_without_format_flags(truth, survey, tmp_path,
                                                            monkeypatch, capsys):
    """fit-smf on a chains file with a field dataset and no reading options (a stand-in fit:
    the catalogue it is handed is checked, no sampling)."""
    from types import SimpleNamespace

    import popmodel.io.smf
    import popmodel.smf.fit
    from popmodel.cli import main

    seen = []
    fake = SimpleNamespace(config=SimpleNamespace(method="laplace"), diagnostics={})
    monkeypatch.setattr(popmodel.smf.fit, "fit_smf", lambda cat, *a, **k: seen.append(cat) or fake)
    monkeypatch.setattr(popmodel.io.smf, "write_smf_results", lambda *a, **k: {"x": []})
    survey.write(tmp_path / "s.toml")
    chains = write_chains(tmp_path / "chains.h5", truth)
    argv = ["fit-smf", str(chains), "--survey", str(tmp_path / "s.toml"), "--no-figures"]
    assert main([*argv, "--out", str(tmp_path / "r")]) == 0
    assert seen[0].n_galaxies == truth.n_galaxies
    assert seen[0].meta["read_report"]["format"] == "chains"
    bad = write_chains(tmp_path / "bad.h5", truth, labels=["mass", "zred", "logsfr"])
    capsys.readouterr()
    assert main(["fit-smf", str(bad), "--survey", str(tmp_path / "s.toml"), "--out",
                 str(tmp_path / "r2"), "--columns", "log_mass=mass"]) == 0
    assert main(["fit-smf", str(bad), "--survey", str(tmp_path / "s.toml"), "--out",
                 str(tmp_path / "r3")]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(err) == 1 and "'logmass'" in err[0] and "bad.h5" in err[0], err
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--out", str(tmp_path / "r4"), "--columns", "mass=LOGM"])
    assert exc.value.code == 2


@pytest.mark.parametrize("ext", [".h5", ".fits", ".parquet", ".ecsv"])
def test_files_written_by_posterior_catalog_write_read_the_same(truth, tmp_path, ext):
    """Compatibility: what fit-smf read before (PosteriorCatalog.read) it reads now."""
    from popmodel.catalog import PosteriorCatalog

    cat = dataclasses.replace(small(truth), meta={"survey": "mock", "n": 3})
    cat.write(tmp_path / f"c{ext}")
    old = PosteriorCatalog.read(tmp_path / f"c{ext}")
    new = read_posteriors(tmp_path / f"c{ext}")
    assert new.meta["read_report"]["format"] == "long"
    assert {k: v for k, v in new.meta.items() if k != "read_report"} == old.meta
    for name in ("ids", "fields", "offsets", "log_mass", "z", "log_sfr", "log_prior", "weight",
                 "obs_log_mass", "obs_z"):
        np.testing.assert_array_equal(getattr(new, name), getattr(old, name))


def test_fit_log_says_that_failed_fits_change_the_completeness():
    """The read report of a file with failed SED fits reaches the fit's log as a warning."""
    from popmodel.mock import draw_mock
    from popmodel.smf.fit import FitConfig, fit_smf
    from popmodel.testing import deep_survey

    survey = deep_survey(1, 10.0, mass_error_dex=0.2, z_error=0.0)
    cat, _ = draw_mock(survey, seed=2, n_samples=8)
    cat.meta["read_report"] = {"format": "chains", "n_rows": cat.n_galaxies + 1, "n_failed": 1,
                               "failed_ids": ["broken"], "note": "changes the effective completeness"}
    lines = []
    fit_smf(cat, survey, FitConfig(method="laplace", n_bootstrap=0, compression_draws=0,
                                   num_samples=10, progress_bar=False), log=lines.append)
    warned = [line for line in lines if "excluded" in line]
    assert warned and warned[0].startswith("WARNING:") and "broken" in warned[0]
    assert "effective completeness" in warned[0]
