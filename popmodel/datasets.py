"""The packaged default data set: Leja's 3D-HST sample, its survey description and catalogue.

The galaxies are the 3D-HST/CANDELS sample that J. Leja selected for the Prospector fits of
Leja et al. 2019b and 2020 (``popmodel/data/threedhst_td_leja_sample.csv.gz``; provenance in
``popmodel/data/README.md``). There are no posterior samples in the file, only catalogue point
estimates and redshift percentiles, so :func:`threedhst_catalog` builds *approximate*
posteriors with :func:`popmodel.percentiles.catalog_from_percentiles`: real centres, with an
assumed Gaussian mass uncertainty.

Example::

    from popmodel.datasets import threedhst_catalog, threedhst_survey

    survey = threedhst_survey(z_min=0.5, z_max=2.5)
    catalog, report = threedhst_catalog(n_samples=32, z_min=0.5, z_max=2.5)
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any

import astropy.cosmology as apc
import numpy as np
from astropy.table import Table

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.cosmology import cosmology_record
from popmodel.percentiles import catalog_from_percentiles
from popmodel.survey import Field, Survey

__all__ = [
    "FAST_COMPLETENESS_TOMCZAK14",
    "THREEDHST_COSMOLOGY",
    "THREEDHST_FIELDS",
    "THREEDHST_IMF",
    "THREEDHST_TOTAL_AREA_ARCMIN2",
    "FieldFootprint",
    "catalog_from_3dhst_table",
    "load_3dhst_table",
    "threedhst_catalog",
    "threedhst_cosmology",
    "threedhst_survey",
    "threedhst_z_error_mixture",
]

_CSV_NAME = "threedhst_td_leja_sample.csv.gz"
_SAMPLES = ("td_new", "td_huge", "all")
#: Half-width [in z] of the margin kept around [z_min, z_max] when pre-trimming the catalogue.
_Z_MARGIN = 0.3
_Z_BEST_S_NAMES = {1: "spectroscopic", 2: "grism", 3: "photometric"}

#: Cosmology of the 3D-HST catalogues (flat Lambda-CDM); the FAST masses assume it
#: (Skelton et al. 2014, ApJS 214, 24: H0 = 70, Omega_m = 0.3, Omega_Lambda = 0.7).
THREEDHST_COSMOLOGY = {"H0": 70.0, "Om0": 0.3, "name": "3D-HST catalogues (H0=70, Om0=0.3)"}
#: IMF of the 3D-HST FAST masses and UV+IR SFRs: Chabrier (2003) (Skelton et al. 2014;
#: Whitaker et al. 2014, ApJ 795, 104).
THREEDHST_IMF = "chabrier"

#: Total area of the five fields [arcmin^2]: "about 900 arcmin^2" (Skelton et al. 2014, ApJS
#: 214, 24); a binned 1/V mass function of the td_new FAST masses with this area matches
#: Tomczak et al. 2014 within ~0.1 dex (popmodel/data/README.md).
THREEDHST_TOTAL_AREA_ARCMIN2 = 900.0


@dataclass(frozen=True)
class FieldFootprint:
    """Area and approximate rectangular shape of one 3D-HST field.

    Attributes:
        name: Field name, exactly as in the catalogue's ``field`` column.
        area_arcmin2: Adopted area [arcmin^2] (published value normalised to the total).
        shape_arcmin: Approximate side lengths ``(short, long)`` [arcmin] of a rectangle with
            the adopted area, for cosmic-variance estimates (e.g. Moster et al. 2011).
        published_area_arcmin2: The published area before normalisation [arcmin^2].
        source: Where the published area and the shape came from, and how sure they are.
    """

    name: str
    area_arcmin2: float
    shape_arcmin: tuple[float, float]
    published_area_arcmin2: float
    source: str


# (published area [arcmin^2], long/short aspect ratio of the footprint, source)
_PUBLISHED = {
    "AEGIS": (
        206.0,
        4.5,
        (
            "CANDELS EGS F160W catalogue area, Stefanon et al. 2017 (ApJS 229, 32) abstract, "
            "found by search. Shape: the CANDELS/3D-HST EGS strip, roughly 7' x 30' (from memory)."
        ),
    ),
    "COSMOS": (
        184.0,
        2.6,
        (
            "Skelton et al. 2014 per-field table, value from memory, NOT verified by search (the "
            "table could not be retrieved). Shape: roughly 8' x 22' (from memory)."
        ),
    ),
    "GOODSN": (
        164.0,
        1.6,
        (
            "Skelton et al. 2014 per-field table, value from memory, NOT verified by search. "
            "Shape: roughly 10' x 16' (GOODS-N footprint, from memory)."
        ),
    ),
    "GOODSS": (
        173.0,
        1.6,
        (
            "CANDELS GOODS-S catalogue area, Guo et al. 2013 (ApJS 207, 24) abstract, found by "
            "search. Shape: roughly 10' x 16' (GOODS-S footprint, from memory)."
        ),
    ),
    "UDS": (
        201.7,
        2.3,
        (
            "CANDELS UDS catalogue area, Galametz et al. 2013 (ApJS 206, 10) abstract, found by "
            "search. Shape: roughly 9' x 21' (from memory)."
        ),
    ),
}


def _footprints() -> Mapping[str, FieldFootprint]:
    scale = THREEDHST_TOTAL_AREA_ARCMIN2 / sum(v[0] for v in _PUBLISHED.values())
    out = {}
    for name, (area, aspect, source) in _PUBLISHED.items():
        adopted = area * scale
        short = float(np.sqrt(adopted / aspect))
        out[name] = FieldFootprint(
            name=name,
            area_arcmin2=float(adopted),
            shape_arcmin=(short, short * aspect),
            published_area_arcmin2=area,
            source=source,
        )
    return MappingProxyType(out)


THREEDHST_FIELDS: Mapping[str, FieldFootprint] = _footprints()
"""The five CANDELS/3D-HST fields: adopted areas [arcmin^2] and approximate shapes [arcmin].

How the numbers were obtained (and how sure they are):

* Skelton et al. 2014 give "about 900 arcmin^2" in total; this is the one number checked
  against data (a 1/V mass function with it reproduces Tomczak+14 within ~0.1 dex).
* Their per-field table could not be retrieved offline. The published per-field areas used
  are the CANDELS multi-wavelength catalogue areas found by search for AEGIS/EGS (206, Stefanon
  et al. 2017), GOODS-S (173, Guo et al. 2013) and UDS (201.7, Galametz et al. 2013), and values
  remembered from Skelton et al. 2014 for COSMOS (184) and GOODS-N (164), which are unverified.
  The CSV has no RA/Dec, so the footprint cannot be measured from the catalogue itself.
* These 928.7 arcmin^2 are scaled by 900 / 928.7 = 0.969 to the documented total, giving
  AEGIS 199.6, COSMOS 178.3, GOODSN 158.9, GOODSS 167.7, UDS 195.5 arcmin^2. Expect per-field
  errors of about 10%; the total is good to a few per cent.
* Cross-check: the counts of td_new galaxies with log M > 10.3 at 0.5 < z < 2 per field imply
  (for a 900 arcmin^2 total) 217, 177, 152, 149, 206 arcmin^2, within 12% of the adopted
  areas, as expected from cosmic variance of ~10% per field.
* Shapes are rectangles with the adopted area and a long/short aspect ratio remembered from
  the CANDELS footprints (4.5, 2.6, 1.6, 1.6, 2.3); treat them as +-20% approximations.
"""

#: FAST-mass completeness limits, the red line of Tomczak et al. 2014 (ApJ 783, 85) Fig. 2, as
#: tabulated in jrleja/prospector_alpha ``code/td/plot_sample_selection.py``
#: ``mass_completeness()`` (a commented-out alternative there). ``z`` and ``log_mass`` [log10 Msun,
#: Chabrier]; the table ends at z = 2.55.
FAST_COMPLETENESS_TOMCZAK14: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {
        "z": (0.5, 0.725, 0.95, 1.2, 1.4, 1.65, 1.85, 2.1, 2.3, 2.55),
        "log_mass": (8.1, 8.5, 8.8, 8.9, 9.05, 9.15, 9.25, 9.35, 9.45, 9.5),
    }
)


def threedhst_cosmology() -> apc.FlatLambdaCDM:
    """The cosmology the 3D-HST masses assume (:data:`THREEDHST_COSMOLOGY`, no radiation)."""
    return apc.FlatLambdaCDM(
        H0=THREEDHST_COSMOLOGY["H0"],
        Om0=THREEDHST_COSMOLOGY["Om0"],
        Tcmb0=0.0,
        name=THREEDHST_COSMOLOGY["name"],
    )


_threedhst_cosmology = threedhst_cosmology


def load_3dhst_table(sample: str = "td_new") -> Table:
    """Read the packaged 3D-HST sample.

    Args:
        sample: ``"td_new"`` (rows with ``in_td_new == 1``, 63,430 galaxies), ``"td_huge"``
            (``in_td_huge == 1``, 65,858) or ``"all"`` (the union, 75,601).

    Returns:
        An astropy Table with the columns described in ``popmodel/data/README.md``.

    Raises:
        ValueError: If ``sample`` is not one of the three names.
    """
    if sample not in _SAMPLES:
        raise ValueError(f"sample must be one of {_SAMPLES}, got {sample!r}")
    ref = resources.files("popmodel") / "data" / _CSV_NAME
    # Decompress explicitly: astropy's fast reader given a .gz path with guess=False reads
    # the compressed bytes (astropy 8.0).
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        table = Table.read(fh.read(), format="ascii.csv", guess=False)
    if sample != "all":
        table = table[np.asarray(table[f"in_{sample}"]) == 1]
    table.meta["sample"] = sample
    return table


def threedhst_z_error_mixture(
    z_min: float = 0.5, z_max: float = 2.55, n: int = 12, sample: str = "td_new"
) -> list[float]:
    """The catalogue's own redshift-error distribution as an equal-weight mixture.

    sigma_z/(1+z) = (z_best_u68 - z_best_l68) / 2 / (1 + z_best) for every galaxy with
    z_min <= z_best <= z_max (0 for spectroscopic redshifts), summarised by its values at the
    ``n`` quantiles (k + 0.5)/n. The selection function's redshift term then matches the widths
    of the approximate posteriors, so that the expected number counts the galaxies whose
    catalogue redshift scatters into or out of the range, as the galaxy terms do.
    """
    t = load_3dhst_table(sample)
    zb = np.asarray(t["z_best"], float)
    lo, hi = np.asarray(t["z_best_l68"], float), np.asarray(t["z_best_u68"], float)
    m = (zb >= z_min) & (zb <= z_max)
    spec = (lo < 0) | (hi < 0)
    sig = np.where(spec, 0.0, np.abs(hi - lo) / 2.0 / (1.0 + zb))[m]
    q = (np.arange(n) + 0.5) / n
    return [float(v) for v in np.round(np.quantile(sig, q), 5)]


def threedhst_survey(
    z_min: float = 0.5,
    z_max: float = 2.55,
    mass_error_dex: float = 0.1,
    z_error: float | list[float] | str = "catalog",
) -> Survey:
    """The 3D-HST survey: five fields, the catalogue cosmology and Tomczak+14 FAST limits.

    The completeness limits :data:`FAST_COMPLETENESS_TOMCZAK14` end at z = 2.55; beyond it the
    linear interpolation of :class:`popmodel.survey.Field` would hold the limit flat and so
    underestimate it, which is why ``z_max`` may not exceed 2.55. The cosmology is the
    catalogue's own (flat, H0 = 70, Om0 = 0.3), since the FAST masses assume it.

    Args:
        z_min: Lower redshift of every field.
        z_max: Upper redshift of every field, at most 2.55.
        mass_error_dex: Gaussian width [dex] of the catalogue mass errors in the selection.
        z_error: Gaussian sigma_z/(1+z) of the catalogue redshifts in the selection: a value,
            a mixture, or "catalog" (default) for :func:`threedhst_z_error_mixture`.

    Returns:
        The survey, areas from :data:`THREEDHST_FIELDS`.

    Raises:
        ValueError: If ``z_max`` exceeds 2.55 (the last completeness limit).
    """
    z_last = FAST_COMPLETENESS_TOMCZAK14["z"][-1]
    if z_max > z_last:
        raise ValueError(
            f"z_max={z_max} is beyond the last Tomczak+14 FAST completeness limit (z={z_last}); "
            "the limit is unknown there"
        )
    if isinstance(z_error, str):
        if z_error != "catalog":
            raise ValueError(f"z_error must be a number, a list or 'catalog', got {z_error!r}")
        z_error = threedhst_z_error_mixture(z_min, z_max)
    fields = tuple(
        Field(
            name=fp.name,
            area=fp.area_arcmin2,
            area_unit="arcmin2",
            z_min=z_min,
            z_max=z_max,
            completeness_z=FAST_COMPLETENESS_TOMCZAK14["z"],
            completeness_log_mass=FAST_COMPLETENESS_TOMCZAK14["log_mass"],
            mass_error_dex=mass_error_dex,
            z_error=z_error,
            side_arcmin=fp.shape_arcmin,
        )
        for fp in THREEDHST_FIELDS.values()
    )
    return Survey(fields=fields, cosmology=threedhst_cosmology(), name="3D-HST (Leja td sample)",
                  imf=THREEDHST_IMF)


def catalog_from_3dhst_table(
    table: Table,
    *,
    n_samples: int = 32,
    mass_error_dex: float = 0.1,
    seed: int = 0,
    z_min: float | None = None,
    z_max: float | None = None,
) -> tuple[PosteriorCatalog, dict[str, Any]]:
    """Approximate posteriors for the rows of a 3D-HST table (see :func:`threedhst_catalog`).

    Args:
        table: Rows of :func:`load_3dhst_table` (any subset).
        n_samples: Samples per galaxy.
        mass_error_dex: Assumed Gaussian mass uncertainty [dex].
        seed: Seed of the random draws.
        z_min: If given, drop galaxies with ``z_best < z_min - 0.3`` (speed only).
        z_max: If given, drop galaxies with ``z_best > z_max + 0.3`` (speed only).

    Returns:
        The catalogue and the provenance report (see :func:`threedhst_catalog`).

    Raises:
        CatalogError: If no galaxy is left, or the percentiles are inconsistent.
    """
    n_input = len(table)
    z_best = np.asarray(table["z_best"], dtype=np.float64)
    mass = np.asarray(table["fast_lmass"], dtype=np.float64)

    keep = np.ones(n_input, dtype=bool)
    if z_min is not None:
        keep &= z_best >= z_min - _Z_MARGIN
    if z_max is not None:
        keep &= z_best <= z_max + _Z_MARGIN
    n_trimmed = int((~keep).sum())
    # -99 is the 3D-HST "missing" sentinel; no real log10 M* is <= 0.
    invalid = keep & (~np.isfinite(mass) | (mass <= 0))
    n_invalid = int(invalid.sum())
    keep &= ~invalid
    if not keep.any():
        raise CatalogError(
            f"no galaxy left out of {n_input}: {n_trimmed} outside the z window, "
            f"{n_invalid} with invalid fast_lmass"
        )
    rows = np.flatnonzero(keep)
    fields = np.asarray(table["field"]).astype(str)[rows]
    phot_id = np.asarray(table["phot_id"]).astype(np.int64)[rows]
    ids = np.char.add(np.char.add(fields, "_"), phot_id.astype(str))
    col = {
        c: np.asarray(table[c], dtype=np.float64)[rows]
        for c in ("z_best_l95", "z_best_l68", "z_best_u68", "z_best_u95")
    }
    cosmology = threedhst_cosmology()
    catalog, report = catalog_from_percentiles(
        ids,
        fields,
        z_best[rows],
        col["z_best_l68"],
        col["z_best_u68"],
        mass[rows],
        mass_error_dex=mass_error_dex,
        n_samples=n_samples,
        z_p2_5=col["z_best_l95"],
        z_p97_5=col["z_best_u95"],
        cosmology=cosmology,
        seed=seed,
    )
    z_type = np.asarray(table["z_best_s"]).astype(int)[rows]
    by_type = {name: int((z_type == code).sum()) for code, name in _Z_BEST_S_NAMES.items()}
    by_type["unknown"] = int((~np.isin(z_type, list(_Z_BEST_S_NAMES))).sum())
    provenance: dict[str, Any] = {
        "data_set": "Leja et al. 3D-HST td sample (popmodel/data/" + _CSV_NAME + ")",
        "sample": table.meta.get("sample", "custom table"),
        "counts": {
            "input": n_input,
            "kept": int(rows.size),
            "outside_z_window_dropped": n_trimmed,
            "invalid_mass_dropped": n_invalid,
            "spec_z_exact": report.n_exact_z,
            "z_best_s": by_type,
            "median_outside_68": report.n_median_outside_68,
        },
        "z_window": None
        if z_min is None and z_max is None
        else {
            "z_min": z_min,
            "z_max": z_max,
            "margin": _Z_MARGIN,
            "note": "pre-trim on z_best for speed only; the fit applies the exact z cut",
        },
        "mass_error_dex": float(mass_error_dex),
        "mass_error_note": (
            f"assumed mass uncertainty: Gaussian, {mass_error_dex} dex, on the FAST mass "
            "(the catalogue gives none), plus the luminosity-distance shift when z moves"
        ),
        "redshifts": (
            "z_best as median, z_best_l68/u68 as 16/84 and z_best_l95/u95 as 2.5/97.5 "
            "percentiles; spectroscopic redshifts (percentiles -1) are exact"
        ),
        "how_handled": report.how_handled,
        "seed": int(seed),
        "n_samples": int(n_samples),
        "cosmology": dict(THREEDHST_COSMOLOGY),
    }
    catalog.meta["provenance"] = provenance
    # the conventions of the FAST masses (popmodel.conventions converts them for a fit)
    catalog.meta["cosmology"] = cosmology_record(cosmology)
    catalog.meta["imf"] = THREEDHST_IMF
    return catalog, provenance


def threedhst_catalog(
    *,
    n_samples: int = 32,
    mass_error_dex: float = 0.1,
    seed: int = 0,
    sample: str = "td_new",
    z_min: float | None = None,
    z_max: float | None = None,
) -> tuple[PosteriorCatalog, dict[str, Any]]:
    """Approximate per-galaxy posteriors for the packaged 3D-HST sample.

    Built with :func:`popmodel.percentiles.catalog_from_percentiles` from ``z_best`` (median),
    ``z_best_l68``/``u68`` (16/84) and ``z_best_l95``/``u95`` (2.5/97.5), and ``fast_lmass``
    (the FAST mass at ``z_best``) with an *assumed* Gaussian uncertainty ``mass_error_dex``;
    each sample's mass also moves with the luminosity distance of its redshift. Spectroscopic
    redshifts (``z_best_s == 1``, percentiles -1) are exact. Photometric or grism ``z_best``
    outside its own 16-84 interval is kept and handled (and counted) by
    ``catalog_from_percentiles``. Ids are ``f"{field}_{phot_id}"``.

    Galaxies with a missing or invalid ``fast_lmass`` (NaN, inf, or the -99 sentinel) are
    dropped and counted. When ``z_min`` / ``z_max`` are given, galaxies whose ``z_best`` lies
    outside ``[z_min - 0.3, z_max + 0.3]`` are dropped and counted: this pre-trim is for speed
    only, the likelihood applies the exact redshift cut later, and the margin keeps galaxies
    whose posterior straddles the edges.

    Args:
        n_samples: Samples per galaxy.
        mass_error_dex: Assumed Gaussian mass uncertainty [dex].
        seed: Seed of the random draws.
        sample: ``"td_new"``, ``"td_huge"`` or ``"all"`` (see :func:`load_3dhst_table`).
        z_min: Lower end of the analysis redshift range, for the pre-trim.
        z_max: Upper end of the analysis redshift range, for the pre-trim.

    Returns:
        ``(catalog, provenance)``. The provenance dict (also in ``catalog.meta``) records the
        sample; counts (input, kept, dropped outside the z window, invalid mass dropped,
        spec-z exact, per ``z_best_s`` type, median outside 68%); the assumed mass
        uncertainty; the seed; ``n_samples``; and the cosmology. ``catalog.meta["cosmology"]``
        and ``catalog.meta["imf"]`` record the conventions of the masses (flat H0 = 70,
        Om0 = 0.3; Chabrier), so a fit against a survey in other conventions converts them
        (:func:`popmodel.conventions.conform_catalog`).
    """
    table = load_3dhst_table(sample)
    return catalog_from_3dhst_table(
        table,
        n_samples=n_samples,
        mass_error_dex=mass_error_dex,
        seed=seed,
        z_min=z_min,
        z_max=z_max,
    )
