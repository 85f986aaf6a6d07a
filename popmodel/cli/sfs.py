"""The ``fit-sfs`` command: train the deconvolving flow ensemble and write the SFS.

``register(subparsers)`` adds the subcommand to the ``popmodel`` parser; the handler never
imports JAX (``needs_jax=False`` is set on the parsed arguments). ``python -m
popmodel.cli.sfs fit-sfs ...`` runs it stand-alone.

Examples::

    popmodel fit-sfs catalog.h5 --survey survey.toml --out sfs_out
    popmodel fit-sfs --3dhst --out sfs_3dhst            # packaged 3D-HST sample, UV+IR SFRs
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from popmodel.cli.common import (
    add_catalog_options,
    add_output_options,
    cli_config,
    logging_to_stderr,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    read_catalog,
    require_files,
)

if TYPE_CHECKING:
    from popmodel.flow.fit import SFSConfig

__all__ = ["cmd_fit_sfs", "main", "register", "sfs_config"]

log = logging.getLogger(__name__)

#: Training defaults of ``fit-sfs``: those of :class:`popmodel.flow.fit.SFSConfig`, written out
#: here so that building the parser does not import torch (a test holds them equal).
_TRAIN = argparse.Namespace(max_epochs=12, min_steps=1500, batch_size=256, learning_rate=2e-2,
                            lr_schedule="cosine", lr_warmup=1.0, patience=6, sfs_tolerance=0.005,
                            sfs_patience=3)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``fit-sfs`` to a ``popmodel`` sub-parser collection.

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The new sub-parser.
    """
    p = subparsers.add_parser(
        "fit-sfs",
        help="deconvolving normalizing-flow ensemble and the star-forming sequence",
        description="Train an ensemble of deconvolving flows on a posterior catalogue with "
        "log_sfr samples and write sfs.ecsv, Eq. 10 fits, the flows and figures.",
    )
    p.add_argument("catalog", nargs="?",
                   help="posterior catalogue with log_sfr, in any layout fit-smf reads (long, "
                   "wide, chains, PROVABGS-like; HDF5, FITS, ECSV, Parquet); default: none, "
                   "then --3dhst is required")
    add_catalog_options(p)
    p.add_argument("--survey", help="survey TOML (completeness limits and mass errors of the "
                   "selection; default: none, no selection normalisation)")
    p.add_argument("--3dhst", dest="threedhst", action="store_true",
                   help="use the packaged 3D-HST sample (FAST masses, UV+IR SFRs)")
    p.add_argument("--out", required=True, help="output directory")
    add_output_options(p)
    p.add_argument("--members", type=positive_int, default=5, help="ensemble size (default 5)")
    p.add_argument("--no-bootstrap", action="store_true",
                   help="members differ by seed only (default: bootstrap resamples of galaxies)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="epochs per member: the length of the learning-rate schedule and the most "
                        f"that are run (default {_TRAIN.max_epochs}, or as many as make "
                        f"{_TRAIN.min_steps} optimiser steps, at most {10 * _TRAIN.max_epochs}, where an "
                        f"epoch has fewer than {_TRAIN.min_steps // _TRAIN.max_epochs}; a number given "
                        "here is used as it is)")
    p.add_argument("--batch-size", type=positive_int, default=_TRAIN.batch_size,
                   help=f"galaxies per minibatch (default {_TRAIN.batch_size})")
    p.add_argument("--lr", type=positive_float, default=_TRAIN.learning_rate,
                   help=f"initial learning rate (default {_TRAIN.learning_rate:g})")
    p.add_argument("--lr-schedule", choices=("cosine", "plateau"), default=_TRAIN.lr_schedule,
                   help="'cosine': decay over --epochs; 'plateau': reduce when the validation loss "
                        f"stalls (default {_TRAIN.lr_schedule})")
    p.add_argument("--lr-warmup", type=nonneg_float, default=_TRAIN.lr_warmup,
                   help="epochs of linear warm-up at the start of the cosine schedule "
                        f"(default {_TRAIN.lr_warmup:g})")
    p.add_argument("--patience", type=positive_int, default=_TRAIN.patience,
                   help=f"early-stopping patience [epochs] (default {_TRAIN.patience})")
    p.add_argument("--sfs-tolerance", type=nonneg_float, default=_TRAIN.sfs_tolerance,
                   help="also stop a member once the SFS percentiles move < this [dex] per epoch "
                        f"for {_TRAIN.sfs_patience} epochs (0: validation loss only; default "
                        f"{_TRAIN.sfs_tolerance:g})")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch threads per worker (default: 1 with several workers, torch's choice with one)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="train members in this many processes of --threads threads each (default: one "
                        "per core, at most one per member; 1: one process with torch's threads)")
    p.add_argument("--max-samples", type=positive_int, default=32, help="posterior samples used per galaxy (default 32)")
    p.add_argument("--no-bias-correction", action="store_true",
                   help="turn off the small-S (delta-method) bias correction")
    p.add_argument("--conditional-on-z", action="store_true",
                   help="model p(log M, log SFR | z) instead of the joint density (see "
                        "popmodel.flow.selection for its caveat with photometric redshifts)")
    p.add_argument("--selection", choices=("survey", "none"), default="survey",
                   help="normalise by the probability of passing the survey's cuts (default)")
    p.add_argument("--n-samples", type=positive_int, default=32, help="--3dhst: samples per galaxy (default 32)")
    p.add_argument("--mass-error-dex", type=positive_float, default=0.1, help="--3dhst: assumed mass error [dex] (default 0.1)")
    p.add_argument("--sfr-error-dex", type=positive_float, default=0.3, help="--3dhst: assumed SFR error [dex] (default 0.3)")
    p.add_argument("--z-min", type=float, default=0.5, help="--3dhst: lowest redshift (default 0.5)")
    p.add_argument("--z-max", type=float, default=2.5, help="--3dhst: highest redshift (default 2.5)")
    p.add_argument("--max-galaxies", type=positive_int, default=None, help="--3dhst: random subset size (default: all)")
    p.add_argument("--leja-curves", default=None,
                   help="folder with the released Leja2022_z*.txt curves to overlay in the figure "
                   "(default: none)")
    p.add_argument("--interim-prior", default=None, metavar="SPEC",
                   help="the SED fitter's interim prior: 'flat', a named prior such as "
                   "'prospector-beta-like@1', or a file of draws from the prior (columns "
                   "log_mass, z, log_sfr) for a density estimate (default: the catalogue's "
                   "log_prior_sfr column, flat without prior columns)")
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_fit_sfs, needs_jax=False)
    return p


def sfs_config(a: argparse.Namespace) -> SFSConfig:
    """The :class:`popmodel.flow.fit.SFSConfig` of parsed ``fit-sfs`` arguments."""
    from popmodel.flow.fit import SFSConfig
    from popmodel.flow.model import FlowConfig
    from popmodel.flow.train import TrainConfig

    return SFSConfig(
        flow=FlowConfig(conditional_on_z=a.conditional_on_z),
        train=TrainConfig(
            bias_correction=not a.no_bias_correction, batch_size=a.batch_size,
            max_epochs=_TRAIN.max_epochs if a.epochs is None else a.epochs,
            min_steps=_TRAIN.min_steps if a.epochs is None else 0,
            learning_rate=a.lr, lr_schedule=a.lr_schedule,
            lr_warmup=a.lr_warmup if a.lr_schedule == "cosine" else 0.0, patience=a.patience, seed=a.seed,
            threads=a.threads,
            sfs_tolerance=a.sfs_tolerance,
            progress=not a.no_progress,
        ),
        n_members=a.members, bootstrap=not a.no_bootstrap, max_samples=a.max_samples,
        selection=a.selection, n_workers=a.workers,
    )


def cmd_fit_sfs(a: argparse.Namespace) -> int:
    """Handler of ``fit-sfs``."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    from popmodel.flow.fit import fit_sfs
    from popmodel.io.resultdir import prepare_output
    from popmodel.io.sfs import write_sfs_results
    from popmodel.survey import Survey

    if a.threedhst == bool(a.catalog):
        raise SystemExit("error: give either a CATALOG file or --3dhst")
    inputs = () if a.threedhst else (a.catalog, a.survey)
    require_files(*inputs)
    state = prepare_output(a.out, resume=a.resume, overwrite=a.overwrite, inputs=inputs,
                           config=cli_config(a), command="popmodel fit-sfs")
    if state == "complete":
        return 0
    t0 = time.perf_counter()
    extra: dict = {}
    if a.threedhst:
        from popmodel.flow.threedhst import threedhst_sfs_catalog

        catalog, survey, prov = threedhst_sfs_catalog(
            n_samples=a.n_samples, mass_error_dex=a.mass_error_dex, sfr_error_dex=a.sfr_error_dex,
            z_min=a.z_min, z_max=a.z_max, seed=a.seed, max_galaxies=a.max_galaxies,
        )
        log.info(f"3D-HST: {prov['counts']}")
        log.info(f"NOTE: {prov['assumption_note']}")
        extra = {"inputs": {"data_set": "3dhst"}, "catalog_provenance": prov}
    else:
        catalog = read_catalog(a)
        survey = Survey.read(a.survey) if a.survey else None
        extra = {"inputs": {"catalog": str(a.catalog), "survey": a.survey}}
        if survey is None:
            log.info("NOTE: no --survey: no selection normalisation; the grid starts at the data's "
                  "1st mass percentile")
    config = sfs_config(a)
    out = Path(a.out)
    # --resume of an incomplete step: the members resume from their checkpoints
    fit = fit_sfs(catalog, survey, config, workdir=out, resume=a.resume,
                  interim_prior=a.interim_prior)
    figures = None
    if not a.no_figures:
        from functools import partial

        from popmodel.plots.sfs import sfs_result_figures

        figures = partial(sfs_result_figures, leja_curves_dir=a.leja_curves)
    files = write_sfs_results(fit, out, extra_meta=extra, figures=figures,
                              manifest_config=cli_config(a))
    n_files = sum(len(v) for v in files.values())
    log.info(f"trained {config.n_members} flows on {fit.data_summary['n_galaxies']} galaxies; "
          f"wrote {n_files} files to {out} ({time.perf_counter() - t0:.0f} s)")
    rows = fit.table
    for z in (1.0, 2.0):
        sel = [i for i in range(len(rows)) if abs(rows["z"][i] - z) < 1e-6]
        if sel:
            log.info(f"z={z}: " + json.dumps({f"{rows['log_mass'][i]:.2f}": round(float(rows['ridge_p50'][i]), 3)
                                           for i in sel}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry point: ``python -m popmodel.cli.sfs fit-sfs ...``."""
    ap = argparse.ArgumentParser(prog="popmodel")
    sub = ap.add_subparsers(dest="cmd", required=True)
    register(sub)
    a = ap.parse_args(argv)
    with logging_to_stderr():
        return int(a.func(a) or 0)


if __name__ == "__main__":
    sys.exit(main())
