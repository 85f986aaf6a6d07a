"""Survey description: fields, areas, redshift ranges, mass-completeness limits, cosmology.

A survey is a set of fields. Each field has a solid angle, a redshift range and a
mass-completeness limit log M_c(z), tabulated and interpolated linearly in z (flat beyond
the ends, as ``np.interp``; Leja et al. 2022, science.md section 1.5), plus the error model
of the catalogue's point estimates that the selection function needs (Gaussian mass errors
of width ``mass_error_dex``; a list of widths is an equal-weight mixture, for surveys whose
errors vary from galaxy to galaxy).

TOML form (the contract other tools read)::

    [cosmology]
    name = "WMAP9"            # or H0 = 70.0 and Om0 = 0.3 (flat Lambda-CDM)

    [[fields]]
    name = "GOODSS"
    area_arcmin2 = 172.0      # or area_deg2
    z_min = 0.5
    z_max = 2.5
    mass_error_dex = 0.1      # optional, default 0.1; a float or a list of floats
    z_error = 0.0             # optional, Gaussian sigma_z/(1+z) of the catalogue redshifts
                              # (a float, or a list: equal-weight mixture)
    side_arcmin = [10.2, 16.4]  # optional: rectangle (a, b) [arcmin] (or side_deg), for the
                              # cosmic variance; a*b must match the area within 10%
    [fields.completeness]
    z = [0.5, 1.0, 2.0]
    log_mass = [8.1, 8.8, 9.3]
    [fields.sigma_dm]         # optional: the field's dark-matter cosmic variance, overriding
    value = [0.16, 0.12]      # the one computed from side_arcmin (e.g. from simulations): a
    z = [1.0, 2.0]            # number, or a table over z (linear, flat beyond the ends);
    dz = 0.2                  # for slices of width dz (default 0.2), scaled as sqrt(dz/dz')

Cosmic variance (:mod:`popmodel.cosmic_variance`): a field's galaxy counts in a redshift slice
scatter by sigma_gg = b(M, z) sigma_DM, where sigma_DM is the rms dark-matter contrast of the
field's volume. It comes from the field's ``sigma_dm`` override if given, else from its side
lengths (:meth:`Field.sigma_dm_slice`, :meth:`Survey.sigma_dm`).
"""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
import tomli_w

from popmodel.cosmology import cosmology_from_config, cosmology_to_config
from popmodel.units import ARCMIN2_PER_SR, DEG2_PER_SR

__all__ = [
    "DEFAULT_MASS_ERROR_DEX",
    "SIDE_AREA_RTOL",
    "Field",
    "SigmaDMOverride",
    "Survey",
    "SurveyError",
]

#: Default Gaussian width [dex] of catalogue mass errors used by the selection function
#: when a field does not state one (typical of FAST/Prospector fits at the limit).
DEFAULT_MASS_ERROR_DEX = 0.1
#: Largest relative difference allowed between side_a * side_b and a field's area.
SIDE_AREA_RTOL = 0.1
#: Slice width to which a sigma_dm override refers unless it says otherwise (Moster et al. 2011).
_SIGMA_DM_DZ = 0.2


class SurveyError(ValueError):
    """A survey description is invalid; the message names the field and key at fault."""


def _area_to_sr(name: str, area: float | u.Quantity | None, unit: str | None) -> float:
    if area is None:
        raise SurveyError(f"field {name!r}: missing area (give area_arcmin2 or area_deg2)")
    if isinstance(area, u.Quantity):
        try:
            val = area.to_value(u.sr)
        except u.UnitConversionError:
            raise SurveyError(f"field {name!r}: area {area} is not a solid angle") from None
    else:
        val = float(area) / {"arcmin2": ARCMIN2_PER_SR, "deg2": DEG2_PER_SR, "sr": 1.0}[unit or "sr"]
    if not np.isfinite(val) or val <= 0:
        raise SurveyError(f"field {name!r}: area must be positive, got {area} {unit or ''}".strip())
    return float(val)


def _sides_to_arcmin(name: str, sides: Sequence[float] | u.Quantity) -> tuple[float, float]:
    """Two side lengths [arcmin] from angle Quantities or floats in arcmin."""
    try:
        if isinstance(sides, u.Quantity):
            vals = [float(v) for v in np.atleast_1d(sides.to_value(u.arcmin))]
        else:
            vals = [
                float(s.to_value(u.arcmin)) if isinstance(s, u.Quantity) else float(s)
                for s in sides
            ]
    except u.UnitConversionError:
        raise SurveyError(f"field {name!r}: side lengths {sides} are not angles") from None
    except (TypeError, ValueError):
        raise SurveyError(
            f"field {name!r}: side_arcmin must be two lengths, got {sides!r}"
        ) from None
    if len(vals) != 2 or not all(np.isfinite(v) and v > 0 for v in vals):
        raise SurveyError(
            f"field {name!r}: side_arcmin must be two positive lengths, got {sides!r}"
        )
    return vals[0], vals[1]


@dataclass(frozen=True)
class SigmaDMOverride:
    """A field's dark-matter cosmic variance supplied by the user (e.g. from simulations).

    The fractional rms sigma_DM of the matter density in the field's volume for redshift
    slices of width ``dz``: a constant (``z`` empty, one ``value``) or a table over z,
    interpolated linearly and held flat beyond the ends. Other slice widths scale as
    sqrt(dz / dz'), the pencil-beam limit (Moster et al. 2011). Galaxies of mass M then scatter
    by b(M, z) sigma_DM (:func:`popmodel.cosmic_variance.galaxy_bias`).

    Attributes:
        value: sigma_DM value(s).
        z: redshifts of the table (strictly increasing), or empty for a constant.
        dz: slice width the values refer to.
    """

    value: tuple[float, ...]
    z: tuple[float, ...] = ()
    dz: float = _SIGMA_DM_DZ

    def at(self, z: np.ndarray | float, dz: np.ndarray | float = _SIGMA_DM_DZ) -> np.ndarray:
        """sigma_DM for slices centred at ``z`` of width ``dz`` (broadcast)."""
        z, dz = np.broadcast_arrays(np.asarray(z, dtype=float), np.asarray(dz, dtype=float))
        base = np.interp(z, self.z, self.value) if self.z else np.full(z.shape, self.value[0])
        return base * np.sqrt(self.dz / dz)

    def to_dict(self) -> dict:
        d: dict = {"value": list(self.value) if self.z else self.value[0]}
        if self.z:
            d["z"] = list(self.z)
        d["dz"] = self.dz
        return d


def _sigma_dm_override(name: str, raw: object) -> SigmaDMOverride | None:
    """Parse a sigma_dm override: a number, a ``{value, z, dz}`` mapping or the dataclass."""
    if raw is None or isinstance(raw, SigmaDMOverride):
        d = None if raw is None else raw.to_dict()
    elif isinstance(raw, dict):
        d = dict(raw)
    else:
        d = {"value": raw}
    if d is None:
        return None
    unknown = set(d) - {"value", "z", "dz"}
    if unknown:
        raise SurveyError(f"field {name!r}: sigma_dm has unknown keys {sorted(unknown)}")
    if "value" not in d:
        raise SurveyError(f"field {name!r}: sigma_dm needs 'value'")
    try:
        value = np.atleast_1d(np.asarray(d["value"], dtype=float))
        zs = np.atleast_1d(np.asarray(d.get("z", []), dtype=float))
        dz = float(d.get("dz", _SIGMA_DM_DZ))
    except (TypeError, ValueError):
        raise SurveyError(f"field {name!r}: sigma_dm must be numbers, got {raw!r}") from None
    if value.ndim != 1 or value.size == 0 or np.any(~np.isfinite(value)) or np.any(value < 0):
        raise SurveyError(f"field {name!r}: sigma_dm values must be >= 0, got {value.tolist()}")
    if not (np.isfinite(dz) and dz > 0):
        raise SurveyError(f"field {name!r}: sigma_dm dz must be > 0, got {dz}")
    if zs.size == 0:
        if value.size != 1:
            raise SurveyError(
                f"field {name!r}: sigma_dm with {value.size} values needs a z table of the "
                "same length"
            )
        return SigmaDMOverride(value=(float(value[0]),), z=(), dz=dz)
    if zs.shape != value.shape or np.any(~np.isfinite(zs)) or np.any(np.diff(zs) <= 0):
        raise SurveyError(
            f"field {name!r}: sigma_dm z must be strictly increasing and as long as its values, "
            f"got z={zs.tolist()}, value={value.tolist()}"
        )
    return SigmaDMOverride(
        value=tuple(float(v) for v in value), z=tuple(float(v) for v in zs), dz=dz
    )


@dataclass(frozen=True)
class Field:
    """One survey field.

    Args:
        name: field name, as in the catalogue's ``field`` column.
        area: solid angle, an astropy Quantity (any solid-angle unit) or a float in ``area_unit``.
        z_min, z_max: redshift range of the field's catalogue (catalogue redshifts).
        completeness_z, completeness_log_mass: the limit log M_c(z) [log10 Msun] tabulated at
            strictly increasing redshifts; linear interpolation, flat beyond the ends.
        mass_error_dex: Gaussian width(s) of the catalogue mass errors for the selection
            function S_f; several widths form an equal-weight mixture.
        z_error: Gaussian sigma_z/(1+z) of the catalogue redshifts in the z-range selection
            (0 means the redshift cut acts on the true redshift); several values form an
            equal-weight mixture (e.g. quantiles of a photometric catalogue's errors, with 0 for
            its spectroscopic redshifts).
        area_unit: unit of a float ``area``: "sr", "arcmin2" or "deg2".
        side_arcmin: optional side lengths (a, b) of the field as a rectangle, for its cosmic
            variance: astropy angles or floats in arcmin; a * b must equal the area within
            :data:`SIDE_AREA_RTOL`. Stored as floats [arcmin].
        sigma_dm: optional override of the field's dark-matter cosmic variance: a number (for
            slices of width 0.2), a ``{"value", "z", "dz"}`` mapping or a
            :class:`SigmaDMOverride`.
    """

    name: str
    area: float | u.Quantity
    z_min: float
    z_max: float
    completeness_z: Sequence[float]
    completeness_log_mass: Sequence[float]
    mass_error_dex: float | Sequence[float] = DEFAULT_MASS_ERROR_DEX
    z_error: float | Sequence[float] = 0.0
    area_unit: str = "sr"
    side_arcmin: Sequence[float] | u.Quantity | None = None
    sigma_dm: float | dict | SigmaDMOverride | None = None
    area_sr: float = field(init=False)

    def __post_init__(self) -> None:
        name = self.name
        object.__setattr__(self, "area_sr", _area_to_sr(name, self.area, self.area_unit))
        if not (np.isfinite(self.z_min) and np.isfinite(self.z_max) and 0 < self.z_min < self.z_max):
            raise SurveyError(
                f"field {name!r}: need 0 < z_min < z_max, got z_min={self.z_min}, z_max={self.z_max}"
            )
        cz = np.asarray(self.completeness_z, dtype=float)
        cm = np.asarray(self.completeness_log_mass, dtype=float)
        if cz.ndim != 1 or cz.size == 0 or cz.shape != cm.shape:
            raise SurveyError(
                f"field {name!r}: completeness z and log_mass must be 1-D arrays of equal length"
            )
        if not (np.all(np.isfinite(cz)) and np.all(np.isfinite(cm))):
            raise SurveyError(f"field {name!r}: completeness table has NaN or inf")
        if np.any(np.diff(cz) <= 0):
            raise SurveyError(
                f"field {name!r}: completeness z must be strictly increasing, got {cz.tolist()}"
            )
        object.__setattr__(self, "completeness_z", cz)
        object.__setattr__(self, "completeness_log_mass", cm)
        errs = np.atleast_1d(np.asarray(self.mass_error_dex, dtype=float))
        if errs.size == 0 or np.any(~np.isfinite(errs)) or np.any(errs < 0):
            raise SurveyError(f"field {name!r}: mass_error_dex must be >= 0, got {errs.tolist()}")
        object.__setattr__(self, "mass_error_dex", tuple(float(e) for e in errs))
        zerr = np.atleast_1d(np.asarray(self.z_error, dtype=float))
        if zerr.size == 0 or np.any(~np.isfinite(zerr)) or np.any(zerr < 0):
            raise SurveyError(f"field {name!r}: z_error must be >= 0, got {zerr.tolist()}")
        object.__setattr__(self, "z_error", tuple(float(e) for e in zerr))
        if self.side_arcmin is not None:
            sides = _sides_to_arcmin(name, self.side_arcmin)
            rect = sides[0] * sides[1]
            if abs(rect / self.area_arcmin2 - 1.0) > SIDE_AREA_RTOL:
                raise SurveyError(
                    f"field {name!r}: side_arcmin {sides[0]:.4g}' x {sides[1]:.4g}' = "
                    f"{rect:.4g} arcmin^2 differs from the area {self.area_arcmin2:.4g} arcmin^2 "
                    f"by more than {SIDE_AREA_RTOL:.0%}; give the sides of a rectangle with the "
                    "field's area"
                )
            object.__setattr__(self, "side_arcmin", sides)
        object.__setattr__(self, "sigma_dm", _sigma_dm_override(name, self.sigma_dm))

    @property
    def area_arcmin2(self) -> float:
        """Solid angle [arcmin^2]."""
        return self.area_sr * ARCMIN2_PER_SR

    @property
    def has_cosmic_variance(self) -> bool:
        """Whether the field's cosmic variance is known (side lengths or a sigma_dm override)."""
        return self.side_arcmin is not None or self.sigma_dm is not None

    def sigma_dm_slice(
        self,
        z: np.ndarray | float,
        dz: np.ndarray | float = _SIGMA_DM_DZ,
        *,
        method: str = "auto",
        cosmology: apc.Cosmology | dict | str | None = None,
    ) -> np.ndarray:
        """Dark-matter cosmic variance of the field for slices centred at z of width dz.

        The ``sigma_dm`` override if given, else computed from ``side_arcmin`` by
        :func:`popmodel.cosmic_variance.sigma_dm` (``method`` and ``cosmology`` as there;
        default WMAP9: pass the survey's with :meth:`Survey.sigma_dm`).
        """
        from popmodel.cosmic_variance import sigma_dm

        return sigma_dm(self, z, dz, method=method, cosmology=cosmology)

    def log_mass_limit(self, z: np.ndarray | float) -> np.ndarray:
        """log M_c(z) [log10 Msun], linear in z, flat beyond the table's ends."""
        return np.interp(z, self.completeness_z, self.completeness_log_mass)

    def to_dict(self) -> dict:
        """TOML-ready dict (areas in arcmin^2)."""
        errs = list(self.mass_error_dex)
        return {
            "name": self.name,
            "area_arcmin2": self.area_arcmin2,
            "z_min": float(self.z_min),
            "z_max": float(self.z_max),
            "mass_error_dex": errs[0] if len(errs) == 1 else errs,
            "z_error": self.z_error[0] if len(self.z_error) == 1 else list(self.z_error),
            **({"side_arcmin": list(self.side_arcmin)} if self.side_arcmin is not None else {}),
            "completeness": {
                "z": [float(v) for v in self.completeness_z],
                "log_mass": [float(v) for v in self.completeness_log_mass],
            },
            **({"sigma_dm": self.sigma_dm.to_dict()} if self.sigma_dm is not None else {}),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Field:
        """Build a field from its TOML table."""
        name = d.get("name")
        if not name:
            raise SurveyError(f"a [[fields]] table has no 'name': {d}")
        if "area_arcmin2" in d:
            area, unit = d["area_arcmin2"], "arcmin2"
        elif "area_deg2" in d:
            area, unit = d["area_deg2"], "deg2"
        else:
            area, unit = None, None
        for key in ("z_min", "z_max", "completeness"):
            if key not in d:
                raise SurveyError(f"field {name!r}: missing key {key!r}")
        if "side_arcmin" in d and "side_deg" in d:
            raise SurveyError(f"field {name!r}: give side_arcmin or side_deg, not both")
        sides = d.get("side_arcmin")
        if "side_deg" in d:
            try:
                sides = [float(v) * 60.0 for v in d["side_deg"]]
            except (TypeError, ValueError):
                raise SurveyError(
                    f"field {name!r}: side_deg must be two lengths, got {d['side_deg']!r}"
                ) from None
        comp = d["completeness"]
        for key in ("z", "log_mass"):
            if key not in comp:
                raise SurveyError(f"field {name!r}: [fields.completeness] missing {key!r}")
        return cls(
            name=str(name),
            area=area,
            area_unit=unit or "sr",
            z_min=float(d["z_min"]),
            z_max=float(d["z_max"]),
            completeness_z=comp["z"],
            completeness_log_mass=comp["log_mass"],
            mass_error_dex=d.get("mass_error_dex", DEFAULT_MASS_ERROR_DEX),
            z_error=d.get("z_error", 0.0),
            side_arcmin=sides,
            sigma_dm=d.get("sigma_dm"),
        )


@dataclass(frozen=True)
class Survey:
    """A set of fields observed under one cosmology.

    Args:
        fields: the fields; names must be unique.
        cosmology: an astropy cosmology, a name, or ``{H0, Om0}``; default WMAP9.
        name: a label for outputs.
    """

    fields: tuple[Field, ...]
    cosmology: apc.Cosmology | dict | str | None = None
    name: str = "survey"

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.fields:
            raise SurveyError("a survey needs at least one field")
        names = [f.name for f in self.fields]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SurveyError(f"duplicate field names: {sorted(dup)}")
        object.__setattr__(self, "cosmology", cosmology_from_config(self.cosmology))

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> Field:
        """The field called ``name`` (SurveyError naming it if unknown)."""
        for f in self.fields:
            if f.name == name:
                return f
        raise SurveyError(f"unknown field {name!r}; the survey has {self.field_names}")

    @property
    def z_range(self) -> tuple[float, float]:
        return min(f.z_min for f in self.fields), max(f.z_max for f in self.fields)

    @property
    def total_area_arcmin2(self) -> float:
        return sum(f.area_arcmin2 for f in self.fields)

    def sigma_dm(
        self,
        name: str,
        z: np.ndarray | float,
        dz: np.ndarray | float = _SIGMA_DM_DZ,
        *,
        method: str = "auto",
    ) -> np.ndarray:
        """Dark-matter cosmic variance of field ``name`` in the survey's cosmology.

        See :meth:`Field.sigma_dm_slice`; the power spectrum follows the survey cosmology
        (:func:`popmodel.cosmic_variance.linear_power`).
        """
        return self.field(name).sigma_dm_slice(z, dz, method=method, cosmology=self.cosmology)

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "cosmology": cosmology_to_config(self.cosmology),
            "fields": [f.to_dict() for f in self.fields],
        }

    @classmethod
    def from_dict(cls, d: dict) -> Survey:
        if "fields" not in d or not d["fields"]:
            raise SurveyError("survey description has no [[fields]] tables")
        return cls(
            fields=tuple(Field.from_dict(f) for f in d["fields"]),
            cosmology=d.get("cosmology"),
            name=d.get("name", "survey"),
        )

    @classmethod
    def read(cls, path: str | Path) -> Survey:
        """Read a survey TOML file."""
        with open(path, "rb") as fh:
            try:
                d = tomllib.load(fh)
            except tomllib.TOMLDecodeError as err:
                raise SurveyError(f"{path}: not valid TOML ({err})") from None
        return cls.from_dict(d)

    def write(self, path: str | Path) -> None:
        """Write the survey as TOML."""
        Path(path).write_text(tomli_w.dumps(self.to_dict()))
