"""Approximate per-galaxy posteriors from published redshift percentiles and mass estimates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import ndtri

from popmodel.catalog import CatalogError, PosteriorCatalog

__all__ = [
    "Z_SCORE_68",
    "Z_SCORE_95",
    "PercentileReport",
    "catalog_from_percentiles",
    "sample_quantile_matched",
]

#: Standard-normal score of the 84th percentile, Phi^-1(0.84) = 0.99446.
Z_SCORE_68 = float(ndtri(0.84))
#: Standard-normal score of the 97.5th percentile, Phi^-1(0.975) = 1.95996.
Z_SCORE_95 = float(ndtri(0.975))

_N_DL_GRID = 2000
_MAX_REDRAW_ROUNDS = 200
_METHOD = "percentiles, piecewise split-normal"


@dataclass
class PercentileReport:
    """What :func:`catalog_from_percentiles` found in the percentiles and how it handled them.

    Attributes:
        n_galaxies: Number of galaxies.
        n_exact_z: Galaxies with exact (spectroscopic) redshifts: percentiles -1, NaN, or all
            equal to the median.
        n_median_outside_68: Galaxies whose median lies outside their own 16-84 interval.
        ids_median_outside_68: Their ids.
        how_handled: Plain-text account of what was done with them.
        ids_exact_z: Ids of the galaxies with exact redshifts.
    """

    n_galaxies: int
    n_exact_z: int
    n_median_outside_68: int
    ids_median_outside_68: list[str] = field(default_factory=list)
    how_handled: str = ""
    ids_exact_z: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Return the report as a plain dict (for metadata)."""
        return asdict(self)


def _optional(values: np.ndarray | float | None, n: int) -> np.ndarray:
    """Broadcast optional per-galaxy percentiles to ``(n,)``, NaN where absent."""
    if values is None:
        return np.full(n, np.nan)
    return np.broadcast_to(np.asarray(values, dtype=np.float64), (n,)).copy()


def sample_quantile_matched(
    rng: np.random.Generator,
    median: np.ndarray | float,
    p16: np.ndarray | float,
    p84: np.ndarray | float,
    p2_5: np.ndarray | float | None = None,
    p97_5: np.ndarray | float | None = None,
    *,
    size: int,
) -> np.ndarray:
    r"""Draw from a piecewise split-normal that reproduces the given percentiles exactly.

    The quantile function is piecewise linear in the standard-normal score
    :math:`u \sim N(0, 1)`: :math:`x = m + (p_{84} - m)\,u/u_{68}` for :math:`0 < u < u_{68}`
    and :math:`x = m + (m - p_{16})\,u/u_{68}` for :math:`-u_{68} < u < 0` (a split normal),
    where :math:`u_{68} = \Phi^{-1}(0.84) = 0.99446` so that the 16th and 84th percentiles
    are reproduced exactly. When the 95% percentiles are given, the slope changes beyond
    :math:`|u| > u_{68}` so that :math:`u = \pm 1.95996` maps to :math:`p_{97.5}` /
    :math:`p_{2.5}`; otherwise the inner slope continues. A NaN in ``p2_5`` / ``p97_5``
    means "not given" for that galaxy.

    Args:
        rng: Random generator.
        median: ``(N,)`` medians.
        p16: ``(N,)`` 16th percentiles.
        p84: ``(N,)`` 84th percentiles.
        p2_5: ``(N,)`` 2.5th percentiles, optional.
        p97_5: ``(N,)`` 97.5th percentiles, optional.
        size: Draws per galaxy.

    Returns:
        ``(N, size)`` draws.

    Raises:
        ValueError: If the percentiles are not ordered.
    """
    median = np.atleast_1d(np.asarray(median, dtype=np.float64))
    n = median.size
    p16 = np.broadcast_to(np.asarray(p16, dtype=np.float64), (n,))
    p84 = np.broadcast_to(np.asarray(p84, dtype=np.float64), (n,))
    lo95 = _optional(p2_5, n)
    hi95 = _optional(p97_5, n)
    if not (np.all(p16 <= median) and np.all(median <= p84)):
        raise ValueError("percentiles must satisfy p16 <= median <= p84")
    if np.any(lo95 > p16) or np.any(hi95 < p84):
        raise ValueError("percentiles must satisfy p2_5 <= p16 and p97_5 >= p84")
    u = rng.standard_normal((n, size))
    slope_hi = ((p84 - median) / Z_SCORE_68)[:, None]
    slope_lo = ((median - p16) / Z_SCORE_68)[:, None]
    tail = Z_SCORE_95 - Z_SCORE_68
    slope_hi95 = np.where(np.isnan(hi95), slope_hi[:, 0], (hi95 - p84) / tail)[:, None]
    slope_lo95 = np.where(np.isnan(lo95), slope_lo[:, 0], (p16 - lo95) / tail)[:, None]
    m = median[:, None]
    inner = np.abs(u) <= Z_SCORE_68
    x_inner = m + np.where(u >= 0, slope_hi, slope_lo) * u
    x_upper = p84[:, None] + slope_hi95 * (u - Z_SCORE_68)
    x_lower = p16[:, None] + slope_lo95 * (u + Z_SCORE_68)
    return np.where(inner, x_inner, np.where(u > 0, x_upper, x_lower))


def _check_finite(ids: np.ndarray, values: np.ndarray, column: str) -> None:
    """Raise CatalogError naming the galaxies whose ``column`` is not finite."""
    bad = ~np.isfinite(values)
    if np.any(bad):
        raise CatalogError(f"column {column!r} is not finite for galaxy id(s) {_short(ids[bad])}")


def _short(ids: np.ndarray, limit: int = 10) -> str:
    """Short comma-separated list of ids for messages."""
    shown = ", ".join(repr(str(i)) for i in ids[:limit])
    return shown + (f", ... ({ids.size} in total)" if ids.size > limit else "")


def _log10_dl_interpolator(cosmology: Any, z_lo: float, z_hi: float) -> CubicSpline:
    """Cubic spline of log10 D_L [Mpc] against log10 z on a log-spaced grid."""
    z_lo, z_hi = 0.999 * z_lo, 1.001 * z_hi
    log_z = np.linspace(np.log10(z_lo), np.log10(z_hi), _N_DL_GRID)
    d_l = cosmology.luminosity_distance(10.0**log_z).to_value("Mpc")
    return CubicSpline(log_z, np.log10(d_l))


def catalog_from_percentiles(
    ids: Sequence[Any] | np.ndarray,
    fields: Sequence[str] | np.ndarray | str,
    z_median: np.ndarray,
    z_p16: np.ndarray,
    z_p84: np.ndarray,
    log_mass: np.ndarray,
    *,
    mass_error_dex: float | np.ndarray,
    n_samples: int = 64,
    z_p2_5: np.ndarray | None = None,
    z_p97_5: np.ndarray | None = None,
    log_sfr: np.ndarray | None = None,
    sfr_error_dex: float | np.ndarray | None = None,
    cosmology: Any = None,
    seed: int = 0,
    z_min_sample: float = 1e-3,
) -> tuple[PosteriorCatalog, PercentileReport]:
    r"""Build approximate posterior samples from catalog redshift percentiles and masses.

    Redshift samples come from :func:`sample_quantile_matched`. The published mass was
    computed at ``z_median``, so each sample's mass moves with the luminosity distance:
    :math:`\log M_s = \log M + 2\log_{10}[D_L(z_s)/D_L(z_{med})] + \epsilon_s` with
    :math:`\epsilon_s \sim N(0, \sigma_M)` and ``mass_error_dex`` an *assumed* mass
    uncertainty. SFR, also a luminosity, gets the same distance shift plus
    :math:`N(0, \sigma_{SFR})`.

    Exact (spectroscopic) redshifts, flagged by p16 and p84 both equal to -1 or NaN (the
    95% percentiles then -1, NaN or absent) or all percentiles equal to the median, give
    ``z = z_median`` for every sample; their ids are listed in the report. A row with only
    one of p16 / p84 flagged (say p16 NaN, p84 a number), or with a 95% percentile given
    beside flagged p16 / p84, is ambiguous and an error naming the galaxies. A median outside
    its own [p16, p84] interval is neither dropped nor clipped: the z posterior is built from
    the interval alone, with ``(p16 + p84) / 2`` as its median; the mass shift is still
    relative to ``z_median``. Draws below ``z_min_sample`` are redrawn (rejection) and the
    number of redraws is recorded in ``meta``. The interim prior is flat (``log_prior`` is
    None): the percentile posteriors are treated as likelihoods.

    Args:
        ids: ``(N,)`` galaxy ids.
        fields: ``(N,)`` field of each galaxy, or one field name for all.
        z_median: ``(N,)`` catalog redshift (point estimate at which masses were computed).
        z_p16: ``(N,)`` 16th redshift percentile (-1 or NaN for exact redshifts).
        z_p84: ``(N,)`` 84th redshift percentile (-1 or NaN for exact redshifts).
        log_mass: ``(N,)`` catalog stellar mass [log10 Msun] at ``z_median``.
        mass_error_dex: Assumed mass uncertainty [dex], scalar or ``(N,)``.
        n_samples: Samples per galaxy.
        z_p2_5: ``(N,)`` 2.5th redshift percentile, optional (NaN: not given).
        z_p97_5: ``(N,)`` 97.5th redshift percentile, optional (NaN: not given).
        log_sfr: ``(N,)`` catalog SFR [log10 Msun/yr] at ``z_median``, optional.
        sfr_error_dex: Assumed SFR uncertainty [dex]; required when ``log_sfr`` is given.
        cosmology: Astropy cosmology; default ``FlatLambdaCDM(H0=70, Om0=0.3)``.
        seed: Seed for ``np.random.default_rng``.
        z_min_sample: Smallest allowed redshift sample.

    Returns:
        The catalog and a report on exact redshifts and medians outside their 68% interval.

    Raises:
        CatalogError: For non-finite or inconsistent inputs, naming the galaxy id(s) and column,
            including a row whose percentiles are only partly missing.
    """
    ids = np.asarray(ids).astype(str)
    if ids.ndim != 1:
        raise CatalogError("ids must be one-dimensional")
    n = ids.size
    if n_samples < 1:
        raise CatalogError(f"n_samples must be positive, got {n_samples}")

    def per_galaxy(values: Any, column: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.size != n):
            raise CatalogError(f"column {column!r} has shape {arr.shape}, expected ({n},)")
        return np.broadcast_to(arr, (n,)).copy()

    fields = np.broadcast_to(np.asarray(fields).astype(str), (n,)).copy()
    z_med = per_galaxy(z_median, "z_median")
    p16 = per_galaxy(z_p16, "z_p16")
    p84 = per_galaxy(z_p84, "z_p84")
    lo95 = per_galaxy(np.nan if z_p2_5 is None else z_p2_5, "z_p2_5")
    hi95 = per_galaxy(np.nan if z_p97_5 is None else z_p97_5, "z_p97_5")
    mass = per_galaxy(log_mass, "log_mass")
    sigma_m = per_galaxy(mass_error_dex, "mass_error_dex")

    _check_finite(ids, mass, "log_mass")
    _check_finite(ids, z_med, "z_median")
    _check_finite(ids, sigma_m, "mass_error_dex")
    if np.any(z_med <= 0):
        raise CatalogError(f"column 'z_median' is <= 0 for galaxy id(s) {_short(ids[z_med <= 0])}")
    if np.any(sigma_m < 0):
        raise CatalogError(
            f"column 'mass_error_dex' is negative for galaxy id(s) {_short(ids[sigma_m < 0])}"
        )
    sfr = sigma_sfr = None
    if log_sfr is not None:
        if sfr_error_dex is None:
            raise CatalogError("sfr_error_dex (assumed SFR uncertainty) is required with log_sfr")
        sfr = per_galaxy(log_sfr, "log_sfr")
        sigma_sfr = per_galaxy(sfr_error_dex, "sfr_error_dex")
        _check_finite(ids, sfr, "log_sfr")
        _check_finite(ids, sigma_sfr, "sfr_error_dex")
        if np.any(sigma_sfr < 0):
            raise CatalogError(
                f"column 'sfr_error_dex' is negative for galaxy id(s) {_short(ids[sigma_sfr < 0])}"
            )

    # --- classify redshifts: exact, median outside its 68% interval, regular.
    flag16, flag84 = np.isnan(p16) | (p16 == -1), np.isnan(p84) | (p84 == -1)
    partial = flag16 != flag84
    if np.any(partial):
        cols = sorted({"z_p16" if f else "z_p84" for f in flag16[partial]})
        raise CatalogError(
            f"only one of 'z_p16' / 'z_p84' is missing (NaN or -1) in column(s) {cols} for "
            f"galaxy id(s) {_short(ids[partial])}: an exact (spectroscopic) redshift needs both "
            "missing, a photometric one both given"
        )
    missing = flag16 & flag84
    all_equal = (p16 == z_med) & (p84 == z_med)
    all_equal &= (np.isnan(lo95) | (lo95 == z_med)) & (np.isnan(hi95) | (hi95 == z_med))
    exact = missing | all_equal
    fuzzy = ~exact
    for column, arr in (("z_p16", p16), ("z_p84", p84)):
        bad = fuzzy & ~np.isfinite(arr)
        if np.any(bad):
            raise CatalogError(
                f"column {column!r} is not finite for galaxy id(s) {_short(ids[bad])}"
            )
    bad = fuzzy & (p16 > p84)
    if np.any(bad):
        raise CatalogError(f"column 'z_p16' exceeds 'z_p84' for galaxy id(s) {_short(ids[bad])}")
    for column, arr in (("z_p2_5", lo95), ("z_p97_5", hi95)):
        bad = fuzzy & (arr == -1)
        arr[bad] = np.nan  # -1 means "not given" for the 95% percentiles
        bad = fuzzy & np.isinf(arr)
        if np.any(bad):
            raise CatalogError(
                f"column {column!r} is infinite for galaxy id(s) {_short(ids[bad])}"
            )
    bad = fuzzy & (lo95 > p16)
    if np.any(bad):
        raise CatalogError(f"column 'z_p2_5' exceeds 'z_p16' for galaxy id(s) {_short(ids[bad])}")
    bad = fuzzy & (hi95 < p84)
    if np.any(bad):
        raise CatalogError(
            f"column 'z_p97_5' is below 'z_p84' for galaxy id(s) {_short(ids[bad])}"
        )
    for column, arr in (("z_p2_5", lo95), ("z_p97_5", hi95)):
        given = missing & ~np.isnan(arr) & (arr != -1) & (arr != z_med)
        if np.any(given):
            raise CatalogError(
                f"column {column!r} is given while 'z_p16' and 'z_p84' are missing (NaN or -1) "
                f"for galaxy id(s) {_short(ids[given])}: give all percentiles, or none for an "
                "exact (spectroscopic) redshift"
            )
    outside = fuzzy & ((z_med < p16) | (z_med > p84))
    shape_median = np.where(outside, 0.5 * (p16 + p84), z_med)

    # --- redshift samples, with rejection below z_min_sample.
    rng = np.random.default_rng(seed)
    z = np.repeat(z_med[:, None], n_samples, axis=1)
    rows = np.flatnonzero(fuzzy)
    n_redrawn = 0
    if rows.size:
        args = (shape_median[rows], p16[rows], p84[rows], lo95[rows], hi95[rows])
        draws = sample_quantile_matched(rng, *args, size=n_samples)
        low = draws < z_min_sample
        for _ in range(_MAX_REDRAW_ROUNDS):
            if not low.any():
                break
            n_redrawn += int(low.sum())
            redo = np.flatnonzero(low.any(axis=1))
            fresh = sample_quantile_matched(rng, *(a[redo] for a in args), size=n_samples)
            sub = draws[redo]
            sub[low[redo]] = fresh[low[redo]]
            draws[redo] = sub
            low = draws < z_min_sample
        if low.any():
            stuck = ids[rows[np.flatnonzero(low.any(axis=1))]]
            raise CatalogError(
                f"redshift posteriors lie almost entirely below z_min_sample={z_min_sample} for "
                f"galaxy id(s) {_short(stuck)}; check column 'z_p84'"
            )
        z[rows] = draws

    # --- luminosity-distance shift of mass (and SFR), on an interpolation grid.
    if cosmology is None:
        from astropy.cosmology import FlatLambdaCDM

        cosmology = FlatLambdaCDM(H0=70, Om0=0.3)
    dm = np.zeros((n, n_samples))
    if n:
        spline = _log10_dl_interpolator(
            cosmology, min(z.min(), z_med.min()), max(z.max(), z_med.max())
        )
        shift = 2.0 * (spline(np.log10(z)) - spline(np.log10(z_med))[:, None])
        dm = np.where(exact[:, None], 0.0, shift)
    samples_mass = mass[:, None] + dm + rng.normal(0.0, 1.0, (n, n_samples)) * sigma_m[:, None]
    samples_sfr = None
    if sfr is not None:
        noise = rng.normal(0.0, 1.0, (n, n_samples)) * sigma_sfr[:, None]
        samples_sfr = (sfr[:, None] + dm + noise).ravel()

    n_out = int(outside.sum())
    how = (
        f"{int(exact.sum())} galaxies with exact (spectroscopic) redshifts: every sample has "
        f"z = z_median. {n_out} galaxies had a median outside their own 16-84 interval; they "
        "were kept (not dropped or clipped): their z posterior was built from the interval's "
        "own percentiles with (p16 + p84) / 2 as median, and their mass samples are still "
        "shifted relative to the catalog z_median at which the mass was computed. "
        f"{n_redrawn} redshift draws below z_min_sample={z_min_sample} were redrawn."
    )
    report = PercentileReport(
        n_galaxies=n,
        n_exact_z=int(exact.sum()),
        n_median_outside_68=n_out,
        ids_median_outside_68=[str(i) for i in ids[outside]],
        how_handled=how,
        ids_exact_z=[str(i) for i in ids[exact]],
    )

    def describe(sigma: np.ndarray, given: Any) -> Any:
        if np.ndim(given) == 0:
            return float(given)
        if n == 0:
            return "per-galaxy (empty)"
        return {
            "per_galaxy": True,
            "min": float(sigma.min()),
            "median": float(np.median(sigma)),
            "max": float(sigma.max()),
        }

    h0 = getattr(cosmology, "H0", None)
    meta: dict[str, Any] = {
        "method": _METHOD,
        "mass_error_dex": describe(sigma_m, mass_error_dex),
        "mass_error_note": (
            "assumed mass uncertainty (dex), Gaussian, added to the luminosity-distance shift "
            "2*log10(D_L(z_s)/D_L(z_median))"
        ),
        "n_samples": int(n_samples),
        "seed": int(seed),
        "z_min_sample": float(z_min_sample),
        "n_redrawn_below_z_min": n_redrawn,
        "quantile_knots": "u = +-Phi^-1(0.84) -> p16/p84, u = +-Phi^-1(0.975) -> p2.5/p97.5",
        "cosmology": {
            "name": str(getattr(cosmology, "name", None)),
            "H0": None if h0 is None else float(h0.to_value("km / (Mpc s)")),
            "Om0": float(getattr(cosmology, "Om0", np.nan)),
        },
        "interim_prior": "flat (percentile posteriors treated as likelihoods)",
        "report": report.as_dict(),
    }
    if sfr is not None:
        meta["sfr_error_dex"] = describe(sigma_sfr, sfr_error_dex)
        meta["sfr_note"] = (
            "assumed SFR uncertainty (dex); log_sfr gets the same 2*log10(D_L ratio) shift as "
            "mass, since SFR is also derived from luminosities"
        )

    catalog = PosteriorCatalog(
        ids=ids,
        fields=fields,
        offsets=np.arange(n + 1, dtype=np.int64) * n_samples,
        log_mass=samples_mass.ravel(),
        z=z.ravel(),
        log_sfr=samples_sfr,
        log_prior=None,
        meta=meta,
        obs_log_mass=mass,
        obs_z=z_med,
    )
    return catalog, report
