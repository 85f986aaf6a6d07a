r"""The mass-function log-likelihood split into pointwise terms, for ArviZ's ``loo`` / ``waic``.

ln L of :mod:`popmodel.smf.likelihood` is a sum of one term per galaxy (the log of its
importance-sampled integral, with the Jensen correction the fit uses) minus the expected
number of catalogue galaxies. :func:`pointwise_log_likelihood` returns the galaxy terms and
splits the expected number into one term per (field, redshift slice): minus the part of
:math:`N_{\rm exp}` whose quadrature nodes fall in the slice (the slices of
:func:`popmodel.smf.data.field_slices`). The terms add up to ln L at every draw (up to the
theta-independent constant).

Caveats: the "observations" are not exchangeable (the expected-number terms are not data
points, and a galaxy's term depends on the survey's selection only through the expected
number), so leave-one-out over them is a heuristic; with thousands of galaxies the galaxy
terms are individually weak and Pareto-k is usually fine for them, while the
expected-number terms of well-populated slices carry large weight and often show k > 0.7.
The arrays have (draws) x (galaxies + field slices) entries.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from popmodel.smf.data import SMFData, field_slices
from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.likelihood import _cast, _cv_log_factor, _sample_log_terms, jensen_term
from popmodel.smf.schechter import ln_phi

__all__ = ["pointwise_log_likelihood"]


def _galaxy_terms(p: ContinuityParams, data: SMFData, delta: jax.Array | None
                  ) -> tuple[jax.Array, ...]:
    arrays = data.arrays
    sigma = arrays.cv_sigma
    out = []
    for blk in arrays.blocks:
        pc = _cast(p, blk.log_mass.dtype)

        def chunk(args: tuple, pc: ContinuityParams = pc) -> jax.Array:
            lm, z, off, wt, mc, idx, bias = args
            v = _sample_log_terms(pc, lm, z, off, idx, bias, delta, sigma)
            lg = jax.nn.logsumexp(v, axis=-1)
            q = jnp.exp(v - lg[..., None])
            return lg + jnp.where(mc, jensen_term(q, wt), 0.0)

        lg = jax.lax.map(chunk, (blk.log_mass, blk.z, blk.offset, blk.weight, blk.monte_carlo,
                                 blk.cv_index, blk.cv_bias))
        out.append(lg.astype(blk.galaxy_offset.dtype) + blk.galaxy_offset)
    return tuple(out)


def _grid_terms(p: ContinuityParams, data: SMFData, delta: jax.Array | None) -> jax.Array:
    a = data.arrays
    pc = _cast(p, jnp.result_type(float))
    ln_f = _cv_log_factor(a.grid_cv_index, a.grid_cv_bias, delta, a.cv_sigma)
    return jnp.exp(ln_phi(a.grid_log_mass, a.grid_z, pc) + a.grid_log_weight + ln_f)


def pointwise_log_likelihood(data: SMFData, params: ContinuityParams,
                             delta: np.ndarray | None = None, *, slice_dz: float = 0.5
                             ) -> dict[str, object]:
    """Per-galaxy and per-(field, slice) log-likelihood terms for every draw.

    Args:
        data: The fit's data (:attr:`popmodel.smf.fit.SMFFit.data`).
        params: (D,) batched continuity-model draws.
        delta: (D, G) density contrasts of the draws (None without density terms).
        slice_dz: Redshift width of the slices of the expected-number terms.

    Returns:
        ``galaxy`` (D, N) galaxy terms in catalogue order; ``expected`` (D, K) minus the
        expected number in each (field, slice); ``field``, ``z_lo``, ``z_hi`` (K,) of the
        slices; ``galaxy_id`` (N,).
    """
    v = np.atleast_2d(np.asarray(params.to_vector(), dtype=float))
    n_draws = v.shape[0]
    if data.arrays.cv_sigma is None:
        delta = None
    if delta is not None:
        delta = np.asarray(delta, dtype=float).reshape(n_draws, -1)
    survey = data.survey
    edges = field_slices(survey, slice_dz)
    gg = np.asarray(data.arrays.grid_group)
    gz = np.asarray(data.arrays.grid_z)
    slot = np.empty(gg.shape, dtype=int)
    fields, z_lo, z_hi = [], [], []
    for g, e in enumerate(edges):
        sel = gg == g
        k = np.clip(np.searchsorted(e[1:-1], gz[sel], side="right"), 0, e.size - 2)
        slot[sel] = len(fields) + k
        fields += [survey.fields[g].name] * (e.size - 1)
        z_lo += list(e[:-1])
        z_hi += list(e[1:])

    @jax.jit
    def one(row: jax.Array, d: jax.Array | None) -> tuple:
        p = ContinuityParams.from_vector(row, params.anchor_z)
        return _galaxy_terms(p, data, d), _grid_terms(p, data, d)

    n_gal = data.catalog.n_galaxies
    galaxy = np.empty((n_draws, n_gal))
    expected = np.empty((n_draws, len(fields)))
    for i in range(n_draws):
        blocks, grid = one(jnp.asarray(v[i]), None if delta is None else jnp.asarray(delta[i]))
        galaxy[i] = data.index.gather_galaxies([np.asarray(b) for b in blocks], n_gal)
        expected[i] = -np.bincount(slot, weights=np.asarray(grid, dtype=float),
                                   minlength=len(fields))
    return {"galaxy": galaxy, "expected": expected, "field": np.array(fields),
            "z_lo": np.array(z_lo), "z_hi": np.array(z_hi),
            "galaxy_id": np.asarray(data.catalog.ids)}
