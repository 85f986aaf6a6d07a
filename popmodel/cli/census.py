r"""``popmodel census``: read SMF (and SFS) results, write the census table and its figures.

Inputs:

- ``--smf DIR`` as written by :func:`popmodel.io.smf.write_smf_results`: the posterior draws
  from ``smf_posterior.nc`` (its attributes give the cosmology and the data's redshift range);
  without it, independent Gaussians from ``smf_parameters.ecsv`` (p16/p50/p84; an
  approximation that drops the posterior correlations, as Leja+20's Appendix B does).
- ``--sfs DIR`` (optional) with the flow module's ``sfs.ecsv`` (columns ``z``, ``log_mass``,
  ``log_mean_sfr_p16/p50/p84``, ``log_sfr_q16/q50/q84``). Its band of log <SFR> becomes E
  ensemble curves :math:`p_{50} + \epsilon_e (p_{84}-p_{16})/2`, one standard normal
  :math:`\epsilon_e` per curve (fully correlated in mass and z: an approximation until
  per-member curves are written), and its SFR percentiles give P(sSFR > cut) through a split
  normal (:func:`popmodel.census.p_above_cut_split_normal`). Without it, route 2 uses the
  Leja+22 Table 1 mean fit and the star-forming/quiescent split uses the Leja+22 released
  percentile curves; the outputs say so.

Outputs in ``--out``: ``census.ecsv``, ``census_sf_q.ecsv``, ``census_summary.json`` and the
figures ``census_rho_star``, ``census_sfrd``, ``census_sf_q`` (PNG and PDF).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import astropy.cosmology as apc
import numpy as np

from popmodel.errors import InputError

if TYPE_CHECKING:  # jax is imported only when a census runs, not when the CLI parser is built
    from popmodel import census as C
    from popmodel.smf.evolution import ContinuityParams

__all__ = [
    "SFSInputs",
    "plot_census_rho_star",
    "plot_census_sf_q",
    "plot_census_sfrd",
    "read_sfs_dir",
    "read_smf_draws",
    "register",
    "run_census",
]

Z_GRID = np.round(np.arange(0.2, 3.0001, 0.05), 4)
SF_Q_Z = (0.5, 1.0, 1.5, 2.0, 2.5)


# --------------------------------------------------------------------------------------------
# inputs


def _anchors_from_names(names: list[str]) -> tuple[float, ...]:
    zs = sorted(float(n.rsplit("_z", 1)[1]) for n in names if n.startswith("log_phi1_z"))
    if not zs:
        raise ValueError(f"no log_phi1_z* parameters among {names}")
    return tuple(zs)


def _prior_bounds(priors: object, anchors: tuple[float, ...]) -> dict[str, tuple[float, float]]:
    """The prior support of each parameter: the default bounds of the continuity model, updated
    from the ``priors`` descriptions a result file records (``Uniform(lo, hi)`` or ``...
    truncated to [lo, hi]``)."""
    import re

    from popmodel.smf.model import SMFPrior

    bounds = dict(SMFPrior(anchor_z=anchors).bounds)
    if isinstance(priors, dict):
        for name, text in priors.items():
            m = re.search(r"(?:Uniform\(|\[)\s*([-+0-9.eE]+),\s*([-+0-9.eE]+)\s*[)\]]\s*$", str(text))
            if m:
                bounds[name] = (float(m.group(1)), float(m.group(2)))
    return bounds


def _truncated_normal(rng: np.random.Generator, mu: float, sd: float,
                      bounds: tuple[float, float] | None, n: int) -> np.ndarray:
    """``n`` draws of N(mu, sd) truncated to ``bounds`` (inverse-CDF sampling)."""
    from scipy.stats import truncnorm

    if bounds is None or not sd > 0:
        return mu + sd * rng.standard_normal(n)
    lo, hi = bounds
    if not lo <= mu <= hi:
        raise InputError(f"a median ({mu}) lies outside its prior's support [{lo}, {hi}]")
    a, b = (lo - mu) / sd, (hi - mu) / sd
    return truncnorm.ppf(rng.uniform(size=n), a, b, loc=mu, scale=sd)


def read_smf_draws(smf_dir: str | Path, *, max_draws: int | None = 500, seed: int = 0
                   ) -> tuple[ContinuityParams, dict]:
    """Posterior draws of the continuity model from an SMF result folder.

    Returns:
        (draws, info) with ``info`` holding ``cosmology`` (astropy), ``data_z_range``,
        ``source`` and ``n_total``.
    """
    from popmodel.cosmology import cosmology_from_config
    from popmodel.smf.evolution import ContinuityParams, parameter_names

    d = Path(smf_dir)
    nc, par = d / "smf_posterior.nc", d / "smf_parameters.ecsv"
    rng = np.random.default_rng(seed)
    info: dict = {"cosmology": cosmology_from_config(None), "data_z_range": None}
    if nc.is_file():
        import h5py

        try:
            with h5py.File(nc, "r") as f:
                if "posterior" not in f:
                    raise InputError(f"{nc} has no 'posterior' group (groups: {sorted(f)})")
                g = f["posterior"]
                names = [k for k in g if k not in ("chain", "draw")]
                anchors = _anchors_from_names(names)
                need = parameter_names(anchors)
                missing = [n for n in need if n not in g]
                if missing:
                    raise InputError(f"{nc}: posterior lacks {missing}")
                vals = {n: np.asarray(g[n][...], dtype=float).reshape(-1) for n in need}
                attrs = {k: g.attrs[k] for k in g.attrs}
        except (OSError, KeyError, ValueError, UnicodeDecodeError) as exc:
            if isinstance(exc, InputError):
                raise
            raise InputError(f"cannot read the SMF posterior {nc}: the file is truncated or "
                             f"corrupt ({type(exc).__name__}: {exc})") from None
        for key in ("cosmology_config", "data_z_range"):
            if key in attrs:
                v = attrs[key]
                v = json.loads(v) if isinstance(v, str | bytes) else v
                if key == "cosmology_config" and isinstance(v, dict) and ("H0" in v or "name" in v):
                    info["cosmology"] = cosmology_from_config(v)
                elif key == "data_z_range":
                    info["data_z_range"] = [float(x) for x in v]
        info["source"] = f"{nc} (posterior draws)"
    elif par.is_file():
        from astropy.table import Table

        try:
            t = Table.read(par, format="ascii.ecsv")
            names = list(t["name"])
        except Exception as exc:  # noqa: BLE001 (astropy's readers raise many types)
            raise InputError(f"cannot read the SMF parameter table {par}: "
                             f"{type(exc).__name__}: {exc}") from None
        anchors = _anchors_from_names(names)
        n = max_draws or 500
        bounds = _prior_bounds(t.meta.get("priors"), anchors)
        vals = {}
        for row in t:
            sd = 0.5 * (row["p84"] - row["p16"])
            vals[row["name"]] = _truncated_normal(rng, row["p50"], sd, bounds.get(row["name"]), n)
        cc = t.meta.get("cosmology_config")
        if isinstance(cc, dict) and ("H0" in cc or "name" in cc):
            info["cosmology"] = cosmology_from_config(cc)
        if "data_z_range" in t.meta:
            info["data_z_range"] = [float(x) for x in t.meta["data_z_range"]]
        info["source"] = (f"{par} (independent Gaussians from p16/p50/p84, truncated to the "
                          "prior's support: correlations dropped)")
    else:
        raise InputError(f"{d} has neither smf_posterior.nc nor smf_parameters.ecsv")
    total = next(iter(vals.values())).size
    if max_draws is not None and total > max_draws:
        keep = np.sort(rng.choice(total, size=max_draws, replace=False))
        vals = {k: v[keep] for k, v in vals.items()}
    bad = [k for k, v in vals.items() if not np.all(np.isfinite(v))]
    if bad:
        raise ValueError(f"SMF draws have NaN or inf in {bad}")
    info["n_total"] = int(total)
    return ContinuityParams.from_dict(vals, anchors), info


class SFSInputs:
    """What route 2 and the SF/Q split use: callables plus a description.

    Attributes:
        mean_log_sfr: ``(log_m, z) -> (E, Z, M)`` or None (Leja+22 Table 1).
        p_star_forming: ``(log_m, z) -> (Z, M)`` P(sSFR > cut | M, z).
        description: provenance line written into the outputs.
    """

    def __init__(self, mean_log_sfr: Callable | None, p_star_forming: Callable, description: str,
                 sf_description: str) -> None:
        self.mean_log_sfr = mean_log_sfr
        self.p_star_forming = p_star_forming
        self.description = description
        self.sf_description = sf_description


def _grid_interpolator(zg: np.ndarray, mg: np.ndarray, values: np.ndarray) -> Callable:
    from scipy.interpolate import RegularGridInterpolator

    rgi = RegularGridInterpolator((zg, mg), values, bounds_error=False, fill_value=np.nan)

    def f(log_m: np.ndarray, z: np.ndarray) -> np.ndarray:
        zz, mm = np.meshgrid(np.atleast_1d(z), np.atleast_1d(log_m), indexing="ij")
        return rgi(np.stack([zz, mm], axis=-1))

    return f


def read_sfs_dir(sfs_dir: str | Path | None, *, n_members: int = 64, seed: int = 0,
                 cut: str = "hubble", cosmology: apc.Cosmology | None = None) -> SFSInputs:
    """Route-2 and SF/Q inputs from a flow result folder, or the Leja+22 fallbacks (see module doc)."""
    from popmodel import census as C

    cut_fn = (lambda z: C.ssfr_cut(z, cut, cosmology=cosmology))
    cut_text = ("sSFR cut 0.2/t_H(z)" if cut == "hubble" else "sSFR cut 1e-11/yr")
    path = None if sfs_dir is None else Path(sfs_dir) / "sfs.ecsv"
    if path is not None and path.is_file():
        from astropy.table import Table

        t = Table.read(path, format="ascii.ecsv")
        need = ["z", "log_mass", "log_mean_sfr_p16", "log_mean_sfr_p50", "log_mean_sfr_p84",
                "log_sfr_q16", "log_sfr_q50", "log_sfr_q84"]
        miss = [c for c in need if c not in t.colnames]
        if miss:
            raise ValueError(f"{path}: missing column(s) {miss} (has {t.colnames})")
        zg = np.unique(np.asarray(t["z"], float))
        mg = np.unique(np.asarray(t["log_mass"], float))
        grid = {c: np.full((zg.size, mg.size), np.nan) for c in need[2:]}
        iz = np.searchsorted(zg, np.asarray(t["z"], float))
        im = np.searchsorted(mg, np.asarray(t["log_mass"], float))
        for c, arr in grid.items():
            arr[iz, im] = np.asarray(t[c], float)
        f50 = _grid_interpolator(zg, mg, grid["log_mean_sfr_p50"])
        fsd = _grid_interpolator(zg, mg, 0.5 * (grid["log_mean_sfr_p84"] - grid["log_mean_sfr_p16"]))
        eps = np.random.default_rng(seed).standard_normal(n_members)
        q = {k: _grid_interpolator(zg, mg, grid[f"log_sfr_{k}"]) for k in ("q16", "q50", "q84")}

        def mean_log_sfr(log_m: np.ndarray, z: np.ndarray) -> np.ndarray:
            return f50(log_m, z)[None] + eps[:, None, None] * fsd(log_m, z)[None]

        def p_sf(log_m: np.ndarray, z: np.ndarray) -> np.ndarray:
            c = np.asarray(log_m)[None, :] + cut_fn(np.atleast_1d(z))[:, None]
            return C.p_above_cut_split_normal(c, q["q16"](log_m, z), q["q50"](log_m, z), q["q84"](log_m, z))

        desc = (f"{path}: log <SFR> band as {n_members} curves p50 + eps (p84-p16)/2 "
                "(eps ~ N(0,1) per curve, fully correlated in M and z)")
        return SFSInputs(mean_log_sfr, p_sf, desc, f"{path} SFR percentiles, split normal, {cut_text}")
    from popmodel.literature import leja2022_sfs_curves

    curves = leja2022_sfs_curves(cosmology)
    zc = np.array([c.z for c in curves])

    def p_sf_lit(log_m: np.ndarray, z: np.ndarray) -> np.ndarray:
        lm = np.asarray(log_m, float)
        z = np.atleast_1d(np.asarray(z, float))
        per = []
        for c in curves:
            qs = [np.interp(lm, c.log_mass, v, left=np.nan, right=np.nan) for v in (c.q16, c.median, c.q84)]
            cutv = lm + cut_fn(np.array([c.z]))[0]
            per.append(C.p_above_cut_split_normal(cutv, *qs))
        per = np.array(per)  # (C, M)
        out = np.full((z.size, lm.size), np.nan)
        for k, zz in enumerate(z):
            if zc[0] <= zz <= zc[-1]:
                j = int(min(np.searchsorted(zc, zz, side="right") - 1, zc.size - 2))
                w = (zz - zc[j]) / (zc[j + 1] - zc[j])
                out[k] = (1 - w) * per[j] + w * per[j + 1]
        return out

    why = "no SFS folder given" if sfs_dir is None else f"no sfs.ecsv in {sfs_dir}"
    return SFSInputs(None, p_sf_lit, why,
                     f"Leja+22 released SFR percentile curves, split normal, {cut_text} ({why})")


# --------------------------------------------------------------------------------------------
# figures


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


# --------------------------------------------------------------------------------------------
# the command


def run_census(
    smf_dir: str | Path,
    sfs_dir: str | Path | None,
    out: str | Path,
    *,
    z: np.ndarray = Z_GRID,
    max_draws: int = 500,
    seed: int = 0,
    return_fraction: tuple[float, float] = (0.30, 0.45),
    kernel: str = "none",
    masses_include_remnants: bool = True,
    mass_offset: str = "none",
    mass_range: tuple[float, float] = (8.0, 13.0),
    ssfr_cut_kind: str = "hubble",
    figures: bool = True,
    manifest_config: dict | None = None,
) -> dict[str, list[str]]:
    """The ``popmodel census`` job (see the module doc); returns kind -> written paths.

    The files are written into a staging folder and committed into ``out`` together with a
    manifest (:mod:`popmodel.io.resultdir`); each carries the manifest's ``run_id``.
    """
    from astropy.table import Table

    from popmodel import census as C
    from popmodel.cosmology import cosmology_to_config
    from popmodel.io.resultdir import SCHEMA_VERSION, staged
    from popmodel.plots.smf import save

    config = manifest_config if manifest_config is not None else {
        "smf": str(smf_dir), "sfs": None if sfs_dir is None else str(sfs_dir),
        "z": [float(x) for x in np.asarray(z)], "max_draws": max_draws, "seed": seed,
        "return_fraction": list(return_fraction), "kernel": kernel,
        "masses_include_remnants": masses_include_remnants, "mass_offset": mass_offset,
        "mass_range": list(mass_range), "ssfr_cut_kind": ssfr_cut_kind}
    final_out = Path(out)
    with staged(final_out, step="census", config=config) as stage:
        out = stage.path
        stamp = {"run_id": stage.run_id, "result_schema_version": SCHEMA_VERSION}
        draws, info = read_smf_draws(smf_dir, max_draws=max_draws, seed=seed)
        cosmo = info["cosmology"]
        sfs = read_sfs_dir(sfs_dir, seed=seed, cut=ssfr_cut_kind, cosmology=cosmo)
        kern = {"none": None, "imf": lambda: C.MassLossKernel.from_imf(masses_include_remnants),
                "lk11": lambda: C.MassLossKernel.leitner_kravtsov2011(masses_include_remnants),
                "b13": lambda: C.MassLossKernel.behroozi2013(masses_include_remnants)}
        if kernel not in kern:
            raise ValueError(f"kernel must be one of {list(kern)}, not {kernel!r}")
        offsets = {"none": None, "sed": C.SED_MODEL_OFFSET, "fast-to-prospector": C.FAST_TO_PROSPECTOR_OFFSET}
        if mass_offset not in offsets:
            raise ValueError(f"mass_offset must be one of {list(offsets)}, not {mass_offset!r}")
        res = C.compute_census(
            draws, np.asarray(z, float), log_m_lo=mass_range[0], log_m_hi=mass_range[1],
            return_fraction=C.ReturnFractionPrior(*return_fraction, masses_include_remnants),
            kernel=None if kern[kernel] is None else kern[kernel](), mean_log_sfr=sfs.mean_log_sfr,
            mass_offset=offsets[mass_offset], cosmology=cosmo, seed=seed, sfs_label=sfs.description,
        )
        zr = info["data_z_range"]
        tab = res.table()
        tab["extrapolated"] = np.zeros(len(tab), bool) if zr is None else (res.z < zr[0]) | (res.z > zr[1])
        try:
            tab.meta["cosmology_config"] = cosmology_to_config(cosmo)
        except ValueError:  # a cosmology that is neither a built-in nor flat LCDM: the text only
            pass
        tab.meta.update({"smf_source": info["source"], "sfs_source": sfs.description,
                         "smf_draws_used": res.meta["n_draws"], "smf_draws_total": info["n_total"],
                         **stamp})
        written: dict[str, list[str]] = {}
        tab.write(out / "census.ecsv", format="ascii.ecsv", overwrite=True)
        written["census"] = [str(out / "census.ecsv")]

        lm = np.round(np.arange(8.0, 12.01, 0.05), 3)
        zp = tuple(zz for zz in SF_Q_Z if zr is None or zr[0] - 0.25 <= zz <= zr[1] + 0.25) or SF_Q_Z
        p_use = draws if res.mass_offset is None else C.apply_mass_offset(draws, res.mass_offset)
        lsf, lq = C.sf_q_mass_functions(p_use, lm, np.array(zp), sfs.p_star_forming)
        bsf, bq = C.percentile_bands(lsf), C.percentile_bands(lq)
        rows = [(zz, m, *bsf[:, k, j], *bq[:, k, j]) for k, zz in enumerate(zp) for j, m in enumerate(lm)]
        sfq = Table(rows=rows, names=("z", "log_mass", "log_phi_sf_p16", "log_phi_sf_p50", "log_phi_sf_p84",
                                      "log_phi_q_p16", "log_phi_q_p50", "log_phi_q_p84"),
                    meta={"split": sfs.sf_description, "band_label": res.meta["band_label"],
                          "units": "log10 Mpc-3 dex-1; NaN where P(SF) is undefined", **stamp})
        sfq.write(out / "census_sf_q.ecsv", format="ascii.ecsv", overwrite=True)
        written["sf_q"] = [str(out / "census_sf_q.ecsv")]

        summary = dict(res.meta, smf_source=info["source"], sfs_source=sfs.description,
                       sf_q_split=sfs.sf_description, data_z_range=zr, **stamp)
        (out / "census_summary.json").write_text(json.dumps(summary, indent=1, default=str))
        written["summary"] = [str(out / "census_summary.json")]
        if figures:
            figs = save(plot_census_rho_star(res, cosmology=cosmo, data_range=zr), str(out / "census_rho_star"))
            figs += save(plot_census_sfrd(res, cosmology=cosmo, data_range=zr), str(out / "census_sfrd"))
            figs += save(plot_census_sf_q(lm, zp, bsf, bq, cosmology=cosmo, band_label=res.meta["band_label"],
                                          sf_source=sfs.sf_description), str(out / "census_sf_q"))
            written["figures"] = figs
    return stage.finals(written)


def _cmd(a: argparse.Namespace) -> int:
    from popmodel.cli.common import cli_config
    from popmodel.io.resultdir import prepare_output

    for d in (a.smf, a.sfs):
        if d is not None and not Path(d).is_dir():
            raise InputError(f"input folder {d} does not exist")
    if prepare_output(a.out, resume=a.resume, overwrite=a.overwrite,
                      inputs=[p for d in (a.smf, a.sfs) if d for p in Path(d).glob("*")],
                      config=cli_config(a), command="popmodel census") == "complete":
        return 0
    files = run_census(
        a.smf, a.sfs, a.out, manifest_config=cli_config(a), z=np.round(np.arange(a.z_min, a.z_max + 1e-9, a.dz), 4),
        max_draws=a.max_draws, seed=a.seed, return_fraction=tuple(a.return_fraction),
        kernel=a.kernel, masses_include_remnants=not a.exclude_remnants, mass_offset=a.mass_offset,
        mass_range=tuple(a.mass_range), ssfr_cut_kind=a.ssfr_cut, figures=not a.no_figures,
    )
    meta = json.loads(Path(files["summary"][0]).read_text())
    print(f"route 1: {meta['sfrd_from_rho_method']}")
    print(f"route 2: {meta['sfrd_from_sfs_source']}")
    print(f"bands: {meta['band_label']}")
    print(f"wrote {sum(len(v) for v in files.values())} files to {a.out}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``popmodel census --smf SMF_DIR [--sfs SFS_DIR] --out DIR`` to a CLI."""
    from popmodel.cli.common import (
        add_output_options,
        fraction,
        nonneg_float,
        nonneg_int,
        positive_float,
        positive_int,
    )

    p = subparsers.add_parser("census", help="rho_*(z) and the SFR density two ways, with figures")
    p.add_argument("--smf", required=True, help="folder written by fit-smf / fit-3dhst")
    p.add_argument("--sfs", default=None,
                   help="folder with the flow's sfs.ecsv (absent: Leja+22 Table 1 mean fit)")
    p.add_argument("--out", required=True, help="output folder")
    add_output_options(p)
    p.add_argument("--z-min", type=nonneg_float, default=0.2, help="lowest redshift (default 0.2)")
    p.add_argument("--z-max", type=positive_float, default=3.0, help="highest redshift (default 3)")
    p.add_argument("--dz", type=positive_float, default=0.05, help="redshift step (default 0.05)")
    p.add_argument("--max-draws", type=positive_int, default=500,
                   help="posterior draws used (random subset; default 500)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    p.add_argument("--return-fraction", type=fraction, nargs=2, default=[0.30, 0.45],
                   metavar=("LO", "HI"),
                   help="uniform prior on R (equal values fix it; Leja's code used 0.36)")
    p.add_argument("--kernel", choices=("none", "imf", "lk11", "b13"), default="none",
                   help="time-dependent mass loss instead of instantaneous R")
    p.add_argument("--exclude-remnants", action="store_true",
                   help="masses count living stars only (default: remnants included, as in FSPS)")
    p.add_argument("--mass-offset", choices=("none", "sed", "fast-to-prospector"), default="none",
                   help="SED-model mass-offset nuisance (default none: bands statistical only)")
    p.add_argument("--mass-range", type=float, nargs=2, default=[8.0, 13.0], metavar=("LO", "HI"),
                   help="log10 stellar-mass range of rho_* [Msun] (default 8 13)")
    p.add_argument("--ssfr-cut", choices=("hubble", "constant"), default="hubble",
                   help="quiescent below 0.2/t_H(z) (default) or 1e-11/yr")
    p.add_argument("--no-figures", action="store_true", help="write no figures")
    p.set_defaults(func=_cmd)
    return p
