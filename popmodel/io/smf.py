r"""Result files of a mass-function fit, written and read here: netCDF posterior, ECSV tables.

**Writing** (:func:`write_smf_results`): ``smf_posterior.nc`` (ArviZ InferenceData),
``smf_parameters.ecsv``, ``rho_star.ecsv``, ``smf_phi.ecsv``, ``density_terms.ecsv``, the
model checks, ``summary.json`` and ``survey.toml``. Figures are the caller's: pass a
``figures`` callable (the command line passes :func:`popmodel.plots.smf.smf_result_figures`),
which is called inside the same staged commit. Every file records the popmodel version, the
fit configuration, seeds, cosmology, IMF, priors, the selection report, which anchors are
extrapolations, the input files with their SHA-256 checksums and the result schema version.

**The posterior file** (``smf_posterior.nc``, netCDF4/HDF5 through h5netcdf):

- ``posterior``: ``log_phi1``, ``log_phi2``, ``log_mstar`` over (chain, draw, ``anchor_z``),
  ``alpha1``, ``alpha2`` over (chain, draw), and, with cosmic variance, ``delta`` over
  (chain, draw, ``density_term``) with the coordinates ``field``, ``z_lo``, ``z_hi`` and
  ``sigma_dm`` along ``density_term`` (the slices are ragged across fields). Every variable
  carries ``units`` and ``long_name``; the group's attributes hold the provenance, flattened
  (``config.method``, ``seeds.catalog_seed``, ...; see :func:`popmodel.io.meta.flatten_attrs`),
  ``result_schema_version`` and ``inference_method`` (``"nuts"`` or ``"laplace"``).
- ``auxiliary``: ``delta_eta = delta / sigma_dm`` (standard-normal a priori), kept out of
  ``posterior`` so that ``corner`` and ``az.summary`` show the physical parameters; it is the
  non-centred variable NUTS samples, except for fields inside others, whose terms NUTS samples
  as ``delta = L eta`` (:mod:`popmodel.smf.density`).
- ``sample_stats`` (NUTS only): ``energy``, ``diverging``, ``tree_depth``, ``n_steps``,
  ``lp``, ``acceptance_rate``, ``step_size``, so that ``az.bfmi`` works. Laplace draws are
  independent draws of a Gaussian approximation, stored as **one chain** with no
  ``sample_stats`` (R-hat and BFMI do not apply).
- ``log_likelihood`` (opt-in, ``pointwise_log_likelihood=True``): one variable ``smf`` over
  ``term``: the galaxies, then minus the expected number per (field, redshift slice)
  (:mod:`popmodel.smf.pointwise`); ``az.loo(idata)`` then runs without arguments. It holds
  draws x (galaxies + slices) float64 numbers (4,000 draws of 40,000 galaxies: 1.3 GB), and
  its Pareto-k values are a heuristic: the expected-number terms are not exchangeable
  observations and usually show k > 0.7.

The parameter names with the anchor baked in (``log_phi1_z0.2``) remain the row names of
``smf_parameters.ecsv`` only. Posterior files of the previous layout (baked names in the
``posterior`` group) are still read.

**Reading**: :func:`load_smf` (``popmodel.SMFFit.load``) returns an :class:`SMFResult` whose
``phi`` and ``rho_star`` evaluate the stored draws at any (log M, z);
:func:`read_smf_posterior` returns the draws.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.units as u
import numpy as np

from popmodel._version import __version__
from popmodel.errors import InputError
from popmodel.io.meta import flatten_attrs, input_records, unflatten_attrs, with_units
from popmodel.jsonutil import dumps, to_jsonable
from popmodel.units import MASS_DEFINITION, Z_GRID, imf_label

if TYPE_CHECKING:  # jax is imported when a fit is written or draws are evaluated
    from astropy.table import QTable, Table

    from popmodel.smf.evolution import ContinuityParams
    from popmodel.smf.fit import SMFFit

__all__ = [
    "PHI_LOG_MASS",
    "PHI_Z",
    "POSTERIOR_FILE",
    "RHO_Z_GRID",
    "SMFPosterior",
    "SMFResult",
    "fit_to_inferencedata",
    "load_smf",
    "provenance",
    "read_smf_posterior",
    "write_smf_posterior",
    "write_smf_results",
]

POSTERIOR_FILE = "smf_posterior.nc"
#: Redshifts of ``rho_star.ecsv``.
RHO_Z_GRID = Z_GRID  # the one z grid of tabulated outputs (popmodel.units)
#: Masses and redshifts of ``smf_phi.ecsv``.
PHI_LOG_MASS = np.round(np.arange(8.0, 12.01, 0.05), 3)
PHI_Z = np.array([0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0])

ANCHOR_DIM = "anchor_z"
DENSITY_DIM = "density_term"
ANCHORED = ("log_phi1", "log_phi2", "log_mstar")
LOG_PHI_UNIT = u.dex(u.Mpc**-3)  # per dex of stellar mass, as in smf_phi.ecsv
LOG_MASS_UNIT = u.dex(u.Msun)
#: ``units`` and ``long_name`` of the posterior variables.
VARIABLE_ATTRS = {
    "log_phi1": (LOG_PHI_UNIT, ("log10 phi1*, normalisation of the massive Schechter component "
                 "at the anchor redshift [per Mpc^3 per dex, comoving]")),
    "log_phi2": (LOG_PHI_UNIT, ("log10 phi2*, normalisation of the low-mass Schechter component "
                 "at the anchor redshift [per Mpc^3 per dex, comoving]")),
    "log_mstar": (LOG_MASS_UNIT, "log10 M*, characteristic mass at the anchor redshift [Msun]"),
    "alpha1": (u.dimensionless_unscaled, "low-mass slope of the massive component"),
    "alpha2": (u.dimensionless_unscaled, "low-mass slope of the low-mass component"),
    "delta": (u.dimensionless_unscaled, ("dark-matter density contrast of the field's volume "
              "in the redshift slice (cosmic variance)")),
    "delta_eta": (u.dimensionless_unscaled, ("delta / sigma_dm, standard normal a priori (the "
                  "variable NUTS samples, but for fields inside others: delta = L eta)")),
}


# ------------------------------------------------------------------------------------------
# provenance


def provenance(fit: SMFFit, extra: dict | None = None) -> dict:
    """Metadata written into every result file (``extra`` merged in; an ``inputs`` entry
    naming files also gets ``input_files`` with their sizes and SHA-256 checksums)."""
    import jax
    import numpyro

    from popmodel.cosmology import cosmology_to_config, describe_cosmology

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
        "imf": imf_label(getattr(fit.data.survey, "imf", None)),
        "mass_definition": MASS_DEFINITION,
        "units": {"phi": "Mpc-3 dex-1 (comoving, no h)", "rho_star": "Msun Mpc-3 (comoving)"},
        "priors": fit.prior.describe(),
        "density_term_prior": _density_term_prior(getattr(fit.data, "density", None)),
        "survey": fit.data.survey.to_dict() if _survey_ok(fit) else fit.data.survey.name,
        "selection": fit.config.selection,
        "selection_report": fit.data.report.as_dict(),
        "data_z_range": list(fit.data.z_data_range),
        "extrapolated_anchors": list(fit.extrapolated_anchors),
        "catalog_provenance": {k: v for k, v in fit.data.catalog.meta.items()
                               if k not in ("true_params", "compression")},
        "diagnostics": dict(fit.diagnostics),
        "mc_error": {k: v for k, v in fit.mc_error.items() if not isinstance(v, np.ndarray)},
        "mc_bootstrap_rms_shift_sigma": fit.bootstrap.get("rms_shift_sigma", {}),
        "mc_bootstrap_status": fit.bootstrap.get("status"),
        "mc_bootstrap_max_rms_shift_sigma": fit.bootstrap.get("max_rms_shift_sigma"),
        "compression_check": fit.compression,
        "quadrature_error": getattr(fit, "quadrature_error", {}),
        "warnings": list(fit.warnings),
        "timing_s": fit.timing,
        "software": {"python": platform.python_version(), "jax": jax.__version__,
                     "numpyro": numpyro.__version__, "numpy": np.__version__},
    }
    if extra:
        meta.update(extra)
        if "inputs" in extra:
            meta["input_files"] = input_records(extra["inputs"])
    return to_jsonable(meta)


def _density_term_prior(density) -> dict | None:
    """The density terms' prior: N(0, sigma_DM^2) each, or, where fields lie inside others,
    one multivariate normal whose covariance is recorded (labels in order)."""
    if density is None:
        return None
    out = {"labels": list(density.labels), "sigma_dm": [float(v) for v in density.sigma_dm]}
    if density.cov is None:
        out["form"] = "independent normals N(0, sigma_dm^2)"
    else:
        out["form"] = ("multivariate normal: fields inside others share their parent's "
                       "variance (Cov(delta_child, delta_parent) = sigma_dm(parent)^2)")
        out["covariance"] = np.asarray(density.cov, float).tolist()
    return out


def _survey_ok(fit: SMFFit) -> bool:
    try:
        fit.data.survey.to_dict()
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------------------------------
# the posterior file


def _anchor_label(z: float) -> str:
    from popmodel.smf.evolution import parameter_names

    return parameter_names((z,))[0].rsplit("_z", 1)[1]


def _set_attrs(ds: Any) -> None:
    for name, var in ds.data_vars.items():
        if name in VARIABLE_ATTRS:
            unit, long_name = VARIABLE_ATTRS[name]
            var.attrs.update({"units": unit.to_string(), "long_name": long_name})


def write_smf_posterior(
    path: str | Path,
    samples: Mapping[str, np.ndarray],
    anchor_z: tuple[float, ...],
    *,
    density: Mapping[str, np.ndarray] | None = None,
    method: str = "nuts",
    sample_stats: Mapping[str, np.ndarray] | None = None,
    log_likelihood: Mapping[str, Any] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Write a posterior in the layout of the module doc (see :func:`fit_to_inferencedata`).

    Args:
        path: The netCDF file.
        samples: ``{name: (chains, draws)}`` keyed by
            :func:`popmodel.smf.evolution.parameter_names` (and density-term labels).
        anchor_z: The anchor redshifts.
        density: ``labels``, ``field``, ``z_lo``, ``z_hi``, ``sigma_dm`` of the density terms.
        method: ``"nuts"``, ``"laplace"`` (flattened into one chain) or ``"draws"``.
        sample_stats: ``{name: (chains, draws)}`` sampler statistics.
        log_likelihood: the output of :func:`popmodel.smf.pointwise.pointwise_log_likelihood`
            with arrays of shape (chains, draws, ...).
        attrs: Provenance (nested; flattened into attributes).
    """
    idata = _inferencedata(samples, anchor_z, density=density, method=method,
                           sample_stats=sample_stats, log_likelihood=log_likelihood, attrs=attrs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    idata.to_netcdf(str(path), engine="h5netcdf")
    return path


def _inferencedata(samples: Mapping[str, np.ndarray], anchor_z: tuple[float, ...], *,
                   density: Mapping[str, np.ndarray] | None, method: str,
                   sample_stats: Mapping[str, np.ndarray] | None,
                   log_likelihood: Mapping[str, Any] | None,
                   attrs: Mapping[str, Any] | None) -> Any:
    import xarray as xr

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # arviz's refactor notice
        import arviz as az

    from popmodel.io.resultdir import SCHEMA_VERSION

    anchor_z = tuple(float(z) for z in anchor_z)
    shape = np.shape(samples["alpha1"])
    if len(shape) == 1:
        samples = {k: np.asarray(v)[None] for k, v in samples.items()}
    if method == "laplace":  # independent draws: one chain
        samples = {k: np.asarray(v).reshape(1, -1) for k, v in samples.items()}
    n_chain, n_draw = np.shape(samples["alpha1"])
    coords = {"chain": np.arange(n_chain), "draw": np.arange(n_draw), ANCHOR_DIM: np.array(anchor_z)}
    data = {}
    for base in ANCHORED:
        arr = np.stack([np.asarray(samples[f"{base}_z{_anchor_label(z)}"], float) for z in anchor_z],
                       axis=-1)
        data[base] = (("chain", "draw", ANCHOR_DIM), arr)
    for name in ("alpha1", "alpha2"):
        data[name] = (("chain", "draw"), np.asarray(samples[name], float))
    aux = None
    if density is not None and len(density["labels"]):
        labels = [str(s) for s in density["labels"]]
        delta = np.stack([np.asarray(samples[lab], float) for lab in labels], axis=-1)
        data["delta"] = (("chain", "draw", DENSITY_DIM), delta)
        coords[DENSITY_DIM] = np.array(labels)
        dcoords = {k: ((DENSITY_DIM,), np.asarray(density[k])) for k in ("field", "z_lo", "z_hi",
                                                                          "sigma_dm")}
        sig = np.asarray(density["sigma_dm"], float)
        aux = xr.Dataset({"delta_eta": (("chain", "draw", DENSITY_DIM), delta / sig)},
                         coords={"chain": coords["chain"], "draw": coords["draw"],
                                 DENSITY_DIM: coords[DENSITY_DIM], **dcoords})
        coords.update(dcoords)
    post = xr.Dataset(data, coords=coords)
    _set_attrs(post)
    top = dict(flatten_attrs(dict(attrs or {})))
    top.update({"result_schema_version": SCHEMA_VERSION, "inference_method": method,
                "created_by": f"popmodel {__version__}"})
    post.attrs.update(top)
    groups = {"posterior": post}
    stamp = {"result_schema_version": SCHEMA_VERSION, "inference_method": method}
    if aux is not None:
        _set_attrs(aux)
        aux.attrs.update(stamp, description="non-centred auxiliary variables of the sampler")
        groups["auxiliary"] = aux
    if sample_stats:
        ss = xr.Dataset({k: (("chain", "draw"), np.asarray(v)) for k, v in sample_stats.items()},
                        coords={"chain": coords["chain"], "draw": coords["draw"]})
        ss.attrs.update(stamp)
        groups["sample_stats"] = ss
    if log_likelihood is not None:
        ll = log_likelihood
        n_gal = np.shape(ll["galaxy"])[-1]
        n_exp = np.shape(ll["expected"])[-1]
        vals = np.concatenate([ll["galaxy"], ll["expected"]], axis=-1)
        kind = np.array(["galaxy"] * n_gal + ["expected_number"] * n_exp)
        nan = np.full(n_gal, np.nan)
        lds = xr.Dataset(
            {"smf": (("chain", "draw", "term"), vals)},
            coords={"chain": coords["chain"], "draw": coords["draw"], "term": np.arange(n_gal + n_exp),
                    "kind": ("term", kind),
                    "galaxy_id": ("term", np.concatenate([np.asarray(ll["galaxy_id"], str),
                                                          np.full(n_exp, "")])),
                    "field": ("term", np.concatenate([np.full(n_gal, ""), np.asarray(ll["field"], str)])),
                    "z_lo": ("term", np.concatenate([nan, ll["z_lo"]])),
                    "z_hi": ("term", np.concatenate([nan, ll["z_hi"]]))})
        lds["smf"].attrs.update({"units": "", "long_name": "pointwise ln L: galaxy terms, then minus "
                                 "the expected number per (field, redshift slice)"})
        lds.attrs.update(stamp)
        groups["log_likelihood"] = lds
    return az.InferenceData(**groups)


def _density_info(fit: SMFFit) -> dict[str, np.ndarray] | None:
    dens = fit.data.density
    if dens is None or not fit.prior.density_terms:
        return None
    return {"labels": np.array(dens.labels), "z_lo": np.asarray(dens.z_lo, float),
            "z_hi": np.asarray(dens.z_hi, float), "sigma_dm": np.asarray(dens.sigma_dm, float),
            "field": np.array([fit.data.survey.fields[i].name for i in dens.field_index])}


def _sample_stats(fit: SMFFit) -> dict[str, np.ndarray] | None:
    if fit.mcmc is None:
        return None
    extra = fit.mcmc.get_extra_fields(group_by_chain=True)
    out = {}
    rename = {"diverging": "diverging", "energy": "energy", "num_steps": "n_steps",
              "accept_prob": "acceptance_rate", "adapt_state.step_size": "step_size"}
    for k, name in rename.items():
        if k in extra:
            out[name] = np.asarray(extra[k])
    if "potential_energy" in extra:
        out["lp"] = -np.asarray(extra["potential_energy"], float)
    if "num_steps" in extra:  # as ArviZ's from_numpyro defines it
        out["tree_depth"] = np.log2(np.maximum(np.asarray(extra["num_steps"]), 1)).astype(int) + 1
    return out


def fit_to_inferencedata(fit: SMFFit, meta: Mapping[str, Any] | None = None, *,
                         pointwise_log_likelihood: bool = False) -> Any:
    """The fit's posterior as ArviZ InferenceData in the layout of the module doc."""
    method = fit.config.method if fit.mcmc is not None or fit.config.method == "laplace" else "draws"
    keep = list(fit.names) + list(fit.prior.density_terms)
    samples = {k: np.asarray(fit.samples[k], float) for k in keep if k in fit.samples}
    ll = None
    if pointwise_log_likelihood:
        ll = _pointwise(fit, samples)
    return _inferencedata(samples, fit.prior.anchor_z, density=_density_info(fit), method=method,
                          sample_stats=_sample_stats(fit), log_likelihood=ll, attrs=meta)


def _pointwise(fit: SMFFit, samples: Mapping[str, np.ndarray]) -> dict[str, Any]:
    from popmodel.smf.evolution import ContinuityParams
    from popmodel.smf.pointwise import pointwise_log_likelihood

    shape = np.shape(samples["alpha1"])
    if fit.mcmc is None:  # Laplace: one chain
        shape = (1, int(np.prod(shape)))
    flat = {k: np.asarray(v).reshape(-1) for k, v in samples.items()}
    p = ContinuityParams.from_dict(flat, fit.prior.anchor_z)
    terms = list(fit.prior.density_terms)
    delta = np.stack([flat[t] for t in terms], axis=-1) if terms else None
    ll = pointwise_log_likelihood(fit.data, p, delta, slice_dz=fit.config.slice_dz)
    for k in ("galaxy", "expected"):
        ll[k] = ll[k].reshape(*shape, -1)
    return ll


def _decode(v: Any) -> Any:
    return v.decode() if isinstance(v, bytes) else v


@dataclass
class SMFPosterior:
    """The draws of ``smf_posterior.nc``.

    Attributes:
        samples: ``{name: (chains, draws)}`` keyed by
            :func:`popmodel.smf.evolution.parameter_names` (the anchor baked into the name,
            as :meth:`popmodel.smf.evolution.ContinuityParams.from_dict` expects).
        anchor_z: The anchor redshifts.
        density: ``{label: (chains, draws)}`` of the density terms (empty without).
        meta: The provenance (unflattened attributes of the ``posterior`` group).
        method: ``"nuts"``, ``"laplace"``, ``"draws"`` or ``"unknown"`` (older files).
        path: The file.
    """

    samples: dict[str, np.ndarray]
    anchor_z: tuple[float, ...]
    density: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    method: str = "unknown"
    path: Path | None = None

    def flat(self) -> dict[str, np.ndarray]:
        """``{name: (chains * draws,)}``, chains concatenated."""
        return {k: np.asarray(v, float).reshape(-1) for k, v in self.samples.items()}

    def draws(self) -> ContinuityParams:
        """All draws as a batched :class:`popmodel.smf.evolution.ContinuityParams`."""
        from popmodel.smf.evolution import ContinuityParams

        return ContinuityParams.from_dict(self.flat(), self.anchor_z)


def _legacy_anchors(names: list[str]) -> tuple[float, ...]:
    zs = sorted(float(n.rsplit("_z", 1)[1]) for n in names if n.startswith("log_phi1_z"))
    if not zs:
        raise InputError(f"no log_phi1 (over anchor_z) or log_phi1_z* variables among {names}")
    return tuple(zs)


def read_smf_posterior(path: str | Path) -> SMFPosterior:
    """Read ``smf_posterior.nc`` (this layout, or the earlier one with baked names).

    Raises:
        InputError: The file is missing, truncated or corrupt, or lacks the parameters.
    """
    import xarray as xr

    from popmodel.smf.evolution import parameter_names

    nc = Path(path)
    try:
        with xr.open_dataset(nc, group="posterior", engine="h5netcdf") as ds:
            ds = ds.load()
    except FileNotFoundError:
        raise InputError(f"{nc} does not exist") from None
    except Exception as exc:  # noqa: BLE001 (h5py and xarray raise many types)
        if "posterior" in str(exc) and "group" in str(exc).lower():
            raise InputError(f"{nc} has no 'posterior' group") from None
        raise InputError(f"cannot read the SMF posterior {nc}: the file is truncated or corrupt "
                         f"({type(exc).__name__}: {exc})") from None
    attrs = {k: _decode(v) for k, v in ds.attrs.items()}
    if ANCHOR_DIM in ds.dims:
        anchors = tuple(float(z) for z in ds[ANCHOR_DIM].values)
        missing = [n for n in (*ANCHORED, "alpha1", "alpha2") if n not in ds]
        if missing:
            raise InputError(f"{nc}: posterior lacks {missing}")
        samples = {}
        for base in ANCHORED:
            arr = ds[base].transpose("chain", "draw", ANCHOR_DIM).values
            for k, z in enumerate(anchors):
                samples[f"{base}_z{_anchor_label(z)}"] = np.asarray(arr[..., k], float)
        for name in ("alpha1", "alpha2"):
            samples[name] = np.asarray(ds[name].transpose("chain", "draw").values, float)
        density = {}
        if "delta" in ds:
            arr = ds["delta"].transpose("chain", "draw", DENSITY_DIM).values
            density = {str(lab): np.asarray(arr[..., k], float)
                       for k, lab in enumerate(ds[DENSITY_DIM].values)}
        meta = unflatten_attrs(attrs)
    else:  # the layout before schema version 2: one variable per parameter, JSON attributes
        names = [str(k) for k in ds.data_vars]
        anchors = _legacy_anchors(names)
        need = parameter_names(anchors)
        missing = [n for n in need if n not in ds]
        if missing:
            raise InputError(f"{nc}: posterior lacks {missing}")
        samples = {n: np.asarray(ds[n].values, float).reshape(ds[n].shape[0], -1) for n in need}
        density = {n: np.asarray(ds[n].values, float) for n in names
                   if n.startswith("delta_") and not n.endswith("_eta")}
        meta = {}
        for k, v in attrs.items():
            try:
                meta[k] = json.loads(v) if isinstance(v, str) else v
            except ValueError:
                meta[k] = v
    method = str(meta.get("inference_method", "unknown"))
    return SMFPosterior(samples, anchors, density, meta, method, nc)


# ------------------------------------------------------------------------------------------
# the result folder


def write_smf_results(fit: SMFFit, out: str | Path, *, extra_meta: dict | None = None,
                      figures: Callable[[SMFFit, Path, dict], list[str]] | None = None,
                      model_checks: bool = True, manifest_config: Mapping | None = None,
                      pointwise_log_likelihood: bool = False,
                      check_figures: Callable[..., list[str]] | None = None) -> dict[str, list[str]]:
    """Write ``smf_posterior.nc``, ``smf_parameters.ecsv``, ``rho_star.ecsv``,
    ``smf_phi.ecsv``, ``density_terms.ecsv`` (with cosmic variance), ``summary.json`` and
    ``survey.toml`` (when the survey can be written as TOML).

    With ``model_checks`` (default) also the posterior predictive check and the 1/Vmax SMF of
    :func:`popmodel.smf.checks.write_model_checks` with its default bins and 200 posterior
    draws: ``ppc_counts.ecsv`` and ``vmax_smf.ecsv``; the 95% predictive coverage of the
    populated (field, log M, z) bins goes into ``summary.json`` under ``model_checks``.

    The files are written into a staging folder and committed into ``out`` together, with a
    manifest (:mod:`popmodel.io.resultdir`): an interrupted write never leaves new files beside old
    ones, and the files of an earlier popmodel result in ``out`` are replaced, not left stale.
    Every file's metadata carries the ``run_id`` of the manifest.

    Args:
        fit: The fit.
        out: The output folder.
        extra_meta: Extra provenance; an ``inputs`` entry naming files gets their checksums.
        figures: Draws the figures into the staging folder, inside the same commit:
            ``figures(fit, folder, products)`` returns the written paths; ``products`` holds
            the bands just computed (``phi``: (log_mass, z, bands (3, Z, M)); ``rho_star``:
            (z, bands (3, Z))). The command line passes
            :func:`popmodel.plots.smf.smf_result_figures`. None (default): no figures.
        model_checks: Write the model checks.
        check_figures: The figures of the model checks, the ``figures`` callback of
            :func:`popmodel.smf.checks.write_model_checks` (the command line passes
            :func:`popmodel.plots.checks.model_check_figures`); None: no figures.
        manifest_config: The settings recorded in the manifest (``--resume`` compares them);
            default the fit configuration.
        pointwise_log_likelihood: Also store the pointwise log-likelihood (module doc: size
            and Pareto-k caveats).

    Returns:
        Mapping of kind -> written paths.
    """
    from popmodel.io.resultdir import SCHEMA_VERSION, staged

    if figures is True:
        raise TypeError("figures must be a callable (e.g. popmodel.plots.smf.smf_result_figures) "
                        "or None")
    config = manifest_config if manifest_config is not None else fit.config.to_dict()
    with staged(out, step="smf", config=to_jsonable(dict(config))) as stage:
        meta = provenance(fit, extra_meta)
        meta["run_id"] = stage.run_id
        meta["result_schema_version"] = SCHEMA_VERSION
        written = _write_smf_files(fit, stage.path, meta, figures=figures or None,
                                   model_checks=model_checks, check_figures=check_figures,
                                   pointwise_log_likelihood=pointwise_log_likelihood)
    return stage.finals(written)


def parameter_table(fit: SMFFit, meta: Mapping[str, Any]) -> Table:
    """``smf_parameters.ecsv``: one row per parameter (anchor baked into the name) with its
    unit in the ``unit`` column; the value columns are in the row's unit."""
    from astropy.table import Table

    names = fit.names
    q = np.array([np.percentile(fit.samples[n].reshape(-1), [16, 50, 84]) for n in names])

    def unit_of(n: str) -> str:
        base = n.rsplit("_z", 1)[0] if "_z" in n else n
        return VARIABLE_ATTRS[base][0].to_string()

    par = Table(
        {
            "name": names,
            "unit": [unit_of(n) for n in names],
            "p16": q[:, 0], "p50": q[:, 1], "p84": q[:, 2],
            "map": [fit.map.params[n] for n in names],
            "laplace_sigma": [fit.map.sigma[n] for n in names],
            "r_hat": [fit.diagnostics["r_hat"][n] for n in names],
            "ess_bulk": [fit.diagnostics["ess_bulk"][n] for n in names],
            "extrapolated": [_is_extrap(n, fit.extrapolated_anchors) for n in names],
        },
        meta=dict(meta),
    )
    with_units(par)  # the value columns hold log10 quantities in the row's unit
    par.meta["comments"] = [("p16..laplace_sigma in the unit of the row (column 'unit'): log_phi "
                             "in log10 Mpc^-3 dex^-1, log_mstar in log10 Msun; extrapolated = "
                             "anchor redshift outside the data's z range")]
    return par


def _write_smf_files(fit: SMFFit, out: Path, meta: dict, *, figures: Callable | None,
                     model_checks: bool, pointwise_log_likelihood: bool,
                     check_figures: Callable | None = None) -> dict[str, list[str]]:
    from astropy.table import Table

    from popmodel.smf.derived import log10_phi_draws, percentile_bands, rho_star_table

    written: dict[str, list[str]] = {}
    if _survey_ok(fit):
        fit.data.survey.write(out / "survey.toml")
        written["survey"] = [str(out / "survey.toml")]

    # posterior (netCDF4/HDF5 via h5netcdf)
    idata = fit_to_inferencedata(fit, meta, pointwise_log_likelihood=pointwise_log_likelihood)
    nc = out / POSTERIOR_FILE
    idata.to_netcdf(str(nc), engine="h5netcdf")
    written["posterior"] = [str(nc)]

    parameter_table(fit, meta).write(out / "smf_parameters.ecsv", format="ascii.ecsv",
                                     overwrite=True)
    written["parameters"] = [str(out / "smf_parameters.ecsv")]

    # rho_*(z)
    draws = fit.draws()
    z = RHO_Z_GRID
    zlo, zhi = fit.data.z_data_range
    rho = Table(rho_star_table(draws, z, (8.0, 13.0), (zlo, zhi), display_format=None),
                meta=dict(meta, mass_range_log10_msun=[8.0, 13.0]))
    b = np.stack([rho[c].value for c in ("log_rho_star_p16", "log_rho_star_p50",
                                         "log_rho_star_p84")])
    with_units(rho).write(out / "rho_star.ecsv", format="ascii.ecsv", overwrite=True)
    written["rho_star"] = [str(out / "rho_star.ecsv")]

    # Phi(log M, z) bands
    lm, zp = PHI_LOG_MASS, PHI_Z
    rows = []
    bands = np.empty((3, zp.size, lm.size))
    for k, zz in enumerate(zp):
        bands[:, k, :] = percentile_bands(log10_phi_draws(draws, lm, zz))
        for j, m in enumerate(lm):
            rows.append((zz, m, *bands[:, k, j], bool(zz < zlo or zz > zhi)))
    phi = Table(rows=rows, names=("z", "log_mass", "log_phi_p16", "log_phi_p50", "log_phi_p84",
                                  "extrapolated"), meta=dict(meta))
    with_units(phi, {"log_mass": LOG_MASS_UNIT, "log_phi_p16": LOG_PHI_UNIT,
                     "log_phi_p50": LOG_PHI_UNIT, "log_phi_p84": LOG_PHI_UNIT})
    phi.write(out / "smf_phi.ecsv", format="ascii.ecsv", overwrite=True)
    written["phi"] = [str(out / "smf_phi.ecsv")]

    # cosmic-variance density terms (field x redshift slice)
    dens = _density_info(fit)
    if dens is not None:
        qd = np.array([np.percentile(fit.samples[n].reshape(-1), [16, 50, 84]) for n in dens["labels"]])
        dt = Table({"name": list(dens["labels"]), "field": list(dens["field"]), "z_lo": dens["z_lo"],
                    "z_hi": dens["z_hi"], "sigma_dm_prior": dens["sigma_dm"], "delta_p16": qd[:, 0],
                    "delta_p50": qd[:, 1], "delta_p84": qd[:, 2]}, meta=dict(meta))
        dt.meta["comments"] = [("delta: dark-matter density contrast of the field's volume in the "
                               "slice; galaxies of mass M scale as exp(b(M,z) delta - b^2 sigma^2/2)")]
        with_units(dt).write(out / "density_terms.ecsv", format="ascii.ecsv", overwrite=True)
        written["density_terms"] = [str(out / "density_terms.ecsv")]

    if model_checks:
        from popmodel.smf.checks import write_model_checks

        # 200 draws (5 per tail of the 95% interval): the predictive costs one (nodes x bins)
        # matrix product per draw and field, minutes for the five 3D-HST fields
        chk = write_model_checks(fit, out, figures=check_figures or None, meta=meta, max_draws=200)
        _add_check_units(out)
        meta = dict(meta, model_checks={k: chk[k] for k in ("coverage", "level", "n_scored")})
        written["model_checks"] = list(chk["files"])

    (out / "summary.json").write_text(dumps(meta, indent=1))
    written["summary"] = [str(out / "summary.json")]

    if figures is not None:
        products = {"phi": (lm, zp, bands), "rho_star": (z, b)}
        written["figures"] = list(figures(fit, out, products))
    return written


def _add_check_units(out: Path) -> None:
    """Units on the model-check tables of :func:`popmodel.smf.checks.write_model_checks`."""
    from astropy.table import Table

    mass = {c: LOG_MASS_UNIT for c in ("log_mass_lo", "log_mass_hi")}
    phi = {"phi": u.Mpc**-3, "phi_err": u.Mpc**-3, "log_phi": LOG_PHI_UNIT}
    for name, units in (("ppc_counts.ecsv", mass), ("vmax_smf.ecsv", {**mass, **phi})):
        path = out / name
        if path.is_file():
            t = Table.read(path, format="ascii.ecsv")
            with_units(t, {k: v for k, v in units.items() if k in t.colnames})
            t.write(path, format="ascii.ecsv", overwrite=True)


def _is_extrap(name: str, extrap: list[float]) -> bool:
    if "_z" not in name:
        return False
    return any(abs(float(name.rsplit("_z", 1)[1]) - z) < 1e-9 for z in extrap)


# ------------------------------------------------------------------------------------------
# the results API


class SMFResult:
    """A mass-function result folder, read back: the posterior draws and what they imply.

    ``phi`` and ``rho_star`` evaluate the stored draws (all chains) through
    :func:`popmodel.smf.derived.log10_phi_draws` and :func:`popmodel.smf.derived.log10_rho_star`,
    the functions that wrote ``smf_phi.ecsv`` and ``rho_star.ecsv``, so on those tables' grids
    they return the tables' numbers.

    Attributes:
        path: The folder.
        posterior: The :class:`SMFPosterior`.
        meta: The provenance.
        survey: The fit's survey (``survey.toml``) or None.
    """

    def __init__(self, path: str | Path, posterior: SMFPosterior, survey: object | None = None
                 ) -> None:
        self.path = Path(path)
        self.posterior = posterior
        self.meta = posterior.meta
        self.survey = survey
        self._draws: ContinuityParams | None = None

    def __repr__(self) -> str:
        n = next(iter(self.posterior.samples.values())).size
        return (f"SMFResult({str(self.path)!r}, {n} draws, anchors {list(self.anchor_z)}, "
                f"{self.posterior.method})")

    @property
    def anchor_z(self) -> tuple[float, ...]:
        return self.posterior.anchor_z

    @property
    def draws(self) -> ContinuityParams:
        """The posterior draws (chains concatenated)."""
        if self._draws is None:
            self._draws = self.posterior.draws()
        return self._draws

    @property
    def data_z_range(self) -> tuple[float, float] | None:
        zr = self.meta.get("data_z_range")
        return None if zr is None else (float(zr[0]), float(zr[1]))

    @property
    def cosmology(self) -> object:
        """The fit's astropy cosmology (WMAP9 when the file does not say)."""
        from popmodel.cosmology import cosmology_from_config

        cc = self.meta.get("cosmology_config")
        return cosmology_from_config(cc if isinstance(cc, dict) and ("H0" in cc or "name" in cc)
                                     else None)

    def inference_data(self) -> Any:
        """The posterior file as ArviZ InferenceData."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            import arviz as az
        return az.from_netcdf(str(self.path / POSTERIOR_FILE))

    def _extrapolated(self, z: np.ndarray) -> np.ndarray:
        zr = self.data_z_range
        return np.zeros(z.shape, bool) if zr is None else (z < zr[0]) | (z > zr[1])

    def phi(self, log_mass: Any, z: Any) -> QTable:
        """Posterior percentiles of log10 Phi [Mpc^-3 dex^-1] at (log M, z) pairs.

        Args:
            log_mass: log10 stellar mass(es) [Msun]; broadcast against ``z``.
            z: Redshift(s).

        Returns:
            QTable with ``log_mass``, ``z``, ``log_phi_p16/p50/p84`` (dex) and ``extrapolated``.
        """
        from astropy.table import QTable

        from popmodel.smf.derived import log10_phi_draws, percentile_bands

        m, zz = (np.atleast_1d(a).astype(float).ravel() for a in
                 np.broadcast_arrays(np.asarray(log_mass, float), np.asarray(z, float)))
        bands = np.empty((3, m.size))
        for zu in np.unique(zz):
            sel = zz == zu
            bands[:, sel] = percentile_bands(log10_phi_draws(self.draws, m[sel], float(zu)))
        return QTable({"log_mass": m * LOG_MASS_UNIT, "z": zz,
                       "log_phi_p16": bands[0] * LOG_PHI_UNIT, "log_phi_p50": bands[1] * LOG_PHI_UNIT,
                       "log_phi_p84": bands[2] * LOG_PHI_UNIT, "extrapolated": self._extrapolated(zz)})

    def rho_star(self, z: Any, mass_range: tuple[float | None, float | None] = (8.0, 13.0)
                 ) -> QTable:
        """Posterior percentiles of log10 rho_* [Msun Mpc^-3] between two masses.

        Args:
            z: Redshift(s).
            mass_range: (low, high) log10 stellar mass [Msun]; None for 0 or infinity.

        Returns:
            QTable with ``z``, ``log_rho_star_p16/p50/p84`` (dex) and ``extrapolated``.
        """
        from popmodel.smf.derived import rho_star_table

        return rho_star_table(self.draws, z, mass_range, self.data_z_range)


def load_smf(path: str | Path) -> SMFResult:
    """Read an SMF result folder (``smf_posterior.nc`` and ``survey.toml``).

    Raises:
        InputError: The folder has no readable ``smf_posterior.nc``.
    """
    d = Path(path)
    post = read_smf_posterior(d / POSTERIOR_FILE)
    survey = None
    if (d / "survey.toml").is_file():
        from popmodel.survey import Survey

        survey = Survey.read(d / "survey.toml")
    elif isinstance(post.meta.get("survey"), dict):
        from popmodel.survey import Survey

        try:
            survey = Survey.from_dict(post.meta["survey"])
        except (ValueError, TypeError, KeyError):
            survey = None
    return SMFResult(d, post, survey)
