"""Bring-your-own posterior formats through the command line (slow tier).

One mock (Leja et al. 2020 medians, moment-matched Gaussian posteriors) is written, by code in
this file and not by popmodel's writers, as

* a collated chains file (HDF5; the parameters in a permuted order, with an extra one),
* a wide FITS table (one row per galaxy, vector columns),
* a long table at a non-default HDF5 path (beside an older version of it),
* a survey-style table of redshift and mass percentiles (``ID, FIELD, ZBEST, Z16, ...``),
  turned into a catalogue by ``popmodel catalog-from-percentiles`` with its column flags,

and each is read by ``popmodel fit-smf FILE --survey S.toml --out DIR`` with the default reader
flags (only the long table's HDF5 path is given). The chains file and the percentile catalogue
are fitted (slow tier) with ``--method laplace``: what is under test is the reader and the
representation each galaxy gets, which NUTS does not touch, and the default sampler is run
end to end through ``fit-smf`` with no flags by ``tests/test_interim_priors.py`` (it cost 800 s
per format here, on 2 cores). Every parameter and rho_*(z = 0.5, 1, 2) must lie within 4 sigma of the
truth, and ``summary.json`` must record how the file was read and which representation each
galaxy got. The wide and long tables hold the same samples as the chains file: read as
``fit-smf`` reads them (its parser and reader, default flags), they give bit-identical
likelihood data, hence the same fit under the same seed (default tier).
"""

import json
import time

import h5py
import numpy as np
import pytest
from astropy.table import Table
from scipy.special import ndtri

from popmodel.catalog import PosteriorCatalog
from popmodel.cli import main
from popmodel.io.smf import load_smf
from popmodel.mock import draw_mock
from popmodel.readers import read_posteriors
from popmodel.smf.derived import log10_rho_star
from popmodel.smf.evolution import leja2020_params
from popmodel.testing import deep_survey

TRUTH = leja2020_params()
TRUE = {k: float(v) for k, v in TRUTH.to_dict().items()}
Z_RHO = np.array([0.5, 1.0, 2.0])
#: Phi^-1(0.84): the 16th / 84th percentiles of a Gaussian are mean -/+ this many sd.
U68 = float(ndtri(0.84))
#: the fitting flags of the two fitted formats (see the module docstring)
LAPLACE = ("--method", "laplace")


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """The survey (and its TOML) and one moment-matched mock, as plain arrays: ``(N, S)``
    samples, and each galaxy's exact Gaussian posterior (the samples' mean and sd)."""
    survey = deep_survey(1, 60.0, mass_error_dex=(0.1, 0.2), z_error=0.01)
    cat, _ = draw_mock(survey, seed=11, n_samples=32, moment_matched=True)
    s = int(cat.n_samples[0])
    assert np.all(cat.n_samples == s)
    toml = tmp_path_factory.mktemp("byo_survey") / "survey.toml"
    survey.write(toml)
    m = cat.log_mass.reshape(-1, s)
    z = cat.z.reshape(-1, s)
    print(f"\nBYO mock: {cat.n_galaxies} galaxies x {s} samples")
    return {
        "toml": str(toml), "n": cat.n_galaxies, "s": s,
        "ids": np.asarray(cat.ids).astype(str), "fields": np.asarray(cat.fields).astype(str),
        "log_mass": m, "z": z,
        "log_mass_obs": np.asarray(cat.obs_log_mass, float),
        "z_obs": np.asarray(cat.obs_z, float),
        "m_mean": m.mean(axis=1), "m_sd": m.std(axis=1),
        "z_mean": z.mean(axis=1), "z_sd": z.std(axis=1),
    }


def _z_scores(out) -> tuple[dict, np.ndarray]:
    res = load_smf(out)
    samples = res.posterior.flat()
    z = {n: float((np.mean(samples[n]) - TRUE[n]) / np.std(samples[n])) for n in TRUE}
    lr = log10_rho_star(res.draws, Z_RHO)
    zr = (lr.mean(axis=0) - log10_rho_star(TRUTH, Z_RHO)) / lr.std(axis=0)
    return z, zr


def _fit(label: str, path, toml: str, out, *flags: str) -> dict:
    """``popmodel fit-smf PATH --survey TOML --out OUT [flags]``; the truth within 4 sigma.
    Returns summary.json."""
    t0 = time.perf_counter()
    rc = main(["fit-smf", str(path), "--survey", toml, "--out", str(out), *flags])
    wall = time.perf_counter() - t0
    assert rc == 0
    z, zr = _z_scores(out)
    print(f"\n[{label}] fit-smf {wall:.0f} s; z-scores",
          {k: round(v, 2) for k, v in z.items()}, "rho_*(0.5, 1, 2)", np.round(zr, 2))
    assert all(abs(v) < 4 for v in z.values()), z
    assert np.all(np.abs(zr) < 4), zr
    return json.loads((out / "summary.json").read_text())


def _check_read(summary: dict, fmt: str, n: int, label: str | None = None) -> dict:
    """The reader's report in catalog_provenance, and the representation counts in
    selection_report (every galaxy used has one)."""
    read = summary["catalog_provenance"]["read_report"]
    assert read["format"] == fmt, read
    assert read["n_rows"] == n and read["n_galaxies"] == n and read["n_failed"] == 0, read
    sel = summary["selection_report"]
    assert sel["n_input"] == n
    counts = sel["representation"]["counts"]
    assert sum(counts.values()) == sel["n_used"] > 0, (counts, sel["n_used"])
    print(f"[{label or fmt}] representation counts {counts} of {sel['n_used']} galaxies used")
    return counts


def _check_sample_representation(counts: dict, n_used: int) -> None:
    """Gaussian samples: no closed form, and most galaxies get a rule fitted to their samples
    (the skewness / kurtosis check of 32 moment-matched draws keeps some as samples: 357 of
    2,113 in a measured run)."""
    assert counts.get("analytic", 0) == 0, counts
    assert counts.get("gaussian", 0) >= 0.5 * n_used, counts


def _write_chains(mock, path) -> None:
    rng = np.random.default_rng(5)
    dust2 = rng.uniform(0.0, 2.0, mock["log_mass"].shape)
    with h5py.File(path, "w") as f:
        f.create_dataset("chains", data=np.stack([mock["z"], dust2, mock["log_mass"]], axis=-1))
        f.create_dataset("theta_labels", data=np.array([b"zred", b"dust2", b"logmass"]))
        f.create_dataset("objid", data=np.char.encode(mock["ids"], "ascii"))
        f.create_dataset("field", data=np.char.encode(mock["fields"], "ascii"))
        f.create_dataset("obs_log_mass", data=mock["log_mass_obs"])
        f.create_dataset("obs_z", data=mock["z_obs"])


def _cli_data(mock, path, *flags: str):
    """The likelihood data of ``popmodel fit-smf PATH --survey S --out X [flags]``: its own
    parser and catalogue reader, the fit's default preparation."""
    from popmodel.cli import build_parser
    from popmodel.cli.common import read_catalog
    from popmodel.smf.data import prepare_smf_data
    from popmodel.survey import Survey

    a = build_parser().parse_args(["fit-smf", str(path), "--survey", mock["toml"], "--out",
                                   "unused", *flags])
    cat = read_catalog(a)
    return cat, prepare_smf_data(cat, Survey.read(mock["toml"]), posterior="auto")


def _same_data(a, b) -> None:
    import jax

    for x, y in zip(jax.tree_util.tree_leaves(a.arrays), jax.tree_util.tree_leaves(b.arrays),
                    strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.fixture(scope="module")
def chains_data(mock, tmp_path_factory):
    path = tmp_path_factory.mktemp("chains") / "chains.h5"
    _write_chains(mock, path)
    return path, _cli_data(mock, path)[1]


# ----------------------------------------------------------------------------- chains
@pytest.mark.slow
def test_chains_file(mock, chains_data, tmp_path):
    """Collated chains, (N, S, 3) with labels ["zred", "dust2", "logmass"] (dust2 ignored),
    bytes labels and ids; detected without --format."""
    path = chains_data[0]
    summary = _fit("chains", path, mock["toml"], tmp_path / "fit", *LAPLACE)
    counts = _check_read(summary, "chains", mock["n"])
    _check_sample_representation(counts, summary["selection_report"]["n_used"])
    prov = summary["catalog_provenance"]
    assert prov["source_format"] == "chains"
    assert prov["label_map"] == {"log_mass": "logmass", "z": "zred"}


# ----------------------------------------------------------------------------- wide FITS
def test_wide_fits(mock, chains_data, tmp_path):
    """One row per galaxy: vector columns log_mass, z of shape (N, S); scalars id, field,
    log_mass_obs, z_obs. Read as fit-smf reads it: the chains file's likelihood data."""
    path = tmp_path / "wide.fits"
    t = Table()
    t["id"] = mock["ids"]
    t["field"] = mock["fields"]
    t["log_mass"] = mock["log_mass"]
    t["z"] = mock["z"]
    t["log_mass_obs"] = mock["log_mass_obs"]
    t["z_obs"] = mock["z_obs"]
    t.write(path, format="fits")
    cat, data = _cli_data(mock, path)
    assert cat.meta["read_report"]["format"] == "wide" and cat.n_galaxies == mock["n"]
    _same_data(data, chains_data[1])


# ----------------------------------------------------------------------------- long HDF5
def _long_rows(mock, galaxies: np.ndarray, dm: float = 0.0) -> np.ndarray:
    s = mock["s"]
    rows = np.zeros(galaxies.size * s, dtype=[
        ("id", "S16"), ("field", "S16"), ("log_mass", "f8"), ("z", "f8"),
        ("log_mass_obs", "f8"), ("z_obs", "f8")])
    rows["id"] = np.repeat(np.char.encode(mock["ids"][galaxies], "ascii"), s)
    rows["field"] = np.repeat(np.char.encode(mock["fields"][galaxies], "ascii"), s)
    rows["log_mass"] = mock["log_mass"][galaxies].ravel() + dm
    rows["z"] = mock["z"][galaxies].ravel()
    rows["log_mass_obs"] = np.repeat(mock["log_mass_obs"][galaxies] + dm, s)
    rows["z_obs"] = np.repeat(mock["z_obs"][galaxies], s)
    return rows


def test_long_table_at_a_non_default_hdf5_path(mock, chains_data, tmp_path, capsys):
    """A long table at "posteriors/v1" beside an older version "posteriors/v0": fit-smf
    without --hdf5-path refuses in one line naming both; with it, the chains file's
    likelihood data. A file holding only "posteriors/v1" is found without the flag."""
    path = tmp_path / "long.h5"
    every = np.arange(mock["n"])
    with h5py.File(path, "w") as f:
        f.create_dataset("posteriors/v0", data=_long_rows(mock, every[:200], dm=0.3))
        f.create_dataset("posteriors/v1", data=_long_rows(mock, every))
        f["posteriors"].attrs["note"] = "v0 superseded by v1"
    rc = main(["fit-smf", str(path), "--survey", mock["toml"], "--out", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "posteriors/v0" in err and "posteriors/v1" in err and "--hdf5-path" in err, err
    assert "Traceback" not in err

    alone = tmp_path / "long_alone.h5"
    with h5py.File(alone, "w") as f:
        f.create_dataset("posteriors/v1", data=_long_rows(mock, every))
    found = read_posteriors(alone)
    assert found.meta["read_report"]["format"] == "long"
    assert found.n_galaxies == mock["n"]
    np.testing.assert_array_equal(found.log_mass, mock["log_mass"].ravel())

    cat, data = _cli_data(mock, path, "--hdf5-path", "posteriors/v1")
    assert cat.meta["read_report"]["format"] == "long" and cat.n_galaxies == mock["n"]
    _same_data(data, chains_data[1])


# ----------------------------------------------------------------------------- percentiles
@pytest.mark.slow
def test_percentile_columns(mock, tmp_path, capsys):
    """A survey-style table of the mock's exact Gaussian posteriors as percentiles (16th and
    84th = mean -/+ Phi^-1(0.84) sd, of redshift and of mass), made into a catalogue by
    `popmodel catalog-from-percentiles` with its column flags, then fitted with no flags: the
    catalogue carries analytic posteriors, every galaxy is integrated by its rule, and the
    rules' quadrature error is small."""
    table = tmp_path / "survey_catalogue.fits"
    t = Table()
    t["ID"] = np.arange(mock["n"], dtype=np.int64) + 10001
    t["FIELD"] = mock["fields"]
    t["ZBEST"] = mock["z_mean"]
    t["Z16"] = mock["z_mean"] - U68 * mock["z_sd"]
    t["Z84"] = mock["z_mean"] + U68 * mock["z_sd"]
    t["LMASS"] = mock["m_mean"]
    t["LMASS16"] = mock["m_mean"] - U68 * mock["m_sd"]
    t["LMASS84"] = mock["m_mean"] + U68 * mock["m_sd"]
    t.write(table, format="fits")
    cat_path = tmp_path / "from_percentiles.h5"
    t0 = time.perf_counter()
    rc = main(["catalog-from-percentiles", str(table), "--out", str(cat_path),
               "--col-id", "ID", "--col-field", "FIELD", "--col-z", "ZBEST",
               "--col-z-p16", "Z16", "--col-z-p84", "Z84", "--col-log-mass", "LMASS",
               "--col-log-mass-p16", "LMASS16", "--col-log-mass-p84", "LMASS84"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    report = json.loads(out.strip().splitlines()[-1])
    print(f"\n[percentiles] catalog-from-percentiles {time.perf_counter() - t0:.0f} s: "
          f"{report['mass_error_source']}, {report['n_mass_sigma_floored']} floored, "
          f"{report['n_exact_z']} exact z")
    assert report["n_galaxies"] == mock["n"]
    assert report["mass_error_source"] == "percentiles"
    assert report["n_median_outside_68"] == 0 and report["n_exact_z"] == 0

    cat = PosteriorCatalog.read(cat_path)
    assert cat.analytic is not None and cat.analytic.n_galaxies == mock["n"]
    np.testing.assert_allclose(cat.analytic.z_median, mock["z_mean"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(cat.analytic.log_mass_ref, mock["m_mean"], rtol=0, atol=1e-12)

    summary = _fit("percentiles", cat_path, mock["toml"], tmp_path / "fit", *LAPLACE)
    counts = _check_read(summary, "long", mock["n"], "percentiles")
    n_used = summary["selection_report"]["n_used"]
    assert counts.get("analytic", 0) == n_used, counts
    quad = summary["quadrature_error"]
    print(f"[percentiles] quadrature error: sd_log_l {quad.get('sd_log_l')}, "
          f"MAP shift {quad.get('map_shift_sigma')} sigma")
    assert quad["n_rule_galaxies"] == n_used
    assert quad["sd_log_l"] is not None and quad["sd_log_l"] < 0.1, quad
