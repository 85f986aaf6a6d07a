r"""The census's result formats, written and read here; the census's inputs read from result folders.

**Inputs** (:func:`read_smf_draws`, :func:`read_sfs_dir`): the continuity-model draws of an SMF
result folder (``smf_posterior.nc``; without it, independent Gaussians from
``smf_parameters.ecsv``, truncated to the priors' support: an approximation that drops the
posterior correlations, as Leja+20's Appendix B does), and the route-2 and SF/Q inputs of a
sequence folder (``sfs.ecsv``, or the Leja+22 fallbacks).

**Outputs** (:func:`write_census_files`): ``census.ecsv`` (bands), ``census_sf_q.ecsv``,
``census_summary.json`` and ``census_draws.nc``: the draws behind the bands over
(``draw``, ``z``) (``log_rho_star``, ``log_sfrd_from_rho``, ``log_sfrd_from_sfs``,
``frac_below_limit``), the per-draw ``return_fraction`` and ``mass_offset``, and the SMF draws
used (``log_phi1`` ... over ``anchor_z``), with units, long names, the flattened provenance and
the result schema version.

**Reading back** (:func:`load_census`, ``popmodel.census.CensusResult.load``): a
:class:`CensusFolder` whose ``sfrd(z, route=...)`` and ``rho_star(z)`` take percentiles of the
stored draws; between the grid's redshifts each draw is interpolated linearly in z (the
default grid step is 0.05).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import astropy.cosmology as apc
import astropy.units as u
import numpy as np

from popmodel.errors import InputError
from popmodel.io.meta import flatten_attrs, unflatten_attrs, with_units
from popmodel.jsonutil import dumps

if TYPE_CHECKING:  # jax is imported only when a census runs
    from astropy.table import QTable, Table

    from popmodel.census import CensusResult
    from popmodel.smf.evolution import ContinuityParams

__all__ = [
    "CENSUS_DRAWS_FILE",
    "CensusFolder",
    "SFSInputs",
    "load_census",
    "read_census_draws",
    "read_sfs_dir",
    "read_smf_draws",
    "write_census_files",
]

CENSUS_DRAWS_FILE = "census_draws.nc"
LOG_SFRD_UNIT = u.dex(u.Msun / u.yr / u.Mpc**3)
LOG_RHO_UNIT = u.dex(u.Msun / u.Mpc**3)
LOG_PHI_UNIT = u.dex(u.Mpc**-3)
LOG_MASS_UNIT = u.dex(u.Msun)
#: ``units`` and ``long_name`` of the draws in ``census_draws.nc``.
DRAW_ATTRS = {
    "log_rho_star": (LOG_RHO_UNIT, "log10 stellar mass density over mass_range_log10_msun"),
    "log_sfrd_from_rho": (LOG_SFRD_UNIT, ("log10 SFR density, route 1: d rho_*/dt / (1 - R) "
                          "or the mass-loss kernel inversion")),
    "log_sfrd_from_sfs": (LOG_SFRD_UNIT, "log10 SFR density, route 2: integral of Phi <SFR>"),
    "frac_below_limit": (u.dimensionless_unscaled, ("fraction of route 2 from masses below the "
                         "completeness limit")),
    "log_mass_limit": (LOG_MASS_UNIT, "completeness limit of route 2"),
    "return_fraction": (u.dimensionless_unscaled, "return fraction R of the draw"),
    "mass_offset": (u.dex, "SED-model mass offset of the draw"),
}
ROUTES = {"rho": "log_sfrd_from_rho", "1": "log_sfrd_from_rho", "from_rho": "log_sfrd_from_rho",
          "sfs": "log_sfrd_from_sfs", "2": "log_sfrd_from_sfs", "from_sfs": "log_sfrd_from_sfs"}


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
        from popmodel.io.smf import read_smf_posterior

        post = read_smf_posterior(nc)
        anchors = post.anchor_z
        vals = {n: v for n, v in post.flat().items() if n in parameter_names(anchors)}
        cc = post.meta.get("cosmology_config")
        if isinstance(cc, dict) and ("H0" in cc or "name" in cc):
            info["cosmology"] = cosmology_from_config(cc)
        if post.meta.get("data_z_range") is not None:
            info["data_z_range"] = [float(x) for x in post.meta["data_z_range"]]
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
# outputs


def census_table_units(t: Table) -> Table:
    """Units on every column of ``census.ecsv`` (in place; returns the table)."""
    units = {c: u.dex for c in t.colnames if c.startswith("delta_sfs_minus_rho_")}
    if "log_mass_limit" in t.colnames:
        units["log_mass_limit"] = LOG_MASS_UNIT
    return with_units(t, units)


def sf_q_table_units(t: Table) -> Table:
    """Units on every column of ``census_sf_q.ecsv`` (in place; returns the table)."""
    units = {c: LOG_PHI_UNIT for c in t.colnames if c.startswith("log_phi_")}
    units["log_mass"] = LOG_MASS_UNIT
    return with_units(t, units)


def write_census_draws(path: str | Path, res: CensusResult, draws: ContinuityParams,
                       meta: Mapping[str, Any] | None = None) -> Path:
    """``census_draws.nc``: the census draws on its redshift grid and the SMF draws used
    (module doc)."""
    import xarray as xr

    from popmodel.io.resultdir import SCHEMA_VERSION

    d = int(np.shape(res.log_rho_star)[0])
    anchors = np.asarray(draws.anchor_z, float)
    data: dict[str, Any] = {}
    for name in ("log_rho_star", "log_sfrd_from_rho", "log_sfrd_from_sfs", "frac_below_limit"):
        data[name] = (("draw", "z"), np.asarray(getattr(res, name), float))
    data["log_mass_limit"] = (("z",), np.asarray(res.log_mc, float))
    for name in ("return_fraction", "mass_offset"):
        v = getattr(res, name)
        if v is not None:
            data[name] = (("draw",), np.asarray(v, float))
    v = np.atleast_2d(np.asarray(draws.to_vector(), float))
    k = anchors.size
    smf = {"smf_log_phi1": (("draw", "anchor_z"), v[:, :k]),
           "smf_log_phi2": (("draw", "anchor_z"), v[:, k:2 * k]),
           "smf_log_mstar": (("draw", "anchor_z"), v[:, 2 * k:3 * k]),
           "smf_alpha1": (("draw",), v[:, 3 * k]), "smf_alpha2": (("draw",), v[:, 3 * k + 1])}
    data.update(smf)
    ds = xr.Dataset(data, coords={"draw": np.arange(d), "z": np.asarray(res.z, float),
                                  "anchor_z": anchors})
    for name, (unit, long_name) in DRAW_ATTRS.items():
        if name in ds:
            ds[name].attrs.update({"units": unit.to_string(), "long_name": long_name})
    for name in smf:
        ds[name].attrs["long_name"] = (f"continuity-model parameter {name[4:]} of the SMF draw "
                                       "(before any mass offset)")
    ds.attrs.update(flatten_attrs({"census": dict(res.meta), **dict(meta or {})}))
    ds.attrs["result_schema_version"] = SCHEMA_VERSION
    path = Path(path)
    ds.to_netcdf(path, engine="h5netcdf")
    return path


def write_census_files(out: str | Path, res: CensusResult, draws: ContinuityParams, *,
                       table: Table, sf_q: Table, summary: Mapping[str, Any],
                       stamp: Mapping[str, Any]) -> dict[str, list[str]]:
    """Write ``census.ecsv``, ``census_sf_q.ecsv`` (units on every column),
    ``census_summary.json`` and ``census_draws.nc`` into ``out`` (the staging folder of
    ``popmodel census``); ``stamp`` (run id, schema version) goes into every file."""
    from popmodel.io.resultdir import SCHEMA_VERSION

    out = Path(out)
    stamp = {"result_schema_version": SCHEMA_VERSION, **dict(stamp)}
    written: dict[str, list[str]] = {}
    table.meta.update(stamp)
    census_table_units(table).write(out / "census.ecsv", format="ascii.ecsv", overwrite=True)
    written["census"] = [str(out / "census.ecsv")]
    sf_q.meta.update(stamp)
    sf_q_table_units(sf_q).write(out / "census_sf_q.ecsv", format="ascii.ecsv", overwrite=True)
    written["sf_q"] = [str(out / "census_sf_q.ecsv")]
    summary = {**dict(summary), **stamp}
    (out / "census_summary.json").write_text(dumps(summary, indent=1, default=str))
    written["summary"] = [str(out / "census_summary.json")]
    write_census_draws(out / CENSUS_DRAWS_FILE, res, draws, {**summary})
    written["draws"] = [str(out / CENSUS_DRAWS_FILE)]
    return written


# --------------------------------------------------------------------------------------------
# reading back


def read_census_draws(path: str | Path) -> tuple[CensusResult, ContinuityParams, dict]:
    """``census_draws.nc`` as the :class:`popmodel.census.CensusResult` that wrote it, the SMF
    draws used and the provenance."""
    import xarray as xr

    from popmodel.census import CensusResult
    from popmodel.smf.evolution import ContinuityParams

    try:
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            ds = ds.load()
    except FileNotFoundError:
        raise InputError(f"{path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 (h5py and xarray raise many types)
        raise InputError(f"cannot read {path}: {type(exc).__name__}: {exc}") from None
    meta = unflatten_attrs(ds.attrs)

    def get(name: str) -> np.ndarray | None:
        return np.asarray(ds[name].values, float) if name in ds else None

    res = CensusResult(np.asarray(ds["z"].values, float), get("log_rho_star"),
                       get("log_sfrd_from_rho"), get("log_sfrd_from_sfs"), get("frac_below_limit"),
                       get("log_mass_limit"), get("return_fraction"), get("mass_offset"),
                       dict(meta.get("census", {})))
    anchors = tuple(float(z) for z in ds["anchor_z"].values)
    draws = ContinuityParams(get("smf_log_phi1"), get("smf_log_phi2"), get("smf_log_mstar"),
                             get("smf_alpha1"), get("smf_alpha2"), anchors)
    return res, draws, meta


def _interp_draws(z_grid: np.ndarray, values: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(D, Z) draws on ``z_grid`` at ``z``: the grid's column where z is on it, else each draw
    interpolated linearly in z (NaN outside the grid)."""
    out = np.empty((values.shape[0], z.size))
    for k, zz in enumerate(z):
        j = np.flatnonzero(np.isclose(z_grid, zz, rtol=0.0, atol=1e-9))
        if j.size:
            out[:, k] = values[:, j[0]]
        elif zz < z_grid[0] or zz > z_grid[-1]:
            out[:, k] = np.nan
        else:
            i = int(np.searchsorted(z_grid, zz)) - 1
            w = (zz - z_grid[i]) / (z_grid[i + 1] - z_grid[i])
            with np.errstate(invalid="ignore"):
                out[:, k] = (1.0 - w) * values[:, i] + w * values[:, i + 1]
    return out


class CensusFolder:
    """A census result folder, read back (``census.ecsv`` and ``census_draws.nc``).

    Attributes:
        path: The folder.
        result: The :class:`popmodel.census.CensusResult` (draws on the census's z grid).
        smf_draws: The SMF draws the census used.
        table: ``census.ecsv``.
        meta: The provenance of ``census_draws.nc``.
    """

    def __init__(self, path: str | Path, result: CensusResult, smf_draws: ContinuityParams,
                 table: Table, meta: dict) -> None:
        self.path = Path(path)
        self.result = result
        self.smf_draws = smf_draws
        self.table = table
        self.meta = meta

    def __repr__(self) -> str:
        z = self.result.z
        return (f"CensusFolder({str(self.path)!r}, {self.result.log_rho_star.shape[0]} draws, "
                f"z {z[0]:g}-{z[-1]:g})")

    @property
    def z(self) -> np.ndarray:
        return self.result.z

    def _bands(self, name: str, z: Any) -> tuple[np.ndarray, np.ndarray]:
        from popmodel.census import percentile_bands

        zz = np.atleast_1d(np.asarray(z, float)).ravel()
        if zz.min() < self.z[0] - 1e-9 or zz.max() > self.z[-1] + 1e-9:
            raise ValueError(f"z must lie within the census grid {self.z[0]:g}-{self.z[-1]:g}; "
                             f"run popmodel census with a wider --z-min/--z-max")
        return zz, percentile_bands(_interp_draws(self.z, getattr(self.result, name), zz))

    def sfrd(self, z: Any, route: str = "rho") -> QTable:
        """Posterior percentiles of log10 SFRD [Msun yr^-1 Mpc^-3].

        Args:
            z: Redshift(s) within the census grid.
            route: ``"rho"`` (route 1, from d rho_*/dt) or ``"sfs"`` (route 2, the mass
                function times <SFR>).

        Returns:
            QTable with ``z`` and ``log_sfrd_p16/p50/p84`` (dex); ``meta["route"]``.
        """
        from astropy.table import QTable

        key = ROUTES.get(str(route))
        if key is None:
            raise ValueError(f"route must be 'rho' or 'sfs', not {route!r}")
        zz, b = self._bands(key, z)
        t = QTable({"z": zz, "log_sfrd_p16": b[0] * LOG_SFRD_UNIT,
                    "log_sfrd_p50": b[1] * LOG_SFRD_UNIT, "log_sfrd_p84": b[2] * LOG_SFRD_UNIT})
        t.meta["route"] = key
        return t

    def rho_star(self, z: Any) -> QTable:
        """Posterior percentiles of log10 rho_* [Msun Mpc^-3] over the census's mass range."""
        from astropy.table import QTable

        zz, b = self._bands("log_rho_star", z)
        t = QTable({"z": zz, "log_rho_star_p16": b[0] * LOG_RHO_UNIT,
                    "log_rho_star_p50": b[1] * LOG_RHO_UNIT, "log_rho_star_p84": b[2] * LOG_RHO_UNIT})
        t.meta["mass_range_log10_msun"] = self.result.meta.get("mass_range_log10_msun")
        return t


def load_census(path: str | Path) -> CensusFolder:
    """Read a census result folder.

    Raises:
        InputError: The folder has no ``census_draws.nc`` (e.g. written by popmodel before
            result schema version 2: rerun ``popmodel census``).
    """
    from astropy.table import Table

    d = Path(path)
    if not (d / CENSUS_DRAWS_FILE).is_file():
        raise InputError(f"{d} holds no census draws ({CENSUS_DRAWS_FILE}); run popmodel census "
                         "(popmodel >= this version writes them)")
    res, draws, meta = read_census_draws(d / CENSUS_DRAWS_FILE)
    table = Table.read(d / "census.ecsv", format="ascii.ecsv") if (d / "census.ecsv").is_file() else None
    return CensusFolder(d, res, draws, table, meta)
