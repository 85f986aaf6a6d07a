"""Result files of a mass-function fit: netCDF posterior, ECSV tables, figures, all with provenance.

Every file records the popmodel version, the fit configuration, seeds, cosmology, IMF, priors,
the selection report and which anchors are extrapolations.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import warnings
from collections.abc import Mapping
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.table import Table

from popmodel._version import __version__
from popmodel.cosmology import cosmology_to_config, describe_cosmology
from popmodel.smf.derived import log10_phi_draws, log10_rho_star, percentile_bands
from popmodel.smf.evolution import leja2020_params
from popmodel.smf.fit import SMFFit
from popmodel.units import IMF, MASS_DEFINITION

__all__ = ["provenance", "write_smf_results"]

RHO_Z_GRID = np.round(np.arange(0.2, 3.0001, 0.05), 4)


def _jsonable(x: object) -> object:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return x.tolist() if x.size < 1000 else f"<array shape {x.shape}>"
    if isinstance(x, np.generic):
        return x.item()
    return x


def provenance(fit: SMFFit, extra: dict | None = None) -> dict:
    """Metadata written into every result file."""
    import jax
    import numpyro

    cosmo = fit.data.survey.cosmology
    try:
        cosmo_cfg = cosmology_to_config(cosmo)
    except ValueError:
        cosmo_cfg = {"repr": repr(cosmo)}
    meta = {
        "popmodel_version": __version__,
        "created_utc": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": fit.config.to_dict(),
        "seeds": {"nuts_and_bootstrap_seed": fit.config.seed,
                  "catalog_seed": fit.data.catalog.meta.get("seed")},
        "cosmology": describe_cosmology(cosmo),
        "cosmology_config": cosmo_cfg,
        "imf": IMF,
        "mass_definition": MASS_DEFINITION,
        "units": {"phi": "Mpc-3 dex-1 (comoving, no h)", "rho_star": "Msun Mpc-3 (comoving)"},
        "priors": fit.prior.describe(),
        "survey": fit.data.survey.to_dict() if _survey_ok(fit) else fit.data.survey.name,
        "selection": fit.config.selection,
        "selection_report": fit.data.report.as_dict(),
        "data_z_range": list(fit.data.z_data_range),
        "extrapolated_anchors": list(fit.extrapolated_anchors),
        "catalog_provenance": _jsonable({k: v for k, v in fit.data.catalog.meta.items()
                                         if k not in ("true_params",)}),
        "diagnostics": _jsonable({k: v for k, v in fit.diagnostics.items()}),
        "mc_error": _jsonable({k: v for k, v in fit.mc_error.items() if not isinstance(v, np.ndarray)}),
        "mc_bootstrap_rms_shift_sigma": _jsonable(fit.bootstrap.get("rms_shift_sigma", {})),
        "mc_bootstrap_status": fit.bootstrap.get("status"),
        "mc_bootstrap_max_rms_shift_sigma": _jsonable(fit.bootstrap.get("max_rms_shift_sigma")),
        "compression_check": _jsonable(fit.compression),
        "warnings": list(fit.warnings),
        "timing_s": _jsonable(fit.timing),
        "software": {"python": platform.python_version(), "jax": jax.__version__,
                     "numpyro": numpyro.__version__, "numpy": np.__version__},
    }
    if extra:
        meta.update(_jsonable(extra))
    return meta


def _survey_ok(fit: SMFFit) -> bool:
    try:
        fit.data.survey.to_dict()
    except ValueError:
        return False
    return True


def write_smf_results(fit: SMFFit, out: str | Path, *, extra_meta: dict | None = None,
                      figures: bool = True, model_checks: bool = True,
                      manifest_config: Mapping | None = None) -> dict[str, list[str]]:
    """Write ``smf_posterior.nc``, ``smf_parameters.ecsv``, ``rho_star.ecsv``, ``smf_phi.ecsv``,
    ``summary.json``, ``survey.toml`` (when the survey can be written as TOML) and the figures
    (``smf``, ``rho_star``, ``corner`` as PNG and PDF).

    With ``model_checks`` (default) also the posterior predictive check and the 1/Vmax SMF of
    :func:`popmodel.smf.checks.write_model_checks` with its default bins and 200 posterior
    draws: ``ppc_counts.ecsv``, ``vmax_smf.ecsv`` and the figures ``ppc_counts`` and
    ``vmax_smf``; the 95% predictive coverage of the populated (field, log M, z) bins goes into
    ``summary.json`` under ``model_checks``.

    The files are written into a staging folder and committed into ``out`` together, with a
    manifest (:mod:`popmodel.io.resultdir`): an interrupted write never leaves new files beside old
    ones, and the files of an earlier popmodel result in ``out`` are replaced, not left stale.
    Every file's metadata carries the ``run_id`` of the manifest.

    Args:
        manifest_config: The settings recorded in the manifest (``--resume`` compares them);
            default the fit configuration.

    Returns:
        Mapping of kind -> written paths.
    """
    from popmodel.io.resultdir import SCHEMA_VERSION, staged

    config = manifest_config if manifest_config is not None else fit.config.to_dict()
    with staged(out, step="smf", config=_jsonable(dict(config))) as stage:
        meta = provenance(fit, extra_meta)
        meta["run_id"] = stage.run_id
        meta["result_schema_version"] = SCHEMA_VERSION
        written = _write_smf_files(fit, stage.path, meta, figures=figures,
                                   model_checks=model_checks)
    return stage.finals(written)


def _write_smf_files(fit: SMFFit, out: Path, meta: dict, *, figures: bool,
                     model_checks: bool) -> dict[str, list[str]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz's once-a-day refactor notice
        import arviz as az

    written: dict[str, list[str]] = {}
    if _survey_ok(fit):
        fit.data.survey.write(out / "survey.toml")
        written["survey"] = [str(out / "survey.toml")]

    # posterior (netCDF4/HDF5 via h5netcdf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if fit.mcmc is not None:
            idata = az.from_numpyro(fit.mcmc)
        else:
            idata = az.from_dict(posterior=fit.samples)
    idata.posterior.attrs.update({k: json.dumps(v) if not isinstance(v, str) else v
                                  for k, v in meta.items()})
    nc = out / "smf_posterior.nc"
    idata.to_netcdf(str(nc), engine="h5netcdf")
    written["posterior"] = [str(nc)]

    # parameters
    names = fit.names
    q = np.array([np.percentile(fit.samples[n].reshape(-1), [16, 50, 84]) for n in names])
    par = Table(
        {
            "name": names,
            "p16": q[:, 0], "p50": q[:, 1], "p84": q[:, 2],
            "map": [fit.map.params[n] for n in names],
            "laplace_sigma": [fit.map.sigma[n] for n in names],
            "r_hat": [fit.diagnostics["r_hat"][n] for n in names],
            "ess_bulk": [fit.diagnostics["ess_bulk"][n] for n in names],
            "extrapolated": [_is_extrap(n, fit.extrapolated_anchors) for n in names],
        },
        meta=dict(meta),
    )
    par.meta["comments"] = [("log_phi in log10 Mpc^-3 dex^-1; log_mstar in log10 Msun; "
                            "extrapolated = anchor redshift outside the data's z range")]
    par.write(out / "smf_parameters.ecsv", format="ascii.ecsv", overwrite=True)
    written["parameters"] = [str(out / "smf_parameters.ecsv")]

    # rho_*(z)
    draws = fit.draws()
    z = RHO_Z_GRID
    lr = log10_rho_star(draws, z, 8.0, 13.0)  # (D, Z)
    b = percentile_bands(lr)
    zlo, zhi = fit.data.z_data_range
    rho = Table(
        {
            "z": z,
            "log_rho_star_p16": b[0] * u.dex(u.Msun / u.Mpc**3),
            "log_rho_star_p50": b[1] * u.dex(u.Msun / u.Mpc**3),
            "log_rho_star_p84": b[2] * u.dex(u.Msun / u.Mpc**3),
            "extrapolated": (z < zlo) | (z > zhi),
        },
        meta=dict(meta, mass_range_log10_msun=[8.0, 13.0]),
    )
    rho.write(out / "rho_star.ecsv", format="ascii.ecsv", overwrite=True)
    written["rho_star"] = [str(out / "rho_star.ecsv")]

    # Phi(log M, z) bands
    lm = np.round(np.arange(8.0, 12.01, 0.05), 3)
    zp = np.array([0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0])
    rows = []
    bands = np.empty((3, zp.size, lm.size))
    for k, zz in enumerate(zp):
        bands[:, k, :] = percentile_bands(log10_phi_draws(draws, lm, zz))
        for j, m in enumerate(lm):
            rows.append((zz, m, *bands[:, k, j], bool(zz < zlo or zz > zhi)))
    phi = Table(rows=rows, names=("z", "log_mass", "log_phi_p16", "log_phi_p50", "log_phi_p84", "extrapolated"),
                meta=dict(meta))
    for c in ("log_phi_p16", "log_phi_p50", "log_phi_p84"):
        phi[c].unit = u.dex(u.Mpc**-3)
    phi["log_mass"].unit = u.dex(u.Msun)
    phi.write(out / "smf_phi.ecsv", format="ascii.ecsv", overwrite=True)
    written["phi"] = [str(out / "smf_phi.ecsv")]

    # cosmic-variance density terms (field x redshift slice)
    dens = fit.data.density
    if dens is not None and fit.prior.density_terms:
        qd = np.array([np.percentile(fit.samples[n].reshape(-1), [16, 50, 84]) for n in dens.labels])
        names_f = [fit.data.survey.fields[i].name for i in dens.field_index]
        dt = Table({"name": list(dens.labels), "field": names_f, "z_lo": dens.z_lo, "z_hi": dens.z_hi,
                    "sigma_dm_prior": dens.sigma_dm, "delta_p16": qd[:, 0], "delta_p50": qd[:, 1],
                    "delta_p84": qd[:, 2]}, meta=dict(meta))
        dt.meta["comments"] = [("delta: dark-matter density contrast of the field's volume in the "
                               "slice; galaxies of mass M scale as exp(b(M,z) delta - b^2 sigma^2/2)")]
        dt.write(out / "density_terms.ecsv", format="ascii.ecsv", overwrite=True)
        written["density_terms"] = [str(out / "density_terms.ecsv")]

    if model_checks:
        from popmodel.smf.checks import write_model_checks

        # 200 draws (5 per tail of the 95% interval): the predictive costs one (nodes x bins)
        # matrix product per draw and field, minutes for the five 3D-HST fields
        chk = write_model_checks(fit, out, figures=figures, meta=meta, max_draws=200)
        meta = dict(meta, model_checks={k: chk[k] for k in ("coverage", "level", "n_scored")})
        written["model_checks"] = chk["files"]

    (out / "summary.json").write_text(json.dumps(_jsonable(meta), indent=1))
    written["summary"] = [str(out / "summary.json")]

    if figures:
        written["figures"] = _figures(fit, out, lm, zp, bands, z, b)
    return written


def _is_extrap(name: str, extrap: list[float]) -> bool:
    if "_z" not in name:
        return False
    return any(abs(float(name.rsplit("_z", 1)[1]) - z) < 1e-9 for z in extrap)


def _figures(fit: SMFFit, out: Path, lm: np.ndarray, zp: np.ndarray, bands: np.ndarray,
             z: np.ndarray, rho_b: np.ndarray) -> list[str]:
    from popmodel.literature import tomczak2014_smf
    from popmodel.plots.smf import plot_corner, plot_rho_star, plot_smf, save
    from popmodel.smf.schechter import log10_phi

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
        from popmodel.plots.smf import plot_density_terms

        paths += save(plot_density_terms(fit.data.density, fit.samples), str(out / "density_terms"))
    return paths
