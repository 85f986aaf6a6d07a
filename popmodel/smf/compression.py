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
below the samples' own noise: then the samples cannot tell the compressed likelihood from
theirs, and the compressed one, which has no Monte Carlo error, is kept. Otherwise
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
from popmodel.compress import quadrature_galaxies
from popmodel.smf.data import SMFData, point_estimates, prepare_smf_data
from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.inference import MAPResult, laplace_draws
from popmodel.smf.likelihood import log_likelihood
from popmodel.smf.model import SMFPrior
from popmodel.survey import Survey

__all__ = ["COMPRESSION_SD_THRESHOLD", "compression_check", "compression_summary", "random_halves"]

#: sd, over posterior draws, of ln L_compressed - ln L_samples accepted outright.
COMPRESSION_SD_THRESHOLD = 0.1


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
) -> dict:
    """Compare the compressed likelihood with the samples' one over Laplace draws (module doc).

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

    Returns:
        A dict: ``n_draws``, ``n_compressed`` (galaxies), ``n_galaxies``, ``sd_difference``
        (sd of D), ``sd_samples_noise`` (sd(H) / 2), ``threshold``, ``ok``, ``seconds``.
    """
    t0 = time.perf_counter()
    kw = {k: v for k, v in (prepare_kwargs or {}).items() if k != "posterior"}
    quad = quadrature_galaxies(compressed.catalog)
    out = {"n_draws": int(n_draws), "n_compressed": int(quad.sum()),
           "n_galaxies": int(compressed.catalog.n_galaxies), "threshold": float(threshold)}
    if not quad.any():
        return {**out, "sd_difference": 0.0, "sd_samples_noise": 0.0, "ok": True,
                "seconds": time.perf_counter() - t0}
    full = prepare_smf_data(catalog, survey, posterior="samples", **kw)
    if not np.array_equal(full.catalog.ids, compressed.catalog.ids):
        raise ValueError("the compressed data were not prepared from this catalogue and survey "
                         "(their galaxies differ)")
    half_a, half_b = random_halves(full.catalog, quad, seed)  # same galaxies, same order
    data = [compressed.arrays, full.arrays,
            prepare_smf_data(half_a, survey, posterior="samples", **kw).arrays,
            prepare_smf_data(half_b, survey, posterior="samples", **kw).arrays]
    p, delta = _as_draw_arrays(laplace_draws(mp, prior, n_draws, seed, data=compressed), prior)

    @jax.jit
    def lnl(pi: ContinuityParams, di: jax.Array | None, arrays: object) -> jax.Array:
        return log_likelihood(pi, arrays, delta=di)

    vals = np.empty((4, n_draws))
    for d in range(n_draws):
        pd = jax.tree_util.tree_map(lambda a, d=d: a[d], p)
        dd = None if delta is None else delta[d]
        for j, arrays in enumerate(data):
            vals[j, d] = float(lnl(pd, dd, arrays))
    sd_d = float(np.std(vals[0] - vals[1], ddof=1))
    noise = float(np.std(vals[2] - vals[3], ddof=1) / 2.0)
    return {**out, "sd_difference": sd_d, "sd_samples_noise": noise,
            "ok": bool(sd_d < threshold or sd_d < noise), "seconds": time.perf_counter() - t0}


def compression_summary(check: dict) -> str:
    """One line for the fit's log."""
    if check["n_compressed"] == 0:
        return "compression check: no galaxy was compressed"
    verdict = "negligible" if check["ok"] else "NOT negligible"
    return (f"compression check ({check['n_compressed']} of {check['n_galaxies']} galaxies "
            f"compressed, {check['n_draws']} Laplace draws): sd of ln L_compressed - ln L_samples "
            f"{check['sd_difference']:.3f} (threshold {check['threshold']}; the samples' own "
            f"Monte Carlo noise {check['sd_samples_noise']:.3f}): {verdict} "
            f"({check['seconds']:.0f} s)")
