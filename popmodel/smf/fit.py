"""Fit the continuity mass function to a posterior catalogue: data, MAP, MC checks, NUTS, diagnostics."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from popmodel.catalog import PosteriorCatalog
from popmodel.smf.compression import (
    compression_check,
    compression_summary,
    quadrature_error_check,
    quadrature_error_summary,
)
from popmodel.smf.data import SMFData, check_field_coverage, prepare_smf_data
from popmodel.smf.density import DEFAULT_SLICE_DZ
from popmodel.smf.evolution import DEFAULT_ANCHORS, ContinuityParams
from popmodel.smf.inference import (
    RELEASE_MIN_NODES,
    MAPResult,
    bootstrap_map_shift,
    find_map,
    laplace_draws,
    mc_error_diagnostics,
    n_nodes,
    release_memory,
    require_x64,
    run_nuts,
)
from popmodel.smf.model import SMFPrior
from popmodel.survey import Survey

if TYPE_CHECKING:
    from popmodel.io.smf import SMFResult

__all__ = ["ADAPT_MAX_PARAMETERS", "ADAPT_MIN_WARMUP", "FitConfig", "SMFFit", "adapt_metric",
           "ess_for_rhat", "fit_smf", "prior_dominated", "prior_sd", "rhat_noise"]

#: Warn when the Monte Carlo noise of the posterior samples moves the MAP by more than this
#: many posterior sigma (rms over bootstrap replicates).
MC_SHIFT_WARN_SIGMA = 0.3

#: Warn that the data do not constrain a mass-function parameter when its posterior standard
#: deviation exceeds this fraction of its prior's.
PRIOR_DOMINATED_FRACTION = 0.5


@dataclass(frozen=True)
class FitConfig:
    """Settings of :func:`fit_smf` (all recorded in every output file).

    Attributes:
        method: "nuts" (default) or "laplace" (draws from the MAP's Gaussian approximation;
            quick looks and smoke tests only).
        num_warmup, num_samples, num_chains: NUTS settings per chain (default 4 chains, so
            that R-hat compares chains that started apart; they run in parallel when JAX has
            a device per chain, which the command line arranges).
        seed: seed of the NUTS / Laplace / bootstrap random keys.
        selection: "noisy" (selection on noisy catalogue masses; default) or "hard".
        posterior: "auto" (default), "samples" or "gauss-hermite": how each galaxy's integral
            is computed (see :func:`popmodel.smf.data.prepare_smf_data`). "auto" compresses the
            galaxies whose samples are consistent with a Gaussian posterior, checks after the
            MAP that this moves ln L across the posterior by less than 0.1
            (:func:`popmodel.smf.compression.compression_check`) and otherwise falls back to
            the samples (reported in ``SMFFit.compression``).
        compression_draws: Laplace draws of that check (0 skips it, for "auto" and
            "gauss-hermite"), and of the quadrature-error check of the rule galaxies (ln L
            with the rules against ln L with twice their nodes per piece).
        interim_prior: the SED fitter's interim prior, as :func:`popmodel.interim.resolve_interim_prior`
            takes it: None (default: the catalogue's ``log_prior`` column, flat without one),
            "flat", a named prior (``"prospector-beta-like@1"``) or a file of prior draws.
            A Python callable or prior object goes to ``fit_smf(..., interim_prior=)``.
        gh_nodes: Gauss-Hermite nodes in (mass, redshift) for ``posterior="gauss-hermite"``.
        cosmic_variance: per-field, per-slice density terms for fields with a known geometry
            (:mod:`popmodel.smf.density`); their draws are named ``delta_<field>_z<lo>_<hi>``.
        slice_dz: redshift width of the density terms' slices.
        chunk_size: posterior samples per likelihood chunk.
        dtype: "float64" or "float32" for the sample arrays (sums are float64 either way).
        dense_mass: NUTS with a dense mass matrix seeded by the Laplace covariance.
        target_accept: NUTS target acceptance probability.
        init_spread: start each chain from its own draw of the Laplace approximation (default)
            rather than all at the MAP (Gelman & Rubin 1992: chains that never had to find
            each other make R-hat uninformative).
        adapt_mass_matrix: None (default): :func:`adapt_metric` decides; True: re-estimate
            the dense mass matrix during warm-up (windowed, as
            NumPyro does) instead of keeping the Laplace covariance.
        chain_method: NumPyro's chain method, or "auto": "parallel" with a device per chain,
            else "sequential" (:func:`popmodel.smf.inference.run_nuts`).
        n_bootstrap: bootstrap replicates for the Monte Carlo shift of the MAP (0 = skip).
        anchor_z: anchor redshifts of the continuity model.
        amplitude_prior: prior of the log phi* anchors, "linear" (default: uniform in phi*) or
            "log" (uniform in log phi*); :class:`popmodel.smf.model.SMFPrior` gives the reason.
        progress_bar: show progress bars.
    """

    method: str = "nuts"
    num_warmup: int = 400
    num_samples: int = 1000
    num_chains: int = 4
    seed: int = 0
    selection: str = "noisy"
    posterior: str = "auto"
    compression_draws: int = 200
    gh_nodes: tuple[int, int] = (8, 3)
    cosmic_variance: bool = True
    slice_dz: float = DEFAULT_SLICE_DZ
    chunk_size: int = 1 << 16
    dtype: str = "float64"
    dense_mass: bool = True
    target_accept: float = 0.9
    init_spread: bool = True
    adapt_mass_matrix: bool | None = None
    chain_method: str = "auto"
    n_bootstrap: int = 16
    anchor_z: tuple[float, ...] = DEFAULT_ANCHORS
    amplitude_prior: str = "linear"
    progress_bar: bool = True
    interim_prior: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["anchor_z"] = list(self.anchor_z)
        d["gh_nodes"] = list(self.gh_nodes)
        return d


@dataclass
class SMFFit:
    """The result of :func:`fit_smf`."""

    config: FitConfig
    prior: SMFPrior
    data: SMFData
    map: MAPResult
    samples: dict[str, np.ndarray]  # name -> (chains, draws)
    diagnostics: dict
    mc_error: dict
    bootstrap: dict
    extrapolated_anchors: list[float]
    warnings: list[str] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)
    mcmc: object | None = None
    compression: dict = field(default_factory=dict)
    #: the error of the deterministic rules (:func:`popmodel.smf.compression.quadrature_error_check`)
    quadrature_error: dict = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return self.prior.names

    @classmethod
    def load(cls, path: str | os.PathLike) -> SMFResult:
        """Read a mass-function result folder (``popmodel fit-smf`` / ``write_smf_results``).

        Returns a :class:`popmodel.io.smf.SMFResult` (the posterior draws and what they imply:
        ``phi``, ``rho_star``), not an :class:`SMFFit`: the catalogue arrays and the sampler
        are not stored. Delegates to :func:`popmodel.io.smf.load_smf` (imported here, when
        called: this module does not import the io layer).
        """
        from popmodel.io.smf import load_smf

        return load_smf(path)

    def rho_star(self, z: object, mass_range: tuple[float | None, float | None] = (8.0, 13.0)):
        """Posterior percentiles of log10 rho_* [Msun Mpc^-3] at redshift(s) z: a labelled
        astropy QTable (``z``, ``log_rho_star_p16/p50/p84``, ``extrapolated`` outside the
        data's redshifts), as ``SMFResult.rho_star`` gives for a saved fit.
        """
        from popmodel.smf.derived import rho_star_table

        return rho_star_table(self.draws(), z, mass_range, self.data.z_data_range)

    def draws(self) -> ContinuityParams:
        """All posterior draws, chains concatenated, as a batched ContinuityParams."""
        flat = {k: v.reshape(-1) for k, v in self.samples.items() if k in self.prior.names}
        return ContinuityParams.from_dict(flat, self.prior.anchor_z)

    def summary_lines(self) -> list[str]:
        lines = [self.data.report.summary()]
        lines += self.diagnostics.get("plain_words", [])
        mc = self.mc_error
        status = mc.get("status", "ok")
        if mc.get("sd_log_l_total") is None:
            lines.append(f"Monte Carlo error of ln L-hat: {status}")
        else:
            lines.append(
                f"Monte Carlo error: median per-galaxy effective sample size "
                f"{mc['ess_median']:.1f} (minimum {mc['ess_min']:.2f}); "
                f"sd of ln L-hat {mc['sd_log_l_total']:.2f}"
                + ("" if status == "ok" else f" ({status})")
            )
        if self.bootstrap:
            b = self.bootstrap
            bstat = b.get("status", "ok")
            if b.get("max_rms_shift_sigma") is None:
                lines.append(f"Monte Carlo shift of the MAP (bootstrap): {bstat}")
            else:
                lines.append(
                    f"the finite posterior samples move the MAP by up to "
                    f"{b['max_rms_shift_sigma']:.2f} sigma (rms over "
                    f"{b.get('n_boot', len(b['shift_sigma']))} bootstrap replicates; warning above "
                    f"{MC_SHIFT_WARN_SIGMA})" + ("" if bstat == "ok" else f" ({bstat})")
                )
        if self.extrapolated_anchors:
            lines.append(
                f"anchor redshifts {self.extrapolated_anchors} lie outside the data's redshift "
                f"range {self.data.z_data_range[0]:.2f}-{self.data.z_data_range[1]:.2f}: the "
                "model there is an extrapolation"
            )
        lines += [f"WARNING: {w}" for w in self.warnings]
        if self.compression.get("n_compressed"):
            lines.append(compression_summary(self.compression)
                         + f"; representation used: {self.compression['representation']}")
        if self.quadrature_error.get("sd_log_l") is not None:
            lines.append(quadrature_error_summary(self.quadrature_error))
        return lines


#: NUTS's default maximum tree depth (numpyro): a transition of 2^10 - 1 steps hit it.
MAX_TREE_DEPTH = 10


def _sampler_stats(extra: dict, n_chains: int) -> dict:
    """E-BFMI per chain (Betancourt 2016, arXiv:1604.00695; arviz.bfmi) and the number of
    transitions that hit the maximum tree depth, from NUMPyro's extra fields."""
    import arviz as az

    out: dict = {}
    if "energy" in extra:
        energy = np.asarray(extra["energy"], float).reshape(n_chains, -1)
        out["e_bfmi"] = [float(v) for v in az.bfmi(energy)]
    if "num_steps" in extra:
        steps = np.asarray(extra["num_steps"])
        out["tree_depth_saturated"] = int(np.sum(steps >= 2**MAX_TREE_DEPTH - 1))
    return out


def rhat_noise(ess: float, n_chains: int, n_params: int, threshold: float = 1.01) -> float:
    """Probability that independent draws alone push the largest R-hat of ``n_params``
    parameters above ``threshold``, each parameter having a bulk ESS of ``ess``.

    ArviZ's R-hat (Vehtari et al. 2021, Bayesian Anal. 16, 667) splits each of the
    ``n_chains`` chains in two and takes the larger of the bulk and folded rank-normalised
    values. For ``2 n_chains`` halves of ``n = ess / (2 n_chains)`` independent draws,
    ``R-hat^2 ~ 1 + (F - 1) / n`` with ``F ~ chi^2_{2m-1} / (2m - 1)`` (m = n_chains), so one
    of the two statistics exceeds the threshold with probability
    ``P(chi^2_{2m-1} > (2m - 1)(1 + n (threshold^2 - 1)))``; twice that for the pair (their
    overlap is small at small probabilities), and independence across parameters.
    Checked against a brute-force simulation with ArviZ in the tests.
    """
    from scipy.stats import chi2

    k = 2 * n_chains - 1
    n = ess / (2 * n_chains)
    p1 = min(1.0, 2.0 * float(chi2.sf(k * (1.0 + n * (threshold**2 - 1.0)), k)))
    return 1.0 - (1.0 - p1) ** n_params


def ess_for_rhat(n_chains: int, n_params: int, threshold: float = 1.01,
                 probability: float = 0.1) -> float:
    """The bulk ESS per parameter at which independent draws leave every R-hat below
    ``threshold`` with probability ``1 - probability`` (:func:`rhat_noise` inverted)."""
    from scipy.optimize import brentq

    return float(brentq(lambda e: rhat_noise(e, n_chains, n_params, threshold) - probability,
                        10.0, 1e7))


#: Bulk and tail ESS wanted per chain, 400 for 4 chains (Vehtari et al. 2021, Bayesian Analysis
#: 16, 667: below it R-hat and the ESS estimates themselves are unreliable).
ESS_PER_CHAIN = 100


#: the most sampled parameters for which :func:`adapt_metric` re-estimates the metric
ADAPT_MAX_PARAMETERS = 16
#: the fewest warm-up iterations for which it does
ADAPT_MIN_WARMUP = 300


def adapt_metric(cfg: FitConfig, n_parameters: int) -> bool:
    """Whether NUTS re-estimates its dense metric in warm-up (``cfg.adapt_mass_matrix`` None).

    The Laplace covariance at the MAP starts the metric either way. Re-estimating it (NumPyro's
    windows of 25, 50, 100, ... warm-up draws) pays where the posterior is wider than Laplace
    along a weakly constrained direction, and only when the windows hold several times more
    draws than there are parameters. Measured on the README example's mock (11 parameters,
    the prior uniform in phi*, 4 chains): re-estimated, 4 x (500 + 500) iterations reached
    R-hat 1.006, bulk / tail ESS 395 / 342 and 3 divergences, where the Laplace metric with
    4 x (300 + 250) left R-hat 1.018, ESS 128 / 62 and 27 divergences. On the 3D-HST sample
    (36 parameters with the density terms) re-estimation stalled: 4 x (400 + 400) had not
    finished after 45 minutes (the early windows' 36-D estimates are nearly singular, and the
    step size collapses), where the Laplace metric runs at 7-12 leapfrog steps per draw. So:
    re-estimate for at most :data:`ADAPT_MAX_PARAMETERS` sampled parameters and at least
    :data:`ADAPT_MIN_WARMUP` warm-up iterations.
    """
    if cfg.adapt_mass_matrix is not None:
        return bool(cfg.adapt_mass_matrix)
    return n_parameters <= ADAPT_MAX_PARAMETERS and cfg.num_warmup >= ADAPT_MIN_WARMUP


def _plain_diagnostics(samples: dict[str, np.ndarray], divergences: int, n_draws: int,
                       stats: dict | None = None) -> dict:
    import logging

    import arviz as az

    arviz_log = logging.getLogger("arviz")
    level = arviz_log.level
    arviz_log.setLevel(logging.ERROR)  # one chain: arviz logs a shape warning; said below instead
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            idata = az.from_dict(posterior=samples)
            # unrounded: az.summary rounds to 2 decimals by default, which turns an R-hat of
            # 1.005-1.01 into "1.01" and fails the bar that the unrounded value meets
            summ = az.summary(idata, kind="diagnostics", round_to="none")
    finally:
        arviz_log.setLevel(level)
    rhat = {k: float(summ.loc[k, "r_hat"]) for k in samples}
    ess = {k: float(summ.loc[k, "ess_bulk"]) for k in samples}
    ess_tail = {k: float(summ.loc[k, "ess_tail"]) for k in samples}
    stats = stats or {}
    n_chains = next(iter(samples.values())).shape[0]
    need_ess = ESS_PER_CHAIN * n_chains
    words = []
    max_rhat = max(rhat.values())
    min_ess = min(ess.values())
    if n_chains > 1:
        line = (f"R-hat: largest {max_rhat:.3f} ({max(rhat, key=rhat.get)}); "
                + ("all below 1.01, the chains agree" if max_rhat < 1.01 else
                   "ABOVE 1.01: the chains disagree, run longer"))
        if max_rhat >= 1.01:
            need = ess_for_rhat(n_chains, len(rhat))
            line += (f" (even independent draws leave all {len(rhat)} R-hats below 1.01 in 9 of "
                     f"10 runs only at a bulk ESS of about {need:.0f} each; the smallest here "
                     f"is {min_ess:.0f})")
        words.append(line)
    else:
        words.append("R-hat: not computed reliably from one chain; run several chains")
    words.append(
        f"effective sample size (bulk): smallest {min_ess:.0f} ({min(ess, key=ess.get)}) of "
        f"{n_draws} draws" + ("" if min_ess >= need_ess else
                              f"; FEWER THAN {need_ess} ({ESS_PER_CHAIN} per chain): run longer")
    )
    words.append(
        f"{divergences} divergent transitions"
        + ("" if divergences == 0 else " - the posterior may be biased; raise target_accept")
    )
    min_tail = min(ess_tail.values())
    words.append(f"effective sample size (tail): smallest {min_tail:.0f} "
                 f"({min(ess_tail, key=ess_tail.get)})" + ("" if min_tail >= need_ess else
                                                          f"; FEWER THAN {need_ess}: run longer"))
    bfmi = stats.get("e_bfmi")
    if bfmi:
        words.append("E-BFMI per chain " + ", ".join(f"{v:.2f}" for v in bfmi)
                     + ("" if min(bfmi) > 0.3 else
                        " - BELOW 0.3: the momentum resampling explores the energy poorly"))
    sat = stats.get("tree_depth_saturated")
    if sat:
        words.append(f"{sat} transitions hit the maximum tree depth ({MAX_TREE_DEPTH}): the "
                     "sampler's trajectories were cut short")
    ok = (max_rhat < 1.01 and min_ess >= need_ess and min_tail >= need_ess and divergences == 0
          and (not bfmi or min(bfmi) > 0.3) and not sat)
    return {"r_hat": rhat, "ess_bulk": ess, "ess_tail": ess_tail, "divergences": int(divergences),
            "e_bfmi": bfmi, "tree_depth_saturated": sat, "ess_required": need_ess, "ok": bool(ok),
            "plain_words": words}


_logger = logging.getLogger(__name__)


def _log_line(line: str) -> None:
    """A progress line to the module's logger; ``WARNING: ...`` lines at WARNING."""
    _logger.log(logging.WARNING if line.startswith("WARNING:") else logging.INFO, line)


def fit_smf(
    catalog: PosteriorCatalog,
    survey: Survey,
    config: FitConfig | None = None,
    prior: SMFPrior | None = None,
    *,
    log: Callable[[str], None] | None = None,
    interim_prior: object | None = None,
) -> SMFFit:
    """Fit the Leja et al. (2020) continuity model to a posterior catalogue.

    Args:
        catalog: per-galaxy posterior samples (interim prior in ``log_prior``, flat if absent;
            SFR samples, if any, are marginalised over), or closed-form posteriors.
        survey: fields, completeness and cosmology.
        config: fit settings.
        prior: priors (default :class:`SMFPrior` with ``config.anchor_z``).
        log: where progress messages go (default: the ``popmodel.smf.fit`` logger, at INFO,
            and at WARNING for the lines that start with ``WARNING:``).
        interim_prior: the SED fitter's prior as a Python object (an
            :class:`popmodel.catalog.InterimPrior` or a callable ``f(log_mass, z)``), or any
            form ``config.interim_prior`` takes; overrides ``config.interim_prior``.

    Returns:
        An :class:`SMFFit` with draws, MAP, diagnostics and Monte Carlo error checks.
    """
    log = log or _log_line
    from popmodel.conventions import conform_for_fit  # one cosmology and IMF per fit
    catalog = conform_for_fit(catalog, survey, log)  # notes logged, kept in catalog.meta
    require_x64()
    cfg = config or FitConfig()
    from popmodel.interim import describe_interim_prior, resolve_interim_prior

    spec = interim_prior if interim_prior is not None else cfg.interim_prior
    catalog, prior_obj, note = resolve_interim_prior(catalog, spec)
    if interim_prior is not None and not isinstance(interim_prior, str):
        cfg = dataclasses.replace(cfg, interim_prior=describe_interim_prior(interim_prior))
    log(note)
    read = catalog.meta.get("read_report") or {}
    if read.get("n_failed"):
        log(f"WARNING: {read['n_failed']} of {read.get('n_rows')} galaxies of the catalogue were "
            "excluded when it was read, their SED fit having failed (e.g. "
            + ", ".join(map(str, read.get("failed_ids", [])[:5])) + "): " + str(read.get("note")))
    if prior is None:
        prior = SMFPrior(anchor_z=cfg.anchor_z, amplitude=cfg.amplitude_prior)
    else:  # the recorded configuration names the prior that was used
        cfg = dataclasses.replace(cfg, amplitude_prior=prior.amplitude)
    if tuple(prior.anchor_z) != tuple(cfg.anchor_z):
        raise ValueError("prior.anchor_z and config.anchor_z differ")
    timing = {}
    t0 = time.perf_counter()
    prep = {"selection": cfg.selection, "chunk_size": cfg.chunk_size,
            "dtype": np.dtype(cfg.dtype).type, "gh_nodes": cfg.gh_nodes,
            "cosmic_variance": cfg.cosmic_variance, "slice_dz": cfg.slice_dz,
            "interim_prior": prior_obj}
    data = prepare_smf_data(catalog, survey, posterior=cfg.posterior, **prep)
    timing["prepare_s"] = time.perf_counter() - t0
    log(data.report.summary())
    from popmodel.represent import RepresentationReport

    log(RepresentationReport(**data.report.representation).summary())
    for line in data.report.count_lines():
        log(line)
    check_field_coverage(data.report)  # a field missing from the catalogue: before any fit
    if data.density is not None:
        prior = dataclasses.replace(prior, density_terms=data.density.labels)
        sig = data.density.sigma_dm
        log(f"cosmic variance: {data.density.n_terms} density terms (fields x slices of "
            f"dz ~ {data.density.dz}), sigma_DM {sig.min():.3f}-{sig.max():.3f}")
    elif cfg.cosmic_variance:
        log("cosmic variance: no field has a known geometry (side lengths or sigma_dm); "
            "no density terms")

    def release() -> None:  # large fits only, by run_nuts's measure: recompiling costs
        if n_nodes(data.arrays) >= RELEASE_MIN_NODES:  # seconds small fits would feel
            release_memory()

    t0 = time.perf_counter()
    log("finding the MAP (L-BFGS) and its Laplace covariance ...")
    mp = find_map(data, prior)
    timing["map_s"] = time.perf_counter() - t0
    release()  # the Hessian's program: not needed again
    log(f"MAP after {mp.n_evaluations} evaluations ({timing['map_s']:.1f} s): {mp.message}")
    warn = []
    compression = {}
    quadrature = {}
    if cfg.posterior != "samples" and cfg.compression_draws > 0:
        compression, reference = compression_check(
            catalog, survey, data, mp, prior, prepare_kwargs=prep, n_draws=cfg.compression_draws,
            seed=cfg.seed, return_reference=True)
        timing["compression_check_s"] = compression["seconds"]
        log(compression_summary(compression))
        compression["representation"] = cfg.posterior
        if not compression["ok"] and cfg.posterior == "auto":
            log("falling back to the posterior samples for the galaxies whose rules were fitted "
                "to them; finding the MAP again ...")
            compression["representation"] = "samples (fallback)"
            data = reference  # prepared once, by the check
            t0 = time.perf_counter()
            # from the usual start: started at the compressed MAP, L-BFGS on the real 3D-HST
            # samples took 453 evaluations and stopped short (Newton decrement 6e-3)
            mp = find_map(data, prior)
            log(f"MAP after {mp.n_evaluations} evaluations: {mp.message}")
            timing["map_s"] += time.perf_counter() - t0
        elif not compression["ok"]:
            warn.append("the Gauss-Hermite compression moves ln L across the posterior by more "
                        f"than {compression['threshold']} (sd {compression['sd_difference']:.3f});"
                        " use posterior='auto' or 'samples'")
    if cfg.posterior != "samples" and cfg.compression_draws > 0:
        quadrature = quadrature_error_check(
            catalog, survey, data, mp, prior, prepare_kwargs=prep, posterior=cfg.posterior,
            n_draws=cfg.compression_draws, seed=cfg.seed)
        timing["quadrature_check_s"] = quadrature["seconds"]
        log(quadrature_error_summary(quadrature))
        if quadrature.get("sd_log_l") is not None and not quadrature["ok"]:
            warn.append(quadrature_error_summary(quadrature))
    release()  # the checks' programs (twice the nodes) before the sampler's
    if not mp.converged:
        warn.append(f"the MAP optimisation did not converge cleanly ({mp.message})")
    p_map = mp.continuity_params(prior.anchor_z)
    mc = mc_error_diagnostics(data, p_map)
    if mc["n_too_few_samples"]:
        warn.append(f"Monte Carlo error: {mc['status']}")
    boot = {}
    if cfg.n_bootstrap > 0:
        t0 = time.perf_counter()
        boot = bootstrap_map_shift(data, prior, mp, n_boot=cfg.n_bootstrap, seed=cfg.seed)
        timing["bootstrap_s"] = time.perf_counter() - t0
        if boot["warn"]:
            worst = max(boot["rms_shift_sigma"], key=boot["rms_shift_sigma"].get)
            warn.append(
                f"Monte Carlo noise of the posterior samples moves the MAP by "
                f"{boot['max_rms_shift_sigma']:.2f} sigma ({worst}); use more samples per galaxy"
            )
    t0 = time.perf_counter()
    mcmc = None
    if cfg.method == "nuts":
        adapt = adapt_metric(cfg, len(prior.latent_names))
        log(f"NUTS: {cfg.num_chains} chains x ({cfg.num_warmup} warm-up + {cfg.num_samples} draws), "
            + ("the dense metric re-estimated in warm-up from the Laplace covariance" if adapt
               else "the Laplace covariance as the dense metric"))
        mcmc = run_nuts(
            data, prior, mp, num_warmup=cfg.num_warmup, num_samples=cfg.num_samples,
            num_chains=cfg.num_chains, seed=cfg.seed, target_accept=cfg.target_accept,
            dense_mass=cfg.dense_mass, progress_bar=cfg.progress_bar,
            init_spread=cfg.init_spread, adapt_mass_matrix=adapt,
            chain_method=cfg.chain_method,
        )
        raw = mcmc.get_samples(group_by_chain=True)
        keep = prior.names + list(prior.density_terms)
        samples = {k: np.asarray(raw[k], dtype=np.float64) for k in keep}
        extra = mcmc.get_extra_fields()
        divergences = int(np.sum(np.asarray(extra["diverging"])))
        stats = _sampler_stats(extra, cfg.num_chains)
        n_grad = int(np.sum(np.asarray(mcmc.get_extra_fields()["num_steps"])))
        timing["nuts_sampling_gradients"] = n_grad
    elif cfg.method == "laplace":
        samples = _laplace_draws(mp, prior, data, cfg)
        divergences = 0
    else:
        raise ValueError(f"method must be 'nuts' or 'laplace', got {cfg.method!r}")
    timing["sampling_s"] = time.perf_counter() - t0
    release()  # the sampler's program, before the results are written
    if cfg.method == "nuts":
        diag = _plain_diagnostics(samples, divergences, cfg.num_samples * cfg.num_chains, stats)
    else:
        diag = {"r_hat": {k: float("nan") for k in samples},
                "ess_bulk": {k: float(v.size) for k, v in samples.items()},
                "divergences": 0, "ok": True,
                "plain_words": [("Laplace draws (Gaussian approximation at the MAP): independent, "
                                "no sampler diagnostics apply; use method='nuts' for results")]}
    if cfg.method == "nuts" and not diag["ok"]:
        warn.append("sampler diagnostics are not clean: " + "; ".join(diag["plain_words"]))
    weak = prior_dominated(samples, prior)
    diag["prior_dominated"] = weak
    if cfg.method == "nuts":
        diag["metric"] = "adapted in warm-up" if adapt else "Laplace"
    if weak:
        warn.append(
            "the data barely constrain " + ", ".join(
                f"{n} (posterior sd {v['posterior_sd']:.3g} > {PRIOR_DOMINATED_FRACTION:g} x "
                f"prior sd {v['prior_sd']:.3g})" for n, v in weak.items())
            + ": their posteriors are mostly the prior; do not read them as measurements "
            "(more galaxies, or a narrower redshift range / informative prior, would help)"
        )
    zlo, zhi = data.z_data_range
    extrap = [z for z in prior.anchor_z if z < zlo - 1e-9 or z > zhi + 1e-9]  # fields' z ranges
    fit = SMFFit(cfg, prior, data, mp, samples, diag, mc, boot, extrap, warn, timing, mcmc,
                 compression, quadrature)
    for line in fit.summary_lines():
        log(line)
    return fit


def _laplace_draws(mp: MAPResult, prior: SMFPrior, data: SMFData, cfg: FitConfig) -> dict[str, np.ndarray]:
    d = laplace_draws(mp, prior, cfg.num_samples * cfg.num_chains, cfg.seed, data=data)
    return {k: v.reshape(cfg.num_chains, cfg.num_samples) for k, v in d.items()}


def prior_sd(prior: SMFPrior, name: str) -> float:
    """Standard deviation of a mass-function parameter's prior (uniform or truncated normal)."""
    lo, hi = prior.bounds[name]
    if name in prior.normal:
        from scipy.stats import truncnorm

        mu, sd = prior.normal[name]
        return float(truncnorm.std((lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd))
    if prior.linear_amplitude(name):
        from scipy.stats import truncexpon

        r = np.log(10.0)  # hi - x follows an exponential of rate ln 10 truncated at hi - lo
        return float(truncexpon.std((hi - lo) * r, scale=1.0 / r))
    return float((hi - lo) / np.sqrt(12.0))


def prior_dominated(samples: dict[str, np.ndarray], prior: SMFPrior,
                    fraction: float = PRIOR_DOMINATED_FRACTION) -> dict[str, dict[str, float]]:
    """Mass-function parameters whose posterior sd exceeds ``fraction`` of their prior's sd.

    Such a parameter is set by the prior, not by the data (a single galaxy, a handful of
    galaxies, an anchor far outside the data's redshifts). The density terms are left out:
    they are nuisance parameters whose posteriors are expected to stay near their priors.

    Returns:
        name -> ``{"posterior_sd", "prior_sd"}`` for each such parameter (empty: none).
    """
    out = {}
    for n in prior.names:
        if n not in samples:
            continue
        post = float(np.std(np.asarray(samples[n], dtype=float)))
        ref = prior_sd(prior, n)
        if post > fraction * ref:
            out[n] = {"posterior_sd": post, "prior_sd": ref}
    return out
