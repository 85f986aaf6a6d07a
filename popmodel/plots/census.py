r"""The census figures: rho_*(z), the SFR density by both routes, the SF/Q mass functions.

Each function takes the census's numbers (a :class:`popmodel.census.CensusResult`, or any
object with its ``z``, ``meta``, ``bands(name)`` and ``tension()``) and returns a matplotlib
figure; the literature is moved to ``cosmology`` by :mod:`popmodel.literature`. Used by
``popmodel census`` (:func:`popmodel.cli.census.run_census`) and ``popmodel figures``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import astropy.cosmology as apc

    from popmodel import census as C

__all__ = ["plot_census_rho_star", "plot_census_sf_q", "plot_census_sfrd"]


def _band(ax: object, z: np.ndarray, b: np.ndarray, color: str, label: str) -> None:
    b = np.where(np.isfinite(b), b, np.nan)  # -inf (non-positive SFRD) is not drawn
    ax.fill_between(z, b[0], b[2], color=color, alpha=0.3, lw=0)
    ax.plot(z, b[1], color=color, lw=2, label=label)


def _shade_extrapolation(ax: object, z: np.ndarray, data_range: list[float] | None) -> None:
    if data_range is None:
        return
    for a, b in ((z[0], data_range[0]), (data_range[1], z[-1])):
        if b > a:
            ax.axvspan(a, b, color="0.9", zorder=0)


def _points(ax: object, pts: object, fmt: str, color: str) -> None:
    ax.errorbar(pts.z, pts.log_value, yerr=[pts.err_lo, pts.err_hi],
                xerr=[pts.z - pts.z_lo, pts.z_hi - pts.z], fmt=fmt, ms=4, color=color, lw=0.8,
                alpha=0.8, label=pts.label)


def plot_census_rho_star(res: C.CensusResult, *, cosmology: apc.Cosmology,
                         data_range: list[float] | None = None) -> object:
    """rho_*(z): posterior band with the Leja+20 median model and literature points."""
    import matplotlib.pyplot as plt

    from popmodel import census as C
    from popmodel import literature as L
    from popmodel.smf.evolution import leja2020_params

    lo, hi = res.meta["mass_range_log10_msun"]
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    _shade_extrapolation(ax, res.z, data_range)
    _band(ax, res.z, res.bands("log_rho_star"), "C0", f"popmodel ({res.meta['band_label']})")
    leja = np.log10(C.rho_star_draws(leja2020_params(), res.z, lo, hi))[0]
    ax.plot(res.z, leja, "k--", lw=1.2, label="Leja+20 median model")
    zz = np.linspace(0.05, 3.5, 100)
    ax.plot(zz, np.log10(L.madau_dickinson2014_rho_star(zz, cosmology=cosmology)), color="0.4",
            lw=1.2, label="MD14 fit integrated (R=0.27, x0.61)")
    ax.plot(zz, L.tomczak2014_rho_star(zz, cosmology=cosmology), color="C4", ls=":", lw=1.2,
            label="Tomczak+14 fit (9<log M<13)")
    _points(ax, L.md14_rho_star_points(cosmology), "s", "0.5")
    _points(ax, L.driver2018_rho_star(cosmology), "o", "C2")
    _points(ax, L.muzzin2013_rho_star("8", cosmology), "D", "C3")
    ax.set_xlim(0, 3.5)
    ax.set_ylim(7.0, 9.0)
    ax.set_xlabel("redshift z")
    ax.set_ylabel(rf"$\log_{{10}}\rho_*$ [M$_\odot$ Mpc$^{{-3}}$] ({lo:g}<log M<{hi:g})")
    ax.set_title(f"stellar mass density; Chabrier, {cosmology.name}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower left")
    fig.tight_layout()
    return fig


def plot_census_sfrd(res: C.CensusResult, *, cosmology: apc.Cosmology,
                     data_range: list[float] | None = None) -> object:
    """SFRD(z) from both routes with literature; lower panel: the paired difference."""
    import matplotlib.pyplot as plt

    from popmodel import literature as L

    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(6.6, 6.4), sharex=True,
                                  gridspec_kw={"height_ratios": [3, 1.2]})
    for a in (ax, ax2):
        _shade_extrapolation(a, res.z, data_range)
    _band(ax, res.z, res.bands("log_sfrd_from_rho"), "C0",
          r"route 1: $\dot\rho_*/(1-R)$, " + res.meta["sfrd_from_rho_short"])
    no_sfs = res.meta["sfrd_from_sfs_source"].startswith("Leja+22 Table 1")
    _band(ax, res.z, res.bands("log_sfrd_from_sfs"), "C1", r"route 2: $\int\Phi\langle$SFR$\rangle$, "
          + ("Leja+22 Table 1 mean fit" if no_sfs else "SFS posterior (Eq. 10 fit below log M$_c$)"))
    zz = np.linspace(0.05, 3.5, 200)
    ax.plot(zz, np.log10(L.madau_dickinson2014_sfrd(zz, cosmology=cosmology)), color="0.3",
            lw=1.2, label="Madau & Dickinson 2014 fit (x0.63)")
    ax.plot(zz, np.log10(L.behroozi2013_sfrd(zz, cosmology=cosmology)), color="C5", ls="-.", lw=1,
            label="Behroozi+13 fit")
    for kind, ls in (("true", ":"), ("observed", "--")):
        um = L.behroozi2019_csfrd(kind, cosmology)
        ax.plot(um.z, um.log_value, color="C4", ls=ls, lw=1.2, label=um.label)
    md = L.md14_sfrd_points(cosmology)
    _points(ax, md, "s", "0.5")
    _points(ax, L.driver2018_sfrd(cosmology), "o", "C2")
    ax.set_ylim(-2.2, -0.5)
    ax.set_ylabel(r"$\log_{10}\psi$ [M$_\odot$ yr$^{-1}$ Mpc$^{-3}$]")
    lo, hi = res.meta["mass_range_log10_msun"]
    ax.set_title(f"cosmic SFR density ({lo:g}<log M<{hi:g}); {res.meta['band_label']}; "
                 f"Chabrier, {cosmology.name}", fontsize=8)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")
    t = res.tension()
    _band(ax2, res.z, np.array([t.delta_p16, t.delta_p50, t.delta_p84]), "C1", "")
    ax2.lines[-1].set_label("paired draws, 16-50-84%")
    ax2.axhline(0, color="k", lw=0.8)
    ax2.set_ylabel("route 2 - route 1 [dex]", fontsize=8)
    ax2.set_xlabel("redshift z")
    ax2.set_xlim(0, 3.5)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=6.5)
    fig.tight_layout()
    return fig


def plot_census_sf_q(log_m: np.ndarray, z_panels: tuple[float, ...], sf: np.ndarray, q: np.ndarray, *,
                     cosmology: apc.Cosmology, band_label: str, sf_source: str) -> object:
    """Star-forming and quiescent mass functions (bands (3, Z, M)) with Muzzin+13 and UniverseMachine."""
    import matplotlib.pyplot as plt

    from popmodel import literature as L

    mz = {k: L.muzzin2013_smf(k, cosmology) for k in ("star-forming", "quiescent")}
    um = L.behroozi2019_smf(cosmology)
    n = len(z_panels)
    ncol = min(3, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 3.3 * nrow), sharey=True, squeeze=False)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    for k, z in enumerate(z_panels):
        ax = axes.flat[k]
        for b, color, lab in ((sf, "C0", "star-forming"), (q, "C3", "quiescent")):
            _band(ax, log_m, b[:, k], color, f"popmodel {lab}")
        for kind, color in (("star-forming", "C0"), ("quiescent", "C3")):
            for pts in mz[kind]:
                if pts.z_lo <= z < pts.z_hi:
                    ax.errorbar(pts.log_mass, pts.log_phi, yerr=[pts.err_lo, pts.err_hi], fmt="o",
                                ms=3, mfc="none", color=color, lw=0.7,
                                label=f"Muzzin+13 {kind} {pts.z_lo}-{pts.z_hi}")
            j = int(np.argmin([abs(p.z_lo - z) for p in um[kind]]))
            u_ = um[kind][j]
            ax.plot(u_.log_mass, u_.log_phi, color=color, ls=":", lw=1.2,
                    label=f"UniverseMachine {kind} z={u_.z_lo:.2f}")
        ax.set_title(f"z = {z:g}", fontsize=9)
        ax.set_xlim(8.5, 12)
        ax.set_ylim(-5.5, -1.5)
        ax.set_xlabel(r"$\log_{10}M_*/M_\odot$")
        ax.grid(alpha=0.3)
        if k % ncol == 0:
            ax.set_ylabel(r"$\log_{10}\Phi$ [Mpc$^{-3}$ dex$^{-1}$]")
        ax.legend(fontsize=4.5, loc="lower left")
    import textwrap

    fig.suptitle("\n".join(textwrap.wrap(f"SF / quiescent split: {sf_source}; bands: {band_label}", 110)),
                 fontsize=7)
    fig.tight_layout()
    return fig
