r"""The SFR density two ways from continuity-model draws, and the star-forming / quiescent split.

Every function takes a :class:`~popmodel.smf.evolution.ContinuityParams` with a leading draw
axis (D) and returns (D, Z) arrays; SFR densities in Msun yr^-1 Mpc^-3 (comoving, no h),
Chabrier IMF, WMAP9 unless a cosmology is given.

**Route 1: the time derivative of the mass density.** Stars formed at rate :math:`\psi` lose a
fraction :math:`f(\tau)` of their mass by age :math:`\tau` (winds and supernovae), so

.. math::
    \rho_*(t) = \int_0^t \psi(t')\,[1 - f(t-t')]\,dt'.

With instantaneous recycling, :math:`f \equiv R`, this is
:math:`\psi = (d\rho_*/dt)/(1-R)` with :math:`dt = -dz/[(1+z)H(z)]`
(Madau & Dickinson 2014, ARA&A 52, 415);
:math:`d\rho_*/dz` is differentiated in closed form (upper incomplete gamma functions and the
derivative of the anchor polynomial). R is uncertain: :class:`ReturnFractionPrior` (default
U(0.30, 0.45): 0.36 in Leja's SFRD code, ~0.41 for Chabrier in Madau & Dickinson 2014, 0.40-0.45
from the time-dependent Chabrier kernels of :mod:`popmodel.census.kernels` at ages of a few Gyr) gives one R per posterior
draw, marginalised into the band. With a :class:`MassLossKernel` the convolution is inverted
instead (:func:`sfr_history_from_mass`, a lower-triangular solve on a time grid). Whether the
masses count stellar remnants sets which fraction is lost: gas return only (remnants kept, the
FSPS/Prospector default) or gas plus remnants (living stars only).

**Route 2: the mass function times the mean SFR.**
:math:`\psi(z) = \int \Phi(\log M, z)\,\langle \mathrm{SFR}\rangle(\log M, z)\,d\log M`, with
:math:`\langle\mathrm{SFR}\rangle` the population mean over star-forming and quiescent galaxies
(not :math:`10^{\langle\log\mathrm{SFR}\rangle}`). Above the completeness limit
:math:`\log M_c(z)` it comes from a supplied model (the flow ensemble, one member per SMF draw);
below it, from the Leja et al. (2022) Eq. 10 form *fitted to that model above the limit* (never
the model's own extrapolation); the fraction of :math:`\psi` from below the limit is reported.
Without a model, the Leja+22 Table 1 mean fit is used at all masses.

References:
    | Leja et al. (2020), ApJ 893, 111; Leja et al. (2022), ApJ 936, 165.
    | Madau & Dickinson (2014), ARA&A 52, 415.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import erfc

from popmodel.census.densities import drho_star_dz, n_draws, rho_star_draws
from popmodel.census.kernels import MassLossKernel, ReturnFractionPrior
from popmodel.cosmology import cosmology_from_config
from popmodel.literature import leja2022_coefficients, leja2022_sfs
from popmodel.smf.derived import log10_phi_grid
from popmodel.smf.evolution import ContinuityParams

__all__ = [
    "ArrayFn",
    "SFRDFromRho",
    "SFRDFromSFS",
    "fit_leja2022_form",
    "leja2022_completeness",
    "p_above_cut_split_normal",
    "sf_q_mass_functions",
    "sfr_history_from_mass",
    "sfrd_from_rho",
    "sfrd_from_sfs",
    "ssfr_cut",
]

#: ``(log_m (M,), z (Z,)) -> array`` of shape (Z, M) or (E, Z, M) (E ensemble members).
ArrayFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _cosmo(cosmology: apc.Cosmology | str | dict | None) -> apc.Cosmology:
    return cosmology_from_config(cosmology)


def _dz_dt(z: np.ndarray, cosmo: apc.Cosmology) -> np.ndarray:
    """dz/dt = -(1+z) H(z) [per yr]."""
    z = np.asarray(z, dtype=float)
    return -(1.0 + z) * cosmo.H(z).to_value(1 / u.yr)


@dataclass(frozen=True)
class SFRDFromRho:
    """Result of :func:`sfrd_from_rho`: log10 SFRD draws (D, Z) [Msun/yr/Mpc^3] and what made them."""

    log_sfrd: np.ndarray
    return_fraction: np.ndarray | None
    method: str


def sfrd_from_rho(
    p: ContinuityParams,
    z: np.ndarray,
    *,
    return_fraction: float | np.ndarray | ReturnFractionPrior = 0.36,
    kernel: MassLossKernel | None = None,
    log_m_lo: float | None = 8.0,
    log_m_hi: float | None = 13.0,
    cosmology: apc.Cosmology | str | None = None,
    seed: int | np.random.Generator = 0,
    z_start: float | None = None,
    n_time: int = 400,
) -> SFRDFromRho:
    r"""SFRD implied by the growth of :math:`\rho_*` (route 1 of the module doc).

    Args:
        p: continuity-model draws (D).
        z: redshifts (Z).
        return_fraction: R (instantaneous recycling): a number, an array (D,) of draws, or a
            :class:`ReturnFractionPrior` sampled once per draw with ``seed``. Ignored when
            ``kernel`` is given.
        kernel: a time-dependent mass-loss kernel; then :math:`\psi` is obtained by inverting
            the convolution (:func:`sfr_history_from_mass`) from ``z_start`` (default
            max(z, 3)) down to min(z), assuming a Madau & Dickinson (2014)-shaped SFR history
            before ``z_start`` normalised to :math:`\rho_*(z_{start})`.
        log_m_lo, log_m_hi: mass range of :math:`\rho_*` [log10 Msun].
        cosmology: astropy cosmology or name (default WMAP9).
        seed: seed or Generator for the R draws.
        z_start, n_time: start redshift and number of time steps of the kernel inversion.

    Returns:
        :class:`SFRDFromRho` with ``log_sfrd`` of shape (D, Z).
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    cosmo = _cosmo(cosmology)
    d = n_draws(p)
    if kernel is None:
        if isinstance(return_fraction, ReturnFractionPrior):
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            r = return_fraction.sample(d, rng)
            method = f"instantaneous recycling, {return_fraction.describe()}"
        else:
            r = np.broadcast_to(np.asarray(return_fraction, dtype=float), (d,)).copy()
            if np.any((r < 0) | (r >= 1)) or not np.all(np.isfinite(r)):
                raise ValueError("return_fraction must lie in [0, 1)")
            method = ("instantaneous recycling, R = " + f"{r[0]:g}" if np.all(r == r[0])
                      else "instantaneous recycling, R per draw")
        drho_dt = drho_star_dz(p, z, log_m_lo, log_m_hi) * _dz_dt(z, cosmo)[None, :]
        psi = drho_dt / (1.0 - r[:, None])
        return SFRDFromRho(_safe_log10(psi), r, method)

    z_end = float(z.min())
    zs = float(max(z.max(), 3.0) if z_start is None else z_start)
    if zs < z.max():
        raise ValueError(f"z_start={zs} is below the largest requested redshift {z.max()}")
    zt = _z_of_t_table(cosmo)
    t_edges = np.linspace(float(cosmo.age(zs).to_value(u.yr)), float(cosmo.age(z_end).to_value(u.yr)),
                          n_time + 1)
    z_edges = np.interp(t_edges, zt[1], zt[0])
    z_edges[0], z_edges[-1] = zs, z_end
    rho = rho_star_draws(p, z_edges, log_m_lo, log_m_hi)
    from popmodel.literature import madau_dickinson2014_sfrd

    def pre(t: np.ndarray) -> np.ndarray:
        return madau_dickinson2014_sfrd(np.interp(t, zt[1], zt[0]))

    psi = sfr_history_from_mass(t_edges, rho, kernel, pre_history=pre)
    t_mid = 0.5 * (t_edges[1:] + t_edges[:-1])
    t_req = cosmo.age(z).to_value(u.yr)
    lp = _safe_log10(psi)
    out = np.array([np.interp(t_req, t_mid, np.where(np.isfinite(row), row, -1e300)) for row in lp])
    out = np.where(out < -1e200, -np.inf, out)
    return SFRDFromRho(out, None, f"mass-loss kernel: {kernel.name}; MD14-shaped history before z={zs:g}")


def _safe_log10(x: np.ndarray) -> np.ndarray:
    """log10 with -inf where x <= 0 (an SFRD from a shrinking rho_* is not physical)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), -np.inf)


def _z_of_t_table(cosmo: apc.Cosmology) -> tuple[np.ndarray, np.ndarray]:
    zg = np.concatenate([np.linspace(0.0, 10.0, 4001), np.geomspace(10.05, 1500.0, 1000)])
    tg = cosmo.age(zg).to_value(u.yr)
    order = np.argsort(tg)
    return zg[order], tg[order]


def sfr_history_from_mass(
    t_edges: np.ndarray,
    rho: np.ndarray,
    kernel: MassLossKernel,
    *,
    pre_history: Callable[[np.ndarray], np.ndarray] | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    r"""Invert :math:`\rho_*(t)=\int_0^t\psi(t')[1-s f(t-t')]dt'` for a piecewise-constant ψ.

    On the grid :math:`t_0<\dots<t_N` with :math:`\psi=\psi_i` on :math:`(t_{i-1}, t_i]`,

    .. math:: \rho_*(t_n) = A\,g(t_n) + \sum_{i\le n} \psi_i
        \{\Delta_i - s[F(t_n-t_{i-1}) - F(t_n-t_i)]\},

    a lower-triangular system (diagonal :math:`\Delta_n - sF(\Delta_n) > 0`), solved exactly.
    The history before :math:`t_0` has the shape ``pre_history`` (default constant) with
    amplitude A set by :math:`\rho_*(t_0)`: :math:`g(t)=\int_0^{t_0}\mathrm{shape}(t')[1-sf(t-t')]dt'`.

    Args:
        t_edges: (N+1,) increasing cosmic times [yr], t_edges[0] > 0.
        rho: (D, N+1) surviving mass density at the edges [Msun Mpc^-3].
        kernel: the mass-loss kernel f.
        pre_history: shape of the SFR history before t_edges[0] (callable of t [yr]).
        scale: (D,) multiplier s of the kernel per draw (default 1).

    Returns:
        (D, N) mean SFR density in each interval [Msun yr^-1 Mpc^-3].
    """
    t = np.asarray(t_edges, dtype=float)
    rho = np.atleast_2d(np.asarray(rho, dtype=float))
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0) or t[0] <= 0:
        raise ValueError("t_edges must be a 1-D increasing grid of positive times")
    if rho.shape[-1] != t.size:
        raise ValueError(f"rho has {rho.shape[-1]} times per draw; t_edges has {t.size}")
    d = rho.shape[0]
    s = np.ones(d) if scale is None else np.broadcast_to(np.asarray(scale, float), (d,))
    n = t.size - 1
    dt = np.diff(t)
    tn = t[1:, None]
    # lag integrals: F(t_n - t_{i-1}) - F(t_n - t_i) for i <= n
    lag = kernel.integral(tn - t[None, :-1]) - kernel.integral(tn - t[None, 1:])
    tri = np.tril(np.ones((n, n), dtype=bool))
    w0 = np.where(tri, dt[None, :], 0.0)
    w1 = np.where(tri, lag, 0.0)
    # pre-history on a lag grid dense near t_0
    tau = np.concatenate([[0.0], np.geomspace(1e3, t[0], 3000)])
    shape = np.ones_like(tau) if pre_history is None else np.asarray(pre_history(t[0] - tau), float)
    if np.any(shape < 0) or not np.all(np.isfinite(shape)):
        raise ValueError("pre_history must be finite and non-negative")
    ages = t[:, None] - t[0] + tau[None, :]  # (N+1, T)
    g0 = np.trapezoid(np.broadcast_to(shape, ages.shape), tau, axis=-1)
    g1 = np.trapezoid(shape * kernel(ages), tau, axis=-1)
    out = np.empty((d, n))
    if np.all(s == s[0]):
        g = g0 - s[0] * g1
        amp = rho[:, :1] / g[0]
        rhs = rho[:, 1:] - amp * g[None, 1:]
        out[:] = solve_triangular(w0 - s[0] * w1, rhs.T, lower=True).T
        return out
    for k in range(d):
        g = g0 - s[k] * g1
        rhs = rho[k, 1:] - rho[k, 0] / g[0] * g[1:]
        out[k] = solve_triangular(w0 - s[k] * w1, rhs, lower=True)
    return out




def leja2022_completeness(z: np.ndarray) -> np.ndarray:
    """Mass-completeness limit log M_c(z) [log10 Msun, Prospector masses] of the Leja+22 sample.

    3D-HST (Tal+14 -> Prospector) at z >= 0.5, COSMOS-2015 (Laigle+16 -> Prospector) below,
    where 3D-HST has no galaxies (linear interpolation, flat beyond the
    ends, as in jrleja/sfs_leja_trained_flow).
    """
    z = np.asarray(z, dtype=float)
    hst = np.interp(z, [0.65, 1.0, 1.5, 2.1, 3.0],
                    [8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536])
    cos = np.interp(z, [0.175, 0.5, 0.8, 1.125, 1.525, 2.0],
                    [8.57779419, 9.13212072, 9.54630419, 9.75007079, 10.10434753, 10.30023359])
    return np.where(z >= 0.5, hst, cos)


def fit_leja2022_form(
    log_m: np.ndarray,
    log_sfr: np.ndarray,
    z: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    sigma_data: float = 0.05,
    prior_sigma: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.3),
    log_mt_grid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    r"""Fit the Leja+22 Eq. 10 broken power law to curves log SFR(log M), one fit per row.

    For each row b the fit minimises
    :math:`\sum_m w_{bm}(y_{bm}-\hat y)^2/\sigma^2 + \sum_j (\theta_j-\theta_{0,j})^2/\sigma_j^2`
    over :math:`\theta = (a, b, c, \log M_t)`, with the prior centred on the Table 1 *mean* row
    at the row's redshift. The model is linear in (a, b, c) at fixed :math:`\log M_t`, so those
    are solved exactly on a grid of :math:`\log M_t` (profile) and the best grid point kept.
    Where the data do not reach below :math:`\log M_t`, b stays at its Table 1 value.

    Args:
        log_m: (M,) masses.
        log_sfr: (B, M) curves; NaN entries are ignored.
        z: (B,) redshift of each row (prior centre).
        weights: (B, M) non-negative weights (default: 1 where finite).
        sigma_data: assumed scatter of the curve about the form [dex] (sets the prior's weight).
        prior_sigma: prior widths of (a, b, c, log M_t).
        log_mt_grid: grid of log M_t (default 9.0-11.8 in steps of 0.01).

    Returns:
        ``{"a", "b", "c", "log_mt", "n_used"}``, each (B,).
    """
    x = np.asarray(log_m, dtype=float)
    y = np.atleast_2d(np.asarray(log_sfr, dtype=float))
    z = np.broadcast_to(np.asarray(z, dtype=float), (y.shape[0],))
    w = np.isfinite(y).astype(float) if weights is None else np.asarray(weights, float) * np.isfinite(y)
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    y = np.where(w > 0, np.nan_to_num(y), 0.0)
    grid = np.arange(9.0, 11.8001, 0.01) if log_mt_grid is None else np.asarray(log_mt_grid, float)
    q0 = leja2022_coefficients(z, "mean")
    th0 = np.stack([q0["a"], q0["b"], q0["c"]], axis=-1)  # (B, 3)
    lam = 1.0 / np.asarray(prior_sigma[:3]) ** 2
    dx = x[None, :] - grid[:, None]  # (G, M)
    cols = np.stack([np.maximum(dx, 0.0), np.minimum(dx, 0.0), np.ones_like(dx)], axis=-1)  # (G,M,3)
    outer = (cols[..., :, None] * cols[..., None, :]).reshape(grid.size, x.size, 9)
    s2 = sigma_data**2
    sxx = np.einsum("bm,gmk->bgk", w, outer).reshape(y.shape[0], grid.size, 3, 3) / s2
    sxy = np.einsum("bm,gmi->bgi", w * y, cols) / s2
    syy = np.sum(w * y**2, axis=1) / s2
    amat = sxx + np.diag(lam)[None, None]
    rhs = sxy + (lam * th0)[:, None, :]
    theta = np.linalg.solve(amat, rhs[..., None])[..., 0]  # (B, G, 3)
    jmin = (syy[:, None] + np.sum(lam * th0**2, axis=-1)[:, None]
            - np.einsum("bgi,bgi->bg", rhs, theta)
            + (grid[None, :] - q0["log_mt"][:, None]) ** 2 / prior_sigma[3] ** 2)
    best = np.argmin(jmin, axis=1)
    th = theta[np.arange(y.shape[0]), best]
    return {"a": th[:, 0], "b": th[:, 1], "c": th[:, 2], "log_mt": grid[best],
            "n_used": np.sum(w > 0, axis=1)}


def _eq10(log_m: np.ndarray, q: dict[str, np.ndarray]) -> np.ndarray:
    xx = log_m[None, :] - q["log_mt"][:, None]
    return np.where(xx > 0, q["a"][:, None] * xx, q["b"][:, None] * xx) + q["c"][:, None]


@dataclass(frozen=True)
class SFRDFromSFS:
    """Result of :func:`sfrd_from_sfs`.

    Attributes:
        log_sfrd: (D, Z) log10 SFRD [Msun/yr/Mpc^3].
        frac_below_limit: (D, Z) fraction of the SFRD from masses below log M_c(z).
        log_mc: (Z,) completeness limit used (NaN where none).
        source: where <SFR> came from.
        eq10_fits: (E, Z) Eq. 10 parameters fitted above the limit (None when not fitted).
    """

    log_sfrd: np.ndarray
    frac_below_limit: np.ndarray
    log_mc: np.ndarray
    source: str
    eq10_fits: dict[str, np.ndarray] | None = None


def _members(arr: np.ndarray, nz: int, nm: int, what: str) -> np.ndarray:
    a = np.asarray(arr, dtype=float)
    if a.shape == (nz, nm):
        return a[None]
    if a.ndim == 3 and a.shape[1:] == (nz, nm):
        return a
    raise ValueError(f"{what} returned shape {a.shape}; expected (Z, M) = {(nz, nm)} or (E, Z, M)")


def sfrd_from_sfs(
    p: ContinuityParams,
    z: np.ndarray,
    *,
    mean_log_sfr: ArrayFn | None = None,
    completeness: Callable[[np.ndarray], np.ndarray] | None = leja2022_completeness,
    log_m_lo: float = 8.0,
    log_m_hi: float = 13.0,
    dlogm: float = 0.01,
    fit_kwargs: dict | None = None,
) -> SFRDFromSFS:
    r"""SFRD as :math:`\int\Phi\,\langle\mathrm{SFR}\rangle\,d\log M` (route 2 of the module doc).

    Args:
        p: continuity-model draws (D).
        z: redshifts (Z).
        mean_log_sfr: callable ``(log_m (M,), z (Z,)) -> log10 <SFR>`` of shape (Z, M) or
            (E, Z, M) (E ensemble members; SMF draw d is paired with member d mod E); NaN where
            the model is not defined. Used only at and above ``completeness(z)``; below it the
            Eq. 10 form fitted to it above the limit (:func:`fit_leja2022_form`). ``None``: the
            Leja+22 Table 1 mean fit at all masses.
        completeness: callable z -> log M_c (default :func:`leja2022_completeness`); ``None``
            uses the model at all masses (and reports no below-limit fraction).
        log_m_lo, log_m_hi: integration range [log10 Msun].
        dlogm: quadrature step [dex] (trapezoid).
        fit_kwargs: extra arguments of :func:`fit_leja2022_form`.
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    if not log_m_hi > log_m_lo:
        raise ValueError(f"log_m_hi={log_m_hi} must exceed log_m_lo={log_m_lo}")
    lm = np.linspace(log_m_lo, log_m_hi, round((log_m_hi - log_m_lo) / dlogm) + 1)
    log_mc = np.full(z.shape, np.nan) if completeness is None else np.asarray(completeness(z), float)
    fits = None
    if mean_log_sfr is None:
        ls = leja2022_sfs(lm[None, :], z[:, None], "mean")[None]
        source = "Leja+22 Table 1 mean fit (Eq. 10) at all masses: no SFS posterior given"
    else:
        flow = _members(mean_log_sfr(lm, z), z.size, lm.size, "mean_log_sfr")
        e = flow.shape[0]
        above = lm[None, :] >= np.nan_to_num(log_mc, nan=-np.inf)[:, None]  # (Z, M)
        use = np.isfinite(flow) & above[None]
        fit_y = np.where(use, flow, np.nan).reshape(e * z.size, lm.size)
        step = max(1, round(0.05 / dlogm))
        fits = fit_leja2022_form(lm[::step], fit_y[:, ::step], np.tile(z, e), **(fit_kwargs or {}))
        param = _eq10(lm, fits).reshape(e, z.size, lm.size)
        ls = np.where(use, flow, param)
        fits = {k: v.reshape(e, z.size) for k, v in fits.items()}
        source = ("SFS model above log M_c(z); below it (and where the model is undefined) the "
                  "Leja+22 Eq. 10 form fitted to the model above the limit")
    d = n_draws(p)
    member = np.arange(d) % ls.shape[0]
    total = np.empty((d, z.size))
    below = np.full((d, z.size), np.nan)
    dl = np.diff(lm)
    for k in range(z.size):  # one redshift at a time keeps memory at (D, M)
        integrand = 10.0 ** (log10_phi_grid(p, lm, z[k : k + 1])[:, 0] + ls[member, k])
        cum = np.concatenate([np.zeros((d, 1)),
                              np.cumsum(0.5 * (integrand[:, 1:] + integrand[:, :-1]) * dl, axis=-1)],
                             axis=-1)
        total[:, k] = cum[:, -1]
        mc = log_mc[k]
        if np.isfinite(mc):  # linear interpolation of the running integral at log M_c
            mcc = float(np.clip(mc, lm[0], lm[-1]))
            j = int(min(np.searchsorted(lm, mcc, side="right") - 1, lm.size - 2))
            frac = (mcc - lm[j]) / (lm[j + 1] - lm[j])
            below[:, k] = cum[:, j] + frac * (cum[:, j + 1] - cum[:, j])
    return SFRDFromSFS(np.log10(total), below / total, log_mc, source, fits)




def ssfr_cut(z: np.ndarray, kind: str = "hubble", *, factor: float = 0.2,
             cosmology: apc.Cosmology | str | None = None) -> np.ndarray:
    r"""log10 of the sSFR [yr^-1] separating star-forming from quiescent galaxies.

    Args:
        kind: ``"hubble"``: :math:`\mathrm{sSFR} = 0.2/t_H(z)` with :math:`t_H` the age of the
            Universe (Pacifici et al. 2016, ApJ 832, 79; Carnall et al. 2018, MNRAS 480, 4379);
            ``"constant"``: :math:`10^{-11}` yr^-1 (the UniverseMachine definition, Behroozi
            et al. 2019, used in its quenched mass functions).
        factor: the multiplier of :math:`1/t_H` for ``"hubble"``.
    """
    z = np.asarray(z, dtype=float)
    if kind == "hubble":
        return np.log10(factor / _cosmo(cosmology).age(z).to_value(u.yr))
    if kind == "constant":
        return np.full(z.shape, -11.0)
    raise ValueError(f"ssfr cut kind must be 'hubble' or 'constant', not {kind!r}")


def p_above_cut_split_normal(log_sfr_cut: np.ndarray, q16: np.ndarray, q50: np.ndarray,
                             q84: np.ndarray) -> np.ndarray:
    r"""P(log SFR > cut) for a split normal with the given 16/50/84th percentiles.

    Two half-Gaussians of widths :math:`q_{50}-q_{16}` and :math:`q_{84}-q_{50}` joined at the
    median (each holds half the probability), so the percentiles are reproduced exactly. An
    approximation for a bimodal population; use the flow's own conditional where available.
    """
    c, a, m, b = np.broadcast_arrays(*(np.asarray(v, float) for v in (log_sfr_cut, q16, q50, q84)))
    lo, hi = m - a, b - m
    if np.any(lo[np.isfinite(lo)] <= 0) or np.any(hi[np.isfinite(hi)] <= 0):
        raise ValueError("percentiles must satisfy q16 < q50 < q84")
    with np.errstate(invalid="ignore"):
        up = 0.5 * erfc((c - m) / (hi * np.sqrt(2.0)))
        dn = 1.0 - 0.5 * erfc((m - c) / (lo * np.sqrt(2.0)))
    return np.where(c >= m, up, dn)


def sf_q_mass_functions(p: ContinuityParams, log_m: np.ndarray, z: np.ndarray,
                        p_star_forming: ArrayFn) -> tuple[np.ndarray, np.ndarray]:
    r"""Star-forming and quiescent mass functions :math:`\Phi\,P` and :math:`\Phi\,(1-P)`.

    Args:
        p: continuity-model draws (D).
        log_m: (M,) masses; z: (Z,) redshifts.
        p_star_forming: callable ``(log_m, z) -> P(sSFR > cut | M, z)`` of shape (Z, M) or
            (E, Z, M) (member d mod E for draw d); the cut is the caller's (document it, e.g.
            :func:`ssfr_cut`). NaN where undefined (propagates).

    Returns:
        (log10 Phi_SF, log10 Phi_Q), each (D, Z, M) [Mpc^-3 dex^-1].
    """
    lm = np.asarray(log_m, dtype=float)
    z = np.atleast_1d(np.asarray(z, dtype=float))
    prob = _members(p_star_forming(lm, z), z.size, lm.size, "p_star_forming")
    if np.any((prob < 0) | (prob > 1)):
        raise ValueError("p_star_forming must return probabilities in [0, 1]")
    log_phi = log10_phi_grid(p, lm, z)
    pr = prob[np.arange(log_phi.shape[0]) % prob.shape[0]]
    with np.errstate(divide="ignore"):
        return log_phi + np.log10(pr), log_phi + np.log10(1.0 - pr)
