r"""Star-forming-sequence statistics of a conditional density p(log SFR | log M, z).

Given the density on a log SFR grid at each (log M, z) node this module returns

* the **ridge**: the mode of p(log SFR | log M, z) on the star-forming branch, i.e. the highest
  local maximum above the specific-SFR cut below (refined by a parabola through the three grid
  points around it); NaN when the density has no local maximum above the cut. With
  ``ridge_smoothing`` > 0 the mode is that of the density convolved with a Gaussian of that
  width [dex]: a Gaussian's mode does not move, but the kinks that spline flows put at their
  knots (the rational-quadratic splines are only C^1) can no longer capture the mode, which
  otherwise jumps by ~0.1 dex between them on flat-topped densities (measured on the mocks);
* ``bimodal``: True where the (smoothed) density has two or more local maxima each with a
  prominence of at least ``bimodal_prominence`` (default 10%) of the global maximum, so that the
  global mode could jump between the star-forming and the quiescent peak;
* **log10 of the mean SFR** over the whole population, star-forming and quiescent,
  :math:`\log_{10}\int 10^{s} p(s)\,ds`, not the mean of log SFR (which is 0.3-0.8
  dex lower and does not match Leja et al. 2022, Table 1);
* the 16th, 50th and 84th **percentiles** of log SFR (linear interpolation of the trapezoid
  CDF), and the scatter, half the 16-84 width.

**Star-forming branch.** A galaxy is on the branch when its mass-doubling number
:math:`D = \mathrm{sSFR}\;t_{\rm age}(z)` exceeds ``doubling_cut`` (default 0.1, between the
quiescent limit 1/20 and the star-forming limit 1/3 of Pacifici et al. 2016, ApJ 832, 79 and
Tacchella et al. 2022, ApJ 926, 134): :math:`\log \mathrm{SFR} > \log M + \log_{10}[D /
t_{\rm age}(z)]` with the age of the universe in yr (WMAP9 unless given). At z = 1 the cut is
log sSFR = -10.77, at z = 2 -10.52, about 1 dex below the sequence and above the quiescent
peak.

All functions are numpy-only and work for any density: the trained flows of
:mod:`popmodel.flow.model`, the released Leja et al. 2022 flow, or closed forms in the tests.

References:
    | Leja et al. 2022, ApJ 936, 165 (ridge and mean)
    | Pacifici et al. 2016, ApJ 832, 79; Tacchella et al. 2022, ApJ 926, 134 (sSFR cut)
"""

from __future__ import annotations

from dataclasses import dataclass

import astropy.cosmology as apc
import numpy as np
from scipy.special import logsumexp

__all__ = [
    "DEFAULT_DOUBLING_CUT",
    "SequenceStatistics",
    "log_ssfr_cut",
    "ridge_band",
    "ridge_columns",
    "sequence_statistics",
]

DEFAULT_DOUBLING_CUT = 0.1
_LN10 = np.log(10.0)


def log_ssfr_cut(
    z: np.ndarray | float, doubling_cut: float = DEFAULT_DOUBLING_CUT, cosmology: apc.Cosmology | None = None
) -> np.ndarray:
    """log10 of the specific-SFR threshold of the star-forming branch [1/yr].

    Args:
        z: Redshift(s).
        doubling_cut: Mass-doubling number D = sSFR x t_age(z) at the cut.
        cosmology: Astropy cosmology for the age of the universe; default WMAP9.

    Returns:
        log10(D / t_age(z) [yr]).
    """
    if not doubling_cut > 0:
        raise ValueError(f"doubling_cut must be positive, got {doubling_cut}")
    cosmo = apc.WMAP9 if cosmology is None else cosmology
    age_yr = cosmo.age(np.asarray(z, dtype=np.float64)).to_value("yr")
    return np.log10(doubling_cut / age_yr)


@dataclass
class SequenceStatistics:
    """Statistics of p(log SFR | log M, z) at ``n`` (log M, z) nodes (all arrays ``(n,)``).

    Attributes:
        log_mass, z: The nodes.
        ridge: Mode on the star-forming branch [log10 Msun/yr] (NaN if none).
        log_mean_sfr: log10 of the mean SFR over the whole population.
        q16, q50, q84: Percentiles of log SFR.
        bimodal: Two or more prominent local maxima.
        log_sfr_cut: log SFR at the star-forming-branch cut.
    """

    log_mass: np.ndarray
    z: np.ndarray
    ridge: np.ndarray
    log_mean_sfr: np.ndarray
    q16: np.ndarray
    q50: np.ndarray
    q84: np.ndarray
    bimodal: np.ndarray
    log_sfr_cut: np.ndarray

    @property
    def scatter(self) -> np.ndarray:
        """Half the 16-84 width [dex]."""
        return 0.5 * (self.q84 - self.q16)


def ridge_band(member_ridges: np.ndarray, center: np.ndarray,
               level: float = 0.68) -> tuple[np.ndarray, np.ndarray]:
    r"""The ``level`` band of the central ridge from the K members' ridges (Student-t).

    Each member is trained on a bootstrap resample, so the members scatter about the central
    estimate as the estimate scatters about the truth (bootstrap principle); with K members the
    standard deviation s of that scatter is known only to K - 1 degrees of freedom, and
    :math:`(\hat r - r_{\rm true}) / s` follows Student's t with K - 1 degrees of freedom.
    The band is therefore :math:`\hat r \pm t_{K-1}((1 + \mathrm{level})/2)\, s`.

    The 16th-84th percentiles of the members (the band before this) are too narrow for small
    K: for K = 5 members drawn from the estimator's own Gaussian sampling distribution they
    cover the truth at 48% of the nodes instead of 68% (K = 3: 37%), and they are not centred
    on the central ridge. This band covers 68% under those assumptions. It does not contain
    biases the members share (model misfit common to all of them).

    Args:
        member_ridges: ``(K, n)`` members' ridges (NaN where a member has none).
        center: ``(n,)`` central ridge (where NaN, the members' median is used).
        level: Coverage of the band.

    Returns:
        ``(lo, hi)``, each ``(n,)``; at nodes with fewer than two finite member ridges, the
        members' 16th/84th percentiles (NaN without any).
    """
    import warnings

    from scipy.stats import t as student_t

    arr = np.atleast_2d(np.asarray(member_ridges, dtype=np.float64))
    c = np.asarray(center, dtype=np.float64)
    k = np.sum(np.isfinite(arr), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(arr, axis=0)
        sd = np.nanstd(arr, axis=0, ddof=1)
        pct = np.nanpercentile(arr, [100 * (1 - level) / 2, 100 * (1 + level) / 2], axis=0)
    c = np.where(np.isfinite(c), c, med)
    half = student_t.ppf(0.5 * (1.0 + level), np.maximum(k - 1, 1)) * sd
    ok = k >= 2
    return np.where(ok, c - half, pct[0]), np.where(ok, c + half, pct[1])


def ridge_columns(member_ridges: np.ndarray, pooled_ridge: np.ndarray,
                  estimator: str = "pooled") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The ridge's ``(p16, p50, p84, members' median)`` as ``sfs.ecsv`` stores them.

    p50 is the pooled ridge (``estimator="pooled"``, the mode of the ensemble-averaged
    density) or the members' median (``"median"``); p16/p84 are :func:`ridge_band` about it.
    """
    import warnings

    arr = np.atleast_2d(np.asarray(member_ridges, dtype=np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        members_median = np.nanpercentile(arr, 50, axis=0)
    mid = np.asarray(pooled_ridge, dtype=np.float64) if estimator == "pooled" else members_median
    lo, hi = ridge_band(arr, mid)
    return lo, mid, hi, members_median


def _local_maxima(p: np.ndarray) -> np.ndarray:
    """Boolean ``(n, g)`` mask of strict-left / non-strict-right interior local maxima."""
    mask = np.zeros(p.shape, dtype=bool)
    mask[:, 1:-1] = (p[:, 1:-1] > p[:, :-2]) & (p[:, 1:-1] >= p[:, 2:])
    return mask


def _prominent_peak_count(p: np.ndarray, min_prominence: float) -> np.ndarray:
    """Number of local maxima per row whose topographic prominence exceeds ``min_prominence``."""
    from scipy.signal import find_peaks

    counts = np.zeros(p.shape[0], dtype=int)
    for i, row in enumerate(p):
        # pad so that a maximum at the grid edge counts as a peak
        padded = np.concatenate([[-np.inf], row, [-np.inf]])
        padded[0] = padded[-1] = min(row.min(), 0.0) - 1.0
        peaks, _ = find_peaks(padded, prominence=min_prominence * row.max())
        counts[i] = peaks.size
    return counts


def sequence_statistics(
    log_sfr_grid: np.ndarray,
    log_density: np.ndarray,
    log_mass: np.ndarray,
    z: np.ndarray,
    *,
    doubling_cut: float = DEFAULT_DOUBLING_CUT,
    bimodal_prominence: float = 0.1,
    ridge_smoothing: float = 0.0,
    cosmology: apc.Cosmology | None = None,
) -> SequenceStatistics:
    """Ridge, log mean SFR, percentiles and bimodality of densities tabulated on a grid.

    Args:
        log_sfr_grid: ``(g,)`` strictly increasing, evenly spaced log10 SFR grid [Msun/yr];
            it must cover the density (the mean SFR is dominated by the upper tail).
        log_density: ``(n, g)`` natural-log density of log SFR at each node (normalisation
            irrelevant: each row is normalised here).
        log_mass: ``(n,)`` log10 M* of the nodes.
        z: ``(n,)`` redshifts of the nodes.
        doubling_cut: Mass-doubling number of the star-forming-branch cut (see module doc).
        bimodal_prominence: Minimum prominence of a second peak, relative to the maximum.
        ridge_smoothing: Width [dex] of the Gaussian kernel applied before locating the ridge
            and the peaks (0: none).
        cosmology: For the age of the universe in the cut; default WMAP9.

    Returns:
        The statistics.

    Raises:
        ValueError: For inconsistent shapes, an uneven grid, or rows without finite values.
    """
    s = np.asarray(log_sfr_grid, dtype=np.float64)
    lp = np.atleast_2d(np.asarray(log_density, dtype=np.float64))
    m = np.atleast_1d(np.asarray(log_mass, dtype=np.float64))
    zz = np.atleast_1d(np.asarray(z, dtype=np.float64))
    if s.ndim != 1 or s.size < 5:
        raise ValueError("log_sfr_grid must be one-dimensional with at least 5 points")
    ds = np.diff(s)
    if np.any(ds <= 0) or not np.allclose(ds, ds[0], rtol=1e-6, atol=1e-9):
        raise ValueError("log_sfr_grid must be strictly increasing and evenly spaced")
    step = float(ds[0])
    if lp.shape[1] != s.size:
        raise ValueError(f"log_density has {lp.shape[1]} columns, the grid {s.size} points")
    m, zz = np.broadcast_arrays(m, zz)
    if m.shape != (lp.shape[0],):
        raise ValueError(f"log_mass and z must have {lp.shape[0]} entries (rows of log_density)")
    lp = np.where(np.isnan(lp), -np.inf, lp)
    bad = ~np.isfinite(lp).any(axis=1)
    if np.any(bad):
        raise ValueError(f"log_density has no finite value at nodes {np.flatnonzero(bad)[:10].tolist()}")

    # normalise each row (trapezoid), then work with p
    peak = lp.max(axis=1, keepdims=True)
    p = np.exp(lp - peak)
    norm = np.trapezoid(p, s, axis=1)[:, None]
    p = p / norm
    log_p = lp - peak - np.log(norm)

    # log10 mean SFR: log10 of int 10^s p(s) ds (trapezoid in log space)
    w = np.full(s.size, step)
    w[0] = w[-1] = 0.5 * step
    log_mean = logsumexp(log_p + _LN10 * s[None, :] + np.log(w)[None, :], axis=1) / _LN10

    # percentiles from the trapezoid CDF
    cdf = np.concatenate([np.zeros((p.shape[0], 1)), np.cumsum(0.5 * (p[:, 1:] + p[:, :-1]) * step, axis=1)], axis=1)
    cdf /= cdf[:, -1:]
    qs = []
    for q in (0.16, 0.5, 0.84):
        qs.append(np.array([np.interp(q, row, s) for row in cdf]))

    # ridge: highest local maximum above the star-forming cut, parabolic refinement
    if ridge_smoothing < 0:
        raise ValueError(f"ridge_smoothing must be >= 0, got {ridge_smoothing}")
    if ridge_smoothing > 0:
        half = int(np.ceil(4 * ridge_smoothing / step))
        kern = np.exp(-0.5 * (np.arange(-half, half + 1) * step / ridge_smoothing) ** 2)
        kern /= kern.sum()
        pad = np.pad(p, ((0, 0), (half, half)), mode="constant")
        p = np.stack([np.convolve(row, kern, mode="valid") for row in pad])
        with np.errstate(divide="ignore"):
            log_p = np.log(p)
    cut = m + log_ssfr_cut(zz, doubling_cut, cosmology)
    is_max = _local_maxima(p) & (s[None, :] > cut[:, None])
    score = np.where(is_max, p, -np.inf)
    j = np.argmax(score, axis=1)
    has = np.isfinite(score[np.arange(p.shape[0]), j])
    ridge = np.full(p.shape[0], np.nan)
    rows = np.flatnonzero(has)
    jj = j[rows]
    y0, y1, y2 = log_p[rows, jj - 1], log_p[rows, jj], log_p[rows, jj + 1]
    curv = y0 - 2.0 * y1 + y2
    shift = np.where(curv < 0, 0.5 * (y0 - y2) / np.where(curv < 0, curv, -1.0), 0.0)
    ridge[rows] = s[jj] + np.clip(shift, -0.5, 0.5) * step

    bimodal = _prominent_peak_count(p, bimodal_prominence) >= 2
    return SequenceStatistics(
        log_mass=m.copy(), z=zz.copy(), ridge=ridge, log_mean_sfr=log_mean,
        q16=qs[0], q50=qs[1], q84=qs[2], bimodal=bimodal, log_sfr_cut=cut,
    )
