r"""One cosmology and one IMF per fit: a catalogue's masses are moved to the survey's conventions.

Stellar masses and SFRs derived from photometry scale with the luminosity distance squared and
with the IMF assumed in the stellar-population models. A catalogue records what its masses
assume in ``meta["cosmology"]`` (a :func:`popmodel.cosmology.cosmology_record`) and
``meta["imf"]`` (one of :data:`popmodel.cosmology.IMFS`); a survey carries its own
(:attr:`popmodel.survey.Survey.cosmology`, :attr:`popmodel.survey.Survey.imf`).
:func:`conform_catalog` converts the catalogue to the survey's before a fit:

* **cosmology**: every log M and log SFR sample moves by

  .. math:: \Delta(z) = 2 \log_{10} \frac{D_{L,\rm survey}(z)}{D_{L,\rm catalogue}(z)}

  at the sample's own redshift, and the point estimate ``obs_log_mass`` by
  :math:`\Delta(z_{\rm obs})` (a mass or SFR derived from fluxes is proportional to the
  luminosity, so to :math:`D_L^2` at fixed flux);
* **IMF**: log M and log SFR move by constant factors (:data:`IMF_FACTORS`) from Madau &
  Dickinson (2014, ARA&A 52, 415), who convert Salpeter (0.1-100 Msun) quantities to
  Chabrier (2003) by x0.61 (stellar mass) and x0.63 (SFR), and to Kroupa (2001) by x0.66
  (stellar mass) and x0.67 (SFR).

The defaults are :data:`popmodel.cosmology.DEFAULT_COSMOLOGY` (WMAP9) and
:data:`popmodel.cosmology.DEFAULT_IMF` (Chabrier).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
from scipy.interpolate import CubicSpline

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.cosmology import (
    DEFAULT_COSMOLOGY,
    DEFAULT_IMF,
    IMFS,
    CosmologyError,
    cosmology_from_record,
    cosmology_record,
    describe_cosmology,
    normalize_imf,
    same_cosmology,
)

if TYPE_CHECKING:
    from popmodel.survey import Survey

__all__ = [
    "DEFAULT_COSMOLOGY",
    "DEFAULT_IMF",
    "IMF_FACTORS",
    "ConventionError",
    "ConventionMismatchError",
    "catalog_conventions",
    "conform_catalog",
    "conform_for_fit",
    "distance_shift",
    "imf_shift",
    "record_conventions",
]

#: Quantity in an IMF = factor x the same quantity in a Salpeter (1955; 0.1-100 Msun) IMF,
#: for stellar mass and for SFR: Madau & Dickinson (2014, ARA&A 52, 415), Chabrier (2003,
#: PASP 115, 763) x0.61 in mass and x0.63 in SFR, Kroupa (2001, MNRAS 322, 231) x0.66 in mass
#: and x0.67 in SFR. Converting from IMF a to b multiplies by factor[b] / factor[a].
IMF_FACTORS: dict[str, dict[str, float]] = {
    "salpeter": {"mass": 1.0, "sfr": 1.0},
    "chabrier": {"mass": 0.61, "sfr": 0.63},
    "kroupa": {"mass": 0.66, "sfr": 0.67},
}
assert set(IMF_FACTORS) == set(IMFS)

#: Nodes of the interpolation grid of the distance shift (cubic spline in ln(1 + z)).
_N_SHIFT_GRID = 2001
#: Lowest redshift of the grid; below it the shift is held at its value there (it tends to
#: 2 log10(H0_catalogue / H0_survey) as z -> 0, reached to ~1e-5 dex at this z).
_Z_FLOOR = 1e-4


class ConventionError(CatalogError):
    """A catalogue's recorded cosmology or IMF cannot be read; the message names the key."""


class ConventionMismatchError(ConventionError):
    """The catalogue's cosmology or IMF differs from the survey's and conversion is off."""


def imf_shift(imf_from: str, imf_to: str, kind: str = "mass") -> float:
    """log10 of the factor that takes a ``kind`` (``"mass"`` or ``"sfr"``) from one IMF to another.

    From :data:`IMF_FACTORS` (Madau & Dickinson 2014, ARA&A 52, 415): e.g. Salpeter to
    Chabrier stellar mass is log10(0.61) = -0.215 dex.
    """
    if kind not in ("mass", "sfr"):
        raise ValueError(f"kind must be 'mass' or 'sfr', got {kind!r}")
    a, b = normalize_imf(imf_from, "imf_from"), normalize_imf(imf_to, "imf_to")
    return math.log10(IMF_FACTORS[b][kind] / IMF_FACTORS[a][kind])


def distance_shift(cosmo_from: apc.Cosmology, cosmo_to: apc.Cosmology, z_max: float,
                   ) -> Callable[[np.ndarray], np.ndarray]:
    """Delta(z) = 2 log10(D_L,to(z) / D_L,from(z)) [dex], vectorised on an interpolation grid.

    Astropy is called once per cosmology on :data:`_N_SHIFT_GRID` redshifts in ln(1 + z)
    from 1e-4 to ``z_max`` (and a margin); a cubic spline then serves any number of samples
    (accurate to ~1e-10 dex). Below z = 1e-4 the shift is held at its value there.

    Args:
        cosmo_from: the cosmology the masses assume now.
        cosmo_to: the cosmology they should assume.
        z_max: the highest redshift that will be asked for.

    Returns:
        A function of z (array) returning Delta(z) [dex], the same shape.
    """
    hi = max(float(z_max), 0.01) * 1.01 + 0.01
    x = np.linspace(np.log1p(_Z_FLOOR), np.log1p(hi), _N_SHIFT_GRID)
    zg = np.expm1(x)
    d_to = cosmo_to.luminosity_distance(zg).to_value(u.Mpc)
    d_from = cosmo_from.luminosity_distance(zg).to_value(u.Mpc)
    spline = CubicSpline(x, 2.0 * np.log10(d_to / d_from))

    def shift(z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, dtype=float)
        if z.size and np.nanmax(z) > hi:
            raise ValueError(f"redshift {np.nanmax(z)} beyond the grid (z_max = {z_max})")
        return spline(np.log1p(np.maximum(z, _Z_FLOOR)))

    return shift


def record_conventions(meta: dict, cosmology: apc.Cosmology | None = None,
                       imf: str | None = None) -> dict:
    """Write ``meta["cosmology"]`` and ``meta["imf"]`` (defaults: the package defaults).

    For catalogue builders (mocks, readers). Returns ``meta`` (modified in place).
    """
    meta["cosmology"] = cosmology_record(DEFAULT_COSMOLOGY if cosmology is None else cosmology)
    meta["imf"] = normalize_imf(DEFAULT_IMF if imf is None else imf, "imf")
    return meta


def catalog_conventions(catalog: PosteriorCatalog) -> tuple[apc.Cosmology | None, str | None]:
    """The cosmology and IMF a catalogue records (None for one it does not record).

    Raises:
        ConventionError: naming ``meta['cosmology']`` or ``meta['imf']`` if present but
            unreadable.
    """
    raw_c, raw_imf = catalog.meta.get("cosmology"), catalog.meta.get("imf")
    cosmo = imf = None
    if raw_c is not None:
        try:
            cosmo = cosmology_from_record(raw_c, "catalogue meta['cosmology']")
        except CosmologyError as err:
            raise ConventionError(str(err)) from None
    if raw_imf is not None:
        try:
            imf = normalize_imf(raw_imf, "catalogue meta['imf']")
        except ValueError as err:
            raise ConventionError(str(err)) from None
    return cosmo, imf


def conform_catalog(
    catalog: PosteriorCatalog,
    survey: Survey,
    *,
    convert: bool = True,
) -> tuple[PosteriorCatalog, list[str]]:
    r"""Move a catalogue's masses and SFRs to the survey's cosmology and IMF.

    Where the catalogue's recorded cosmology (``meta["cosmology"]``) gives other luminosity
    distances than the survey's, every ``log_mass`` and ``log_sfr`` sample moves by
    :math:`\Delta(z) = 2\log_{10}[D_{L,\rm survey}(z)/D_{L,\rm catalogue}(z)]` at its own
    redshift sample, and ``obs_log_mass`` by :math:`\Delta(z_{\rm obs})` (``obs_z``, or each
    galaxy's weighted median redshift when absent); :func:`distance_shift` evaluates it on a
    grid. Where the IMFs differ, log M and log SFR move by the constant offsets of
    :data:`IMF_FACTORS` (Madau & Dickinson 2014, ARA&A 52, 415). Redshifts, weights and ids
    are unchanged.

    The interim prior ``log_prior`` is a density per unit log10 M per unit z (and per unit
    log10 SFR). The map (log M, z, log SFR) -> (log M + Delta(z) + c_M, z, log SFR + Delta(z) +
    c_SFR) has a triangular Jacobian with unit diagonal (the shift depends on z only, and
    d(log M_new)/d(log M_old) = 1), so its determinant is 1 and each sample's ``log_prior`` is
    still the prior density at the moved sample: it is kept as it is.

    A catalogue that records no cosmology (or no IMF) is taken to be in the survey's, and a
    note says so (never silently). With identical conventions the catalogue itself comes back,
    with no note.

    Args:
        catalog: the posterior catalogue.
        survey: the survey whose cosmology (:attr:`Survey.cosmology`) and IMF
            (:attr:`Survey.imf`) the fit uses.
        convert: False refuses a mismatch instead of converting it.

    Returns:
        ``(catalog, notes)``: the catalogue in the survey's conventions (a new object, made
        with :func:`dataclasses.replace`, whose ``meta["cosmology"]`` and ``meta["imf"]`` are
        the survey's and whose ``meta["converted"]`` records what was converted or assumed,
        the notes included; any earlier record is kept under ``"previous"``) and
        plain-language notes for the fit's log.

    Raises:
        ConventionMismatchError: if ``convert`` is False and the cosmologies or IMFs differ
            (the message names both).
        ConventionError: if ``meta["cosmology"]`` or ``meta["imf"]`` cannot be read.
    """
    target_cosmo = survey.cosmology
    target_imf = normalize_imf(getattr(survey, "imf", DEFAULT_IMF), "survey imf")
    src_cosmo, src_imf = catalog_conventions(catalog)
    cosmo_differs = src_cosmo is not None and not same_cosmology(src_cosmo, target_cosmo)
    imf_differs = src_imf is not None and src_imf != target_imf
    if not convert and (cosmo_differs or imf_differs):
        parts = []
        if cosmo_differs:
            parts.append(f"the catalogue's cosmology is {describe_cosmology(src_cosmo)} but the survey's is "
                         f"{describe_cosmology(target_cosmo)}")
        if imf_differs:
            parts.append(f"the catalogue's IMF is {src_imf!r} but the survey's is {target_imf!r}")
        raise ConventionMismatchError(
            "; ".join(parts) + " (catalogue meta['cosmology'] / meta['imf']); convert the "
            "catalogue (conform_catalog(..., convert=True)) or fit it with a survey in its "
            "conventions"
        )
    if src_cosmo is not None and src_imf is not None and not cosmo_differs and not imf_differs:
        return catalog, []

    notes: list[str] = []
    record: dict[str, Any] = {}
    d_mass = np.zeros(catalog.log_mass.shape)
    d_obs = None if catalog.obs_log_mass is None else np.zeros(catalog.obs_log_mass.shape)
    d_sfr_const = 0.0
    if src_cosmo is None:
        notes.append(
            "the catalogue records no cosmology (meta['cosmology']); its masses and SFRs are "
            f"assumed to be in the survey's cosmology, {describe_cosmology(target_cosmo)}, and are not "
            "converted"
        )
        record["cosmology"] = {"action": "assumed the survey's", "to": cosmology_record(
            target_cosmo)}
    elif cosmo_differs:
        z_point = None
        if d_obs is not None:
            z_point = catalog.obs_z if catalog.obs_z is not None else (
                catalog.point_estimates().z)
        z_top = float(np.max(catalog.z)) if catalog.z.size else 1.0
        if z_point is not None and z_point.size:
            z_top = max(z_top, float(np.max(z_point)))
        shift = distance_shift(src_cosmo, target_cosmo, z_top)
        d_mass = shift(catalog.z)
        if d_obs is not None:
            d_obs = shift(z_point)
        lo, hi = (float(d_mass.min()), float(d_mass.max())) if d_mass.size else (0.0, 0.0)
        what = "log M" + (" and log SFR" if catalog.has_sfr else "")
        notes.append(
            f"cosmology: the catalogue's masses assume {describe_cosmology(src_cosmo)}; converted to the "
            f"survey's {describe_cosmology(target_cosmo)}: {what} of each sample shifted by "
            f"2 log10(D_L,survey / D_L,catalogue) at the sample's redshift, {lo:+.4f} to "
            f"{hi:+.4f} dex"
        )
        record["cosmology"] = {"action": "converted", "from": cosmology_record(src_cosmo),
                               "to": cosmology_record(target_cosmo),
                               "log_mass_shift_dex_range": [lo, hi]}
    if src_imf is None:
        notes.append(
            f"the catalogue records no IMF (meta['imf']); its masses and SFRs are assumed to "
            f"use the survey's, {target_imf!r}, and are not converted"
        )
        record["imf"] = {"action": "assumed the survey's", "to": target_imf}
    elif imf_differs:
        dm, ds = imf_shift(src_imf, target_imf, "mass"), imf_shift(src_imf, target_imf, "sfr")
        d_mass = d_mass + dm
        if d_obs is not None:
            d_obs = d_obs + dm
        d_sfr_const = ds - dm  # SFR gets the distance shift and its own IMF factor
        notes.append(
            f"IMF: the catalogue's masses assume a {src_imf} IMF; converted to the survey's "
            f"{target_imf} (Madau & Dickinson 2014): log M shifted by {dm:+.4f} dex"
            + (f", log SFR by {ds:+.4f} dex" if catalog.has_sfr else "")
        )
        record["imf"] = {"action": "converted", "from": src_imf, "to": target_imf,
                         "log_mass_shift_dex": dm, "log_sfr_shift_dex": ds}

    meta = dict(catalog.meta)
    record["notes"] = list(notes)
    if "converted" in meta:
        record["previous"] = meta["converted"]
    meta["converted"] = record
    meta["cosmology"] = cosmology_record(target_cosmo)
    meta["imf"] = target_imf
    changes: dict[str, Any] = {"meta": meta}
    if cosmo_differs or imf_differs:
        changes["log_mass"] = catalog.log_mass + d_mass
        if catalog.log_sfr is not None:
            changes["log_sfr"] = catalog.log_sfr + d_mass + d_sfr_const
        if d_obs is not None:
            changes["obs_log_mass"] = catalog.obs_log_mass + d_obs
    return dataclasses.replace(catalog, **changes), notes


def conform_for_fit(catalog: PosteriorCatalog, survey: Survey | None,
                    log: Callable[[str], Any] | None = None) -> PosteriorCatalog:
    """:func:`conform_catalog` for a fit's entry point: each note goes to ``log``.

    The notes also stay in the returned catalogue's ``meta["converted"]["notes"]`` (the fit's
    catalogue provenance). Without a survey the catalogue comes back unchanged.
    """
    if survey is None:
        return catalog
    out, notes = conform_catalog(catalog, survey)
    if log is not None:
        for line in notes:
            log(line)
    return out
