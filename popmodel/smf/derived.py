r"""Quantities derived from continuity-model draws: Phi(log M, z) and rho_*(z), with bands.

All functions take a :class:`ContinuityParams` whose leaves may carry a leading draw axis.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaincc, gammaln

from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.schechter import log10_phi
from popmodel.units import LN10

__all__ = ["log10_phi_draws", "log10_rho_star", "percentile_bands", "rho_star"]


def log10_phi_draws(p: ContinuityParams, log_m: np.ndarray, z: float | np.ndarray) -> np.ndarray:
    """log10 Phi [Mpc^-3 dex^-1] for every draw: shape (D, len(log_m)) (D = 1 if unbatched)."""
    v = jnp.asarray(p.to_vector())
    v = v[None, :] if v.ndim == 1 else v
    f = jax.vmap(lambda row: log10_phi(jnp.asarray(log_m), z, ContinuityParams.from_vector(row, p.anchor_z)))
    return np.asarray(f(v))


def rho_star(
    p: ContinuityParams,
    z: float | np.ndarray,
    log_m_lo: float | None = 8.0,
    log_m_hi: float | None = 13.0,
) -> jax.Array:
    r"""Stellar mass density [Msun Mpc^-3] between two masses, closed form.

    .. math::
        \rho_* = \sum_k \phi_k^* M^* \left[\Gamma(\alpha_k+2, x_{lo}) - \Gamma(\alpha_k+2, x_{hi})\right],
        \quad x = M/M^*,

    (upper incomplete gamma; alpha_k > -2). ``log_m_lo=None`` integrates from zero mass,
    giving :math:`\sum_k \phi_k^* M^* \Gamma(\alpha_k+2)`; ``log_m_hi=None`` to infinity.

    Returns:
        Array broadcast from the draw axes of ``p`` and the shape of ``z``.
    """
    z = jnp.asarray(z)
    v = jnp.asarray(p.to_vector())
    pb = ContinuityParams.from_vector(v[..., None, :] if z.ndim else v, p.anchor_z)
    lp1, lp2, lms = pb.at(z)
    out = 0.0
    for lphi, alpha in ((lp1, pb.alpha1), (lp2, pb.alpha2)):
        a = alpha + 2.0
        q_lo = 1.0 if log_m_lo is None else gammaincc(a, 10.0 ** (log_m_lo - lms))
        q_hi = 0.0 if log_m_hi is None else gammaincc(a, 10.0 ** (log_m_hi - lms))
        out = out + jnp.exp(LN10 * (lphi + lms) + gammaln(a)) * (q_lo - q_hi)
    return out


def log10_rho_star(p: ContinuityParams, z: float | np.ndarray, log_m_lo: float | None = 8.0,
                   log_m_hi: float | None = 13.0) -> np.ndarray:
    """log10 rho_* [log10 Msun Mpc^-3]; see :func:`rho_star`."""
    return np.log10(np.asarray(rho_star(p, z, log_m_lo, log_m_hi)))


def percentile_bands(x: np.ndarray, q: tuple[float, ...] = (16, 50, 84), axis: int = 0) -> np.ndarray:
    """Percentiles over the draw axis: shape (len(q), ...)."""
    return np.percentile(np.asarray(x), q, axis=axis)
