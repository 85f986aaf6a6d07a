r"""Analytic per-galaxy posteriors and the deterministic rules that integrate them.

Why
---
A catalogue built from published percentiles (:mod:`popmodel.percentiles`) knows each
galaxy's posterior in closed form: a piecewise split normal in redshift whose quantile
function is linear in the standard-normal score :math:`u` on the four pieces cut at
:math:`u = -u_{68}, 0, u_{68}` (:math:`u_{68} = \Phi^{-1}(0.84)`), and a mass that moves with
the luminosity distance, :math:`\log M = \log M_{\rm ref} + c\,\log_{10}[D_L(z)/D_L(z_{\rm ref})]
+ \epsilon`, with :math:`c = 2` for a mass derived from fluxes and :math:`\epsilon` a piecewise
split normal of the same kind. Drawing 16 random samples from such a posterior and averaging
the mass function over them carries Monte Carlo noise that the fit then has to measure and
correct; integrating the known form with a deterministic rule carries none.

What
----
Each one-dimensional piece is an affine map :math:`x = a + b\,t` of a standard normal
:math:`t` restricted to an interval, with probability :math:`P`. The integral over a piece
uses the Gauss rule of the standard normal density restricted to that interval (Gautschi
2004, *Orthogonal Polynomials: Computation and Approximation*, Sec. 2.2: the recurrence
coefficients from a discretised Stieltjes procedure, the nodes and weights from the Jacobi
matrix, Golub & Welsch 1969, Math. Comp. 23, 221). An n-point rule on a piece is exact for
polynomials of degree 2n - 1 in :math:`t`, and the integrand is smooth within a piece (the
quantile function has its kinks only at the cuts), so a few nodes per piece suffice. The
rules depend only on the interval, so they are computed once and shared by every galaxy.

A galaxy's (z, log M) rule is the product of its redshift rule and its mass rule, with each
mass node moved by the luminosity-distance shift at its redshift node. Nodes outside the
model's support (z <= 0 or above its top, a mass outside its range) carry zero density, as
the mass function does there; they are dropped and counted, which changes the galaxy's
likelihood by a constant factor only.

:class:`AnalyticPosteriors` holds the per-galaxy description; :func:`rule_nodes` builds the
nodes. :func:`fit_split_normal` fits a split normal (Gibbons & Mylroie 1973, Appl. Phys.
Lett. 22, 568; John 1982, Commun. Stat. Theory 11, 879) to weighted samples, for skewed
posteriors that arrive as samples.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

__all__ = [
    "ANALYTIC_COLUMNS",
    "PIECE_INTERVALS",
    "U68",
    "AnalyticPosteriors",
    "Pieces",
    "fit_split_normal",
    "normal_interval_rule",
    "product_nodes",
    "quantile_sigmas",
    "rule_nodes",
    "split_normal_cdf",
    "split_pieces",
]

#: Standard-normal score of the 84th percentile.
U68 = float(ndtri(0.84))

#: The intervals of t that pieces live on: the four pieces of a percentile posterior, the two
#: halves of a split normal, the whole line (a Gaussian).
PIECE_INTERVALS: dict[str, tuple[float, float]] = {
    "tail_lo": (-np.inf, -U68),
    "lo": (-U68, 0.0),
    "hi": (0.0, U68),
    "tail_hi": (U68, np.inf),
    "neg": (-np.inf, 0.0),
    "pos": (0.0, np.inf),
    "full": (-np.inf, np.inf),
}

#: Per-galaxy columns that keep a catalogue's analytic posteriors in a file (one value per
#: galaxy, repeated on each of its rows like ``log_mass_obs``).
ANALYTIC_COLUMNS = (
    "pdf_z_median", "pdf_z_sigma_tail_lo", "pdf_z_sigma_lo", "pdf_z_sigma_hi",
    "pdf_z_sigma_tail_hi", "pdf_log_mass_ref", "pdf_log_mass_sigma_tail_lo",
    "pdf_log_mass_sigma_lo", "pdf_log_mass_sigma_hi", "pdf_log_mass_sigma_tail_hi",
    "pdf_z_ref", "pdf_dl_coefficient",
)

#: Beyond this many standard deviations a half-line is cut for the discretisation
#: (the normal density there is below 1e-30 of its peak).
_T_MAX = 12.0
_N_DISCRETE = 600


@functools.lru_cache(maxsize=1)
def _legendre() -> tuple[np.ndarray, np.ndarray]:
    return np.polynomial.legendre.leggauss(_N_DISCRETE)


@functools.lru_cache(maxsize=64)
def normal_interval_rule(lo: float, hi: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss rule for the standard normal density restricted to ``[lo, hi]``.

    Returns:
        ``(nodes, weights)``, each ``(n,)``, weights summing to 1 (the rule of the truncated
        normal): ``sum(w f(t))`` equals ``E[f(t) | lo < t < hi]`` for polynomials of degree
        up to ``2n - 1``.
    """
    if n < 1:
        raise ValueError(f"need at least one node per piece, got {n}")
    a, b = max(lo, -_T_MAX), min(hi, _T_MAX)
    if n == 1:
        mass = ndtr(b) - ndtr(a)
        mean = (np.exp(-0.5 * a * a) - np.exp(-0.5 * b * b)) / np.sqrt(2 * np.pi) / mass
        return np.array([mean]), np.array([1.0])
    # discretise the measure: Gauss-Legendre on [a, b] times the normal density
    x, w = _legendre()
    x = 0.5 * (b - a) * x + 0.5 * (b + a)
    w = 0.5 * (b - a) * w * np.exp(-0.5 * x * x)
    w = w / w.sum()
    # Stieltjes procedure on the discrete measure (normalised polynomials: no overflow)
    alpha, beta = np.zeros(n), np.zeros(n)
    p_prev, p = np.zeros_like(x), np.ones_like(x)
    norm_prev = 1.0
    for k in range(n):
        norm = float(np.sum(w * p * p))
        alpha[k] = float(np.sum(w * x * p * p)) / norm
        beta[k] = norm / norm_prev if k else 1.0
        p_next = (x - alpha[k]) * p - (beta[k] if k else 0.0) * p_prev
        scale = np.sqrt(norm)
        p_prev, p, norm_prev = p / scale, p_next / scale, 1.0
    jac = np.diag(alpha) + np.diag(np.sqrt(beta[1:]), 1) + np.diag(np.sqrt(beta[1:]), -1)
    nodes, vecs = np.linalg.eigh(jac)
    weights = vecs[0] ** 2
    return nodes, weights / weights.sum()


@dataclass(frozen=True)
class Pieces:
    """A one-dimensional distribution per galaxy: pieces ``x = a + b t`` with ``t`` a standard
    normal restricted to :data:`PIECE_INTERVALS` ``[kind]`` and probability ``p``.

    Attributes:
        kinds: the interval names of the pieces, the same for every galaxy of this object
            (``()`` for an exact value: one node at ``a[:, 0]``).
        a, b, p: ``(N, len(kinds))`` (``(N, 1)`` for an exact value).
    """

    kinds: tuple[str, ...]
    a: np.ndarray
    b: np.ndarray
    p: np.ndarray

    def nodes(self, n_per_piece: int) -> tuple[np.ndarray, np.ndarray]:
        """``(x, w)``: ``(N, K)`` nodes and ``(N, K)`` weights summing to 1 per galaxy."""
        if not self.kinds:
            return self.a[:, :1].copy(), np.ones((self.a.shape[0], 1))
        xs, ws = [], []
        for k, kind in enumerate(self.kinds):
            t, w = normal_interval_rule(*PIECE_INTERVALS[kind], n_per_piece)
            xs.append(self.a[:, k, None] + self.b[:, k, None] * t[None, :])
            ws.append(self.p[:, k, None] * w[None, :])
        return np.concatenate(xs, axis=1), np.concatenate(ws, axis=1)


def _percentile_pieces(median: np.ndarray, sig: np.ndarray) -> list[tuple[np.ndarray, Pieces]]:
    """Split galaxies by the shape of their piecewise quantile function (module doc).

    ``sig``: ``(N, 4)`` slopes of x(u) on the pieces (tail_lo, lo, hi, tail_hi). Returns
    ``(galaxy indices, Pieces)`` per shape: exact (all slopes 0), Gaussian (all equal),
    split normal (each tail slope equal to its inner one), four pieces (otherwise).
    """
    median = np.asarray(median, float)
    sig = np.asarray(sig, float)
    exact = np.all(sig == 0.0, axis=1)
    gauss = ~exact & np.all(sig == sig[:, :1], axis=1)
    split = ~exact & ~gauss & (sig[:, 0] == sig[:, 1]) & (sig[:, 3] == sig[:, 2])
    four = ~exact & ~gauss & ~split
    out = []
    for sel, kinds in ((exact, ()), (gauss, ("full",)), (split, ("neg", "pos")),
                       (four, ("tail_lo", "lo", "hi", "tail_hi"))):
        idx = np.flatnonzero(sel)
        if idx.size == 0:
            continue
        m, s = median[idx], sig[idx]
        if kinds == ():
            pcs = Pieces((), m[:, None], np.zeros((idx.size, 1)), np.ones((idx.size, 1)))
        elif kinds == ("full",):
            pcs = Pieces(kinds, m[:, None], s[:, :1], np.ones((idx.size, 1)))
        elif kinds == ("neg", "pos"):
            pcs = Pieces(kinds, np.stack([m, m], 1), s[:, 1:3], np.full((idx.size, 2), 0.5))
        else:
            a = np.stack([m - s[:, 1] * U68 + s[:, 0] * U68, m, m,
                          m + s[:, 2] * U68 - s[:, 3] * U68], 1)
            p_tail = float(ndtr(-U68))
            p = np.tile([p_tail, 0.5 - p_tail, 0.5 - p_tail, p_tail], (idx.size, 1))
            pcs = Pieces(kinds, a, s, p)
        out.append((idx, pcs))
    return out


@dataclass(frozen=True)
class AnalyticPosteriors:
    """Per-galaxy analytic posteriors in (z, log M) (module doc), all arrays ``(N,)`` or ``(N, 4)``.

    The redshift posterior has median ``z_median`` and slopes ``z_sigma`` of its quantile
    function on the pieces (tail_lo, lo, hi, tail_hi) of the normal score (all zero: an exact
    redshift). The mass is ``log_mass_ref`` at redshift ``z_ref``, moved by
    ``dl_coefficient * log10(D_L(z) / D_L(z_ref))`` at other redshifts, plus an error with
    median 0 and slopes ``log_mass_sigma`` (the mass width *conditional* on z). D_L is that
    of the cosmology the fit runs in (the survey's; a catalogue in another cosmology is
    converted first, which moves ``log_mass_ref`` by the distance ratio at ``z_ref``).

    These posteriors are read as likelihoods (a flat interim prior), as catalogue percentiles
    are.
    """

    z_median: np.ndarray
    z_sigma: np.ndarray
    log_mass_ref: np.ndarray
    log_mass_sigma: np.ndarray
    z_ref: np.ndarray
    dl_coefficient: np.ndarray

    def __post_init__(self) -> None:
        n = np.asarray(self.z_median).shape[0]
        for name in ("z_median", "log_mass_ref", "z_ref", "dl_coefficient"):
            arr = np.asarray(getattr(self, name), float)
            if arr.shape != (n,):
                raise ValueError(f"analytic posterior field {name!r} has shape {arr.shape}, "
                                 f"expected ({n},)")
            object.__setattr__(self, name, arr)
        for name in ("z_sigma", "log_mass_sigma"):
            arr = np.asarray(getattr(self, name), float)
            if arr.shape != (n, 4):
                raise ValueError(f"analytic posterior field {name!r} has shape {arr.shape}, "
                                 f"expected ({n}, 4)")
            if np.any(arr < 0) or not np.all(np.isfinite(arr)):
                raise ValueError(f"analytic posterior field {name!r} needs finite slopes >= 0")
            object.__setattr__(self, name, arr)

    @property
    def n_galaxies(self) -> int:
        return int(self.z_median.shape[0])

    def take(self, idx: np.ndarray) -> AnalyticPosteriors:
        """The galaxies ``idx`` (integer indices)."""
        return AnalyticPosteriors(*(getattr(self, f.name)[idx] for f in dataclasses.fields(self)))

    def to_columns(self) -> dict[str, np.ndarray]:
        """The per-galaxy columns :data:`ANALYTIC_COLUMNS`."""
        cols = [self.z_median, *self.z_sigma.T, self.log_mass_ref, *self.log_mass_sigma.T,
                self.z_ref, self.dl_coefficient]
        return dict(zip(ANALYTIC_COLUMNS, cols, strict=True))

    @classmethod
    def from_columns(cls, cols: dict[str, np.ndarray]) -> AnalyticPosteriors:
        c = [np.asarray(cols[k], float) for k in ANALYTIC_COLUMNS]
        return cls(c[0], np.stack(c[1:5], 1), c[5], np.stack(c[6:10], 1), c[10], c[11])

    def shift_log_mass(self, delta: np.ndarray | float) -> AnalyticPosteriors:
        """Move every galaxy's mass by ``delta`` (dex): a change of units, IMF or cosmology
        evaluated at ``z_ref``."""
        return dataclasses.replace(self, log_mass_ref=self.log_mass_ref + delta)


def rule_nodes(
    post: AnalyticPosteriors,
    log10_dl: Any,
    *,
    n_z: int = 3,
    n_mass: int = 3,
    z_support: tuple[float, float] = (0.0, 12.0),
    log_mass_support: tuple[float, float] = (4.0, 14.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic (z, log M) nodes of each galaxy's analytic posterior.

    Args:
        post: the posteriors.
        log10_dl: callable, log10 of the luminosity distance at an array of redshifts.
        n_z, n_mass: nodes per piece in z and in log M (a Gaussian is one piece, a split
            normal two, a percentile posterior with 95% percentiles four; an exact value gets
            one node).
        z_support, log_mass_support: the model's support (z in ``(lo, hi]``, log M in
            ``[lo, hi]``); nodes outside it are dropped (zero density).

    Returns:
        ``(offsets, z, log_mass, weight, n_dropped)``: ragged nodes in galaxy order (offsets
        ``(N + 1,)``), their weights (summing to at most 1 per galaxy), and the number of
        nodes dropped per galaxy ``(N,)``. A galaxy with every node outside raises.
    """
    n = post.n_galaxies
    zp = _percentile_pieces(post.z_median, post.z_sigma)
    mp = _percentile_pieces(np.zeros(n), post.log_mass_sigma)
    zkind = np.empty(n, np.int64)
    mkind = np.empty(n, np.int64)
    for k, (idx, _) in enumerate(zp):
        zkind[idx] = k
    for k, (idx, _) in enumerate(mp):
        mkind[idx] = k
    zpos = np.empty(n, np.int64)
    mpos = np.empty(n, np.int64)
    for idx, _ in zp:
        zpos[idx] = np.arange(idx.size)
    for idx, _ in mp:
        mpos[idx] = np.arange(idx.size)
    znodes = [pc.nodes(n_z) for _, pc in zp]
    mnodes = [pc.nodes(n_mass) for _, pc in mp]
    counts = np.array([znodes[zkind[i]][0].shape[1] * mnodes[mkind[i]][0].shape[1]
                       for i in range(n)], np.int64) if n else np.zeros(0, np.int64)
    # assemble by (z kind, mass kind) groups, vectorised within a group
    zs, ms, ws, gal = [], [], [], []
    for kz in range(len(zp)):
        for km in range(len(mp)):
            idx = np.flatnonzero((zkind == kz) & (mkind == km))
            if idx.size == 0:
                continue
            zx, zw = znodes[kz][0][zpos[idx]], znodes[kz][1][zpos[idx]]
            mx, mw = mnodes[km][0][mpos[idx]], mnodes[km][1][mpos[idx]]
            zz = np.repeat(zx, mx.shape[1], axis=1)
            shift = np.zeros_like(zz)
            c = post.dl_coefficient[idx]
            if np.any(c != 0):
                ok = zz > 0
                ldl = np.where(ok, log10_dl(np.where(ok, zz, 1.0)), 0.0)
                shift = c[:, None] * (ldl - log10_dl(post.z_ref[idx])[:, None])
            mm = post.log_mass_ref[idx, None] + shift + np.tile(mx, (1, zx.shape[1]))
            ww = np.repeat(zw, mx.shape[1], axis=1) * np.tile(mw, (1, zx.shape[1]))
            zs.append(zz)
            ms.append(mm)
            ws.append(ww)
            gal.append(idx)
    z_flat = np.empty(int(counts.sum()))
    m_flat = np.empty_like(z_flat)
    w_flat = np.empty_like(z_flat)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    for idx, zz, mm, ww in zip(gal, zs, ms, ws, strict=True):
        pos = offsets[idx][:, None] + np.arange(zz.shape[1])[None, :]
        z_flat[pos], m_flat[pos], w_flat[pos] = zz, mm, ww
    inside = ((z_flat > z_support[0]) & (z_flat <= z_support[1])
              & (m_flat >= log_mass_support[0]) & (m_flat <= log_mass_support[1]))
    gi = np.repeat(np.arange(n), counts)
    kept = np.bincount(gi[inside], minlength=n)
    if np.any(kept == 0):
        raise ValueError(f"{int(np.sum(kept == 0))} galaxies have every node outside the model's "
                         f"support (galaxy positions {np.flatnonzero(kept == 0)[:5].tolist()})")
    new_offsets = np.concatenate([[0], np.cumsum(kept)]).astype(np.int64)
    return new_offsets, z_flat[inside], m_flat[inside], w_flat[inside], counts - kept


# ---------------------------------------------------------------------- samples -> split normal
def _ragged_to_padded(values: np.ndarray, offsets: np.ndarray, fill: float) -> np.ndarray:
    counts = np.diff(offsets)
    width = int(counts.max()) if counts.size else 0
    out = np.full((counts.size, width), fill)
    gi = np.repeat(np.arange(counts.size), counts)
    pos = np.arange(values.size) - offsets[:-1][gi]
    out[gi, pos] = values
    return out


def fit_split_normal(x: np.ndarray, w: np.ndarray, n_grid: int = 41, *, return_edge: bool = False
                     ) -> tuple[np.ndarray, ...]:
    r"""Maximum-likelihood split normal of weighted samples, one per row.

    For a mode :math:`\mu`, the widths that maximise the likelihood are
    :math:`\sigma_1^2 = A^{2/3}(A^{1/3} + B^{1/3})` and :math:`\sigma_2^2 = B^{2/3}(A^{1/3} +
    B^{1/3})` (per unit weight), with :math:`A, B` the weighted sums of squares below and above
    :math:`\mu`, and the profile likelihood falls as :math:`A^{1/3} + B^{1/3}` grows (John
    1982); the mode is found on a grid between the rows' 2nd and 98th weighted percentiles.

    Args:
        x: ``(N, S)`` samples (padding: any finite value with weight 0).
        w: ``(N, S)`` weights summing to 1 per row.

        return_edge: also return ``(N,)`` True where the best mode is the first or last grid
            point: the likelihood keeps rising towards the edge of the samples (a box, or a
            half-normal), so the split normal does not describe them.

    Returns:
        ``(mode, sigma_lo, sigma_hi)``, each ``(N,)`` (and the edge flags).
    """
    order = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, order, 1)
    cw = np.cumsum(np.take_along_axis(w, order, 1), axis=1)
    q = np.linspace(0.02, 0.98, n_grid)
    idx = np.stack([np.argmax(cw >= qq - 1e-12, axis=1) for qq in q], 1)
    cand = np.take_along_axis(xs, idx, 1)  # (N, n_grid)
    d = x[:, None, :] - cand[:, :, None]  # (N, G, S)
    below = d < 0
    a = np.sum(np.where(below, w[:, None, :] * d * d, 0.0), axis=2)
    b = np.sum(np.where(below, 0.0, w[:, None, :] * d * d), axis=2)
    score = np.cbrt(a) + np.cbrt(b)
    best = np.argmin(score, axis=1)
    r = np.arange(x.shape[0])
    a, b, mu = a[r, best], b[r, best], cand[r, best]
    s = np.cbrt(a) + np.cbrt(b)
    out = (mu, np.sqrt(np.cbrt(a) ** 2 * s), np.sqrt(np.cbrt(b) ** 2 * s))
    if return_edge:
        return (*out, (best == 0) | (best == n_grid - 1))
    return out


def split_normal_cdf(x: np.ndarray, mu: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """CDF of the split normal (rows broadcast against ``x`` of shape (N, S))."""
    mu, s1, s2 = (np.asarray(v)[:, None] for v in (mu, s1, s2))
    tot = np.where(s1 + s2 > 0, s1 + s2, 1.0)  # a point mass (both 0): the step at mu
    lo = 2 * s1 / tot * ndtr((x - mu) / np.where(s1 > 0, s1, 1.0))
    hi = s1 / tot + 2 * s2 / tot * (ndtr((x - mu) / np.where(s2 > 0, s2, 1.0)) - 0.5)
    return np.where(x < mu, lo, hi)


def split_pieces(mu: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> Pieces:
    """The two pieces of split normals (mode ``mu``, widths ``s1`` below and ``s2`` above)."""
    tot = s1 + s2
    return Pieces(("neg", "pos"), np.stack([mu, mu], 1), np.stack([s1, s2], 1),
                  np.stack([s1 / tot, s2 / tot], 1))


def product_nodes(zpc: Pieces, mpc: Pieces, slope: np.ndarray, n_z: int, n_mass: int, *,
                  covariate: Any = None, anchor: np.ndarray | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(z, log M, w)``, each ``(N, Kz * Km)``: z from ``zpc``; log M = mass piece node +
    ``slope`` * (c(z) - ``anchor``), with c the ``covariate`` (default: z itself, and the
    anchor ``zpc.a[:, 0]``)."""
    zx, zw = zpc.nodes(n_z)
    mx, mw = mpc.nodes(n_mass)
    zz = np.repeat(zx, mx.shape[1], axis=1)
    cz = zz if covariate is None else covariate(np.where(zz > 0, zz, 1e-4))
    a0 = zpc.a[:, :1] if anchor is None else np.asarray(anchor)[:, None]
    mm = np.tile(mx, (1, zx.shape[1])) + slope[:, None] * (cz - a0)
    ww = np.repeat(zw, mx.shape[1], axis=1) * np.tile(mw, (1, zx.shape[1]))
    return zz, mm, ww


def quantile_sigmas(z_median: np.ndarray, p16: np.ndarray, p84: np.ndarray,
                    p2_5: Sequence[float] | np.ndarray | None = None,
                    p97_5: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """``(N, 4)`` slopes (tail_lo, lo, hi, tail_hi) of the piecewise quantile function that
    reproduces the percentiles, as :func:`popmodel.percentiles.sample_quantile_matched`
    draws from (NaN 95% percentiles: the inner slope continues)."""
    m = np.asarray(z_median, float)
    lo = (m - np.asarray(p16, float)) / U68
    hi = (np.asarray(p84, float) - m) / U68
    tail = float(ndtri(0.975)) - U68
    n = m.shape[0]
    l95 = np.full(n, np.nan) if p2_5 is None else np.broadcast_to(np.asarray(p2_5, float), (n,))
    h95 = np.full(n, np.nan) if p97_5 is None else np.broadcast_to(np.asarray(p97_5, float), (n,))
    tlo = np.where(np.isnan(l95), lo, (np.asarray(p16, float) - l95) / tail)
    thi = np.where(np.isnan(h95), hi, (h95 - np.asarray(p84, float)) / tail)
    return np.stack([tlo, lo, hi, thi], 1)
