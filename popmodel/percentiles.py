"""Approximate per-galaxy posteriors from published redshift and mass percentiles."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import ndtr, ndtri

from popmodel.analytic import AnalyticPosteriors, quantile_sigmas
from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.cosmology import DEFAULT_COSMOLOGY, DEFAULT_IMF, cosmology_record, normalize_imf

__all__ = [
    "DEFAULT_MASS_ERROR_DEX",
    "MASS_SIGMA_FLOOR_FRACTION",
    "Z_SCORE_68",
    "Z_SCORE_95",
    "PercentileReport",
    "catalog_from_percentiles",
    "deflated_mass_sigmas",
    "sample_quantile_matched",
]

#: Standard-normal score of the 84th percentile, Phi^-1(0.84) = 0.99446.
Z_SCORE_68 = float(ndtri(0.84))
#: Standard-normal score of the 97.5th percentile, Phi^-1(0.975) = 1.95996.
Z_SCORE_95 = float(ndtri(0.975))

#: Assumed mass uncertainty [dex] when neither mass percentiles nor errors are given.
DEFAULT_MASS_ERROR_DEX = 0.1
#: Floor of a conditional mass width, as a fraction of the marginal width on the same piece
#: (see :func:`deflated_mass_sigmas`).
MASS_SIGMA_FLOOR_FRACTION = 0.25

_N_DL_GRID = 2000
_MAX_REDRAW_ROUNDS = 200
_METHOD = "percentiles, piecewise split-normal"
#: Gauss-Legendre nodes per piece of the redshift posterior in the mass calibration.
_N_CAL_NODES = 24
_CAL_MAX_ITER = 60
_CAL_TOL_SCORE = 1e-5
#: Normal scores of the four matched levels: 2.5, 16, 84, 97.5 per cent.
_LEVEL_SCORES = np.array(
    [-float(ndtri(0.975)), -float(ndtri(0.84)), float(ndtri(0.84)), float(ndtri(0.975))]
)


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
        mass_error_source: Which mass uncertainty was used: ``"percentiles"``,
            ``"per-galaxy errors"``, ``"one assumed value"`` or ``"default"`` (none given:
            :data:`DEFAULT_MASS_ERROR_DEX`).
        n_mass_sigma_floored: Galaxies with at least one conditional mass width at the floor
            (percentile form only; see :func:`deflated_mass_sigmas`).
        ids_mass_sigma_floored: Their ids.
    """

    n_galaxies: int
    n_exact_z: int
    n_median_outside_68: int
    ids_median_outside_68: list[str] = field(default_factory=list)
    how_handled: str = ""
    ids_exact_z: list[str] = field(default_factory=list)
    mass_error_source: str = ""
    n_mass_sigma_floored: int = 0
    ids_mass_sigma_floored: list[str] = field(default_factory=list)

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


def _quantile_at(median: np.ndarray, sig: np.ndarray, u: np.ndarray) -> np.ndarray:
    """x(u) of the piecewise-linear quantile function (median ``(N,)``, slopes ``(N, 4)`` on
    the pieces tail_lo, lo, hi, tail_hi) at normal scores ``u`` ``(N, K)``."""
    s0, s1, s2, s3 = (sig[:, k, None] for k in range(4))
    inner = np.where(u >= 0, s2, s1) * u
    upper = s2 * Z_SCORE_68 + s3 * (u - Z_SCORE_68)
    lower = -s1 * Z_SCORE_68 + s0 * (u + Z_SCORE_68)
    return median[:, None] + np.where(
        u > Z_SCORE_68, upper, np.where(u < -Z_SCORE_68, lower, inner)
    )


def _piecewise_cdf(y: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """CDF at offsets ``y`` ``(N, ...)`` from the median of the piecewise quantile function
    with positive slopes ``sig`` ``(N, 4)``."""
    s0, s1, s2, s3 = (sig[:, k].reshape((-1,) + (1,) * (y.ndim - 1)) for k in range(4))
    u_hi = np.where(y <= s2 * Z_SCORE_68, y / s2, Z_SCORE_68 + (y - s2 * Z_SCORE_68) / s3)
    u_lo = np.where(y >= -s1 * Z_SCORE_68, y / s1, -Z_SCORE_68 + (y + s1 * Z_SCORE_68) / s0)
    return ndtr(np.where(y >= 0, u_hi, u_lo))


def _z_rule(median: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic nodes ``(z, w)``, each ``(N, 4 n)``, of the redshift posteriors:
    Gauss-Legendre in probability on each of the four pieces of the score, mapped through the
    quantile function (affine in the score on each piece, so smooth within a piece)."""
    x, w = np.polynomial.legendre.leggauss(_N_CAL_NODES)
    edges = [0.0, float(ndtr(-Z_SCORE_68)), 0.5, float(ndtr(Z_SCORE_68)), 1.0]
    ps, ws = [], []
    for a, b in itertools.pairwise(edges):
        ps.append(a + 0.5 * (b - a) * (x + 1.0))
        ws.append(0.5 * (b - a) * w)
    u = np.broadcast_to(ndtri(np.concatenate(ps)), (median.size, 4 * _N_CAL_NODES))
    return _quantile_at(median, sig, u), np.broadcast_to(np.concatenate(ws), u.shape).copy()


def deflated_mass_sigmas(
    sigma_mass: np.ndarray,
    sigma_z: np.ndarray,
    dlogm_dz: np.ndarray,
    floor_fraction: float = MASS_SIGMA_FLOOR_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Mass widths conditional on redshift from marginal ones (first order).

    A published mass percentile is marginal over the redshift uncertainty. With the mass
    moving with redshift as :math:`\log M(z) = \log M + 2\log_{10}[D_L(z)/D_L(z_{med})]`,
    linearised at the median redshift, the width conditional on z is, per piece,

    .. math::
        \sigma_{{\rm cond},j}^2 = \sigma_{M,j}^2 - \left(\frac{d\log M}{dz}\right)^2
        \sigma_{z,j}^2, \qquad \frac{d\log M}{dz} = 2\,\frac{d\log_{10} D_L}{dz}\Big|_{z_{med}},

    pairing the lower mass width with the lower redshift width, the upper with the upper and
    each tail with its tail (:math:`D_L` grows with z, so a low redshift gives a low mass).
    The result is floored at ``floor_fraction`` times :math:`\sigma_{M,j}`: the default 25%
    keeps a width where the linearised distance term claims 94% or more of the marginal
    variance (there the linearisation and the independence of the two errors, not the data,
    decide the remainder), and inflates the marginal width it implies by at most
    :math:`\sqrt{1 + 0.25^2} - 1 = 3\%`. A relative floor, unlike a fixed one in dex, never
    exceeds the marginal width itself.

    Args:
        sigma_mass: ``(N, 4)`` marginal slopes of the mass quantile function on the pieces
            (tail_lo, lo, hi, tail_hi) [dex], e.g. from :func:`popmodel.analytic.quantile_sigmas`.
        sigma_z: ``(N, 4)`` redshift slopes on the same pieces.
        dlogm_dz: ``(N,)`` :math:`d\log M/dz` at the median redshift [dex].
        floor_fraction: floor as a fraction of the marginal width.

    Returns:
        ``(sigma_cond, at_floor)``: ``(N, 4)`` conditional widths and a ``(N, 4)`` mask of the
        ones set to the floor.
    """
    sigma_mass = np.asarray(sigma_mass, dtype=np.float64)
    var = sigma_mass**2 - (np.asarray(dlogm_dz, dtype=np.float64)[:, None] * sigma_z) ** 2
    floor = floor_fraction * sigma_mass
    cond = np.sqrt(np.maximum(var, 0.0))
    at_floor = cond < floor
    return np.where(at_floor, floor, cond), at_floor


def _match_marginal_quantiles(
    shift: np.ndarray,
    weight: np.ndarray,
    targets: np.ndarray,
    sigma0: np.ndarray,
    floor: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    r"""Conditional mass slopes whose marginal reproduces the target quantiles.

    The marginal CDF of :math:`\log M - \log M_{ref} = s(z) + \epsilon` is
    :math:`F(x) = \sum_i w_i F_\epsilon(x - s_i)` over the redshift rule's nodes. At each of
    the four levels (2.5, 16, 84, 97.5%, score :math:`u_j`) the distance :math:`E_j` of the
    error's quantile from its median is updated as variances add,
    :math:`E_j^2 \leftarrow E_j^2 + T_j^2 - (T_j u_j / \Phi^{-1}[F(T_j)])^2`, which is exact
    for Gaussians, until :math:`|\Phi^{-1}[F(T_j)] - u_j| < 10^{-5}`; slopes below the floor
    are set to it.

    Returns:
        ``(sigma, score_residual)``: ``(N, 4)`` slopes and ``(N, 4)`` residual scores.
    """
    sig = np.maximum(sigma0.copy(), floor)
    tail = Z_SCORE_95 - Z_SCORE_68
    u = _LEVEL_SCORES[None, :]
    resid = np.zeros_like(sig)
    act = np.arange(sig.shape[0])  # galaxies still moving
    for _ in range(_CAL_MAX_ITER):
        if act.size == 0:
            break
        s, t = sig[act], targets[act]
        cdf = np.einsum(
            "nk,njk->nj", weight[act], _piecewise_cdf(t[:, :, None] - shift[act, None, :], s)
        )
        score = ndtri(np.clip(cdf, 1e-15, 1 - 1e-15))
        resid[act] = score - u
        # a score on the wrong side of the median: treat the marginal as much too wide there
        same = np.sign(score) == np.sign(u)
        score = np.where(same, np.abs(score), 0.05) * np.sign(u)
        e = np.stack(
            [
                s[:, 1] * Z_SCORE_68 + s[:, 0] * tail,
                s[:, 1] * Z_SCORE_68,
                s[:, 2] * Z_SCORE_68,
                s[:, 2] * Z_SCORE_68 + s[:, 3] * tail,
            ],
            1,
        )
        e = np.sqrt(np.maximum(e**2 + t**2 - (t * u / score) ** 2, 0.0))
        new = np.stack(
            [
                (e[:, 0] - e[:, 1]) / tail,
                e[:, 1] / Z_SCORE_68,
                e[:, 2] / Z_SCORE_68,
                (e[:, 3] - e[:, 2]) / tail,
            ],
            1,
        )
        new = np.maximum(new, floor[act])
        done = np.all(np.abs(resid[act]) < _CAL_TOL_SCORE, axis=1)
        stuck = np.all(np.abs(new - s) <= 1e-12 * (1.0 + s), axis=1)  # held at the floor
        sig[act[~done]] = new[~done]
        act = act[~(done | stuck)]
    return sig, resid


def catalog_from_percentiles(
    ids: Sequence[Any] | np.ndarray,
    fields: Sequence[str] | np.ndarray | str,
    z_median: np.ndarray,
    z_p16: np.ndarray,
    z_p84: np.ndarray,
    log_mass: np.ndarray,
    *,
    mass_error_dex: float | np.ndarray | None = None,
    log_mass_p16: np.ndarray | None = None,
    log_mass_p84: np.ndarray | None = None,
    log_mass_p2_5: np.ndarray | None = None,
    log_mass_p97_5: np.ndarray | None = None,
    n_samples: int = 64,
    z_p2_5: np.ndarray | None = None,
    z_p97_5: np.ndarray | None = None,
    log_sfr: np.ndarray | None = None,
    sfr_error_dex: float | np.ndarray | None = None,
    cosmology: Any = None,
    imf: str = DEFAULT_IMF,
    seed: int = 0,
    z_min_sample: float = 1e-3,
    null_value: float | None = None,
    mass_sigma_floor: float = MASS_SIGMA_FLOOR_FRACTION,
    match_mass_percentiles: bool = True,
) -> tuple[PosteriorCatalog, PercentileReport]:
    r"""Build approximate posterior samples from catalog redshift and mass percentiles.

    **Redshift.** Samples come from :func:`sample_quantile_matched`: a quantile function
    linear in the normal score :math:`u` on the pieces cut at :math:`u = -u_{68}, 0, u_{68}`.
    Exact (spectroscopic) redshifts, flagged by p16 and p84 both equal to -1 or NaN (or
    ``null_value``; the 95% percentiles then missing too) or all percentiles equal to the
    median, give ``z = z_median`` for every sample; their ids are listed in the report. A row
    with only one of p16 / p84 missing, or with a 95% percentile given beside missing p16 /
    p84, is ambiguous and an error naming the galaxies. A median outside its own [p16, p84]
    interval is neither dropped nor clipped: the z posterior is built from the interval alone,
    with ``(p16 + p84) / 2`` as its (shape) median; the mass shift is still relative to
    ``z_median``. Draws below ``z_min_sample`` are redrawn (the samples are truncated there) and
    the number of redraws is recorded in ``meta``.

    **Mass.** The published mass was computed at ``z_median``, so each sample's mass moves
    with the luminosity distance:

    .. math::
        \log M_s = \log M + 2\log_{10}[D_L(z_s)/D_L(z_{med})] + \epsilon_s,

    with :math:`\epsilon_s` a piecewise split normal of median 0 (the same quantile form as
    the redshift) whose slopes are the mass width *conditional* on z. They come from one of:

    * mass percentiles ``log_mass_p16`` / ``log_mass_p84`` (optionally ``log_mass_p2_5`` /
      ``log_mass_p97_5``; ``log_mass`` is the median). These are marginal over the redshift
      uncertainty, so they are deflated to conditional widths, first order by
      :func:`deflated_mass_sigmas`: :math:`\sigma_{cond}^2 = \sigma^2 - (d\log M/dz)^2
      \sigma_z^2` per piece, :math:`d\log M/dz = 2\,d\log_{10}D_L/dz` at the redshift's
      (shape) median, floored at ``mass_sigma_floor`` (25%) of the marginal width. With
      ``match_mass_percentiles`` (default) the widths are then refined so that the marginal
      distribution of the samples (the redshift truncated at ``z_min_sample``, as the samples
      are) reproduces the 2.5, 16, 84 and 97.5th mass percentiles exactly, non-linear
      :math:`D_L` and skew included (missing 95% percentiles: the inner slope continues); the
      marginal median then differs from ``log_mass`` by the skewness of the convolution (it is
      recorded in ``meta``), since the conditional median at ``z_median`` is ``log_mass`` by
      construction. Galaxies with a width at the floor are counted in the report;
    * ``mass_error_dex`` (scalar or ``(N,)`` per galaxy): a Gaussian error conditional on z,
      as SED fits at a fixed redshift (FAST) report it; it is not deflated;
    * neither: an assumed Gaussian :data:`DEFAULT_MASS_ERROR_DEX` (0.1 dex).

    The report's ``mass_error_source`` and ``meta["mass_error_source"]`` say which. SFR, also
    a luminosity, gets the same distance shift plus :math:`N(0, \sigma_{SFR})`.

    **Analytic form.** ``catalog.analytic`` (:class:`popmodel.analytic.AnalyticPosteriors`)
    describes exactly the distribution the samples are drawn from: ``z_median`` the shape
    median, ``z_sigma`` the redshift slopes (zero for exact redshifts), ``log_mass_ref`` the
    catalogue mass at ``z_ref = z_median``, ``log_mass_sigma`` the conditional mass slopes and
    ``dl_coefficient = 2``. The analytic form is not truncated at ``z_min_sample``; a fit's
    deterministic rule drops nodes at z <= 0 (zero density), which differs from the samples'
    truncation only by a per-galaxy constant factor of the likelihood (and by the sliver
    ``0 < z < z_min_sample``).

    The interim prior is flat (``log_prior`` is None): the percentile posteriors are treated as
    likelihoods.

    Args:
        ids: ``(N,)`` galaxy ids.
        fields: ``(N,)`` field of each galaxy, or one field name for all.
        z_median: ``(N,)`` catalog redshift (point estimate at which masses were computed).
        z_p16: ``(N,)`` 16th redshift percentile (-1 or NaN for exact redshifts).
        z_p84: ``(N,)`` 84th redshift percentile (-1 or NaN for exact redshifts).
        log_mass: ``(N,)`` catalog stellar mass [log10 Msun] at ``z_median`` (the median of
            the mass percentiles, when given).
        mass_error_dex: Mass uncertainty conditional on z [dex], scalar or ``(N,)``; not
            with mass percentiles. Default: mass percentiles if given, else 0.1 dex.
        log_mass_p16: ``(N,)`` 16th mass percentile [log10 Msun], marginal over z.
        log_mass_p84: ``(N,)`` 84th mass percentile [log10 Msun], marginal over z.
        log_mass_p2_5: ``(N,)`` 2.5th mass percentile, optional (NaN: not given).
        log_mass_p97_5: ``(N,)`` 97.5th mass percentile, optional (NaN: not given).
        n_samples: Samples per galaxy.
        z_p2_5: ``(N,)`` 2.5th redshift percentile, optional (NaN: not given).
        z_p97_5: ``(N,)`` 97.5th redshift percentile, optional (NaN: not given).
        log_sfr: ``(N,)`` catalog SFR [log10 Msun/yr] at ``z_median``, optional.
        sfr_error_dex: Assumed SFR uncertainty [dex]; required when ``log_sfr`` is given.
        cosmology: Astropy cosmology of the catalogue's masses; default
            :data:`popmodel.cosmology.DEFAULT_COSMOLOGY` (WMAP9). Recorded in
            ``meta["cosmology"]``.
        imf: IMF of the catalogue's masses, recorded in ``meta["imf"]``.
        seed: Seed for ``np.random.default_rng``.
        z_min_sample: Smallest allowed redshift sample.
        null_value: Value that marks a missing entry in any input column (e.g. -99), read as
            NaN: missing z p16 and p84 mean an exact redshift, a missing 95% percentile means
            not given, a missing mass, mass percentile or median redshift is an error.
        mass_sigma_floor: Floor of the conditional mass widths, as a fraction of the marginal.
        match_mass_percentiles: Refine the first-order conditional widths so that the marginal
            mass quantiles match the percentiles (see above).

    Returns:
        The catalog and a report on exact redshifts, medians outside their 68% interval and
        conditional mass widths at the floor.

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
    if not 0.0 <= mass_sigma_floor <= 1.0:
        raise CatalogError(f"mass_sigma_floor must be in [0, 1], got {mass_sigma_floor}")

    def per_galaxy(values: Any, column: str) -> np.ndarray:
        arr = np.asarray(values, dtype=np.float64)
        if arr.ndim > 1 or (arr.ndim == 1 and arr.size != n):
            raise CatalogError(f"column {column!r} has shape {arr.shape}, expected ({n},)")
        arr = np.broadcast_to(arr, (n,)).copy()
        if null_value is not None:
            arr[arr == null_value] = np.nan
        return arr

    fields = np.broadcast_to(np.asarray(fields).astype(str), (n,)).copy()
    z_med = per_galaxy(z_median, "z_median")
    p16 = per_galaxy(z_p16, "z_p16")
    p84 = per_galaxy(z_p84, "z_p84")
    lo95 = per_galaxy(np.nan if z_p2_5 is None else z_p2_5, "z_p2_5")
    hi95 = per_galaxy(np.nan if z_p97_5 is None else z_p97_5, "z_p97_5")
    mass = per_galaxy(log_mass, "log_mass")
    _check_finite(ids, mass, "log_mass")
    _check_finite(ids, z_med, "z_median")
    if np.any(z_med <= 0):
        raise CatalogError(f"column 'z_median' is <= 0 for galaxy id(s) {_short(ids[z_med <= 0])}")

    # --- which mass uncertainty
    has_pct = log_mass_p16 is not None or log_mass_p84 is not None
    if has_pct and (log_mass_p16 is None or log_mass_p84 is None):
        raise CatalogError("give both log_mass_p16 and log_mass_p84 (or neither)")
    if not has_pct and (log_mass_p2_5 is not None or log_mass_p97_5 is not None):
        raise CatalogError("log_mass_p2_5 / log_mass_p97_5 need log_mass_p16 and log_mass_p84")
    if has_pct and mass_error_dex is not None:
        raise CatalogError("give mass percentiles or mass_error_dex, not both")
    sigma_m = None
    if has_pct:
        source = "percentiles"
        mp = {
            c: per_galaxy(np.nan if v is None else v, c)
            for c, v in (
                ("log_mass_p2_5", log_mass_p2_5),
                ("log_mass_p16", log_mass_p16),
                ("log_mass_p84", log_mass_p84),
                ("log_mass_p97_5", log_mass_p97_5),
            )
        }
        _check_finite(ids, mp["log_mass_p16"], "log_mass_p16")
        _check_finite(ids, mp["log_mass_p84"], "log_mass_p84")
        for column, bad in (
            ("log_mass_p16", mp["log_mass_p16"] > mass),
            ("log_mass_p84", mp["log_mass_p84"] < mass),
            ("log_mass_p2_5", mp["log_mass_p2_5"] > mp["log_mass_p16"]),
            ("log_mass_p97_5", mp["log_mass_p97_5"] < mp["log_mass_p84"]),
        ):
            if np.any(bad):
                other = {
                    "log_mass_p16": "exceeds 'log_mass'",
                    "log_mass_p84": "is below 'log_mass'",
                    "log_mass_p2_5": "exceeds 'log_mass_p16'",
                    "log_mass_p97_5": "is below 'log_mass_p84'",
                }[column]
                raise CatalogError(
                    f"column {column!r} {other} for galaxy id(s) {_short(ids[bad])}"
                )
        for column in ("log_mass_p2_5", "log_mass_p97_5"):
            bad = np.isinf(mp[column])
            if np.any(bad):
                raise CatalogError(
                    f"column {column!r} is infinite for galaxy id(s) {_short(ids[bad])}"
                )
    else:
        source = (
            "default"
            if mass_error_dex is None
            else ("one assumed value" if np.ndim(mass_error_dex) == 0 else "per-galaxy errors")
        )
        if mass_error_dex is None:
            mass_error_dex = DEFAULT_MASS_ERROR_DEX
        sigma_m = per_galaxy(mass_error_dex, "mass_error_dex")
        _check_finite(ids, sigma_m, "mass_error_dex")
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
    z_sigma = np.zeros((n, 4))
    if np.any(fuzzy):
        z_sigma[fuzzy] = quantile_sigmas(
            shape_median[fuzzy], p16[fuzzy], p84[fuzzy], lo95[fuzzy], hi95[fuzzy]
        )

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

    # --- luminosity distance on an interpolation grid.
    if cosmology is None:
        cosmology = DEFAULT_COSMOLOGY
    z_nodes = w_nodes = None
    if has_pct and rows.size:
        z_nodes, w_nodes = _z_rule(shape_median[rows], z_sigma[rows])
        w_nodes[z_nodes < z_min_sample] = 0.0  # the samples are truncated there
        w_nodes /= w_nodes.sum(axis=1, keepdims=True)
        z_nodes = np.maximum(z_nodes, z_min_sample)
    spline = None
    if n:
        z_lo, z_hi = min(z.min(), z_med.min()), max(z.max(), z_med.max())
        if z_nodes is not None:
            z_lo, z_hi = min(z_lo, z_nodes.min()), max(z_hi, z_nodes.max())
        spline = _log10_dl_interpolator(cosmology, z_lo, z_hi)

    # --- conditional mass widths: (N, 4) slopes of the error's quantile function.
    mass_meta: dict[str, Any] = {}
    floored = np.zeros(n, dtype=bool)
    if has_pct:
        sig_marg = quantile_sigmas(
            mass, mp["log_mass_p16"], mp["log_mass_p84"], mp["log_mass_p2_5"], mp["log_mass_p97_5"]
        )
        dlogm_dz = np.zeros(n)
        if rows.size:
            zs = shape_median[rows]
            dlogm_dz[rows] = 2.0 * spline.derivative()(np.log10(zs)) / (zs * np.log(10.0))
        mass_sigma, at_floor = deflated_mass_sigmas(sig_marg, z_sigma, dlogm_dz, mass_sigma_floor)
        # strictly positive slopes (a zero width on a side is kept as a negligible one)
        floor = np.maximum(mass_sigma_floor * sig_marg, 1e-6)
        mass_sigma = np.maximum(mass_sigma, floor)
        resid_max = 0.0
        if match_mass_percentiles and rows.size:
            ref_z = spline(np.log10(z_med[rows]))
            shift = 2.0 * (spline(np.log10(z_nodes)) - ref_z[:, None])
            targets = _quantile_at(
                np.zeros(rows.size), sig_marg[rows], _LEVEL_SCORES[None, :].repeat(rows.size, 0)
            )
            sig_rows, resid = _match_marginal_quantiles(
                shift, w_nodes, targets, mass_sigma[rows], floor[rows]
            )
            mass_sigma[rows] = sig_rows
            at_floor[rows] = sig_rows <= floor[rows] * (1 + 1e-12)
            free = ~at_floor[rows].any(axis=1)  # the floored ones cannot match
            resid_max = float(np.abs(resid[free]).max()) if free.any() else 0.0
            # marginal median offset from log_mass (dex), to first order in the CDF
            med_cdf = np.sum(w_nodes * _piecewise_cdf(-shift, sig_rows), axis=1)
            y = -shift
            u_e = ndtri(np.clip(_piecewise_cdf(y, sig_rows), 1e-300, 1 - 1e-16))
            slope = np.where(
                y >= 0,
                np.where(u_e <= Z_SCORE_68, sig_rows[:, 2:3], sig_rows[:, 3:4]),
                np.where(u_e >= -Z_SCORE_68, sig_rows[:, 1:2], sig_rows[:, 0:1]),
            )
            pdf = np.sum(w_nodes * np.exp(-0.5 * u_e**2) / np.sqrt(2 * np.pi) / slope, axis=1)
            median_offset = (0.5 - med_cdf) / pdf
            mass_meta["max_abs_marginal_median_offset_dex"] = float(np.abs(median_offset).max())
        floored = at_floor.any(axis=1) & (sig_marg > 0).any(axis=1)
        mass_meta.update(
            {
                "note": (
                    "log_mass_p16/p84 (and p2.5/p97.5) are marginal over z; the mass width "
                    "conditional on z is sigma_cond^2 = sigma^2 - (dlogM/dz)^2 sigma_z^2 per piece, "
                    "dlogM/dz = 2 dlog10 D_L/dz at the median z, floored at floor_fraction * sigma"
                    + (
                        ", then refined so that the samples' marginal mass quantiles reproduce the "
                        "percentiles"
                        if match_mass_percentiles
                        else ""
                    )
                ),
                "floor_fraction": float(mass_sigma_floor),
                "matched_marginal": bool(match_mass_percentiles),
                "max_abs_score_residual_not_floored": resid_max,
                "n_at_floor": int(floored.sum()),
            }
        )
    else:
        mass_sigma = np.repeat(sigma_m[:, None], 4, axis=1)

    # --- mass (and SFR) samples: distance shift + piecewise split-normal error.
    dm = np.zeros((n, n_samples))
    if n:
        shift = 2.0 * (spline(np.log10(z)) - spline(np.log10(z_med))[:, None])
        dm = np.where(exact[:, None], 0.0, shift)
    u = rng.standard_normal((n, n_samples))
    samples_mass = mass[:, None] + dm + _quantile_at(np.zeros(n), mass_sigma, u)
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
        f"{n_redrawn} redshift draws below z_min_sample={z_min_sample} were redrawn. "
        f"Mass uncertainty: {source}"
        + (
            f"; {int(floored.sum())} galaxies have a conditional mass width at the floor "
            f"({mass_sigma_floor:g} of the marginal width)."
            if has_pct
            else "."
        )
    )
    report = PercentileReport(
        n_galaxies=n,
        n_exact_z=int(exact.sum()),
        n_median_outside_68=n_out,
        ids_median_outside_68=[str(i) for i in ids[outside]],
        how_handled=how,
        ids_exact_z=[str(i) for i in ids[exact]],
        mass_error_source=source,
        n_mass_sigma_floored=int(floored.sum()),
        ids_mass_sigma_floored=[str(i) for i in ids[floored]],
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

    meta: dict[str, Any] = {
        "method": _METHOD,
        "mass_error_source": source,
        "n_samples": int(n_samples),
        "seed": int(seed),
        "z_min_sample": float(z_min_sample),
        "n_redrawn_below_z_min": n_redrawn,
        "quantile_knots": "u = +-Phi^-1(0.84) -> p16/p84, u = +-Phi^-1(0.975) -> p2.5/p97.5",
        "cosmology": cosmology_record(cosmology),
        "imf": normalize_imf(imf, "imf"),
        "interim_prior": "flat (percentile posteriors treated as likelihoods)",
        "analytic_note": (
            "catalog.analytic (columns pdf_*) is the distribution the samples are drawn from, "
            "except that the samples are truncated at z_min_sample; a fit's rule drops nodes at "
            "z <= 0, which changes each galaxy's likelihood by a constant factor only"
        ),
        "report": report.as_dict(),
    }
    if null_value is not None:
        meta["null_value"] = float(null_value)
    if has_pct:
        meta["mass_percentiles"] = mass_meta
    else:
        meta["mass_error_dex"] = describe(sigma_m, mass_error_dex)
        meta["mass_error_note"] = (
            ("default " if source == "default" else "")
            + "assumed mass uncertainty (dex), Gaussian, conditional on z, added to the "
            "luminosity-distance shift 2*log10(D_L(z_s)/D_L(z_median))"
        )
    if sfr is not None:
        meta["sfr_error_dex"] = describe(sigma_sfr, sfr_error_dex)
        meta["sfr_note"] = (
            "assumed SFR uncertainty (dex); log_sfr gets the same 2*log10(D_L ratio) shift as "
            "mass, since SFR is also derived from luminosities"
        )

    analytic = AnalyticPosteriors(
        z_median=np.where(exact, z_med, shape_median),
        z_sigma=z_sigma,
        log_mass_ref=mass,
        log_mass_sigma=mass_sigma,
        z_ref=z_med,
        dl_coefficient=np.full(n, 2.0),
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
        analytic=analytic,
    )
    return catalog, report
