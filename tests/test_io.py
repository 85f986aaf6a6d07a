"""Result formats: popmodel.load on every folder the commands write, the results API against
independent evaluations of the stored draws, ArviZ/corner on the posterior file, units."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import astropy.units as u
import h5py
import numpy as np
import pytest
from astropy.table import Table
from scipy.special import gammainc, gammaln

import popmodel
from popmodel.errors import InputError
from popmodel.io.census import load_census
from popmodel.io.smf import read_smf_posterior, write_smf_results
from popmodel.smf.fit import FitConfig, fit_smf

LN10 = np.log(10.0)


# ---------------------------------------------------------------------------------- fixtures


def _tiny_survey():
    from popmodel.survey import Field, Survey
    from popmodel.testing import LEJA_COMPLETENESS_3DHST

    cz, cm = LEJA_COMPLETENESS_3DHST
    # side lengths give the field density terms (cosmic variance) in 0.5-wide slices
    f = Field("A", 8 * u.arcmin**2, 0.65, 2.5, cz, cm, mass_error_dex=0.15, z_error=0.02,
              side_arcmin=(2.0, 4.0))
    return Survey([f], cosmology="WMAP9", name="tiny")


@pytest.fixture(scope="module")
def fits() -> tuple[object, object]:
    """A tiny NUTS fit with density terms (one field with side lengths), and the Laplace fit
    of the same data (the Laplace draws of the same MAP, as fit_smf(method="laplace") makes
    them), so that one MAP serves both."""
    import dataclasses

    from popmodel.mock import draw_mock
    from popmodel.smf.fit import _laplace_draws

    survey = _tiny_survey()
    cat, _ = draw_mock(survey, seed=1, n_samples=8)
    nuts = fit_smf(cat, survey, FitConfig(method="nuts", num_warmup=50, num_samples=50,
                                          num_chains=2, n_bootstrap=0, posterior="samples",
                                          compression_draws=0, progress_bar=False),
                   log=lambda s: None)
    cfg = dataclasses.replace(nuts.config, method="laplace", num_samples=100)
    samples = _laplace_draws(nuts.map, nuts.prior, nuts.data, cfg)
    n = {k: float(v.size) for k, v in samples.items()}
    diag = {"r_hat": {k: float("nan") for k in samples}, "ess_bulk": n, "divergences": 0,
            "ok": True, "plain_words": ["Laplace draws"]}
    laplace = dataclasses.replace(nuts, config=cfg, samples=samples, mcmc=None, diagnostics=diag)
    return nuts, laplace


@pytest.fixture(scope="module")
def root(tmp_path_factory, fits) -> Path:
    """A run-3dhst-like root: smf/ (Laplace, with an input file and its checksum), sfs/ and
    census/ (popmodel's smoke builder)."""
    from popmodel.cli.figures import build_smoke_results

    root = tmp_path_factory.mktemp("root")
    cat_path = root.parent / "root_catalog.ecsv"
    fits[1].data.catalog.write(cat_path)
    write_smf_results(fits[1], root / "smf", extra_meta={"inputs": {"catalog": str(cat_path)}},
                      model_checks=False)
    build_smoke_results(root)  # sfs/ and census/ (smf/ is kept)
    return root


@pytest.fixture(scope="module")
def nuts(tmp_path_factory, fits) -> tuple[Path, object]:
    """The NUTS fit written with the model checks and the pointwise log-likelihood."""
    out = tmp_path_factory.mktemp("nuts")
    write_smf_results(fits[0], out, pointwise_log_likelihood=True)
    return out, fits[0]


def _idata(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        import arviz as az
    return az, az.from_netcdf(str(path))


# ------------------------------------------------------------------ independent evaluations


def _draws_from_file(nc: Path) -> dict[str, np.ndarray]:
    """The continuity parameters straight from the netCDF (h5py), chains concatenated."""
    with h5py.File(nc, "r") as f:
        g = f["posterior"]
        anchors = np.asarray(g["anchor_z"][...], float)
        out = {"anchor_z": anchors}
        for n in ("log_phi1", "log_phi2", "log_mstar"):
            out[n] = np.asarray(g[n][...], float).reshape(-1, anchors.size)
        for n in ("alpha1", "alpha2"):
            out[n] = np.asarray(g[n][...], float).reshape(-1)
    return out


def _at(d: dict, name: str, z: float) -> np.ndarray:
    """Quadratic (Lagrange) interpolation through the anchors, per draw."""
    za = d["anchor_z"]
    coef = [np.polyfit(za, row, za.size - 1) for row in d[name]]
    return np.array([np.polyval(c, z) for c in coef])


def _log10_phi(d: dict, log_m: float, z: float) -> np.ndarray:
    lp1, lp2, lms = (_at(d, n, z) for n in ("log_phi1", "log_phi2", "log_mstar"))
    x = 10.0 ** (log_m - lms)
    phi = LN10 * (10**lp1 * x ** (d["alpha1"] + 1) + 10**lp2 * x ** (d["alpha2"] + 1)) * np.exp(-x)
    return np.log10(phi)


def _log10_rho(d: dict, z: float, lo: float, hi: float) -> np.ndarray:
    lp1, lp2, lms = (_at(d, n, z) for n in ("log_phi1", "log_phi2", "log_mstar"))
    tot = 0.0
    for lp, a in ((lp1, d["alpha1"]), (lp2, d["alpha2"])):
        s = a + 2.0
        part = gammainc(s, 10.0 ** (hi - lms)) - gammainc(s, 10.0 ** (lo - lms))
        tot = tot + 10 ** (lp + lms) * np.exp(gammaln(s)) * part
    return np.log10(tot)


def _q(x: np.ndarray) -> np.ndarray:
    return np.percentile(x, [16, 50, 84], axis=0)


def _q_inf(x: np.ndarray) -> np.ndarray:
    """Percentiles per column; a column with -inf (a non-positive SFRD) by the inverted CDF."""
    out = np.empty((3, x.shape[1]))
    for k in range(x.shape[1]):
        fin = np.all(np.isfinite(x[:, k]))
        out[:, k] = np.percentile(x[:, k], [16, 50, 84], method="linear" if fin else "inverted_cdf")
    return out


# --------------------------------------------------------------------------------- tests


def test_import_is_light_and_exposes_the_api() -> None:
    code = ("import sys, popmodel; names = ['PosteriorCatalog', 'Survey', 'Field', 'fit_smf', "
            "'fit_sfs', 'load', 'draw_mock']; assert set(names) <= set(dir(popmodel)); "
            "heavy = [m for m in ('jax', 'torch', 'matplotlib', 'numpyro') if m in sys.modules]; "
            "assert not heavy, heavy; popmodel.load; popmodel.Survey; "
            "assert 'jax' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
    assert popmodel.load is popmodel.io.results.load


def test_load_every_folder(root: Path, nuts, tmp_path: Path) -> None:
    from popmodel.plots.figures import make_figures

    rs = popmodel.load(root)
    assert rs.smf is not None and rs.sfs is not None and rs.census is not None
    for step in ("smf", "sfs", "census"):
        one = popmodel.load(root / step)
        assert [s for s in ("smf", "sfs", "census") if getattr(one, s) is not None] == [step]
    assert popmodel.load(nuts[0]).smf.posterior.method == "nuts"
    from popmodel.census import CensusResult
    from popmodel.flow.fit import SFSFit
    from popmodel.smf.fit import SMFFit

    assert SMFFit.load(root / "smf").posterior.method == "laplace"
    assert len(SFSFit.load(root / "sfs").member_files) == 2
    assert CensusResult.load(root / "census").result.z.size == rs.census.z.size
    figs = make_figures(root, tmp_path / "figures", only=["sfrd"])
    got = popmodel.load(tmp_path / "figures")
    assert got.smf is got.sfs is got.census is None
    assert {p.name for p in got.figures} == {Path(p).name for p in figs["sfrd"]}
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no popmodel result"):
        popmodel.load(tmp_path / "empty")


@pytest.mark.parametrize("which", ["laplace", "nuts"])
def test_phi_and_rho_star_from_the_draws(root: Path, nuts, which: str) -> None:
    folder = root / "smf" if which == "laplace" else nuts[0]
    smf = popmodel.load(folder).smf
    d = _draws_from_file(folder / "smf_posterior.nc")
    # off the tables' grids
    m, z = np.array([9.37, 10.81, 11.13]), 1.234
    t = smf.phi(m, z)
    ref = _q(np.stack([_log10_phi(d, mm, z) for mm in m], axis=1))
    for k, c in enumerate(("log_phi_p16", "log_phi_p50", "log_phi_p84")):
        assert t[c].unit == u.dex(u.Mpc**-3)
        np.testing.assert_allclose(t[c].value, ref[k], rtol=0, atol=1e-10)
    np.testing.assert_array_equal(t["log_mass"].value, m)
    zs = np.array([0.333, 1.777, 2.61])
    r = smf.rho_star(zs, mass_range=(8.5, 12.5))
    ref = _q(np.stack([_log10_rho(d, zz, 8.5, 12.5) for zz in zs], axis=1))
    for k, c in enumerate(("log_rho_star_p16", "log_rho_star_p50", "log_rho_star_p84")):
        np.testing.assert_allclose(r[c].value, ref[k], rtol=0, atol=1e-10)
    # on the tables' grids: the tables' numbers
    tab = Table.read(folder / "smf_phi.ecsv")
    got = smf.phi(tab["log_mass"].value, tab["z"].value)
    for c in ("log_phi_p16", "log_phi_p50", "log_phi_p84"):
        np.testing.assert_allclose(got[c].value, tab[c].value, rtol=0, atol=1e-12)
    tab = Table.read(folder / "rho_star.ecsv")
    got = smf.rho_star(tab["z"].value)
    for c in ("log_rho_star_p16", "log_rho_star_p50", "log_rho_star_p84"):
        np.testing.assert_allclose(got[c].value, tab[c].value, rtol=0, atol=1e-12)


def test_rho_star_table_unchanged_from_the_fit_object(nuts) -> None:
    """The numbers derived from the draws are those of the fit object, computed independently."""
    out, fit = nuts
    flat = {k: np.asarray(v).reshape(-1) for k, v in fit.samples.items()}
    za = np.asarray(fit.prior.anchor_z)
    d = {"anchor_z": za, "alpha1": flat["alpha1"], "alpha2": flat["alpha2"]}
    for n in ("log_phi1", "log_phi2", "log_mstar"):
        d[n] = np.stack([flat[f"{n}_z{z:g}" if "." in f"{z:g}" else f"{n}_z{z:g}.0"] for z in za], -1)
    tab = Table.read(out / "rho_star.ecsv")
    ref = _q(np.stack([_log10_rho(d, zz, 8.0, 13.0) for zz in tab["z"]], axis=1))
    live = fit.rho_star(tab["z"].value)  # the labelled table of the fit object, unsaved
    zlo, zhi = fit.data.z_data_range
    np.testing.assert_array_equal(live["extrapolated"], (tab["z"] < zlo) | (tab["z"] > zhi))
    for k, c in enumerate(("log_rho_star_p16", "log_rho_star_p50", "log_rho_star_p84")):
        np.testing.assert_allclose(tab[c].value, ref[k], rtol=0, atol=1e-10)
        np.testing.assert_allclose(live[c].value, ref[k], rtol=0, atol=1e-10)
        assert live[c].unit == u.dex(u.Msun / u.Mpc**3)
    par = Table.read(out / "smf_parameters.ecsv")
    for row in par:
        np.testing.assert_allclose([row["p16"], row["p50"], row["p84"]], _q(flat[row["name"]]),
                                   rtol=0, atol=1e-12)


def test_ridge_from_the_flows(root: Path) -> None:
    from popmodel.flow.fit import load_flow
    from popmodel.flow.sfs import sequence_statistics

    sfs = popmodel.load(root / "sfs").sfs
    cfg = json.loads((root / "sfs" / "summary.json").read_text())["config"]
    m, z = np.array([9.9, 10.37, 10.8]), np.array([1.13, 1.13, 1.87])
    t = sfs.ridge(m, z)
    lo, hi, step = cfg["sfr_grid"]
    grid = np.arange(lo, hi + step / 2, step)
    flows = [load_flow(p) for p in sorted((root / "sfs" / "flows").glob("member_*.pt"))]
    dens = [f.conditional_log_density(m, z, grid) for f in flows]
    kw = {"doubling_cut": cfg["doubling_cut"], "ridge_smoothing": cfg["ridge_smoothing"],
          "cosmology": sfs.cosmology}
    ridges = np.stack([sequence_statistics(grid, lp, m, z, **kw).ridge for lp in dens])
    pooled = np.log(np.mean(np.exp(np.stack(dens)), axis=0))
    mid = sequence_statistics(grid, pooled, m, z, **kw).ridge
    from scipy.stats import t as student_t

    half = student_t.ppf(0.84, len(flows) - 1) * np.std(ridges, axis=0, ddof=1)
    assert t["ridge_p50"].unit == u.dex(u.Msun / u.yr)
    np.testing.assert_allclose(t["ridge_p16"].value, mid - half, atol=1e-10, rtol=0)
    np.testing.assert_allclose(t["ridge_p84"].value, mid + half, atol=1e-10, rtol=0)
    np.testing.assert_allclose(t["ridge_p50"].value, mid, atol=1e-10, rtol=0)
    tab = sfs.table
    got = sfs.ridge(np.asarray(tab["log_mass"]), np.asarray(tab["z"]))
    for c in ("ridge_p16", "ridge_p50", "ridge_p84"):
        np.testing.assert_allclose(got[c].value, np.asarray(tab[c]), atol=1e-10, rtol=0)


def test_sfrd_from_the_census_draws(root: Path) -> None:
    census = popmodel.load(root / "census").census
    with h5py.File(root / "census" / "census_draws.nc", "r") as f:
        zg = np.asarray(f["z"][...], float)
        draws = {k: np.asarray(f[k][...], float) for k in ("log_sfrd_from_rho", "log_sfrd_from_sfs",
                                                            "log_rho_star")}
    zs = np.array([0.55, 1.234, 2.71])
    for route, key in (("rho", "log_sfrd_from_rho"), ("sfs", "log_sfrd_from_sfs")):
        t = census.sfrd(zs, route=route)
        j = np.searchsorted(zg, zs) - 1
        w = (zs - zg[j]) / (zg[j + 1] - zg[j])
        with np.errstate(invalid="ignore"):  # -inf (a shrinking rho_*) stays -inf
            per = (1 - w) * draws[key][:, j] + w * draws[key][:, j + 1]
        ref = _q_inf(per)
        for k, c in enumerate(("log_sfrd_p16", "log_sfrd_p50", "log_sfrd_p84")):
            assert t[c].unit == u.dex(u.Msun / u.yr / u.Mpc**3)
            np.testing.assert_allclose(t[c].value, ref[k], rtol=0, atol=1e-10)
    tab = Table.read(root / "census" / "census.ecsv")
    for route, col in (("rho", "log_sfrd_from_rho"), ("sfs", "log_sfrd_from_sfs")):
        t = census.sfrd(tab["z"], route=route)
        for q in ("p16", "p50", "p84"):
            np.testing.assert_allclose(t[f"log_sfrd_{q}"].value, tab[f"{col}_{q}"].value, atol=1e-12)
    r = census.rho_star(tab["z"])
    np.testing.assert_allclose(r["log_rho_star_p50"].value, tab["log_rho_star_p50"].value, atol=1e-12)
    with pytest.raises(ValueError, match="route"):
        census.sfrd(1.0, route="magic")
    assert load_census(root / "census").smf_draws.alpha1.shape == (draws["log_rho_star"].shape[0],)


def test_posterior_file_for_arviz_and_corner(root: Path, nuts) -> None:
    import corner
    import matplotlib.pyplot as plt

    nc = nuts[0] / "smf_posterior.nc"
    az, idata = _idata(nc)
    post = idata.posterior
    assert "anchor_z" in post.coords and post["log_phi1"].dims == ("chain", "draw", "anchor_z")
    assert list(post["anchor_z"].values) == list(nuts[1].prior.anchor_z)
    assert post["delta"].dims == ("chain", "draw", "density_term")
    for c in ("field", "z_lo", "z_hi"):
        assert post[c].dims == ("density_term",)
    assert not any(str(v).endswith("_eta") for v in post.data_vars)
    assert "delta_eta" in idata["auxiliary"]
    assert post["log_mstar"].attrs["units"] == "dex(solMass)" and post["alpha1"].attrs["long_name"]
    assert post.attrs["config.method"] == "nuts" and post.attrs["result_schema_version"] >= 2
    assert post.attrs["inference_method"] == "nuts"
    for k in ("energy", "diverging", "tree_depth"):
        assert k in idata.sample_stats
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny chains: arviz warns about R-hat / ESS
        summ = az.summary(idata)
        assert "log_phi1[0.2]" in summ.index or any(i.startswith("log_phi1[") for i in summ.index)
        assert np.all(np.isfinite(az.bfmi(idata)))
        az.plot_trace(idata)
        loo = az.loo(idata)
    n_terms = idata.log_likelihood["smf"].shape[-1]
    assert loo.n_data_points == n_terms > nuts[1].data.catalog.n_galaxies
    # the pointwise terms add up to ln L at a draw
    from popmodel.smf.likelihood import log_likelihood

    fit = nuts[1]
    p = fit.draws()
    i = 7
    pi = type(p)(*(np.asarray(a)[i] for a in (p.log_phi1, p.log_phi2, p.log_mstar, p.alpha1,
                                                p.alpha2)), p.anchor_z)
    delta = np.array([np.asarray(fit.samples[t]).reshape(-1)[i] for t in fit.prior.density_terms])
    total = float(log_likelihood(pi, fit.data.arrays, delta=delta))
    ll = np.asarray(idata.log_likelihood["smf"]).reshape(-1, n_terms)[i]
    np.testing.assert_allclose(ll.sum(), total, rtol=1e-9)
    fig = corner.corner(idata)
    plt.close("all")
    assert fig is not None
    # Laplace: one chain, marked, no sample_stats
    az, lap = _idata(root / "smf" / "smf_posterior.nc")
    assert lap.posterior.sizes["chain"] == 1 and lap.posterior.sizes["draw"] == 200  # 2 x 100
    assert lap.posterior.attrs["inference_method"] == "laplace"
    assert "sample_stats" not in lap.groups()


def test_provenance_schema_and_checksums(root: Path) -> None:
    post = read_smf_posterior(root / "smf" / "smf_posterior.nc")
    rec = post.meta["input_files"][0]
    assert rec["path"].endswith("root_catalog.ecsv") and len(rec["sha256"]) == 64
    import hashlib

    assert rec["sha256"] == hashlib.sha256(Path(rec["path"]).read_bytes()).hexdigest()
    assert post.meta["config"]["method"] == "laplace" and isinstance(post.meta["priors"], dict)
    from popmodel.io.resultdir import SCHEMA_VERSION

    for path in root.rglob("*"):
        if path.suffix == ".ecsv":
            assert Table.read(path).meta["result_schema_version"] == SCHEMA_VERSION, path
        elif path.name.endswith(".json") and path.name != "training.json":
            text = path.read_text()
            assert "NaN" not in text and "Infinity" not in text, path
            assert json.loads(text).get("result_schema_version", json.loads(text).get("schema_version")) \
                == SCHEMA_VERSION, path
        elif path.suffix == ".nc":
            with h5py.File(path, "r") as f:
                attrs = f["posterior"].attrs if "posterior" in f else f.attrs
                assert int(np.ravel(attrs["result_schema_version"])[0]) == SCHEMA_VERSION, path


def test_every_ecsv_column_has_a_unit(root: Path, nuts) -> None:
    files = [*root.rglob("*.ecsv"), *nuts[0].rglob("*.ecsv")]
    names = {p.name for p in files}
    assert {"smf_parameters.ecsv", "rho_star.ecsv", "smf_phi.ecsv", "density_terms.ecsv",
            "ppc_counts.ecsv", "vmax_smf.ecsv", "sfs.ecsv", "eq10_fits.ecsv", "census.ecsv",
            "census_sf_q.ecsv"} <= names
    for path in files:
        t = Table.read(path)
        missing = [c for c in t.colnames if t[c].unit is None]
        assert not missing, f"{path.name}: no unit on {missing}"
    t = Table.read(root / "census" / "census.ecsv")
    assert t["log_sfrd_from_rho_p50"].unit == u.dex(u.Msun / u.yr / u.Mpc**3)


def test_previous_posterior_layout_is_still_read(tmp_path: Path) -> None:
    import arviz as az

    from popmodel.io.census import read_smf_draws
    from popmodel.smf.evolution import LEJA2020_MEDIAN

    post = {k: np.full((1, 5), v) for k, v in LEJA2020_MEDIAN.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        idata = az.from_dict(posterior=post)
    idata.posterior.attrs["data_z_range"] = json.dumps([0.5, 2.5])
    tmp_path.mkdir(exist_ok=True)
    idata.to_netcdf(str(tmp_path / "smf_posterior.nc"), engine="h5netcdf")
    draws, info = read_smf_draws(tmp_path)
    assert info["data_z_range"] == [0.5, 2.5] and draws.anchor_z == (0.2, 1.6, 3.0)
    np.testing.assert_allclose(np.asarray(draws.alpha2), LEJA2020_MEDIAN["alpha2"])
