r"""Leja et al. (2022) Eq. 10: the star-forming sequence as a broken power law.

.. math::

    \log \mathrm{SFR} = \begin{cases}
        a(z)\,[\log M - \log M_t(z)] + c(z) & \log M > \log M_t(z) \\
        b(z)\,[\log M - \log M_t(z)] + c(z) & \log M \le \log M_t(z)
    \end{cases},\qquad X(z) = X_0 + X_1 z + X_2 z^2,

for the ridge (mode) and for log10 of the mean SFR, with the Table 1 coefficients
(from public third-party copies of Table 1, confirmed against the
released flow; the b1 sign is +0.04990). Quoted validity 0.3 <= z <= 2.7. Chabrier IMF,
Prospector masses and SFRs.

References:
    | Leja et al. 2022, ApJ 936, 165, Eq. 10 and Table 1 (arXiv:2110.04314)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares

__all__ = [
    "EQ10_PARAMETERS",
    "LEJA2022_TABLE1",
    "Eq10Fit",
    "eq10_log_sfr",
    "fit_eq10",
    "leja2022_log_sfr",
]

#: Order of the 12 coefficients of Eq. 10.
EQ10_PARAMETERS = ("a0", "a1", "a2", "b0", "b1", "b2", "c0", "c1", "c2", "lmt0", "lmt1", "lmt2")

#: Leja et al. 2022 Table 1: central values and 1-sigma errors, ``{kind: {name: (value, err)}}``.
LEJA2022_TABLE1: Mapping[str, Mapping[str, tuple[float, float]]] = {
    "ridge": {
        "a0": (0.03746, 0.01739), "a1": (0.3448, 0.0297), "a2": (-0.1156, 0.0107),
        "b0": (0.9605, 0.0100), "b1": (0.04990, 0.01518), "b2": (-0.05984, 0.00482),
        "c0": (0.2516, 0.0082), "c1": (1.118, 0.013), "c2": (-0.2006, 0.0039),
        "lmt0": (10.22, 0.01), "lmt1": (0.3826, 0.0188), "lmt2": (-0.04491, 0.00613),
    },
    "mean": {
        "a0": (-0.06707, 0.00821), "a1": (0.3684, 0.0128), "a2": (-0.1047, 0.0044),
        "b0": (0.8552, 0.0068), "b1": (-0.1010, 0.0107), "b2": (-0.001816, 0.00329),
        "c0": (0.2148, 0.0045), "c1": (0.8137, 0.0069), "c2": (-0.08052, 0.00219),
        "lmt0": (10.29, 0.01), "lmt1": (-0.1284, 0.0135), "lmt2": (0.1203, 0.0044),
    },
}


def _coeffs(params: Mapping[str, float] | np.ndarray) -> np.ndarray:
    if isinstance(params, Mapping):
        missing = [n for n in EQ10_PARAMETERS if n not in params]
        if missing:
            raise KeyError(f"Eq. 10 coefficients missing: {missing}")
        return np.array([float(params[n]) for n in EQ10_PARAMETERS])
    arr = np.asarray(params, dtype=np.float64)
    if arr.shape != (12,):
        raise ValueError(f"expected 12 coefficients {EQ10_PARAMETERS}, got shape {arr.shape}")
    return arr


def eq10_log_sfr(
    log_mass: np.ndarray | float, z: np.ndarray | float, params: Mapping[str, float] | np.ndarray
) -> np.ndarray:
    """Evaluate Eq. 10 for any coefficients.

    Args:
        log_mass: log10 M* [Msun].
        z: Redshift.
        params: The 12 coefficients, a mapping with the names :data:`EQ10_PARAMETERS` or an
            array in that order.

    Returns:
        log10 SFR [Msun/yr], broadcast over ``log_mass`` and ``z``.
    """
    c = _coeffs(params)
    m = np.asarray(log_mass, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    a, b, cc, lmt = (c[3 * k] + c[3 * k + 1] * z + c[3 * k + 2] * z * z for k in range(4))
    x = m - lmt
    return np.where(x > 0, a * x, b * x) + cc


def leja2022_log_sfr(
    log_mass: np.ndarray | float, z: np.ndarray | float, kind: str = "ridge"
) -> np.ndarray:
    """Leja et al. 2022 Eq. 10 with the Table 1 coefficients (ApJ 936, 165).

    Args:
        log_mass: log10 M* [Msun].
        z: Redshift (fit valid for 0.3 <= z <= 2.7).
        kind: ``"ridge"`` (mode of the star-forming sequence) or ``"mean"`` (log10 <SFR>).

    Returns:
        log10 SFR [Msun/yr].
    """
    if kind not in LEJA2022_TABLE1:
        raise ValueError(f"kind must be 'ridge' or 'mean', got {kind!r}")
    return eq10_log_sfr(log_mass, z, {k: v[0] for k, v in LEJA2022_TABLE1[kind].items()})


@dataclass
class Eq10Fit:
    """Result of :func:`fit_eq10`.

    Attributes:
        params: Best-fit coefficients by name.
        errors: 1-sigma errors from the Jacobian (scaled by the reduced chi^2 when no errors
            were given).
        covariance: ``(12, 12)`` covariance matrix.
        rms: RMS residual [dex].
        n_points: Number of points fitted.
        success: Whether the optimiser converged.
    """

    params: dict[str, float]
    errors: dict[str, float]
    covariance: np.ndarray
    rms: float
    n_points: int
    success: bool
    message: str = ""
    extra: dict = field(default_factory=dict)

    def __call__(self, log_mass: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
        """Evaluate the fitted Eq. 10."""
        return eq10_log_sfr(log_mass, z, self.params)

    def as_array(self) -> np.ndarray:
        """The coefficients in :data:`EQ10_PARAMETERS` order."""
        return _coeffs(self.params)


def fit_eq10(
    log_mass: np.ndarray,
    z: np.ndarray,
    log_sfr: np.ndarray,
    sigma: np.ndarray | float | None = None,
    p0: Mapping[str, float] | np.ndarray | str = "ridge",
    loss: str = "linear",
) -> Eq10Fit:
    """Least-squares fit of Eq. 10 to (log M, z, log SFR) points, e.g. a ridge or mean curve.

    The kink makes the model piecewise smooth in log M_t, so the fit starts from Leja's Table 1
    values (``p0="ridge"`` or ``"mean"``) or the coefficients given, and uses
    :func:`scipy.optimize.least_squares` (trust-region reflective).

    Args:
        log_mass: ``(n,)`` log10 M* [Msun].
        z: ``(n,)`` redshifts.
        log_sfr: ``(n,)`` log10 SFR [Msun/yr] to fit.
        sigma: Errors [dex] (scalar or ``(n,)``); None for unweighted.
        p0: Starting coefficients, or ``"ridge"`` / ``"mean"`` for Table 1.
        loss: ``least_squares`` loss (``"linear"``, ``"soft_l1"``...).

    Returns:
        The fit.

    Raises:
        ValueError: If fewer than 12 finite points are given or the inputs disagree in shape.
    """
    m, zz, y = (np.asarray(v, dtype=np.float64).ravel() for v in (log_mass, z, log_sfr))
    if not (m.shape == zz.shape == y.shape):
        raise ValueError(f"log_mass, z and log_sfr shapes differ: {m.shape}, {zz.shape}, {y.shape}")
    s = np.ones_like(y) if sigma is None else np.broadcast_to(np.asarray(sigma, float), y.shape)
    ok = np.isfinite(m) & np.isfinite(zz) & np.isfinite(y) & np.isfinite(s) & (s > 0)
    m, zz, y, s = m[ok], zz[ok], y[ok], s[ok]
    if y.size < len(EQ10_PARAMETERS):
        raise ValueError(f"need at least 12 finite points to fit Eq. 10, got {y.size}")
    if isinstance(p0, str):
        if p0 not in LEJA2022_TABLE1:
            raise ValueError(f"p0 must be 'ridge', 'mean' or 12 coefficients, got {p0!r}")
        start = np.array([LEJA2022_TABLE1[p0][n][0] for n in EQ10_PARAMETERS])
    else:
        start = _coeffs(p0)

    def resid(c: np.ndarray) -> np.ndarray:
        return (eq10_log_sfr(m, zz, c) - y) / s

    res = least_squares(resid, start, loss=loss, x_scale="jac", method="trf")
    r = eq10_log_sfr(m, zz, res.x) - y
    jac = res.jac
    dof = max(1, y.size - len(EQ10_PARAMETERS))
    try:
        cov = np.linalg.pinv(jac.T @ jac)
    except np.linalg.LinAlgError:
        cov = np.full((12, 12), np.nan)
    if sigma is None:
        cov = cov * float(np.sum(r**2)) / dof
    err = np.sqrt(np.clip(np.diag(cov), 0, None))
    return Eq10Fit(
        params=dict(zip(EQ10_PARAMETERS, map(float, res.x), strict=True)),
        errors=dict(zip(EQ10_PARAMETERS, map(float, err), strict=True)),
        covariance=cov,
        rms=float(np.sqrt(np.mean(r**2))),
        n_points=int(y.size),
        success=bool(res.success),
        message=str(res.message),
    )
