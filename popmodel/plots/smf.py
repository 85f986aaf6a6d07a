"""Figures: mass functions with posterior bands, rho_*(z), corner plots (numpy in, figures out)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None
import matplotlib.pyplot as plt
import numpy as np

from popmodel.literature import SMFPoints

__all__ = ["label_mass_panels", "plot_corner", "plot_density_terms", "plot_rho_star", "plot_smf", "save",
           "smf_result_figures"]


def save(fig: plt.Figure, stem: str) -> list[str]:
    """Write ``stem.png`` and ``stem.pdf``; returns the paths."""
    paths = [f"{stem}.png", f"{stem}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130, bbox_inches="tight")
    plt.close(fig)
    return paths


def label_mass_panels(axes: np.ndarray, n: int, ylabel: str) -> None:
    """Label a grid of log-mass panels filled row by row with ``n`` panels: ``ylabel`` on the
    first column, the mass axis (label and tick labels) on the lowest panel of each column,
    and the unused panels of the last row hidden."""
    ncol = axes.shape[1]
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_visible(False)
            continue
        if k % ncol == 0:
            ax.set_ylabel(ylabel)
        if k >= n - ncol:
            ax.set_xlabel(r"$\log_{10}\,M_*/M_\odot$")
            ax.xaxis.set_tick_params(labelbottom=True)  # the panel below may be hidden


def plot_smf(
    log_m: np.ndarray,
    z_panels: Sequence[float],
    bands: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    reference_label: str = "Leja+20 continuity model (medians)",
    points: Sequence[SMFPoints] = (),
    completeness: Sequence[float] | None = None,
    extrapolated: Sequence[bool] | None = None,
    title: str = "",
    panel_titles: Sequence[str] | None = None,
) -> plt.Figure:
    """The SMF at several redshifts: posterior median and 16-84% band per panel.

    Args:
        log_m: (M,) masses [log10 Msun].
        z_panels: (Z,) redshifts of the panels.
        bands: (3, Z, M) p16/p50/p84 of log10 Phi.
        reference: (Z, M) log10 Phi of a reference curve (e.g. Leja+20).
        points: literature points; each is drawn in the panel whose z lies in its bin, one
            colour and marker per source (``label``).
        completeness: (Z,) log M_c at each panel's z (shaded below).
        extrapolated: (Z,) True where the panel's z lies outside the data.
        panel_titles: (Z,) titles (default ``"z = <z>"``).
    """
    sources = list(dict.fromkeys(p.label for p in points))
    style = {lab: (f"C{3 + j}", "osD^v"[j % 5]) for j, lab in enumerate(sources)}
    n = len(z_panels)
    ncol = min(3, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow), sharex=True, sharey=True, squeeze=False)
    for k, z in enumerate(z_panels):
        ax = axes.flat[k]
        ax.fill_between(log_m, bands[0, k], bands[2, k], color="C0", alpha=0.35, lw=0, label="popmodel 16-84%")
        ax.plot(log_m, bands[1, k], color="C0", lw=2, label="popmodel median")
        if reference is not None:
            ax.plot(log_m, reference[k], color="k", ls="--", lw=1.2, label=reference_label)
        for pts in points:
            if pts.z_lo <= z < pts.z_hi:
                color, marker = style[pts.label]
                ax.errorbar(pts.log_mass, pts.log_phi, yerr=[np.abs(pts.err_lo), np.abs(pts.err_hi)],
                            fmt=marker, ms=3.5, color=color, label=f"{pts.label} {pts.z_lo}<z<{pts.z_hi}")
        if completeness is not None:
            ax.axvspan(log_m[0], completeness[k], color="0.85", zorder=0, label="below completeness")
        tag = " (extrapolated)" if extrapolated is not None and extrapolated[k] else ""
        ax.set_title((f"z = {z:g}" if panel_titles is None else panel_titles[k]) + tag)
        ax.set_ylim(-5.5, -1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, loc="lower left")
    label_mass_panels(axes, n, r"$\log_{10}\,\Phi$ [Mpc$^{-3}$ dex$^{-1}$]")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_rho_star(
    z: np.ndarray,
    bands: np.ndarray,
    *,
    reference: np.ndarray | None = None,
    reference_label: str = "Leja+20 continuity model (medians)",
    data_range: tuple[float, float] | None = None,
    mass_range: tuple[float, float] = (8.0, 13.0),
) -> plt.Figure:
    """rho_*(z): posterior median and 16-84% band; shading outside the data's z range."""
    fig, ax = plt.subplots(figsize=(5.5, 4.0))
    ax.fill_between(z, bands[0], bands[2], color="C0", alpha=0.35, lw=0, label="popmodel 16-84%")
    ax.plot(z, bands[1], color="C0", lw=2, label="popmodel median")
    if reference is not None:
        ax.plot(z, reference, "k--", lw=1.2, label=reference_label)
    if data_range is not None:
        for a, b in ((z[0], data_range[0]), (data_range[1], z[-1])):
            if b > a:
                ax.axvspan(a, b, color="0.9", zorder=0)
        ax.text(0.02, 0.03, "grey: outside the data (extrapolation)", transform=ax.transAxes, fontsize=7)
    ax.set_xlabel("redshift z")
    ax.set_ylabel(rf"$\log_{{10}}\,\rho_*$ [M$_\odot$ Mpc$^{{-3}}$], {mass_range[0]:g}<log M<{mass_range[1]:g}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_corner(samples: dict[str, np.ndarray], truths: dict[str, float] | None = None) -> plt.Figure:
    """Corner plot of the parameters (``corner``): histograms, density and contours, without
    the scatter of individual draws, whose rasterised layer in the PDF took 2.1 GB to write
    for an 11-parameter corner of 200 draws (0.3 GB without it)."""
    import corner

    names = list(samples)
    x = np.column_stack([np.asarray(samples[n]).reshape(-1) for n in names])
    t = None if truths is None else [truths.get(n) for n in names]
    return corner.corner(x, labels=names, truths=t, quantiles=[0.16, 0.5, 0.84], show_titles=True,
                         plot_datapoints=False, title_kwargs={"fontsize": 7},
                         label_kwargs={"fontsize": 7})


def plot_density_terms(terms: object, samples: dict[str, np.ndarray]) -> plt.Figure:
    """Posterior of each field's density contrast vs redshift (median and 16-84% band per
    slice), with the prior's +-1 sigma_DM as a dashed envelope."""
    fields = sorted(set(terms.field_index.tolist()))
    fig, ax = plt.subplots(figsize=(7, 4.2))
    n = len(fields)
    for j, fi in enumerate(fields):
        sel = np.flatnonzero(terms.field_index == fi)
        zc = 0.5 * (terms.z_lo[sel] + terms.z_hi[sel])
        off = (j - (n - 1) / 2) * 0.02
        q = np.array([np.percentile(np.asarray(samples[terms.labels[i]]).reshape(-1), [16, 50, 84])
                      for i in sel])
        name = terms.labels[sel[0]].removeprefix("delta_").rsplit("_z", 1)[0]
        ax.errorbar(zc + off, q[:, 1], yerr=[q[:, 1] - q[:, 0], q[:, 2] - q[:, 1]], fmt="o-",
                    ms=4, capsize=2, label=name)
        if j == 0:
            ax.plot(zc, terms.sigma_dm[sel], "k--", lw=0.8, label=r"prior $\pm\sigma_{\rm DM}$")
            ax.plot(zc, -terms.sigma_dm[sel], "k--", lw=0.8)
    ax.axhline(0.0, color="0.5", lw=0.8)
    ax.set_xlabel("redshift z (slice centre)")
    ax.set_ylabel(r"dark-matter density contrast $\delta$ of the field")
    ax.set_title("cosmic variance: per-field, per-slice density terms (16-50-84%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    return fig


def smf_result_figures(fit: object, out: str, products: dict) -> list[str]:
    """The figures of a mass-function fit, ``smf``, ``rho_star``, ``corner`` (and
    ``density_terms`` with cosmic variance) as PNG and PDF into ``out``: the ``figures``
    callback of :func:`popmodel.io.smf.write_smf_results`, which passes the bands it wrote
    (``products["phi"] = (log_mass, z, bands)``, ``products["rho_star"] = (z, bands)``).
    Returns the written paths."""
    from pathlib import Path

    from popmodel.literature import tomczak2014_smf
    from popmodel.smf.derived import log10_rho_star
    from popmodel.smf.evolution import leja2020_params
    from popmodel.smf.schechter import log10_phi

    out = Path(out)
    lm, zp, bands = products["phi"]
    z, rho_b = products["rho_star"]
    leja = leja2020_params()
    ref = np.array([np.asarray(log10_phi(lm, zz, leja)) for zz in zp])
    pts = tomczak2014_smf(fit.data.survey.cosmology)
    fields = fit.data.survey.fields
    mc = [min(float(f.log_mass_limit(zz)) for f in fields) for zz in zp]
    zlo, zhi = fit.data.z_data_range
    paths = save(
        plot_smf(lm, list(zp), bands, reference=ref, points=pts, completeness=mc,
                 extrapolated=[bool(zz < zlo or zz > zhi) for zz in zp],
                 title=f"{fit.data.survey.name}: {fit.data.report.n_used} galaxies"),
        str(out / "smf"),
    )
    ref_rho = log10_rho_star(leja, z, 8.0, 13.0)
    paths += save(plot_rho_star(z, rho_b, reference=ref_rho, data_range=(zlo, zhi)), str(out / "rho_star"))
    paths += save(plot_corner({n: fit.samples[n] for n in fit.names}), str(out / "corner"))
    if fit.data.density is not None and fit.prior.density_terms:
        paths += save(plot_density_terms(fit.data.density, fit.samples), str(out / "density_terms"))
    return paths
