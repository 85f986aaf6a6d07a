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
    "CosmologyError",
    "VolumeTable",
    "cosmology_from_config",
    "cosmology_to_config",
    "describe_cosmology",
]

DEFAULT_COSMOLOGY = "WMAP9"


#: Keys of the dict (TOML ``[cosmology]`` table) form besides ``name``.
COSMOLOGY_PARAMETERS = ("H0", "Om0", "Ode0", "Tcmb0", "Ob0", "Neff")
#: astropy's default number of effective neutrino species (written only when it differs).
_DEFAULT_NEFF = 3.04
#: Redshifts on which a non-flat cosmology must have H(z)^2 > 0 (VolumeTable's range and more).
_E2_CHECK_Z = np.linspace(0.0, 20.0, 2001)


class CosmologyError(ValueError):
    """A cosmology description is invalid; the message names the key at fault."""


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
