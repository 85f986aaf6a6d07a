r"""The figures of an analysis, drawn from its result folders: ``popmodel figures RESULTS_DIR``.

``RESULTS_DIR`` holds the outputs of the three steps as sub-folders: ``smf`` (``popmodel
fit-smf`` / ``fit-3dhst``), ``sfs`` (``popmodel fit-sfs``) and ``census`` (``popmodel census``).
Any of them may be missing; the figures that need it are then skipped with a logged note.

=============== ====================================================== =====================
figure          shows                                                  needs
=============== ====================================================== =====================
``smf``         (a) the SMF in redshift panels (the Tomczak+14 bins):  ``smf``
                posterior band, Leja+20 median model, Tomczak+14,
                Muzzin+13 and Ilbert+13 points in their own z bins
``rho_star``    (b) rho_*(z) with Madau & Dickinson 2014 (points and   ``census`` (or ``smf``)
                integrated fit), Driver+18, Tomczak+14, Muzzin+13
``sfrd``        (c) the SFRD from both routes (``census.ecsv``) with   ``census``
                MD14 (fit and points), Driver+18, Behroozi+13/19
``sfs``         (d) the star-forming sequence (ridge and log <SFR>)    ``sfs``
                against Leja+22 (Eq. 10 and the released flow curves)
``residuals``   (e) log Phi_fit - log Phi_lit in the same z panels;    ``smf`` and/or ``sfs``
                the sequence minus Leja+22
=============== ====================================================== =====================

Every figure is written as PNG and PDF. All literature is on the Chabrier IMF and moved to the
fit's cosmology by the converters of :mod:`popmodel.literature` (distance and volume ratios
from astropy): the SMF fit's cosmology for (a), (b), (c) and (e), the sequence fit's survey
cosmology for (d) and the sequence residuals (WMAP9 when the folder does not say).

**Model against binned points.** A literature mass function in a redshift bin
:math:`[z_1, z_2]` is compared with the model averaged over the bin's comoving volume,

.. math::
    \bar\Phi(M) = \frac{\int_{z_1}^{z_2}\Phi(M,z)\,\frac{dV}{dz}\,dz}{\int_{z_1}^{z_2}\frac{dV}{dz}\,dz},

(what a 1/Vmax estimate measures for a complete mass), by Gauss-Legendre quadrature, draw by
draw; the residual bands are percentiles of :math:`\log\bar\Phi_{\rm fit} - \log\Phi_{\rm lit}`
over draws (the literature errors are drawn as error bars, not folded in).

``popmodel figures --smoke`` (:func:`popmodel.cli.figures.build_smoke_results`) needs no
inputs: it draws a small mock survey from the Leja+20 model and fits it with the Laplace
approximation, trains a two-member flow for two epochs on a Leja+22-sequence mock, and runs
the census on both: a test of the path, not of the science.

References:
    | Leja et al. (2020), ApJ 893, 111; Leja et al. (2022), ApJ 936, 165.
    | Tomczak et al. (2014), ApJ 783, 85; Muzzin et al. (2013), ApJ 777, 18; Ilbert et al.
      (2013), A&A 556, A55.
    | Madau & Dickinson (2014), ARA&A 52, 415; Driver et al. (2018), MNRAS 475, 2891;
      Behroozi et al. (2013), ApJ 770, 57; Behroozi et al. (2019), MNRAS 488, 3143.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import astropy.cosmology as apc
import numpy as np

from popmodel.io.results import Results, _survey_from, load_results  # noqa: F401 (moved to io)
from popmodel.plots import FIGURES, NEEDS
from popmodel.units import Z_GRID

if TYPE_CHECKING:  # jax is imported only when figures are drawn, not when the CLI is built
    from astropy.table import Table

    from popmodel.literature import SMFPoints
    from popmodel.smf.evolution import ContinuityParams

__all__ = [
    "FIGURES",
    "PANEL_BINS",
    "Results",
    "SMFResidual",
    "bin_log_phi_draws",
    "leja2022_in_cosmology",
    "load_results",
    "make_figures",
    "plot_rho_star",
    "plot_sfrd",
    "plot_sfs",
    "plot_sfs_residuals",
    "plot_smf_panels",
    "plot_smf_residuals",
    "sfs_residuals",
    "smf_literature",
    "smf_residuals",
]

log = logging.getLogger(__name__)

#: Redshift panels of (a) and (e): the Tomczak et al. (2014) bins.
PANEL_BINS = ((0.5, 0.75), (0.75, 1.0), (1.0, 1.25), (1.25, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0))
LOG_M = np.round(np.arange(8.0, 12.01, 0.05), 3)
Z_RHO = Z_GRID  # the one z grid of tabulated outputs (popmodel.units)


# --------------------------------------------------------------------------------------------
# loading


# --------------------------------------------------------------------------------------------
# the model against binned literature points


def bin_log_phi_draws(draws: ContinuityParams, log_m: np.ndarray, z_lo: float, z_hi: float,
                      cosmology: apc.Cosmology, n_nodes: int = 8) -> np.ndarray:
    r"""log10 of the volume-weighted mean :math:`\Phi` over ``[z_lo, z_hi]`` for every draw.

    Gauss-Legendre quadrature with ``n_nodes`` nodes of :math:`\Phi\,dV/dz` (module doc);
    ``z_lo == z_hi`` gives :math:`\Phi` at that redshift.

    Returns:
        (D, M) log10 Phi [Mpc^-3 dex^-1].
    """
    from popmodel.census import log10_phi_grid

    if np.isclose(z_lo, z_hi):
        return log10_phi_grid(draws, log_m, np.array([z_lo]))[:, 0]
    x, w = np.polynomial.legendre.leggauss(n_nodes)
    zn = 0.5 * (z_hi - z_lo) * x + 0.5 * (z_hi + z_lo)
    dv = cosmology.differential_comoving_volume(zn).value
    lw = np.log(w * dv / np.sum(w * dv))
    ln_phi = np.log(10.0) * log10_phi_grid(draws, log_m, zn)  # (D, Z, M)
    from scipy.special import logsumexp

    return logsumexp(ln_phi + lw[None, :, None], axis=1) / np.log(10.0)


def smf_literature(cosmology: apc.Cosmology) -> list[SMFPoints]:
    """Tomczak+14, Muzzin+13 (all galaxies) and Ilbert+13 SMF points, Chabrier, in ``cosmology``."""
    from popmodel import literature as L

    return [*L.tomczak2014_smf(cosmology), *L.muzzin2013_smf("all", cosmology), *L.ilbert2013_smf(cosmology)]


@dataclass(frozen=True)
class SMFResidual:
    """The model against one set of literature points.

    Attributes:
        points: the literature points (Chabrier, the fit's cosmology).
        log_phi_fit: (3, M) p16/p50/p84 of the bin-averaged log10 Phi at the points' masses.
        residual: (3, M) p16/p50/p84 of log10 Phi_fit - log10 Phi_lit [dex].
    """

    points: SMFPoints
    log_phi_fit: np.ndarray
    residual: np.ndarray


def smf_residuals(draws: ContinuityParams, points: Sequence[SMFPoints], cosmology: apc.Cosmology
                  ) -> list[SMFResidual]:
    """log Phi_fit - log Phi_lit for each set, the model averaged over each set's own z bin."""
    from popmodel.census import percentile_bands

    out = []
    for pts in points:
        b = percentile_bands(bin_log_phi_draws(draws, pts.log_mass, pts.z_lo, pts.z_hi, cosmology))
        out.append(SMFResidual(pts, b, b - np.asarray(pts.log_phi)[None, :]))
    return out


def _panel_of(pts: SMFPoints, bins: Sequence[tuple[float, float]]) -> int | None:
    """The first panel whose centre lies in the set's bin (each set drawn once)."""
    for k, (lo, hi) in enumerate(bins):
        if pts.z_lo <= 0.5 * (lo + hi) < pts.z_hi:
            return k
    return None


def _completeness(res: Results, bins: Sequence[tuple[float, float]]) -> list[float] | None:
    if res.survey is None:
        return None
    return [min(float(f.log_mass_limit(0.5 * (lo + hi))) for f in res.survey.fields) for lo, hi in bins]


def _extrapolated(res: Results, bins: Sequence[tuple[float, float]]) -> list[bool] | None:
    zr = res.data_z_range
    if zr is None:
        return None
    return [bool(0.5 * (lo + hi) < zr[0] or 0.5 * (lo + hi) > zr[1]) for lo, hi in bins]


def _leja2020() -> ContinuityParams:
    from popmodel.smf.evolution import leja2020_params

    return leja2020_params()


# --------------------------------------------------------------------------------------------
# (a) the mass function


def plot_smf_panels(res: Results, bins: Sequence[tuple[float, float]] = PANEL_BINS) -> object:
    """(a) The SMF in redshift panels: posterior 16-50-84%, the Leja+20 median model (both
    averaged over the panel's bin), Tomczak+14, Muzzin+13 and Ilbert+13 points in their own
    bins (drawn in the panel whose centre their bin contains), completeness shaded."""
    from popmodel.census import percentile_bands
    from popmodel.plots.smf import plot_smf

    if res.smf_draws is None:
        raise ValueError("figure 'smf' needs the SMF results (RESULTS_DIR/smf)")
    cosmo = res.cosmology
    bands = np.stack([percentile_bands(bin_log_phi_draws(res.smf_draws, LOG_M, lo, hi, cosmo))
                      for lo, hi in bins], axis=1)
    ref = np.array([bin_log_phi_draws(_leja2020(), LOG_M, lo, hi, cosmo)[0] for lo, hi in bins])
    n = 0 if res.smf_info is None else res.smf_info.get("n_total", 0)
    return plot_smf(
        LOG_M, [0.5 * (lo + hi) for lo, hi in bins], bands, reference=ref,
        reference_label="Leja+20 continuity model (medians)", points=smf_literature(cosmo),
        completeness=_completeness(res, bins), extrapolated=_extrapolated(res, bins),
        panel_titles=[f"{lo:g} < z < {hi:g}" for lo, hi in bins],
        title=(f"stellar mass function ({n} posterior draws; bins volume-averaged); Chabrier, "
               f"{cosmo.name}"),
    )


# --------------------------------------------------------------------------------------------
# (b), (c) the census


class _CensusBands:
    """The part of :class:`popmodel.census.CensusResult` the census figures read, from
    ``census.ecsv`` (or from SMF draws for rho_* alone)."""

    def __init__(self, z: np.ndarray, bands: dict[str, np.ndarray], meta: dict,
                 delta: np.ndarray | None = None) -> None:
        self.z = z
        self._bands = bands
        self.meta = meta
        self._delta = delta

    def bands(self, name: str) -> np.ndarray:
        return self._bands[name]

    def tension(self) -> SimpleNamespace:
        if self._delta is None:
            raise ValueError("census.ecsv has no delta_sfs_minus_rho_p16/p50/p84 columns")
        return SimpleNamespace(delta_p16=self._delta[0], delta_p50=self._delta[1], delta_p84=self._delta[2])

    @classmethod
    def from_table(cls, t: Table, names: Sequence[str]) -> _CensusBands:
        need = ["z"] + [f"{n}_{q}" for n in names for q in ("p16", "p50", "p84")]
        miss = [c for c in need if c not in t.colnames]
        if miss:
            raise ValueError(f"census.ecsv: missing column(s) {miss} (has {t.colnames})")
        for key in ("mass_range_log10_msun", "band_label"):
            if key not in t.meta:
                raise ValueError(f"census.ecsv: metadata lacks {key!r}")
        bands = {n: np.array([np.asarray(t[f"{n}_{q}"], float) for q in ("p16", "p50", "p84")])
                 for n in names}
        dcols = [f"delta_sfs_minus_rho_{q}" for q in ("p16", "p50", "p84")]
        delta = (np.array([np.asarray(t[c], float) for c in dcols])
                 if all(c in t.colnames for c in dcols) else None)
        return cls(np.asarray(t["z"], float), bands, dict(t.meta), delta)


def plot_rho_star(res: Results) -> object:
    """(b) rho_*(z) [Msun Mpc^-3]: the census band (``census.ecsv``; without it, from the SMF
    draws, 8 < log M < 13) with the Leja+20 model, MD14 points and integrated fit, Driver+18,
    the Tomczak+14 fit and Muzzin+13 (:func:`popmodel.plots.census.plot_census_rho_star`)."""
    from popmodel.plots.census import plot_census_rho_star

    if res.census is not None:
        cb = _CensusBands.from_table(res.census, ["log_rho_star"])
    elif res.smf_draws is not None:
        from popmodel.census import percentile_bands, rho_star_draws

        b = percentile_bands(np.log10(rho_star_draws(res.smf_draws, Z_RHO, 8.0, 13.0)))
        cb = _CensusBands(Z_RHO, {"log_rho_star": b},
                          {"mass_range_log10_msun": [8.0, 13.0], "band_label": "statistical only"})
    else:
        raise ValueError("figure 'rho_star' needs RESULTS_DIR/census or RESULTS_DIR/smf")
    return plot_census_rho_star(cb, cosmology=res.cosmology, data_range=res.data_z_range)


def plot_sfrd(res: Results) -> object:
    """(c) The SFRD [Msun yr^-1 Mpc^-3] from both routes (the p16/p50/p84 columns of
    ``census.ecsv``) with MD14 (fit and Table 1), Driver+18, Behroozi+13 and UniverseMachine
    (Behroozi+19); lower panel: route 2 - route 1 from the paired draws
    (:func:`popmodel.plots.census.plot_census_sfrd`)."""
    from popmodel.plots.census import plot_census_sfrd

    if res.census is None:
        raise ValueError("figure 'sfrd' needs RESULTS_DIR/census (run popmodel census)")
    for key in ("sfrd_from_rho_short", "sfrd_from_sfs_source"):
        if key not in res.census.meta:
            raise ValueError(f"census.ecsv: metadata lacks {key!r}")
    cb = _CensusBands.from_table(res.census, ["log_sfrd_from_rho", "log_sfrd_from_sfs"])
    return plot_census_sfrd(cb, cosmology=res.cosmology, data_range=res.data_z_range)


# --------------------------------------------------------------------------------------------
# (d) the sequence


def leja2022_in_cosmology(log_m: np.ndarray, z: float, kind: str, cosmology: apc.Cosmology) -> np.ndarray:
    """Leja+22 Eq. 10 (``kind`` ridge or mean; WMAP9) moved to ``cosmology`` and evaluated at
    ``log_m`` [log10 Msun] of that cosmology: both axes shift by s = 2 log10(D_L ratio), so
    SFR(M) = Eq10(M - s) + s."""
    from popmodel.literature import convert_sfs_cosmology, leja2022_sfs

    s = float(convert_sfs_cosmology(0.0, 0.0, z, apc.WMAP9, cosmology)[0])
    return leja2022_sfs(np.asarray(log_m, float) - s, z, kind) + s


def _leja_curves(cosmology: apc.Cosmology) -> dict[float, np.ndarray]:
    from popmodel.literature import leja2022_sfs_curves

    return {c.z: np.column_stack([c.log_mass, c.ridge, c.mean, c.median, c.q84, c.q16])
            for c in leja2022_sfs_curves(cosmology)}


def plot_sfs(res: Results) -> object:
    """(d) The sequence (ridge and log <SFR>, ensemble bands, 16-84% of log SFR) from
    ``sfs.ecsv`` against Leja+22 Eq. 10 and the released flow curves, in the sequence fit's
    cosmology (:func:`popmodel.plots.sfs.plot_sequence`)."""
    from popmodel.plots.sfs import plot_sequence

    if res.sfs is None:
        raise ValueError("figure 'sfs' needs RESULTS_DIR/sfs (run popmodel fit-sfs)")
    _check_sfs(res.sfs)
    return plot_sequence(res.sfs, None, None, _leja_curves(res.sfs_cosmology),
                         title=f"star-forming sequence; Chabrier, {res.sfs_cosmology.name}",
                         cosmology=res.sfs_cosmology)


_SFS_COLUMNS = ("z", "log_mass", "ridge_p16", "ridge_p50", "ridge_p84", "log_mean_sfr_p16",
                "log_mean_sfr_p50", "log_mean_sfr_p84", "log_sfr_q16", "log_sfr_q84", "bimodal",
                "log_mass_limit")


def _check_sfs(t: Table) -> None:
    miss = [c for c in _SFS_COLUMNS if c not in t.colnames]
    if miss:
        raise ValueError(f"sfs.ecsv: missing column(s) {miss} (has {t.colnames})")


# --------------------------------------------------------------------------------------------
# (e) residuals


def plot_smf_residuals(res: Results, bins: Sequence[tuple[float, float]] = PANEL_BINS) -> object:
    """(e, mass function) log10 Phi_fit - log10 Phi_lit [dex] in the panels of (a): each set
    once (in the first panel whose centre its bin contains), the model averaged over the set's
    own bin; markers at the posterior median with the literature's error bars; the grey band is
    the fit's own 16-84% about its median, the dashed line the Leja+20 model minus the fit."""
    import matplotlib.pyplot as plt

    from popmodel.census import percentile_bands
    from popmodel.plots.smf import label_mass_panels

    if res.smf_draws is None:
        raise ValueError("the SMF residuals need RESULTS_DIR/smf")
    cosmo = res.cosmology
    resid = smf_residuals(res.smf_draws, smf_literature(cosmo), cosmo)
    sources = list(dict.fromkeys(r.points.label for r in resid))
    style = {lab: (f"C{3 + j}", "osD^v"[j % 5]) for j, lab in enumerate(sources)}
    comp, extrap = _completeness(res, bins), _extrapolated(res, bins)
    n = len(bins)
    ncol = min(4, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.0 * nrow), sharex=True, sharey=True,
                             squeeze=False)
    for k, (lo, hi) in enumerate(bins):
        ax = axes.flat[k]
        fit = percentile_bands(bin_log_phi_draws(res.smf_draws, LOG_M, lo, hi, cosmo))
        leja = bin_log_phi_draws(_leja2020(), LOG_M, lo, hi, cosmo)[0]
        ax.fill_between(LOG_M, fit[0] - fit[1], fit[2] - fit[1], color="0.6", alpha=0.4, lw=0,
                        label="popmodel 16-84% (about its median)")
        ax.plot(LOG_M, leja - fit[1], "k--", lw=1, label="Leja+20 median model - popmodel")
        for r in resid:
            if _panel_of(r.points, bins) != k:
                continue
            p = r.points
            color, marker = style[p.label]
            # residual = fit - lit: the literature's upper error is the residual's lower one
            ax.errorbar(p.log_mass, r.residual[1], yerr=[np.abs(p.err_hi), np.abs(p.err_lo)], fmt=marker,
                        ms=3.5, color=color, lw=0.8, label=f"{p.label} {p.z_lo:g}<z<{p.z_hi:g}")
        if comp is not None:
            ax.axvspan(LOG_M[0], comp[k], color="0.9", zorder=0, label="below completeness")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_title(f"{lo:g} < z < {hi:g}" + (" (extrapolated)" if extrap and extrap[k] else ""), fontsize=9)
        ax.set_ylim(-1.0, 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5.5, loc="lower left")
    label_mass_panels(axes, n, r"$\log\Phi_{\rm fit}-\log\Phi_{\rm lit}$ [dex]")
    fig.suptitle(f"mass function residuals against the literature; Chabrier, {cosmo.name}", fontsize=9)
    fig.tight_layout()
    return fig


def sfs_residuals(t: Table, cosmology: apc.Cosmology) -> Table:
    """The sequence minus Leja+22, per row of ``sfs.ecsv`` [dex].

    Columns ``z``, ``log_mass``; ``d_ridge_p16/p50/p84`` and ``d_mean_p16/p50/p84`` (the fit's
    ridge and log <SFR> bands minus Leja+22 Eq. 10, moved to ``cosmology``); ``d_ridge_flow``
    and ``d_mean_flow`` (the fit's p50 minus the released Leja+22 flow curve, where a released
    redshift lies within 0.05 of the row's and the mass within the curve's range; NaN
    elsewhere).
    """
    from astropy.table import Table

    _check_sfs(t)
    z = np.asarray(t["z"], float)
    m = np.asarray(t["log_mass"], float)
    out = Table({"z": z, "log_mass": m})
    curves = _leja_curves(cosmology)
    for kind, col, j in (("ridge", "ridge", 1), ("mean", "log_mean_sfr", 2)):
        ref = np.empty(z.size)
        flow = np.full(z.size, np.nan)
        for zz in np.unique(z):
            sel = z == zz
            ref[sel] = leja2022_in_cosmology(m[sel], float(zz), kind, cosmology)
            zk = min(curves, key=lambda c: abs(c - zz))
            if abs(zk - zz) <= 0.05:
                c = curves[zk]
                flow[sel] = np.interp(m[sel], c[:, 0], c[:, j], left=np.nan, right=np.nan)
        for q in ("p16", "p50", "p84"):
            out[f"d_{kind}_{q}"] = np.asarray(t[f"{col}_{q}"], float) - ref
        out[f"d_{kind}_flow"] = np.asarray(t[f"{col}_p50"], float) - flow
    return out


def plot_sfs_residuals(res: Results) -> object:
    """(e, sequence) The fit's ridge and log <SFR> minus Leja+22 [dex] against mass, one colour
    per redshift: band and line against Eq. 10, markers against the released flow curves."""
    import matplotlib.pyplot as plt

    if res.sfs is None:
        raise ValueError("the sequence residuals need RESULTS_DIR/sfs")
    d = sfs_residuals(res.sfs, res.sfs_cosmology)
    zs = np.unique(np.asarray(d["z"]))
    cmap = plt.get_cmap("viridis")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.9), sharey=True)
    for ax, kind, name in ((axes[0], "ridge", "ridge"), (axes[1], "mean", r"$\log\langle$SFR$\rangle$")):
        for i, zz in enumerate(zs):
            s = np.asarray(d["z"]) == zz
            color = cmap(i / max(zs.size - 1, 1))
            m = np.asarray(d["log_mass"])[s]
            ax.fill_between(m, d[f"d_{kind}_p16"][s], d[f"d_{kind}_p84"][s], color=color, alpha=0.15, lw=0)
            ax.plot(m, d[f"d_{kind}_p50"][s], color=color, lw=1.5, label=f"z = {zz:g} - Leja+22 Eq. 10")
            fl = np.asarray(d[f"d_{kind}_flow"])[s]
            if np.isfinite(fl).any():
                ax.plot(m, fl, "o", mfc="none", color=color, ms=4, label=f"z = {zz:g} - Leja+22 flow curve")
        ax.axhline(0.0, color="k", lw=0.6)
        ax.set_xlabel(r"$\log_{10}\,M_*/M_\odot$")
        ax.set_title(f"{name}: this fit minus Leja+22", fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5.5, ncol=2, loc="lower left")
    axes[0].set_ylabel(r"$\Delta\log_{10}$ SFR [dex]")
    axes[0].set_ylim(-1.5, 1.5)
    fig.suptitle(f"sequence residuals (band: ensemble 16-84%); Chabrier, {res.sfs_cosmology.name}",
                 fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# the job


def make_figures(results_dir: str | Path, out_dir: str | Path | None = None, *,
                 only: Sequence[str] | None = None, max_draws: int = 500, seed: int = 0,
                 results: Results | None = None,
                 manifest_config: dict | None = None) -> dict[str, list[str]]:
    """Draw the figures (all of :data:`FIGURES`, or ``only``) into ``out_dir`` (default
    ``RESULTS_DIR/figures``) as PNG and PDF; figures whose inputs are missing are skipped with
    a logged note. The figures are committed together with a manifest
    (:mod:`popmodel.io.resultdir`), replacing those of an earlier popmodel run.

    Returns:
        figure name -> written paths (absent for a skipped figure).
    """
    from popmodel.plots.smf import save

    names = list(FIGURES if not only else only)
    bad = [n for n in names if n not in FIGURES]
    if bad:
        raise ValueError(f"unknown figure(s) {bad}; choose from {list(FIGURES)}")
    from popmodel.io.resultdir import staged

    res = results or load_results(results_dir, max_draws=max_draws, seed=seed)
    final_out = Path(out_dir) if out_dir is not None else Path(results_dir) / "figures"
    config = manifest_config if manifest_config is not None else {
        "results_dir": str(results_dir), "only": names, "max_draws": max_draws, "seed": seed}
    with staged(final_out, step="figures", config=config) as stage:
        written = _draw_figures(res, names, stage.path, results_dir, save)
    return stage.finals(written)


def _draw_figures(res: Results, names: list[str], out: Path, results_dir: str | Path,
                  save: Callable) -> dict[str, list[str]]:
    draw: dict[str, list[tuple[str, Callable[[Results], object]]]] = {
        "smf": [("smf", plot_smf_panels)], "rho_star": [("rho_star", plot_rho_star)],
        "sfrd": [("sfrd", plot_sfrd)], "sfs": [("sfs", plot_sfs)],
        "residuals": [("residuals_smf", plot_smf_residuals), ("residuals_sfs", plot_sfs_residuals)],
    }
    needs_each = {"residuals_smf": "smf", "residuals_sfs": "sfs"}
    written: dict[str, list[str]] = {}
    for name in names:
        if not any(res.has(p) for p in NEEDS[name]):
            log.info(f"NOTE: skipping figure '{name}': needs {' or '.join(NEEDS[name])} results in "
                  f"{results_dir} ({'; '.join(res.notes)})")
            continue
        paths: list[str] = []
        for stem, fn in draw[name]:
            part = needs_each.get(stem)
            if part is not None and not res.has(part):
                log.info(f"NOTE: skipping '{stem}': no {part} results in {results_dir}")
                continue
            paths += save(fn(res), str(out / stem))
        written[name] = paths
    return written
