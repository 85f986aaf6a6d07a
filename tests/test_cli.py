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
    assert {"log_phi1", "log_phi2", "log_mstar", "alpha1", "alpha2"} <= set(idata.posterior.data_vars)
    assert idata.posterior["log_phi1"].sizes["anchor_z"] == len(parameter_names()) // 3
    assert idata.posterior.attrs["config.method"] == "laplace"
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


# ---------------------------------------------------------------- a command line that behaves
def _subparsers(ap):
    import argparse

    for act in ap._actions:
        if isinstance(act, argparse._SubParsersAction):
            for name, p in act.choices.items():
                yield name, p
                yield from ((f"{name} {n}", q) for n, q in _subparsers(p))


def _all_parsers():
    from popmodel.cli import build_parser
    from popmodel.cli.distributed import build_parser as build_distributed

    out = []
    for prog, ap in (("popmodel", build_parser()), ("popmodel.cli.distributed", build_distributed())):
        out += [(prog, ap)] + [(f"{prog} {n}", p) for n, p in _subparsers(ap)]
    return out


def test_every_option_and_positional_has_help_and_states_its_default():
    """Each argument of each sub-command has help text; one that takes a value and is not
    required says its default (a flag's default is 'off')."""
    import argparse

    no_help, no_default = [], []
    for prog, p in _all_parsers():
        for act in p._actions:
            if isinstance(act, argparse._HelpAction | argparse._SubParsersAction):
                continue
            name = f"{prog} {'/'.join(act.option_strings) or act.dest}"
            if not (act.help or "").strip():
                no_help.append(name)
                continue
            flag = act.nargs == 0 or isinstance(act, argparse._CountAction)
            optional = (act.option_strings and not act.required) or act.nargs in ("?", "*")
            if optional and not flag and "default" not in act.help:
                no_default.append(f"{name} (default {act.default!r}): {act.help}")
    assert no_help == []
    assert no_default == []


RST = ("``", ":func:", ":mod:", ":class:", ":meth:", ":data:", ":attr:", ":math:", ":ref:",
       ".. ", "::\n")


def test_help_shows_no_restructuredtext_markup():
    """``popmodel --help`` and every sub-command's help are plain text (no ``code`` spans,
    roles or directives copied from docstrings)."""
    bad = []
    for prog, p in _all_parsers():
        text = p.format_help()
        bad += [f"{prog}: {m!r}" for m in RST if m in text]
    assert bad == []


def test_help_and_version_exit_0_without_a_traceback(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip()
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for cmd in ("fit-smf", "fit-3dhst", "mock", "catalog-from-percentiles", "survey-3dhst",
                "census", "fit-sfs", "figures", "run-3dhst"):
        assert cmd in text


@pytest.mark.parametrize("argv, path", [
    (["census", "--smf", "{tmp}/nope", "--out", "{tmp}/c"], "{tmp}/nope"),
    (["figures", "{tmp}/nope", "--out", "{tmp}/f"], "{tmp}/nope"),
    (["fit-sfs", "{tmp}/nope.h5", "--out", "{tmp}/s"], "{tmp}/nope.h5"),
    (["fit-smf", "{tmp}/nope.h5", "--survey", "{tmp}/nope.toml", "--out", "{tmp}/r"], "{tmp}/nope.h5"),
    (["mock", "--survey", "{tmp}/nope.toml", "--out", "{tmp}/m.h5"], "{tmp}/nope.toml"),
])
def test_a_missing_input_is_one_line_naming_it(tmp_path, capsys, argv, path):
    argv = [x.format(tmp=tmp_path) for x in argv]
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and err[0].startswith(f"popmodel {argv[0]}: error:"), err
    assert path.format(tmp=tmp_path) in err[0] and "does not exist" in err[0]


def test_messages_go_to_stderr_and_quiet_silences_them(survey_file, tmp_path, capsys, caplog):
    """Progress and notes are log records (stderr), not stdout; -q leaves warnings only; the
    logging set-up is undone when the command returns."""
    import logging

    out = tmp_path / "m.h5"
    assert main(["mock", "--survey", str(survey_file), "--out", str(out), "--n-samples", "2"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "mock:" in cap.err and "galaxies selected" in cap.err
    assert main(["-q", "mock", "--survey", str(survey_file), "--out", str(out), "--n-samples",
                 "2", "--overwrite"]) == 0
    cap = capsys.readouterr()
    assert cap.out == "" and "mock:" not in cap.err  # warnings (if any) only
    assert logging.getLogger("popmodel").level == logging.NOTSET
    assert not [h for h in logging.getLogger().handlers if h.get_name() == "popmodel-cli"]


def test_strict_failures_name_the_parameters():
    from popmodel.cli.smf import strict_failures

    diag = {"r_hat": {"alpha1": 1.002, "log_mstar_z0.2": 1.08, "alpha2": float("nan")},
            "ess_bulk": {"alpha1": 400.0, "log_mstar_z0.2": 35.0, "alpha2": 250.0},
            "divergences": 3, "ok": False}
    fails = strict_failures("nuts", diag)
    assert fails[0] == "R-hat >= 1.01 for log_mstar_z0.2 (1.080), alpha2 (nan)"
    assert fails[1] == "bulk ESS < 100 for log_mstar_z0.2 (35)"
    assert fails[2] == "3 divergent transitions"
    clean = {"r_hat": {"a": 1.001}, "ess_bulk": {"a": 900.0}, "divergences": 0, "ok": True}
    assert strict_failures("nuts", clean) == []
    assert strict_failures("laplace", diag) == []  # Laplace draws have no sampler diagnostics
    more = {**clean, "ess_tail": {"a": 60.0}, "e_bfmi": [0.8, 0.21], "tree_depth_saturated": 4}
    assert strict_failures("nuts", more) == [
        "tail ESS < 100 for a (60)", "E-BFMI <= 0.3 for chain 1 (0.21)",
        "4 transitions at the maximum tree depth"]


def test_ess_bar_is_100_per_chain_for_the_fit_and_strict():
    """Independent normal draws: 4 chains x 80 (bulk ESS about 320) fall short of the 400 that
    4 chains need (Vehtari et al. 2021), 4 x 1000 meet it; --strict applies the fit's own bar."""
    from popmodel.cli.smf import strict_failures
    from popmodel.smf.fit import _plain_diagnostics

    rng = np.random.default_rng(3)
    short = _plain_diagnostics({"a": rng.normal(size=(4, 80))}, 0, 320)
    assert short["ess_required"] == 400 and not short["ok"]
    assert 200 < short["ess_bulk"]["a"] < 400
    assert any("FEWER THAN 400 (100 per chain)" in w for w in short["plain_words"])
    assert any(f.startswith("bulk ESS < 400 for a") for f in strict_failures("nuts", short))
    long = _plain_diagnostics({"a": rng.normal(size=(4, 1000))}, 0, 4000)
    assert long["ok"] and long["ess_bulk"]["a"] > 400 and strict_failures("nuts", long) == []
    one = _plain_diagnostics({"a": rng.normal(size=(1, 150))}, 0, 150)
    assert one["ess_required"] == 100


def test_sampler_stats_e_bfmi_against_its_definition():
    """E-BFMI per chain = sum (E_n - E_{n-1})^2 / sum (E_n - mean E)^2 (Betancourt 2016), and
    transitions of 2^10 - 1 leapfrog steps count as saturated."""
    from popmodel.smf.fit import _sampler_stats

    rng = np.random.default_rng(0)
    energy = np.cumsum(rng.normal(size=(2, 300)), axis=1)  # a random walk: low E-BFMI
    steps = np.array([[3, 1023, 7], [1023, 1023, 15]])
    got = _sampler_stats({"energy": energy, "num_steps": steps}, 2)
    want = [np.sum(np.diff(e) ** 2) / np.sum((e - e.mean()) ** 2) for e in energy]
    np.testing.assert_allclose(got["e_bfmi"], want, rtol=1e-10)
    assert max(got["e_bfmi"]) < 0.3 and got["tree_depth_saturated"] == 3


def test_strict_wiring_exit_1_with_strict_0_without(survey_file, tmp_path, capsys, monkeypatch):
    """fit-smf with a fit whose diagnostics are not clean (a stand-in fit, no sampling): status
    1 and one error line with --strict, status 0 without; the results are written either way."""
    from types import SimpleNamespace

    import popmodel.io.smf
    import popmodel.smf.fit

    diag = {"r_hat": {"alpha1": 1.2}, "ess_bulk": {"alpha1": 12.0}, "divergences": 0, "ok": False}
    fake = SimpleNamespace(config=SimpleNamespace(method="nuts"), diagnostics=diag)
    written = []
    monkeypatch.setattr(popmodel.smf.fit, "fit_smf", lambda *a, **k: fake)
    monkeypatch.setattr(popmodel.io.smf, "write_smf_results",
                        lambda fit, out, **k: written.append(out) or {"posterior": [str(out)]})
    cat = tmp_path / "m.h5"
    assert main(["mock", "--survey", str(survey_file), "--out", str(cat), "--n-samples", "2"]) == 0
    fit = ["fit-smf", str(cat), "--survey", str(survey_file), "--no-figures"]
    capsys.readouterr()
    assert main([*fit, "--out", str(tmp_path / "a"), "--strict"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert err == [("popmodel fit-smf: error: sampler diagnostics are not clean (--strict): "
                    "R-hat >= 1.01 for alpha1 (1.200); bulk ESS < 100 for alpha1 (12); the "
                    f"results are in {tmp_path / 'a'}")]
    assert main([*fit, "--out", str(tmp_path / "b")]) == 0
    assert written == [str(tmp_path / "a"), str(tmp_path / "b")]


@pytest.mark.slow
def test_strict_exits_1_when_the_sampler_diagnostics_fail(tmp_path, capsys):
    """A deliberately short NUTS run (10 draws, one chain) with --strict: status 1, one error
    line naming the parameters, the results written (without --strict the same warning is
    logged and the status is 0: the check runs only under ``a.strict``)."""
    from popmodel.testing import deep_survey

    survey = tmp_path / "s.toml"
    deep_survey(1, 3.0, mass_error_dex=0.1).write(survey)
    cat = tmp_path / "m.h5"
    assert main(["mock", "--survey", str(survey), "--out", str(cat), "--n-samples", "4"]) == 0
    fit = ["fit-smf", str(cat), "--survey", str(survey), "--warmup", "10", "--samples", "10",
           "--chains", "1", "--bootstrap", "0", "--no-figures", "--no-progress",
           "--no-cosmic-variance", "--posterior", "samples"]
    capsys.readouterr()
    assert main([*fit, "--strict", "--out", str(tmp_path / "strict")]) == 1
    text = capsys.readouterr().err
    err = [ln for ln in text.splitlines() if ln.startswith("popmodel fit-smf: error:")]
    assert len(err) == 1 and err[0].startswith(
        "popmodel fit-smf: error: sampler diagnostics are not clean (--strict): "), err
    assert "bulk ESS < 100 for " in err[0] and "log_phi1_z0.2" in err[0]
    assert "WARNING: sampler diagnostics are not clean" in text  # what a run without --strict says
    assert (tmp_path / "strict" / "smf_posterior.nc").is_file()  # written all the same
    # --strict does not change the result, so --resume does not compare it
    from popmodel.cli import build_parser
    from popmodel.cli.common import cli_config

    assert "strict" not in cli_config(build_parser().parse_args([*fit, "--strict", "--out", "x"]))
