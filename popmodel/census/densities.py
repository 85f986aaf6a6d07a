r"""Closed-form densities from continuity-model draws: n(>M), rho_*(z) and d rho_*/dz.

Every function takes a :class:`~popmodel.smf.evolution.ContinuityParams` whose leaves carry a
leading draw axis (D posterior draws; an unbatched one counts as D = 1) and returns (D, Z):
number densities in Mpc^-3, :math:`\rho_*` in Msun Mpc^-3 (comoving, no h). Phi itself on a
grid is :func:`popmodel.smf.derived.log10_phi_grid` (re-exported here).
"""

from __future__ import annotations

import numpy as np
from scipy.special import exp1, gamma, gammaincc

from popmodel.smf.derived import anchor_basis, draw_arrays, log10_phi_grid
from popmodel.smf.evolution import ContinuityParams
from popmodel.units import LN10

__all__ = [
    "drho_star_dz",
    "log10_phi_grid",
    "n_draws",
    "number_density",
    "rho_star_draws",
    "upper_incomplete_gamma",
]


def n_draws(p: ContinuityParams) -> int:
    """Number of draws D of a (possibly unbatched) ContinuityParams."""
    return draw_arrays(p)[0].shape[0]


def _tracks(p: ContinuityParams, z: np.ndarray) -> dict[str, np.ndarray]:
    """log phi1*, log phi2*, log M* (D, Z), their z-derivatives, and alpha1, alpha2 (D, 1)."""
    lp1, lp2, lms, a1, a2 = draw_arrays(p)
    basis, deriv = anchor_basis(p.anchor_z, np.atleast_1d(np.asarray(z, dtype=float)))
    return {
        "lp1": lp1 @ basis.T, "lp2": lp2 @ basis.T, "lms": lms @ basis.T,
        "dlp1": lp1 @ deriv.T, "dlp2": lp2 @ deriv.T, "dlms": lms @ deriv.T,
        "a1": a1[:, None], "a2": a2[:, None],
    }


def upper_incomplete_gamma(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""Upper incomplete gamma :math:`\Gamma(a, x)=\int_x^\infty t^{a-1}e^{-t}dt` for any real a.

    scipy's ``gammaincc`` (and JAX's) is the *regularised* function and is NaN for a <= 0. For
    a <= 0 and x > 0 this uses the downward recurrence
    :math:`\Gamma(b, x) = [\Gamma(b+1, x) - x^b e^{-x}]/b` from
    :math:`\Gamma(a+n, x)`, :math:`0 < a+n < 1` (or from :math:`\Gamma(0,x)=E_1(x)` for integer
    a). Both terms are positive with the second the larger, so there is no cancellation for
    x below a few hundred (above that :math:`e^{-x}` underflows and the result is 0).

    Args:
        a: exponent (any real), broadcast against ``x``.
        x: lower limit, x > 0 (x = 0 is allowed for a > 0).
    """
    a, x = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(x, dtype=float))
    if np.any(x < 0) or np.any((x == 0) & (a <= 0)):
        raise ValueError("upper_incomplete_gamma needs x > 0 (x = 0 only for a > 0)")
    out = np.empty(a.shape)
    pos = a > 0
    out[pos] = gammaincc(a[pos], x[pos]) * gamma(a[pos])
    if np.all(pos):
        return out
    an, xn = a[~pos], x[~pos]
    near_int = np.abs(an - np.round(an)) < 1e-9
    n = np.where(near_int, -np.round(an), np.floor(-an) + 1.0).astype(int)  # steps down
    start = an + n  # in (0, 1), or 0 for integer a
    g = np.where(near_int, exp1(xn), gammaincc(np.where(near_int, 1.0, start), xn)
                 * gamma(np.where(near_int, 1.0, start)))
    with np.errstate(over="ignore", under="ignore"):
        for step in range(int(n.max(initial=0))):
            b = start - (step + 1)
            act = step < n
            term = np.exp(b * np.log(xn) - xn)
            g = np.where(act, (g - term) / np.where(act, b, 1.0), g)
    out[~pos] = g
    return out


def number_density(p: ContinuityParams, z: np.ndarray, log_m_lo: float,
                   log_m_hi: float | None = None) -> np.ndarray:
    r"""Number density of galaxies with ``log_m_lo < log M < log_m_hi`` [Mpc^-3], (D, Z).

    .. math:: n = \sum_k \phi_k^*[\Gamma(\alpha_k+1, x_{lo}) - \Gamma(\alpha_k+1, x_{hi})],
        \quad x = M/M^*,

    with :func:`upper_incomplete_gamma` (alpha_k + 1 < 0 for the steep component).
    """
    t = _tracks(p, z)
    out = np.zeros_like(t["lms"])
    for lp, a in ((t["lp1"], t["a1"]), (t["lp2"], t["a2"])):
        aa = np.broadcast_to(a + 1.0, lp.shape)
        g = upper_incomplete_gamma(aa, 10.0 ** (log_m_lo - t["lms"]))
        if log_m_hi is not None:
            g = g - upper_incomplete_gamma(aa, 10.0 ** (log_m_hi - t["lms"]))
        out = out + 10.0**lp * g
    return out


def rho_star_draws(p: ContinuityParams, z: np.ndarray, log_m_lo: float | None = 8.0,
                   log_m_hi: float | None = 13.0) -> np.ndarray:
    r"""Stellar mass density [Msun Mpc^-3] per draw between two masses, (D, Z).

    The closed form of :func:`popmodel.smf.derived.rho_star`,
    :math:`\sum_k \phi_k^* M^* [\Gamma(\alpha_k+2, x_{lo}) - \Gamma(\alpha_k+2, x_{hi})]`,
    evaluated with scipy (the JAX version compiles its incomplete gamma anew for every
    input shape, seconds each; the two agree to 1e-12, tested). ``None`` bounds integrate from
    zero mass or to infinity.
    """
    t = _tracks(p, z)
    out = np.zeros_like(t["lms"])
    for lp, a in ((t["lp1"], t["a1"]), (t["lp2"], t["a2"])):
        aa = np.broadcast_to(a + 2.0, lp.shape)
        if np.any(aa <= 0):
            raise ValueError("rho_* diverges at low mass for alpha <= -2")
        q_lo = 1.0 if log_m_lo is None else gammaincc(aa, 10.0 ** (log_m_lo - t["lms"]))
        q_hi = 0.0 if log_m_hi is None else gammaincc(aa, 10.0 ** (log_m_hi - t["lms"]))
        out = out + 10.0 ** (lp + t["lms"]) * gamma(aa) * (q_lo - q_hi)
    return out


def drho_star_dz(p: ContinuityParams, z: np.ndarray, log_m_lo: float | None = 8.0,
                 log_m_hi: float | None = 13.0) -> np.ndarray:
    r""":math:`d\rho_*/dz` [Msun Mpc^-3 per unit z] in closed form, (D, Z).

    With :math:`\rho_k = 10^{\log\phi_k+\log M^*}\,[\Gamma(a_k, x_{lo}) - \Gamma(a_k, x_{hi})]`,
    :math:`a_k=\alpha_k+2`, :math:`x=10^{\log M-\log M^*}` and
    :math:`d\Gamma(a,x)/dz = \ln 10\,(d\log M^*/dz)\,x^a e^{-x}`:

    .. math:: \frac{d\rho_k}{dz} = \ln 10\,(\log\phi_k' + \log M^{*\prime})\,\rho_k
        + 10^{\log\phi_k+\log M^*}\ln 10\,\log M^{*\prime}\,[x_{lo}^{a}e^{-x_{lo}} - x_{hi}^{a}e^{-x_{hi}}].
    """
    t = _tracks(p, z)
    out = np.zeros_like(t["lms"])
    for lp, dlp, a in ((t["lp1"], t["dlp1"], t["a1"]), (t["lp2"], t["dlp2"], t["a2"])):
        aa = np.broadcast_to(a + 2.0, lp.shape)
        if np.any(aa <= 0):
            raise ValueError("rho_* diverges at low mass for alpha <= -2; give log_m_lo")
        norm_ = 10.0 ** (lp + t["lms"])

        def gam(lm: float | None, sign: float, aa: np.ndarray = aa) -> tuple[np.ndarray, np.ndarray]:
            if lm is None:
                inf = sign < 0
                return (np.zeros_like(aa) if inf else gamma(aa)), np.zeros_like(aa)
            x = 10.0 ** (lm - t["lms"])
            with np.errstate(under="ignore"):
                return gammaincc(aa, x) * gamma(aa), np.exp(aa * np.log(x) - x)

        g_lo, e_lo = gam(log_m_lo, +1.0)
        g_hi, e_hi = gam(log_m_hi, -1.0)
        rho_k = norm_ * (g_lo - g_hi)
        out = out + LN10 * (dlp + t["dlms"]) * rho_k + norm_ * LN10 * t["dlms"] * (e_lo - e_hi)
    return out
