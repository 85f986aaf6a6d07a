r"""Model checking for the mass function: posterior predictive counts and the 1/Vmax SMF.

Posterior predictive counts
---------------------------
The catalogue cut and any binning act on the *observed* point estimates (log M_obs, z_obs), so
the expected number of catalogue galaxies of field f in the bin B_i x C_j (log M_obs in B_i,
z_obs in C_j) is

.. math::
    \mu_{fij}(\theta) = \Omega_f\!\int\!dz\,\frac{dV_c}{dz\,d\Omega}\!\int\!d\log M\;
    \Phi(\log M, z\,|\,\theta)\,K_{fij}(\log M, z),

.. math::
    K_{fij}(\log M, z) = \int_{C_j\cap[z_{\min}, z_{\max}]}\!dz_{\rm obs}\;p(z_{\rm obs}|z)\,
    \frac1K\sum_k\Big[\Phi_{\mathcal N}\!\Big(\frac{b_i-\log M}{\sigma_k}\Big)
    -\Phi_{\mathcal N}\!\Big(\frac{\max(a_i, \log M_c(z_{\rm obs}))-\log M}{\sigma_k}\Big)\Big]_+ ,

with B_i = [a_i, b_i), the field's equal-weight mixture of Gaussian mass errors sigma_k
(``Field.mass_error_dex``) and of redshift errors p(z_obs|z) = N(z, [s_l (1+z)]^2)
(``Field.z_error``), exactly the error model of :func:`popmodel.mock.draw_mock` and of the
likelihood's selection function (:mod:`popmodel.smf.likelihood`), except that here the limit
is evaluated at the *observed* redshift. Summed over all bins, mu is the likelihood's expected
number N_exp to second order in sigma_z.

Quadrature (numpy): Gauss-Legendre in true z and in true log M on segments broken at the bin
edges and the completeness nodes (6 nodes per segment, segments at most 0.05 in z and 0.1 dex
in mass), over the bins' range padded by 6 sigma; the z_obs integral is a sum over cells of
0.005 in z_obs (exact Gaussian cell probabilities, the limit at the cell's centre: < 0.003 dex
error). The kernel K does not depend on theta, so all draws share it and mu is one matrix
product per draw. A zero width (``mass_error_dex = 0`` or ``z_error = 0``) is a hard cut;
hard mass cuts on a moving limit are resolved to the node spacing (~0.02 dex).

Cosmic variance: when the fit has density terms (:mod:`popmodel.smf.density`) the predictive
uses each draw's own contrasts delta_fk, multiplying Phi by exp(b delta - b^2 sigma_DM^2 / 2)
at every node, as the likelihood does; without them (``deltas=None``) it is the cosmic mean.

Posterior predictive: for draw d the counts are N_fij ~ Poisson(mu_fij(theta_d)); a bin is
*covered* at level L when the observed count lies inside the central L interval of those
counts (Gelman, Meng & Stern 1996; Gelman et al., *Bayesian Data Analysis*, ch. 6).

The 1/Vmax mass function
------------------------
Schmidt (1968, ApJ 151, 393) and, for several fields, the coherent sum of Avni & Bahcall
(1980, ApJ 235, 694): for a mass-complete sample above log M_c(z), galaxy g with observed mass
M_g in the redshift bin [z_lo, z_hi] could have been seen in the volume

.. math::
    V_{\max,g} = \sum_f \Omega_f \int_{[z_{lo}, z_{hi}]\cap[z_{\min,f}, z_{\max,f}]}
    \frac{dV_c}{dz\,d\Omega}\,\mathbb 1[\log M_{c,f}(z)\le\log M_g]\,dz,

which for a limit rising with z is the volume of each field between z_lo and min(z_hi, the
largest z at which the galaxy stays above the limit). Then
Phi_i = sum_g 1/V_max,g / Delta log M with the Poisson error sqrt(sum_g 1/V_max,g^2) /
Delta log M. The estimator uses the point estimates, so it carries the Eddington bias of the
mass errors (a forward model does not); it is exact in expectation only for error-free data,
and in bins whose lower mass edge lies above the limit everywhere in the z bin (``complete``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from astropy.table import Table
from scipy.special import ndtr
from threadpoolctl import threadpool_limits

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.smf.data import SMFData, point_estimates
from popmodel.smf.derived import draw_arrays, ln_phi_draws, log10_phi_grid, percentile_bands
from popmodel.smf.evolution import ContinuityParams
from popmodel.survey import Field, Survey

__all__ = [
    "ModelCheckFigures",
    "VmaxSMF",
    "central_interval",
    "check_edges",
    "density_draws",
    "observed_counts",
    "posterior_predictive_counts",
    "ppc_coverage",
    "predicted_counts",
    "vmax_smf",
    "write_model_checks",
]

LOG_MASS_MAX = 14.0
Z_OBS_CELL = 0.005  # z_obs cell width of the redshift-error integral
N_GL = 6  # Gauss-Legendre nodes per segment
MAX_DZ_SEG = 0.05
MAX_DM_SEG = 0.1
N_SIGMA = 6.0


def check_edges(edges: Sequence[float], name: str) -> np.ndarray:
    """Validate bin edges: 1-D, at least two, finite, strictly increasing."""
    e = np.asarray(edges, dtype=float)
    if e.ndim != 1 or e.size < 2:
        raise ValueError(f"{name} must be a 1-D array of at least two edges, got shape {e.shape}")
    if not np.all(np.isfinite(e)):
        raise ValueError(f"{name} must be finite, got {e.tolist()}")
    if np.any(np.diff(e) <= 0):
        k = int(np.flatnonzero(np.diff(e) <= 0)[0])
        raise ValueError(f"{name} must be strictly increasing; edge {k + 1} ({e[k + 1]}) <= edge {k} ({e[k]})")
    return e


def _segments(breaks: np.ndarray, max_width: float, n: int = N_GL) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on the pieces between sorted break points."""
    x, w = np.polynomial.legendre.leggauss(n)
    nodes, weights = [], []
    for a, b in itertools.pairwise(np.unique(breaks)):
        k = max(1, int(np.ceil((b - a) / max_width - 1e-9)))
        e = np.linspace(a, b, k + 1)
        for lo, hi in itertools.pairwise(e):
            nodes.append(0.5 * (hi + lo) + 0.5 * (hi - lo) * x)
            weights.append(0.5 * (hi - lo) * w)
    return np.concatenate(nodes), np.concatenate(weights)


def _mass_prob(lm: np.ndarray, mc: np.ndarray, m_edges: np.ndarray, sig: np.ndarray) -> np.ndarray:
    """P(log M_obs in bin i and >= limit | log M), averaged over widths: (len(mc), M, nM)."""
    lo = np.maximum(m_edges[:-1][None, :], mc[:, None])  # (C, nM)
    hi = np.broadcast_to(m_edges[1:][None, :], lo.shape)
    out = np.zeros((mc.size, lm.size, m_edges.size - 1))
    for s in sig:
        if s > 0:
            p_lo = ndtr((lm[None, :, None] - lo[:, None, :]) / s)  # P(M_obs >= lo)
            p_hi = ndtr((lm[None, :, None] - hi[:, None, :]) / s)  # P(M_obs >= hi)
        else:
            p_lo = (lm[None, :, None] >= lo[:, None, :]).astype(float)
            p_hi = (lm[None, :, None] >= hi[:, None, :]).astype(float)
        out += np.maximum(p_lo - p_hi, 0.0)
    return out / sig.size


def _field_kernel(f: Field, m_edges: np.ndarray, z_edges: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Nodes and the theta-independent kernel of one field.

    Returns:
        (z nodes (Z,), z weights (Z,), mass nodes (M,), mass weights (M,), kernel (Z, M, nM, nZ))
        or None when the field's redshift range misses every bin.
    """
    sig = np.atleast_1d(np.asarray(f.mass_error_dex, dtype=float))
    szs = np.atleast_1d(np.asarray(f.z_error, dtype=float))
    z_a, z_b = max(z_edges[0], f.z_min), min(z_edges[-1], f.z_max)
    if z_b <= z_a:
        return None
    # the likelihood's expected-number grid uses the same 5 sigma (1 + z) reach: a wider pad
    # (a 0.1 outlier component) would stretch the grid to z ~ 9, far past the model's anchors
    pad = 5.0 * float(szs.max()) * (1.0 + z_b)
    zt_lo, zt_hi = max(z_a - pad, 1e-3), z_b + pad
    cz = np.asarray(f.completeness_z, float)
    zbreaks = np.concatenate([[zt_lo, zt_hi], z_edges, [f.z_min, f.z_max], cz])
    zbreaks = zbreaks[(zbreaks >= zt_lo) & (zbreaks <= zt_hi)]
    zn, wz = _segments(zbreaks, MAX_DZ_SEG)
    # z_obs cells inside the bins and the field's range, aligned with every edge
    cells_lo, cells_hi, cells_bin = [], [], []
    for j, (a, b) in enumerate(itertools.pairwise(z_edges)):
        a, b = max(a, f.z_min), min(b, f.z_max)
        if b <= a:
            continue
        e = np.linspace(a, b, max(1, int(np.ceil((b - a) / Z_OBS_CELL))) + 1)
        cells_lo.append(e[:-1])
        cells_hi.append(e[1:])
        cells_bin.append(np.full(e.size - 1, j))
    c_lo, c_hi, c_bin = map(np.concatenate, (cells_lo, cells_hi, cells_bin))
    mc_cells = f.log_mass_limit(0.5 * (c_lo + c_hi))
    smax = float(sig.max())
    m_lo = max(m_edges[0], float(mc_cells.min())) - N_SIGMA * smax
    m_hi = min(m_edges[-1] + N_SIGMA * smax, LOG_MASS_MAX)
    if m_hi <= m_lo:
        return None
    mbreaks = np.concatenate([[m_lo, m_hi], m_edges])
    mn, wm = _segments(mbreaks[(mbreaks >= m_lo) & (mbreaks <= m_hi)], MAX_DM_SEG)
    n_m, n_z = m_edges.size - 1, z_edges.size - 1
    kern = np.zeros((zn.size, mn.size, n_m, n_z))
    if np.any(szs > 0):
        pm_cells = _mass_prob(mn, mc_cells, m_edges, sig).reshape(c_lo.size, -1)  # (C, M*nM)
    for s in szs:
        if s > 0:
            sd = s * (1.0 + zn)[:, None]
            pz = ndtr((c_hi[None, :] - zn[:, None]) / sd) - ndtr((c_lo[None, :] - zn[:, None]) / sd)
            for j in np.unique(c_bin):
                sel = c_bin == j
                kern[..., j] += (pz[:, sel] @ pm_cells[sel]).reshape(zn.size, mn.size, n_m)
        else:  # exact redshifts: z_obs = z
            pm = _mass_prob(mn, f.log_mass_limit(zn), m_edges, sig)
            jb = np.searchsorted(z_edges, zn, side="right") - 1
            ok = (jb >= 0) & (jb < n_z) & (zn >= f.z_min) & (zn <= f.z_max)
            kern[np.flatnonzero(ok), :, :, jb[ok]] += pm[ok]
    kern /= szs.size
    return zn, wz, mn, wm, kern


def central_interval(pred: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray]:
    """Central interval of draws along axis 0: the smallest values whose empirical CDF reaches
    (1 - level)/2 and (1 + level)/2 (inverse-CDF quantiles, robust to rounding of n q)."""
    srt = np.sort(pred, axis=0)
    n = srt.shape[0]
    q = 0.5 * (1.0 - level)
    i_lo = min(max(int(np.ceil(n * q * (1 - 1e-12))) - 1, 0), n - 1)
    i_hi = min(max(int(np.ceil(n * (1 - q) * (1 - 1e-12))) - 1, 0), n - 1)
    return srt[i_lo], srt[i_hi]


def density_draws(fit: object) -> np.ndarray | None:
    """(D, G) density contrasts of a fit's draws (chains concatenated), or None without terms."""
    dens = fit.data.density
    if dens is None:
        return None
    return np.stack([np.asarray(fit.samples[lab]).reshape(-1) for lab in dens.labels], axis=-1)


def predicted_counts(
    data: SMFData | Survey,
    draws: ContinuityParams,
    log_mass_edges: Sequence[float],
    z_edges: Sequence[float],
    *,
    deltas: np.ndarray | None = None,
    chunk: int = 32,
) -> np.ndarray:
    """Posterior predictive expected counts per (draw, field, log M_obs bin, z_obs bin).

    Args:
        data: the fit's data (its survey, volume table and density terms are used), or a
            bare :class:`~popmodel.survey.Survey` (no density terms).
        draws: a ContinuityParams with batch axes (flattened into D draws) or none (one draw).
        log_mass_edges: (nM+1,) observed-mass bin edges [log10 Msun], strictly increasing.
        z_edges: (nZ+1,) observed-redshift bin edges, strictly increasing.
        deltas: (D, G) density contrasts of ``data.density``'s terms per draw (see
            :func:`density_draws`); None uses the cosmic mean (no density factor).
        chunk: draws per matrix product (memory).

    Returns:
        (D, F, nM, nZ) expected counts mu (F = the survey's fields, in survey order).
    """
    m_edges = check_edges(log_mass_edges, "log_mass_edges")
    z_e = check_edges(z_edges, "z_edges")
    pars = draw_arrays(draws)
    n_d = pars[0].shape[0]
    if isinstance(data, Survey):
        from popmodel.cosmology import VolumeTable

        survey, volume, dens = data, VolumeTable.build(data.cosmology), None
    else:
        survey, volume, dens = data.survey, data.volume, data.density
    if deltas is not None:
        if dens is None:
            raise ValueError("deltas given, but the data have no density terms")
        deltas = np.asarray(deltas, dtype=float).reshape(n_d, -1)
        if deltas.shape[1] != dens.n_terms:
            raise ValueError(f"deltas must be (D, {dens.n_terms}) (one per density term), "
                             f"got {deltas.shape}")
    fields = list(survey.fields)
    out = np.zeros((n_d, len(fields), m_edges.size - 1, z_e.size - 1))
    # one BLAS thread: OpenBLAS's spinning threads made the 400-draw products of 3D-HST 4x
    # slower (31 s against 128 s) with one other busy process on 2 cores
    with threadpool_limits(limits=1, user_api="blas"):
        for g, f in enumerate(fields):
            res = _field_kernel(f, m_edges, z_e)
            if res is None:
                continue
            zn, wz, mn, wm, kern = res
            lw = (np.log(wz) + volume.log_dvdz_at(zn) + np.log(f.area_sr))[:, None] + np.log(wm)[None, :]
            kmat = kern.reshape(zn.size * mn.size, -1)
            cv = None
            if deltas is not None:
                gz, gm = np.meshgrid(zn, mn, indexing="ij")
                idx, b = dens.assign(np.full(gz.shape, g), gm, gz)
                cv = (idx, b)
            for s in range(0, n_d, chunk):
                sl = slice(s, min(s + chunk, n_d))
                chunk_draws = ContinuityParams(*(p[sl] for p in pars), draws.anchor_z)
                lphi = ln_phi_draws(chunk_draws, mn[None, :], zn[:, None]) + lw
                if cv is not None:
                    idx, b = cv
                    lphi = lphi + b * deltas[sl][:, idx] - 0.5 * (b * dens.sigma_dm[idx]) ** 2
                out[sl, g] = (np.exp(lphi).reshape(lphi.shape[0], -1) @ kmat).reshape(-1, *out.shape[2:])
    return out


def posterior_predictive_counts(expected: np.ndarray, rng: np.random.Generator | int = 0
                                ) -> np.ndarray:
    """Poisson draws N ~ Poisson(mu), one per expected-count array (same shape)."""
    rng = np.random.default_rng(rng)
    return rng.poisson(np.asarray(expected, dtype=float))


def _selected(catalog: PosteriorCatalog, survey: Survey
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(keep, field index, log M_obs, z_obs)``: the survey's cut on the point estimates
    (:meth:`popmodel.survey.Survey.selects`, overlap ownership included), as the fit makes it."""
    labels = survey.region_labels()
    fields = np.asarray(catalog.fields).astype(str)
    known = np.isin(fields, list(labels))
    if not np.all(known):
        k = int(np.flatnonzero(~known)[0])
        raise CatalogError(
            f"galaxy {str(catalog.ids[k])!r}: unknown field {str(fields[k])!r}; the survey has "
            f"{survey.field_names} ({int((~known).sum())} galaxies in unknown fields)")
    m_obs, z_obs, _ = point_estimates(catalog)
    keep, group = survey.selects(fields, m_obs, z_obs)
    return keep, group, m_obs, z_obs


def observed_counts(catalog: PosteriorCatalog, survey: Survey, log_mass_edges: Sequence[float],
                    z_edges: Sequence[float]) -> np.ndarray:
    """Catalogue counts per (field, log M_obs bin, z_obs bin) after the survey's cut.

    Uses :func:`popmodel.smf.data.point_estimates`, the values the fit's cut acts on; bins are
    half-open [lo, hi) except that the last one includes its upper edge.

    Returns:
        (F, nM, nZ) integer counts.
    """
    m_edges = check_edges(log_mass_edges, "log_mass_edges")
    z_e = check_edges(z_edges, "z_edges")
    keep, group, m_obs, z_obs = _selected(catalog, survey)
    out = np.zeros((len(survey.fields), m_edges.size - 1, z_e.size - 1), dtype=np.int64)
    for g in range(len(survey.fields)):
        sel = keep & (group == g)
        h, _, _ = np.histogram2d(m_obs[sel], z_obs[sel], bins=[m_edges, z_e])
        out[g] = h.astype(np.int64)
    return out


def ppc_coverage(
    observed: np.ndarray,
    predicted_draws: np.ndarray,
    level: float = 0.95,
    *,
    only_populated: bool = True,
    survey: Survey | None = None,
    log_mass_edges: Sequence[float] | None = None,
    z_edges: Sequence[float] | None = None,
) -> tuple[float, Table]:
    """Fraction of bins whose observed count lies in the central ``level`` predictive interval.

    Args:
        observed: (...) observed counts, e.g. (F, nM, nZ).
        predicted_draws: (D, ...) posterior predictive counts (one Poisson draw per posterior
            draw, :func:`posterior_predictive_counts`).
        level: central probability of the interval, in (0, 1).
        only_populated: score only the bins where the observed count or the interval's upper
            end is positive (empty bins that the model also leaves empty say nothing).
        survey, log_mass_edges, z_edges: optional, to label a (F, nM, nZ) table's rows.

    Returns:
        (fraction covered among the scored bins, per-bin table with ``observed``,
        ``predicted_mean``, ``lo``, ``hi``, ``covered``, ``scored`` and, when given, the field
        and bin edges).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    obs = np.asarray(observed)
    pred = np.asarray(predicted_draws)
    if pred.shape[1:] != obs.shape:
        raise ValueError(f"predicted_draws must be (D, *{obs.shape}), got {pred.shape}")
    if pred.shape[0] < 2:
        raise ValueError("predicted_draws needs at least two draws")
    lo, hi = central_interval(pred, level)
    covered = (obs >= lo) & (obs <= hi)
    scored = (obs > 0) | (hi > 0) if only_populated else np.ones(obs.shape, bool)
    n = int(scored.sum())
    frac = float(covered[scored].mean()) if n else float("nan")
    t = Table()
    if survey is not None and obs.ndim == 3:
        m_e = check_edges(log_mass_edges, "log_mass_edges")
        z_e = check_edges(z_edges, "z_edges")
        fi, mi, zi = np.indices(obs.shape)
        t["field"] = np.asarray(survey.field_names)[fi.ravel()]
        t["log_mass_lo"], t["log_mass_hi"] = m_e[mi.ravel()], m_e[mi.ravel() + 1]
        t["z_lo"], t["z_hi"] = z_e[zi.ravel()], z_e[zi.ravel() + 1]
    t["observed"] = obs.ravel()
    t["predicted_mean"] = pred.mean(axis=0).ravel()
    t["lo"], t["hi"] = lo.ravel(), hi.ravel()
    t["covered"] = covered.ravel()
    t["scored"] = scored.ravel()
    t.meta.update(level=level, coverage=frac, n_scored=n,
                  description=f"posterior predictive counts: central {level:g} interval [lo, hi]")
    return frac, t


@dataclass(frozen=True)
class VmaxSMF:
    """A binned 1/Vmax mass function (arrays (nM, nZ) unless stated).

    Attributes:
        log_mass_edges, z_edges: the bins.
        phi: sum 1/Vmax / Delta log M [Mpc^-3 dex^-1] (0 where empty).
        phi_err: Poisson error sqrt(sum 1/Vmax^2) / Delta log M.
        n_galaxies: galaxies per bin.
        complete: the bin's lower mass edge lies above every field's limit over the z bin.
    """

    log_mass_edges: np.ndarray
    z_edges: np.ndarray
    phi: np.ndarray
    phi_err: np.ndarray
    n_galaxies: np.ndarray
    complete: np.ndarray

    def to_table(self) -> Table:
        mi, zi = np.indices(self.phi.shape)
        t = Table()
        t["log_mass_lo"] = self.log_mass_edges[mi.ravel()]
        t["log_mass_hi"] = self.log_mass_edges[mi.ravel() + 1]
        t["z_lo"], t["z_hi"] = self.z_edges[zi.ravel()], self.z_edges[zi.ravel() + 1]
        t["phi"], t["phi_err"] = self.phi.ravel(), self.phi_err.ravel()
        with np.errstate(divide="ignore"):
            t["log_phi"] = np.where(self.phi.ravel() > 0, np.log10(self.phi.ravel()), np.nan)
        t["n_galaxies"], t["complete"] = self.n_galaxies.ravel(), self.complete.ravel()
        t.meta["description"] = "binned 1/Vmax SMF (Schmidt 1968; Avni & Bahcall 1980) [Mpc^-3 dex^-1]"
        return t


def vmax_smf(catalog: PosteriorCatalog, survey: Survey, log_mass_edges: Sequence[float],
             z_edges: Sequence[float], *, volume: object | None = None,
             n_cells: int = 2000) -> VmaxSMF:
    """The binned 1/Vmax SMF of the catalogue's point estimates (module docstring).

    Args:
        catalog: the catalogue (the survey's cut is applied to its point estimates).
        survey: fields, areas, limits and cosmology.
        log_mass_edges, z_edges: bins of observed mass and redshift.
        volume: a :class:`popmodel.cosmology.VolumeTable` (built from the survey if None).
        n_cells: z cells per bin for the volume integral (exact cell volumes; the limit at the
            cell's centre).
    """
    from popmodel.cosmology import VolumeTable

    m_edges = check_edges(log_mass_edges, "log_mass_edges")
    z_e = check_edges(z_edges, "z_edges")
    vt = volume or VolumeTable.build(survey.cosmology)
    keep, _, m_obs, z_obs = _selected(catalog, survey)
    n_m, n_z = m_edges.size - 1, z_e.size - 1
    phi, var = np.zeros((n_m, n_z)), np.zeros((n_m, n_z))
    ngal = np.zeros((n_m, n_z), dtype=np.int64)
    complete = np.ones((n_m, n_z), bool)
    dlm = np.diff(m_edges)
    for j in range(n_z):
        insel = keep & (z_obs >= z_e[j]) & ((z_obs < z_e[j + 1]) if j < n_z - 1 else (z_obs <= z_e[j + 1]))
        mg = m_obs[insel]
        vmax = np.zeros(mg.size)
        for f in survey.fields:
            a, b = max(z_e[j], f.z_min), min(z_e[j + 1], f.z_max)
            if b <= a:
                continue
            e = np.linspace(a, b, n_cells + 1)
            zz = np.linspace(a, b, 8 * n_cells + 1)  # Simpson per cell
            dv = np.exp(vt.log_dvdz_at(zz)) * f.area_sr
            h = (zz[1] - zz[0])
            cell_v = (h / 3.0) * (dv[0:-1:8] + 4 * dv[1::8] + 2 * dv[2::8] + 4 * dv[3::8]
                                  + 2 * dv[4::8] + 4 * dv[5::8] + 2 * dv[6::8] + 4 * dv[7::8]
                                  + dv[8::8])
            mc = f.log_mass_limit(0.5 * (e[1:] + e[:-1]))
            order = np.argsort(mc)
            cum = np.concatenate([[0.0], np.cumsum(cell_v[order])])
            vmax += cum[np.searchsorted(mc[order], mg, side="right")]
            worst = max(float(mc.max()), float(np.max(f.log_mass_limit(np.array([a, b])))))
            complete[:, j] &= m_edges[:-1] >= worst
        if np.any(vmax <= 0):
            raise RuntimeError("a selected galaxy has zero Vmax; check the survey's limits")
        i = np.searchsorted(m_edges, mg, side="right") - 1
        i = np.where(mg == m_edges[-1], n_m - 1, i)
        ok = (i >= 0) & (i < n_m)
        phi[:, j] = np.bincount(i[ok], weights=1.0 / vmax[ok], minlength=n_m)
        var[:, j] = np.bincount(i[ok], weights=1.0 / vmax[ok] ** 2, minlength=n_m)
        ngal[:, j] = np.bincount(i[ok], minlength=n_m)
    return VmaxSMF(m_edges, z_e, phi / dlm[:, None], np.sqrt(var) / dlm[:, None], ngal, complete)


def _default_edges(data: SMFData) -> tuple[np.ndarray, np.ndarray]:
    za, zb = data.z_data_range
    n = max(1, round((zb - za) / 0.5))
    z_e = np.linspace(za, zb, n + 1)
    m_lo = np.floor(min(float(np.min(f.completeness_log_mass)) for f in data.survey.fields) * 4) / 4
    return np.arange(m_lo, 12.0 + 1e-9, 0.25), z_e


#: ``figures(observed, predicted_draws, survey, vm, log_m, bands, out_dir) -> written paths``:
#: draws the model-check figures from what :func:`write_model_checks` computed (observed (F, nM,
#: nZ) counts with their edges in ``vm``, (D, F, nM, nZ) predictive counts, the survey, the
#: :class:`VmaxSMF`, the (M,) masses and (3, nZ, M) log10 Phi bands of the model at the z bins'
#: centres) into ``out_dir``; :func:`popmodel.plots.checks.model_check_figures` is the one the
#: package provides.
ModelCheckFigures = Callable[
    [np.ndarray, np.ndarray, Survey, "VmaxSMF", np.ndarray, np.ndarray, str], list[str]
]


def write_model_checks(fit: object, out_dir: str, *, log_mass_edges: Sequence[float] | None = None,
                       z_edges: Sequence[float] | None = None, level: float = 0.95,
                       seed: int = 0, max_draws: int = 400,
                       figures: ModelCheckFigures | None = None,
                       meta: dict | None = None) -> dict:
    """Write ``ppc_counts.ecsv`` and ``vmax_smf.ecsv`` for an :class:`popmodel.smf.fit.SMFFit`,
    and the figures through the ``figures`` callback if one is given.

    Default bins: 0.25 dex from the lowest completeness limit (rounded down) to 10^12, and
    redshift bins about 0.5 wide over the data's range. At most ``max_draws`` posterior draws
    (a random subset, ``seed``) are used, each with one Poisson draw of the counts; the density
    contrasts of the fit (if any) enter through :func:`density_draws`. ``meta`` (provenance,
    e.g. :func:`popmodel.io.smf.provenance`) is written into both tables' metadata.

    Args:
        figures: a :data:`ModelCheckFigures` callable, e.g.
            :func:`popmodel.plots.checks.model_check_figures` (``ppc_counts`` and ``vmax_smf``
            as PNG and PDF); None (or False) writes the tables only. This module draws
            nothing itself.

    Returns:
        ``{"coverage", "level", "n_scored", "files"}``; ``files`` are the written paths (the
        figures' included).
    """
    from pathlib import Path

    if figures is False:  # "no figures", as write_smf_results(figures=False) says it
        figures = None
    if figures is not None and not callable(figures):
        raise TypeError("figures must be None or a callable such as "
                        f"popmodel.plots.checks.model_check_figures (this module draws "
                        f"nothing itself), got {figures!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m_d, z_d = _default_edges(fit.data)
    m_e = check_edges(m_d if log_mass_edges is None else log_mass_edges, "log_mass_edges")
    z_e = check_edges(z_d if z_edges is None else z_edges, "z_edges")
    draws = fit.draws()
    pars = draw_arrays(draws)
    n = pars[0].shape[0]
    rng = np.random.default_rng(seed)
    take = np.sort(rng.choice(n, size=min(n, max_draws), replace=False))
    sub = ContinuityParams(*(p[take] for p in pars), draws.anchor_z)
    dl = density_draws(fit)
    mu = predicted_counts(fit.data, sub, m_e, z_e, deltas=None if dl is None else dl[take])
    pred = posterior_predictive_counts(mu, rng)
    obs = observed_counts(fit.data.catalog, fit.data.survey, m_e, z_e)
    frac, table = ppc_coverage(obs, pred, level, survey=fit.data.survey, log_mass_edges=m_e, z_edges=z_e)
    table["expected_mean"] = mu.mean(axis=0).ravel()
    table.meta.update(n_draws=int(take.size), seed=seed, **(meta or {}))
    table.write(out / "ppc_counts.ecsv", overwrite=True)
    vm = vmax_smf(fit.data.catalog, fit.data.survey, m_e, z_e, volume=fit.data.volume)
    vt = vm.to_table()
    vt.meta.update(meta or {})
    vt.write(out / "vmax_smf.ecsv", overwrite=True)
    files = [str(out / "ppc_counts.ecsv"), str(out / "vmax_smf.ecsv")]
    if figures is not None:
        log_m = np.linspace(m_e[0], m_e[-1], 80)
        zc = 0.5 * (z_e[1:] + z_e[:-1])
        bands = percentile_bands(log10_phi_grid(sub, log_m, zc))  # (3, nZ, M)
        files += list(figures(obs, pred, fit.data.survey, vm, log_m, bands, str(out)))
    return {"coverage": frac, "level": level, "n_scored": int(table.meta["n_scored"]),
            "files": files}
