"""``popmodel fit-smf`` and ``popmodel fit-3dhst``: fit the continuity stellar mass function.

``register(subparsers)`` adds both sub-commands; the handlers import the fit (JAX, numpyro)
when they run, so importing this module imports nothing heavy.
"""

from __future__ import annotations

import argparse
import logging
import time

from popmodel.cli.common import (
    add_catalog_options,
    add_output_options,
    cli_config,
    nonneg_int,
    positive_float,
    positive_int,
    probability,
    read_catalog,
    require_files,
    z_error,
)

__all__ = ["cmd_fit_3dhst", "cmd_fit_smf", "register", "strict_failures"]

log = logging.getLogger(__name__)


def _fit_args(p: argparse.ArgumentParser, warmup: int = 400, samples: int = 1000,
              dtype: str = "float64", target_accept: float = 0.9) -> None:
    # the defaults are FitConfig()'s (tests/test_sampler_defaults.py checks it); this module
    # does not import popmodel.smf.fit, which would start JAX before its device count is set
    p.add_argument("--out", required=True, help="output directory")
    add_output_options(p)
    p.add_argument("--method", choices=("nuts", "laplace"), default="nuts",
                   help="NUTS (default) or the Laplace approximation at the MAP")
    p.add_argument("--warmup", type=nonneg_int, default=warmup,
                   help=f"NUTS warm-up iterations per chain (default {warmup})")
    p.add_argument("--samples", type=positive_int, default=samples,
                   help=f"NUTS draws per chain, or Laplace draws (default {samples})")
    p.add_argument("--chains", type=positive_int, default=4,
                   help="NUTS chains (default 4), each started from its own draw of the Laplace "
                   "approximation; they run one after another unless --parallel-chains")
    p.add_argument("--parallel-chains", action="store_true",
                   help="run the chains side by side, one CPU device each: faster on several "
                   "cores, but with jaxlib 0.10 on CPU the resident memory then grows by about "
                   "45 MB per second of sampling (measured with two chains on the 3D-HST fit), "
                   "where one chain at a time stays flat")
    p.add_argument("--target-accept", type=probability, default=target_accept,
                   help=f"NUTS target acceptance probability (default {target_accept}); raise it "
                   "if the fit reports divergent transitions")
    p.add_argument("--metric", choices=("auto", "laplace", "adapt"), default="auto",
                   help="NUTS's dense metric: the Laplace covariance at the MAP, kept ('laplace') "
                   "or re-estimated in warm-up from it ('adapt'); 'auto' (default) adapts for at "
                   "most 16 sampled parameters and 300 or more warm-up iterations")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--selection", choices=("noisy", "hard"), default="noisy",
                   help="selection on noisy catalogue masses (default) or a hard cut on true mass")
    p.add_argument("--posterior", choices=("auto", "samples", "gauss-hermite"), default="auto",
                   help="per-galaxy integrals: 'auto' (default) integrates closed-form "
                   "posteriors (catalogues built from percentiles) with a deterministic rule per "
                   "piece, and galaxies whose prior-divided samples look Gaussian or split-normal "
                   "with the rule of that fit (no Monte Carlo error), keeping the samples for the "
                   "others; it checks over 200 Laplace draws that the rules fitted to samples "
                   "move ln L by less than 0.1 or than the samples' own noise (falling back to "
                   "the samples otherwise) and measures the rules' quadrature error; 'samples' "
                   "(importance-sampled means) or 'gauss-hermite' (a Gaussian rule for every "
                   "galaxy without a closed form) force one")
    p.add_argument("--interim-prior", default=None, metavar="SPEC",
                   help="the SED fitter's interim prior: 'flat', a named prior such as "
                   "'prospector-beta-like@1', or a file of draws from the prior (columns "
                   "log_mass, z and optionally log_sfr) for a density estimate (default: the "
                   "catalogue's log_prior column, flat without one)")
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
    p.add_argument("--amplitude-prior", choices=("linear", "log"), default="linear",
                   help="prior of the log phi* anchors: 'linear' (default) is uniform in phi* "
                   "on [1e-7, 0.1], which keeps NUTS off the ridge where the second component "
                   "fades; 'log' is uniform in log phi*")
    p.add_argument("--anchors", type=float, nargs="+", default=[0.2, 1.6, 3.0],
                   help="anchor redshifts of the continuity model (default 0.2 1.6 3.0)")
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.add_argument("--pointwise-log-likelihood", action="store_true",
                   help="store the per-galaxy and per-(field, slice) log-likelihood in "
                   "smf_posterior.nc for az.loo (draws x galaxies numbers; off by default)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--strict", action="store_true",
                   help="exit with status 1 when the NUTS diagnostics are not clean (R-hat >= "
                   "1.01, bulk or tail ESS below 100 per chain, divergent transitions, E-BFMI "
                   "<= 0.3 or trees at the maximum depth), naming the parameters; the results "
                   "are written all the same (default: a warning only)")


def _fit_config(a: argparse.Namespace):
    from popmodel.smf.fit import FitConfig

    return FitConfig(
        method=a.method, num_warmup=a.warmup, num_samples=a.samples, num_chains=a.chains,
        target_accept=a.target_accept,
        adapt_mass_matrix={"auto": None, "laplace": False, "adapt": True}[a.metric],
        seed=a.seed, selection=a.selection, posterior=a.posterior, dtype=a.dtype,
        cosmic_variance=not a.no_cosmic_variance, slice_dz=a.slice_dz, n_bootstrap=a.bootstrap,
        anchor_z=tuple(a.anchors), progress_bar=not a.no_progress,
        interim_prior=getattr(a, "interim_prior", None), amplitude_prior=a.amplitude_prior,
    )


def _run_fit(catalog, survey, a: argparse.Namespace, extra: dict | None = None) -> int:
    from popmodel.io.smf import write_smf_results
    from popmodel.smf.fit import fit_smf

    figures = check_figures = None
    if not a.no_figures:
        from popmodel.plots.checks import model_check_figures
        from popmodel.plots.smf import smf_result_figures

        figures, check_figures = smf_result_figures, model_check_figures
    t0 = time.perf_counter()
    fit = fit_smf(catalog, survey, _fit_config(a))
    files = write_smf_results(fit, a.out, extra_meta=extra, figures=figures,
                              check_figures=check_figures, manifest_config=a.manifest_config,
                              pointwise_log_likelihood=a.pointwise_log_likelihood)
    log.info(f"wrote {sum(len(v) for v in files.values())} files to {a.out} "
             f"({time.perf_counter() - t0:.0f} s)")
    if a.strict:
        failures = strict_failures(fit.config.method, fit.diagnostics)
        if failures:
            from popmodel.errors import ComputationError

            raise ComputationError(f"sampler diagnostics are not clean (--strict): "
                                   f"{'; '.join(failures)}; the results are in {a.out}")
    return 0


def strict_failures(method: str, diagnostics: dict, *, max_rhat: float = 1.01,
                    min_ess: float | None = None) -> list[str]:
    """What ``--strict`` objects to in a fit's sampler diagnostics, naming the parameters:
    R-hat of ``max_rhat`` or more (or not finite), bulk or tail ESS below ``min_ess`` (default:
    the fit's ``ess_required``, 100 per chain after Vehtari et al. 2021; 100 if not recorded),
    divergent transitions, E-BFMI of 0.3 or less in a chain, transitions at the maximum tree
    depth. Empty for a clean NUTS run and for Laplace draws (no sampler diagnostics)."""
    import math

    if method != "nuts":
        return []
    if min_ess is None:
        min_ess = float(diagnostics.get("ess_required") or 100.0)
    rhat = diagnostics.get("r_hat", {})
    ess = diagnostics.get("ess_bulk", {})
    out = []
    bad = {k: v for k, v in rhat.items() if not (math.isfinite(v) and v < max_rhat)}
    if bad:
        out.append(f"R-hat >= {max_rhat:g} for " + ", ".join(f"{k} ({v:.3f})" for k, v in bad.items()))
    low = {k: v for k, v in ess.items() if not (math.isfinite(v) and v >= min_ess)}
    if low:
        out.append(f"bulk ESS < {min_ess:g} for " + ", ".join(f"{k} ({v:.0f})" for k, v in low.items()))
    tail = {k: v for k, v in diagnostics.get("ess_tail", {}).items()
            if not (math.isfinite(v) and v >= min_ess)}
    if tail:
        out.append(f"tail ESS < {min_ess:g} for " + ", ".join(f"{k} ({v:.0f})" for k, v in tail.items()))
    n_div = int(diagnostics.get("divergences", 0))
    if n_div:
        out.append(f"{n_div} divergent transitions")
    bfmi = diagnostics.get("e_bfmi") or []
    low_bfmi = [f"chain {i} ({v:.2f})" for i, v in enumerate(bfmi) if not v > 0.3]
    if low_bfmi:
        out.append("E-BFMI <= 0.3 for " + ", ".join(low_bfmi))
    sat = int(diagnostics.get("tree_depth_saturated") or 0)
    if sat:
        out.append(f"{sat} transitions at the maximum tree depth")
    if not out and diagnostics.get("ok") is False:
        out.append("the fit reports them as not clean")
    return out


def _prepare(a: argparse.Namespace, inputs: tuple = ()) -> bool:
    """Check ``--out`` before any work; True when ``--resume`` found the step complete."""
    from popmodel.io.resultdir import prepare_output

    a.manifest_config = cli_config(a)  # before any option is adjusted (fit-3dhst --full)
    state = prepare_output(a.out, resume=a.resume, overwrite=a.overwrite, inputs=inputs,
                           config=a.manifest_config, command=f"popmodel {a.cmd}")
    return state == "complete"


def cmd_fit_smf(a: argparse.Namespace) -> int:
    """Handler of ``fit-smf``."""
    from popmodel.survey import Survey

    require_files(a.catalog, a.survey)
    if _prepare(a, (a.catalog, a.survey)):
        return 0
    survey = Survey.read(a.survey)
    catalog = read_catalog(a)
    return _run_fit(catalog, survey, a, {"inputs": {"catalog": str(a.catalog), "survey": str(a.survey)}})


def cmd_fit_3dhst(a: argparse.Namespace) -> int:
    """Handler of ``fit-3dhst``."""
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
    log.info(f"3D-HST td_new: {report['counts']}")
    log.info("NOTE: approximate posteriors from redshift percentiles with an ASSUMED FAST mass "
             f"uncertainty of {a.mass_error_dex} dex (the catalogue gives none)")
    extra = {"data_set": "3D-HST (Leja et al. td_new sample), FAST masses",
             "posteriors": report, "mode": "full" if a.full else "reduced default"}
    return _run_fit(catalog, survey, a, extra)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``fit-smf`` and ``fit-3dhst`` to a ``popmodel`` sub-parser collection."""
    p = subparsers.add_parser("fit-smf", help="fit the continuity SMF to a posterior catalogue")
    p.add_argument("catalog", help="posterior catalogue: a long table of samples per galaxy, a "
                   "wide table of per-galaxy sample vectors, a collated chains file, a "
                   "PROVABGS-like sample cube or a qp ensemble (HDF5, FITS, ECSV, Parquet; the "
                   "layout is detected, or named with --format)")
    add_catalog_options(p)
    p.add_argument("--survey", required=True, help="survey TOML")
    _fit_args(p)
    p.set_defaults(func=cmd_fit_smf)

    p = subparsers.add_parser("fit-3dhst", help="the main job: fit the packaged real 3D-HST sample")
    _fit_args(p, warmup=200, samples=1000, dtype="float32", target_accept=0.95)
    p.add_argument("--full", action="store_true",
                   help="64 samples per galaxy, 500 warm-up + 1000 draws per chain (default: 16, 200 + 1000)")
    p.add_argument("--n-samples", type=positive_int, default=None,
                   help="posterior samples per galaxy (default 16, or 64 with --full)")
    p.add_argument("--mass-error-dex", type=positive_float, default=0.1,
                   help="assumed FAST mass uncertainty [dex] (default 0.1)")
    p.add_argument("--z-error", type=z_error, default="catalog",
                   help="sigma_z/(1+z) of catalogue redshifts in the selection: a number, or "
                        "'catalog' (default): the mixture of the catalogue's own 68%% widths")
    p.add_argument("--z-min", type=float, default=0.5, help="lowest redshift (default 0.5)")
    p.add_argument("--z-max", type=float, default=2.55, help="highest redshift (default 2.55)")
    p.set_defaults(func=cmd_fit_3dhst)
