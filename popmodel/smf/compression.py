r"""Is a compressed likelihood's effect on the fit negligible? The check behind ``posterior="auto"``.

What is measured
----------------
Compressing a galaxy's posterior samples into a Gauss-Hermite rule (:mod:`popmodel.compress`)
replaces its importance-sampled likelihood term, which carries the samples' Monte Carlo error,
by a quadrature of a Gaussian with the samples' mean and covariance, which carries the error of
that Gaussian approximation. What matters to the fit is how the *total* ln L(theta) moves
across the posterior (a constant offset changes nothing), so the check draws ``n_draws``
parameter points from the MAP's Laplace approximation (mass function and density terms) and
evaluates, at each,

* ``D = ln L_compressed - ln L_samples``: the scale issue's number is its standard deviation
  over the draws (``sd_difference``), to be kept below 0.1;
* ``H = ln L_A - ln L_B``, where A and B each keep a random half of the samples of every
  compressed galaxy (and all samples of the others, whose terms cancel): ``sd(H) / 2``
  (``sd_samples_noise``) is the scale of the samples' own Monte Carlo noise in ln L, the
  resolution of any comparison with them.

Decision: the compression is accepted when ``sd(D) < threshold`` (0.1), or when ``sd(D)`` is
below the samples' own noise, taken as the larger of 1.5 ``sd(H) / 2`` (the halves
underestimate the noise of heavy-tailed weights, below) and the delta-method standard
deviation of the samples' ln L-hat at the MAP over the compared galaxies
(``sd_samples_delta_method``, :func:`popmodel.smf.inference.mc_error_diagnostics`): then the
compressed likelihood differs from the samples' by less than the samples' own error, and the
compressed one, which has no Monte Carlo error, is kept. The delta-method term matters when
the samples are poor importance samples of the mass function: the 3D-HST sample given as 24
draws per galaxy from its percentile posteriors has ``sd(D)`` = 1.55 against halves of 0.61,
while the samples' ln L-hat has a delta-method sd of about 27 (broad photometric redshifts
spread a galaxy's samples across the steep parts of the mass function and the volume). Dividing out an
informative interim prior makes the weights heavy-tailed: on a 5,400-galaxy mock with a
Prospector-beta-like prior and 32 samples per galaxy, ``sd(D)`` = 0.77 against ``sd(H) / 2`` =
0.54. Otherwise
``posterior="auto"`` in :func:`popmodel.smf.fit.fit_smf` falls back to the samples and says so.

Why both: at 10^4-10^5 galaxies with tens to hundreds of samples each, the samples' noise in
ln L across the posterior is 0.1-0.7 by itself, so ``sd(D) < 0.1`` cannot be reached by any
representation compared with the samples. Measured on a 2,075-galaxy mock with Gaussian
posteriors (``tests/test_compression_check.py``): with 32 samples, ``sd(D)`` = 0.29 while two
independent sets of 32 samples differ by an sd of 0.82 (0.58 each), and ``sd(H) / 2`` = 0.43;
bimodal mass posteriors (peaks 0.8 dex apart) forced into the Gaussian rule give ``sd(D)`` = 22
against a noise of 0.28. The halves are a rough gauge: with heavy-tailed importance weights
(broad posteriors on the exponential cut-off) the noise does not scale as 1/S, and
``sd(H) / 2`` measured 0.7x (32 samples) and 2.1x (128 samples) the noise of the full set.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from popmodel.catalog import PosteriorCatalog
from popmodel.smf.data import SMFData, point_estimates, prepare_smf_data
from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.inference import MAPResult, laplace_draws
from popmodel.smf.likelihood import log_likelihood
from popmodel.smf.model import SMFPrior
from popmodel.survey import Survey

__all__ = ["COMPRESSION_SD_THRESHOLD", "compression_check", "compression_summary",
           "quadrature_error_check", "quadrature_error_summary", "random_halves"]


def _kinds(catalog: PosteriorCatalog) -> np.ndarray:
    """``(N,)`` representation of each galaxy (:mod:`popmodel.represent`); all "samples" for a
    catalogue that was not prepared by it."""
    comp = catalog.meta.get("compression") or {}
    if "kind" in comp:
        return np.asarray(comp["kind"], dtype=object)
    return np.full(catalog.n_galaxies, "samples", dtype=object)

#: sd, over posterior draws, of ln L_compressed - ln L_samples accepted outright.
COMPRESSION_SD_THRESHOLD = 0.1
#: The halves underestimate the noise of heavy-tailed importance weights (measured 0.7x at 32
#: samples per galaxy, module doc); the samples' noise is taken as this many times sd(H) / 2.
NOISE_ALLOWANCE = 1.5


def random_halves(catalog: PosteriorCatalog, galaxies: np.ndarray, seed: int = 0
                  ) -> tuple[PosteriorCatalog, PosteriorCatalog]:
    """Split the samples of the selected galaxies (``(N,)`` bool) at random into two halves
    (sizes differing by at most one; a seeded random order, so that samples stored in order,
    as sorted or MCMC-chain samples are, do not split by value); the other galaxies keep every
    sample in both. Galaxies with a single sample keep it in both. Point estimates are fixed
    to those of the whole posterior, so survey cuts select the same galaxies from either half.
    """
    m_obs, z_obs, _ = point_estimates(catalog)
    cat = dataclasses.replace(catalog, obs_log_mass=m_obs, obs_z=z_obs)
    gi = cat.galaxy_index
    order = np.lexsort((np.random.default_rng(seed).random(gi.size), gi))
    rank = np.empty(gi.size, np.int64)
    rank[order] = np.arange(gi.size) - cat.offsets[:-1][gi[order]]
    split = (np.asarray(galaxies, bool) & (cat.n_samples >= 2))[gi]
    return cat.take_samples(~split | (rank % 2 == 0)), cat.take_samples(~split | (rank % 2 == 1))


def _as_draw_arrays(draws: dict[str, np.ndarray], prior: SMFPrior) -> tuple[ContinuityParams, np.ndarray | None]:
    p = ContinuityParams.from_dict({n: jnp.asarray(draws[n]) for n in prior.names}, prior.anchor_z)
    delta = None
    if prior.density_terms:
        delta = jnp.stack([jnp.asarray(draws[t]) for t in prior.density_terms], axis=-1)
    return p, delta


@jax.jit
def _lnl(pi: ContinuityParams, di: jax.Array | None, arrays: object) -> jax.Array:
    return log_likelihood(pi, arrays, delta=di)


def _lnl_at_draws(p: ContinuityParams, delta: jax.Array | None, arrays: list, n_draws: int
                  ) -> np.ndarray:
    """``(len(arrays), n_draws)`` ln L of each data set at each parameter draw."""
    vals = np.empty((len(arrays), n_draws))
    for d in range(n_draws):
        pd = jax.tree_util.tree_map(lambda a, d=d: a[d], p)
        dd = None if delta is None else delta[d]
        for j, arr in enumerate(arrays):
            vals[j, d] = float(_lnl(pd, dd, arr))
    return vals


def compression_check(
    catalog: PosteriorCatalog,
    survey: Survey,
    compressed: SMFData,
    mp: MAPResult,
    prior: SMFPrior,
    *,
    prepare_kwargs: dict | None = None,
    n_draws: int = 200,
    seed: int = 0,
    threshold: float = COMPRESSION_SD_THRESHOLD,
    return_reference: bool = False,
) -> dict | tuple[dict, SMFData | None]:
    """Compare the compressed likelihood with the samples' one over Laplace draws (module doc).

    Only the galaxies whose rules were fitted to their samples (Gaussian or split normal) are
    compared; galaxies with a closed-form posterior keep their exact rule on both sides (their
    samples, if any, are random draws of it: their accuracy is the quadrature error's,
    :func:`quadrature_error_check`).

    Args:
        catalog: the posterior samples that ``compressed`` was prepared from.
        survey: the survey.
        compressed: :func:`prepare_smf_data` with ``posterior="auto"`` or ``"gauss-hermite"``.
        mp: the MAP (and Laplace covariance) of the fit on ``compressed``.
        prior: the fit's prior (with its density terms).
        prepare_kwargs: the other arguments given to :func:`prepare_smf_data` (selection,
            dtype, gh_nodes, cosmic_variance, ...), reused for the samples' data.
        n_draws: Laplace draws.
        seed: seed of the draws and of the random halves.
        threshold: the sd of D below which the compression is accepted outright.
        return_reference: also return the reference data (the samples of the compared
            galaxies), so that a fit that falls back to them need not prepare them again.

    Returns:
        A dict: ``n_draws``, ``n_compressed`` (galaxies), ``n_galaxies``, ``sd_difference``
        (sd of D), ``sd_samples_noise`` (sd(H) / 2), ``threshold``, ``ok``, ``seconds``.
    """
    t0 = time.perf_counter()
    kw = {k: v for k, v in (prepare_kwargs or {}).items() if k != "posterior"}
    kinds = _kinds(compressed.catalog)
    quad = np.isin(kinds, ("gaussian", "split-normal"))
    out = {"n_draws": int(n_draws), "n_compressed": int(quad.sum()),
           "n_galaxies": int(compressed.catalog.n_galaxies), "threshold": float(threshold)}
    if not quad.any():
        res = {**out, "sd_difference": None, "sd_samples_noise": None, "ok": True,
               "status": "not applicable: no galaxy's rule was fitted to its samples",
               "seconds": time.perf_counter() - t0}
        return (res, None) if return_reference else res
    full = prepare_smf_data(catalog, survey, posterior="reference", **kw)
    if not np.array_equal(full.catalog.ids, compressed.catalog.ids):
        raise ValueError("the compressed data were not prepared from this catalogue and survey "
                         "(their galaxies differ)")
    half_a, half_b = random_halves(full.catalog, quad, seed)  # same galaxies, same order
    data = [compressed.arrays, full.arrays,
            prepare_smf_data(half_a, survey, posterior="samples", **kw).arrays,
            prepare_smf_data(half_b, survey, posterior="samples", **kw).arrays]
    p, delta = _as_draw_arrays(laplace_draws(mp, prior, n_draws, seed, data=compressed), prior)
    vals = _lnl_at_draws(p, delta, data, n_draws)
    sd_d = float(np.std(vals[0] - vals[1], ddof=1))
    noise = float(np.std(vals[2] - vals[3], ddof=1) / 2.0)
    # the samples' own error at the MAP, by the delta method, over the compared galaxies
    from popmodel.smf.inference import mc_error_diagnostics

    var = mc_error_diagnostics(full, mp.continuity_params(prior.anchor_z))["var_log_l"]
    delta_sd = float(np.sqrt(np.nansum(np.where(quad, var, np.nan)))) if np.any(quad) else 0.0
    res = {**out, "sd_difference": sd_d, "sd_samples_noise": noise,
           "sd_samples_delta_method": delta_sd, "status": "ok",
           "ok": bool(sd_d < threshold or sd_d < NOISE_ALLOWANCE * noise or sd_d < delta_sd),
           "seconds": time.perf_counter() - t0}
    return (res, full) if return_reference else res


#: The quadrature error is small when the sd of ln L(rule) - ln L(twice the nodes) is below this.
QUADRATURE_SD_THRESHOLD = 0.1

#: What the fit's log says when the quadrature error is not small. More nodes per piece
#: (``gh_nodes``) help only where the integrand is smooth over a galaxy's likelihood; measured on
#: the 3D-HST sample written as 24 samples per galaxy (sd 1.09, MAP move 0.31 sigma), 8 redshift
#: nodes instead of 3 left the sd at 0.91: the error came from broad fitted redshift likelihoods
#: reaching far past the last anchor, where the quadratic evolution is extrapolated, and from
#: the density terms' steps at the slice edges.
QUADRATURE_ADVICE = (
    "compare with a fit of more samples per galaxy (or posterior='samples' where they are "
    "many); raising gh_nodes helps only where the integrand is smooth, not for redshift "
    "likelihoods that reach beyond the last anchor or straddle a density-slice edge")


def quadrature_error_check(
    catalog: PosteriorCatalog,
    survey: Survey,
    data: SMFData,
    mp: MAPResult,
    prior: SMFPrior,
    *,
    prepare_kwargs: dict | None = None,
    posterior: str = "auto",
    n_draws: int = 200,
    seed: int = 0,
    map_shift: bool = True,
) -> dict:
    """The error of the deterministic rules: ln L with the rules against ln L with twice their
    nodes per piece, over ``n_draws`` Laplace draws, and the MAP's move between the two.

    A rule's error is a quadrature error, not Monte Carlo noise; doubling the nodes of every
    piece measures it (the error of the finer rule is far smaller). The rules are good when
    the sd over the draws (``sd_log_l``) is below :data:`QUADRATURE_SD_THRESHOLD` and the MAP
    moves by a small fraction of its Laplace sigma (``map_shift_sigma``, the largest over the
    mass-function parameters; ``map_shift_sigma_density`` over the density terms).

    The MAP's move is the Newton step from the MAP of the rules to that of the finer rules,
    ``-Sigma (grad U_fine - grad U_rule)`` at the MAP (U the negative log posterior, Sigma the
    Laplace covariance, all on the unconstrained scale, where a parameter's shift over its
    sigma is the same as on its own scale to first order). Subtracting the rules' own gradient
    removes the optimiser's stopping error; a second optimisation would instead measure that
    error (on the real 3D-HST sample, L-BFGS stops with a Newton decrement of 0.05, a few
    tenths of a sigma from the peak, far more than the rules move it).

    Returns:
        A dict: ``n_rule_galaxies``, ``n_draws``, ``sd_log_l``, ``mean_difference``,
        ``map_shift_sigma`` (None without ``map_shift``), ``worst_parameter``, ``ok``,
        ``threshold``, ``nodes`` (total, and with twice the nodes), ``seconds``.
    """
    from popmodel.smf.inference import _Potential

    t0 = time.perf_counter()
    kinds = _kinds(data.catalog)
    rule = kinds != "samples"
    out = {"n_rule_galaxies": int(rule.sum()), "n_draws": int(n_draws),
           "threshold": QUADRATURE_SD_THRESHOLD}
    if not rule.any():
        return {**out, "sd_log_l": None, "map_shift_sigma": None, "ok": True,
                "status": "not applicable: no galaxy is on a rule",
                "seconds": time.perf_counter() - t0}
    kw = {k: v for k, v in (prepare_kwargs or {}).items() if k != "posterior"}
    fine = prepare_smf_data(catalog, survey, posterior=posterior, node_factor=2,
                            kinds=np.asarray(kinds), **kw)
    if not np.array_equal(fine.catalog.ids, data.catalog.ids):
        raise ValueError("the finer rule selected other galaxies")
    p, delta = _as_draw_arrays(laplace_draws(mp, prior, n_draws, seed, data=data), prior)
    vals = _lnl_at_draws(p, delta, [data.arrays, fine.arrays], n_draws)
    diff = vals[0] - vals[1]
    sd = float(np.std(diff, ddof=1))
    shift, worst, shift_density, mf = None, None, None, {}
    if map_shift:
        pot = _Potential(prior, data.arrays)
        u = jnp.asarray(mp.u)
        dg = np.asarray(pot.grad(u, fine.arrays)) - np.asarray(pot.grad(u, data.arrays))
        step = -np.asarray(mp.cov_u) @ dg
        rel_u = np.abs(step) / np.sqrt(np.diag(np.asarray(mp.cov_u)))
        where = pot.unravel(jnp.arange(u.size, dtype=u.dtype))  # site -> its positions in u
        rel = {k: float(np.max(rel_u[np.asarray(v, int).reshape(-1)])) for k, v in where.items()}
        mf = {k: v for k, v in rel.items() if k in prior.names}
        worst = max(mf, key=mf.get)
        shift = mf[worst]
        other = [v for k, v in rel.items() if k not in prior.names]
        shift_density = max(other) if other else None
    ok = sd < QUADRATURE_SD_THRESHOLD and (shift is None or shift < 0.05)
    return {**out, "sd_log_l": sd, "mean_difference": float(np.mean(diff)),
            "map_shift_sigma": shift, "worst_parameter": worst,
            "map_shift_sigma_by_parameter": mf if map_shift else None,
            "map_shift_sigma_density": shift_density, "ok": bool(ok), "status": "ok",
            "nodes": {"rule": int(data.catalog.n_samples.sum()),
                      "twice": int(fine.catalog.n_samples.sum())},
            "seconds": time.perf_counter() - t0}


def quadrature_error_summary(check: dict) -> str:
    """One line for the fit's log."""
    if check.get("sd_log_l") is None:
        return f"quadrature error: {check.get('status')}"
    shift = ("" if check.get("map_shift_sigma") is None else
             f"; the MAP moves by {check['map_shift_sigma']:.3f} sigma ({check['worst_parameter']})")
    return (f"quadrature error of the deterministic rules ({check['n_rule_galaxies']} galaxies, "
            f"{check['n_draws']} Laplace draws): sd of ln L(rule) - ln L(twice the nodes) "
            f"{check['sd_log_l']:.3f} (small below {check['threshold']}){shift}: "
            + ("small" if check["ok"] else f"NOT small: {QUADRATURE_ADVICE}")
            + f" ({check['seconds']:.0f} s)")


def compression_summary(check: dict) -> str:
    """One line for the fit's log."""
    if check["n_compressed"] == 0:
        return "compression check: no galaxy's rule was fitted to its samples (not applicable)"
    verdict = "negligible" if check["ok"] else "NOT negligible"
    return (f"compression check ({check['n_compressed']} of {check['n_galaxies']} galaxies "
            f"compressed, {check['n_draws']} Laplace draws): sd of ln L_compressed - ln L_samples "
            f"{check['sd_difference']:.3f} (threshold {check['threshold']}; the samples' own "
            f"Monte Carlo noise {check['sd_samples_noise']:.3f}): {verdict} "
            f"({check['seconds']:.0f} s)")
