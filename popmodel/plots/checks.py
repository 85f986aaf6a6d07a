"""Model-check figures of the mass function: posterior predictive counts and the 1/Vmax SMF.

Contract: :func:`model_check_figures` is the ``figures`` callback of
:func:`popmodel.smf.checks.write_model_checks`, called as
``figures(observed, predicted_draws, survey, vm, log_m, bands, out_dir) -> list[str]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np

from popmodel.plots.smf import save
from popmodel.smf.checks import VmaxSMF, central_interval, check_edges
from popmodel.survey import Survey

__all__ = ["model_check_figures", "plot_ppc_counts", "plot_vmax_smf"]


def model_check_figures(observed: np.ndarray, predicted_draws: np.ndarray, survey: Survey,
                        vm: VmaxSMF, log_m: np.ndarray, bands: np.ndarray, out_dir: str,
                        level: float = 0.95) -> list[str]:
    """Draw ``ppc_counts`` and ``vmax_smf`` (PNG and PDF) into ``out_dir``; returns the paths.

    Args:
        observed: (F, nM, nZ) catalogue counts (bins: ``vm.log_mass_edges``, ``vm.z_edges``).
        predicted_draws: (D, F, nM, nZ) posterior predictive counts.
        survey: the fields (row labels).
        vm: the binned 1/Vmax SMF.
        log_m: (M,) masses of ``bands``.
        bands: (3, nZ, M) p16/p50/p84 of log10 Phi at the z bins' centres.
        out_dir: folder to write into.
        level: central probability of the predictive interval drawn.
    """
    from pathlib import Path

    out = Path(out_dir)
    figs = save(plot_ppc_counts(observed, predicted_draws, survey, vm.log_mass_edges, vm.z_edges,
                                level), str(out / "ppc_counts"))
    figs += save(plot_vmax_smf(vm, log_m, bands), str(out / "vmax_smf"))
    return figs


def plot_ppc_counts(observed: np.ndarray, predicted_draws: np.ndarray, survey: Survey,
                    log_mass_edges: Sequence[float], z_edges: Sequence[float],
                    level: float = 0.95, max_fields: int = 6) -> object:
    """Observed vs posterior predictive counts: rows = fields, columns = z bins."""
    m_e = check_edges(log_mass_edges, "log_mass_edges")
    z_e = check_edges(z_edges, "z_edges")
    obs, pred = np.asarray(observed), np.asarray(predicted_draws)
    n_f, n_z = min(obs.shape[0], max_fields), obs.shape[2]
    mc = 0.5 * (m_e[1:] + m_e[:-1])
    lo, hi = central_interval(pred, level)
    med = np.median(pred, axis=0)
    fig, axes = plt.subplots(n_f, n_z, figsize=(2.8 * n_z, 2.4 * n_f), squeeze=False, sharex=True)
    for g in range(n_f):
        for j in range(n_z):
            ax = axes[g, j]
            ax.fill_between(mc, np.maximum(lo[g, :, j], 0.5), np.maximum(hi[g, :, j], 0.5), step="mid",
                            color="C0", alpha=0.35, lw=0, label=f"predictive {100 * level:g}%")
            ax.step(mc, np.maximum(med[g, :, j], 0.5), where="mid", color="C0", lw=1.2,
                    label="predictive median")
            o = obs[g, :, j]
            ax.errorbar(mc, np.maximum(o, 0.5), yerr=np.sqrt(o), fmt="o", ms=3, color="k",
                        label="observed")
            ax.set_yscale("log")
            ax.set_title(f"{survey.field_names[g]}  {z_e[j]:g}<z<{z_e[j + 1]:g}", fontsize=8)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.set_ylabel("galaxies per bin (0 at 0.5)")
            if g == n_f - 1:
                ax.set_xlabel(r"observed $\log_{10}\,M_*/M_\odot$")
    axes[0, 0].legend(fontsize=6)
    fig.suptitle("posterior predictive check: catalogue counts (observed point estimates)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_vmax_smf(vm: VmaxSMF, log_m: np.ndarray, bands: np.ndarray) -> object:
    """1/Vmax points beside the model's Phi bands at each z bin's centre.

    Args:
        vm: the binned 1/Vmax SMF.
        log_m: (M,) masses of the bands.
        bands: (3, nZ, M) p16/p50/p84 of log10 Phi at the z bins' centres.
    """
    n_z = vm.z_edges.size - 1
    ncol = min(3, n_z)
    nrow = int(np.ceil(n_z / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.5 * nrow), squeeze=False,
                             sharex=True, sharey=True)
    mc = 0.5 * (vm.log_mass_edges[1:] + vm.log_mass_edges[:-1])
    for j in range(n_z):
        ax = axes.flat[j]
        ax.fill_between(log_m, bands[0, j], bands[2, j], color="C0", alpha=0.35, lw=0,
                        label="model 16-84%")
        ax.plot(log_m, bands[1, j], color="C0", lw=1.5, label="model median")
        ok = vm.phi[:, j] > 0
        ph = np.where(ok, vm.phi[:, j], 1.0)
        y = np.where(ok, np.log10(ph), np.nan)
        lo = y - np.log10(np.maximum(ph - vm.phi_err[:, j], 1e-3 * ph))  # capped at 3 dex
        hi = np.log10(ph + vm.phi_err[:, j]) - y
        for comp, fmt, lab in ((True, "o", "1/Vmax (complete bins)"), (False, "s", "1/Vmax (partly below limit)")):
            s = ok & (vm.complete[:, j] == comp)
            if np.any(s):
                ax.errorbar(mc[s], y[s], yerr=[lo[s], hi[s]], fmt=fmt, ms=3.5,
                            color="k" if comp else "0.55", mfc="k" if comp else "none", label=lab)
        ax.set_title(f"{vm.z_edges[j]:g} < z < {vm.z_edges[j + 1]:g}")
        ax.set_ylim(-5.5, -1.0)
        ax.grid(alpha=0.3)
        if j % ncol == 0:
            ax.set_ylabel(r"$\log_{10}\,\Phi$ [Mpc$^{-3}$ dex$^{-1}$]")
        ax.set_xlabel(r"$\log_{10}\,M_*/M_\odot$")
        ax.legend(fontsize=6.5, loc="lower left")
    for ax in list(axes.flat)[n_z:]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
