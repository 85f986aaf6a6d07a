"""Survey description: fields, areas, redshift ranges, mass-completeness limits, cosmology.

A survey is a set of fields. Each field has a solid angle, a redshift range and a
mass-completeness limit log M_c(z), tabulated and interpolated linearly in z (Leja et al. 2022,
ApJ 936, 165), plus the error model
of the catalogue's point estimates that the selection function needs (Gaussian mass errors
of width ``mass_error_dex``; a list of widths is an equal-weight mixture, for surveys whose
errors vary from galaxy to galaxy).

TOML form (the contract other tools read)::

    imf = "chabrier"          # optional: the IMF the fit's masses and SFRs assume,
                              # "chabrier" (default), "kroupa" or "salpeter"

    [cosmology]
    name = "WMAP9"            # an astropy built-in, or H0 = 70.0 and Om0 = 0.3 (flat
                              # Lambda-CDM; with Ode0 = 0.6 non-flat; optional Tcmb0, Ob0,
                              # Neff), never both (popmodel.cosmology.cosmology_from_config);
                              # default WMAP9 (popmodel.cosmology.DEFAULT_COSMOLOGY)

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
    empty = false             # optional: true says the catalogue has no galaxy of this
                              # field on purpose (observed, none selected)
    [fields.completeness]
    z = [0.5, 1.0, 2.5]       # strictly increasing, from z_min to z_max at least
    log_mass = [8.1, 8.8, 9.3]
    extrapolate = "flat"      # optional: a table that does not span [z_min, z_max] is an
                              # error unless this says to hold the limit flat beyond its ends
    [fields.sigma_dm]         # optional: the field's dark-matter cosmic variance, overriding
    value = [0.16, 0.12]      # the one computed from side_arcmin (e.g. from simulations): a
    z = [1.0, 2.0]            # number, or a table over z (linear, flat beyond the ends);
    dz = 0.2                  # for slices of width dz (default 0.2), scaled as sqrt(dz/dz')

Several surveys in one fit (Leja et al. 2020: COSMOS-2015 at 0.2 < z < 0.8 with 3D-HST at
0.5 < z < 3): ``[[survey]]`` tables (each with ``name`` and ``[[survey.fields]]``) instead of
``[[fields]]``, one top-level ``[cosmology]`` (and ``imf``), and overlaps resolved by ownership::

    [[survey.fields]]
    name = "CANDELS-COSMOS"
    inside = "COSMOS2015"     # or overlap_arcmin2 = { COSMOS2015 = 120.0 } for a partial overlap
    ...
    [[ownership]]             # in the overlap, CANDELS-COSMOS counts 0.5 <= z_obs <= 0.8
    fields = ["CANDELS-COSMOS", "COSMOS2015"]
    owner = "CANDELS-COSMOS"
    z = [0.5, 0.8]

An overlap whose common redshift range is not fully owned is an error (:class:`Survey`).

Reading rules (issue 15, "nothing silently wrong"): every key the reader does not use is a
:class:`SurveyError` naming it and the table it is in; so are conflicting keys (``area_arcmin2``
with ``area_deg2``, ``side_arcmin`` with ``side_deg``, a built-in cosmology ``name`` with
parameters), values of the wrong type (a string or a boolean where a number belongs), and a
file that is not valid TOML (naming the file). The completeness table:

* must span the field's redshift range, ``z[0] <= z_min`` and ``z[-1] >= z_max`` (a table of
  one node is a constant limit, valid at every z), unless ``extrapolate = "flat"`` says to hold
  log M_c at the end values beyond the table; the extrapolation is then logged (a warning from
  the ``popmodel.survey`` logger naming the field, the ranges and the held values), and
  :meth:`Survey.write` writes the key back. Fields built in Python (:class:`Field`) keep the
  flat default unless ``completeness_extrapolate="none"``; that default is logged at INFO level.
* should rise with redshift: a node whose limit lies more than :data:`COMPLETENESS_DROP_DEX`
  below the highest limit at a lower redshift is reported (a logged warning naming the field and
  the drops), since a mass-completeness limit normally rises with z and a drop that large usually
  means a mis-ordered or mis-typed table. It is not refused: the table is used as given.

``empty = true`` (:attr:`Field.empty`) marks a field that was observed but of which the
catalogue holds no galaxy on purpose (e.g. none passes its cuts): zero galaxies there are an
observation. Without it, a field with no galaxies in the catalogue may be a mistake (a missing
file or a misspelt field name); what the fit does with such a field is decided there
(:mod:`popmodel.smf`). The flag is only a declaration: the reader checks that it is a boolean
and nothing else, and :meth:`Survey.write` writes it back only when true.

Cosmic variance (:mod:`popmodel.cosmic_variance`): a field's galaxy counts in a redshift slice
scatter by sigma_gg = b(M, z) sigma_DM, where sigma_DM is the rms dark-matter contrast of the
field's volume. It comes from the field's ``sigma_dm`` override if given, else from its side
lengths (:meth:`Field.sigma_dm_slice`, :meth:`Survey.sigma_dm`).
"""

from __future__ import annotations

import itertools
import logging
import numbers
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
import tomli_w

from popmodel.cosmology import (
    DEFAULT_IMF,
    CosmologyError,
    cosmology_from_config,
    cosmology_to_config,
    normalize_imf,
)
from popmodel.units import ARCMIN2_PER_SR, DEG2_PER_SR

__all__ = [
    "COMPLETENESS_DROP_DEX",
    "DEFAULT_MASS_ERROR_DEX",
    "SIDE_AREA_RTOL",
    "Field",
    "Overlap",
    "Ownership",
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
#: A completeness node whose log M_c lies more than this [dex] below the highest limit at a
#: lower redshift is reported (logged warning): mass-completeness limits normally rise with z.
COMPLETENESS_DROP_DEX = 0.5
#: Keys a [[fields]] table may hold.
_FIELD_KEYS = ("name", "area_arcmin2", "area_deg2", "z_min", "z_max", "mass_error_dex", "z_error",
               "side_arcmin", "side_deg", "completeness", "sigma_dm", "inside", "overlap_arcmin2",
               "overlap_deg2", "empty")
#: Keys a completeness table may hold.
_COMPLETENESS_KEYS = ("z", "log_mass", "extrapolate")
#: Values of ``extrapolate``: "none" refuses a table that does not span the field's z range.
_EXTRAPOLATE = ("none", "flat")
#: Keys at the top of a survey file.
_SURVEY_KEYS = ("name", "cosmology", "imf", "fields", "survey", "ownership")

_log = logging.getLogger(__name__)


class SurveyError(ValueError):
    """A survey description is invalid; the message names the field and key at fault."""


def _unknown_keys(where: str, d: Mapping, known: Sequence[str]) -> None:
    """SurveyError naming every key of ``d`` outside ``known`` (and listing ``known``)."""
    unknown = sorted(str(k) for k in d if k not in known)
    if unknown:
        raise SurveyError(f"{where}: unknown key(s) {unknown}; known keys: {', '.join(known)}")


def _is_number(v: object) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool | np.bool_)


def _floats(where: str, key: str, raw: object, *, what: str = "numbers") -> np.ndarray:
    """``raw`` as a float array (a number or a sequence of numbers), else a SurveyError.

    Strings and booleans are refused, not converted: ``"8 arcmin2"`` or ``true`` where a
    number belongs is an error naming ``where`` and ``key``.
    """
    if _is_number(raw):
        return np.asarray(float(raw))
    if isinstance(raw, str | bytes | Mapping) or raw is None:
        arr = None
    else:
        try:
            arr = np.asarray(raw)
        except (TypeError, ValueError):
            arr = None
    if arr is None or arr.dtype.kind not in "iuf":
        raise SurveyError(f"{where}: {key} must be {what}, got {raw!r}")
    return arr.astype(float)


def _scalar(where: str, key: str, raw: object) -> float:
    arr = _floats(where, key, raw, what="a number")
    if arr.ndim != 0:
        raise SurveyError(f"{where}: {key} must be a number, got {raw!r}")
    return float(arr)


def _area_to_sr(name: str, area: float | u.Quantity | None, unit: str | None) -> float:
    if area is None:
        raise SurveyError(f"field {name!r}: missing area (give area_arcmin2 or area_deg2)")
    if isinstance(area, u.Quantity):
        try:
            val = area.to_value(u.sr)
        except u.UnitConversionError:
            raise SurveyError(f"field {name!r}: area {area} is not a solid angle") from None
    else:
        per_sr = {"arcmin2": ARCMIN2_PER_SR, "deg2": DEG2_PER_SR, "sr": 1.0}
        if (unit or "sr") not in per_sr:
            raise SurveyError(f"field {name!r}: area unit must be one of {list(per_sr)}, got {unit!r}")
        key = f"area_{unit}" if unit in ("arcmin2", "deg2") else "area"
        val = _scalar(f"field {name!r}", key, area) / per_sr[unit or "sr"]
    if not np.isfinite(val) or val <= 0:
        raise SurveyError(f"field {name!r}: area must be positive, got {area} {unit or ''}".strip())
    return float(val)


def _sides_to_arcmin(name: str, sides: Sequence[float] | u.Quantity) -> tuple[float, float]:
    """Two side lengths [arcmin] from angle Quantities or floats in arcmin."""
    try:
        if isinstance(sides, u.Quantity):
            vals = [float(v) for v in np.atleast_1d(sides.to_value(u.arcmin))]
        elif isinstance(sides, str | bytes | Mapping):
            raise TypeError
        else:
            vals = [
                float(s.to_value(u.arcmin)) if isinstance(s, u.Quantity)
                else float(s) if _is_number(s) else float("nan")
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
    elif isinstance(raw, Mapping):
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
    where = f"field {name!r}: sigma_dm"
    value = np.atleast_1d(_floats(where, "value", d["value"]))
    zs = np.atleast_1d(_floats(where, "z", d.get("z", [])))
    dz = _scalar(where, "dz", d.get("dz", _SIGMA_DM_DZ))
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
            strictly increasing redshifts; linear interpolation, flat beyond the ends (see
            ``completeness_extrapolate``). A node more than :data:`COMPLETENESS_DROP_DEX` below
            the highest limit at lower z is reported (logged warning).
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
        inside: name(s) of field(s) whose footprint contains this whole field (CANDELS-COSMOS
            inside COSMOS-2015): the overlap is this field's area (:class:`Survey`).
        overlaps: ``{other field: shared solid angle}`` for partial overlaps (Quantities or
            floats in ``area_unit``); the TOML key is ``overlap_arcmin2`` (or ``overlap_deg2``).
        completeness_extrapolate: what happens where the completeness table does not reach
            z_min or z_max: ``"none"`` (the TOML default) refuses such a table
            (:class:`SurveyError`); ``"flat"`` (TOML ``extrapolate = "flat"``) holds the end
            values and logs a warning saying so; None (the Python default, kept for code that
            builds fields directly) holds them flat and logs at INFO level only.
            :meth:`to_dict` writes ``extrapolate = "flat"`` for a table that needs it.
        empty: the catalogue has no galaxies of this field on purpose (it was observed and
            nothing was selected); TOML ``empty = true``.
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
    inside: str | Sequence[str] = ()
    overlaps: Mapping[str, float | u.Quantity] | Sequence[tuple[str, float]] | None = None
    completeness_extrapolate: str | None = None
    empty: bool = False
    area_sr: float = field(init=False)

    def __post_init__(self) -> None:
        name = self.name
        if not isinstance(name, str) or not name:
            raise SurveyError(f"a field's name must be a non-empty string, got {name!r}")
        where = f"field {name!r}"
        object.__setattr__(self, "area_sr", _area_to_sr(name, self.area, self.area_unit))
        z_min, z_max = _scalar(where, "z_min", self.z_min), _scalar(where, "z_max", self.z_max)
        if not (np.isfinite(z_min) and np.isfinite(z_max) and 0 < z_min < z_max):
            raise SurveyError(
                f"field {name!r}: need 0 < z_min < z_max, got z_min={self.z_min}, z_max={self.z_max}"
            )
        object.__setattr__(self, "z_min", z_min)
        object.__setattr__(self, "z_max", z_max)
        cz = _floats(where, "completeness z", self.completeness_z)
        cm = _floats(where, "completeness log_mass", self.completeness_log_mass)
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
        if self.completeness_extrapolate not in (None, *_EXTRAPOLATE):
            raise SurveyError(
                f"field {name!r}: completeness extrapolate must be one of {list(_EXTRAPOLATE)}, "
                f"got {self.completeness_extrapolate!r}"
            )
        self._check_completeness_span()
        _report_completeness_drops(name, cz, cm)
        if not isinstance(self.empty, bool | np.bool_):
            raise SurveyError(f"field {name!r}: empty must be true or false, got {self.empty!r}")
        object.__setattr__(self, "empty", bool(self.empty))
        errs = np.atleast_1d(_floats(where, "mass_error_dex", self.mass_error_dex))
        if errs.ndim != 1 or errs.size == 0 or np.any(~np.isfinite(errs)) or np.any(errs < 0):
            raise SurveyError(f"field {name!r}: mass_error_dex must be >= 0, got {errs.tolist()}")
        object.__setattr__(self, "mass_error_dex", tuple(float(e) for e in errs))
        zerr = np.atleast_1d(_floats(where, "z_error", self.z_error))
        if zerr.ndim != 1 or zerr.size == 0 or np.any(~np.isfinite(zerr)) or np.any(zerr < 0):
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
        raw_in = self.inside
        if isinstance(raw_in, str):
            inside = (raw_in,)
        elif isinstance(raw_in, Sequence) and not isinstance(raw_in, bytes):
            inside = tuple(raw_in)
        else:
            inside = (None,) if raw_in else ()
        if not all(isinstance(o, str) and o for o in inside):
            raise SurveyError(f"field {name!r}: inside must be field name(s), got {self.inside!r}")
        object.__setattr__(self, "inside", tuple(dict.fromkeys(inside)))
        raw = self.overlaps or {}
        try:
            items = list(raw.items() if isinstance(raw, Mapping) else raw)
            if not all(len(it) == 2 for it in items):
                raise TypeError
        except TypeError:
            raise SurveyError(
                f"field {name!r}: overlaps must map other field names to areas, got {raw!r}"
            ) from None
        ov = []
        for other, area in items:
            if not isinstance(other, str) or not other:
                raise SurveyError(
                    f"field {name!r}: overlaps must map other field names to areas, got {raw!r}"
                )
            a = _area_to_sr(name, area, self.area_unit)  # positive, finite
            if a > self.area_sr * (1.0 + 1e-9):
                raise SurveyError(
                    f"field {name!r}: its overlap with {other!r} ({a * ARCMIN2_PER_SR:.4g} "
                    f"arcmin^2) is larger than its area ({self.area_arcmin2:.4g} arcmin^2)"
                )
            ov.append((str(other), a))
        object.__setattr__(self, "overlaps", tuple(ov))
        for other in [*self.inside, *(o for o, _ in ov)]:
            if other == name:
                raise SurveyError(f"field {name!r}: declares an overlap with itself")
        both = set(self.inside) & {o for o, _ in ov}
        if both or len({o for o, _ in ov}) != len(ov):
            raise SurveyError(
                f"field {name!r}: overlap with {sorted(both) or [o for o, _ in ov]} declared twice "
                "(give 'inside' or one overlap area per other field)"
            )

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

    @property
    def completeness_spans(self) -> bool:
        """Whether the completeness table needs no extrapolation: it reaches z_min and z_max,
        or it has one node (a constant limit at every redshift)."""
        cz = self.completeness_z
        return bool(cz.size == 1 or (cz[0] <= self.z_min and cz[-1] >= self.z_max))

    def _check_completeness_span(self) -> None:
        """Refuse, or log, a completeness table that does not span [z_min, z_max]."""
        if self.completeness_spans:
            return
        cz, cm = self.completeness_z, self.completeness_log_mass
        covers = (f"the completeness table covers {cz[0]:g} <= z <= {cz[-1]:g}, not all of the "
                  f"field's {self.z_min:g} <= z <= {self.z_max:g}")
        if self.completeness_extrapolate == "none":
            raise SurveyError(
                f"field {self.name!r}: {covers}; extend the table to z_min and z_max, or set "
                'extrapolate = "flat" in its completeness table to hold the limit flat beyond '
                "the table's ends (logged)"
            )
        held = []
        if cz[0] > self.z_min:
            held.append(f"at {cm[0]:g} for {self.z_min:g} <= z < {cz[0]:g}")
        if cz[-1] < self.z_max:
            held.append(f"at {cm[-1]:g} for {cz[-1]:g} < z <= {self.z_max:g}")
        if self.completeness_extrapolate == "flat":
            level, why = logging.WARNING, 'extrapolate = "flat"'
        else:
            level, why = logging.INFO, "the default of a Field built in Python"
        _log.log(level, "field %r: %s; log M_c is extrapolated flat, held %s (%s)",
                 self.name, covers, " and ".join(held), why)

    def log_mass_limit(self, z: np.ndarray | float) -> np.ndarray:
        """log M_c(z) [log10 Msun], linear in z, flat beyond the table's ends (``np.interp``).

        Inside [z_min, z_max] the flat part is used only where the field allows it
        (``completeness_extrapolate``); outside, it serves the selection's error tails.
        """
        return np.interp(z, self.completeness_z, self.completeness_log_mass)

    def in_z_range(self, z_obs: np.ndarray | float) -> np.ndarray:
        """Whether catalogue redshifts lie in the field's window, ``z_min <= z_obs <= z_max``
        (both ends included)."""
        z = np.asarray(z_obs, dtype=float)
        return (z >= self.z_min) & (z <= self.z_max)

    def above_limit(self, log_mass_obs: np.ndarray | float, z_obs: np.ndarray | float) -> np.ndarray:
        """Whether catalogue masses reach the completeness limit,
        ``log_mass_obs >= log M_c(z_obs)``: a galaxy exactly at the limit passes."""
        return np.asarray(log_mass_obs, dtype=float) >= self.log_mass_limit(np.asarray(z_obs, float))

    def selects(self, log_mass_obs: np.ndarray | float, z_obs: np.ndarray | float) -> np.ndarray:
        """The field's catalogue cut on the point estimates (log M_obs, z_obs): a bool array.

        ``z_min <= z_obs <= z_max`` and ``log_mass_obs >= log M_c(z_obs)``; both ends of the
        window and the limit itself pass. This is the convention of the mass function's
        selection function S_f (:mod:`popmodel.smf.likelihood`: the cut it integrates over is
        ``z_min <= z_obs <= z_max and log M_obs >= log M_c(z_obs)``), of the mock
        (:func:`popmodel.mock.draw_mock`) and of the model checks; the SFS flow's data
        preparation uses it too (:func:`popmodel.flow.fit.apply_survey_cuts`). Ownership of
        overlaps is :meth:`Survey.selects`'s business.
        """
        return self.in_z_range(z_obs) & self.above_limit(log_mass_obs, z_obs)

    def to_dict(self) -> dict:
        """TOML-ready dict (areas in arcmin^2).

        ``extrapolate = "flat"`` is written into the completeness table when the table does not
        span [z_min, z_max] (so that the file reads back, saying so), and ``empty = true`` when
        the field is empty on purpose; neither otherwise, so older files keep their form.
        """
        errs = list(self.mass_error_dex)
        comp: dict = {
            "z": [float(v) for v in self.completeness_z],
            "log_mass": [float(v) for v in self.completeness_log_mass],
        }
        if not self.completeness_spans:  # refused at construction unless extrapolated flat
            comp["extrapolate"] = "flat"
        return {
            "name": self.name,
            "area_arcmin2": self.area_arcmin2,
            "z_min": float(self.z_min),
            "z_max": float(self.z_max),
            "mass_error_dex": errs[0] if len(errs) == 1 else errs,
            "z_error": self.z_error[0] if len(self.z_error) == 1 else list(self.z_error),
            **({"side_arcmin": list(self.side_arcmin)} if self.side_arcmin is not None else {}),
            **({"empty": True} if self.empty else {}),
            "completeness": comp,
            **({"sigma_dm": self.sigma_dm.to_dict()} if self.sigma_dm is not None else {}),
            **({"inside": list(self.inside)} if self.inside else {}),
            **({"overlap_arcmin2": {o: a * ARCMIN2_PER_SR for o, a in self.overlaps}}
               if self.overlaps else {}),
        }

    @classmethod
    def from_dict(cls, d: Mapping) -> Field:
        """Build a field from its TOML table.

        Every key must be one the reader uses (:data:`_FIELD_KEYS`; completeness tables
        ``z``, ``log_mass``, ``extrapolate``); conflicting keys (``area_arcmin2`` and
        ``area_deg2``, ``side_arcmin`` and ``side_deg``, ``overlap_arcmin2`` and
        ``overlap_deg2``) and values of the wrong type are errors naming the field and key.
        Without ``extrapolate`` the completeness table must span [z_min, z_max].
        """
        if not isinstance(d, Mapping):
            raise SurveyError(f"a [[fields]] entry must be a table, got {d!r}")
        name = d.get("name")
        if not isinstance(name, str) or not name:
            what = ("no 'name'" if name is None or name == ""
                    else f"a 'name' that is not a string ({name!r})")
            raise SurveyError(f"a [[fields]] table has {what}: {dict(d)}")
        where = f"field {name!r}"
        _unknown_keys(where, d, _FIELD_KEYS)
        for a, b in (("area_arcmin2", "area_deg2"), ("side_arcmin", "side_deg"),
                     ("overlap_arcmin2", "overlap_deg2")):
            if a in d and b in d:
                raise SurveyError(
                    f"{where}: give {a} or {b}, not both (conflicting keys {a} = {d[a]!r}, "
                    f"{b} = {d[b]!r})"
                )
        area, unit = None, None
        for key, kunit in (("area_arcmin2", "arcmin2"), ("area_deg2", "deg2")):
            if key in d:
                area, unit = _scalar(where, key, d[key]), kunit
        for key in ("z_min", "z_max", "completeness"):
            if key not in d:
                raise SurveyError(f"{where}: missing key {key!r}")
        z_min, z_max = _scalar(where, "z_min", d["z_min"]), _scalar(where, "z_max", d["z_max"])
        sides = d.get("side_arcmin")
        if "side_deg" in d:
            sd = _floats(where, "side_deg", d["side_deg"], what="two lengths")
            if sd.ndim != 1:
                raise SurveyError(f"{where}: side_deg must be two lengths, got {d['side_deg']!r}")
            sides = (sd * 60.0).tolist()
        overlaps = None
        for key, ounit in (("overlap_arcmin2", u.arcmin**2), ("overlap_deg2", u.deg**2)):
            if key in d:
                if not isinstance(d[key], Mapping):
                    raise SurveyError(
                        f"{where}: {key} must be a table {{other_field = area}}, got {d[key]!r}"
                    )
                overlaps = {str(k): _scalar(where, f"{key}.{k}", v) * ounit
                            for k, v in d[key].items()}
        comp = d["completeness"]
        cwhere = f"{where}: [fields.completeness]"
        if not isinstance(comp, Mapping):
            raise SurveyError(f"{cwhere} must be a table with z and log_mass, got {comp!r}")
        _unknown_keys(cwhere, comp, _COMPLETENESS_KEYS)
        for key in ("z", "log_mass"):
            if key not in comp:
                raise SurveyError(f"{cwhere} missing {key!r}")
        extrap = comp.get("extrapolate", "none")
        if extrap not in _EXTRAPOLATE:
            raise SurveyError(
                f"{cwhere}: extrapolate must be one of {list(_EXTRAPOLATE)}, got {extrap!r}"
            )
        empty = d.get("empty", False)
        if not isinstance(empty, bool):
            raise SurveyError(f"{where}: empty must be true or false, got {empty!r}")
        inside = d.get("inside", [])
        if not (isinstance(inside, str) or (isinstance(inside, list)
                                            and all(isinstance(o, str) for o in inside))):
            raise SurveyError(f"{where}: inside must be field name(s), got {inside!r}")
        return cls(
            name=name,
            area=area,
            area_unit=unit or "sr",
            z_min=z_min,
            z_max=z_max,
            completeness_z=_floats(cwhere, "z", comp["z"]),
            completeness_log_mass=_floats(cwhere, "log_mass", comp["log_mass"]),
            mass_error_dex=d.get("mass_error_dex", DEFAULT_MASS_ERROR_DEX),
            z_error=d.get("z_error", 0.0),
            side_arcmin=sides,
            sigma_dm=d.get("sigma_dm"),
            inside=inside,
            overlaps=overlaps,
            completeness_extrapolate=extrap,
            empty=empty,
        )


def _report_completeness_drops(name: str, cz: np.ndarray, cm: np.ndarray) -> None:
    """Log a warning for every node more than COMPLETENESS_DROP_DEX below the running maximum.

    A mass-completeness limit rises with redshift (fainter galaxies at fixed mass); a limit that
    falls by more than :data:`COMPLETENESS_DROP_DEX` [dex] below the highest one at a lower
    redshift usually means a mis-ordered or mis-typed table. It is reported, not refused.
    """
    drops = []
    k_max = 0
    for k in range(1, cm.size):
        if cm[k] < cm[k_max] - COMPLETENESS_DROP_DEX:
            drops.append(f"{cm[k_max]:g} at z={cz[k_max]:g} -> {cm[k]:g} at z={cz[k]:g}")
        if cm[k] > cm[k_max]:
            k_max = k
    if drops:
        _log.warning(
            "field %r: the completeness limit falls with redshift by more than %g dex: %s "
            "(log_mass = %s at z = %s); a mass-completeness limit normally rises with z: "
            "check the table's order and units",
            name, COMPLETENESS_DROP_DEX, "; ".join(drops), cm.tolist(), cz.tolist(),
        )


@dataclass(frozen=True)
class Ownership:
    """Which of two overlapping fields counts the galaxies of their shared footprint in a z range.

    In the part of the sky that fields ``fields[0]`` and ``fields[1]`` share, galaxies whose
    catalogue redshift lies in [``z_min``, ``z_max``) belong to ``owner``; the other field's
    galaxies there are duplicates and are removed (counted in the selection report), and its
    effective area in that redshift range loses the overlap (:meth:`Survey.area_pieces`).

    Attributes:
        fields: the two field names (order irrelevant).
        owner: one of them.
        z_min, z_max: the redshift range of the rule (clipped to where both fields observe).
    """

    fields: tuple[str, str]
    owner: str
    z_min: float
    z_max: float

    def __post_init__(self) -> None:
        fl = tuple(str(f) for f in self.fields)
        object.__setattr__(self, "fields", fl)
        if len(fl) != 2 or fl[0] == fl[1]:
            raise SurveyError(f"ownership rule: 'fields' must name two different fields, got {fl}")
        if self.owner not in fl:
            raise SurveyError(
                f"ownership rule for {fl[0]!r} and {fl[1]!r}: owner {self.owner!r} is neither"
            )
        if not (np.isfinite(self.z_min) and np.isfinite(self.z_max) and self.z_min < self.z_max):
            raise SurveyError(
                f"ownership rule for {fl[0]!r} and {fl[1]!r}: need z_min < z_max, got "
                f"[{self.z_min}, {self.z_max}]"
            )

    def to_dict(self) -> dict:
        return {"fields": list(self.fields), "owner": self.owner,
                "z": [float(self.z_min), float(self.z_max)]}

    @classmethod
    def from_dict(cls, d: Mapping | Ownership) -> Ownership:
        if isinstance(d, Ownership):
            return d
        if not isinstance(d, Mapping):
            raise SurveyError(f"an [[ownership]] entry must be a table, got {d!r}")
        unknown = set(d) - {"fields", "owner", "z"}
        missing = {"fields", "owner", "z"} - set(d)
        if unknown or missing:
            raise SurveyError(
                f"an [[ownership]] table needs exactly the keys fields, owner, z; got "
                f"{sorted(map(str, d))} (unknown {sorted(map(str, unknown))}, missing "
                f"{sorted(missing)})"
            )
        fl, owner = d["fields"], d["owner"]
        if not (isinstance(fl, Sequence) and not isinstance(fl, str)
                and all(isinstance(f, str) for f in fl)):
            raise SurveyError(f"[[ownership]] fields must be two field names, got {fl!r}")
        if not isinstance(owner, str):
            raise SurveyError(f"[[ownership]] owner must be a field name, got {owner!r}")
        zz = _floats("[[ownership]]", "z", d["z"], what="[z_min, z_max]")
        if zz.shape != (2,):
            raise SurveyError(f"[[ownership]] z must be [z_min, z_max], got {d['z']!r}")
        return cls(tuple(fl), owner, float(zz[0]), float(zz[1]))


@dataclass(frozen=True)
class Overlap:
    """A resolved overlap of two fields' footprints (built by :class:`Survey`).

    Attributes:
        fields: the two field names, the one inside the other first when one lies inside.
        area_sr: the shared solid angle [sr].
        inside: the field that lies entirely inside the other, or None.
        z_min, z_max: where both fields' redshift ranges overlap (z_min >= z_max: nowhere).
        owners: ``(z_lo, z_hi, owner)`` pieces tiling [z_min, z_max] (empty where nowhere).
    """

    fields: tuple[str, str]
    area_sr: float
    inside: str | None
    z_min: float
    z_max: float
    owners: tuple[tuple[float, float, str], ...] = ()

    def other(self, name: str) -> str:
        return self.fields[1] if name == self.fields[0] else self.fields[0]

    def region_label(self, name: str) -> str:
        """The catalogue ``field`` value of field ``name``'s galaxies inside this overlap.

        ``"<name>[<other>]"``; a field that lies entirely inside the other may use its plain
        name as well.
        """
        return f"{name}[{self.other(name)}]"

    def owner_at(self, z: np.ndarray | float) -> np.ndarray:
        """Index (0 or 1 into ``fields``) of the owner at catalogue redshift z; -1 outside."""
        z = np.asarray(z, dtype=float)
        out = np.full(z.shape, -1, dtype=np.int64)
        for k, (a, b, who) in enumerate(self.owners):
            last = k == len(self.owners) - 1
            sel = (z >= a) & ((z <= b) if last else (z < b))
            out[sel] = self.fields.index(who)
        return out


def _tables(key: str, raw: object) -> list[Mapping]:
    """An array of tables (``[[key]]``), else a SurveyError naming ``key``."""
    if not isinstance(raw, list) or not all(isinstance(t, Mapping) for t in raw):
        raise SurveyError(
            f"survey description: {key} must be an array of tables ([[{key}]]), got {raw!r}"
        )
    return raw


def _fmt_z(z: float) -> str:
    return f"{z:.4g}"


def _resolve_overlaps(fields: tuple[Field, ...], rules: tuple[Ownership, ...]) -> tuple[Overlap, ...]:
    """Pair up the fields' overlap declarations and check that ownership resolves each one."""
    by_name = {f.name: f for f in fields}
    decl: dict[frozenset, tuple[float, str | None, list[str]]] = {}
    for f in fields:
        for other, area, how in [*((o, f.area_sr, "inside") for o in f.inside),
                                 *((o, a, "overlap") for o, a in f.overlaps)]:
            if other not in by_name:
                raise SurveyError(
                    f"field {f.name!r} declares an overlap with {other!r}, which is not in this "
                    f"survey description (fields: {list(by_name)})"
                )
            g = by_name[other]
            if how == "inside" and f.area_sr > g.area_sr * (1.0 + 1e-9):
                raise SurveyError(
                    f"field {f.name!r} ({f.area_arcmin2:.4g} arcmin^2) cannot lie inside "
                    f"{other!r} ({g.area_arcmin2:.4g} arcmin^2)"
                )
            if area > min(f.area_sr, g.area_sr) * (1.0 + 1e-9):
                raise SurveyError(
                    f"fields {f.name!r} and {other!r}: overlap {area * ARCMIN2_PER_SR:.4g} "
                    f"arcmin^2 exceeds the smaller field's area"
                )
            key = frozenset((f.name, other))
            ins = f.name if how == "inside" else None
            if key in decl:
                a0, ins0, who = decl[key]
                if abs(a0 - area) > 1e-6 * max(a0, area):
                    raise SurveyError(
                        f"fields {f.name!r} and {other!r}: their overlap is declared twice with "
                        f"different areas ({a0 * ARCMIN2_PER_SR:.6g} and "
                        f"{area * ARCMIN2_PER_SR:.6g} arcmin^2; declared by {who + [f.name]})"
                    )
                decl[key] = (a0, ins0 or ins, [*who, f.name])
            else:
                decl[key] = (area, ins, [f.name])
    # overlaps of one field with several others are taken to be disjoint: refuse what could
    # make a three-way region, and overlaps that add up to more than the field
    partners: dict[str, set[str]] = {n: set() for n in by_name}
    for key in decl:
        a, b = sorted(key)
        partners[a].add(b)
        partners[b].add(a)
    for key, (_, ins, _) in decl.items():
        a, b = sorted(key)
        common = partners[a] & partners[b]
        if common:
            raise SurveyError(
                f"fields {a!r}, {b!r} and {min(common)!r} overlap each other pairwise: "
                "three-way overlaps are not supported (split a field so that overlaps are "
                "disjoint)"
            )
        if ins is not None and len(partners[ins]) > 1:
            raise SurveyError(
                f"field {ins!r} lies inside {min(key - {ins})!r} and also overlaps "
                f"{sorted(partners[ins] - key)}: three-way overlaps are not supported"
            )
    for n, f in by_name.items():
        tot = sum(decl[frozenset((n, o))][0] for o in partners[n])
        if tot > f.area_sr * (1.0 + 1e-9):
            raise SurveyError(
                f"field {n!r}: its overlaps with {sorted(partners[n])} add up to "
                f"{tot * ARCMIN2_PER_SR:.4g} arcmin^2, more than its area "
                f"({f.area_arcmin2:.4g} arcmin^2); overlaps of one field must be disjoint"
            )
    for r in rules:
        for n in r.fields:
            if n not in by_name:
                raise SurveyError(
                    f"ownership rule for {r.fields[0]!r} and {r.fields[1]!r}: unknown field {n!r} "
                    f"(fields: {list(by_name)})"
                )
        if frozenset(r.fields) not in decl:
            raise SurveyError(
                f"ownership rule for {r.fields[0]!r} and {r.fields[1]!r}: the two fields declare "
                "no overlap (give 'inside' or an overlap area on one of them)"
            )
    out = []
    for key, (area, ins, _) in decl.items():
        a, b = (ins, next(iter(key - {ins}))) if ins is not None else tuple(sorted(key))
        fa, fb = by_name[a], by_name[b]
        z0, z1 = max(fa.z_min, fb.z_min), min(fa.z_max, fb.z_max)
        mine = [r for r in rules if frozenset(r.fields) == key]
        owners: list[tuple[float, float, str]] = []
        if z0 < z1:
            # cut [z0, z1] at every rule edge; each piece needs exactly one owner
            edges = sorted({z0, z1, *(v for r in mine for v in (r.z_min, r.z_max) if z0 < v < z1)})
            for lo, hi in itertools.pairwise(edges):
                mid = 0.5 * (lo + hi)
                who = {r.owner for r in mine if r.z_min <= mid < r.z_max}
                if not who:
                    raise SurveyError(
                        f"fields {a!r} and {b!r} overlap on the sky and both observe "
                        f"{_fmt_z(lo)} <= z < {_fmt_z(hi)}, but no [[ownership]] rule says which "
                        "of them counts the galaxies there (unresolved overlap)"
                    )
                if len(who) > 1:
                    raise SurveyError(
                        f"fields {a!r} and {b!r}: ownership rules disagree for "
                        f"{_fmt_z(lo)} <= z < {_fmt_z(hi)} (owners {sorted(who)})"
                    )
                (w,) = who
                if owners and owners[-1][2] == w:
                    owners[-1] = (owners[-1][0], hi, w)
                else:
                    owners.append((lo, hi, w))
        out.append(Overlap((a, b), float(area), ins, float(z0), float(z1), tuple(owners)))
    return tuple(out)


@dataclass(frozen=True)
class Survey:
    """A set of fields observed under one cosmology and IMF, possibly from several surveys.

    Several surveys in one fit (Leja et al. 2020, ApJ 893, 111, combined COSMOS-2015 at
    0.2 < z < 0.8 with 3D-HST at 0.5 < z < 3) are one :class:`Survey` whose fields come from
    several member surveys (:meth:`combine`, or ``[[survey]]`` tables in TOML); field names
    stay unique across members. Fields with different redshift ranges and completeness limits
    share one likelihood, one expected-number term per field.

    **Overlaps.** A field may lie inside another (``inside``: CANDELS-COSMOS inside
    COSMOS-2015) or share part of its footprint with it (``overlaps``: an area). Where both
    fields also observe the same redshifts, the same galaxies would enter twice, so every
    such (footprint, z) range needs an :class:`Ownership` rule naming the field that counts
    it; an overlap left without an owner for part of its redshift range is a
    :class:`SurveyError` naming both fields and the interval. The non-owner loses the overlap
    area from its effective area in the owned redshift range (:meth:`area_pieces`, piecewise
    constant in the catalogue redshift) and its galaxies there are removed as duplicates. A
    galaxy's ``field`` column says where it lies: ``"B[A]"`` for a galaxy of field B's
    catalogue inside B's overlap with A; a field that lies entirely inside another may keep its
    plain name (all its galaxies are in the overlap). Overlaps of one field with several others
    are taken to be disjoint (three-way overlaps are refused).

    Args:
        fields: the fields; names must be unique.
        cosmology: an astropy cosmology, a name, or ``{H0, Om0}``; default
            :data:`popmodel.cosmology.DEFAULT_COSMOLOGY` (WMAP9, as Leja et al. 2020).
        name: a label for outputs.
        ownership: :class:`Ownership` rules (or their ``{fields, owner, z}`` dicts).
        members: ``(survey name, field names)`` pairs when the fields come from several
            surveys (set by :meth:`combine` and by ``[[survey]]`` tables); empty for one survey.
        imf: the IMF the fit's masses and SFRs assume: ``"chabrier"`` (default,
            :data:`popmodel.cosmology.DEFAULT_IMF`; Chabrier 2003, PASP 115, 763), ``"kroupa"``
            or ``"salpeter"``. A catalogue in another IMF or cosmology is converted to the
            survey's before a fit (:func:`popmodel.conventions.conform_catalog`).
    """

    fields: tuple[Field, ...]
    cosmology: apc.Cosmology | dict | str | None = None
    name: str = "survey"
    ownership: Sequence[Ownership | dict] = ()
    members: Sequence[tuple[str, Sequence[str]]] = ()
    imf: str = DEFAULT_IMF
    overlaps: tuple[Overlap, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        if not self.fields:
            raise SurveyError("a survey needs at least one field")
        if not isinstance(self.name, str):
            raise SurveyError(f"the survey's name must be a string, got {self.name!r}")
        names = [f.name for f in self.fields]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise SurveyError(f"duplicate field names: {sorted(dup)}")
        try:
            cosmo = cosmology_from_config(self.cosmology)
        except CosmologyError as err:
            raise SurveyError(f"survey {self.name!r}: [cosmology]: {err}") from None
        object.__setattr__(self, "cosmology", cosmo)
        try:
            object.__setattr__(self, "imf", normalize_imf(self.imf, "imf"))
        except ValueError as err:
            raise SurveyError(f"survey {self.name!r}: {err}") from None
        members = tuple((str(m), tuple(str(n) for n in fl)) for m, fl in self.members)
        if members:
            listed = [n for _, fl in members for n in fl]
            mnames = [m for m, _ in members]
            if len(set(mnames)) != len(mnames):
                raise SurveyError(f"duplicate survey names: {mnames}")
            if sorted(listed) != sorted(names):
                raise SurveyError(
                    f"the member surveys list fields {sorted(listed)}, the survey has {sorted(names)}"
                )
        object.__setattr__(self, "members", members)
        rules = tuple(Ownership.from_dict(r) for r in self.ownership)
        object.__setattr__(self, "ownership", rules)
        object.__setattr__(self, "overlaps", _resolve_overlaps(self.fields, rules))

    @classmethod
    def combine(
        cls,
        surveys: Mapping[str, Sequence[Field]] | Sequence[Survey],
        *,
        ownership: Sequence[Ownership | dict] = (),
        cosmology: apc.Cosmology | dict | str | None = None,
        name: str | None = None,
        imf: str | None = None,
    ) -> Survey:
        """Several surveys in one description (one cosmology; Leja et al. 2020's COSMOS-2015 +
        3D-HST).

        Args:
            surveys: ``{survey name: fields}``, or :class:`Survey` objects (each keeps its
                name). Field names must be unique across all of them.
            ownership: who counts which overlap in which redshift range (:class:`Ownership`).
            cosmology: the one cosmology of the fit. Default: the members' (Survey objects),
                which must then agree, else :data:`popmodel.cosmology.DEFAULT_COSMOLOGY`.
            name: a label (default: the member names joined by " + ").
            imf: the one IMF of the fit. Default: the members' (Survey objects), which must
                then agree, else :data:`popmodel.cosmology.DEFAULT_IMF`.
        """
        if isinstance(surveys, Mapping):
            items = [(str(k), tuple(v)) for k, v in surveys.items()]
            cosmos = []
        else:
            items = [(s.name, s.fields) for s in surveys]
            cosmos = [(s.name, cosmology_to_config(s.cosmology)) for s in surveys]
        if not items:
            raise SurveyError("combine needs at least one survey")
        seen: dict[str, str] = {}
        for sname, fl in items:
            for f in fl:
                if f.name in seen:
                    raise SurveyError(
                        f"field name {f.name!r} is used by survey {seen[f.name]!r} and by survey "
                        f"{sname!r}; field names must be unique across surveys"
                    )
                seen[f.name] = sname
        if cosmology is None and cosmos:
            for sname, cfg in cosmos[1:]:
                if cfg != cosmos[0][1]:
                    raise SurveyError(
                        f"surveys {cosmos[0][0]!r} and {sname!r} use different cosmologies "
                        f"({cosmos[0][1]} and {cfg}); give the fit's one cosmology"
                    )
            cosmology = cosmos[0][1]
        if imf is None:
            imfs = {} if isinstance(surveys, Mapping) else {s.name: s.imf for s in surveys}
            if len(set(imfs.values())) > 1:
                raise SurveyError(f"the surveys use different IMFs ({imfs}); give the fit's one imf")
            imf = next(iter(imfs.values()), DEFAULT_IMF)
        return cls(
            fields=tuple(f for _, fl in items for f in fl),
            cosmology=cosmology,
            imf=imf,
            name=name or " + ".join(s for s, _ in items),
            ownership=ownership,
            members=tuple((s, tuple(f.name for f in fl)) for s, fl in items),
        )

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def survey_of(self) -> dict[str, str]:
        """Field name -> member survey name (the survey's own name for one survey)."""
        if not self.members:
            return {n: self.name for n in self.field_names}
        return {n: m for m, fl in self.members for n in fl}

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

    def area_pieces(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Effective solid angle of field ``name`` as a function of catalogue redshift.

        The field's area less every overlap that another field owns at that redshift,
        piecewise constant between the ownership boundaries.

        Returns:
            ``(edges, area_sr)``: area_sr[k] [sr] holds on [edges[k], edges[k+1]]; the edges
            span [z_min, z_max]. Without overlaps: ([z_min, z_max], [area_sr]).
        """
        f = self.field(name)
        mine = [o for o in self.overlaps if name in o.fields]
        cuts = {v for o in mine for a, b, _ in o.owners for v in (a, b) if f.z_min < v < f.z_max}
        edges = np.array(sorted({f.z_min, f.z_max, *cuts}))
        mid = 0.5 * (edges[1:] + edges[:-1])
        area = np.full(mid.shape, f.area_sr)
        for o in mine:
            own = o.owner_at(mid)
            lost = (own >= 0) & (own != o.fields.index(name))
            area = np.where(lost, area - o.area_sr, area)
        area = np.maximum(area, 0.0)
        same = np.flatnonzero(area[1:] == area[:-1])  # merge neighbours of equal area
        return np.delete(edges, same + 1), np.delete(area, same + 1)

    def region_labels(self) -> dict[str, tuple[str, str | None]]:
        """Every value the catalogue's ``field`` column may take: label -> (field, other).

        ``other`` names the field whose overlap the galaxy lies in (None: outside every
        overlap). A field that lies entirely inside another maps its plain name to that overlap.
        """
        out: dict[str, tuple[str, str | None]] = {n: (n, None) for n in self.field_names}
        for o in self.overlaps:
            for n in o.fields:
                out[o.region_label(n)] = (n, o.other(n))
            if o.inside is not None:
                out[o.inside] = (o.inside, o.other(o.inside))
        return out

    def resolve_regions(self, labels: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Field index of each galaxy and the field that owns it (duplicates: another one).

        Args:
            labels: the catalogue's ``field`` values (field names or region labels
                ``"B[A]"``, :meth:`region_labels`); unknown ones must be caught before.
            z: the catalogue redshifts that the cuts act on.

        Returns:
            ``(field_index, owner_index)`` into :attr:`fields`; owner_index differs from
            field_index where another field owns the galaxy's (footprint, z) range.
        """
        names = self.field_names
        regions = self.region_labels()
        labels = np.asarray(labels).astype(str)
        z = np.asarray(z, dtype=float)
        gidx = np.empty(labels.shape, np.int64)
        owner = np.empty(labels.shape, np.int64)
        by_pair = {frozenset(o.fields): o for o in self.overlaps}
        for lab in np.unique(labels):
            sel = labels == lab
            fname, other = regions[str(lab)]
            g = names.index(fname)
            gidx[sel] = g
            owner[sel] = g
            if other is not None:
                o = by_pair[frozenset((fname, other))]
                k = o.owner_at(z[sel])
                pair = np.array([names.index(n) for n in o.fields])
                owner[sel] = np.where(k >= 0, pair[np.maximum(k, 0)], g)
        return gidx, owner

    def selects(self, labels: np.ndarray, log_mass_obs: np.ndarray, z_obs: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
        """The survey's cut on catalogue point estimates, ownership of overlaps included.

        A galaxy passes when its field's cut (:meth:`Field.selects`) passes and its field owns
        its (footprint, z_obs) range: a galaxy labelled with an overlap region (``"B[A]"``,
        :meth:`region_labels`) at a redshift where the other field owns the overlap is a
        duplicate and is dropped. Both models (:func:`popmodel.smf.data.apply_survey_cuts`
        and :func:`popmodel.flow.fit.apply_survey_cuts`) use this rule.

        Args:
            labels: the catalogue's ``field`` values (field names or region labels); unknown
                ones must be caught before.
            log_mass_obs, z_obs: the catalogue point estimates, (N,).

        Returns:
            ``(keep, field_index)``: (N,) bool mask and (N,) index into :attr:`fields`.
        """
        group, owner = self.resolve_regions(labels, z_obs)
        keep = np.zeros(group.shape, bool)
        for g, f in enumerate(self.fields):
            sel = group == g
            keep[sel] = f.selects(np.asarray(log_mass_obs, float)[sel], np.asarray(z_obs, float)[sel])
        return keep & (owner == group), group

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
        try:
            cosmo = cosmology_to_config(self.cosmology)
        except CosmologyError as err:
            raise SurveyError(f"survey {self.name!r} cannot be written: {err}") from None
        d: dict = {"name": self.name, "imf": self.imf, "cosmology": cosmo}
        if self.members:
            d["survey"] = [
                {"name": m, "fields": [self.field(n).to_dict() for n in fl]}
                for m, fl in self.members
            ]
        else:
            d["fields"] = [f.to_dict() for f in self.fields]
        if self.ownership:
            d["ownership"] = [r.to_dict() for r in self.ownership]
        return d

    @classmethod
    def from_dict(cls, d: Mapping) -> Survey:
        """Build a survey from the dict of a TOML file (see the module docstring).

        Every key must be one the reader uses, at every level; anything else, conflicting keys
        and values of the wrong type are :class:`SurveyError` naming the key and the table.
        """
        if not isinstance(d, Mapping):
            raise SurveyError(f"a survey description must be a table, got {d!r}")
        _unknown_keys("survey description (top level)", d, _SURVEY_KEYS)
        name = d.get("name")
        if name is not None and not isinstance(name, str):
            raise SurveyError(f"survey description: name must be a string, got {name!r}")
        cosmology = d.get("cosmology")
        if cosmology is not None and not isinstance(cosmology, str | Mapping):
            raise SurveyError(
                f"survey description: cosmology must be a [cosmology] table or a name, got "
                f"{cosmology!r}"
            )
        imf = d.get("imf", DEFAULT_IMF)
        try:
            imf = normalize_imf(imf, "survey description: imf")
        except ValueError as err:
            raise SurveyError(str(err)) from None
        ownership = _tables("ownership", d.get("ownership", []))
        if "survey" in d:
            if "fields" in d:
                raise SurveyError(
                    "survey description has both [[fields]] and [[survey]] tables: put every "
                    "field in a [[survey.fields]] table of its survey"
                )
            members = {}
            for k, m in enumerate(_tables("survey", d["survey"])):
                mname = m.get("name")
                if not mname:
                    raise SurveyError(f"[[survey]] table {k} has no 'name'")
                if not isinstance(mname, str):
                    raise SurveyError(f"[[survey]] table {k}: name must be a string, got {mname!r}")
                extra = set(m) - {"name", "fields"}
                if "cosmology" in extra:
                    raise SurveyError(
                        f"survey {mname!r}: one cosmology for all surveys; give it in the "
                        "top-level [cosmology] table"
                    )
                if "imf" in extra:
                    raise SurveyError(
                        f"survey {mname!r}: one IMF for all surveys; give imf at the top level"
                    )
                _unknown_keys(f"survey {mname!r}", m, ("name", "fields"))
                if not m.get("fields"):
                    raise SurveyError(f"survey {mname!r} has no [[survey.fields]] tables")
                if mname in members:
                    raise SurveyError(f"duplicate survey name {mname!r}")
                members[mname] = [Field.from_dict(f)
                                  for f in _tables(f"survey {mname!r}: fields", m["fields"])]
            return cls.combine(members, ownership=ownership, cosmology=cosmology, name=name,
                               imf=imf)
        if "fields" not in d or not d["fields"]:
            raise SurveyError("survey description has no [[fields]] tables")
        return cls(
            fields=tuple(Field.from_dict(f) for f in _tables("fields", d["fields"])),
            cosmology=cosmology,
            name="survey" if name is None else name,
            ownership=ownership,
            imf=imf,
        )

    @classmethod
    def read(cls, path: str | Path) -> Survey:
        """Read a survey TOML file; every error names the file (:meth:`from_dict`)."""
        with open(path, "rb") as fh:
            try:
                d = tomllib.load(fh)
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
                raise SurveyError(f"{path}: not valid TOML ({err})") from None
        try:
            return cls.from_dict(d)
        except SurveyError as err:
            raise SurveyError(f"{path}: {err}") from None

    def write(self, path: str | Path) -> None:
        """Write the survey as TOML."""
        Path(path).write_text(tomli_w.dumps(self.to_dict()))
