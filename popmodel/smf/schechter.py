r"""Schechter and double-Schechter mass functions per dex, as pure JAX functions.

.. math::
    S(\log M) = \ln 10\,\phi_*\,10^{(\log M-\log M_*)(\alpha+1)}\exp(-10^{\log M-\log M_*})

in Mpc^-3 dex^-1; the continuity model sums two with a shared M* (Leja et al. 2020, ApJ 893,
111, Appendix B). Everything here returns natural logs, so products become sums and the
sums over samples can use ``logsumexp``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from popmodel.smf.evolution import ContinuityParams
from popmodel.units import LN10

__all__ = ["ln_double_schechter", "ln_phi", "ln_schechter", "log10_phi"]

_LN_LN10 = float(np.log(LN10))


def ln_schechter(log_m: jax.Array, log_phi_star: jax.Array, log_mstar: jax.Array, alpha: jax.Array) -> jax.Array:
    """ln S(log M) [ln(Mpc^-3 dex^-1)] of one Schechter component per dex.

    Args:
        log_m: log10 stellar mass [log10 Msun].
        log_phi_star: log10 phi* [log10 Mpc^-3 dex^-1].
        log_mstar: log10 M* [log10 Msun].
        alpha: low-mass slope.
    """
    x = log_m - log_mstar
    return _LN_LN10 + LN10 * (log_phi_star + (alpha + 1.0) * x) - jnp.exp(LN10 * x)


def ln_double_schechter(
    log_m: jax.Array,
    log_phi1: jax.Array,
    log_phi2: jax.Array,
    log_mstar: jax.Array,
    alpha1: jax.Array,
    alpha2: jax.Array,
) -> jax.Array:
    """ln of the sum of two Schechter components with a shared M* (natural log)."""
    return jnp.logaddexp(
        ln_schechter(log_m, log_phi1, log_mstar, alpha1),
        ln_schechter(log_m, log_phi2, log_mstar, alpha2),
    )


def ln_phi(log_m: jax.Array, z: jax.Array, p: ContinuityParams) -> jax.Array:
    """ln Phi(log M, z) [ln(Mpc^-3 dex^-1)] of the continuity model.

    References:
        | Leja et al. (2020), ApJ 893, 111, Appendix B.
    """
    lp1, lp2, lms = p.at(z)
    return ln_double_schechter(log_m, lp1, lp2, lms, p.alpha1, p.alpha2)


def log10_phi(log_m: jax.Array, z: jax.Array, p: ContinuityParams) -> jax.Array:
    """log10 Phi(log M, z) [log10(Mpc^-3 dex^-1)]."""
    return ln_phi(log_m, z, p) / LN10
