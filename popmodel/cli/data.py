"""Catalogue and survey commands: ``mock``, ``catalog-from-percentiles``, ``survey-3dhst``.

Each writes one file (never an input, an existing one only with ``--overwrite``, kept with
``--resume``); the handlers import their work when they run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from popmodel.cli.common import (
    cli_config,
    fraction,
    nonneg_int,
    positive_float,
    positive_int,
    require_files,
    z_error,
)

__all__ = ["cmd_from_percentiles", "cmd_mock", "cmd_survey_3dhst", "register"]

log = logging.getLogger(__name__)


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
    log.info(f"popmodel {a.cmd}: {a.out} was written with these settings; kept (--resume)")
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
    """Handler of ``mock``."""
    from popmodel.mock import draw_mock
    from popmodel.survey import Survey

    require_files(a.survey)
    _check_new_file(a.out, a.overwrite, (a.survey,), a.resume)
    if _kept_file(a):
        return 0
    survey = Survey.read(a.survey)
    cat, truth = draw_mock(survey, seed=a.seed, n_samples=a.n_samples, spec_fraction=a.spec_fraction,
                           interim_prior=None if a.interim_prior == "flat" else a.interim_prior)
    _write_catalog_atomic(cat, a.out, a)
    log.info(f"mock: {cat.n_galaxies} galaxies selected (per field {truth.n_selected}) "
          f"of {sum(truth.n_true.values())} drawn; seed {a.seed}; wrote {a.out}")
    return 0


def cmd_from_percentiles(a: argparse.Namespace) -> int:
    """Handler of ``catalog-from-percentiles``: the report (JSON) goes to stdout."""
    import numpy as np

    from popmodel.cosmology import cosmology_from_config
    from popmodel.errors import InputError
    from popmodel.percentiles import catalog_from_percentiles

    require_files(a.table)
    _check_new_file(a.out, a.overwrite, (a.table,), a.resume)
    if _kept_file(a):
        return 0
    t = _read_table(a.table)
    need = {"id": a.col_id, "field": a.col_field, "z": a.col_z, "z_p16": a.col_z_p16,
            "z_p84": a.col_z_p84, "log_mass": a.col_log_mass}
    missing = [v for v in need.values() if v not in t.colnames]
    if missing:
        raise InputError(f"column(s) {missing} not in {a.table} (has {t.colnames})")
    mass_pct = {"log_mass_p16": a.col_log_mass_p16, "log_mass_p84": a.col_log_mass_p84,
                "log_mass_p2_5": a.col_log_mass_p2_5, "log_mass_p97_5": a.col_log_mass_p97_5}
    if bool(a.col_log_mass_p16) != bool(a.col_log_mass_p84):
        raise InputError("give both --col-log-mass-p16 and --col-log-mass-p84, or neither")
    if not a.col_log_mass_p16 and (a.col_log_mass_p2_5 or a.col_log_mass_p97_5):
        raise InputError("--col-log-mass-p2_5 / --col-log-mass-p97_5 need --col-log-mass-p16 "
                         "and --col-log-mass-p84")
    forms = [f for f, given in (("--col-log-mass-p16/p84", a.col_log_mass_p16),
                                ("--col-mass-error-dex", a.col_mass_error_dex),
                                ("--mass-error-dex", a.mass_error_dex is not None)) if given]
    if len(forms) > 1:
        raise InputError(f"give one mass uncertainty, not {' and '.join(forms)}")
    opt = {}
    for key, col in (("z_p2_5", a.col_z_p2_5), ("z_p97_5", a.col_z_p97_5), *mass_pct.items(),
                     ("mass_error_dex", a.col_mass_error_dex)):
        if col:
            if col not in t.colnames:
                raise InputError(f"column {col!r} not in {a.table} (has {t.colnames})")
            opt[key] = _float_column(t, col, a.table)
    if a.mass_error_dex is not None:
        opt["mass_error_dex"] = a.mass_error_dex
    cosmo = cosmology_from_config(
        {"H0": a.H0, "Om0": a.Om0} if a.H0 else (a.cosmology or "WMAP9"))
    cat, report = catalog_from_percentiles(
        np.asarray(t[a.col_id]).astype(str), np.asarray(t[a.col_field]).astype(str),
        _float_column(t, a.col_z, a.table), _float_column(t, a.col_z_p16, a.table),
        _float_column(t, a.col_z_p84, a.table), _float_column(t, a.col_log_mass, a.table),
        n_samples=a.n_samples, seed=a.seed, cosmology=cosmo, null_value=a.null_value, **opt,
    )
    _write_catalog_atomic(cat, a.out, a)
    print(json.dumps(report.as_dict() | {
        key: len(getattr(report, key))
        for key in ("ids_median_outside_68", "ids_exact_z", "ids_mass_sigma_floored")}))
    log.info(f"wrote {cat.n_galaxies} galaxies x {a.n_samples} samples to {a.out}")
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
    """Handler of ``survey-3dhst``."""
    from popmodel.datasets import threedhst_survey

    _check_new_file(a.out, a.overwrite)
    threedhst_survey(z_error=a.z_error if a.z_error == "catalog" else float(a.z_error)).write(a.out)
    log.info(f"wrote {a.out}")
    return 0


def _overwrite_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing --out file (never an input file)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``mock``, ``catalog-from-percentiles`` and ``survey-3dhst`` to a ``popmodel``
    sub-parser collection."""
    p = subparsers.add_parser("mock", help="draw a mock posterior catalogue from the Leja+20 model")
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

    p = subparsers.add_parser("catalog-from-percentiles",
                              help="approximate posterior samples from a catalogue's percentiles")
    p.add_argument("table", help="table of percentiles (FITS, ECSV, HDF5, Parquet, ...)")
    p.add_argument("--out", required=True, help="catalogue file to write")
    _single_file_options(p)
    p.add_argument("--mass-error-dex", type=positive_float, default=None,
                   help="assumed mass uncertainty [dex], Gaussian, conditional on z, for every "
                   "galaxy (default: 0.1 when neither --col-log-mass-p16/p84 nor "
                   "--col-mass-error-dex is given; the file's metadata says which was used)")
    p.add_argument("--null-value", type=float, default=None,
                   help="value that marks a missing entry in any column, e.g. -99 (default: "
                   "none; NaN and masked entries are always missing)")
    p.add_argument("--n-samples", type=positive_int, default=64,
                   help="samples per galaxy (default 64)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--cosmology", default=None, help="astropy built-in name (default WMAP9)")
    p.add_argument("--H0", type=positive_float, default=None,
                   help="flat LCDM H0 [km/s/Mpc] (with --Om0) instead of --cosmology "
                   "(default: none)")
    p.add_argument("--Om0", type=positive_float, default=None,
                   help="flat LCDM Omega_m (with --H0; default: none)")
    for col, default in (("id", "id"), ("field", "field"), ("z", "z"), ("z-p16", "z_p16"),
                         ("z-p84", "z_p84"), ("log-mass", "log_mass"), ("z-p2_5", None),
                         ("z-p97_5", None)):
        p.add_argument(f"--col-{col}", default=default,
                       help=f"column name (default {default or 'none: not used'})")
    for col, what in (("log-mass-p16", "16th mass percentile, marginal over z (with p84)"),
                      ("log-mass-p84", "84th mass percentile, marginal over z (with p16)"),
                      ("log-mass-p2_5", "2.5th mass percentile (with p16/p84)"),
                      ("log-mass-p97_5", "97.5th mass percentile (with p16/p84)"),
                      ("mass-error-dex", "per-galaxy mass uncertainty [dex], conditional on z")):
        p.add_argument(f"--col-{col}", default=None,
                       help=f"column of the {what} (default none: not used)")
    p.set_defaults(func=cmd_from_percentiles)

    p = subparsers.add_parser("survey-3dhst", help="write the 3D-HST survey description as TOML")
    p.add_argument("--out", required=True, help="TOML file to write")
    _overwrite_option(p)
    p.add_argument("--z-error", type=z_error, default="catalog",
                   help="sigma_z/(1+z) of catalogue redshifts: a number or 'catalog' (default)")
    p.set_defaults(func=cmd_survey_3dhst, needs_jax=False)
