r"""The figures of an analysis, drawn from its result folders: ``popmodel figures RESULTS_DIR``.

``RESULTS_DIR`` holds the outputs of the three steps as sub-folders: ``smf`` (``popmodel
fit-smf`` / ``fit-3dhst``), ``sfs`` (``popmodel fit-sfs``) and ``census`` (``popmodel census``).
Any of them may be missing; the figures that need it are then skipped with a printed note.

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

``--smoke`` (:func:`build_smoke_results`) needs no inputs: it draws a small mock survey from
the Leja+20 model and fits it with the Laplace approximation, trains a two-member flow for two
epochs on a Leja+22-sequence mock, and runs the census on both: a test of the path, not of
the science.

References:
    | Leja et al. (2020), ApJ 893, 111; Leja et al. (2022), ApJ 936, 165.
    | Tomczak et al. (2014), ApJ 783, 85; Muzzin et al. (2013), ApJ 777, 18; Ilbert et al.
      (2013), A&A 556, A55.
    | Madau & Dickinson (2014), ARA&A 52, 415; Driver et al. (2018), MNRAS 475, 2891;
      Behroozi et al. (2013), ApJ 770, 57; Behroozi et al. (2019), MNRAS 488, 3143.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING

import astropy.cosmology as apc
import numpy as np

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
    "build_smoke_results",
    "leja2022_in_cosmology",
    "load_results",
    "make_figures",
    "plot_rho_star",
    "plot_sfrd",
    "plot_sfs",
    "plot_sfs_residuals",
    "plot_smf_panels",
    "plot_smf_residuals",
    "register",
    "script_main",
    "sfs_residuals",
    "smf_literature",
    "smf_residuals",
]

#: Figure names, in the order of issue 5 item 3: (a) ... (e).
FIGURES = ("smf", "rho_star", "sfrd", "sfs", "residuals")
#: What each figure needs (any one of the folders, in order of preference).
NEEDS = {"smf": ("smf",), "rho_star": ("census", "smf"), "sfrd": ("census",), "sfs": ("sfs",),
         "residuals": ("smf", "sfs")}
#: Redshift panels of (a) and (e): the Tomczak et al. (2014) bins.
PANEL_BINS = ((0.5, 0.75), (0.75, 1.0), (1.0, 1.25), (1.25, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0))
LOG_M = np.round(np.arange(8.0, 12.01, 0.05), 3)
Z_RHO = np.round(np.arange(0.2, 3.0001, 0.05), 4)


# --------------------------------------------------------------------------------------------
# loading


@dataclass
class Results:
    """What the figures read from a results folder (None where a part is missing).

    Attributes:
        root: the results folder.
        smf_draws: continuity-model posterior draws (``smf/smf_posterior.nc``, or Gaussians
            from ``smf_parameters.ecsv``; :func:`popmodel.cli.census.read_smf_draws`).
        smf_info: ``cosmology``, ``data_z_range``, ``source`` of the SMF fit.
        survey: the SMF fit's survey (``smf/survey.toml`` or the posterior's ``survey``
            attribute), for the completeness shading.
        sfs: ``sfs/sfs.ecsv``.
        sfs_cosmology: the sequence fit's cosmology (``sfs/survey.toml``; WMAP9 otherwise).
        census: ``census/census.ecsv``.
        cosmology: the fit's cosmology for the literature (SMF fit, else the census's, else
            WMAP9).
        notes: what was missing or assumed.
    """

    root: Path | None = None
    smf_draws: ContinuityParams | None = None
    smf_info: dict | None = None
    survey: object | None = None
    sfs: Table | None = None
    sfs_cosmology: apc.Cosmology = field(default_factory=lambda: apc.WMAP9)
    census: Table | None = None
    cosmology: apc.Cosmology = field(default_factory=lambda: apc.WMAP9)
    notes: list[str] = field(default_factory=list)

    def has(self, part: str) -> bool:
        """True if the part (``"smf"``, ``"sfs"``, ``"census"``) was loaded."""
        return {"smf": self.smf_draws, "sfs": self.sfs, "census": self.census}[part] is not None

    @property
    def data_z_range(self) -> list[float] | None:
        """The SMF data's redshift range (from the fit, else from the census's flags)."""
        if self.smf_info and self.smf_info.get("data_z_range"):
            return list(self.smf_info["data_z_range"])
        if self.census is not None and "extrapolated" in self.census.colnames:
            z = np.asarray(self.census["z"], float)[~np.asarray(self.census["extrapolated"], bool)]
            if z.size:
                return [float(z.min()), float(z.max())]
        return None


def _survey_from(smf_dir: Path) -> object | None:
    from popmodel.survey import Survey

    if (smf_dir / "survey.toml").is_file():
        return Survey.read(smf_dir / "survey.toml")
    nc = smf_dir / "smf_posterior.nc"
    if nc.is_file():
        import h5py

        with h5py.File(nc, "r") as f:
            raw = f["posterior"].attrs.get("survey")
        if raw is not None:
            try:
                d = json.loads(raw)
                return Survey.from_dict(d) if isinstance(d, dict) else None
            except (ValueError, TypeError, KeyError):
                return None
    return None


def load_results(results_dir: str | Path, *, max_draws: int = 500, seed: int = 0) -> Results:
    """Read ``RESULTS_DIR/{smf,sfs,census}``; missing parts are None with a note."""
    from astropy.table import Table

    from popmodel.cli.census import read_smf_draws
    from popmodel.cosmology import cosmology_from_config

    root = Path(results_dir)
    res = Results(root=root)
    smf_dir = root / "smf"
    if (smf_dir / "smf_posterior.nc").is_file() or (smf_dir / "smf_parameters.ecsv").is_file():
        res.smf_draws, res.smf_info = read_smf_draws(smf_dir, max_draws=max_draws, seed=seed)
        res.survey = _survey_from(smf_dir)
        res.cosmology = res.smf_info["cosmology"]
    else:
        res.notes.append(f"no SMF results in {smf_dir} (smf_posterior.nc or smf_parameters.ecsv)")
    path = root / "census" / "census.ecsv"
    if path.is_file():
        res.census = Table.read(path, format="ascii.ecsv")
        if res.smf_draws is None:
            cc = res.census.meta.get("cosmology_config")
            if isinstance(cc, dict) and ("H0" in cc or "name" in cc):
                res.cosmology = cosmology_from_config(cc)
            else:
                res.notes.append(f"{path} records no cosmology_config: literature moved to WMAP9")
    else:
        res.notes.append(f"no census results ({path})")
    path = root / "sfs" / "sfs.ecsv"
    if path.is_file():
        from popmodel.survey import Survey

        res.sfs = Table.read(path, format="ascii.ecsv")
        if (root / "sfs" / "survey.toml").is_file():
            res.sfs_cosmology = Survey.read(root / "sfs" / "survey.toml").cosmology
        else:
            res.notes.append(f"no {root / 'sfs' / 'survey.toml'}: the sequence is taken to be in WMAP9")
    else:
        res.notes.append(f"no sequence results ({path})")
    return res


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
    the Tomczak+14 fit and Muzzin+13 (:func:`popmodel.cli.census.plot_census_rho_star`)."""
    from popmodel.cli.census import plot_census_rho_star

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
    (:func:`popmodel.cli.census.plot_census_sfrd`)."""
    from popmodel.cli.census import plot_census_sfrd

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
    a printed note. The figures are committed together with a manifest
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
            print(f"NOTE: skipping figure '{name}': needs {' or '.join(NEEDS[name])} results in "
                  f"{results_dir} ({'; '.join(res.notes)})")
            continue
        paths: list[str] = []
        for stem, fn in draw[name]:
            part = needs_each.get(stem)
            if part is not None and not res.has(part):
                print(f"NOTE: skipping '{stem}': no {part} results in {results_dir}")
                continue
            paths += save(fn(res), str(out / stem))
        written[name] = paths
    return written


# --------------------------------------------------------------------------------------------
# smoke inputs


def build_smoke_results(root: str | Path, parts: Sequence[str] = ("smf", "sfs", "census"), *,
                        seed: int = 0) -> Path:
    """Write mock results into ``root/{smf,sfs,census}`` (each only if not already there).

    ``smf``: a one-field, 20 arcmin^2 deep survey drawn from the Leja+20 model (8 posterior
    samples per galaxy), fitted with the Laplace approximation (200 draws, no bootstrap).
    ``sfs``: 600 galaxies on the Leja+22 ridge with 0.4 dex SFR errors above a completeness
    limit, a two-member flow ensemble trained for two epochs without the selection
    normalisation. ``census``: ``popmodel census`` on both (0.1 in z, 200 draws). Seconds to
    tens of seconds; for tests of the path only.
    """
    root = Path(root)
    parts = set(parts)
    if "census" in parts:
        parts |= {"smf", "sfs"}
    smf_dir, sfs_dir, census_dir = root / "smf", root / "sfs", root / "census"
    if "smf" in parts and not (smf_dir / "smf_posterior.nc").is_file():
        from popmodel.io.smf import write_smf_results
        from popmodel.mock import draw_mock
        from popmodel.smf.fit import FitConfig, fit_smf
        from popmodel.testing import deep_survey

        t0 = time.perf_counter()
        survey = deep_survey(n_fields=1, area_arcmin2=20.0)
        catalog, _ = draw_mock(survey, seed=seed, n_samples=8)
        fit = fit_smf(catalog, survey, FitConfig(method="laplace", num_samples=200, n_bootstrap=0,
                                                 seed=seed, progress_bar=False))
        write_smf_results(fit, smf_dir, extra_meta={"smoke": "mock from the Leja+20 model; Laplace fit"},
                          figures=False, model_checks=False)
        print(f"smoke: SMF of {catalog.n_galaxies} mock galaxies fitted ({time.perf_counter() - t0:.0f} s)")
    if "sfs" in parts and not (sfs_dir / "sfs.ecsv").is_file():
        from popmodel.flow.fit import SFSConfig, fit_sfs
        from popmodel.flow.mock import sequence_mock
        from popmodel.flow.train import TrainConfig
        from popmodel.io.sfs import write_sfs_results

        t0 = time.perf_counter()
        limit = (np.array([0.3, 2.7]), np.array([9.3, 9.9]))
        cat, survey, _ = sequence_mock(600, n_samples=8, log_mass_limit=limit, mass_error=0.15, seed=seed)
        cfg = SFSConfig(train=TrainConfig(max_epochs=2, batch_size=128, seed=seed, progress=False),
                        n_members=2, selection="none")
        sfs_dir.mkdir(parents=True, exist_ok=True)
        fit = fit_sfs(cat, survey, cfg, workdir=sfs_dir)
        write_sfs_results(fit, sfs_dir, extra_meta={"smoke": "Leja+22-ridge mock; 2 members x 2 epochs"},
                          figures=False)
        print(f"smoke: flow ensemble trained on 600 mock galaxies ({time.perf_counter() - t0:.0f} s)")
    if "census" in parts and not (census_dir / "census.ecsv").is_file():
        from popmodel.cli.census import run_census

        run_census(smf_dir, sfs_dir, census_dir, z=np.round(np.arange(0.2, 3.0001, 0.1), 4),
                   max_draws=200, seed=seed, figures=False)
        print(f"smoke: census written to {census_dir}")
    return root


# --------------------------------------------------------------------------------------------
# command line


def _run(a: argparse.Namespace, only: Sequence[str] | None) -> int:
    from popmodel.cli.common import setup_jax
    from popmodel.errors import InputError
    from popmodel.io.resultdir import prepare_output

    setup_jax(1)  # already done under `popmodel figures`; the analyses/plot_*.py scripts need it
    results_dir = a.results_dir
    if a.smoke:
        results_dir = results_dir or "results/figures_smoke"
        need = {p for n in (only or FIGURES) for p in NEEDS[n]}  # census brings smf and sfs
        build_smoke_results(results_dir, sorted(need), seed=a.seed)
    elif results_dir is None:
        raise SystemExit("error: give RESULTS_DIR (with smf/, sfs/, census/ sub-folders) or --smoke")
    if not Path(results_dir).is_dir():
        raise InputError(f"{results_dir} is not a folder")
    out = a.out or str(Path(results_dir) / "figures")
    config = {"results_dir": str(results_dir), "only": list(only or FIGURES),
              "max_draws": a.max_draws, "seed": a.seed}
    if prepare_output(out, resume=a.resume, overwrite=a.overwrite, config=config,
                      command="popmodel figures") == "complete":
        return 0
    t0 = time.perf_counter()
    files = make_figures(results_dir, out, only=only, max_draws=a.max_draws, seed=a.seed,
                         manifest_config=config)
    n = sum(len(v) for v in files.values())
    print(f"wrote {n} files ({', '.join(files) or 'no figures'}) to {out} ({time.perf_counter() - t0:.1f} s)")
    return 0


def _add_args(p: argparse.ArgumentParser) -> None:
    from popmodel.cli.common import add_output_options, nonneg_int, positive_int

    p.add_argument("results_dir", nargs="?", default=None, metavar="RESULTS_DIR",
                   help="folder with smf/, sfs/ and census/ sub-folders (any may be missing); with "
                   "--smoke, where the mock results are written (default results/figures_smoke)")
    p.add_argument("--out", default=None, help="output folder (default RESULTS_DIR/figures)")
    p.add_argument("--smoke", action="store_true",
                   help="no inputs: make and fit a tiny mock first (reusing any already in RESULTS_DIR)")
    p.add_argument("--max-draws", type=positive_int, default=500,
                   help="SMF posterior draws used (random subset; default 500)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    add_output_options(p)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``popmodel figures RESULTS_DIR [--out DIR] [--only NAME ...] [--smoke]`` to a CLI."""
    p = subparsers.add_parser("figures", help="the SMF, rho_*, SFRD, sequence and residual figures "
                              "from a results folder")
    _add_args(p)
    p.add_argument("--only", nargs="+", choices=FIGURES, default=None, help="draw only these figures")
    p.set_defaults(func=lambda a: _run(a, a.only))
    return p


def script_main(name: str, doc: str | None = None, argv: list[str] | None = None) -> int:
    """Entry point of the thin ``analyses/plot_<name>.py`` scripts: one figure of :data:`FIGURES`."""
    if name not in FIGURES:
        raise ValueError(f"unknown figure {name!r}; choose from {list(FIGURES)}")
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_args(ap)
    return _run(ap.parse_args(argv), [name])


if __name__ == "__main__":
    ap_ = argparse.ArgumentParser(prog="popmodel")
    register(ap_.add_subparsers(dest="cmd", required=True))
    a_ = ap_.parse_args()
    sys.exit(a_.func(a_))
