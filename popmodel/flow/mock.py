r"""Mock catalogues with known star-forming sequences, for testing the deconvolving flow.

Two generators, both returning a :class:`~popmodel.catalog.PosteriorCatalog` with
(z, log M, log SFR) posterior samples, the :class:`~popmodel.survey.Survey` that selected it and
the truth:

* :func:`sequence_mock`: a **known intrinsic sequence**. True log M is drawn from a Schechter
  function with a smooth low-mass roll-off, z from a smooth (Beta(2, 2)) distribution on a
  range, and log SFR from a Gaussian of width ``scatter`` around a mean relation (default the
  Leja et al. 2022 ridge, Eq. 10), so that the ridge, median and mean of log SFR coincide and
  :math:`\log_{10}\langle\mathrm{SFR}\rangle = \mu + \ln(10)\sigma^2/2`. Observed values add
  Gaussian errors (``mass_error``, ``sfr_error``); galaxies are optionally **selected on the
  observed mass** (``log_mass_limit``); each posterior is the Gaussian likelihood around the
  observed values under a flat interim prior (samples ``obs + sigma * N(0, 1)``). Redshifts
  are exact.
* :func:`leja2022_flow_mock`: a **realistic population**. (z, log M) are drawn from the
  Leja et al. (2020) median mass function times dV/dz times the area (default WMAP9,
  :data:`popmodel.cosmology.DEFAULT_COSMOLOGY`), and log SFR from
  the conditional p(log SFR | log M, z) of the released Leja et al. (2022) flow (never the
  flow's own samples, whose (z, log M) distribution is that of Leja's training sample;
  Leja et al. 2022, ApJ 936, 165). Mass errors 0.1 dex and SFR errors that grow from
  0.25 dex on the sequence to 0.6 dex for quiescent galaxies; selection on observed mass
  above the 3D-HST Prospector completeness limits (Tal et al. 2014 limits converted by
  Leja et al. 2022, github.com/jrleja/sfs_leja_trained_flow).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import astropy.cosmology as apc
import astropy.units as u
import numpy as np

from popmodel.catalog import PosteriorCatalog
from popmodel.cosmology import DEFAULT_COSMOLOGY, DEFAULT_IMF, cosmology_record
from popmodel.flow.leja2022 import LEJA2022_COMPLETENESS_3DHST, Leja2022Flow
from popmodel.flow.parametric import leja2022_log_sfr
from popmodel.survey import Field, Survey

__all__ = [
    "LEJA2020_ANCHORS",
    "MockTruth",
    "leja2020_log_phi",
    "leja2022_flow_mock",
    "realistic_sfr_error",
    "sequence_mock",
]

_LN10 = np.log(10.0)

#: Leja et al. 2020 Appendix B posterior medians at the anchors z = 0.2, 1.6, 3.0
#: (ApJ 893, 111).
LEJA2020_ANCHORS = {
    "z": (0.2, 1.6, 3.0),
    "log_phi1": (-2.44, -3.08, -4.14),
    "log_phi2": (-2.89, -3.29, -3.51),
    "log_mstar": (10.79, 10.88, 10.84),
    "alpha1": -0.28,
    "alpha2": -1.48,
}


def _anchor_quadratic(y: tuple[float, float, float], z: np.ndarray) -> np.ndarray:
    """The quadratic through the three anchor values (Leja et al. 2020 Appendix B)."""
    z1, z2, z3 = LEJA2020_ANCHORS["z"]
    y1, y2, y3 = y
    a = ((y3 - y1) + (y2 - y1) / (z2 - z1) * (z1 - z3)) / (
        z3**2 - z1**2 + (z2**2 - z1**2) / (z2 - z1) * (z1 - z3)
    )
    b = ((y2 - y1) - a * (z2**2 - z1**2)) / (z2 - z1)
    c = y1 - a * z1**2 - b * z1
    return a * z * z + b * z + c


def leja2020_log_phi(log_mass: np.ndarray | float, z: np.ndarray | float) -> np.ndarray:
    """log10 Phi [Mpc^-3 dex^-1] of the Leja et al. 2020 median continuity model (numpy).

    Args:
        log_mass: log10 M* [Msun].
        z: Redshift (clamped to the model's 0.2-3.0 validity range).

    Returns:
        log10 of the double-Schechter mass function (Leja et al. 2020, ApJ 893, 111).
    """
    m = np.asarray(log_mass, np.float64)
    zc = np.clip(np.asarray(z, np.float64), 0.2, 3.0)
    lms = _anchor_quadratic(LEJA2020_ANCHORS["log_mstar"], zc)
    x = m - lms
    out = 0.0
    for phi, alpha in (("log_phi1", "alpha1"), ("log_phi2", "alpha2")):
        lp = _anchor_quadratic(LEJA2020_ANCHORS[phi], zc)
        out = out + _LN10 * 10.0**lp * 10.0 ** (x * (LEJA2020_ANCHORS[alpha] + 1)) * np.exp(-(10.0**x))
    return np.log10(out)


@dataclass
class MockTruth:
    """The truth behind a mock.

    Attributes:
        kind: ``"sequence"`` or ``"leja2022_flow"``.
        mean_log_sfr: For sequence mocks, ``f(log_mass, z)`` -> mean (= ridge = median) of
            log SFR.
        scatter: For sequence mocks, the Gaussian scatter [dex].
        true_z, true_log_mass, true_log_sfr: ``(N,)`` true values of the selected galaxies.
        n_drawn: Galaxies drawn before selection.
        settings: The generator's arguments.
        conventions: ``{"cosmology": record, "imf": name}`` of the masses (as the catalogue's
            ``meta``).
    """

    kind: str
    true_z: np.ndarray
    true_log_mass: np.ndarray
    true_log_sfr: np.ndarray
    n_drawn: int
    mean_log_sfr: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None
    scatter: float | None = None
    settings: dict = field(default_factory=dict)
    conventions: dict = field(default_factory=dict)

    def ridge(self, log_mass: np.ndarray, z: np.ndarray) -> np.ndarray:
        """True ridge (sequence mocks)."""
        return self.mean_log_sfr(np.asarray(log_mass, float), np.asarray(z, float))

    def log_mean_sfr(self, log_mass: np.ndarray, z: np.ndarray) -> np.ndarray:
        """True log10 <SFR> (sequence mocks): mu + ln(10) sigma^2 / 2, with the quiescent
        galaxies (offsets uniform in (a, b) dex below mu) when the mock has them."""
        sf = 0.5 * _LN10 * self.scatter**2
        fq = float(self.settings.get("quiescent_fraction", 0.0))
        if fq == 0.0:
            return self.ridge(log_mass, z) + sf
        a, b = self.settings["quiescent_offset"]
        mean_q = (10.0**-a - 10.0**-b) / ((b - a) * _LN10) if b > a else 10.0**-a
        return self.ridge(log_mass, z) + np.log10((1.0 - fq) * 10.0**sf + fq * mean_q)

    def noise_free_catalog(self, ids: np.ndarray, fields: np.ndarray) -> PosteriorCatalog:
        """One sample per galaxy at its true values (for noise-free training)."""
        n = self.true_z.size
        return PosteriorCatalog(
            ids=ids, fields=fields, offsets=np.arange(n + 1), log_mass=self.true_log_mass,
            z=self.true_z, log_sfr=self.true_log_sfr,
            meta={"mock": self.kind, "noise_free": True,
                  **(self.conventions or _conventions())},
        )


def _draw_from_grid(rng: np.random.Generator, grid: np.ndarray, log_pdf: np.ndarray, n: int) -> np.ndarray:
    """Inverse-CDF draws from a density tabulated on a fine grid (linear CDF interpolation)."""
    p = np.exp(log_pdf - log_pdf.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(grid))])
    return np.interp(rng.uniform(0, cdf[-1], n), cdf, grid)


def _survey(name: str, z_range: tuple[float, float], comp_z: np.ndarray, comp_m: np.ndarray,
            mass_error: float, area_arcmin2: float = 1.0,
            cosmology: apc.Cosmology | None = None) -> Survey:
    fld = Field(name=name, area=area_arcmin2, area_unit="arcmin2", z_min=z_range[0], z_max=z_range[1],
                completeness_z=comp_z, completeness_log_mass=comp_m, mass_error_dex=mass_error)
    return Survey(fields=(fld,), name=f"{name} mock", cosmology=cosmology, imf=DEFAULT_IMF)


def _conventions(cosmology: apc.Cosmology | None = None) -> dict:
    """``meta["cosmology"]`` and ``meta["imf"]`` of a mock (the package defaults unless given)."""
    return {"cosmology": cosmology_record(DEFAULT_COSMOLOGY if cosmology is None else cosmology),
            "imf": DEFAULT_IMF}


def _posterior_catalog(rng: np.random.Generator, ids: np.ndarray, field_name: str, z: np.ndarray,
                       m_obs: np.ndarray, s_obs: np.ndarray, sig_m: np.ndarray, sig_s: np.ndarray,
                       n_samples: int, meta: dict) -> PosteriorCatalog:
    n = z.size
    ms = m_obs[:, None] + sig_m[:, None] * rng.standard_normal((n, n_samples))
    ss = s_obs[:, None] + sig_s[:, None] * rng.standard_normal((n, n_samples))
    zs = np.repeat(z[:, None], n_samples, axis=1)
    return PosteriorCatalog(
        ids=ids, fields=np.full(n, field_name), offsets=np.arange(n + 1) * n_samples,
        log_mass=ms.ravel(), z=zs.ravel(), log_sfr=ss.ravel(), meta=meta,
        obs_log_mass=m_obs, obs_z=z.copy(),
    )


def sequence_mock(
    n_galaxies: int,
    *,
    scatter: float = 0.3,
    sfr_error: float | tuple[float, float] = 0.4,
    mass_error: float = 0.1,
    n_samples: int = 32,
    seed: int = 0,
    z_range: tuple[float, float] = (0.3, 2.7),
    quiescent_fraction: float = 0.0,
    quiescent_offset: tuple[float, float] = (1.0, 2.5),
    mean_log_sfr: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    log_mass_limit: float | tuple[np.ndarray, np.ndarray] | None = None,
    schechter: tuple[float, float] = (10.8, -1.3),
    log_mass_rolloff: float = 9.0,
    log_mass_range: tuple[float, float] = (7.0, 12.0),
) -> tuple[PosteriorCatalog, Survey, MockTruth]:
    """A mock with a known Gaussian star-forming sequence and noisy posteriors.

    Args:
        n_galaxies: Galaxies in the catalogue (after selection).
        scatter: Intrinsic Gaussian scatter of log SFR at fixed (log M, z) [dex].
        sfr_error: Gaussian SFR measurement error [dex], or ``(lo, hi)``: each galaxy's error
            drawn uniformly in that range (its posterior then has that width).
        mass_error: Gaussian mass measurement error [dex].
        n_samples: Posterior samples per galaxy.
        seed: Seed of all draws.
        z_range: Redshift range (a Beta(2, 2) distribution on it).
        mean_log_sfr: Mean log SFR as a function of (log M, z); default the Leja et al. 2022
            ridge (Eq. 10, Table 1).
        log_mass_limit: Selection on the *observed* mass: a constant, or a table
            ``(z, log_mass)`` of the completeness limit; None for no selection.
        schechter: (log M*, alpha) of the mass distribution.
        log_mass_rolloff: Centre of the smooth low-mass roll-off (a normal CDF of width
            0.3 dex) that keeps the mass distribution normalisable.
        log_mass_range: Range of the true-mass grid.
        quiescent_fraction: Fraction of galaxies (at every mass and redshift) that are
            quiescent: their log SFR is the mean relation minus an offset drawn uniformly in
            ``quiescent_offset`` [dex]. As the offsets start 1 dex below, the quiescent
            density is zero within 1 dex of the sequence, so the mode of p(log SFR | log M, z)
            (the ridge) is still exactly ``mean_log_sfr``; the median and mean are not.
        quiescent_offset: (min, max) offset of the quiescent galaxies below the mean [dex].

    Returns:
        ``(catalog, survey, truth)``; the survey has one field ``"MOCK"`` whose completeness
        and ``mass_error_dex`` describe the selection (a limit far below the data when there
        is none).
    """
    if n_galaxies < 1 or n_samples < 1:
        raise ValueError("n_galaxies and n_samples must be positive")
    sfr_err_range = (float(sfr_error), float(sfr_error)) if np.isscalar(sfr_error) else tuple(map(float, sfr_error))
    if min(scatter, *sfr_err_range, mass_error) < 0 or sfr_err_range[1] < sfr_err_range[0]:
        raise ValueError("scatter and errors must be >= 0 (an SFR error range as (lo, hi))")
    if not 0.0 <= quiescent_fraction < 1.0 or quiescent_offset[1] < quiescent_offset[0]:
        raise ValueError("quiescent_fraction must be in [0, 1) and quiescent_offset (min, max)")
    from scipy.special import ndtr

    rng = np.random.default_rng(seed)
    mu = mean_log_sfr or (lambda m, z: leja2022_log_sfr(m, z, "ridge"))
    if log_mass_limit is None:
        comp_z, comp_m = np.array([z_range[0]]), np.array([log_mass_range[0] - 5.0])
    elif np.isscalar(log_mass_limit):
        comp_z, comp_m = np.array([z_range[0]]), np.array([float(log_mass_limit)])
    else:
        comp_z, comp_m = (np.asarray(a, float) for a in log_mass_limit)
    grid = np.linspace(*log_mass_range, 2001)
    lms, alpha = schechter
    x = grid - lms
    log_pdf = (alpha + 1) * x * _LN10 - 10.0**x + np.log(np.maximum(ndtr((grid - log_mass_rolloff) / 0.3), 1e-300))
    zs, ms, ss, mo = [], [], [], []
    n_drawn = 0
    need = n_galaxies
    while need > 0:
        k = max(2 * need, 1000)
        z = z_range[0] + (z_range[1] - z_range[0]) * rng.beta(2.0, 2.0, k)
        m = _draw_from_grid(rng, grid, log_pdf, k)
        s = mu(m, z) + scatter * rng.standard_normal(k)
        if quiescent_fraction > 0:
            q = rng.uniform(size=k) < quiescent_fraction
            s = np.where(q, mu(m, z) - rng.uniform(*quiescent_offset, k), s)
        m_obs = m + mass_error * rng.standard_normal(k)
        keep = m_obs > np.interp(z, comp_z, comp_m)
        n_drawn += k
        idx = np.flatnonzero(keep)[:need]
        if need < idx.size:
            idx = idx[:need]
        # count only the draws up to the last kept galaxy so that n_drawn is a fair count
        if idx.size and idx.size == need:
            n_drawn -= k - (idx[-1] + 1)
        zs.append(z[idx])
        ms.append(m[idx])
        ss.append(s[idx])
        mo.append(m_obs[idx])
        need -= idx.size
    z, m, s, m_obs = (np.concatenate(a) for a in (zs, ms, ss, mo))
    n = z.size
    if sfr_err_range[0] == sfr_err_range[1]:
        sig_s = np.full(n, sfr_err_range[0])
    else:
        sig_s = rng.uniform(*sfr_err_range, n)
    s_obs = s + sig_s * rng.standard_normal(n)
    ids = np.array([f"mock{i:06d}" for i in range(n)])
    settings = {
        "n_galaxies": n_galaxies, "scatter": scatter,
        "sfr_error": sfr_err_range[0] if sfr_err_range[0] == sfr_err_range[1] else list(sfr_err_range),
        "mass_error": mass_error, "n_samples": n_samples, "seed": seed, "z_range": list(z_range),
        "quiescent_fraction": quiescent_fraction, "quiescent_offset": list(quiescent_offset),
        "log_mass_limit": None if log_mass_limit is None else np.asarray(comp_m).tolist(),
        "schechter": list(schechter), "log_mass_rolloff": log_mass_rolloff,
    }
    cat = _posterior_catalog(
        rng, ids, "MOCK", z, m_obs, s_obs, np.full(n, mass_error), sig_s,
        n_samples, {"mock": "sequence", "settings": settings, **_conventions()},
    )
    survey = _survey("MOCK", z_range, comp_z, comp_m, mass_error)
    truth = MockTruth(kind="sequence", true_z=z, true_log_mass=m, true_log_sfr=s, n_drawn=n_drawn,
                      mean_log_sfr=mu, scatter=scatter, settings=settings,
                      conventions=_conventions())
    return cat, survey, truth


def realistic_sfr_error(log_ssfr: np.ndarray) -> np.ndarray:
    """SFR error [dex]: 0.25 for log sSFR >= -10, rising linearly to 0.6 at log sSFR <= -11.5.

    A stand-in for Prospector SFR posteriors, which are tight on the sequence and broad for
    quiescent galaxies (whose SFRs are bounded mostly by the SFH prior).
    """
    frac = np.clip((-10.0 - np.asarray(log_ssfr, float)) / 1.5, 0.0, 1.0)
    return 0.25 + 0.35 * frac


class _ConditionalSampler:
    """Inverse-CDF sampler of p(log SFR | log M, z) tabulated on a (z, log M) grid.

    Quantile functions at the four surrounding nodes are interpolated bilinearly (a
    displacement interpolation, which keeps the shape of the distribution between nodes). The
    quantiles are tabulated at levels Phi(t) for normal scores t evenly spaced in [-5, 5] and
    drawn as t ~ N(0, 1) (clipped at +-5), so that the tails are resolved.
    """

    def __init__(self, log_density: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray],
                 z_nodes: np.ndarray, m_nodes: np.ndarray, sfr_grid: np.ndarray, n_levels: int = 2001) -> None:
        self.z_nodes, self.m_nodes = z_nodes, m_nodes
        zz, mm = np.meshgrid(z_nodes, m_nodes, indexing="ij")
        lp = log_density(mm.ravel(), zz.ravel(), sfr_grid)  # (nz*nm, g)
        p = np.exp(lp - lp.max(axis=1, keepdims=True))
        cdf = np.concatenate([np.zeros((p.shape[0], 1)), np.cumsum(0.5 * (p[:, 1:] + p[:, :-1]), 1)], 1)
        cdf /= cdf[:, -1:]
        from scipy.special import ndtr

        self.scores = np.linspace(-5.0, 5.0, n_levels)
        levels = ndtr(self.scores)
        q = np.array([np.interp(levels, row, sfr_grid) for row in cdf])
        self.quantiles = q.reshape(z_nodes.size, m_nodes.size, n_levels)

    def sample(self, rng: np.random.Generator, z: np.ndarray, log_mass: np.ndarray) -> np.ndarray:
        t = np.clip(rng.standard_normal(z.size), -5.0, 5.0)
        fz = np.interp(z, self.z_nodes, np.arange(self.z_nodes.size))
        fm = np.interp(log_mass, self.m_nodes, np.arange(self.m_nodes.size))
        iz = np.clip(np.floor(fz).astype(int), 0, self.z_nodes.size - 2)
        im = np.clip(np.floor(fm).astype(int), 0, self.m_nodes.size - 2)
        tz, tm = np.clip(fz - iz, 0, 1), np.clip(fm - im, 0, 1)
        n_lev = self.scores.size
        fl = (t - self.scores[0]) / (self.scores[1] - self.scores[0])
        il = np.clip(np.floor(fl).astype(int), 0, n_lev - 2)
        tl = fl - il
        out = np.zeros(z.size)
        for dz, wz in ((0, 1 - tz), (1, tz)):
            for dm, wm in ((0, 1 - tm), (1, tm)):
                qrow = self.quantiles[iz + dz, im + dm]
                q = qrow[np.arange(z.size), il] * (1 - tl) + qrow[np.arange(z.size), il + 1] * tl
                out += wz * wm * q
        return out


def leja2022_flow_mock(
    flow: Leja2022Flow,
    *,
    area_arcmin2: float = 900.0,
    z_range: tuple[float, float] = (0.3, 2.7),
    n_samples: int = 32,
    mass_error: float = 0.1,
    sfr_error: Callable[[np.ndarray], np.ndarray] = realistic_sfr_error,
    seed: int = 0,
    completeness: dict | None = None,
    cosmology: apc.Cosmology | None = None,
    z_step: float = 0.05,
    m_step: float = 0.05,
    n_dummy: int = 9,
    max_galaxies: int | None = None,
) -> tuple[PosteriorCatalog, Survey, MockTruth]:
    """A realistic mock: Leja+20 mass function x volume, SFRs from the Leja+22 flow.

    Args:
        flow: The released flow (:meth:`Leja2022Flow.load`).
        area_arcmin2: Survey area [arcmin^2] (900: 3D-HST).
        z_range: Redshift range.
        n_samples: Posterior samples per galaxy.
        mass_error: Gaussian mass error [dex] (also the selection's error model).
        sfr_error: SFR error [dex] as a function of the true log sSFR.
        seed: Seed.
        completeness: ``{"z": ..., "log_mass": ...}`` limit on the observed mass; default the
            3D-HST Prospector limits of Leja et al. 2022.
        cosmology: For dV/dz (and the returned survey's and catalogue's cosmology); default
            :data:`popmodel.cosmology.DEFAULT_COSMOLOGY` (WMAP9).
        z_step, m_step: Node spacing of the tabulated SFR conditional.
        n_dummy: Quadrature nodes of the flow's dummy coordinate (on [-4, 4]).
        max_galaxies: Keep at most this many selected galaxies (a random subset), e.g. to
            match the size of a real sample.

    Returns:
        ``(catalog, survey, truth)``.
    """
    rng = np.random.default_rng(seed)
    cosmo = DEFAULT_COSMOLOGY if cosmology is None else cosmology
    comp = completeness or LEJA2022_COMPLETENESS_3DHST
    comp_z, comp_m = np.asarray(comp["z"], float), np.asarray(comp["log_mass"], float)
    area_sr = (area_arcmin2 * u.arcmin**2).to_value(u.sr)
    zg = np.linspace(z_range[0], z_range[1], 401)
    mg = np.linspace(8.0, 12.3, 861)
    dvdz = cosmo.differential_comoving_volume(zg).to_value(u.Mpc**3 / u.sr) * area_sr
    m_lo = np.interp(zg, comp_z, comp_m) - 5.0 * mass_error
    log_phi = leja2020_log_phi(mg[None, :], zg[:, None])
    dens = 10.0**log_phi * dvdz[:, None] * (mg[None, :] > m_lo[:, None])  # per dex per unit z
    dn_dz = np.trapezoid(dens, mg, axis=1)
    n_exp = float(np.trapezoid(dn_dz, zg))
    n_draw = rng.poisson(n_exp)
    z = _draw_from_grid(rng, zg, np.log(np.maximum(dn_dz, 1e-300)), n_draw)
    # mass given z: inverse CDF on the row of the nearest z node (dz = 0.0055)
    iz = np.clip(np.rint((z - zg[0]) / (zg[1] - zg[0])).astype(int), 0, zg.size - 1)
    m = np.empty(n_draw)
    for k in np.unique(iz):
        rows = np.flatnonzero(iz == k)
        m[rows] = _draw_from_grid(rng, mg, np.log(np.maximum(dens[k], 1e-300)), rows.size)
    m_obs = m + mass_error * rng.standard_normal(n_draw)
    keep = m_obs > np.interp(z, comp_z, comp_m)
    if max_galaxies is not None and keep.sum() > max_galaxies:
        idx = rng.choice(np.flatnonzero(keep), max_galaxies, replace=False)
        keep = np.zeros(n_draw, bool)
        keep[idx] = True
    z, m, m_obs = z[keep], m[keep], m_obs[keep]
    z_nodes = np.arange(z_range[0], z_range[1] + z_step / 2, z_step)
    m_nodes = np.arange(np.floor(m.min() / m_step) * m_step, m.max() + m_step, m_step)
    sfr_grid = np.linspace(-4.0, 3.5, 376)
    sampler = _ConditionalSampler(
        lambda mm, zz, g: flow.conditional_log_density(mm, zz, g, n_dummy=n_dummy, dummy_max=4.0),
        z_nodes, m_nodes, sfr_grid,
    )
    s = sampler.sample(rng, z, m)
    n = z.size
    sig_s = np.asarray(sfr_error(s - m), float)
    s_obs = s + sig_s * rng.standard_normal(n)
    ids = np.array([f"lejamock{i:06d}" for i in range(n)])
    settings = {
        "area_arcmin2": area_arcmin2, "z_range": list(z_range), "n_samples": n_samples,
        "mass_error": mass_error, "seed": seed, "completeness": {"z": comp_z.tolist(), "log_mass": comp_m.tolist()},
        "cosmology": cosmo.name, "n_expected_above_limit_minus_5sigma": n_exp, "n_dummy": n_dummy,
        "z_step": z_step, "m_step": m_step, "sfr_error": getattr(sfr_error, "__name__", str(sfr_error)),
        "max_galaxies": max_galaxies,
    }
    cat = _posterior_catalog(rng, ids, "LEJAMOCK", z, m_obs, s_obs, np.full(n, mass_error), sig_s,
                             n_samples, {"mock": "leja2022_flow", "settings": settings,
                                         **_conventions(cosmo)})
    survey = _survey("LEJAMOCK", z_range, comp_z, comp_m, mass_error, area_arcmin2, cosmo)
    truth = MockTruth(kind="leja2022_flow", true_z=z, true_log_mass=m, true_log_sfr=s,
                      n_drawn=int(n_draw), settings=settings, conventions=_conventions(cosmo))
    return cat, survey, truth
