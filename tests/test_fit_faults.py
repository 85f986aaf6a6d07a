"""Faults a new user can make, and what the mass-function fit says about them (issue 15).

Numbers refer to the fault list (shared/docs/faults.md): 1 a survey field missing from the
catalogue, 5 point estimates in linear units, 6 one sample per galaxy, 21/22 nothing passes
the cuts, 27 a fit the data cannot constrain, 31 partly missing percentiles. Each test goes
through ``fit_smf`` (or the command line) with default settings where that is cheap; the
fits are Laplace fits of small mocks, shared by module-scoped fixtures.
"""

import dataclasses
import json
import re

import numpy as np
import pytest
from astropy.table import Table

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.cli import main
from popmodel.mock import draw_mock
from popmodel.percentiles import catalog_from_percentiles
from popmodel.smf.fit import FitConfig, fit_smf
from popmodel.survey import Field, Survey
from popmodel.testing import deep_survey

LAPLACE = {"method": "laplace", "progress_bar": False}


class _FitStarted(Exception):
    """Raised in place of the MAP search: the fit got past its input checks."""


@pytest.fixture
def no_fit(monkeypatch):
    """Make any attempt to start the fit raise _FitStarted (a check must come first)."""

    def boom(*args, **kwargs):
        raise _FitStarted

    monkeypatch.setattr("popmodel.smf.fit.find_map", boom)


def _run_cli(argv: list[str], capsys) -> tuple[int | None, str]:
    """Exit status and message of ``popmodel ARGV``: a popmodel error counts as status 2 with
    its message (before the command line's top-level handler existed, it propagated)."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    except CatalogError as e:
        return 2, str(e)
    out = capsys.readouterr()
    return rc, out.out + out.err


def _mark_empty(f: Field) -> Field:
    try:
        return dataclasses.replace(f, empty=True)
    except TypeError:  # a Field without the ``empty`` attribute
        g = dataclasses.replace(f)
        object.__setattr__(g, "empty", True)
        return g


@pytest.fixture(scope="module")
def survey() -> Survey:
    """Two 8 arcmin^2 fields F0 and F1 (z 0.2-3), as the fault list's small.toml."""
    return deep_survey(2, 8.0, mass_error_dex=(0.1, 0.2))


@pytest.fixture(scope="module")
def mock(survey) -> PosteriorCatalog:
    cat, _ = draw_mock(survey, seed=1, n_samples=16)
    assert set(cat.fields) == {"F0", "F1"}
    return cat


@pytest.fixture(scope="module")
def one_sample(mock) -> PosteriorCatalog:
    """The mock's galaxies with one posterior sample each (their first)."""
    first = mock.offsets[:-1]
    return PosteriorCatalog(
        ids=mock.ids, fields=mock.fields, offsets=np.arange(mock.n_galaxies + 1),
        log_mass=mock.log_mass[first], z=mock.z[first],
        log_prior=None if mock.log_prior is None else mock.log_prior[first],
        obs_log_mass=mock.obs_log_mass, obs_z=mock.obs_z, meta=dict(mock.meta),
    )


@pytest.fixture(scope="module")
def one_sample_fit(survey, one_sample):
    """Fitted with the defaults but the Laplace method (fewer draws), no compression check."""
    lines = []
    cfg = FitConfig(**LAPLACE, num_samples=200, num_chains=1, compression_draws=0)
    return fit_smf(one_sample, survey, cfg, log=lines.append), lines


def _only(cat: PosteriorCatalog, keep: np.ndarray) -> PosteriorCatalog:
    return cat.subset(np.flatnonzero(keep))


# ------------------------------------------------------------------ fault 1: a missing field
def test_fault01_field_missing_from_catalogue_is_an_error_before_the_fit(survey, mock, no_fit):
    lines = []
    with pytest.raises(CatalogError) as err:
        fit_smf(_only(mock, mock.fields == "F0"), survey, log=lines.append)
    msg = str(err.value)
    m = re.search(r"field 'F1': 0 galaxies used \(0 in the catalogue\), (\d+) expected", msg)
    assert m, msg
    # the expectation (Leja+20 through F1's selection) is close to what the mock put there
    n_f1 = int(np.sum(mock.fields == "F1"))
    assert 0.5 * n_f1 < int(m.group(1)) < 2.0 * n_f1
    assert "empty = true" in msg
    # the counts were printed before the error: F0 observed and expected, F1 observed 0
    text = "\n".join(lines)
    assert re.search(rf"F0: {np.sum(mock.fields == 'F0')} \(\d+\.\d\)", text), text
    assert re.search(r"F1: 0 \(\d+\.\d\)", text), text


def test_fault01_cli_fails_fast_without_flags(survey, mock, tmp_path, capsys, no_fit):
    cat, toml = tmp_path / "f0.h5", tmp_path / "small.toml"
    _only(mock, mock.fields == "F0").write(cat)
    survey.write(toml)
    out = tmp_path / "res"
    rc, text = _run_cli(["fit-smf", str(cat), "--survey", str(toml), "--out", str(out)], capsys)
    assert rc == 2, text
    assert re.search(r"field 'F1': 0 galaxies used .*\d+ expected", text), text
    assert not (out / "smf_posterior.nc").exists()


def test_fault01_missing_redshift_slice_is_an_error(survey, mock, no_fit):
    """F1's galaxies with catalogue z in 0.67-1.13 (one slice of width ~0.5) removed."""
    z = mock.obs_z
    gone = (mock.fields == "F1") & (z >= 0.6667) & (z < 1.1333)
    assert gone.sum() > 30
    with pytest.raises(CatalogError, match=r"field 'F1', z 0\.6667-1\.133\d*: 0 galaxies used, "
                                           r"\d+ expected"):
        fit_smf(_only(mock, ~gone), survey, log=lambda s: None)


def test_fault01_field_marked_empty_is_fitted_and_counted(survey, mock, no_fit):
    marked = Survey((survey.fields[0], _mark_empty(survey.fields[1])),
                    cosmology=survey.cosmology, name=survey.name)
    lines = []
    with pytest.raises(_FitStarted):  # past the check: the fit starts
        fit_smf(_only(mock, mock.fields == "F0"), marked, log=lines.append)
    assert re.search(r"F1 \[marked empty\]: 0 \(\d+\.\d\)", "\n".join(lines)), lines
    # a field marked empty that holds galaxies contradicts the mark
    with pytest.raises(CatalogError, match="'F1' is marked 'empty = true' but"):
        fit_smf(mock, marked, log=lambda s: None)


def test_fault01_counts_printed_and_recorded(one_sample_fit, mock):
    fit, lines = one_sample_fit
    rep = fit.data.report
    for f in ("F0", "F1"):
        n = int(np.sum(mock.fields == f))
        assert rep.observed[f] == n
        assert sum(d["observed"] for d in rep.slices[f]) == n
        assert 0.5 * n < rep.expected_reference[f] < 2.0 * n  # the mock was drawn from Leja+20
        assert rep.expected_reference[f] == pytest.approx(
            sum(d["expected_reference"] for d in rep.slices[f]), abs=0.05)
        assert any(re.match(rf"\s+{f}: {n} \(\d+\.\d\); z ", s) for s in lines), lines
    assert "Leja et al. (2020)" in rep.reference_model
    # into summary.json through the selection report, as plain JSON
    from popmodel.io.smf import provenance

    meta = provenance(fit)
    for key in ("selection_report", "mc_error", "mc_bootstrap_rms_shift_sigma"):
        json.dumps(meta[key], allow_nan=False)
    assert meta["selection_report"]["expected_reference"] == rep.expected_reference
    assert meta["selection_report"]["slices"]["F0"][0]["observed"] == rep.slices["F0"][0]["observed"]


# ------------------------------------------------------- fault 5: point estimates in linear units
def test_fault05_linear_point_mass_is_an_error(survey, mock, tmp_path, capsys, no_fit):
    bad = dataclasses.replace(mock, obs_log_mass=10.0**mock.obs_log_mass)
    with pytest.raises(CatalogError, match=r"'log_mass_obs'.*'mock0000000'.*linear mass"):
        fit_smf(bad, survey, log=lambda s: None)
    cat, toml = tmp_path / "lin.h5", tmp_path / "small.toml"
    bad.write(cat)
    survey.write(toml)
    rc, text = _run_cli(["fit-smf", str(cat), "--survey", str(toml), "--out",
                         str(tmp_path / "res")], capsys)
    assert rc == 2 and "log_mass_obs" in text, text


def test_fault05_dropped_galaxy_outside_support_is_only_counted(survey, mock, no_fit):
    """As for the samples, only what the model sees must lie in its support: a point mass of
    3.97 (3D-HST holds one) is far below every completeness limit and counted there."""
    m = mock.obs_log_mass.copy()
    m[7] = 3.97
    lines = []
    with pytest.raises(_FitStarted):
        fit_smf(dataclasses.replace(mock, obs_log_mass=m), survey, log=lines.append)
    assert any("1 below the mass-completeness limit" in line for line in lines), lines


def test_fault05_flow_path_checks_point_estimates(survey, mock):
    from popmodel.flow.fit import apply_survey_cuts

    bad = dataclasses.replace(mock, obs_log_mass=10.0**mock.obs_log_mass)
    with pytest.raises(CatalogError, match=r"'log_mass_obs'.*'mock0000000'.*linear mass"):
        apply_survey_cuts(bad, survey)
    m = mock.obs_log_mass.copy()
    m[7] = 3.97  # dropped by the cuts: no error
    kept, _ = apply_survey_cuts(dataclasses.replace(mock, obs_log_mass=m), survey)
    assert mock.ids[7] not in kept.ids


# ------------------------------------------------------------- fault 6: one sample per galaxy
def test_fault06_one_sample_per_galaxy_cannot_estimate(one_sample_fit, one_sample):
    fit, lines = one_sample_fit
    n = one_sample.n_galaxies
    mc, boot = fit.mc_error, fit.bootstrap
    for d in (mc, boot):
        assert d["status"] == (f"cannot estimate: galaxies with < 2 samples ({n} of {n}); "
                               "provide more samples per galaxy")
        assert d["n_too_few_samples"] == n
    for key in ("sd_log_l_total", "var_log_l_total", "ess_min", "ess_median"):
        assert mc[key] is None, key  # never 0
    assert boot["max_rms_shift_sigma"] is None and boot["rms_shift_sigma"] is None
    assert not boot["warn"]
    text = "\n".join(lines)
    assert "sd of ln L-hat 0.00" not in text and "0.00 sigma" not in text
    assert "Monte Carlo error of ln L-hat: cannot estimate" in text
    assert "Monte Carlo shift of the MAP (bootstrap): cannot estimate" in text
    assert any("cannot estimate" in w for w in fit.warnings)
    # JSON-friendly as summary.json stores them (None, no NaN)
    json.dumps({k: v for k, v in mc.items() if not isinstance(v, np.ndarray)}, allow_nan=False)
    json.dumps(boot["rms_shift_sigma"], allow_nan=False)


def test_fault06_mixed_catalogue_status_per_kind_of_galaxy(survey, mock, one_sample):
    """F0 with 16 samples, F1 with one: each kind of galaxy is named in the status."""
    from popmodel.smf.data import prepare_smf_data
    from popmodel.smf.inference import mc_galaxies

    f1 = one_sample.fields == "F1"
    n1, n0 = int(f1.sum()), int((~f1).sum())
    gi = mock.galaxy_index
    keep = ~f1[gi] | (np.arange(gi.size) == mock.offsets[gi])  # F1: the first sample only
    mixed = PosteriorCatalog(
        ids=mock.ids, fields=mock.fields,
        offsets=np.concatenate([[0], np.cumsum(np.bincount(gi[keep], minlength=f1.size))]),
        log_mass=mock.log_mass[keep], z=mock.z[keep],
        obs_log_mass=mock.obs_log_mass, obs_z=mock.obs_z)
    samples = mc_galaxies(prepare_smf_data(mixed, survey).catalog)
    assert samples["status"].startswith(f"lower bound: the Monte Carlo error of the {n1} of "
                                        f"{n0 + n1} galaxies with < 2 samples cannot be estimated")
    auto_data = prepare_smf_data(mixed, survey, posterior="auto")
    auto = mc_galaxies(auto_data.catalog)
    kinds = np.array(auto_data.catalog.meta["compression"]["kind"])
    n_rule = int(np.sum(kinds != "samples"))
    n_mc = int(np.sum((kinds == "samples") & (auto_data.catalog.n_samples >= 2)))
    assert n_rule > 0.6 * n0  # measured 193 of 259: the others failed the Gaussianity check by chance
    assert auto["status"] == (
        (f"cannot estimate: galaxies with < 2 samples ({n1} of {n1})" if n_mc == 0 else
         f"lower bound: the Monte Carlo error of the {n1} of {n1 + n_mc} galaxies with < 2 "
         "samples cannot be estimated and is left out")
        + f"; provide more samples per galaxy; not applicable (deterministic rule) for the "
        f"{n_rule} galaxies integrated with a Gauss-Hermite rule")


# ----------------------------------------------------------- faults 21, 22: nothing passes
def test_fault21_empty_catalogue_says_what_was_read(survey, mock, tmp_path, capsys):
    empty = mock.subset(np.array([], dtype=int))
    with pytest.raises(CatalogError, match=r"no galaxies \(0 galaxies, 0 rows read\)"):
        fit_smf(empty, survey, log=lambda s: None)


def test_fault22_outside_redshift_range_counts_each_reason(survey, mock, no_fit):
    far = dataclasses.replace(mock, obs_z=mock.obs_z + 5.0, z=mock.z + 5.0)
    n, rows = mock.n_galaxies, int(mock.offsets[-1])
    with pytest.raises(CatalogError) as err:
        fit_smf(far, survey, log=lambda s: None)
    msg = str(err.value)
    assert f"read {n} galaxies ({rows} rows" in msg, msg
    n0 = int(np.sum(mock.fields == "F0"))
    assert f"{n} outside their field's redshift range (F0 (z 0.2-3): {n0}," in msg, msg
    assert "catalogue redshifts span" in msg
    # two reasons at once: half far in redshift, the rest below the mass limit
    half = np.arange(n) < n // 2
    mixed = dataclasses.replace(
        mock, obs_z=np.where(half, mock.obs_z + 5.0, mock.obs_z),
        obs_log_mass=np.where(half, mock.obs_log_mass, 5.0))
    with pytest.raises(CatalogError) as err:
        fit_smf(mixed, survey, log=lambda s: None)
    msg = str(err.value)
    assert f"{n // 2} outside their field's redshift range" in msg, msg
    assert f"{n - n // 2} below the mass-completeness limit" in msg, msg


# ------------------------------------------------------ fault 27: what the data do not constrain
def _rule(fit) -> set[str]:
    """Parameters whose posterior sd exceeds half the prior's (uniform, or uniform in phi* for
    the log phi* anchors: an exponential of rate ln 10 truncated to the range)."""
    from scipy.stats import truncexpon

    out = set()
    for n in fit.prior.names:
        lo, hi = fit.prior.bounds[n]
        sd = (hi - lo) / np.sqrt(12.0)
        if n.startswith("log_phi") and fit.prior.amplitude == "linear":
            sd = truncexpon.std((hi - lo) * np.log(10), scale=1 / np.log(10))
        if np.std(fit.samples[n]) > 0.5 * sd:
            out.add(n)
    return out


@pytest.fixture(scope="module")
def single_fit(mock):
    """One galaxy in a tiny field (the reference model expects ~3 galaxies there, so fault
    1's check does not apply), fitted with the Laplace method. Every prior uniform (log phi*
    too), as ``_rule`` assumes: the default prior uniform in phi* is itself 0.43 dex wide in
    log phi*, narrower than what one galaxy leaves open."""
    f = deep_survey(1, 0.1).fields[0]
    one = dataclasses.replace(mock.subset(np.array([3])), fields=np.array([f.name]))
    cfg = FitConfig(**LAPLACE, num_samples=200, num_chains=1, compression_draws=0,
                    amplitude_prior="log")
    return fit_smf(one, Survey((f,), cosmology="WMAP9"), cfg, log=lambda s: None)


def test_fault06_deterministic_rule_not_applicable(single_fit):
    """The galaxy's 16 Gaussian samples became a Gauss-Hermite rule: no Monte Carlo error."""
    for d in (single_fit.mc_error, single_fit.bootstrap):
        assert d["status"].startswith("not applicable (deterministic rule)"), d["status"]
    assert single_fit.mc_error["sd_log_l_total"] is None
    assert single_fit.bootstrap["max_rms_shift_sigma"] is None
    text = "\n".join(single_fit.summary_lines())
    assert "sd of ln L-hat 0.00" not in text and "0.00 sigma" not in text
    assert "Monte Carlo error of ln L-hat: not applicable (deterministic rule)" in text


def test_fault27_single_galaxy_warns_by_name(single_fit):
    fit = single_fit
    weak = _rule(fit)
    assert len(weak) >= 6, weak  # one galaxy constrains little
    (line,) = [w for w in fit.warnings if w.startswith("the data barely constrain")]
    named = set(re.findall(r"(\w+(?:_z[\d.]+)?) \(posterior sd", line))
    assert named == weak
    assert set(fit.diagnostics["prior_dominated"]) == weak


def test_fault27_constrained_parameters_do_not_warn(one_sample_fit):
    fit, _ = one_sample_fit
    weak = _rule(fit)
    named = set(fit.diagnostics["prior_dominated"])
    assert named == weak
    # what 524 galaxies at z 0.2-3 do pin down is never called unconstrained
    for n in ("log_phi1_z0.2", "log_phi1_z1.6", "log_phi2_z0.2", "log_phi2_z1.6",
              "log_mstar_z0.2", "log_mstar_z1.6", "alpha2"):
        assert n not in named
        assert all(n + " (" not in w for w in fit.warnings)


# ---------------------------------------------------------- fault 31: partly missing percentiles
def _pct_inputs() -> dict:
    return {
        "ids": ["spec1", "phot1", "phot2", "spec2"],
        "fields": "F",
        "z_median": np.array([0.5, 1.0, 1.5, 0.8]),
        "z_p16": np.array([-1.0, 0.9, 1.3, np.nan]),
        "z_p84": np.array([-1.0, 1.2, 1.7, np.nan]),
        "log_mass": np.array([10.0, 10.5, 9.5, 9.0]),
        "mass_error_dex": 0.1,
    }


@pytest.mark.parametrize("column, value", [("z_p16", np.nan), ("z_p84", np.nan), ("z_p16", -1.0)])
def test_fault31_partly_missing_percentiles_name_galaxy_and_column(column, value):
    kw = _pct_inputs()
    kw[column][2] = value
    with pytest.raises(CatalogError, match=rf"\['{column}'\].*'phot2'"):
        catalog_from_percentiles(**kw)


def test_fault31_95_percentile_beside_missing_68(capsys):
    kw = _pct_inputs()
    with pytest.raises(CatalogError, match=r"'z_p97_5' is given.*'spec2'"):
        catalog_from_percentiles(**kw, z_p97_5=np.array([-1.0, 1.5, 2.0, 1.2]))


def test_fault31_spectroscopic_galaxies_named_in_report():
    cat, report = catalog_from_percentiles(**_pct_inputs())
    assert report.n_exact_z == 2
    assert report.ids_exact_z == ["spec1", "spec2"]
    assert cat.meta["report"]["ids_exact_z"] == ["spec1", "spec2"]


def test_fault31_cli(tmp_path, capsys):
    kw = _pct_inputs()
    kw["z_p16"][1] = np.nan
    t = Table({"id": kw["ids"], "field": ["F"] * 4, "z": kw["z_median"], "z_p16": kw["z_p16"],
               "z_p84": kw["z_p84"], "log_mass": kw["log_mass"]})
    table = tmp_path / "pct.ecsv"
    t.write(table)
    out = tmp_path / "cat.h5"
    rc, text = _run_cli(["catalog-from-percentiles", str(table), "--out", str(out),
                         "--mass-error-dex", "0.1"], capsys)
    assert rc == 2 and "'phot1'" in text and "z_p16" in text, text
    assert not out.exists()

