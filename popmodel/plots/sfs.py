"""Figures of the star-forming sequence: the sequence over the density, with Leja et al. 2022."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt
import numpy as np
from astropy.table import Table

from popmodel.flow.parametric import leja2022_log_sfr

__all__ = ["density_images", "plot_sequence", "plot_training", "read_leja2022_curves",
           "sfs_result_figures"]


def read_leja2022_curves(directory: str | Path) -> dict[float, np.ndarray]:
    """Read the released Leja et al. 2022 SFS curves (``Leja2022_z*.txt``, comma-separated).

    Args:
        directory: Folder with ``Leja2022_z0p3.txt`` ... (columns logM, ridge, mean, median,
            q84, q16).

    Returns:
        ``{z: (n, 6) array}``.
    """
    out = {}
    for path in sorted(Path(directory).glob("Leja2022_z*.txt")):
        z = float(path.stem.split("_z")[1].replace("p", "."))
        out[z] = np.loadtxt(path, delimiter=",", comments="#")
    return out


def plot_sequence(
    table: Table,
    density: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None,
    z_values: Sequence[float] | None = None,
    leja_curves: dict[float, np.ndarray] | None = None,
    title: str | None = None,
    cosmology: object | None = None,
) -> plt.Figure:
    """The sequence (ridge, log mean SFR, 16-84 range, with ensemble bands) per redshift.

    Args:
        table: The ``sfs.ecsv`` table.
        density: ``{z: (log_mass_grid, log_sfr_grid, p)}`` conditional densities
            ``p[(i_mass, i_sfr)]`` drawn as the background image.
        z_values: Redshifts to show (default: up to 6 of the table's).
        leja_curves: Released Leja et al. 2022 curves (:func:`read_leja2022_curves`, or
            :func:`popmodel.literature.leja2022_sfs_curves` stacked in the same column order),
            ridge and mean drawn at the nearest redshift within 0.15.
        title: Figure title.
        cosmology: The table's cosmology (astropy): the Leja+22 Eq. 10 curves (WMAP9) are
            moved to it (both axes by 2 log10 of the D_L ratio,
            :func:`popmodel.literature.convert_sfs_cosmology`); default: drawn as published.

    Returns:
        The figure.
    """
    zs = np.unique(np.asarray(table["z"]))
    if z_values is None:
        z_values = zs if zs.size <= 6 else zs[np.linspace(0, zs.size - 1, 6).round().astype(int)]
    n = len(z_values)
    ncol = min(3, n)
    nrow = int(np.ceil(n / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.6 * nrow), squeeze=False,
                             sharex=True, sharey=True)
    for ax, z in zip(axes.ravel(), z_values, strict=False):
        t = table[np.isclose(table["z"], z)]
        m = np.asarray(t["log_mass"])
        if density is not None and z in density:
            mg, sg, p = density[z]
            ax.pcolormesh(mg, sg, (p / p.max(axis=1, keepdims=True)).T, cmap="Greys", shading="auto",
                          vmin=0, vmax=1.3, rasterized=True)
        ax.fill_between(m, t["log_sfr_q16"], t["log_sfr_q84"], color="C0", alpha=0.12, lw=0,
                        label="16-84% of log SFR")
        ax.fill_between(m, t["ridge_p16"], t["ridge_p84"], color="C0", alpha=0.5, lw=0)
        ax.plot(m, t["ridge_p50"], color="C0", lw=1.8, label="ridge (this fit)")
        ax.fill_between(m, t["log_mean_sfr_p16"], t["log_mean_sfr_p84"], color="C3", alpha=0.45, lw=0)
        ax.plot(m, t["log_mean_sfr_p50"], color="C3", lw=1.8, label=r"$\log\langle$SFR$\rangle$ (this fit)")
        bim = np.asarray(t["bimodal"], bool)
        if bim.any():
            ax.plot(m[bim], np.asarray(t["ridge_p50"])[bim], "o", mfc="none", color="C0", ms=6,
                    label="bimodal")
        mm = np.linspace(max(8.0, m.min() - 0.5), 11.8, 100)
        for kind, color in (("ridge", "C0"), ("mean", "C3")):
            xm, ys = mm, leja2022_log_sfr(mm, z, kind)
            if cosmology is not None:
                from astropy.cosmology import WMAP9

                from popmodel.literature import convert_sfs_cosmology

                xm, ys = convert_sfs_cosmology(xm, ys, float(z), WMAP9, cosmology)
            ax.plot(xm, ys, "--", color=color, lw=1, label=f"Leja+22 {kind} (Eq. 10)")
        if leja_curves:
            zk = min(leja_curves, key=lambda k: abs(k - z))
            if abs(zk - z) <= 0.15:
                c = leja_curves[zk]
                ax.plot(c[:, 0], c[:, 1], ":", color="C0", lw=1.2, label=f"Leja+22 flow ridge z={zk}")
                ax.plot(c[:, 0], c[:, 2], ":", color="C3", lw=1.2, label=f"Leja+22 flow mean z={zk}")
        ax.axvline(float(t["log_mass_limit"][0]), color="k", lw=0.8, alpha=0.6)
        ax.set_title(f"z = {z:g}")
        ax.set_xlim(m.min() - 0.3, max(m.max() + 0.2, 11.5))
        ax.set_ylim(-2.5, 3.0)
    for ax in axes[-1]:
        ax.set_xlabel(r"$\log_{10} M_*/M_\odot$")
    for ax in axes[:, 0]:
        ax.set_ylabel(r"$\log_{10}$ SFR [$M_\odot$/yr]")
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    axes[0, 0].legend(fontsize=6.5, loc="upper left")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_training(histories: Sequence[Sequence[dict]]) -> plt.Figure:
    """Train (dashed) and validation (solid) loss per epoch of each ensemble member."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for k, hist in enumerate(histories):
        ep = [h["epoch"] for h in hist]
        ax.plot(ep, [h["train_loss"] for h in hist], "--", color=f"C{k}", lw=1)
        ax.plot(ep, [h["val_loss"] for h in hist], "-", color=f"C{k}", lw=1.2, label=f"member {k + 1}")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss [nats / galaxy]")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def density_images(fit: object, z_values: np.ndarray, n_mass: int = 60) -> dict:
    """Ensemble-mean p(log SFR | log M, z) on (log M, log SFR) grids, for the figures."""
    out = {}
    sg = np.arange(-2.5, 3.0001, 0.025)
    for z in z_values:
        t = fit.table[np.isclose(fit.table["z"], z)]
        mg = np.linspace(float(t["log_mass"].min()) - 0.25, max(float(t["log_mass"].max()), 11.5), n_mass)
        p = np.mean([np.exp(f.conditional_log_density(mg, np.full(mg.size, z), sg)) for f in fit.flows], 0)
        out[float(z)] = (mg, sg, p)
    return out


def sfs_result_figures(fit: object, out: str | Path, leja_curves_dir: str | Path | None = None
                       ) -> list[str]:
    """The figures of a sequence fit, ``sfs.png/pdf`` and ``training.png``, into ``out``: the
    ``figures`` callback of :func:`popmodel.io.sfs.write_sfs_results` (bind
    ``leja_curves_dir``, the released Leja et al. 2022 curves to overlay, with
    :func:`functools.partial`). Returns the written paths."""
    out = Path(out)
    zs = np.unique(np.asarray(fit.table["z"]))
    if zs.size > 6:
        zs = zs[np.linspace(0, zs.size - 1, 6).round().astype(int)]
    curves = read_leja2022_curves(leja_curves_dir) if leja_curves_dir else None
    fig = plot_sequence(fit.table, density_images(fit, zs), zs, curves)
    paths = []
    for ext in ("png", "pdf"):
        fig.savefig(out / f"sfs.{ext}", dpi=130)
        paths.append(str(out / f"sfs.{ext}"))
    plt.close(fig)
    fig = plot_training([r.history for r in fit.results])
    fig.savefig(out / "training.png", dpi=110)
    plt.close(fig)
    paths.append(str(out / "training.png"))
    return paths
