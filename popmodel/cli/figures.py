"""``popmodel figures``: the figures of an analysis from its result folders, and the thin
``analyses/plot_<name>.py`` scripts (:func:`script_main`).

The figures themselves are drawn by :mod:`popmodel.plots.figures`; this module parses the
options, makes the mock results of ``--smoke`` (:func:`build_smoke_results`) and reports.
Importing it imports nothing heavy.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Sequence
from pathlib import Path

from popmodel.cli.common import (
    add_output_options,
    logging_to_stderr,
    nonneg_int,
    positive_int,
    require_folders,
    run_handled,
    setup_jax,
)
from popmodel.plots import FIGURES, NEEDS

__all__ = ["build_smoke_results", "register", "script_main"]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# smoke inputs


def build_smoke_results(root: str | Path, parts: Sequence[str] = ("smf", "sfs", "census"), *,
                        seed: int = 0) -> Path:
    """Write mock results into ``root/{smf,sfs,census}`` (each only if not already there).

    ``smf``: a one-field, 20 arcmin^2 deep survey drawn from the Leja+20 model (8 posterior
    samples per galaxy), fitted with the Laplace approximation (200 draws, no bootstrap).
    ``sfs``: 600 galaxies on the Leja+22 ridge with 0.4 dex SFR errors above a completeness
    limit, a two-member flow ensemble trained for two epochs without the selection
    normalisation. ``census``: ``popmodel census`` on both (0.1 in z, 200 draws). Seconds to
    tens of seconds; for tests of the path only.
    """
    import numpy as np

    root = Path(root)
    parts = set(parts)
    if "census" in parts:
        parts |= {"smf", "sfs"}
    smf_dir, sfs_dir, census_dir = root / "smf", root / "sfs", root / "census"
    if "smf" in parts and not (smf_dir / "smf_posterior.nc").is_file():
        from popmodel.io.smf import write_smf_results
        from popmodel.mock import draw_mock
        from popmodel.smf.fit import FitConfig, fit_smf
        from popmodel.testing import deep_survey

        t0 = time.perf_counter()
        survey = deep_survey(n_fields=1, area_arcmin2=20.0)
        catalog, _ = draw_mock(survey, seed=seed, n_samples=8)
        fit = fit_smf(catalog, survey, FitConfig(method="laplace", num_samples=200, n_bootstrap=0,
                                                 seed=seed, progress_bar=False))
        write_smf_results(fit, smf_dir, extra_meta={"smoke": "mock from the Leja+20 model; Laplace fit"},
                          figures=None, model_checks=False)
        log.info(f"smoke: SMF of {catalog.n_galaxies} mock galaxies fitted ({time.perf_counter() - t0:.0f} s)")
    if "sfs" in parts and not (sfs_dir / "sfs.ecsv").is_file():
        from popmodel.flow.fit import SFSConfig, fit_sfs
        from popmodel.flow.mock import sequence_mock
        from popmodel.flow.train import TrainConfig
        from popmodel.io.sfs import write_sfs_results

        t0 = time.perf_counter()
        limit = (np.array([0.3, 2.7]), np.array([9.3, 9.9]))
        cat, survey, _ = sequence_mock(600, n_samples=8, log_mass_limit=limit, mass_error=0.15, seed=seed)
        cfg = SFSConfig(train=TrainConfig(max_epochs=2, batch_size=128, seed=seed, progress=False),
                        n_members=2, selection="none")
        sfs_dir.mkdir(parents=True, exist_ok=True)
        fit = fit_sfs(cat, survey, cfg, workdir=sfs_dir)
        write_sfs_results(fit, sfs_dir, extra_meta={"smoke": "Leja+22-ridge mock; 2 members x 2 epochs"},
                          figures=None)
        log.info(f"smoke: flow ensemble trained on 600 mock galaxies ({time.perf_counter() - t0:.0f} s)")
    if "census" in parts and not (census_dir / "census.ecsv").is_file():
        from popmodel.cli.census import run_census
        from popmodel.units import Z_GRID

        run_census(smf_dir, sfs_dir, census_dir, z=Z_GRID[::2],
                   max_draws=200, seed=seed, figures=False)
        log.info(f"smoke: census written to {census_dir}")
    return root


# --------------------------------------------------------------------------------------------
# command line


def _run(a: argparse.Namespace, only: Sequence[str] | None) -> int:
    from popmodel.errors import InputError
    from popmodel.io.resultdir import prepare_output
    from popmodel.plots.figures import make_figures

    setup_jax(1)  # already done under `popmodel figures`; the analyses/plot_*.py scripts need it
    results_dir = a.results_dir
    if a.smoke:
        results_dir = results_dir or "results/figures_smoke"
        need = {p for n in (only or FIGURES) for p in NEEDS[n]}  # census brings smf and sfs
        build_smoke_results(results_dir, sorted(need), seed=a.seed)
    elif results_dir is None:
        raise InputError("give RESULTS_DIR (with smf/, sfs/, census/ sub-folders) or --smoke")
    require_folders(results_dir)
    out = a.out or str(Path(results_dir) / "figures")
    config = {"results_dir": str(results_dir), "only": list(only or FIGURES),
              "max_draws": a.max_draws, "seed": a.seed}
    if prepare_output(out, resume=a.resume, overwrite=a.overwrite, config=config,
                      command="popmodel figures") == "complete":
        return 0
    t0 = time.perf_counter()
    files = make_figures(results_dir, out, only=only, max_draws=a.max_draws, seed=a.seed,
                         manifest_config=config)
    n = sum(len(v) for v in files.values())
    log.info(f"wrote {n} files ({', '.join(files) or 'no figures'}) to {out} "
             f"({time.perf_counter() - t0:.1f} s)")
    return 0


def _add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("results_dir", nargs="?", default=None, metavar="RESULTS_DIR",
                   help="folder with smf/, sfs/ and census/ sub-folders (any may be missing); with "
                   "--smoke, where the mock results are written (default results/figures_smoke)")
    p.add_argument("--out", default=None, help="output folder (default RESULTS_DIR/figures)")
    p.add_argument("--smoke", action="store_true",
                   help="no inputs: make and fit a tiny mock first (reusing any already in RESULTS_DIR)")
    p.add_argument("--max-draws", type=positive_int, default=500,
                   help="SMF posterior draws used (random subset; default 500)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    add_output_options(p)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``popmodel figures RESULTS_DIR [--out DIR] [--only NAME ...] [--smoke]`` to a CLI."""
    p = subparsers.add_parser("figures", help="the SMF, rho_*, SFRD, sequence and residual figures "
                              "from a results folder")
    _add_args(p)
    p.add_argument("--only", nargs="+", choices=FIGURES, default=None,
                   help=f"draw only these figures (default: all of {', '.join(FIGURES)})")
    p.set_defaults(func=lambda a: _run(a, a.only))
    return p


def script_main(name: str, doc: str | None = None, argv: list[str] | None = None) -> int:
    """Entry point of the thin ``analyses/plot_<name>.py`` scripts: one figure of
    :data:`popmodel.plots.FIGURES`, with the messages and errors of the ``popmodel`` command."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {list(FIGURES)}")
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_args(ap)
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="more messages; with an error, also its traceback")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    a = ap.parse_args(argv)
    with logging_to_stderr(a.verbose, a.quiet):
        return run_handled(f"plot_{name}", lambda: _run(a, [name]), a.verbose)
