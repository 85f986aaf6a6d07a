"""Result folders that cannot mix runs, outputs that never replace inputs, and a command line
that answers bad input with one line (issue 15, faults 12-19 and 30 of the fault list).

Each test names the fault it covers; on popmodel 0.1.0 (commit d821cdb) every one of them fails.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from popmodel.cli import main
from popmodel.errors import InputError, OutputError
from popmodel.io import resultdir


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A one-field survey, a mock of it and one default-settings Laplace fit through the CLI."""
    from popmodel.testing import deep_survey

    root = tmp_path_factory.mktemp("folders")
    survey = root / "survey.toml"
    deep_survey(1, 12.0, mass_error_dex=(0.1, 0.2)).write(survey)
    cat = root / "mock.h5"
    assert main(["mock", "--survey", str(survey), "--out", str(cat), "--seed", "3",
                 "--n-samples", "8"]) == 0
    res = root / "res"
    assert main(["fit-smf", str(cat), "--survey", str(survey), "--out", str(res),
                 "--method", "laplace", "--samples", "100", "--bootstrap", "0", "--no-figures",
                 "--no-progress"]) == 0
    return {"root": root, "survey": survey, "catalog": cat, "res": res}


def _fit_argv(small, out, *extra):
    return ["fit-smf", str(small["catalog"]), "--survey", str(small["survey"]), "--out", str(out),
            "--method", "laplace", "--samples", "100", "--bootstrap", "0", "--no-figures",
            "--no-progress", *extra]


def _error_lines(err: str) -> list[str]:
    """The error lines of stderr (log notes may precede them); never a traceback."""
    assert "Traceback" not in err
    return [ln for ln in err.strip().splitlines() if ": error:" in ln]


def _run_ids(out: Path) -> set[str]:
    """The run ids stamped into the folder's ECSV and JSON files."""
    ids = set()
    for p in out.iterdir():
        if p.suffix == ".ecsv":
            ids.add(Table.read(p, format="ascii.ecsv").meta.get("run_id"))
        elif p.suffix == ".json" and p.name != resultdir.MANIFEST and not p.name.startswith("."):
            ids.add(json.loads(p.read_text()).get("run_id"))
    return ids


def _assert_not_mixed(out: Path, user_files: frozenset = frozenset()) -> str:
    """A folder holds one complete result (every file of one run) or no popmodel file at all."""
    man = resultdir.read_manifest(out)
    if man is None:
        return "incomplete"
    assert set(man["files"]) | user_files == {
        str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()
        and p.name != resultdir.MANIFEST and not p.name.startswith(".popmodel")
        and resultdir.STAGE_PREFIX not in str(p)}
    assert _run_ids(out) == {man["run_id"]}
    return man["run_id"]


# ---------------------------------------------------------------- the default fit's folder
def test_a_fit_folder_has_a_manifest_and_every_file_carries_its_run_id(small):
    man = resultdir.read_manifest(small["res"])
    assert man is not None and man["schema_version"] == resultdir.SCHEMA_VERSION
    assert {"smf_posterior.nc", "smf_parameters.ecsv", "rho_star.ecsv", "summary.json",
            "survey.toml"} <= set(man["files"])
    _assert_not_mixed(small["res"])
    import arviz as az

    idata = az.from_netcdf(small["res"] / "smf_posterior.nc")
    assert idata.posterior.attrs["run_id"] == man["run_id"]
    # checksums are those of the files
    import hashlib

    for rel, info in man["files"].items():
        assert hashlib.sha256((small["res"] / rel).read_bytes()).hexdigest() == info["sha256"]


# ---------------------------------------------------------------- fault 12
def test_fault_12_unwritable_output_is_refused_before_any_computation(small, tmp_path, monkeypatch,
                                                                      capsys):
    import popmodel.smf.fit as smf_fit

    def no_fit(*a, **k):
        raise AssertionError("the fit ran before the output location was checked")

    monkeypatch.setattr(smf_fit, "fit_smf", no_fit)
    blocker = tmp_path / "good.h5"
    blocker.write_text("a file")
    assert main(_fit_argv(small, blocker / "results")) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "good.h5" in err[0] and "is a file" in err[0]
    assert err[0].startswith("popmodel fit-smf: error:")


# ---------------------------------------------------------------- fault 13
def test_fault_13_rerun_into_a_result_folder_is_refused_and_overwrite_clears_stale_files(
        small, tmp_path, monkeypatch, capsys):
    out = tmp_path / "res"
    shutil.copytree(small["res"], out)
    # a stale file of an earlier run, listed by that run's manifest
    man = json.loads((out / resultdir.MANIFEST).read_text())
    (out / "density_terms.ecsv").write_text("# stale\n")
    man["files"]["density_terms.ecsv"] = {"bytes": (out / "density_terms.ecsv").stat().st_size,
                                         "sha256": "x"}
    (out / resultdir.MANIFEST).write_text(json.dumps(man))
    (out / "my_notes.txt").write_text("the user's own file")

    import popmodel.smf.fit as smf_fit

    real_fit = smf_fit.fit_smf
    calls = []
    monkeypatch.setattr(smf_fit, "fit_smf", lambda *a, **k: calls.append(1) or real_fit(*a, **k))
    assert main(_fit_argv(small, out)) == 2 and not calls  # refused before any computation
    assert "not empty" in capsys.readouterr().err
    assert main(_fit_argv(small, out, "--overwrite")) == 0 and calls
    assert not (out / "density_terms.ecsv").exists()  # the stale file is gone
    assert (out / "my_notes.txt").read_text() == "the user's own file"  # not popmodel's: kept
    new_id = _assert_not_mixed(out, frozenset({"my_notes.txt"}))
    assert new_id != man["run_id"]


def test_overwrite_refuses_a_folder_holding_an_input(small, tmp_path):
    out = tmp_path / "res"
    shutil.copytree(small["res"], out)
    cat = out / "catalog.h5"
    shutil.copy(small["catalog"], cat)
    argv = _fit_argv(small, out, "--overwrite")
    argv[1] = str(cat)
    assert main(argv) == 2
    assert resultdir.read_manifest(out) is not None  # nothing was removed


# ---------------------------------------------------------------- fault 14 (and the kill test)
class _Killed(BaseException):
    """Stands for SIGKILL: no handler runs, nothing is cleaned up."""


def test_fault_14_kill_after_the_posterior_then_resume_reruns_the_step(small, tmp_path,
                                                                      monkeypatch):
    out = tmp_path / "res"
    shutil.copytree(small["res"], out)  # an older, complete result
    old_id = resultdir.read_manifest(out)["run_id"]
    import arviz as az

    real = az.InferenceData.to_netcdf

    def write_then_die(self, *a, **k):
        real(self, *a, **k)
        raise KeyboardInterrupt  # SIGINT just after smf_posterior.nc is written

    monkeypatch.setattr(az.InferenceData, "to_netcdf", write_then_die)
    assert main(_fit_argv(small, out, "--overwrite")) == 130
    monkeypatch.setattr(az.InferenceData, "to_netcdf", real)
    # the old result was replaced on purpose (--overwrite), the new one is incomplete: no
    # popmodel file of either run is left, and --resume does not mistake the folder for done
    assert resultdir.read_manifest(out) is None
    assert not list(out.glob("*.ecsv")) and not (out / "smf_posterior.nc").exists()
    assert main(_fit_argv(small, out, "--resume")) == 0
    new_id = _assert_not_mixed(out)
    assert new_id not in (old_id, "incomplete")
    # a second --resume keeps the complete step (no new run id) ...
    assert main(_fit_argv(small, out, "--resume")) == 0
    assert resultdir.read_manifest(out)["run_id"] == new_id
    # ... but not one made with other settings
    assert main(_fit_argv(small, out, "--resume", "--seed", "5")) == 2


@pytest.fixture(scope="module")
def fit_object(small):
    from popmodel.catalog import PosteriorCatalog
    from popmodel.smf.fit import FitConfig, fit_smf
    from popmodel.survey import Survey

    return fit_smf(PosteriorCatalog.read(small["catalog"]), Survey.read(small["survey"]),
                   FitConfig(method="laplace", num_samples=100, n_bootstrap=0,
                             progress_bar=False))


def test_a_kill_at_every_file_boundary_leaves_one_complete_result_or_a_rerun(fit_object, tmp_path,
                                                                            monkeypatch):
    """Fault injection: a result folder holds run A; run B is killed at each file boundary of
    its commit in turn. Afterwards the folder holds all of A, all of B, or (no complete
    manifest) files that --resume clears before redoing the step; never a mix."""
    from popmodel.io.smf import write_smf_results

    def write(out):
        return write_smf_results(fit_object, out, figures=False, model_checks=False)

    base = tmp_path / "A"
    write(base)
    id_a = resultdir.read_manifest(base)["run_id"]
    labels = []
    monkeypatch.setattr(resultdir, "_boundary_hook", labels.append)
    probe = tmp_path / "probe"
    shutil.copytree(base, probe)
    write(probe)
    n = len(labels)
    assert n >= 8 and any(lab.startswith("move ") for lab in labels)
    outcomes = {}
    for k in range(n):
        out = tmp_path / f"kill{k}"
        shutil.copytree(base, out)
        count = iter(range(n + 1))

        def hook(label, k=k, count=count):
            if next(count) == k:
                raise _Killed(label)

        monkeypatch.setattr(resultdir, "_boundary_hook", hook)
        with pytest.raises(_Killed):
            write(out)
        monkeypatch.setattr(resultdir, "_boundary_hook", None)
        state = _assert_not_mixed(out)
        outcomes[labels[k]] = "A" if state == id_a else state
        if state == "incomplete":
            assert resultdir.prepare_output(out, resume=True, config=None) == "redo"
            assert resultdir.read_manifest(out) is None
            left = [p for p in out.rglob("*") if p.is_file()]
            assert left == [], f"after a kill at {labels[k]!r}, --resume left {left}"
            write(out)
            _assert_not_mixed(out)
        elif state != id_a:
            assert resultdir.prepare_output(out, resume=True, config=None) == "complete"
    print(f"{n} boundaries: {outcomes}")
    assert outcomes[labels[0]] == "A"  # killed before the commit record: A is untouched
    assert outcomes[labels[-1]] not in ("A", "incomplete")  # after the manifest: B complete


# ---------------------------------------------------------------- faults 15, 16
def test_fault_15_catalog_from_percentiles_never_replaces_its_input(tmp_path):
    t = Table({"id": ["a", "b"], "field": ["F0"] * 2, "z": [1.0, 1.5], "z_p16": [0.9, 1.4],
               "z_p84": [1.1, 1.6], "log_mass": [10.0, 10.5]})
    path = tmp_path / "table.fits"
    t.write(path)
    before = path.read_bytes()
    for extra in ([], ["--overwrite"]):
        assert main(["catalog-from-percentiles", str(path), "--out", str(path),
                     "--mass-error-dex", "0.1", *extra]) == 2
        assert path.read_bytes() == before


def test_fault_16_mock_refuses_an_existing_catalogue_unless_overwrite(small, tmp_path):
    out = tmp_path / "mock.h5"
    shutil.copy(small["catalog"], out)
    before = out.read_bytes()
    argv = ["mock", "--survey", str(small["survey"]), "--out", str(out), "--seed", "9",
            "--n-samples", "4"]
    assert main(argv) == 2 and out.read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0 and out.read_bytes() != before
    from popmodel.catalog import PosteriorCatalog

    assert set(PosteriorCatalog.read(out).n_samples) == {4}
    # --resume keeps the file this command wrote with the same settings, refuses another one
    written = out.read_bytes()
    assert main([*argv, "--resume"]) == 0 and out.read_bytes() == written
    assert main([*argv[:-1], "5", "--resume"]) == 2 and out.read_bytes() == written
    assert not list(tmp_path.glob(".*tmp*"))  # no temporary file left behind


# ---------------------------------------------------------------- faults 17, 30
def test_fault_17_census_from_the_parameter_table_draws_inside_the_prior(small, tmp_path):
    smf = tmp_path / "smf"
    smf.mkdir()
    par = Table.read(small["res"] / "smf_parameters.ecsv", format="ascii.ecsv")
    # a broad alpha2 posterior near its -2 bound: Gaussian draws would cross -2
    k = list(par["name"]).index("alpha2")
    par["p16"][k], par["p50"][k], par["p84"][k] = -1.99, -1.9, -1.7
    par.write(smf / "smf_parameters.ecsv", format="ascii.ecsv")
    from popmodel.cli.census import read_smf_draws

    draws, info = read_smf_draws(smf, max_draws=400, seed=1)
    a2 = np.asarray(draws.alpha2)
    assert a2.min() >= -1.99 and a2.max() <= -1.0
    assert "truncated to the prior's support" in info["source"]
    # the truncated normal keeps the median inside the quoted band (no pile-up at the bound)
    assert -1.95 < np.median(a2) < -1.8
    out = tmp_path / "census"
    assert main(["census", "--smf", str(smf), "--out", str(out), "--no-figures",
                 "--max-draws", "100", "--dz", "0.5"]) == 0
    assert resultdir.read_manifest(out) is not None
    rho = Table.read(out / "census.ecsv")
    assert np.all(np.isfinite(rho["log_rho_star_p50"]))


def test_fault_30_census_names_a_truncated_posterior_file(small, tmp_path, capsys):
    smf = tmp_path / "smf"
    smf.mkdir()
    data = (small["res"] / "smf_posterior.nc").read_bytes()
    (smf / "smf_posterior.nc").write_bytes(data[: len(data) // 2])
    from popmodel.cli.census import read_smf_draws

    with pytest.raises(InputError, match="smf_posterior.nc.*truncated or corrupt"):
        read_smf_draws(smf)
    out = tmp_path / "census"
    assert main(["census", "--smf", str(smf), "--out", str(out), "--no-figures"]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "smf_posterior.nc" in err[0]
    assert resultdir.read_manifest(out) is None and not list(out.glob("*.ecsv"))


# ---------------------------------------------------------------- faults 18, 19 and options
@pytest.mark.parametrize("option, value", [("--chains", "0"), ("--samples", "0"),
                                           ("--warmup", "-1"), ("--target-accept", "1.5"),
                                           ("--slice-dz", "0"), ("--bootstrap", "x")])
def test_faults_18_19_numeric_options_are_checked_at_parse_time(small, tmp_path, option, value,
                                                               capsys):
    with pytest.raises(SystemExit) as exc:
        main(["fit-smf", str(small["catalog"]), "--survey", str(small["survey"]), "--out",
              str(tmp_path / "r"), option, value])
    assert exc.value.code == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing was started


def test_every_option_has_help():
    from popmodel.cli import build_parser

    ap = build_parser()
    sub = next(a for a in ap._actions if a.__class__.__name__ == "_SubParsersAction")
    missing = [f"{name} {act.option_strings}" for name, p in sub.choices.items()
               for act in p._actions if act.option_strings and act.help in (None, "")]
    assert missing == []


# ---------------------------------------------------------------- item 13: the handler
def test_bad_input_is_one_line_and_exit_2_and_v_adds_the_traceback(small, tmp_path, capsys):
    bad = tmp_path / "bad.ecsv"
    Table({"id": ["a"], "field": ["F0"], "log_mass": [10.0]}).write(bad)  # no z column
    argv = ["fit-smf", str(bad), "--survey", str(small["survey"]), "--out", str(tmp_path / "r")]
    assert main(argv) == 2
    err = _error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("popmodel fit-smf: error:") and "'z'" in err[0]
    assert main(["-v", *argv[:-1], str(tmp_path / "r2")]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_missing_input_file_is_one_line(small, tmp_path, capsys):
    assert main(["fit-smf", str(tmp_path / "nope.h5"), "--survey", str(small["survey"]),
                 "--out", str(tmp_path / "r")]) == 2
    err = _error_lines(capsys.readouterr().err)
    assert err == [f"popmodel fit-smf: error: input file {tmp_path / 'nope.h5'} does not exist"]
    assert not (tmp_path / "r").exists()


def test_prepare_output_rules(tmp_path):
    out = tmp_path / "o"
    assert resultdir.prepare_output(out) == "fresh" and out.is_dir()
    (out / "x.txt").write_text("user file")
    with pytest.raises(OutputError, match="not empty"):
        resultdir.prepare_output(out)
    with pytest.raises(OutputError, match="at most one"):
        resultdir.prepare_output(out, resume=True, overwrite=True)
    # resume over a folder without a manifest: nothing of popmodel's to keep, so redo
    assert resultdir.prepare_output(out, resume=True) == "redo"
    assert (out / "x.txt").exists()
