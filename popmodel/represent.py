r"""How each galaxy's likelihood integral is computed: chosen once per galaxy, with the reason.

The hierarchical likelihood needs, for each galaxy, :math:`I_i(\theta) = \int n(x|\theta)\,
\mathcal{L}_i(x)\,dx` over x = (log M, z), where :math:`\mathcal{L}_i \propto p(x|d_i)/\pi(x)`
is the galaxy's likelihood: its posterior with the SED fitter's interim prior :math:`\pi`
divided out (Hogg, Myers & Bovy 2010, ApJ 725, 2166). Three representations, tried in this
order (``posterior="auto"``, the default):

``analytic``
    The catalogue knows the posterior in closed form (built from percentiles,
    :class:`popmodel.analytic.AnalyticPosteriors`): a deterministic rule matched to that form
    (a Gauss rule on each piece of each split normal, :func:`popmodel.analytic.rule_nodes`).
``gaussian`` / ``split-normal``
    The posterior arrives as samples. Each sample is reweighted by weight / interim prior
    (normalised within the galaxy): the reweighted samples represent the *likelihood*, so the
    prior is never needed at a new point. A Gaussian in z and in log M given z (a linear
    regression on log10 D_L(z), the way a flux-derived mass moves with redshift) is fitted to
    them and checked (:func:`normality_failures`); a galaxy that
    fails gets a split normal in each (:func:`popmodel.analytic.fit_split_normal`), checked on
    its normal scores and refused when its best mode is at the edge of the search range (the
    2nd or 98th percentile of the samples: the likelihood keeps rising towards the edge, as
    it does for a box). The rule of the model that passes replaces the samples.
``samples``
    Neither fits, a node falls outside the interim prior's support (the samples could not
    have seen the likelihood there), or a node leaves the model's support: the importance-
    sampled mean over the samples, with the prior divided out per sample.

A ``log_prior`` that is constant within a galaxy is flat for that galaxy, exactly: it is
never used. Galaxies whose reweighted effective sample size is below
:data:`MIN_EFFECTIVE_SAMPLES` are counted and named in the report (a few prior-dominated
samples describe the likelihood poorly whichever way they are used); they keep the Gaussian
rule of their moments, which cannot be checked.

The Gaussianity check
---------------------
Per galaxy, the weighted skewness and excess kurtosis of the standardised values (z, and the
mass residual about its regression on z), compared with their distribution for Gaussian
samples of the same (Kish) effective size, simulated once (:func:`_null_quantiles`). Light
tails are what a Gaussian rule gets most wrong (its nodes reach where a box-shaped likelihood
is zero), so the kurtosis's lower tail gets most of the false-alarm budget: a galaxy fails
when its kurtosis is below the Gaussian's 10% quantile, or above its 97.5% quantile, or its
absolute skewness above its 97.5% quantile (``alpha`` = 0.1). About 14% of Gaussian galaxies
fail by chance; they go on to the split normal, which fits them as well, so the price is
small. At 16 samples a box-shaped likelihood fails when its samples are evenly spread
(quantile-matched) and about half the time when they are random; no test does much better at
16 random samples (measured in ``tests/test_represent.py``: 50% at 16, 85% at 32, 99% at 64).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.special import ndtr

from popmodel.analytic import (
    PIECE_INTERVALS,
    U68,
    Pieces,
    fit_split_normal,
    product_nodes,
    rule_nodes,
    split_normal_cdf,
)
from popmodel.catalog import CatalogError, InterimPrior, PosteriorCatalog

__all__ = [
    "MIN_EFFECTIVE_SAMPLES",
    "RepresentationReport",
    "likelihood_log_weights",
    "log10_luminosity_distance",
    "normality_failures",
    "represent",
]

#: A rule fitted to samples is refused when its model puts more probability than this at z <= 0.
MAX_PROB_BELOW_Z0 = 1e-3
#: Galaxies with fewer reweighted effective samples than this are reported.
MIN_EFFECTIVE_SAMPLES = 8.0
#: Smallest redshift variance treated as a spread (below: an exact redshift, one z node).
_Z_VAR_EXACT = 1e-12

_FOUR = ("tail_lo", "lo", "hi", "tail_hi")
_REASONS = {
    "analytic": "closed-form posterior from the catalogue (deterministic rule per piece)",
    "gaussian": "samples consistent with a Gaussian likelihood (Gauss-Hermite rule)",
    "split-normal": "skewed samples consistent with a split-normal likelihood (rule per half)",
    "samples": "",
    "given-rule": "nodes of a rule built before (by this module or popmodel.compress), used as given",
}


@dataclass
class RepresentationReport:
    """Which representation each galaxy got, and why (counts, with example ids)."""

    posterior: str
    counts: dict[str, int] = field(default_factory=dict)
    #: why galaxies stayed as samples: reason -> count
    sample_reasons: dict[str, int] = field(default_factory=dict)
    #: galaxies whose interim-prior-reweighted effective sample size is low
    n_low_ess: int = 0
    low_ess_ids: list[str] = field(default_factory=list)
    #: galaxies whose log_prior varies over their samples (divided out)
    n_with_prior: int = 0
    #: nodes of analytic rules dropped outside the model's support (zero density there)
    n_nodes_dropped: int = 0
    #: samples beyond the model's support (zero density), and their galaxies
    n_samples_outside: int = 0
    n_galaxies_with_samples_outside: int = 0
    nodes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        parts = [f"{v} {k}" for k, v in self.counts.items() if v]
        why = "; ".join(f"{n} {r}" for r, n in self.sample_reasons.items() if n)
        out = "representation per galaxy: " + ", ".join(parts)
        if why:
            out += f" (kept as samples: {why})"
        if self.n_with_prior:
            out += f"; interim prior divided out for {self.n_with_prior} galaxies"
        if self.n_low_ess:
            out += (f"; {self.n_low_ess} galaxies have fewer than {MIN_EFFECTIVE_SAMPLES:g} "
                    "effective samples once the prior is divided out (e.g. "
                    + ", ".join(self.low_ess_ids[:3]) + "): their likelihoods are poorly known")
        if self.n_samples_outside:
            out += (f"; {self.n_samples_outside} samples of {self.n_galaxies_with_samples_outside}"
                    " galaxies lie beyond the model's support (z > 12 or log M outside 4-14) and "
                    "contribute zero density")
        if self.n_nodes_dropped:
            out += f"; {self.n_nodes_dropped} rule nodes outside the support dropped (zero density)"
        return out


def likelihood_log_weights(catalog: PosteriorCatalog) -> np.ndarray:
    """``(S,)`` ln of each sample's weight / interim prior, normalised within its galaxy.

    Galaxies whose ``log_prior`` is constant get exactly their normalised weights (the
    constant is never used); ``-inf`` priors are refused, since a posterior sample cannot lie
    where the prior is zero.
    """
    lw = catalog.normalized_log_weights()
    vary = catalog.varying_log_prior()
    if not vary.any():
        return lw
    gi = catalog.galaxy_index
    lp = catalog.log_prior
    if not np.all(np.isfinite(lp)):
        bad = catalog.ids[np.unique(gi[~np.isfinite(lp)])]
        raise CatalogError(f"column 'log_prior' is not finite for galaxy id(s) {list(bad[:5])}: a "
                           "posterior sample cannot lie where the interim prior is zero")
    a = lw - np.where(vary[gi], lp, 0.0)
    starts = catalog.offsets[:-1]
    peak = np.maximum.reduceat(np.where(np.isfinite(a), a, -np.inf), starts)
    norm = peak + np.log(np.add.reduceat(np.exp(a - peak[gi]), starts))
    return np.where(vary[gi], a - norm[gi], lw)


@functools.lru_cache(maxsize=4)
def _null_quantiles(alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Quantiles of the sample skewness and excess kurtosis of Gaussian samples, against n.

    Returns ``(n_grid, skew_hi, (kurt_lo, kurt_hi))``: the ``alpha`` quantile of the kurtosis
    (light tails: a box), its ``1 - alpha/4`` quantile (heavy tails) and the ``1 - alpha/4``
    quantile of the absolute skewness, simulated once with a fixed seed (8000 sets per n).
    """
    rng = np.random.default_rng(20261206)
    n_grid = np.array([3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 256, 512])
    sk_hi, ku_lo, ku_hi = [], [], []
    for n in n_grid:
        x = rng.standard_normal((8000, n))
        d = x - x.mean(1, keepdims=True)
        v = np.mean(d * d, 1)
        sk = np.mean(d**3, 1) / v**1.5
        ku = np.mean(d**4, 1) / v**2 - 3.0
        sk_hi.append(np.quantile(np.abs(sk), 1 - alpha / 4))
        ku_lo.append(np.quantile(ku, alpha))
        ku_hi.append(np.quantile(ku, 1 - alpha / 4))
    return n_grid.astype(float), np.array(sk_hi), np.array([ku_lo, ku_hi])


def _null_bounds(n_eff: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_grid, sk_hi, ku = _null_quantiles(alpha)
    x = np.log(np.clip(n_eff, n_grid[0], None))
    lx = np.log(n_grid)
    # beyond the grid the sampling spread falls as 1/sqrt(n)
    big = n_eff > n_grid[-1]
    scale = np.where(big, np.sqrt(n_grid[-1] / np.maximum(n_eff, 1.0)), 1.0)
    sk = np.interp(x, lx, sk_hi) * scale
    klo = np.interp(x, lx, ku[0]) * scale
    khi = np.interp(x, lx, ku[1]) * scale
    return sk, klo, khi


def _weighted_moments(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu = np.sum(w * x, 1)
    var = np.sum(w * (x - mu[:, None]) ** 2, 1)
    return mu, var


def normality_failures(t: np.ndarray, w: np.ndarray, n_eff: np.ndarray, alpha: float = 0.1
                       ) -> np.ndarray:
    """``(N,)`` True where the weighted values ``t`` (rows; weights summing to 1) are not
    consistent with a Gaussian: their excess kurtosis below the Gaussian's ``alpha``
    quantile or above its ``1 - alpha/4`` one, or their absolute skewness above its
    ``1 - alpha/4`` quantile, at that effective sample size (module doc)."""
    mu, var = _weighted_moments(t, w)
    sd = np.sqrt(np.where(var > 0, var, 1.0))
    u = (t - mu[:, None]) / sd[:, None]
    sk = np.sum(w * u**3, 1)
    ku = np.sum(w * u**4, 1) - 3.0
    sk_hi, klo, khi = _null_bounds(n_eff, alpha)
    return (var > 0) & ((np.abs(sk) > sk_hi) | (ku < klo) | (ku > khi))


def _weighted_quantiles(x: np.ndarray, w: np.ndarray, qs: tuple[float, ...]) -> np.ndarray:
    """``(N, len(qs))`` weighted quantiles of each row (mid-point CDF, linear in between)."""
    order = np.argsort(x, axis=1)
    xs = np.take_along_axis(x, order, 1)
    ws = np.take_along_axis(w, order, 1)
    cdf = np.cumsum(ws, axis=1) - 0.5 * ws
    out = np.empty((x.shape[0], len(qs)))
    for i in range(x.shape[0]):
        keep = ws[i] > 0
        out[i] = np.interp(qs, cdf[i, keep], xs[i, keep])
    return out


def _to_four(a: np.ndarray, b: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Two pieces ("neg", "pos") as the four (tail_lo, lo, hi, tail_hi): each half split at
    its +-u68 with the normal's probabilities. Returns ``(N, 12)``: a, b, p of the four."""
    f_tail = float(ndtr(-U68)) / 0.5
    return np.concatenate([
        np.stack([a[:, 0], a[:, 0], a[:, 1], a[:, 1]], 1),
        np.stack([b[:, 0], b[:, 0], b[:, 1], b[:, 1]], 1),
        np.stack([p[:, 0] * f_tail, p[:, 0] * (1 - f_tail), p[:, 1] * (1 - f_tail),
                  p[:, 1] * f_tail], 1)], 1)


def _piecewise(x: np.ndarray, w: np.ndarray, n_eff: np.ndarray, alpha: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Skewed models of weighted samples (rows), each checked on its normal scores, the first
    that passes kept:

    1. the split normal of John (1982), continuous at its mode (maximum likelihood,
       :func:`popmodel.analytic.fit_split_normal`; refused when its mode sits at the edge of
       the samples, as for a box);
    2. the split normal that percentile catalogues describe: Gaussian halves of probability
       1/2 either side of the median, widths from the 16th and 84th percentiles;
    3. the same with its own tails beyond the 16th and 84th percentiles, from the 2.5th and
       97.5th (:func:`popmodel.percentiles.sample_quantile_matched`'s form).

    Returns:
        ``(ok, params)``: ``(N,)`` True where one passes, and ``(N, 12)`` parameters a, b, p
        of the four pieces (tail_lo, lo, hi, tail_hi).
    """
    from scipy.special import ndtri

    eps = 1e-12
    mu, s1, s2, edge = fit_split_normal(x, w, return_edge=True)
    sc = ndtri(np.clip(split_normal_cdf(x, mu, s1, s2), eps, 1 - eps))
    ok1 = (s1 > 0) & (s2 > 0) & ~edge & ~normality_failures(sc, w, n_eff, alpha)
    tot = np.where(s1 + s2 > 0, s1 + s2, 1.0)
    par = _to_four(np.stack([mu, mu], 1), np.stack([s1, s2], 1), np.stack([s1 / tot, s2 / tot], 1))
    tail = float(ndtri(0.975)) - U68
    q = _weighted_quantiles(x, w, (0.025, 0.16, 0.5, 0.84, 0.975))
    m = q[:, 2:3]
    lo, hi = (q[:, 2] - q[:, 1]) / U68, (q[:, 3] - q[:, 2]) / U68
    tlo, thi = (q[:, 1] - q[:, 0]) / tail, (q[:, 4] - q[:, 3]) / tail
    pos = (lo > 0) & (hi > 0)
    lo_, hi_ = np.where(pos, lo, 1.0)[:, None], np.where(pos, hi, 1.0)[:, None]
    u2 = np.where(x < m, (x - m) / lo_, (x - m) / hi_)
    ok2 = ~ok1 & pos & ~normality_failures(u2, w, n_eff, alpha)
    half = np.full_like(lo, 0.5)
    par2 = _to_four(np.stack([q[:, 2], q[:, 2]], 1), np.stack([lo, hi], 1), np.stack([half, half], 1))
    pos4 = pos & (tlo > 0) & (thi > 0)
    tlo_, thi_ = np.where(pos4, tlo, 1.0)[:, None], np.where(pos4, thi, 1.0)[:, None]
    u3 = np.where(x < q[:, 1:2], -U68 + (x - q[:, 1:2]) / tlo_,
                  np.where(x > q[:, 3:4], U68 + (x - q[:, 3:4]) / thi_, u2))
    ok3 = ~ok1 & ~ok2 & pos4 & ~normality_failures(u3, w, n_eff, alpha)
    p_tail = float(ndtr(-U68))
    par3 = np.concatenate([
        np.stack([q[:, 2] - lo * U68 + tlo * U68, q[:, 2], q[:, 2], q[:, 2] + hi * U68 - thi * U68], 1),
        np.stack([tlo, lo, hi, thi], 1),
        np.tile([p_tail, 0.5 - p_tail, 0.5 - p_tail, p_tail], (x.shape[0], 1))], 1)
    out = np.where(ok2[:, None], par2, par)
    out = np.where(ok3[:, None], par3, out)
    return ok1 | ok2 | ok3, out


def _prob_below(pieces: Pieces, x0: float) -> np.ndarray:
    """``(N,)`` probability that the distribution of ``pieces`` puts below ``x0``."""
    if not pieces.kinds:
        return (pieces.a[:, 0] <= x0).astype(float)
    out = np.zeros(pieces.a.shape[0])
    for k, kind in enumerate(pieces.kinds):
        lo, hi = PIECE_INTERVALS[kind]
        b = pieces.b[:, k]
        t0 = np.where(b > 0, (x0 - pieces.a[:, k]) / np.where(b > 0, b, 1.0),
                      np.where(pieces.a[:, k] <= x0, np.inf, -np.inf))
        mass = ndtr(hi) - ndtr(lo)
        frac = (ndtr(np.clip(t0, lo, hi)) - ndtr(lo)) / mass
        out += pieces.p[:, k] * frac
    return out


def _padded(catalog: PosteriorCatalog, values: np.ndarray, fill: float) -> np.ndarray:
    counts = catalog.n_samples
    out = np.full((catalog.n_galaxies, int(counts.max())), fill)
    gi = catalog.galaxy_index
    out[gi, np.arange(values.size) - catalog.offsets[:-1][gi]] = values
    return out


_DL_SPLINES: dict[str, CubicSpline] = {}


def log10_luminosity_distance(cosmology: Any) -> Any:
    """A vectorised log10 D_L [Mpc](z) for ``z`` in (1e-4, 13], from a spline in log z (cached
    per cosmology; astropy cosmologies are not hashable, so the key is their repr)."""
    key = repr(cosmology)
    if key not in _DL_SPLINES:
        z = np.geomspace(1e-4, 13.0, 3000)
        _DL_SPLINES[key] = CubicSpline(
            np.log10(z), np.log10(cosmology.luminosity_distance(z).to_value("Mpc")))
    spline = _DL_SPLINES[key]
    return lambda z: spline(np.log10(np.clip(np.asarray(z, float), 1e-4, None)))


def represent(
    catalog: PosteriorCatalog,
    *,
    posterior: str = "auto",
    interim_prior: InterimPrior | None = None,
    gh_nodes: tuple[int, int] = (8, 3),
    cosmology: Any = None,
    z_support: tuple[float, float] = (0.0, 12.0),
    log_mass_support: tuple[float, float] = (4.0, 14.0),
    alpha: float = 0.1,
    node_factor: int = 1,
    kinds: np.ndarray | None = None,
) -> tuple[PosteriorCatalog, np.ndarray, RepresentationReport]:
    """Choose each galaxy's representation (module doc) and build its nodes or samples.

    Args:
        catalog: the galaxies (after the survey's cuts).
        posterior: "auto" (default: analytic, then Gaussian / split-normal rules of the
            likelihood, then samples), "samples" (the samples for every galaxy, the prior
            divided out per sample; the reference the others are checked against) or
            "gauss-hermite" (the Gaussian rule of the likelihood for every galaxy without a
            closed form, unchecked); "reference" (the analytic rules, and the samples for every
            other galaxy: what the rules fitted to samples are checked against).
        interim_prior: the SED fitter's prior as an object, used only to check that a rule's
            nodes lie inside its support (the per-sample ``log_prior`` column is what is
            divided out).
        gh_nodes: (mass, z) nodes of a Gaussian; a split normal or a percentile posterior
            gets ``max(2, ceil(n / pieces))`` per piece.
        cosmology: for the luminosity-distance shift of analytic masses.
        z_support, log_mass_support: the model's support.
        alpha: false-alarm rate of the Gaussianity check.
        node_factor: multiply the nodes per piece (2: the quadrature-error check).
        kinds: ``(N,)`` representations decided before (``meta["compression"]["kind"]`` of
            an earlier call on the same galaxies): used as given, without the checks, and rule
            nodes outside the support get zero weight instead of changing the representation
            (the quadrature check compares like with like).

    Returns:
        ``(nodes, quadrature, report)``: a catalogue whose samples are the nodes of the rule
        galaxies (weights in ``weight``, ``log_prior`` zero) and the samples of the others;
        ``(N,)`` True for the rule galaxies; the :class:`RepresentationReport`.
    """
    if posterior not in ("auto", "samples", "gauss-hermite", "reference"):
        raise ValueError(f"posterior must be 'auto', 'samples' or 'gauss-hermite', got {posterior!r}")
    n = catalog.n_galaxies
    kind = np.full(n, "samples", dtype=object)
    reason = np.full(n, "", dtype=object)
    report = RepresentationReport(posterior=posterior)
    lw = likelihood_log_weights(catalog)
    report.n_with_prior = int(catalog.varying_log_prior().sum())
    w = np.exp(lw)
    n_eff = 1.0 / np.add.reduceat(w * w, catalog.offsets[:-1]) if n else np.zeros(0)
    low = n_eff < MIN_EFFECTIVE_SAMPLES * (1 - 1e-9)
    if report.n_with_prior:
        low_prior = low & catalog.varying_log_prior()
        report.n_low_ess = int(low_prior.sum())
        report.low_ess_ids = [str(i) for i in catalog.ids[low_prior][:20]]
    nm, nz = int(gh_nodes[0]) * node_factor, int(gh_nodes[1]) * node_factor

    def per_piece(total: int, pieces: int) -> int:
        return max(2, -(-total // pieces)) if pieces > 1 else total

    # the samples outside the redshift support contribute zero density
    outside = ((catalog.z > z_support[1]) | (catalog.log_mass < log_mass_support[0])
               | (catalog.log_mass > log_mass_support[1]))
    gi = catalog.galaxy_index
    report.n_samples_outside = int(outside.sum())
    report.n_galaxies_with_samples_outside = int(np.unique(gi[outside]).size)
    has_outside = np.bincount(gi[outside], minlength=n) > 0

    pieces_z: list = []  # (idx, zz, mm, ww) per group of rule galaxies
    analytic_sel = np.zeros(n, bool)
    if posterior != "samples" and catalog.analytic is not None:
        analytic_sel[:] = True
        cosmo = cosmology
        if cosmo is None:
            from astropy.cosmology import WMAP9 as cosmo
        ldl = log10_luminosity_distance(cosmo)
        four = np.any(catalog.analytic.z_sigma[:, [0, 3]] != catalog.analytic.z_sigma[:, [1, 2]])
        off, zn, mn, wn, dropped = rule_nodes(
            catalog.analytic, ldl, n_z=per_piece(nz, 4 if four else 2),
            n_mass=per_piece(nm, 2), z_support=z_support, log_mass_support=log_mass_support)
        report.n_nodes_dropped = int(dropped.sum())
        counts = np.diff(off)
        kind[:] = "analytic"
        pieces_z.append(("ragged", np.arange(n), off, zn, mn, wn, counts))

    # galaxies whose samples already are a rule's nodes (popmodel.compress.gauss_hermite)
    comp = catalog.meta.get("compression") or {}
    given = np.zeros(n, bool)
    if comp.get("method") in ("gauss-hermite", "represent"):  # prepared once already
        given = ~np.isin(catalog.ids, np.asarray(comp.get("kept_ids", []), dtype=str)) & ~analytic_sel
        kind[given] = "given-rule"
        for i in np.flatnonzero(given):
            sl = slice(catalog.offsets[i], catalog.offsets[i + 1])
            pieces_z.append(("rect", np.array([i]), catalog.z[None, sl], catalog.log_mass[None, sl],
                             np.exp(catalog.normalized_log_weights()[sl])[None, :]))
    todo = (np.flatnonzero(~analytic_sel & ~has_outside & ~given)
            if posterior not in ("samples", "reference") else np.zeros(0, int))
    reason[has_outside & ~analytic_sel] = "samples beyond the model's support"
    if todo.size:
        sub = catalog.subset(todo)
        slw = likelihood_log_weights(sub)
        wp = _padded(sub, np.exp(slw), 0.0)
        mp = _padded(sub, sub.log_mass, 0.0)
        zp = _padded(sub, sub.z, 0.0)
        ne = n_eff[todo]
        mz, vz = _weighted_moments(zp, wp)
        exact_z = vz <= _Z_VAR_EXACT
        # the mass moves with the luminosity distance: regress it on log10 D_L(z), which a
        # fitted mass follows (2 log10 D_L for a flux-derived mass), not on z, whose relation
        # with it bends (most at low z, across a broad photometric-redshift posterior)
        cosmo = cosmology
        if cosmo is None:
            from astropy.cosmology import WMAP9 as cosmo
        ldl = log10_luminosity_distance(cosmo)
        cp = np.where(wp > 0, ldl(np.where(zp > 0, zp, 1.0)), 0.0)
        mc, vc = _weighted_moments(cp, wp)
        cov = np.sum(wp * (cp - mc[:, None]) * (mp - np.sum(wp * mp, 1)[:, None]), 1)
        slope = np.where(exact_z | (vc <= 0), 0.0, cov / np.where(exact_z | (vc <= 0), 1.0, vc))
        resid = mp - slope[:, None] * (cp - mc[:, None])
        mr, vr = _weighted_moments(resid, wp)
        gauss_ok = np.ones(todo.size, bool)
        split_ok = np.zeros(todo.size, bool)
        few = sub.n_samples < MIN_EFFECTIVE_SAMPLES  # too few samples to describe, or check, a rule
        if posterior == "auto":
            testable = ne >= MIN_EFFECTIVE_SAMPLES * (1 - 1e-9)
            bad_z = ~exact_z & normality_failures(zp, wp, ne, alpha)
            bad_m = normality_failures(resid, wp, ne, alpha)
            # low effective size from a prior that varies: the Gaussian of the moments, unchecked
            # (reported; the same samples would not do better)
            gauss_ok = ~few & (~testable | ~(bad_z | bad_m))
            if kinds is not None:  # decided before (the coarser rule's choice): kept
                gauss_ok = np.asarray(kinds)[todo] == "gaussian"
            # split normals for the others, checked on their normal scores
            cand = ~gauss_ok & ~few
            if kinds is not None:
                cand = np.asarray(kinds)[todo] == "split-normal"
            if cand.any():

                c = np.flatnonzero(cand)
                zfit = _piecewise(zp[c], wp[c], ne[c], alpha)
                rfit = _piecewise(resid[c], wp[c], ne[c], alpha)
                good = rfit[0] & (exact_z[c] | zfit[0])
                if kinds is not None:
                    good[:] = True
                split_ok[c[good]] = True
                split_par = {int(k): (zfit[1][j], rfit[1][j]) for j, k in enumerate(c) if good[j]}
        # build the Gaussian rules
        groups = []
        g_idx = np.flatnonzero(gauss_ok)
        if g_idx.size:
            ez = exact_z[g_idx]
            zpc = Pieces(("full",), mz[g_idx, None], np.sqrt(np.maximum(vz[g_idx], 0))[:, None],
                         np.ones((g_idx.size, 1)))
            mpc = Pieces(("full",), mr[g_idx, None],
                         np.sqrt(np.maximum(vr[g_idx], 0))[:, None], np.ones((g_idx.size, 1)))
            for sel, nzz in ((~ez, nz), (ez, 1)):
                k = g_idx[sel]
                if k.size == 0:
                    continue
                zpk = Pieces(("full",) if nzz > 1 else (), zpc.a[sel], zpc.b[sel], zpc.p[sel])
                zz, mm, ww = product_nodes(zpk, Pieces(("full",), mpc.a[sel], mpc.b[sel], mpc.p[sel]),
                                           slope[k], max(nzz, 1), nm, covariate=ldl,
                                           anchor=mc[k])
                groups.append(("gaussian", k, zz, mm, ww, _prob_below(zpk, z_support[0])))
        s_idx = np.flatnonzero(split_ok)
        if s_idx.size:
            zpar = np.array([split_par[int(k)][0] for k in s_idx])  # (n, 12): a, b, p x 4
            rpar = np.array([split_par[int(k)][1] for k in s_idx])
            ez = exact_z[s_idx]
            for sel in (~ez, ez):
                k = s_idx[sel]
                if k.size == 0:
                    continue
                if sel is ez or np.all(ez[sel]):
                    zpk = Pieces((), mz[k, None], np.zeros((k.size, 1)), np.ones((k.size, 1)))
                else:
                    q = zpar[sel]
                    zpk = Pieces(_FOUR, q[:, 0:4], q[:, 4:8], q[:, 8:12])
                # residual = log M - slope (log D_L(z) - its mean), as for the Gaussian
                q = rpar[sel]
                mpk = Pieces(_FOUR, q[:, 0:4], q[:, 4:8], q[:, 8:12])
                zz, mm, ww = product_nodes(zpk, mpk, slope[k], per_piece(nz, 4), per_piece(nm, 4),
                                           covariate=ldl, anchor=mc[k])
                groups.append(("split-normal", k, zz, mm, ww, _prob_below(zpk, z_support[0])))
        for name, k, zz, mm, ww, below in groups:
            out_n = ((zz <= z_support[0]) | (zz > z_support[1]) | (mm < log_mass_support[0])
                     | (mm > log_mass_support[1]))
            if kinds is not None:  # same representation: nodes outside carry zero density
                ww = np.where(out_n, 0.0, ww)
                zz = np.clip(zz, 1e-3, z_support[1])
                mm = np.clip(mm, *log_mass_support)
                report.n_nodes_dropped += int(out_n.sum())
                out_n = np.zeros_like(out_n)
            bad = np.any(out_n, axis=1)
            # a model with real probability at z <= 0 misdescribes a likelihood that has none
            # there, whether or not the rule's few nodes reach it (twice the nodes would)
            low = (below > MAX_PROB_BELOW_Z0) & ~bad
            if kinds is None:
                reason[todo[k[low]]] = "the fitted model puts probability at z <= 0"
                bad |= low
            if interim_prior is not None and posterior != "gauss-hermite":
                lp = np.asarray(interim_prior.log_density(mm, zz), float)
                prior_out = ~np.all(np.isfinite(np.broadcast_to(lp, mm.shape)), axis=1) & ~bad
                reason[todo[k[prior_out]]] = "a rule node outside the interim prior's support"
                bad |= prior_out
            reason[todo[k[bad & (reason[todo[k]] == "")]]] = "a rule node outside the model's support"
            keep = ~bad
            if keep.any():
                kind[todo[k[keep]]] = name
                pieces_z.append(("rect", todo[k[keep]], zz[keep], mm[keep], ww[keep]))
        rest = todo[~gauss_ok & ~split_ok & ~few]
        reason[rest] = "neither Gaussian nor split normal (skewness / kurtosis check)"
        if posterior == "auto":
            reason[todo[few]] = f"fewer than {MIN_EFFECTIVE_SAMPLES:g} samples"
    if posterior in ("samples", "reference"):
        reason[kind == "samples"] = f"posterior={posterior!r}"
    report.counts = {k: int(np.sum(kind == k)) for k in _REASONS}
    rs = reason[kind == "samples"]
    report.sample_reasons = {str(r): int(np.sum(rs == r)) for r in sorted(set(rs.tolist()))}

    # assemble: rule galaxies get their nodes, the others their samples
    quad = kind != "samples"
    counts = np.where(quad, 0, catalog.n_samples)
    node_parts = {}
    for part in pieces_z:
        if part[0] == "ragged":
            _, idx, off, zn, mn, wn, cnt = part
            counts[idx] = cnt
            for j, i in enumerate(idx):
                node_parts[int(i)] = (zn[off[j]:off[j + 1]], mn[off[j]:off[j + 1]], wn[off[j]:off[j + 1]])
        else:
            _, idx, zz, mm, ww = part
            counts[idx] = zz.shape[1]
            for j, i in enumerate(idx):
                node_parts[int(i)] = (zz[j], mm[j], ww[j])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    total = int(offsets[-1])
    z = np.empty(total)
    m = np.empty(total)
    lwo = np.empty(total)
    lp = np.zeros(total)
    keep_s = np.flatnonzero(~quad)
    if keep_s.size:
        sgi = np.repeat(keep_s, catalog.n_samples[keep_s])
        src = (np.concatenate([np.arange(catalog.offsets[i], catalog.offsets[i + 1]) for i in keep_s])
               if keep_s.size else np.zeros(0, int))
        dst = offsets[sgi] + (src - catalog.offsets[sgi])
        z[dst], m[dst] = catalog.z[src], catalog.log_mass[src]
        lwo[dst] = catalog.normalized_log_weights()[src]
        if catalog.log_prior is not None:
            vary = catalog.varying_log_prior()
            lp[dst] = np.where(vary[sgi], catalog.log_prior[src], 0.0)
    if node_parts:
        idx = np.array(sorted(node_parts))
        for i in idx:
            zz, mm, ww = node_parts[int(i)]
            sl = slice(offsets[i], offsets[i + 1])
            z[sl], m[sl] = zz, mm
            with np.errstate(divide="ignore"):
                lwo[sl] = np.log(ww)
    report.nodes = {"total": total, "per_rule_galaxy_median": int(np.median(counts[quad])) if quad.any() else 0}
    meta = dict(catalog.meta)
    meta["compression"] = {
        "method": "represent", "posterior": posterior, "gh_nodes": [nm, nz],
        "n_kept_as_samples": int((~quad).sum()),
        "kept_ids": [str(i) for i in catalog.ids[~quad]],
        "kind": [str(k) for k in kind],
    }
    out = PosteriorCatalog(
        ids=catalog.ids, fields=catalog.fields, offsets=offsets, log_mass=m, z=z,
        log_prior=lp if np.any(lp != 0) else None, weight=np.exp(lwo), meta=meta,
        obs_log_mass=catalog.obs_log_mass, obs_z=catalog.obs_z,
    )
    return out, quad, report
