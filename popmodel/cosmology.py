"""Astropy cosmologies in, tabulated comoving volumes and distances out."""

from __future__ import annotations

import functools
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import astropy.cosmology as apc
import astropy.units as u
import numpy as np

__all__ = [
    "COSMOLOGY_PARAMETERS",
    "DEFAULT_COSMOLOGY",
    "DEFAULT_IMF",
    "IMFS",
    "CosmologyError",
    "VolumeTable",
    "cosmology_from_config",
    "cosmology_from_record",
    "cosmology_record",
    "cosmology_to_config",
    "describe_cosmology",
    "normalize_imf",
    "same_cosmology",
]

#: The one default cosmology of popmodel: astropy's WMAP9 (Hinshaw et al. 2013, ApJS 208, 19),
#: the cosmology of Leja et al. (2020, ApJ 893, 111). Every default (``Survey``, the mocks, the
#: CLI, ``catalog_from_percentiles``) is this object.
DEFAULT_COSMOLOGY: apc.Cosmology = apc.WMAP9
#: The one default IMF: Chabrier (2003, PASP 115, 763), as in Leja et al. (2020).
DEFAULT_IMF = "chabrier"
#: IMFs a catalogue or survey may declare (conversion factors in :mod:`popmodel.conventions`).
IMFS = ("chabrier", "kroupa", "salpeter")


#: Keys of the dict (TOML ``[cosmology]`` table) form besides ``name``.
COSMOLOGY_PARAMETERS = ("H0", "Om0", "Ode0", "Tcmb0", "Ob0", "Neff")
#: astropy's default number of effective neutrino species (written only when it differs).
_DEFAULT_NEFF = 3.04
#: Redshifts on which a non-flat cosmology must have H(z)^2 > 0 (VolumeTable's range and more).
_E2_CHECK_Z = np.linspace(0.0, 20.0, 2001)


class CosmologyError(ValueError):
    """A cosmology description is invalid; the message names the key at fault."""


#: Spellings of the IMFs that :func:`normalize_imf` accepts besides the canonical names.
_IMF_ALIASES = {"chabrier2003": "chabrier", "chabrier (2003)": "chabrier",
                "kroupa2001": "kroupa", "kroupa (2001)": "kroupa",
                "salpeter1955": "salpeter", "salpeter (1955)": "salpeter"}


def normalize_imf(value: object, where: str = "imf") -> str:
    """The canonical IMF name (one of :data:`IMFS`) of ``value``, case-insensitively.

    ``"Chabrier2003"`` (the label of :data:`popmodel.units.IMF`) and the like are accepted.

    Args:
        value: the IMF as written in a file or given by a caller.
        where: the key the value came from, named in the error (e.g. ``"meta['imf']"``).

    Raises:
        ValueError: naming ``where`` and the accepted names if ``value`` is not an IMF.
    """
    if isinstance(value, str):
        key = value.strip().lower()
        key = _IMF_ALIASES.get(key, key)
        if key in IMFS:
            return key
    raise ValueError(f"{where} = {value!r} is not an IMF popmodel knows; use one of {list(IMFS)}")


def _param(cfg: dict, key: str) -> float:
    v = cfg[key]
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real):
        raise CosmologyError(f"cosmology: {key} must be a number, got {v!r}")
    return float(v)


def cosmology_from_config(cfg: dict | str | apc.Cosmology | None = None) -> apc.Cosmology:
    """Resolve a cosmology from a name, a parameter dict, or an astropy object.

    The dict (a survey file's ``[cosmology]`` table) takes one of two forms, never both:

    * ``{"name": N}``: the astropy built-in N (``"WMAP9"``, ``"Planck18"``...), which fixes
      every parameter;
    * ``{"H0": ..., "Om0": ...}`` [km/s/Mpc, -], optionally with ``Ode0`` (then Lambda-CDM
      with curvature Ok0 = 1 - Om0 - Ode0 - radiation, astropy's ``LambdaCDM``; without it
      flat, ``FlatLambdaCDM``), ``Tcmb0`` [K] (default 0: no radiation), ``Ob0`` (default 0)
      and ``Neff`` (default 3.04), and ``name`` as a label that is not a built-in's name.

    A key outside these, a built-in name given with parameters, or a parameter that is not a
    number is a :class:`CosmologyError` naming it.

    Args:
        cfg: ``None`` (WMAP9, the cosmology of Leja et al. 2020), a built-in's name, a dict as
            above, or a Cosmology (returned as is).

    Returns:
        An astropy cosmology.
    """
    if cfg is None:
        cfg = DEFAULT_COSMOLOGY
    if isinstance(cfg, apc.Cosmology):
        return cfg
    if isinstance(cfg, str):
        cfg = {"name": cfg}
    if not isinstance(cfg, Mapping):
        raise CosmologyError(
            f"cosmology must be a name, a table of parameters or an astropy cosmology, got {cfg!r}"
        )
    unknown = sorted(str(k) for k in set(cfg) - {"name", *COSMOLOGY_PARAMETERS})
    if unknown:
        raise CosmologyError(
            f"cosmology: unknown key(s) {unknown}; a [cosmology] table takes 'name' (an astropy "
            f"built-in) or the parameters {list(COSMOLOGY_PARAMETERS)} (H0 and Om0 required)"
        )
    name = cfg.get("name")
    if name is not None and not isinstance(name, str):
        raise CosmologyError(f"cosmology: name must be a string, got {name!r}")
    params = [k for k in COSMOLOGY_PARAMETERS if k in cfg]
    if not params:
        if name is None:
            raise CosmologyError("cosmology needs 'name' or both 'H0' and 'Om0'")
        if name not in apc.realizations.available:
            raise CosmologyError(
                f"cosmology name {name!r} is not an astropy built-in; "
                f"choose one of {sorted(apc.realizations.available)} or give H0 and Om0"
            )
        return getattr(apc, name)
    if name in apc.realizations.available:
        raise CosmologyError(
            f"cosmology: name = {name!r} is an astropy built-in, which fixes every parameter, "
            f"but {params} are given too (conflicting keys); give the name alone, or the "
            "parameters with a name that is not a built-in's"
        )
    missing = [k for k in ("H0", "Om0") if k not in cfg]
    if missing:
        raise CosmologyError(
            f"cosmology needs 'name' or both 'H0' and 'Om0' (missing {missing[0]!r})"
        )
    vals = {k: _param(cfg, k) for k in params}
    h0, om0 = vals["H0"], vals["Om0"]
    flat = "Ode0" not in vals
    if not (np.isfinite(h0) and h0 > 0 and np.isfinite(om0) and om0 > 0 and (om0 <= 1 or not flat)):
        raise CosmologyError(f"cosmology H0={h0}, Om0={om0} is not physical")
    tcmb, ob0, neff = vals.get("Tcmb0", 0.0), vals.get("Ob0", 0.0), vals.get("Neff", _DEFAULT_NEFF)
    for key, v, ok in (("Tcmb0", tcmb, tcmb >= 0), ("Ob0", ob0, 0 <= ob0 <= om0),
                       ("Neff", neff, neff >= 0), ("Ode0", vals.get("Ode0", 0.0), True)):
        if not (np.isfinite(v) and ok):
            raise CosmologyError(f"cosmology: {key} = {v} is not physical")
    try:
        cosmo = _lambda_cdm(h0, om0, None if flat else vals["Ode0"], tcmb, ob0, neff,
                            name or "custom")
    except (ValueError, TypeError) as err:
        raise CosmologyError(f"cosmology {dict(cfg)}: {err}") from None
    if not flat:
        zp1 = 1.0 + _E2_CHECK_Z
        e2 = (cosmo.Om0 * zp1**3 + cosmo.Ok0 * zp1**2 + cosmo.Ode0
              + (cosmo.Ogamma0 + cosmo.Onu0) * zp1**4)
        if np.any(e2 <= 0):
            z_bad = float(_E2_CHECK_Z[np.argmax(e2 <= 0)])
            raise CosmologyError(
                f"cosmology H0={h0}, Om0={om0}, Ode0={vals['Ode0']} is not physical: "
                f"H(z)^2 <= 0 at z = {z_bad:.3g} (curvature Ok0 = {cosmo.Ok0:.4g})"
            )
    return cosmo


@functools.lru_cache(maxsize=64)
def _lambda_cdm(h0: float, om0: float, ode0: float | None, tcmb: float, ob0: float, neff: float,
                name: str) -> apc.Cosmology:
    """(Flat) Lambda-CDM, cached: astropy cosmologies are immutable and slow to build."""
    kw = {"H0": h0, "Om0": om0, "Tcmb0": tcmb, "Ob0": ob0, "Neff": neff, "name": name}
    return apc.FlatLambdaCDM(**kw) if ode0 is None else apc.LambdaCDM(Ode0=ode0, **kw)


def cosmology_to_config(cosmo: apc.Cosmology) -> dict:
    """The dict form of :func:`cosmology_from_config` (name if a built-in, else parameters).

    Flat and non-flat Lambda-CDM without massive neutrinos can be written; ``Ode0`` only for
    a non-flat class, ``Ob0`` and ``Neff`` only where they differ from the defaults (so files of
    flat cosmologies keep their form). Anything else is a :class:`CosmologyError`, not a
    silently different cosmology. A cosmology that carries a built-in's name but differs from
    it is labelled ``"<name> (modified)"`` (a built-in's name with parameters is refused when
    read).
    """
    name = getattr(cosmo, "name", None)
    if name in apc.realizations.available and getattr(apc, name) == cosmo:
        return {"name": name}
    if type(cosmo) not in (apc.FlatLambdaCDM, apc.LambdaCDM) or cosmo.has_massive_nu:
        raise CosmologyError(
            f"cosmology {cosmo!r} cannot be written as H0/Om0(/Ode0): only astropy built-ins and "
            "Lambda-CDM (flat or not) without massive neutrinos can be stored in a survey file"
        )
    out: dict = {
        "H0": float(cosmo.H0.to_value(u.km / u.s / u.Mpc)),
        "Om0": float(cosmo.Om0),
    }
    if type(cosmo) is apc.LambdaCDM:
        out["Ode0"] = float(cosmo.Ode0)
    out["Tcmb0"] = float(cosmo.Tcmb0.to_value(u.K))
    if cosmo.Ob0:
        out["Ob0"] = float(cosmo.Ob0)
    if float(cosmo.Neff) != _DEFAULT_NEFF:
        out["Neff"] = float(cosmo.Neff)
    label = str(name or "custom")
    out["name"] = f"{label} (modified)" if label in apc.realizations.available else label
    return out


#: Keys of a cosmology record (:func:`cosmology_record`) besides ``name``, ``class`` and ``flat``.
_RECORD_PARAMETERS = ("H0", "Om0", "Ode0", "Tcmb0", "Ob0", "Neff", "m_nu")
#: Relative tolerance within which a record's parameters must agree with the built-in it names.
_RECORD_RTOL = 1e-9


def cosmology_record(cosmo: apc.Cosmology) -> dict:
    """A plain, file-safe record of a cosmology: what a catalogue's ``meta["cosmology"]`` holds.

    Written from astropy's own ``Cosmology.to_format("mapping")``, with quantities as floats in
    fixed units: ``{"name", "class", "flat", "H0" [km/s/Mpc], "Om0", "Ode0", "Tcmb0" [K],
    "Ob0", "Neff", "m_nu" [eV, list, or None]}``. ``Ode0`` is written for flat cosmologies too
    (derived, for the reader's information). Only numbers, strings, booleans and lists, so it
    survives ECSV/HDF5 (YAML) and FITS (JSON) metadata. :func:`cosmology_from_record` inverts
    it; an astropy built-in (e.g. WMAP9, Hinshaw et al. 2013, ApJS 208, 19) comes back as the
    built-in object itself.

    Args:
        cosmo: an astropy FLRW cosmology.

    Raises:
        CosmologyError: if ``cosmo`` is not an astropy FLRW cosmology.
    """
    if not isinstance(cosmo, apc.FLRW):
        raise CosmologyError(f"cosmology {cosmo!r} is not an astropy FLRW cosmology")
    mapping = cosmo.to_format("mapping")
    m_nu = mapping.get("m_nu")
    rec: dict = {
        "name": None if cosmo.name is None else str(cosmo.name),
        "class": type(cosmo).__name__,
        "flat": bool(cosmo.is_flat),
        "H0": float(cosmo.H0.to_value(u.km / u.s / u.Mpc)),
        "Om0": float(cosmo.Om0),
        "Ode0": float(cosmo.Ode0),
        "Tcmb0": float(cosmo.Tcmb0.to_value(u.K)),
        "Ob0": float(cosmo.Ob0 or 0.0),
        "Neff": float(cosmo.Neff),
        "m_nu": None if m_nu is None else [float(v) for v in np.atleast_1d(m_nu.to_value(u.eV))],
    }
    for k, v in mapping.items():  # any further parameter of another FLRW class (w0, wa...)
        if k not in rec and k not in ("cosmology", "meta") and isinstance(v, numbers.Real):
            rec[k] = float(v)
    return rec


def _record_number(d: Mapping, key: str, where: str) -> float:
    v = d[key]
    if isinstance(v, bool | np.bool_) or not isinstance(v, numbers.Real) or not np.isfinite(v):
        raise CosmologyError(f"{where}: {key} must be a finite number, got {v!r}")
    return float(v)


def cosmology_from_record(d: Mapping | str | apc.Cosmology, where: str = "cosmology record"
                          ) -> apc.Cosmology:
    """The astropy cosmology of a record written by :func:`cosmology_record`.

    Also reads the shorter forms other writers use: a built-in's name (a string, or
    ``{"name": "WMAP9"}`` as :func:`cosmology_to_config` writes it), and ``{"name", "H0",
    "Om0"}`` (flat, Tcmb0 = 0 unless given; ``Ode0`` with ``flat`` false or absent and
    ``Ode0 != 1 - Om0`` makes it non-flat). A record naming an astropy built-in returns the
    built-in object when its parameters agree with it (to 1e-9 relative).

    Args:
        d: the record.
        where: what the record is (e.g. ``"meta['cosmology']"``), named in errors.

    Raises:
        CosmologyError: naming ``where`` and the key at fault.
    """
    if isinstance(d, apc.Cosmology):
        return d
    if isinstance(d, str):
        d = {"name": d}
    if not isinstance(d, Mapping):
        raise CosmologyError(f"{where} must be a table (dict) or a built-in's name, got {d!r}")
    name = d.get("name")
    name = None if name in (None, "None") else str(name)
    params = {k: d[k] for k in _RECORD_PARAMETERS if d.get(k) is not None}
    builtin = getattr(apc, name) if name in apc.realizations.available else None
    if not params:
        if builtin is None:
            raise CosmologyError(f"{where} has no H0/Om0 and name {name!r} is not an astropy "
                                 f"built-in ({sorted(apc.realizations.available)})")
        return builtin
    vals = {k: _record_number(d, k, where) for k in params if k != "m_nu"}
    if "m_nu" in params:
        try:
            m_nu = np.atleast_1d(np.asarray(params["m_nu"], dtype=float))
        except (TypeError, ValueError):
            raise CosmologyError(f"{where}: m_nu must be a list of masses [eV], got "
                                 f"{params['m_nu']!r}") from None
    if builtin is not None:  # the parameters given must be the built-in's (others may be absent)
        ref = cosmology_record(builtin)
        got = {**vals, **({"m_nu": m_nu} if "m_nu" in params else {})}
        bad = [k for k, v in got.items() if ref.get(k) is None
               or not np.allclose(v, np.asarray(ref[k], dtype=float), rtol=1e-6, atol=1e-12)]
        if bad:
            raise CosmologyError(
                f"{where}: name = {name!r} is an astropy built-in but {bad} differ from it "
                f"({ {k: params[k] for k in bad} } against { {k: ref.get(k) for k in bad} }); "
                "fix the record or its name"
            )
        return builtin
    for key in ("H0", "Om0"):
        if key not in params:
            raise CosmologyError(f"{where} has parameters but no {key!r}")
    cls_name = d.get("class")
    flat = d.get("flat")
    if cls_name is None:
        if flat is None:
            flat = "Ode0" not in vals or np.isclose(vals["Ode0"], 1.0 - vals["Om0"], atol=1e-6,
                                                    rtol=0.0)
        cls_name = "FlatLambdaCDM" if flat else "LambdaCDM"
    cls = getattr(apc, str(cls_name), None)
    if not (isinstance(cls, type) and issubclass(cls, apc.FLRW)):
        raise CosmologyError(f"{where}: class = {cls_name!r} is not an astropy FLRW cosmology")
    kw: dict = {"H0": vals["H0"], "Om0": vals["Om0"], "Tcmb0": vals.get("Tcmb0", 0.0),
                "Ob0": vals.get("Ob0", 0.0), "Neff": vals.get("Neff", _DEFAULT_NEFF), "name": name}
    if "m_nu" in params:
        kw["m_nu"] = m_nu * u.eV
    accepted = set(cls.parameters) if hasattr(cls, "parameters") else set()
    if "Ode0" in accepted:
        if "Ode0" not in vals:
            raise CosmologyError(f"{where}: class {cls_name} needs 'Ode0'")
        kw["Ode0"] = vals["Ode0"]
    for k in d:  # w0, wa... of other FLRW classes
        if k in accepted and k not in kw and k not in _RECORD_PARAMETERS:
            kw[k] = _record_number(d, k, where)
    try:
        cosmo = cls(**kw)
    except (TypeError, ValueError) as err:
        raise CosmologyError(f"{where}: {err}") from None
    return cosmo


def same_cosmology(a: apc.Cosmology, b: apc.Cosmology, rtol: float = 1e-7) -> bool:
    """Whether two cosmologies give the same distances (names ignored).

    Astropy's ``is_equivalent`` first (same parameters, flat and non-flat forms alike), then,
    so that parameters that went through a text file and came back a few ulp away compare
    equal, the luminosity distances at z = 0.1, 1, 3, 8 to ``rtol``.
    """
    if a is b:
        return True
    try:
        if a.is_equivalent(b):
            return True
    except (TypeError, ValueError, AttributeError):
        pass
    z = np.array([0.1, 1.0, 3.0, 8.0])
    da = a.luminosity_distance(z).to_value(u.Mpc)
    db = b.luminosity_distance(z).to_value(u.Mpc)
    return bool(np.allclose(da, db, rtol=rtol, atol=0.0))


def describe_cosmology(cosmo: apc.Cosmology) -> str:
    """One line naming the cosmology, for result-file metadata (curvature if not flat)."""
    ok0 = "" if cosmo.is_flat else f", Ok0={cosmo.Ok0:.4g}"
    return (
        f"{getattr(cosmo, 'name', None) or type(cosmo).__name__}: "
        f"H0={cosmo.H0.to_value(u.km / u.s / u.Mpc):.4g} km/s/Mpc, Om0={cosmo.Om0:.4g}, "
        f"Ode0={cosmo.Ode0:.4g}{ok0}, Tcmb0={cosmo.Tcmb0.to_value(u.K):.4g} K"
    )


@dataclass(frozen=True)
class VolumeTable:
    """Comoving volume element and distances tabulated on a redshift grid.

    The grid is fine (default 4001 nodes on [0, z_max]). What is interpolated linearly is
    ln(dV/dz/dOmega) - 2 ln z, which is smooth down to z = 0 (dV/dz grows as z^2 there), so
    the interpolation is accurate to ~1e-6 relative at all z.

    Attributes:
        z: grid [dimensionless].
        log_dvdz_reduced: ln(dV_c/dz/dOmega) - 2 ln z [ln Mpc^3 sr^-1].
        log10_dl: log10 luminosity distance [log10 Mpc]; z=0 extrapolated.
    """

    z: np.ndarray
    log_dvdz_reduced: np.ndarray
    log10_dl: np.ndarray

    @classmethod
    def build(cls, cosmo: apc.Cosmology, z_max: float = 12.0, n: int = 4001) -> VolumeTable:
        z = np.linspace(0.0, z_max, n)
        zz = z.copy()
        zz[0] = z[1] * 1e-3
        dvdz = cosmo.differential_comoving_volume(zz).to_value(u.Mpc**3 / u.sr)
        dl = cosmo.luminosity_distance(zz).to_value(u.Mpc)
        reduced = np.log(dvdz) - 2.0 * np.log(zz)
        reduced[0] = 2.0 * reduced[1] - reduced[2]  # smooth: extrapolate to z = 0
        return cls(z=z, log_dvdz_reduced=reduced, log10_dl=np.log10(dl))

    def log_dvdz_at(self, z: np.ndarray) -> np.ndarray:
        """ln(dV_c/dz/dOmega) [ln Mpc^3 sr^-1] (z > 0)."""
        z = np.asarray(z, dtype=float)
        return np.interp(z, self.z, self.log_dvdz_reduced) + 2.0 * np.log(z)

    def volume(self, z_lo: float, z_hi: float, area_sr: float, n: int = 2001) -> float:
        """Comoving volume [Mpc^3] between two redshifts over a solid angle (Simpson, n nodes)."""
        from scipy.integrate import simpson

        zz = np.linspace(z_lo, z_hi, n)
        with np.errstate(divide="ignore"):
            f = np.exp(self.log_dvdz_at(zz))
        return float(simpson(np.nan_to_num(f), x=zz) * area_sr)
