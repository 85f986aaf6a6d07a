"""The ``popmodel`` command line: mock catalogues, catalogues from percentiles, SMF fits."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["main"]


def _setup_jax(n_devices: int) -> None:
    """Float64 and one CPU device per chain; must run before JAX is first imported."""
    os.environ.setdefault("JAX_ENABLE_X64", "1")
    os.environ.setdefault("MPLBACKEND", "Agg")
    if "jax" not in sys.modules:
        import numpyro

        numpyro.set_host_device_count(max(1, min(n_devices, os.cpu_count() or 1)))
    import jax

    jax.config.update("jax_enable_x64", True)


def _fit_args(p: argparse.ArgumentParser, warmup: int = 300, samples: int = 500,
              dtype: str = "float64", target_accept: float = 0.8) -> None:
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--method", choices=("nuts", "laplace"), default="nuts")
    p.add_argument("--warmup", type=int, default=warmup, help="NUTS warm-up iterations per chain")
    p.add_argument("--samples", type=int, default=samples, help="NUTS draws per chain")
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--target-accept", type=float, default=target_accept,
                   help=f"NUTS target acceptance probability (default {target_accept}); raise it "
                   "if the fit reports divergent transitions")
    p.add_argument("--seed", type=int, default=0)
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
    p.add_argument("--slice-dz", type=float, default=0.5,
                   help="redshift width of the cosmic-variance slices")
    p.add_argument("--dtype", choices=("float64", "float32"), default=dtype,
                   help=f"precision of the per-sample likelihood terms (default {dtype}; sums, "
                   "polynomials and the expected number stay float64)")
    p.add_argument("--bootstrap", type=int, default=16,
                   help="bootstrap replicates for the Monte Carlo shift of the MAP")
    p.add_argument("--anchors", type=float, nargs="+", default=[0.2, 1.6, 3.0])
    p.add_argument("--no-figures", action="store_true")
    p.add_argument("--no-progress", action="store_true")


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
    from popmodel.results import write_smf_results
    from popmodel.smf.fit import fit_smf

    t0 = time.perf_counter()
    fit = fit_smf(catalog, survey, _fit_config(a))
    files = write_smf_results(fit, a.out, extra_meta=extra, figures=not a.no_figures)
    print(f"wrote {sum(len(v) for v in files.values())} files to {a.out} "
          f"({time.perf_counter() - t0:.0f} s)")
    return 0


def cmd_fit_smf(a: argparse.Namespace) -> int:
    from popmodel.catalog import PosteriorCatalog
    from popmodel.survey import Survey

    survey = Survey.read(a.survey)
    catalog = PosteriorCatalog.read(a.catalog)
    return _run_fit(catalog, survey, a, {"inputs": {"catalog": str(a.catalog), "survey": str(a.survey)}})


def cmd_fit_3dhst(a: argparse.Namespace) -> int:
    from popmodel.datasets import threedhst_catalog, threedhst_survey

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
    Path(a.out).mkdir(parents=True, exist_ok=True)
    survey.write(Path(a.out) / "survey.toml")
    extra = {"data_set": "3D-HST (Leja et al. td_new sample), FAST masses",
             "posteriors": report, "mode": "full" if a.full else "reduced default"}
    return _run_fit(catalog, survey, a, extra)


def cmd_mock(a: argparse.Namespace) -> int:
    from popmodel.mock import draw_mock
    from popmodel.survey import Survey

    survey = Survey.read(a.survey)
    cat, truth = draw_mock(survey, seed=a.seed, n_samples=a.n_samples, spec_fraction=a.spec_fraction,
                           interim_prior=None if a.interim_prior == "flat" else a.interim_prior)
    cat.write(a.out, overwrite=True)
    print(f"mock: {cat.n_galaxies} galaxies selected (per field {truth.n_selected}) "
          f"of {sum(truth.n_true.values())} drawn; seed {a.seed}; wrote {a.out}")
    return 0


def cmd_from_percentiles(a: argparse.Namespace) -> int:
    import numpy as np
    from astropy.table import Table

    from popmodel.cosmology import cosmology_from_config
    from popmodel.percentiles import catalog_from_percentiles

    t = Table.read(a.table)
    need = {"id": a.col_id, "field": a.col_field, "z": a.col_z, "z_p16": a.col_z_p16,
            "z_p84": a.col_z_p84, "log_mass": a.col_log_mass}
    missing = [v for v in need.values() if v not in t.colnames]
    if missing:
        raise SystemExit(f"error: column(s) {missing} not in {a.table} (has {t.colnames})")
    opt = {}
    for key, col in (("z_p2_5", a.col_z_p2_5), ("z_p97_5", a.col_z_p97_5)):
        if col:
            opt[key] = np.asarray(t[col], float)
    cosmo = cosmology_from_config(
        {"H0": a.H0, "Om0": a.Om0} if a.H0 else (a.cosmology or "WMAP9"))
    cat, report = catalog_from_percentiles(
        np.asarray(t[a.col_id]).astype(str), np.asarray(t[a.col_field]).astype(str),
        np.asarray(t[a.col_z], float), np.asarray(t[a.col_z_p16], float),
        np.asarray(t[a.col_z_p84], float), np.asarray(t[a.col_log_mass], float),
        mass_error_dex=a.mass_error_dex, n_samples=a.n_samples, seed=a.seed, cosmology=cosmo, **opt,
    )
    cat.write(a.out, overwrite=True)
    print(json.dumps(report.as_dict() | {"ids_median_outside_68": len(report.ids_median_outside_68)}))
    print(f"wrote {cat.n_galaxies} galaxies x {a.n_samples} samples to {a.out}")
    return 0


def cmd_survey_3dhst(a: argparse.Namespace) -> int:
    from popmodel.datasets import threedhst_survey

    threedhst_survey(z_error=a.z_error if a.z_error == "catalog" else float(a.z_error)).write(a.out)
    print(f"wrote {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="popmodel", description=__doc__)
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    sub = ap.add_subparsers(dest="cmd")

    p = sub.add_parser("fit-smf", help="fit the continuity SMF to a posterior catalogue")
    p.add_argument("catalog", help="long table (HDF5, FITS, ECSV, Parquet)")
    p.add_argument("--survey", required=True, help="survey TOML")
    _fit_args(p)
    p.set_defaults(func=cmd_fit_smf)

    p = sub.add_parser("fit-3dhst", help="the main job: fit the packaged real 3D-HST sample")
    _fit_args(p, warmup=150, samples=250, dtype="float32")
    p.add_argument("--full", action="store_true",
                   help="64 samples per galaxy, 500 warm-up + 1000 draws (default: 16, 150 + 250)")
    p.add_argument("--n-samples", type=int, default=None)
    p.add_argument("--mass-error-dex", type=float, default=0.1)
    p.add_argument("--z-error", default="catalog",
                   help="sigma_z/(1+z) of catalogue redshifts in the selection: a number, or "
                        "'catalog' (default): the mixture of the catalogue's own 68%% widths")
    p.add_argument("--z-min", type=float, default=0.5)
    p.add_argument("--z-max", type=float, default=2.55)
    p.set_defaults(func=cmd_fit_3dhst)

    p = sub.add_parser("mock", help="draw a mock posterior catalogue from the Leja+20 model")
    p.add_argument("--survey", required=True)
    p.add_argument("--out", required=True, help="catalogue file (.h5, .fits, .ecsv, .parquet)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-samples", type=int, default=32)
    p.add_argument("--spec-fraction", type=float, default=0.0)
    p.add_argument("--interim-prior", choices=("flat", "prospector-beta"), default="flat")
    p.set_defaults(func=cmd_mock)

    p = sub.add_parser("catalog-from-percentiles",
                       help="approximate posterior samples from a catalogue's percentiles")
    p.add_argument("table")
    p.add_argument("--out", required=True)
    p.add_argument("--mass-error-dex", type=float, required=True, help="assumed mass uncertainty")
    p.add_argument("--n-samples", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cosmology", default=None, help="astropy built-in name (default WMAP9)")
    p.add_argument("--H0", type=float, default=None)
    p.add_argument("--Om0", type=float, default=None)
    for col, default in (("id", "id"), ("field", "field"), ("z", "z"), ("z-p16", "z_p16"),
                         ("z-p84", "z_p84"), ("log-mass", "log_mass"), ("z-p2_5", None),
                         ("z-p97_5", None)):
        p.add_argument(f"--col-{col}", default=default, help=f"column name (default {default})")
    p.set_defaults(func=cmd_from_percentiles)

    p = sub.add_parser("survey-3dhst", help="write the 3D-HST survey description as TOML")
    p.add_argument("--out", required=True)
    p.add_argument("--z-error", default="catalog")
    p.set_defaults(func=cmd_survey_3dhst)

    from popmodel.census_cli import register as register_census
    from popmodel.figures import register as register_figures
    from popmodel.flow.cli import register as register_sfs
    from popmodel.pipeline import register as register_pipeline

    register_census(sub)
    register_sfs(sub)
    register_figures(sub)
    register_pipeline(sub)
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.version:
        from popmodel import __version__

        print(__version__)
        return 0
    if a.cmd is None:
        ap.print_help()
        return 2
    if getattr(a, "needs_jax", True):  # fit-sfs is torch only
        _setup_jax(getattr(a, "chains", 1))
    return int(a.func(a) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
