r"""Readers of the posterior formats survey teams publish, into a :class:`PosteriorCatalog`.

One entry point, :func:`read_posteriors`, reads five layouts (the ``format`` argument):

``long``
    popmodel's own long table, one row per posterior sample (columns ``id``, ``field``,
    ``log_mass``, ``z`` and the optional ones of :mod:`popmodel.catalog`), in HDF5 (a table
    dataset at any path), FITS, ECSV or Parquet.
``wide``
    One row per galaxy: the sampled quantities (``log_mass``, ``z``, optional ``log_sfr``,
    ``weight``, ``log_prior``) are vector columns of shape ``(N, S)``, the others (``id``,
    ``field``, ``log_mass_obs``, ``z_obs``) scalars; FITS, HDF5 (a table dataset) or Parquet.
    Parquet holds ``(N, S)`` columns as fixed-size lists (what astropy writes); variable-length
    list columns (what pyarrow writes from Python lists) are read too, as ragged posteriors.
``chains``
    Collated SED-fitting chains in HDF5 (the contract of :func:`read_posteriors`; Prospector's
    own per-object files are collated into it by :func:`collate_prospector`).
``provabgs``
    A PROVABGS-like ``(N, S, P)`` cube of posterior samples with its parameter labels
    (Hahn et al. 2023, ApJ 945, 16).
``qp``
    A qp ensemble of photometric-redshift PDFs (LSST DESC; Malz et al. 2018, AJ 156, 35),
    paired with one stellar-mass estimate per galaxy.

Galaxies whose SED fit failed (every sampled value NaN) are excluded, counted and named in
``catalog.meta["read_report"]``; samples of weight 0 (padding of shorter chains) are dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from astropy.table import Table

from popmodel.catalog import (
    CatalogError,
    CatalogFileError,
    CatalogFileNotFoundError,
    PosteriorCatalog,
    _format_ids,
    _read_table_file,
    _text_column,
)

__all__ = [
    "DEFAULT_LABELS",
    "FORMATS",
    "POPMODEL_NAMES",
    "collate_prospector",
    "detect_format",
    "parse_columns",
    "read_posteriors",
]

logger = logging.getLogger(__name__)

#: The layouts :func:`read_posteriors` reads.
FORMATS = ("long", "wide", "chains", "provabgs", "qp")
#: The popmodel names a ``columns`` mapping may rename to.
POPMODEL_NAMES = ("id", "field", "log_mass", "z", "log_sfr", "log_prior", "log_prior_sfr",
                  "weight", "log_mass_obs", "z_obs")
#: popmodel name -> parameter label of a chains or PROVABGS file, unless ``columns`` says
#: otherwise. Prospector's ``logmass`` is often the total mass formed (see :func:`read_posteriors`).
DEFAULT_LABELS = {"log_mass": "logmass", "z": "zred", "log_sfr": "logsfr"}

# sampled (per-sample) and per-galaxy quantities of the wide table
_VECTOR = ("log_mass", "z", "log_sfr", "weight", "log_prior", "log_prior_sfr")
_SCALAR = ("id", "field", "log_mass_obs", "z_obs")
_LABELLED = ("log_mass", "z", "log_sfr")
_FAILED_SHOWN = 20
_TABLE_EXTENSIONS = {".fits": "fits", ".fit": "fits", ".fz": "fits", ".ecsv": "ecsv",
                     ".parquet": "parquet", ".pq": "parquet"}
_HDF5_EXTENSIONS = (".h5", ".hdf5", ".he5", ".hdf")
_FILE_FORMATS = {"hdf5": "hdf5", "h5": "hdf5", "fits": "fits", "fit": "fits", "ecsv": "ecsv",
                 "ascii.ecsv": "ecsv", "parquet": "parquet"}
_NOTE = ("galaxies whose SED fit failed (every sampled value NaN) are excluded; this changes "
         "the survey's effective completeness: the selection function no longer describes the "
         "catalogue unless the failures are independent of mass and redshift")


# ---------------------------------------------------------------------- columns
def parse_columns(text: str | Mapping[str, str] | None) -> dict[str, str]:
    """Parse a column mapping: ``"log_mass=LOGM,z=ZRED,log_sfr=LOGSFR"`` (the command-line form)
    or a mapping, popmodel name -> name in the file.

    Args:
        text: The mapping, as text or a mapping; None or ``""`` give ``{}``.

    Returns:
        ``{popmodel name: file name}``.

    Raises:
        CatalogError: naming a malformed item (no ``=``, an empty side), a name given twice,
            or a popmodel name that is not one of :data:`POPMODEL_NAMES`.
    """
    if text is None:
        return {}
    if isinstance(text, Mapping):
        items = [(str(k), str(v)) for k, v in text.items()]
    else:
        items = []
        for raw in str(text).split(","):
            item = raw.strip()
            if not item:
                if str(text).strip():
                    raise CatalogError(f"column mapping {text!r} has an empty item (two commas, "
                                       f"or a comma at an end); write NAME=COLUMN,NAME=COLUMN")
                continue
            key, sep, value = item.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise CatalogError(f"column mapping item {item!r} is not NAME=COLUMN (e.g. "
                                   f"log_mass=LOGM)")
            items.append((key.strip(), value.strip()))
    out: dict[str, str] = {}
    for key, value in items:
        if key not in POPMODEL_NAMES:
            raise CatalogError(f"column mapping names {key!r}, not a popmodel name; use one of "
                               f"{', '.join(POPMODEL_NAMES)}")
        if key in out:
            raise CatalogError(f"column mapping gives {key!r} twice ({out[key]!r} and {value!r})")
        out[key] = value
    return out


# ---------------------------------------------------------------------- detection
def _is_hdf5(name: str) -> bool:
    import h5py

    try:
        return bool(h5py.is_hdf5(name))
    except OSError:
        return False


def _datasets(f: Any) -> list[str]:
    import h5py

    found: list[str] = []
    f.visititems(lambda key, o: found.append(key) if isinstance(o, h5py.Dataset) else None)
    return found


def _held(f: Any) -> str:
    found = _datasets(f)
    if not found:
        return "it holds no datasets"
    return f"its datasets are {_format_ids(found)}"


def _is_table(obj: Any) -> bool:
    import h5py

    return isinstance(obj, h5py.Dataset) and obj.dtype.names is not None and obj.ndim == 1


def _cube_labels(group: Any, dset: Any) -> list[str] | None:
    """The parameter labels stored with a 3-D samples dataset, or None."""
    for holder in (dset, group):
        for key in ("labels", "theta_labels", "parameters", "param_names"):
            if key in holder.attrs:
                return _decode_labels(holder.attrs[key], f"attribute {key!r}")
    for key in ("labels", "theta_labels", "parameters", "param_names"):
        if key in group and getattr(group[key], "ndim", None) is not None:
            return _decode_labels(group[key][()], f"dataset {key!r}")
    return None


def _find_cube(group: Any) -> Any | None:
    """The one 3-D numeric dataset directly in ``group`` (PROVABGS-like samples), or None."""
    import h5py

    cubes = [o for o in group.values() if isinstance(o, h5py.Dataset) and o.ndim == 3
             and o.dtype.kind == "f"]
    return cubes[0] if len(cubes) == 1 else None


def _hdf5_group(f: Any, name: str, hdf5_path: str | None) -> tuple[Any, Any | None]:
    """``(group, dataset)`` at ``hdf5_path``: a group, or a dataset and its parent group."""
    import h5py

    if hdf5_path is None:
        return f, None
    obj = f.get(hdf5_path)
    if obj is None:
        raise CatalogFileError(f"HDF5 file {name!r} has nothing at path {hdf5_path!r} "
                               f"({_held(f)})")
    if isinstance(obj, h5py.Dataset):
        return obj.parent, obj
    return obj, None


def detect_format(path: str | os.PathLike, *, hdf5_path: str | None = None) -> str:
    """The layout of a posterior file, from its contents (then its extension).

    HDF5: a qp ensemble (groups ``meta`` with ``pdf_name`` and ``data``) -> ``qp``; a
    ``chains`` dataset -> ``chains``; a 3-D samples dataset with labels -> ``provabgs``; a table
    dataset with a 2-D float column -> ``wide``; else ``long``. FITS, ECSV and Parquet (by
    extension): ``wide`` when a float column is 2-D or a list column, else ``long``. A qp
    ensemble in another file format is read with ``format="qp"``.

    Args:
        path: The file.
        hdf5_path: As in :func:`read_posteriors`.

    Returns:
        One of :data:`FORMATS`.

    Raises:
        CatalogFileNotFoundError: If there is no file.
        CatalogFileError: If the file cannot be read, or ``hdf5_path`` names nothing.
    """
    name = _check_file(path)
    if _is_hdf5(name):
        try:
            return _detect_hdf5(name, hdf5_path)
        except (OSError, KeyError) as exc:
            raise CatalogFileError(f"cannot read HDF5 file {name!r}: it is truncated or corrupt "
                                   f"({type(exc).__name__}: {exc})") from exc
    ext = os.path.splitext(name)[1].lower()
    if ext in _HDF5_EXTENSIONS:
        raise CatalogFileError(f"catalogue file {name!r} is not an HDF5 file (its extension "
                               f"says it is): truncated or corrupt?")
    if ext not in _TABLE_EXTENSIONS:
        raise CatalogError(f"cannot tell the format of {name!r} from its extension {ext!r} "
                           f"(HDF5, .fits, .ecsv or .parquet); pass format= (one of "
                           f"{', '.join(FORMATS)})")
    table = _read_table_file(name, _TABLE_EXTENSIONS[ext])
    return "wide" if _has_vector_column(table) else "long"


def _detect_hdf5(name: str, hdf5_path: str | None) -> str:
    import h5py

    with h5py.File(name, "r") as f:
        if hdf5_path is None and "meta" in f and "data" in f and "pdf_name" in f["meta"]:
            return "qp"
        group, dset = _hdf5_group(f, name, hdf5_path)
        if dset is None or dset.ndim == 3:
            if isinstance(group.get("chains"), h5py.Dataset) and (
                    dset is None or dset.name == group["chains"].name):
                return "chains"
            cube = dset if dset is not None else _find_cube(group)
            if cube is not None and _cube_labels(group, cube) is not None:
                return "provabgs"
        table = dset if dset is not None else _default_table(group, name, None)
        if _is_table(table) and any(
                table.dtype[c].shape and table.dtype[c].base.kind == "f"
                for c in table.dtype.names):
            return "wide"
        return "long"


def _has_vector_column(table: Table) -> bool:
    for c in table.colnames:
        col = table[c]
        if col.ndim == 2 and col.dtype.kind == "f":
            return True
        if col.dtype.kind == "O" and len(col) and isinstance(col[0], np.ndarray | list):
            return True
    return False


def _default_table(f: Any, name: str, hdf5_path: str | None) -> Any:
    """The table dataset at ``hdf5_path``, else ``catalog``, else the only one in the file."""
    import h5py

    if hdf5_path is not None:
        obj = f.get(hdf5_path)
        if not isinstance(obj, h5py.Dataset):
            what = "nothing" if obj is None else "a group, not a dataset,"
            raise CatalogFileError(f"HDF5 file {name!r} has {what} at path {hdf5_path!r} "
                                   f"({_held(f)}); pass hdf5_path= (--hdf5-path) naming the "
                                   f"table")
        return obj
    if _is_table(f.get("catalog")):
        return f["catalog"]
    tables: list[str] = []
    f.visititems(lambda key, o: tables.append(key) if _is_table(o) else None)
    if len(tables) == 1:
        return f[tables[0]]
    if not tables:
        raise CatalogFileError(f"HDF5 file {name!r} holds no table dataset ({_held(f)}): not a "
                               f"long or wide table, a chains file (dataset 'chains') or a "
                               f"samples cube with labels; pass format= and hdf5_path=")
    raise CatalogFileError(f"HDF5 file {name!r} holds several table datasets "
                           f"({_format_ids(tables)}); pass hdf5_path= (--hdf5-path) naming one")


def _check_file(path: str | os.PathLike) -> str:
    name = os.fspath(path)
    if not os.path.exists(name):
        raise CatalogFileNotFoundError(f"catalogue file {name!r} does not exist")
    if os.path.isdir(name):
        raise CatalogFileError(f"catalogue {name!r} is a directory, not a file")
    if os.path.getsize(name) == 0:
        raise CatalogFileError(f"catalogue file {name!r} is empty (0 bytes)")
    return name


# ---------------------------------------------------------------------- entry point
def read_posteriors(
    path: str | os.PathLike,
    *,
    format: str | None = None,
    columns: Mapping[str, str] | str | None = None,
    hdf5_path: str | None = None,
    field: str | None = None,
    allow_interleaved: bool = False,
    log_mass: np.ndarray | None = None,
    mass_error_dex: float = 0.1,
    cosmology: Any = None,
    n_quantiles: int = 32,
) -> PosteriorCatalog:
    """Read per-galaxy posterior samples in any of the published layouts (module docstring).

    **Common rules.** ``format=None`` looks at the contents (:func:`detect_format`). ``columns``
    renames: popmodel name -> name in the file (a table column; a parameter label for
    ``chains`` and ``provabgs``; an ancillary column for ``qp``). A galaxy whose fit failed,
    every sampled value NaN (a redshift fixed at a spectroscopic value is not sampled and may
    be finite), is excluded and counted; a galaxy with some NaN samples of non-zero weight is an
    error naming it. Samples of weight 0 are dropped (they add nothing to any estimate; padded
    arrays mark padding with them). Samples outside the model's support (z > 12, say) are kept
    unchanged. ``catalog.meta["read_report"]`` holds ``format``, ``path``, ``n_rows`` (galaxies
    in the file), ``n_galaxies`` (in the catalogue), ``n_failed``, ``failed_ids`` (the first
    20) and ``note``; the count is logged (logger ``popmodel.readers``).

    **chains** (HDF5; ``hdf5_path`` names the group that holds it, default the root):
    ``chains`` ``(n_obj, n_samples, n_params)``; ``theta_labels`` ``(n_params,)`` strings,
    bytes or UTF-8 (or a JSON list in an attribute ``theta_labels``); ``objid`` ``(n_obj,)``;
    optional ``field`` ``(n_obj,)`` (otherwise ``field``, one field for the file; neither is an
    error); ``weights`` ``(n_obj, n_samples)``, not necessarily normalised, 0 marks padding of
    shorter chains (whose values may be NaN); ``lnprior`` ``(n_obj, n_samples)``, the natural-log
    interim prior density of (log10 M, z) per dex per unit z -> ``log_prior``; ``lnprior_sfr``,
    the density of (log10 M, log10 SFR, z) -> ``log_prior_sfr``; ``obs_log_mass``, ``obs_z``
    ``(n_obj,)`` -> the catalogue point estimates; ``z`` ``(n_obj,)``, a fixed (spectroscopic)
    redshift for objects fitted at it (NaN for objects whose redshift was sampled): every
    sample of such an object gets it. Labels are mapped by :data:`DEFAULT_LABELS` (``zred``,
    ``logmass``, ``logsfr``) unless ``columns`` says otherwise; other parameters are ignored.
    Prospector's ``logmass`` (and ``mass``) is often the total mass *formed*, not the
    surviving stellar mass: its ``mass_units`` parameter defaults to ``"mformed"``, and the
    surviving mass is that times ``mfrac`` (< 1), which ``model.predict`` returns and the chain
    does not hold (Prospector's FAQ; Johnson et al. 2021, ApJS 254, 22). Map the parameter you
    want (a derived surviving-mass column, say ``columns={"log_mass": "logmstar"}``): the
    reader never guesses which mass a label is.

    **provabgs** (HDF5): a 3-D float dataset ``(N, S, P)`` (``hdf5_path``, or the only 3-D
    dataset of the root group) with its labels in an attribute (of the dataset or group) or a
    dataset named ``labels``, ``theta_labels``, ``parameters`` or ``param_names``; ids in a
    dataset ``id``, ``ids``, ``objid`` or ``targetid`` (default: row numbers, logged); a redshift
    dataset ``z`` or ``redshift`` when ``z`` is not a label (PROVABGS fits at the DESI
    spectroscopic redshift); ``field``, ``weights``, ``lnprior``, ``obs_log_mass`` and
    ``obs_z`` as for chains.

    **qp** (a file that ``qp.read`` reads, from the package ``qp-prob``): the redshift PDFs are
    evaluated by qp at the mid-point quantiles ``(k + 0.5) / n_quantiles``; each galaxy's
    catalogue mass ``m`` (from the ensemble's ancillary column ``log_mass``, or ``columns``, or
    the ``log_mass`` argument) was estimated at ``z_est`` (ancillary ``z_obs``, else the PDF's
    median), so the sample at redshift ``z_k`` has ``m + 2 log10(D_L(z_k) / D_L(z_est))`` (the
    same flux at another distance; K-corrections ignored) plus ``mass_error_dex`` times the
    normal quantile ``Phi^-1((j + 0.5) / n)``, paired with ``z_k`` by a fixed stride
    permutation (a Latin-hypercube design: deterministic, and no false correlation). ids come
    from the ancillary column ``id`` (else row numbers), fields from ``field`` (else the
    ``field`` argument). No interim prior is stored (flat), an assumption: photo-z codes apply
    their own priors.

    Args:
        path: The file.
        format: One of :data:`FORMATS`, or None / ``"auto"`` to detect it. The file formats of
            :meth:`PosteriorCatalog.read` (``"hdf5"``, ``"fits"``, ``"ecsv"``, ``"parquet"``)
            are taken as ``long`` in that file format.
        columns: popmodel name -> file name (a mapping, or text ``"log_mass=LOGM,z=ZRED"``).
        hdf5_path: HDF5 path of the table (long, wide; default ``catalog`` or the only table
            dataset), of the group holding the chains (default the root) or of the samples
            cube (provabgs).
        field: The survey field of every galaxy, for files without a field column or dataset.
        allow_interleaved: long table only: as in :meth:`PosteriorCatalog.from_table`.
        log_mass: qp only: ``(N,)`` catalogue masses [log10 Msun] when the ensemble has none.
        mass_error_dex: qp only: the assumed mass uncertainty [dex] (default 0.1).
        cosmology: qp only: for luminosity distances (default WMAP9; any form
            :func:`popmodel.cosmology.cosmology_from_config` takes).
        n_quantiles: qp only: samples per galaxy (default 32).

    Returns:
        The catalogue, with ``meta["read_report"]``.

    Raises:
        CatalogFileNotFoundError: If there is no file (one line naming it).
        CatalogFileError: If the file cannot be read, or an HDF5 path is wrong or ambiguous
            (listing the datasets present).
        CatalogError: For an unknown format or name, a column of the wrong shape (naming it and
            the expected ``(N, S)``), an unknown parameter label (listing those present), or
            invalid content; messages name the file.
    """
    name = _check_file(path)
    mapping = parse_columns(columns)
    fmt = "auto" if format is None else str(format).lower()
    file_format = None
    if fmt in _FILE_FORMATS:
        fmt, file_format = "long", _FILE_FORMATS[fmt]
    if fmt == "auto" and not _is_hdf5(name) and \
            os.path.splitext(name)[1].lower() in _TABLE_EXTENSIONS:
        fmt = "table"  # long or wide, decided once the table is read (read once, not twice)
    elif fmt == "auto":
        fmt = detect_format(name, hdf5_path=hdf5_path)
    if fmt not in (*FORMATS, "table"):
        raise CatalogError(f"unknown posterior format {format!r}; use one of "
                           f"{', '.join(FORMATS)} (or None to detect it)")
    try:
        if fmt in ("long", "wide", "table"):
            return _read_tables(name, fmt, file_format, mapping, hdf5_path, field,
                                allow_interleaved)
        if fmt in ("chains", "provabgs"):
            return _read_cube(name, fmt, mapping, hdf5_path, field)
        return _read_qp(name, mapping, field, log_mass, mass_error_dex, cosmology, n_quantiles)
    except CatalogFileError:
        raise
    except CatalogError as exc:
        if name in str(exc):
            raise
        raise CatalogError(f"catalogue {name!r} ({fmt}): {exc}") from exc
    except (OSError, KeyError, ValueError) as exc:  # h5py and numpy on a truncated file
        raise CatalogFileError(f"cannot read catalogue file {name!r} as {fmt}: it is truncated, "
                               f"corrupt or not in that layout ({type(exc).__name__}: {exc})"
                               ) from exc


# ---------------------------------------------------------------------- the common end
def _supports(column: str) -> bool:
    return column in {f.name for f in dataclasses.fields(PosteriorCatalog)}


def _failed(values: list[np.ndarray], z: np.ndarray | None, valid: np.ndarray) -> np.ndarray:
    """``(N,)``: every valid sample NaN in every sampled column (``z`` counts unless it is the
    same in every sample of the galaxy: a fixed redshift is not sampled)."""
    failed = np.ones(valid.shape[0], dtype=bool)
    for v in values:
        failed &= np.all(np.isnan(v) | ~valid, axis=1)
    if z is not None:
        first = z[np.arange(z.shape[0]), np.argmax(valid, axis=1)]
        fixed = np.all((z == first[:, None]) | ~valid, axis=1)
        failed &= fixed | np.all(np.isnan(z) | ~valid, axis=1)
    return failed & valid.any(axis=1)


def _report(fmt: str, name: str, n_rows: int, n_galaxies: int, failed_ids: np.ndarray) -> dict:
    failed_ids = [str(i) for i in failed_ids]
    if failed_ids:
        logger.warning("catalogue %r: %d of %d galaxies excluded because their SED fit failed "
                       "(every sampled value NaN): %s; %s", name, len(failed_ids), n_rows,
                       _format_ids(failed_ids), _NOTE.split("; ", 1)[1])
    else:
        logger.info("catalogue %r (%s): %d galaxies read", name, fmt, n_galaxies)
    return {"format": fmt, "path": name, "n_rows": int(n_rows), "n_galaxies": int(n_galaxies),
            "n_failed": len(failed_ids), "failed_ids": failed_ids[:_FAILED_SHOWN], "note": _NOTE}


def _assemble(fmt: str, name: str, ids: np.ndarray, fields: np.ndarray,
              cols: dict[str, np.ndarray], valid: np.ndarray, fixed_z: np.ndarray | None,
              per_galaxy: dict[str, np.ndarray], meta: dict) -> PosteriorCatalog:
    """The catalogue from padded ``(N, S)`` columns and a validity mask (ragged rows).

    Failed galaxies are excluded; samples of weight 0 are dropped; a NaN left in a sample of
    non-zero weight is an error naming the galaxies and the column.
    """
    n = ids.size
    sampled = [cols[c] for c in ("log_mass", "log_sfr") if c in cols]
    failed = _failed(sampled, cols.get("z"), valid)
    if fixed_z is not None:  # z of objects fitted at a fixed redshift
        has = np.isfinite(fixed_z)
        z = cols.get("z")
        if z is None:
            missing = ~has & ~failed
            if np.any(missing):
                raise CatalogError(f"no redshift for object(s) {_format_ids(ids[missing])}: "
                                   f"'z' is not a sampled parameter and the fixed redshift "
                                   f"dataset 'z' is NaN for them")
            z = np.zeros(valid.shape)
        cols["z"] = np.where(has[:, None], np.nan_to_num(fixed_z)[:, None], z)
    ok = ~failed
    if not np.any(ok):
        raise CatalogError(f"every one of the {n} galaxies has a failed fit (all sampled values "
                           f"NaN), e.g. {_format_ids(ids)}")
    keep = valid & ok[:, None]
    if "weight" in cols:
        w = cols["weight"]
        bad = keep & ~(np.isfinite(w) & (w >= 0))
        if np.any(bad):
            raise CatalogError(f"column 'weight' has negative or non-finite weights for galaxy "
                               f"id(s) {_format_ids(ids[bad.any(axis=1)])}")
        keep &= w > 0
        empty = ok & ~keep.any(axis=1)
        if np.any(empty):
            raise CatalogError(f"every sample of galaxy id(s) {_format_ids(ids[empty])} has "
                               f"weight 0")
    for c, v in cols.items():
        bad = keep & ~np.isfinite(v)
        if np.any(bad):
            raise CatalogError(
                f"column {c!r} has NaN or infinite values in some (not all) samples of non-zero "
                f"weight of galaxy id(s) {_format_ids(ids[bad.any(axis=1)])}: a partly failed "
                f"fit (only a galaxy with every sampled value NaN is excluded as failed); fix or "
                f"remove these galaxies, or give the bad samples weight 0")
    gal_of = np.broadcast_to(np.arange(n)[:, None], keep.shape)[keep]
    rank = np.cumsum(ok) - 1
    extra = {}
    if "log_prior_sfr" in cols:
        extra["log_prior_sfr"] = cols["log_prior_sfr"][keep]
    cat = PosteriorCatalog.from_arrays(
        ids[ok], fields[ok], cols["log_mass"][keep], cols["z"][keep],
        galaxy_index=rank[gal_of],
        log_sfr=cols["log_sfr"][keep] if "log_sfr" in cols else None,
        log_prior=cols["log_prior"][keep] if "log_prior" in cols else None,
        weight=cols["weight"][keep] if "weight" in cols else None,
        obs_log_mass=per_galaxy["obs_log_mass"][ok] if "obs_log_mass" in per_galaxy else None,
        obs_z=per_galaxy["obs_z"][ok] if "obs_z" in per_galaxy else None,
        meta=meta, **extra,
    )
    cat.meta["read_report"] = _report(fmt, name, n, cat.n_galaxies, ids[failed])
    return cat


def _fields(name: str, n: int, from_file: np.ndarray | None, field: str | None,
            what: str) -> np.ndarray:
    if from_file is not None:
        if field is not None:
            raise CatalogError(f"the file has a field {what} and field= (--field) {field!r} was "
                               f"given too; give field= only for a file without one")
        return _text_column("field", from_file)
    if field is None:
        raise CatalogError(f"the file has no field {what}: pass field= (--field NAME) with the "
                           f"survey field of its galaxies")
    return np.full(n, str(field))


# ---------------------------------------------------------------------- long and wide
def _read_table(name: str, file_format: str | None, hdf5_path: str | None) -> Table:
    if file_format == "hdf5" or (file_format is None and _is_hdf5(name)):
        import h5py

        with h5py.File(name, "r") as f:
            dset = _default_table(f, name, hdf5_path)
            if not _is_table(dset):
                raise CatalogFileError(f"HDF5 file {name!r}: dataset {dset.name!r} is not a "
                                       f"table (shape {dset.shape}, dtype {dset.dtype}); "
                                       f"{_held(f)}")
            path = dset.name
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            table = Table.read(name, format="hdf5", path=path)
        for w in caught:
            logger.warning("catalogue %r: %s", name, w.message)
        return table
    if file_format is None:
        ext = os.path.splitext(name)[1].lower()
        if ext not in _TABLE_EXTENSIONS:
            raise CatalogError(f"cannot tell the file format of {name!r} from its extension "
                               f"{ext!r}; pass format=")
        file_format = _TABLE_EXTENSIONS[ext]
    return _read_table_file(name, file_format)


def _rename(table: Table, mapping: dict[str, str]) -> None:
    for pop, col in mapping.items():
        if col not in table.colnames:
            raise CatalogError(f"column {col!r} (given for {pop!r}) is not in the table, whose "
                               f"columns are {table.colnames}")
    for pop, col in mapping.items():
        if pop in table.colnames and pop != col and pop not in mapping.values():
            logger.warning("column %r of the table is not read: column %r is read as %r "
                           "instead (columns=)", pop, col, pop)
            table.remove_column(pop)
    if not mapping:
        return
    table.rename_columns(list(mapping.values()), [f"__{p}" for p in mapping])
    table.rename_columns([f"__{p}" for p in mapping], list(mapping))


def _read_tables(name: str, fmt: str, file_format: str | None, mapping: dict[str, str],
                 hdf5_path: str | None, field: str | None,
                 allow_interleaved: bool) -> PosteriorCatalog:
    table = _read_table(name, file_format, hdf5_path)
    _rename(table, mapping)
    if fmt == "table":
        fmt = "wide" if _has_vector_column(table) else "long"
    if fmt == "wide":
        return _wide(name, table, field)
    return _long(name, table, field, allow_interleaved)


def _as_float(table: Table, c: str) -> np.ndarray | None:
    try:
        return np.asarray(table[c], dtype=np.float64)
    except (TypeError, ValueError):
        return None  # left to the long-table reader, which names the rows


def _unmask_floats(table: Table, names: Sequence[str]) -> None:
    """Masked values of float columns as NaN: FITS readers mask NaN, which is a value here."""
    for c in names:
        col = table[c] if c in table.colnames else None
        if col is not None and getattr(col, "mask", None) is not None and col.dtype.kind == "f":
            table[c] = np.asarray(col.filled(np.nan))


def _long(name: str, table: Table, field: str | None, allow_interleaved: bool) -> PosteriorCatalog:
    _unmask_floats(table, _VECTOR + ("log_mass_obs", "z_obs"))
    if "field" not in table.colnames or field is not None:
        fields = _fields(name, len(table), table["field"] if "field" in table.colnames else None,
                         field, "column")
        if "field" not in table.colnames:
            table["field"] = fields
    n_rows = 0
    failed_ids = np.zeros(0, dtype=str)
    if "id" in table.colnames and "log_mass" in table.colnames:
        ids = _text_column("id", table["id"])
        uniq, first, inv = np.unique(ids, return_index=True, return_inverse=True)
        n_rows = uniq.size
        inv = inv.ravel()
        vals = [v for v in (_as_float(table, c) for c in ("log_mass", "log_sfr")
                            if c in table.colnames) if v is not None]
        row_nan = np.ones(len(table), dtype=bool)
        for v in vals:
            row_nan &= np.isnan(v)
        z = _as_float(table, "z") if "z" in table.colnames else None
        if vals:
            all_nan = np.bincount(inv, weights=~row_nan, minlength=n_rows) == 0
            if z is not None:
                z_nan = np.bincount(inv, weights=~np.isnan(z), minlength=n_rows) == 0
                zmin = np.full(n_rows, np.inf)
                zmax = np.full(n_rows, -np.inf)
                np.fmin.at(zmin, inv, z)
                np.fmax.at(zmax, inv, z)
                all_nan &= z_nan | (zmin == zmax)
            failed = all_nan
            drop = failed[inv]
            w = _as_float(table, "weight") if "weight" in table.colnames else None
            if w is not None:
                drop |= (w == 0) & ~failed[inv]
            if np.any(drop):
                order = np.argsort(first[failed], kind="stable")
                failed_ids = uniq[failed][order]
                table = table[~drop]
    try:
        cat = PosteriorCatalog._from_table(table, allow_interleaved=allow_interleaved,
                                           source=name)
    except CatalogError as exc:
        raise CatalogError(f"catalogue {name!r} (long): {exc}") from exc
    cat.meta["read_report"] = _report("long", name, n_rows or cat.n_galaxies, cat.n_galaxies,
                                      failed_ids)
    return cat


def _vector(table: Table, c: str, n: int, lengths: np.ndarray | None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """Column ``c`` as ``(N, S)`` floats and its validity mask; list columns are padded."""
    col = table[c]
    arr = np.asarray(col)
    expected = f"(N, S) with N = {n}" if lengths is None else \
        f"(N, S) = ({n}, {int(lengths.max()) if n else 0})"
    if arr.dtype.kind == "O":
        rows = [np.asarray(v, dtype=np.float64).ravel() if v is not None else np.zeros(0)
                for v in arr]
        lens = np.array([r.size for r in rows])
        if lengths is not None and np.any(lens != lengths):
            i = int(np.flatnonzero(lens != lengths)[0])
            raise CatalogError(f"column {c!r} has {lens[i]} samples in row {i} where 'log_mass' "
                               f"has {lengths[i]}: every per-sample column must have the shape "
                               f"of 'log_mass'")
        s = max(int(lens.max()) if n else 0, 1)
        out = np.full((n, s), np.nan)
        for i, r in enumerate(rows):
            out[i, : r.size] = r
        return out, np.arange(s)[None, :] < lens[:, None]
    if arr.ndim != 2:
        raise CatalogError(f"column {c!r} has shape {arr.shape}, expected a vector column of "
                           f"shape {expected} (one value per sample of each galaxy)")
    if lengths is not None and (arr.shape[1] != lengths.max() or np.any(lengths != arr.shape[1])):
        raise CatalogError(f"column {c!r} has shape {arr.shape}, expected {expected} like "
                           f"'log_mass'")
    if arr.dtype.kind not in "fiu":
        raise CatalogError(f"column {c!r} holds {arr.dtype} values, not numbers")
    if getattr(col, "mask", None) is not None:  # FITS readers mask NaN; NaN is a value here
        arr = np.asarray(col.filled(np.nan) if arr.dtype.kind == "f" else col)
    return arr.astype(np.float64), np.ones(arr.shape, dtype=bool)


def _scalar(table: Table, c: str, n: int) -> np.ndarray:
    arr = np.asarray(table[c])
    if arr.ndim != 1:
        raise CatalogError(f"column {c!r} has shape {arr.shape}, expected a scalar column of "
                           f"shape ({n},) (one value per galaxy)")
    return arr


def _wide(name: str, table: Table, field: str | None) -> PosteriorCatalog:
    n = len(table)
    missing = [c for c in ("id", "log_mass", "z") if c not in table.colnames]
    if missing:
        raise CatalogError(f"wide table lacks column(s) {missing} (has {table.colnames}); map "
                           f"them with columns=")
    known = set(_VECTOR) | set(_SCALAR)
    ignored = [c for c in table.colnames if c not in known]
    if ignored:
        logger.warning("catalogue %r: ignoring column(s) %s: not popmodel columns", name,
                       ", ".join(map(repr, ignored)))
    if "log_prior_sfr" in table.colnames and not _supports("log_prior_sfr"):
        raise CatalogError("column 'log_prior_sfr' cannot be held by this popmodel's "
                           "PosteriorCatalog")
    cols: dict[str, np.ndarray] = {}
    log_mass, valid = _vector(table, "log_mass", n, None)
    lengths = valid.sum(axis=1)
    cols["log_mass"] = log_mass
    for c in _VECTOR[1:]:
        if c in table.colnames:
            cols[c], _ = _vector(table, c, n, lengths)
    ids = _text_column("id", _scalar(table, "id", n))
    fields = _fields(name, n, _scalar(table, "field", n) if "field" in table.colnames else None,
                     field, "column")
    per_galaxy = {}
    for c, attr in (("log_mass_obs", "obs_log_mass"), ("z_obs", "obs_z")):
        if c in table.colnames:
            per_galaxy[attr] = _scalar(table, c, n).astype(np.float64)
    return _assemble("wide", name, ids, fields, cols, valid, None, per_galaxy, dict(table.meta))


# ---------------------------------------------------------------------- chains and provabgs
def _decode_labels(raw: Any, where: str) -> list[str]:
    """Parameter labels from an HDF5 dataset or attribute: bytes or UTF-8 strings, or a JSON
    list in one string (Prospector's ``theta_labels`` attribute)."""
    if isinstance(raw, bytes | np.bytes_):
        raw = bytes(raw).decode("utf-8")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise CatalogError(f"parameter labels ({where}) are one string {raw!r}, not a list "
                               f"of labels or a JSON list") from None
    arr = np.asarray(raw)
    if arr.ndim != 1:
        raise CatalogError(f"parameter labels ({where}) have shape {arr.shape}, expected "
                           f"(n_params,)")
    return [v.decode("utf-8") if isinstance(v, bytes | np.bytes_) else str(v) for v in arr]


def _label_index(labels: list[str], mapping: dict[str, str], fmt: str) -> dict[str, int]:
    wrong = [k for k in mapping if k not in _LABELLED and k not in ("id", "field")]
    if wrong:
        raise CatalogError(f"for {fmt} files columns= maps {', '.join(_LABELLED)} to parameter "
                           f"labels; {wrong} cannot be mapped (the other quantities are the "
                           f"datasets of the file's contract)")
    out = {}
    for pop in _LABELLED:
        label = mapping.get(pop, DEFAULT_LABELS[pop])
        if label in labels:
            out[pop] = labels.index(label)
        elif pop in mapping or pop == "log_mass":
            how = "given in columns=" if pop in mapping else "the default label"
            raise CatalogError(f"parameter label {label!r} ({how} for {pop!r}) is not in the "
                               f"file; its labels are {labels}. Map the one you mean with "
                               f"columns={{{pop!r}: LABEL}} (--columns {pop}=LABEL)")
    return out


def _optional(group: Any, keys: Sequence[str], shape: tuple, what: str) -> np.ndarray | None:
    for key in keys:
        if key in group:
            arr = np.asarray(group[key][()])
            if arr.shape != shape:
                raise CatalogError(f"dataset {key!r} has shape {arr.shape}, expected {shape} "
                                   f"({what})")
            return arr
    return None


def _read_cube(name: str, fmt: str, mapping: dict[str, str], hdf5_path: str | None,
               field: str | None) -> PosteriorCatalog:
    import h5py

    if not _is_hdf5(name):
        raise CatalogFileError(f"catalogue file {name!r} is not an HDF5 file; the {fmt} format "
                               f"is HDF5")
    with h5py.File(name, "r") as f:
        group, dset = _hdf5_group(f, name, hdf5_path)
        if fmt == "chains":
            cube = dset if dset is not None else group.get("chains")
            if not isinstance(cube, h5py.Dataset):
                raise CatalogFileError(f"HDF5 file {name!r} has no dataset 'chains' in "
                                       f"{group.name!r} ({_held(f)})")
            if isinstance(group.get("theta_labels"), h5py.Dataset):
                labels_raw = (group["theta_labels"][()], "dataset 'theta_labels'")
            elif "theta_labels" in cube.attrs or "theta_labels" in group.attrs:
                holder = cube if "theta_labels" in cube.attrs else group
                labels_raw = (holder.attrs["theta_labels"], "attribute 'theta_labels'")
            else:
                raise CatalogFileError(f"HDF5 file {name!r} has no 'theta_labels' for its "
                                       f"chains ({_held(f)})")
            labels = _decode_labels(labels_raw[0], labels_raw[1])
            id_keys: tuple[str, ...] = ("objid",)
        else:
            cube = dset if dset is not None else _find_cube(group)
            if cube is None:
                raise CatalogFileError(f"HDF5 file {name!r} has no single 3-D samples dataset "
                                       f"in {group.name!r} ({_held(f)}); pass hdf5_path=")
            labels = _cube_labels(group, cube)
            if labels is None:
                raise CatalogFileError(f"HDF5 file {name!r}: no parameter labels for samples "
                                       f"{cube.name!r} (an attribute or dataset 'labels')")
            id_keys = ("id", "ids", "objid", "targetid", "TARGETID")
        if cube.ndim != 3:
            raise CatalogError(f"dataset {cube.name!r} has shape {cube.shape}, expected "
                               f"(n_obj, n_samples, n_params)")
        data = np.asarray(cube[()], dtype=np.float64)
        n, s, p = data.shape
        if len(labels) != p:
            raise CatalogError(f"{len(labels)} parameter labels {labels} for {p} parameters "
                               f"(last axis of {cube.name!r}, shape {data.shape})")
        index = _label_index(labels, mapping, fmt)
        raw_ids = _optional(group, (mapping.get("id"),) if "id" in mapping else id_keys, (n,),
                            "one id per object")
        if raw_ids is None:
            if fmt == "chains":
                raise CatalogFileError(f"HDF5 file {name!r} has no dataset 'objid' ({_held(f)})")
            logger.warning("catalogue %r: no id dataset; galaxies are named by row number", name)
            raw_ids = np.arange(n)
        ids = _text_column("id", raw_ids)
        raw_field = _optional(group, (mapping.get("field", "field"),), (n,), "one per object")
        fields = _fields(name, n, raw_field, field, "dataset")
        weights = _optional(group, ("weights", "weight"), (n, s), "one weight per sample")
        lnprior = _optional(group, ("lnprior",), (n, s), "one per sample")
        lnprior_sfr = _optional(group, ("lnprior_sfr",), (n, s), "one per sample")
        per_galaxy = {}
        for key, attr in (("obs_log_mass", "obs_log_mass"), ("obs_z", "obs_z")):
            v = _optional(group, (key,), (n,), "one per object")
            if v is not None:
                per_galaxy[attr] = v.astype(np.float64)
        fixed_z = _optional(group, ("z", "redshift") if fmt == "provabgs" else ("z",), (n,),
                            "a fixed redshift per object")
        meta = {"source_format": fmt, "theta_labels": labels,
                "label_map": {k: labels[i] for k, i in index.items()}}
    if "z" not in index and fixed_z is None:
        raise CatalogError(f"redshift: label {mapping.get('z', 'zred')!r} is not among the "
                           f"labels {labels} and there is no fixed-redshift dataset 'z'")
    cols = {k: data[:, :, i] for k, i in index.items()}
    if weights is not None:
        cols["weight"] = weights.astype(np.float64)
    if lnprior is not None:
        cols["log_prior"] = lnprior.astype(np.float64)
    if lnprior_sfr is not None:
        cols["log_prior_sfr"] = lnprior_sfr.astype(np.float64)
    if fixed_z is not None:
        fixed_z = fixed_z.astype(np.float64)
    valid = np.ones((n, s), dtype=bool)
    return _assemble(fmt, name, ids, fields, cols, valid, fixed_z, per_galaxy, meta)


# ---------------------------------------------------------------------- qp
def _import_qp() -> Any:
    try:
        import qp
    except ImportError as exc:
        raise CatalogError(f"reading a qp ensemble needs the package qp-prob (import name qp; "
                           f"not the unrelated package named qp on PyPI): python -m pip install "
                           f"qp-prob ({type(exc).__name__}: {exc})") from exc
    if not (hasattr(qp, "read") and hasattr(qp, "Ensemble")):
        raise CatalogError(f"the module qp imported from {getattr(qp, '__file__', '?')} is not "
                           f"qp-prob (LSST DESC's PDF package): python -m pip install qp-prob")
    return qp


def _stride_permutation(n: int) -> np.ndarray:
    """``k -> (a k) mod n`` with ``a`` the integer nearest ``0.618 n`` coprime to ``n``."""
    a = max(1, round(0.6180339887 * n))
    while np.gcd(a, n) != 1:
        a += 1
    return (a * np.arange(n)) % n


def _read_qp(name: str, mapping: dict[str, str], field: str | None,
             log_mass: np.ndarray | None, mass_error_dex: float, cosmology: Any,
             n_quantiles: int) -> PosteriorCatalog:
    from scipy.special import ndtri

    from popmodel.cosmology import cosmology_from_config

    qp = _import_qp()
    if not (np.isfinite(mass_error_dex) and mass_error_dex >= 0):
        raise CatalogError(f"mass_error_dex must be a finite number >= 0, got {mass_error_dex}")
    if int(n_quantiles) < 1:
        raise CatalogError(f"n_quantiles must be >= 1, got {n_quantiles}")
    try:
        ens = qp.read(name)
    except Exception as exc:  # qp and tables_io raise many types
        raise CatalogFileError(f"cannot read {name!r} as a qp ensemble ({type(exc).__name__}: "
                               f"{exc})") from exc
    n = int(ens.npdf)
    ancil = dict(ens.ancil or {})
    wrong = [k for k in mapping if k not in ("id", "field", "log_mass", "z_obs")]
    if wrong:
        raise CatalogError(f"for qp files columns= maps id, field, log_mass and z_obs to "
                           f"ancillary columns; {wrong} cannot be mapped")

    def ancillary(pop: str, default: str) -> np.ndarray | None:
        key = mapping.get(pop, default)
        if key not in ancil:
            if pop in mapping:
                raise CatalogError(f"ancillary column {key!r} (given for {pop!r}) is not in the "
                                   f"ensemble; it has {sorted(ancil)}")
            return None
        arr = np.asarray(ancil[key])
        if arr.shape != (n,):
            raise CatalogError(f"ancillary column {key!r} has shape {arr.shape}, expected ({n},)")
        return arr

    raw_ids = ancillary("id", "id")
    if raw_ids is None:
        logger.warning("catalogue %r: no ancillary 'id'; galaxies are named by row number", name)
        raw_ids = np.arange(n)
    ids = _text_column("id", raw_ids)
    fields = _fields(name, n, ancillary("field", "field"), field, "column")
    m_est = ancillary("log_mass", "log_mass")
    if m_est is not None and log_mass is not None:
        raise CatalogError("the ensemble has an ancillary mass column and log_mass= was given "
                           "too; give one")
    if m_est is None:
        if log_mass is None:
            raise CatalogError(f"no mass estimate: the ensemble has no ancillary column "
                               f"{mapping.get('log_mass', 'log_mass')!r} (it has "
                               f"{sorted(ancil)}); pass log_mass= or map one with columns=")
        m_est = np.asarray(log_mass, dtype=np.float64)
        if m_est.shape != (n,):
            raise CatalogError(f"log_mass= has shape {m_est.shape}, expected ({n},)")
    m_est = m_est.astype(np.float64)
    k = int(n_quantiles)
    q = (np.arange(k) + 0.5) / k
    z = np.asarray(ens.ppf(q), dtype=np.float64).reshape(n, k)
    z_est = ancillary("z_obs", "z_obs")
    z_est = (np.asarray(ens.ppf(np.array([0.5])), dtype=np.float64).reshape(n)
             if z_est is None else z_est.astype(np.float64))
    failed = np.all(np.isnan(z), axis=1) | ~np.isfinite(m_est)
    ok = ~failed
    z[failed] = np.nan  # a failed fit: every sampled value NaN
    nonpos = ok & (np.any(z <= 0, axis=1) | ~(z_est > 0))
    if np.any(nonpos):
        raise CatalogError(f"the redshift PDF of galaxy id(s) {_format_ids(ids[nonpos])} puts "
                           f"quantiles (or the estimate z_obs) at z <= 0, where the distance "
                           f"shift of the mass is undefined")
    cosmo = cosmology_from_config(cosmology)
    log_dl = np.full((n, k), np.nan)
    log_dl_est = np.full(n, np.nan)
    log_dl[ok] = np.log10(cosmo.luminosity_distance(z[ok]).value)
    log_dl_est[ok] = np.log10(cosmo.luminosity_distance(z_est[ok]).value)
    dm = mass_error_dex * ndtri(q)[_stride_permutation(k)]
    cols = {"log_mass": m_est[:, None] + 2.0 * (log_dl - log_dl_est[:, None]) + dm[None, :],
            "z": z}
    per_galaxy = {"obs_log_mass": np.where(ok, m_est, np.nan), "obs_z": z_est}
    meta = {"source_format": "qp", "qp_pdf": str(getattr(ens, "gen_class", type(ens)).__name__),
            "posterior_construction": (
                f"{k} mid-point quantiles of each redshift PDF (qp ppf); log_mass = catalogue "
                f"mass + 2 log10(D_L(z)/D_L(z_obs)) + {mass_error_dex} dex x normal quantiles "
                f"(fixed stride pairing); cosmology {getattr(cosmo, 'name', cosmo)}; flat "
                f"interim prior assumed")}
    return _assemble("qp", name, ids, fields, cols, np.ones((n, k), dtype=bool), None,
                     per_galaxy, meta)


# ---------------------------------------------------------------------- Prospector
def _prospector_chain(path: str) -> tuple[np.ndarray, list[str], np.ndarray]:
    """``(samples (S, P), labels, weights (S,))`` of one Prospector result file."""
    import h5py

    name = _check_file(path)
    if not _is_hdf5(name):
        raise CatalogFileError(f"Prospector result {name!r} is not an HDF5 file")
    with h5py.File(name, "r") as f:
        sampling = f.get("sampling")
        if sampling is None or not isinstance(sampling.get("chain"), h5py.Dataset):
            raise CatalogFileError(f"Prospector result {name!r} has no dataset 'sampling/chain' "
                                   f"({_held(f)})")
        chain = sampling["chain"][()]
        weights = np.asarray(sampling["weights"][()], dtype=np.float64) \
            if "weights" in sampling else None
        if chain.dtype.names is not None:  # v2: one field per parameter, vectors as sub-arrays
            labels, blocks = [], []
            for p in chain.dtype.names:
                block = np.asarray(chain[p], dtype=np.float64).reshape(chain.shape[0], -1)
                labels += [p] if block.shape[1] == 1 else \
                    [f"{p}_{i + 1}" for i in range(block.shape[1])]
                blocks.append(block)
            samples = np.concatenate(blocks, axis=1)
        else:  # v1: unstructured, theta_labels a JSON attribute of the group
            raw = sampling.attrs.get("theta_labels", f.attrs.get("theta_labels"))
            if raw is None:
                raise CatalogFileError(f"Prospector result {name!r}: an unstructured chain "
                                       f"without a 'theta_labels' attribute")
            labels = _decode_labels(raw, "attribute 'theta_labels'")
            samples = np.asarray(chain, dtype=np.float64).reshape(-1, chain.shape[-1])
    if samples.shape[1] != len(labels):
        raise CatalogFileError(f"Prospector result {name!r}: {len(labels)} labels for "
                               f"{samples.shape[1]} parameters")
    if weights is None:
        weights = np.ones(samples.shape[0])
    weights = weights.reshape(-1)
    if weights.size != samples.shape[0]:
        raise CatalogFileError(f"Prospector result {name!r}: {weights.size} weights for "
                               f"{samples.shape[0]} samples")
    return samples, labels, weights


def collate_prospector(
    paths: Sequence[str | os.PathLike],
    out_path: str | os.PathLike,
    *,
    field: str | Sequence[str] | None = None,
    objids: Sequence[Any] | None = None,
    labels: Sequence[str] | None = None,
) -> dict:
    """Collate Prospector's per-object result files into one ``chains`` file.

    Prospector (Johnson et al. 2021, ApJS 254, 22) writes one HDF5 file per object
    (``prospect.io.write_results``) and reads it back with ``prospect.io.read_results``. Both
    layouts its releases have used are read:

    * v1.x: group ``sampling`` with dataset ``chain``, ``(n_samples, n_params)`` for nested
      samplers (dynesty) or ``(n_walkers, n_iterations, n_params)`` for emcee (flattened
      here), dataset ``weights`` (nested samplers; exp(logwt - logz), normalised), dataset
      ``lnprobability``, and the parameter names in the attribute ``theta_labels`` of the group,
      a JSON-encoded list (vector parameters expanded as ``name_1``, ``name_2``...);
    * v2.x: ``sampling/chain`` is a structured array, one field per free parameter (a vector
      parameter is a sub-array field, expanded here to ``name_1``... like the v1 labels), with
      ``sampling/weights`` for every sampler (equal for emcee), ``lnprobability`` and
      ``lnlike``; there is no ``theta_labels`` attribute (the field names are the labels).

    Missing weights (v1 emcee) mean equal weights. Chains of different lengths are padded to
    the longest with NaN samples of weight 0. No ``lnprior`` is written: the prior Prospector
    stores (``lnprobability - lnlike``) is the density of all its free parameters in their own
    coordinates, not the marginal density of (log10 M, z) that popmodel divides out; compute
    that from prior draws (:class:`popmodel.catalog.KDEPrior`) and add it as ``lnprior``. Nor
    is mass converted: Prospector's ``logmass`` is usually the total mass formed (see
    :func:`read_posteriors`).

    Args:
        paths: Prospector result files, one per object.
        out_path: The chains file to write (replaced if present).
        field: The survey field, of every object (a string) or of each (a sequence); None
            writes no ``field`` dataset (then give ``field=`` when reading).
        objids: One id per file (default: each file name without its extension).
        labels: The parameter labels to write, in this order (default: those of the first
            file; then every file must have the same labels).

    Returns:
        ``{"n_obj", "n_samples", "theta_labels", "path"}``.

    Raises:
        CatalogFileNotFoundError: naming a missing file.
        CatalogFileError: naming a file that is not a Prospector result.
        CatalogError: for labels that differ between files or are missing from one, or
            ``objids`` / ``field`` of the wrong length.
    """
    import h5py

    paths = [os.fspath(p) for p in paths]
    if not paths:
        raise CatalogError("no Prospector result files given")
    if objids is None:
        objids = [os.path.splitext(os.path.basename(p))[0] for p in paths]
    objids = [str(i) for i in objids]
    if len(objids) != len(paths):
        raise CatalogError(f"{len(objids)} objids for {len(paths)} files")
    chains = [_prospector_chain(p) for p in paths]
    wanted = list(labels) if labels is not None else chains[0][1]
    cols = []
    for p, (_, labs, _) in zip(paths, chains, strict=True):
        if labels is None and labs != wanted:
            raise CatalogError(f"Prospector result {p!r} has labels {labs}, the first file "
                               f"{paths[0]!r} has {wanted}; pass labels= to collate a common set")
        missing = [lab for lab in wanted if lab not in labs]
        if missing:
            raise CatalogError(f"Prospector result {p!r} lacks label(s) {missing}; it has {labs}")
        cols.append([labs.index(lab) for lab in wanted])
    s_max = max(c[0].shape[0] for c in chains)
    cube = np.full((len(paths), s_max, len(wanted)), np.nan)
    weights = np.zeros((len(paths), s_max))
    for i, ((samples, _, w), idx) in enumerate(zip(chains, cols, strict=True)):
        cube[i, : samples.shape[0]] = samples[:, idx]
        weights[i, : w.size] = w
    fields = None
    if field is not None:
        fields = [str(field)] * len(paths) if isinstance(field, str) else [str(x) for x in field]
        if len(fields) != len(paths):
            raise CatalogError(f"{len(fields)} fields for {len(paths)} files")
    text = h5py.string_dtype("utf-8")
    with h5py.File(os.fspath(out_path), "w") as f:
        f.create_dataset("chains", data=cube)
        f.create_dataset("theta_labels", data=np.array(wanted, dtype=object), dtype=text)
        f.create_dataset("objid", data=np.array(objids, dtype=object), dtype=text)
        f.create_dataset("weights", data=weights)
        if fields is not None:
            f.create_dataset("field", data=np.array(fields, dtype=object), dtype=text)
        f.attrs["collated_from"] = json.dumps(paths)
    return {"n_obj": len(paths), "n_samples": s_max, "theta_labels": wanted,
            "path": os.fspath(out_path)}
