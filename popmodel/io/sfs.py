"""Result files of an SFS fit: ``sfs.ecsv``, Eq. 10 coefficients, flows, figures, provenance.

Every file records the popmodel version, the configuration, the seeds, the cosmology and the
IMF (:func:`provenance`).
"""

from __future__ import annotations

import datetime as _dt
import platform
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import astropy.units as u
import numpy as np
from astropy.table import QTable, Table

from popmodel._version import __version__
from popmodel.cosmology import describe_cosmology
from popmodel.flow.parametric import EQ10_PARAMETERS, LEJA2022_TABLE1
from popmodel.io.meta import input_records, with_units
from popmodel.jsonutil import dumps, to_jsonable
from popmodel.units import MASS_DEFINITION, imf_label

if TYPE_CHECKING:  # torch is imported when a fit is written or its flows are loaded
    from popmodel.flow.fit import SFSFit

__all__ = ["SFSResult", "load_sfs", "provenance", "write_sfs_results"]


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
        "imf": imf_label(getattr(getattr(fit, "survey", None), "imf", None)),
        "mass_definition": MASS_DEFINITION,
        "units": {"log_mass": "log10 Msun", "log_sfr": "log10 Msun/yr",
                  "density": "per unit z per dex^2 (joint) or per dex^2 (conditional on z)"},
        "definitions": {
            "ridge": "mode of p(log SFR | log M, z), smoothed with a Gaussian of ridge_smoothing "
                     "dex, above the star-forming-branch cut log sSFR > log10(doubling_cut / t_age(z)); "
                     "ridge_p50 is the mode of the ensemble-averaged density (ridge_estimator 'pooled') "
                     "or the members' median ('median'); ridge_p16/p84 are ridge_p50 -+ t_{K-1}(0.84) x the "
                     "members' standard deviation (popmodel.flow.sfs.ridge_band)",
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
        if "inputs" in extra:
            meta["input_files"] = input_records(extra["inputs"])
    return to_jsonable(meta)


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
    fit: SFSFit, out: str | Path, *, extra_meta: dict | None = None,
    figures: Callable[[SFSFit, Path], list[str]] | None = None,
    manifest_config: Mapping | None = None,
) -> dict[str, list[str]]:
    """Write ``sfs.ecsv``, ``eq10_fits.ecsv``, ``flows/member_k.pt``, ``training.json``,
    ``summary.json``, ``survey.toml`` (when the fit has a survey) and, through ``figures``, the
    figures.

    The files are written into a staging folder and committed into ``out`` together, with a
    manifest (:mod:`popmodel.io.resultdir`) that also lists the member checkpoints already in
    ``out/checkpoints``; every file's metadata carries the manifest's ``run_id``.

    Args:
        fit: The fit.
        out: Output directory (created).
        extra_meta: Extra provenance; an ``inputs`` entry naming files gets their checksums.
        figures: Draws the figures into the staging folder, inside the same commit:
            ``figures(fit, folder)`` returns the written paths. The command line passes
            :func:`popmodel.plots.sfs.sfs_result_figures` (``sfs.png/pdf``, ``training.png``).
            None (default): no figures.
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
    with staged(out, step="sfs", config=to_jsonable(dict(config)), keep=keep) as stage:
        meta = provenance(fit, extra_meta)
        meta["run_id"] = stage.run_id
        meta["result_schema_version"] = SCHEMA_VERSION
        if figures is True:
            raise TypeError("figures must be a callable (e.g. popmodel.plots.sfs.sfs_result_figures) "
                            "or None")
        written = _write_sfs_files(fit, stage.path, meta, figures or None)
    return stage.finals(written)


def _write_sfs_files(fit: SFSFit, out: Path, meta: dict, figures: Callable | None
                     ) -> dict[str, list[str]]:
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
    with_units(t)
    t.write(out / "sfs.ecsv", format="ascii.ecsv", overwrite=True)
    written["sfs"] = [str(out / "sfs.ecsv")]

    eq = with_units(_eq10_table(fit, meta))
    eq.write(out / "eq10_fits.ecsv", format="ascii.ecsv", overwrite=True)
    written["eq10"] = [str(out / "eq10_fits.ecsv")]

    from popmodel.flow.fit import save_flow

    (out / "flows").mkdir(exist_ok=True)
    written["flows"] = []
    for k, f in enumerate(fit.flows):
        path = out / "flows" / f"member_{k}.pt"
        save_flow(f, path, extra={"member": k, "seed": fit.config.train.seed + k,
                                  "popmodel_version": meta["popmodel_version"],
                                  "run_id": meta["run_id"]})
        written["flows"].append(str(path))

    (out / "training.json").write_text(dumps([r.to_dict() for r in fit.results], indent=1))
    written["training"] = [str(out / "training.json")]
    summary = dict(meta)
    summary["eq10"] = {k: (None if v is None else {"params": v.params, "errors": v.errors, "rms": v.rms})
                       for k, v in fit.eq10.items()}
    (out / "summary.json").write_text(dumps(summary, indent=1))
    written["summary"] = [str(out / "summary.json")]

    if figures is not None:
        written["figures"] = list(figures(fit, out))
    return written


# ------------------------------------------------------------------------------------------
# the results API


class SFSResult:
    """A sequence result folder, read back: the ensemble's flows and what they imply.

    :meth:`ridge` evaluates every stored member (``flows/member_k.pt``) exactly as
    :func:`popmodel.flow.fit.sfs_table` wrote ``sfs.ecsv`` (same log SFR grid, smoothing,
    star-forming cut, cosmology and central estimator, read from ``summary.json``), so on the
    table's nodes it returns the table's ridge. Each call evaluates every member's density on
    the log SFR grid (801 points by default): about a millisecond per (member, node) on a CPU.

    Attributes:
        path: The folder.
        meta: ``summary.json``.
        table: ``sfs.ecsv``.
        survey: The fit's survey (``survey.toml``) or None.
    """

    def __init__(self, path: str | Path, meta: dict, table: Table, survey: object | None) -> None:
        self.path = Path(path)
        self.meta = meta
        self.table = table
        self.survey = survey
        self._flows: list | None = None

    def __repr__(self) -> str:
        return f"SFSResult({str(self.path)!r}, {len(self.member_files)} members)"

    @property
    def member_files(self) -> list[Path]:
        """``flows/member_k.pt`` in member order."""
        files = list((self.path / "flows").glob("member_*.pt"))
        return sorted(files, key=lambda p: int(p.stem.rsplit("_", 1)[1]))

    @property
    def flows(self) -> list:
        """The ensemble (:class:`popmodel.flow.model.SFSFlow`, loaded once)."""
        if self._flows is None:
            from popmodel.flow.fit import load_flow

            self._flows = [load_flow(p) for p in self.member_files]
        return self._flows

    @property
    def cosmology(self) -> object | None:
        """The survey's cosmology (the star-forming cut's ages); None: WMAP9."""
        return None if self.survey is None else self.survey.cosmology

    def member_statistics(self, log_mass: np.ndarray, z: np.ndarray) -> tuple[list, object]:
        """Each member's and the pooled :class:`popmodel.flow.sfs.SequenceStatistics`."""
        from scipy.special import logsumexp

        from popmodel.flow.sfs import DEFAULT_DOUBLING_CUT, sequence_statistics

        cfg = self.meta.get("config", {})
        lo, hi, step = cfg.get("sfr_grid", (-4.0, 4.0, 0.01))
        grid = np.arange(lo, hi + step / 2, step)
        kw = {"doubling_cut": cfg.get("doubling_cut", DEFAULT_DOUBLING_CUT),
              "ridge_smoothing": cfg.get("ridge_smoothing", 0.1), "cosmology": self.cosmology}
        log_dens = [f.conditional_log_density(log_mass, z, grid) for f in self.flows]
        stats = [sequence_statistics(grid, lp, log_mass, z, **kw) for lp in log_dens]
        pooled = sequence_statistics(grid, logsumexp(np.stack(log_dens), axis=0) - np.log(len(log_dens)),
                                     log_mass, z, **kw)
        return stats, pooled

    def ridge(self, log_mass: object, z: object) -> QTable:
        """The ridge of the sequence [log10 Msun/yr] at (log M, z) pairs.

        Args:
            log_mass: log10 stellar mass(es) [Msun]; broadcast against ``z``.
            z: Redshift(s).

        Returns:
            QTable with ``log_mass``, ``z``, ``ridge_p16/p50/p84`` (dex, as
            :func:`popmodel.flow.sfs.ridge_columns` gives them: p50 as the fit's
            ``ridge_estimator``, the mode of the ensemble-averaged density or the members'
            median; p16/p84 the Student-t band of :func:`popmodel.flow.sfs.ridge_band` about it) and ``ridge_n_members`` (members with a ridge
            above the star-forming cut).
        """
        from astropy.table import QTable

        from popmodel.flow.sfs import ridge_columns

        m, zz = (np.atleast_1d(a).astype(float).ravel() for a in
                 np.broadcast_arrays(np.asarray(log_mass, float), np.asarray(z, float)))
        stats, pooled = self.member_statistics(m, zz)
        arr = np.stack([s.ridge for s in stats])
        lo, mid, hi, _ = ridge_columns(arr, pooled.ridge,
                                       self.meta.get("config", {}).get("ridge_estimator", "pooled"))
        unit = u.dex(u.Msun / u.yr)
        return QTable({"log_mass": m * u.dex(u.Msun), "z": zz, "ridge_p16": lo * unit,
                       "ridge_p50": mid * unit, "ridge_p84": hi * unit,
                       "ridge_n_members": np.sum(np.isfinite(arr), 0)})


def load_sfs(path: str | Path) -> SFSResult:
    """Read a sequence result folder (``sfs.ecsv``, ``summary.json``, ``flows/``, ``survey.toml``).

    Raises:
        InputError: The folder has no ``sfs.ecsv``.
    """
    import json

    from popmodel.errors import InputError

    d = Path(path)
    if not (d / "sfs.ecsv").is_file():
        raise InputError(f"{d} holds no sequence result (no sfs.ecsv)")
    t = Table.read(d / "sfs.ecsv", format="ascii.ecsv")
    meta = json.loads((d / "summary.json").read_text()) if (d / "summary.json").is_file() else dict(t.meta)
    survey = None
    if (d / "survey.toml").is_file():
        from popmodel.survey import Survey

        survey = Survey.read(d / "survey.toml")
    return SFSResult(d, meta, t, survey)
