r"""Quantities derived from continuity-model draws: Phi(log M, z) and rho_*(z), with bands.

All functions take a :class:`ContinuityParams` whose leaves may carry leading draw axes (D
draws; an unbatched one counts as D = 1) and return arrays with the draw axis first.

:func:`ln_phi_draws` is *the* evaluator of Phi for posterior draws (numpy, float64,
vectorised over draws): the census (:mod:`popmodel.census`), the model checks
(:mod:`popmodel.smf.checks`), the mock (:mod:`popmodel.mock`) and the result tables all call
it. It is the numpy twin of the JAX reference :func:`popmodel.smf.schechter.ln_phi` (the
double Schechter of Leja et al. 2020, Appendix B, with log phi1*, log phi2* and log M* the
polynomials through their anchor values).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaincc, gammaln

from popmodel.smf.evolution import ContinuityParams
from popmodel.units import LN10

__all__ = [
    "anchor_basis",
    "draw_arrays",
    "ln_phi_draws",
    "log10_phi_draws",
    "log10_phi_grid",
    "log10_rho_star",
    "percentile_bands",
    "rho_star",
    "rho_star_table",
]

_LN_LN10 = float(np.log(LN10))
_NAMES = ("log_phi1", "log_phi2", "log_mstar", "alpha1", "alpha2")


def draw_arrays(p: ContinuityParams) -> tuple[np.ndarray, ...]:
    """The draws of ``p`` as float64 numpy: (log phi1, log phi2, log M*) each (D, K) and
    (alpha1, alpha2) each (D,); every batch axis of ``p`` is flattened into D.

    Raises:
        TypeError: ``p`` is not a ContinuityParams.
        ValueError: leaves of inconsistent shapes, or NaN / inf values.
    """
    if not isinstance(p, ContinuityParams):
        raise TypeError(f"expected ContinuityParams, got {type(p).__name__}")
    k = len(p.anchor_z)
    arr = [np.asarray(getattr(p, n), dtype=np.float64) for n in _NAMES[:3]]
    alp = [np.asarray(getattr(p, n), dtype=np.float64) for n in _NAMES[3:]]
    batch = arr[0].shape[:-1]
    for name, a in zip(_NAMES[:3], arr, strict=True):
        if a.shape[-1:] != (k,) or a.shape[:-1] != batch:
            raise ValueError(f"ContinuityParams.{name} has shape {a.shape}; expected {batch + (k,)}")
    for name, a in zip(_NAMES[3:], alp, strict=True):
        if a.shape != batch:
            raise ValueError(f"ContinuityParams.{name} has shape {a.shape}; expected {batch}")
    out = [a.reshape(-1, k) for a in arr] + [a.reshape(-1) for a in alp]
    for name, a in zip(_NAMES, out, strict=True):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"ContinuityParams.{name} has NaN or inf values")
    return tuple(out)


def anchor_basis(anchor_z: tuple[float, ...], z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Lagrange basis :math:`L_k(z)` through the anchors and its derivative :math:`L_k'(z)`.

    The numpy (float64) twin of :func:`popmodel.smf.evolution.anchor_polynomial`, with the
    same products in the same order.

    Args:
        anchor_z: the K anchor redshifts.
        z: redshifts, any shape (flattened).

    Returns:
        ``(basis, deriv)``, each (Z, K) with Z = ``z.size``.
    """
    za = np.asarray(anchor_z, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    kk = za.size
    basis = np.ones((z.size, kk))
    deriv = np.zeros((z.size, kk))
    for k in range(kk):
        others = [j for j in range(kk) if j != k]
        for j in others:
            basis[:, k] *= (z - za[j]) / (za[k] - za[j])
        for m in others:
            term = np.full(z.size, 1.0 / (za[k] - za[m]))
            for j in others:
                if j != m:
                    term *= (z - za[j]) / (za[k] - za[j])
            deriv[:, k] += term
    return basis, deriv


def ln_phi_draws(p: ContinuityParams, log_m: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    r"""ln :math:`\Phi(\log M, z)` [ln(Mpc^-3 dex^-1)] for every draw at broadcast points.

    .. math:: \Phi = \ln 10 \sum_{c=1,2} \phi_c^*(z)\, x^{\alpha_c+1} e^{-x},
        \quad x = M/M^*(z),

    with :math:`\log\phi_c^*(z)` and :math:`\log M^*(z)` the polynomials through their anchor
    values (Leja et al. 2020, Appendix B; :func:`popmodel.smf.schechter.ln_phi` in JAX).

    Args:
        p: continuity-model draws (D; any batch axes are flattened).
        log_m: masses [log10 Msun], broadcast against ``z``.
        z: redshifts; ``log_m[None, :]`` with ``z[:, None]`` gives a (Z, M) grid.

    Returns:
        Shape ``(D,) + broadcast(log_m, z).shape``, float64.
    """
    lp1, lp2, lms, a1, a2 = draw_arrays(p)
    log_m = np.asarray(log_m, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    nd = len(np.broadcast_shapes(log_m.shape, z.shape))
    z = z.reshape((1,) * (nd - z.ndim) + z.shape)
    basis = anchor_basis(p.anchor_z, z)[0].T  # (K, z.size)
    d = lp1.shape[0]

    def track(a: np.ndarray) -> np.ndarray:  # (D, K) anchor values -> (D,) + z.shape
        return (a @ basis).reshape((d,) + z.shape)

    def slope(a: np.ndarray) -> np.ndarray:
        return a.reshape((d,) + (1,) * nd) + 1.0

    x = log_m - track(lms)
    ex = np.exp(LN10 * x)
    s1 = _LN_LN10 + LN10 * (track(lp1) + slope(a1) * x) - ex
    s2 = _LN_LN10 + LN10 * (track(lp2) + slope(a2) * x) - ex
    return np.logaddexp(s1, s2)


def log10_phi_draws(p: ContinuityParams, log_m: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    """log10 Phi [Mpc^-3 dex^-1] for every draw: :func:`ln_phi_draws` / ln 10.

    With ``log_m`` of shape (M,) and a scalar ``z`` the result is (D, M) (D = 1 if unbatched).
    """
    return ln_phi_draws(p, log_m, z) / LN10


def log10_phi_grid(p: ContinuityParams, log_m: np.ndarray, z: np.ndarray) -> np.ndarray:
    r"""log10 :math:`\Phi` [Mpc^-3 dex^-1] for every draw, redshift and mass: shape (D, Z, M)."""
    lm = np.asarray(log_m, dtype=np.float64).reshape(-1)
    zz = np.atleast_1d(np.asarray(z, dtype=np.float64)).reshape(-1)
    return ln_phi_draws(p, lm[None, :], zz[:, None]) / LN10


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
    """Percentiles over the draw axis, robust to non-finite values: shape (len(q), ...).

    Columns (draw sets) with a NaN give NaN; columns with +-inf (e.g. log10 of a non-positive
    SFRD, or of a zero probability) use the non-interpolating ``inverted_cdf`` definition so
    that inf never meets inf (linear interpolation between -inf and a finite value would give
    NaN); finite columns use linear interpolation (numpy's default).

    Args:
        x: draws, with the draw axis at ``axis``.
        q: percentiles in [0, 100].
        axis: the draw axis.
    """
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 0)
    flat = x.reshape(x.shape[0], -1)
    out = np.full((len(q), flat.shape[1]), np.nan)
    has_nan = np.any(np.isnan(flat), axis=0)
    fin = np.all(np.isfinite(flat), axis=0)
    if np.any(fin):
        out[:, fin] = np.percentile(flat[:, fin], q, axis=0)
    inf = ~fin & ~has_nan
    if np.any(inf):
        out[:, inf] = np.percentile(flat[:, inf], q, axis=0, method="inverted_cdf")
    return out.reshape((len(q),) + x.shape[1:])


def rho_star_table(
    draws: ContinuityParams,
    z: object,
    mass_range: tuple[float | None, float | None] = (8.0, 13.0),
    data_z_range: tuple[float, float] | None = None,
    display_format: str | None = ".3f",
) -> object:
    """Posterior percentiles of log10 rho_* [Msun Mpc^-3] from continuity-model draws.

    Args:
        draws: batched :class:`popmodel.smf.evolution.ContinuityParams`.
        z: Redshift(s).
        mass_range: (low, high) log10 stellar mass [Msun]; None for 0 or infinity.
        data_z_range: the redshifts the data cover; ``extrapolated`` flags the others.
        display_format: how the percentiles print (None: full precision, as a file needs:
            ECSV writes values with the column format).

    Returns:
        QTable with ``z``, ``log_rho_star_p16/p50/p84`` (dex) and ``extrapolated``.
    """
    import astropy.units as u
    from astropy.table import QTable

    unit = u.dex(u.Msun / u.Mpc**3)
    zz = np.atleast_1d(np.asarray(z, float)).ravel()
    b = percentile_bands(log10_rho_star(draws, zz, mass_range[0], mass_range[1]))
    ext = (np.zeros(zz.shape, bool) if data_z_range is None
           else (zz < data_z_range[0]) | (zz > data_z_range[1]))
    t = QTable({"z": zz, "log_rho_star_p16": b[0] * unit,
                "log_rho_star_p50": b[1] * unit, "log_rho_star_p84": b[2] * unit,
                "extrapolated": ext})
    for c in ("log_rho_star_p16", "log_rho_star_p50", "log_rho_star_p84"):
        t[c].info.format = display_format  # printing; the values keep full precision
    t.meta["mass_range_log10_msun"] = list(mass_range)
    return t
