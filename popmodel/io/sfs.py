"""Result files of an SFS fit: ``sfs.ecsv``, Eq. 10 coefficients, flows, figures, provenance.

Every file records the popmodel version, the configuration, the seeds, the cosmology and the
IMF (:func:`provenance`).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Mapping
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table

from popmodel._version import __version__
from popmodel.cosmology import describe_cosmology
from popmodel.flow.fit import SFSFit, save_flow
from popmodel.flow.parametric import EQ10_PARAMETERS, LEJA2022_TABLE1
from popmodel.units import IMF, MASS_DEFINITION

__all__ = ["provenance", "write_sfs_results"]


def _jsonable(x: object) -> object:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size < 1000 else f"<array shape {x.shape}>"
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


def provenance(fit: SFSFit, extra: dict | None = None) -> dict:
    """Metadata written into every result file."""
    import torch
    import zuko

    cosmo = fit.survey.cosmology if fit.survey is not None else None
    meta = {
        "popmodel_version": __version__,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "product": "star-forming sequence from an ensemble of deconvolving normalizing flows",
        "config": fit.config.to_dict(),
        "seeds": {
            "ensemble_base_seed": fit.config.train.seed,
            "member_seeds": [fit.config.train.seed + k for k in range(fit.config.n_members)],
        },
        "cosmology": describe_cosmology(cosmo) if cosmo is not None else
        "none given (survey-free fit); the sSFR cut uses WMAP9 ages",
        "imf": IMF,
        "mass_definition": MASS_DEFINITION,
        "units": {"log_mass": "log10 Msun", "log_sfr": "log10 Msun/yr",
                  "density": "per unit z per dex^2 (joint) or per dex^2 (conditional on z)"},
        "definitions": {
            "ridge": "mode of p(log SFR | log M, z), smoothed with a Gaussian of ridge_smoothing "
                     "dex, above the star-forming-branch cut log sSFR > log10(doubling_cut / t_age(z)); "
                     "ridge_p50 is the mode of the ensemble-averaged density (ridge_estimator 'pooled') "
                     "or the members' median ('median'); ridge_p16/p84 are the members' percentiles",
            "log_mean_sfr": "log10 of the mean SFR over the whole population (not <log SFR>)",
            "log_sfr_q16/q50/q84": "percentiles of p(log SFR | log M, z), ensemble medians",
            "bands": "p16/p50/p84 over the ensemble members (bootstrap resamples of galaxies)"
                     if fit.config.bootstrap else "p16/p50/p84 over the ensemble members (seeds)",
            "bimodal": "at least half of the members have two peaks with prominence >= 10% of the max",
        },
        "survey": fit.survey.to_dict() if fit.survey is not None else None,
        "selection": ("normalised by P(pass the field's cuts) under its mass-error model"
                      if fit.survey is not None and fit.config.selection == "survey" else "none"),
        "cuts": fit.cuts,
        "data": fit.data_summary,
        "training": [
            {"best_epoch": r.best_epoch, "best_val_loss": r.best_val_loss, "epochs": len(r.history),
             "stopped_early": r.stopped_early, "seconds": r.seconds,
             "sample_points_per_second": r.sample_points_per_second,
             "n_train": r.n_train, "n_val": r.n_val, "importance_ess": r.importance_ess}
            for r in fit.results
        ],
        "timing_s": fit.timing,
        "warnings": list(fit.warnings),
        "software": {"python": platform.python_version(), "torch": str(torch.__version__),
                     "zuko": zuko.__version__, "numpy": np.__version__},
    }
    if fit.survey is not None and fit.survey.cosmology is not None:
        meta["cosmology_name"] = getattr(fit.survey.cosmology, "name", None)
    if extra:
        meta.update(extra)
    return _jsonable(meta)


def _eq10_table(fit: SFSFit, meta: dict) -> Table:
    rows = []
    for kind in ("ridge", "mean"):
        f = fit.eq10.get(kind)
        members = fit.eq10_members.get(kind)
        for j, name in enumerate(EQ10_PARAMETERS):
            band = (np.nanpercentile(members[:, j], [16, 50, 84]) if members is not None
                    and np.isfinite(members[:, j]).any() else [np.nan] * 3)
            rows.append((kind, name, f.params[name] if f else np.nan, f.errors[name] if f else np.nan,
                         *band, LEJA2022_TABLE1[kind][name][0], LEJA2022_TABLE1[kind][name][1]))
    t = Table(rows=rows, names=("fit", "parameter", "value", "error", "members_p16", "members_p50",
                                "members_p84", "leja2022_value", "leja2022_error"), meta=dict(meta))
    t.meta["comments"] = [(
        "Leja et al. 2022 Eq. 10 fitted to the central ridge / log mean SFR of sfs.ecsv (ridge_p50, log_mean_sfr_p50) "
        "(value, error from the Jacobian with the band half-widths as errors) and to each member "
        "(members_p16/p50/p84)"
    )]
    return t


def write_sfs_results(
    fit: SFSFit, out: str | Path, *, extra_meta: dict | None = None, figures: bool = True,
    leja_curves_dir: str | Path | None = None, manifest_config: Mapping | None = None,
) -> dict[str, list[str]]:
    """Write ``sfs.ecsv``, ``eq10_fits.ecsv``, ``flows/member_k.pt``, ``training.json``,
    ``summary.json``, ``survey.toml`` (when the fit has a survey) and the figures (``sfs.png/pdf``,
    ``training.png``).

    The files are written into a staging folder and committed into ``out`` together, with a
    manifest (:mod:`popmodel.io.resultdir`) that also lists the member checkpoints already in
    ``out/checkpoints``; every file's metadata carries the manifest's ``run_id``.

    Args:
        fit: The fit.
        out: Output directory (created).
        extra_meta: Extra provenance (e.g. the input files).
        figures: Draw the figures.
        leja_curves_dir: Folder with the released Leja et al. 2022 curves to overlay.
        manifest_config: The settings recorded in the manifest (``--resume`` compares them);
            default the fit configuration.

    Returns:
        Mapping of kind to written paths.
    """
    from popmodel.io.resultdir import SCHEMA_VERSION, staged

    out = Path(out)
    ckpt = out / "checkpoints"
    keep = sorted(str(p.relative_to(out)) for p in ckpt.rglob("*") if p.is_file()) \
        if ckpt.is_dir() else []
    config = manifest_config if manifest_config is not None else fit.config.to_dict()
    with staged(out, step="sfs", config=_jsonable(dict(config)), keep=keep) as stage:
        meta = provenance(fit, extra_meta)
        meta["run_id"] = stage.run_id
        meta["result_schema_version"] = SCHEMA_VERSION
        written = _write_sfs_files(fit, stage.path, meta, figures, leja_curves_dir)
    return stage.finals(written)


def _write_sfs_files(fit: SFSFit, out: Path, meta: dict, figures: bool,
                     leja_curves_dir: str | Path | None) -> dict[str, list[str]]:
    written: dict[str, list[str]] = {}
    if fit.survey is not None:
        try:
            fit.survey.write(out / "survey.toml")
            written["survey"] = [str(out / "survey.toml")]
        except ValueError:  # a survey built in Python that TOML cannot describe
            pass

    t = fit.table.copy()
    t.meta.update(meta)
    for c in t.colnames:
        if c == "log_mass" or c == "log_mass_limit":
            t[c].unit = u.dex(u.Msun)
        elif c.startswith(("ridge_p", "log_mean_sfr_p", "log_sfr_q", "log_sfr_cut")):
            t[c].unit = u.dex(u.Msun / u.yr)
        elif c == "scatter_p50":
            t[c].unit = u.dex
    t.write(out / "sfs.ecsv", format="ascii.ecsv", overwrite=True)
    written["sfs"] = [str(out / "sfs.ecsv")]

    eq = _eq10_table(fit, meta)
    eq.write(out / "eq10_fits.ecsv", format="ascii.ecsv", overwrite=True)
    written["eq10"] = [str(out / "eq10_fits.ecsv")]

    (out / "flows").mkdir(exist_ok=True)
    written["flows"] = []
    for k, f in enumerate(fit.flows):
        path = out / "flows" / f"member_{k}.pt"
        save_flow(f, path, extra={"member": k, "seed": fit.config.train.seed + k,
                                  "popmodel_version": meta["popmodel_version"],
                                  "run_id": meta["run_id"]})
        written["flows"].append(str(path))

    (out / "training.json").write_text(json.dumps(_jsonable([r.to_dict() for r in fit.results]), indent=1))
    written["training"] = [str(out / "training.json")]
    summary = dict(meta)
    summary["eq10"] = {k: (None if v is None else {"params": v.params, "errors": v.errors, "rms": v.rms})
                       for k, v in fit.eq10.items()}
    (out / "summary.json").write_text(json.dumps(_jsonable(summary), indent=1))
    written["summary"] = [str(out / "summary.json")]

    if figures:
        written["figures"] = _figures(fit, out, leja_curves_dir)
    return written


def density_images(fit: SFSFit, z_values: np.ndarray, n_mass: int = 60) -> dict:
    """Ensemble-mean p(log SFR | log M, z) on (log M, log SFR) grids, for the figures."""
    out = {}
    sg = np.arange(-2.5, 3.0001, 0.025)
    for z in z_values:
        t = fit.table[np.isclose(fit.table["z"], z)]
        mg = np.linspace(float(t["log_mass"].min()) - 0.25, max(float(t["log_mass"].max()), 11.5), n_mass)
        p = np.mean([np.exp(f.conditional_log_density(mg, np.full(mg.size, z), sg)) for f in fit.flows], 0)
        out[float(z)] = (mg, sg, p)
    return out


def _figures(fit: SFSFit, out: Path, leja_curves_dir: str | Path | None) -> list[str]:
    import matplotlib.pyplot as plt

    from popmodel.plots.sfs import plot_sequence, plot_training, read_leja2022_curves

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
