"""The command line end to end on a tiny mock, and the JAX | torch import boundary."""

import json
import subprocess
import sys

import numpy as np
import pytest
from astropy.table import Table

from popmodel.cli import main
from popmodel.smf.evolution import parameter_names


@pytest.fixture(scope="module")
def survey_file(tmp_path_factory):
    from popmodel.testing import deep_survey

    path = tmp_path_factory.mktemp("cli") / "survey.toml"
    deep_survey(1, 30.0, mass_error_dex=(0.1, 0.2)).write(path)
    return path


def test_mock_then_fit_smf_writes_the_contract_files(survey_file, tmp_path):
    cat = tmp_path / "mock.h5"
    assert main(["mock", "--survey", str(survey_file), "--out", str(cat), "--seed", "4",
                 "--n-samples", "8"]) == 0
    out = tmp_path / "res"
    assert main(["fit-smf", str(cat), "--survey", str(survey_file), "--out", str(out),
                 "--method", "laplace", "--samples", "200", "--bootstrap", "2",
                 "--no-progress"]) == 0
    par = Table.read(out / "smf_parameters.ecsv")
    assert list(par["name"]) == parameter_names()
    assert np.all(par["p16"] < par["p50"]) and np.all(par["p50"] < par["p84"])
    for key in ("popmodel_version", "config", "seeds", "cosmology", "imf"):
        assert key in par.meta
    assert par.meta["imf"] == "Chabrier2003"
    # the default representation and its check are recorded with the results
    assert par.meta["config"]["posterior"] == "auto"
    chk = par.meta["compression_check"]
    assert chk["n_draws"] == 200 and chk["n_compressed"] > 0
    assert chk["ok"] == (chk["sd_difference"] < 0.1 or chk["sd_difference"] < chk["sd_samples_noise"])
    rho = Table.read(out / "rho_star.ecsv")
    assert {"z", "log_rho_star_p16", "log_rho_star_p50", "log_rho_star_p84"} <= set(rho.colnames)
    # the Leja+20 truth lies inside a generous band at z = 1
    k = int(np.argmin(np.abs(rho["z"] - 1.0)))
    lo, hi = (float(np.asarray(rho[c])[k]) for c in ("log_rho_star_p16", "log_rho_star_p84"))
    assert lo - 0.3 < 8.304 < hi + 0.3
    import arviz as az

    idata = az.from_netcdf(out / "smf_posterior.nc")
    assert set(parameter_names()) <= set(idata.posterior.data_vars)
    assert json.loads(idata.posterior.attrs["config"])["method"] == "laplace"
    for fig in ("smf.png", "rho_star.png", "corner.png", "smf.pdf", "ppc_counts.png", "vmax_smf.png"):
        assert (out / fig).stat().st_size > 1000
    # model checks (popmodel.smf.checks) come with every fit
    ppc = Table.read(out / "ppc_counts.ecsv")
    vm = Table.read(out / "vmax_smf.ecsv")
    summary = json.loads((out / "summary.json").read_text())
    n_obs = int(ppc["observed"].sum())
    n_used = summary["selection_report"]["n_used"]
    assert 0.97 * n_used <= n_obs <= n_used  # all fitted galaxies below 10^12 Msun are binned
    assert int(vm["n_galaxies"].sum()) == n_obs
    # the fitted model predicts about the total it was fitted to. At the MAP the expected total
    # is N exactly (1074.3 vs 1074 here); the mean over these Laplace draws is ~10% higher
    # (a broad Gaussian in the faint-end parameters, exponentiated), so 15% is the tolerance:
    # a wrong area or volume factor still fails it.
    assert abs(ppc["predicted_mean"].sum() - n_obs) < 0.15 * n_obs
    chk = summary["model_checks"]
    print(f"model checks: {n_obs} of {n_used} galaxies binned, predicted "
          f"{ppc['predicted_mean'].sum():.1f}; 95% coverage {chk['coverage']:.3f} of {chk['n_scored']} bins")
    assert chk["level"] == 0.95 and chk["n_scored"] == int(ppc["scored"].sum()) >= 10
    assert chk["coverage"] == pytest.approx(ppc["covered"][ppc["scored"]].mean())
    assert chk["coverage"] >= 0.75
    assert ppc.meta["imf"] == "Chabrier2003" and vm.meta["popmodel_version"] == par.meta["popmodel_version"]
    complete = vm["complete"] & (vm["n_galaxies"] > 0)
    assert np.all(np.isfinite(vm["log_phi"][complete]))
    assert np.all((vm["log_phi"][complete] > -6) & (vm["log_phi"][complete] < -1))


def test_catalog_from_percentiles_cli(tmp_path):
    t = Table({"id": ["a", "b", "c"], "field": ["F0"] * 3, "z": [1.0, 1.5, 0.8],
               "z_p16": [0.9, -1.0, 0.85], "z_p84": [1.1, -1.0, 0.95], "log_mass": [10.0, 10.5, 9.8]})
    t.write(tmp_path / "pct.ecsv")
    out = tmp_path / "cat.parquet"
    assert main(["catalog-from-percentiles", str(tmp_path / "pct.ecsv"), "--out", str(out),
                 "--mass-error-dex", "0.1", "--n-samples", "50"]) == 0
    from popmodel.catalog import PosteriorCatalog

    cat = PosteriorCatalog.read(out)
    assert cat.n_galaxies == 3 and np.all(cat.n_samples == 50)
    zb = cat.z[cat.offsets[1]:cat.offsets[2]]
    assert np.all(zb == 1.5)  # spectroscopic (percentiles -1): exact
    assert "assumed mass uncertainty" in json.dumps(cat.meta)


@pytest.mark.parametrize(
    "module, banned",
    [("popmodel.smf.fit", "torch"), ("popmodel.catalog", "jax"), ("popmodel.catalog", "torch"),
     ("popmodel.survey", "jax"), ("popmodel.datasets", "jax"), ("popmodel.cli", "jax"),
     ("popmodel.cli", "torch")],
)
def test_framework_isolation(module, banned):
    code = (f"import sys, importlib; m = importlib.import_module({module!r}); "
            f"getattr(m, 'build_parser', lambda: None)(); "
            f"assert {banned!r} not in sys.modules, {banned!r}")
    subprocess.run([sys.executable, "-c", code], check=True)
