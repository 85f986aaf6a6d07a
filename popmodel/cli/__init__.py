"""The ``popmodel`` command line: mock catalogues, catalogues from percentiles, SMF fits."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from pathlib import Path

from popmodel.cli.common import (
    add_output_options,
    cli_config,
    fraction,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    setup_jax,
)

__all__ = ["main"]


def _fit_args(p: argparse.ArgumentParser, warmup: int = 300, samples: int = 500,
              dtype: str = "float64", target_accept: float = 0.8) -> None:
    p.add_argument("--out", required=True, help="output directory")
    add_output_options(p)
    p.add_argument("--method", choices=("nuts", "laplace"), default="nuts",
                   help="NUTS (default) or the Laplace approximation at the MAP")
    p.add_argument("--warmup", type=nonneg_int, default=warmup,
                   help=f"NUTS warm-up iterations per chain (default {warmup})")
    p.add_argument("--samples", type=positive_int, default=samples,
                   help=f"NUTS draws per chain, or Laplace draws (default {samples})")
    p.add_argument("--chains", type=positive_int, default=2, help="NUTS chains (default 2)")
    p.add_argument("--target-accept", type=probability, default=target_accept,
                   help=f"NUTS target acceptance probability (default {target_accept}); raise it "
                   "if the fit reports divergent transitions")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--selection", choices=("noisy", "hard"), default="noisy",
                   help="selection on noisy catalogue masses (default) or a hard cut on true mass")
    p.add_argument("--posterior", choices=("auto", "samples", "gauss-hermite"), default="auto",
                   help="per-galaxy integrals: 'auto' (default) uses a Gauss-Hermite rule of each "
                   "posterior's mean and covariance (no Monte Carlo error) for galaxies whose "
                   "samples look Gaussian and the samples for the others, checks over 200 "
                   "Laplace draws that this moves ln L by less than 0.1 or than the samples' own "
                   "noise, and falls back to the samples otherwise; 'samples' (importance-sampled "
                   "means) or 'gauss-hermite' (every galaxy) force one")
    p.add_argument("--no-cosmic-variance", action="store_true",
                   help="no per-field density terms (default: on for fields with side lengths "
                   "or a sigma_dm override)")
    p.add_argument("--slice-dz", type=positive_float, default=0.5,
                   help="redshift width of the cosmic-variance slices (default 0.5)")
    p.add_argument("--dtype", choices=("float64", "float32"), default=dtype,
                   help=f"precision of the per-sample likelihood terms (default {dtype}; sums, "
                   "polynomials and the expected number stay float64)")
    p.add_argument("--bootstrap", type=nonneg_int, default=16,
                   help="bootstrap replicates for the Monte Carlo shift of the MAP (default 16)")
    p.add_argument("--anchors", type=float, nargs="+", default=[0.2, 1.6, 3.0],
                   help="anchor redshifts of the continuity model (default 0.2 1.6 3.0)")
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def _fit_config(a: argparse.Namespace):
    from popmodel.smf.fit import FitConfig

    return FitConfig(
        method=a.method, num_warmup=a.warmup, num_samples=a.samples, num_chains=a.chains,
        target_accept=a.target_accept,
        seed=a.seed, selection=a.selection, posterior=a.posterior, dtype=a.dtype,
        cosmic_variance=not a.no_cosmic_variance, slice_dz=a.slice_dz, n_bootstrap=a.bootstrap,
        anchor_z=tuple(a.anchors), progress_bar=not a.no_progress,
    )


def _run_fit(catalog, survey, a: argparse.Namespace, extra: dict | None = None) -> int:
    from popmodel.io.smf import write_smf_results
    from popmodel.smf.fit import fit_smf

    t0 = time.perf_counter()
    fit = fit_smf(catalog, survey, _fit_config(a))
    files = write_smf_results(fit, a.out, extra_meta=extra, figures=not a.no_figures,
                              manifest_config=a.manifest_config)
    print(f"wrote {sum(len(v) for v in files.values())} files to {a.out} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


def _prepare(a: argparse.Namespace, inputs: tuple = ()) -> bool:
    """Check ``--out`` before any work; True when ``--resume`` found the step complete."""
    from popmodel.io.resultdir import prepare_output

    a.manifest_config = cli_config(a)  # before any option is adjusted (fit-3dhst --full)
    state = prepare_output(a.out, resume=a.resume, overwrite=a.overwrite, inputs=inputs,
                           config=a.manifest_config, command=f"popmodel {a.cmd}")
    return state == "complete"


def cmd_fit_smf(a: argparse.Namespace) -> int:
    from popmodel.catalog import PosteriorCatalog
    from popmodel.survey import Survey

    _require_files(a.catalog, a.survey)
    if _prepare(a, (a.catalog, a.survey)):
        return 0
    survey = Survey.read(a.survey)
    catalog = PosteriorCatalog.read(a.catalog)
    return _run_fit(catalog, survey, a, {"inputs": {"catalog": str(a.catalog), "survey": str(a.survey)}})


def cmd_fit_3dhst(a: argparse.Namespace) -> int:
    from popmodel.datasets import threedhst_catalog, threedhst_survey

    if _prepare(a):
        return 0
    n = a.n_samples or (64 if a.full else 16)
    if a.full:
        a.warmup, a.samples = max(a.warmup, 500), max(a.samples, 1000)
    zerr = a.z_error if a.z_error == "catalog" else float(a.z_error)
    survey = threedhst_survey(z_min=a.z_min, z_max=a.z_max, mass_error_dex=a.mass_error_dex,
                              z_error=zerr)
    catalog, report = threedhst_catalog(n_samples=n, mass_error_dex=a.mass_error_dex, seed=a.seed,
                                        z_min=a.z_min, z_max=a.z_max)
    print(f"3D-HST td_new: {report['counts']}")
    print("NOTE: approximate posteriors from redshift percentiles with an ASSUMED FAST mass "
          f"uncertainty of {a.mass_error_dex} dex (the catalogue gives none)")
    extra = {"data_set": "3D-HST (Leja et al. td_new sample), FAST masses",
             "posteriors": report, "mode": "full" if a.full else "reduced default"}
    return _run_fit(catalog, survey, a, extra)


def _require_files(*paths: str | None) -> None:
    """A missing or unreadable input is one line naming it."""
    from popmodel.errors import InputError

    for p in paths:
        if p is None:
            continue
        path = Path(p)
        if not path.exists():
            raise InputError(f"input file {p} does not exist")
        if path.is_dir():
            raise InputError(f"input {p} is a folder, not a file")
        if not os.access(path, os.R_OK):
            raise InputError(f"input file {p} is not readable")


def _check_new_file(out: str, overwrite: bool, inputs: tuple = (),
                    resume: bool = False) -> None:
    """An output file never replaces an input, and an existing one only with --overwrite
    (or is kept with --resume, see :func:`_kept_file`)."""
    from popmodel.errors import OutputError

    path = Path(out)
    for inp in inputs:
        if inp is not None and Path(inp).exists() and path.exists() and path.samefile(inp):
            raise OutputError(f"--out {out} is the input file; choose another name")
    if path.exists() and not (overwrite or resume):
        raise OutputError(f"--out {out} exists; pass --overwrite to replace it or --resume to "
                          "keep it")
    if path.is_dir():
        raise OutputError(f"--out {out} is a folder; give a file name")
    parent = path.parent if str(path.parent) else Path(".")
    for anc in [parent, *parent.parents]:
        if anc.exists():
            if not anc.is_dir():
                raise OutputError(f"cannot write {out}: {anc} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot write {out}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise OutputError(f"cannot write {out}: folder {parent} is not writable")


def _kept_file(a: argparse.Namespace) -> bool:
    """``--resume`` of a one-file command: True when ``--out`` holds a catalogue this command
    wrote with the same settings (files are written whole, through a rename, so an existing one
    is complete); a file of other settings or origin is refused."""
    from popmodel.catalog import PosteriorCatalog
    from popmodel.errors import OutputError

    if not (a.resume and Path(a.out).exists()):
        return False
    made_by = PosteriorCatalog.read(a.out).meta.get("popmodel_command")
    if made_by != {"command": a.cmd, "config": cli_config(a)}:
        raise OutputError(f"--out {a.out} was not written by 'popmodel {a.cmd}' with these "
                          "settings; pass --overwrite to replace it")
    print(f"popmodel {a.cmd}: {a.out} was written with these settings; kept (--resume)")
    return True


def _single_file_options(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (never an input file)")
    g.add_argument("--resume", action="store_true",
                   help="keep --out if this command already wrote it with the same settings")


def _write_catalog_atomic(cat, out: str, a: argparse.Namespace | None = None) -> None:
    """Write through a temporary file in the same folder, then rename (never half a file);
    the command and its settings go into the file's metadata (for ``--resume``)."""
    import dataclasses
    import uuid

    if a is not None:
        cat = dataclasses.replace(cat, meta=dict(
            cat.meta, popmodel_command={"command": a.cmd, "config": cli_config(a)}))
    path = Path(out)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}")
    try:
        cat.write(tmp, overwrite=True)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def cmd_mock(a: argparse.Namespace) -> int:
    from popmodel.mock import draw_mock
    from popmodel.survey import Survey

    _require_files(a.survey)
    _check_new_file(a.out, a.overwrite, (a.survey,), a.resume)
    if _kept_file(a):
        return 0
    survey = Survey.read(a.survey)
    cat, truth = draw_mock(survey, seed=a.seed, n_samples=a.n_samples, spec_fraction=a.spec_fraction,
                           interim_prior=None if a.interim_prior == "flat" else a.interim_prior)
    _write_catalog_atomic(cat, a.out, a)
    print(f"mock: {cat.n_galaxies} galaxies selected (per field {truth.n_selected}) "
          f"of {sum(truth.n_true.values())} drawn; seed {a.seed}; wrote {a.out}")
    return 0


def cmd_from_percentiles(a: argparse.Namespace) -> int:
    import numpy as np

    from popmodel.cosmology import cosmology_from_config
    from popmodel.errors import InputError
    from popmodel.percentiles import catalog_from_percentiles

    _require_files(a.table)
    _check_new_file(a.out, a.overwrite, (a.table,), a.resume)
    if _kept_file(a):
        return 0
    t = _read_table(a.table)
    need = {"id": a.col_id, "field": a.col_field, "z": a.col_z, "z_p16": a.col_z_p16,
            "z_p84": a.col_z_p84, "log_mass": a.col_log_mass}
    missing = [v for v in need.values() if v not in t.colnames]
    if missing:
        raise InputError(f"column(s) {missing} not in {a.table} (has {t.colnames})")
    opt = {}
    for key, col in (("z_p2_5", a.col_z_p2_5), ("z_p97_5", a.col_z_p97_5)):
        if col:
            if col not in t.colnames:
                raise InputError(f"column {col!r} not in {a.table} (has {t.colnames})")
            opt[key] = _float_column(t, col, a.table)
    cosmo = cosmology_from_config(
        {"H0": a.H0, "Om0": a.Om0} if a.H0 else (a.cosmology or "WMAP9"))
    cat, report = catalog_from_percentiles(
        np.asarray(t[a.col_id]).astype(str), np.asarray(t[a.col_field]).astype(str),
        _float_column(t, a.col_z, a.table), _float_column(t, a.col_z_p16, a.table),
        _float_column(t, a.col_z_p84, a.table), _float_column(t, a.col_log_mass, a.table),
        mass_error_dex=a.mass_error_dex, n_samples=a.n_samples, seed=a.seed, cosmology=cosmo, **opt,
    )
    _write_catalog_atomic(cat, a.out, a)
    print(json.dumps(report.as_dict() | {"ids_median_outside_68": len(report.ids_median_outside_68),
                                         "ids_exact_z": len(report.ids_exact_z)}))
    print(f"wrote {cat.n_galaxies} galaxies x {a.n_samples} samples to {a.out}")
    return 0


def _read_table(path: str):
    """An astropy table from any format astropy reads, or an error naming the file."""
    from astropy.table import Table

    from popmodel.errors import InputError

    try:
        return Table.read(path)
    except Exception as exc:  # noqa: BLE001 (astropy's back-ends raise many types)
        raise InputError(f"cannot read the table {path}: {type(exc).__name__}: {exc}") from None


def _float_column(t, col: str, path: str):
    """Column ``col`` as float64, or an error naming the file, column and first bad row."""
    import numpy as np

    from popmodel.errors import InputError

    values = t[col]
    mask = getattr(values, "mask", None)
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        bad = next((i for i, v in enumerate(values) if not _is_float(v)), None)
        raise InputError(f"{path}: column {col!r} is not numeric (row {bad}: "
                         f"{values[bad]!r})") from None
    if mask is not None and np.any(mask):
        arr = np.where(np.asarray(mask), np.nan, arr)
    return arr


def _is_float(v: object) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def cmd_survey_3dhst(a: argparse.Namespace) -> int:
    from popmodel.datasets import threedhst_survey

    _check_new_file(a.out, a.overwrite)
    threedhst_survey(z_error=a.z_error if a.z_error == "catalog" else float(a.z_error)).write(a.out)
    print(f"wrote {a.out}")
    return 0


_DESCRIPTION = """popmodel: population-level inference of galaxy demographics.

Commands write into a results folder that they refuse to mix with another run: a non-empty
--out needs --overwrite (replace the popmodel result there) or --resume (keep a complete one,
redo an incomplete one). Errors are one line; -v shows the traceback."""


def _overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (never an input file)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="popmodel", description=_DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="more messages; with an error, also its traceback")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")

    p = sub.add_parser("fit-smf", help="fit the continuity SMF to a posterior catalogue")
    p.add_argument("catalog", help="long table (HDF5, FITS, ECSV, Parquet)")
    p.add_argument("--survey", required=True, help="survey TOML")
    _fit_args(p)
    p.set_defaults(func=cmd_fit_smf)

    p = sub.add_parser("fit-3dhst", help="the main job: fit the packaged real 3D-HST sample")
    _fit_args(p, warmup=150, samples=250, dtype="float32")
    p.add_argument("--full", action="store_true",
                   help="64 samples per galaxy, 500 warm-up + 1000 draws (default: 16, 150 + 250)")
    p.add_argument("--n-samples", type=positive_int, default=None,
                   help="posterior samples per galaxy (default 16, or 64 with --full)")
    p.add_argument("--mass-error-dex", type=positive_float, default=0.1,
                   help="assumed FAST mass uncertainty [dex] (default 0.1)")
    p.add_argument("--z-error", default="catalog",
                   help="sigma_z/(1+z) of catalogue redshifts in the selection: a number, or "
                        "'catalog' (default): the mixture of the catalogue's own 68%% widths")
    p.add_argument("--z-min", type=float, default=0.5, help="lowest redshift (default 0.5)")
    p.add_argument("--z-max", type=float, default=2.55, help="highest redshift (default 2.55)")
    p.set_defaults(func=cmd_fit_3dhst)

    p = sub.add_parser("mock", help="draw a mock posterior catalogue from the Leja+20 model")
    p.add_argument("--survey", required=True, help="survey TOML")
    p.add_argument("--out", required=True, help="catalogue file (.h5, .fits, .ecsv, .parquet)")
    _single_file_options(p)
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--n-samples", type=positive_int, default=32,
                   help="posterior samples per galaxy (default 32)")
    p.add_argument("--spec-fraction", type=fraction, default=0.0,
                   help="fraction of galaxies with a spectroscopic redshift (default 0)")
    p.add_argument("--interim-prior", choices=("flat", "prospector-beta"), default="flat",
                   help="the SED fitter's interim prior the posteriors are drawn under "
                   "(default flat)")
    p.set_defaults(func=cmd_mock)

    p = sub.add_parser("catalog-from-percentiles",
                       help="approximate posterior samples from a catalogue's percentiles")
    p.add_argument("table", help="table of percentiles (FITS, ECSV, HDF5, Parquet, ...)")
    p.add_argument("--out", required=True, help="catalogue file to write")
    _single_file_options(p)
    p.add_argument("--mass-error-dex", type=positive_float, required=True,
                   help="assumed mass uncertainty [dex]")
    p.add_argument("--n-samples", type=positive_int, default=64,
                   help="samples per galaxy (default 64)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--cosmology", default=None, help="astropy built-in name (default WMAP9)")
    p.add_argument("--H0", type=positive_float, default=None,
                   help="flat LCDM H0 [km/s/Mpc] (with --Om0) instead of --cosmology")
    p.add_argument("--Om0", type=positive_float, default=None, help="flat LCDM Omega_m (with --H0)")
    for col, default in (("id", "id"), ("field", "field"), ("z", "z"), ("z-p16", "z_p16"),
                         ("z-p84", "z_p84"), ("log-mass", "log_mass"), ("z-p2_5", None),
                         ("z-p97_5", None)):
        p.add_argument(f"--col-{col}", default=default, help=f"column name (default {default})")
    p.set_defaults(func=cmd_from_percentiles)

    p = sub.add_parser("survey-3dhst", help="write the 3D-HST survey description as TOML")
    p.add_argument("--out", required=True, help="TOML file to write")
    _overwrite_option(p)
    p.add_argument("--z-error", default="catalog",
                   help="sigma_z/(1+z) of catalogue redshifts: a number or 'catalog' (default)")
    p.set_defaults(func=cmd_survey_3dhst, needs_jax=False)

    from popmodel.cli.census import register as register_census
    from popmodel.cli.pipeline import register as register_pipeline
    from popmodel.cli.sfs import register as register_sfs
    from popmodel.plots.figures import register as register_figures

    register_census(sub)
    register_sfs(sub)
    register_figures(sub)
    register_pipeline(sub)
    return ap


#: Errors that mean bad input (exit status 2) and a failed computation (exit status 1).
_INPUT_ERRORS = ("popmodel.errors.InputError", "popmodel.catalog.CatalogError",
                 "popmodel.survey.SurveyError")
_COMPUTATION_ERRORS = ("popmodel.errors.ComputationError", "popmodel.flow.train.FlowTrainingError")


def _is_instance(exc: BaseException, names: tuple[str, ...]) -> bool:
    for name in names:
        module, cls = name.rsplit(".", 1)
        mod = sys.modules.get(module)
        if mod is not None and isinstance(exc, getattr(mod, cls)):
            return True
    return False


def _exit_code(exc: BaseException) -> int | None:
    """2 for bad input, 1 for a failed computation, None for an unexpected error (a bug)."""
    if _is_instance(exc, _INPUT_ERRORS) or isinstance(exc, FileNotFoundError | PermissionError):
        return 2
    if _is_instance(exc, _COMPUTATION_ERRORS):
        return 1
    return None


def _setup_logging(a: argparse.Namespace) -> None:
    level = logging.WARNING if a.quiet else (logging.DEBUG if a.verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)


def _report_peak_rss(path: str) -> None:
    from popmodel.cli.pipeline import peak_rss_kb

    kb = peak_rss_kb()
    if kb is not None:
        Path(path).write_text(str(kb))


def main(argv: list[str] | None = None) -> int:
    """Run ``popmodel ARGV``; returns the exit status (0, 1 failed computation, 2 bad input)."""
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.version:
        from popmodel import __version__

        print(__version__)
        return 0
    if a.cmd is None:
        ap.print_help()
        return 2
    _setup_logging(a)
    if os.environ.get("POPMODEL_PEAK_RSS_FILE"):  # run-3dhst measures each step's memory
        import atexit

        atexit.register(_report_peak_rss, os.environ["POPMODEL_PEAK_RSS_FILE"])
    show_tb = a.verbose > 0 or os.environ.get("POPMODEL_TRACEBACK", "") not in ("", "0")
    try:
        if getattr(a, "needs_jax", True):  # fit-sfs is torch only
            setup_jax(getattr(a, "chains", 1))
        return int(a.func(a) or 0)
    except KeyboardInterrupt:
        print(f"popmodel {a.cmd}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 (the top-level handler)
        code = _exit_code(exc)
        if code is None or show_tb:
            traceback.print_exc()
        if code is None:
            print(f"popmodel {a.cmd}: unexpected error (a bug; please report it with the "
                  f"traceback above): {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        msg = str(exc) if not isinstance(exc, OSError) or not exc.filename else \
            f"{exc.strerror}: {exc.filename}"
        print(f"popmodel {a.cmd}: error: {msg}", file=sys.stderr)
        return code


if __name__ == "__main__":
    raise SystemExit(main())
