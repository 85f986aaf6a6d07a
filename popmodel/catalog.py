"""Ragged per-galaxy posterior samples, interim priors, and their readers and writers."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
from astropy.table import Table

from popmodel.analytic import ANALYTIC_COLUMNS, AnalyticPosteriors
from popmodel.jsonutil import dumps as json_dumps

if TYPE_CHECKING:
    from scipy.stats import gaussian_kde

__all__ = [
    "OPTIONAL_COLUMNS",
    "REQUIRED_COLUMNS",
    "CallablePrior",
    "CatalogError",
    "CatalogFileError",
    "CatalogFileNotFoundError",
    "FlatPrior",
    "InterimPrior",
    "KDEPrior",
    "PosteriorCatalog",
]

REQUIRED_COLUMNS = ("id", "field", "log_mass", "z")
OPTIONAL_COLUMNS = ("log_sfr", "log_prior", "log_prior_sfr", "weight", "log_mass_obs", "z_obs")
#: Per-galaxy columns (constant within a galaxy): the catalogue point estimates that the
#: survey selection acted on. When absent, weighted medians of the samples stand in.
GALAXY_COLUMNS = {"log_mass_obs": "obs_log_mass", "z_obs": "obs_z"}

_SAMPLE_COLUMNS = ("log_mass", "z", "log_sfr", "log_prior", "log_prior_sfr", "weight")

# File formats by extension; values are the canonical format names used below.
_EXTENSIONS = {
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".fits": "fits",
    ".fit": "fits",
    ".ecsv": "ecsv",
    ".parquet": "parquet",
}
_FORMAT_ALIASES = {
    "hdf5": "hdf5",
    "h5": "hdf5",
    "fits": "fits",
    "fit": "fits",
    "ecsv": "ecsv",
    "ascii.ecsv": "ecsv",
    "parquet": "parquet",
}
_HDF5_PATH = "catalog"
# FITS headers cannot hold nested metadata, so ``meta`` is stored there as one JSON string.
_FITS_META_KEY = "PMMETA"
_MAX_IDS_IN_MESSAGE = 10
_FORMAT_NAMES = {"hdf5": "HDF5", "fits": "FITS", "ecsv": "ECSV", "parquet": "Parquet"}
_FORMAT_ARTICLES = {"hdf5": "an", "fits": "a", "ecsv": "an", "parquet": "a"}
#: Names within a small edit distance of a popmodel column that are common names of other
#: quantities (squashed as by :func:`_squash`), so never taken for a misspelling: the specific
#: SFR, and the log posterior probability that MCMC samplers store with each draw.
_NOT_MISSPELLINGS = frozenset({"logssfr", "ssfr", "logprob", "lnprob"})

logger = logging.getLogger(__name__)


class CatalogError(ValueError):
    """Invalid catalog input; the message names the offending galaxy id, column or field."""


class CatalogFileError(CatalogError):
    """A catalogue file that cannot be read: not in its format, truncated or corrupt, or without
    the table; the message names the file."""


class CatalogFileNotFoundError(CatalogFileError, FileNotFoundError):
    """The catalogue file does not exist (also a :class:`FileNotFoundError`)."""


def _format_ids(ids: Sequence[str] | np.ndarray) -> str:
    """Return a short, readable list of galaxy ids for an error message."""
    ids = [str(i) for i in ids]
    shown = ", ".join(repr(i) for i in ids[:_MAX_IDS_IN_MESSAGE])
    if len(ids) > _MAX_IDS_IN_MESSAGE:
        shown += f", ... ({len(ids)} in total)"
    return shown


def _format_rows(rows: np.ndarray) -> str:
    """Return a short list of (0-based) table row numbers for an error message."""
    rows = [int(r) for r in rows]
    shown = ", ".join(str(r) for r in rows[:_MAX_IDS_IN_MESSAGE])
    if len(rows) > _MAX_IDS_IN_MESSAGE:
        shown += f", ... ({len(rows)} in total)"
    return shown


def _where(rows: np.ndarray, sample_ids: np.ndarray | None) -> str:
    """``row(s) ... (galaxy id(s) ...)`` for the rows of a long table, for an error message."""
    text = f"row(s) {_format_rows(rows)}"
    if sample_ids is not None and rows.size:
        ids = sample_ids[rows]
        _, first = np.unique(ids, return_index=True)
        text += f" (galaxy id(s) {_format_ids(ids[np.sort(first)])})"
    return text


# ------------------------------------------------------------------ column names
def _squash(name: str) -> str:
    """Lower case without separators: ``'Log-Mass'`` and ``'log_mass'`` both give ``'logmass'``."""
    return re.sub(r"[\s_.\-]+", "", name.lower())


def _edit_distance(a: str, b: str) -> int:
    """Optimal-string-alignment distance: insertions, deletions, substitutions and swaps of two
    neighbouring characters each count 1."""
    d = [[i + j if i * j == 0 else 0 for j in range(len(b) + 1)] for i in range(len(a) + 1)]
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
    return d[-1][-1]


def _near_miss(name: str) -> str | None:
    """The popmodel column that ``name`` (not itself one) looks like a misspelling of, or None.

    Close means: the same up to case and separators (``'LogMass'``, ``'log-prior'``), a plural
    (``'weights'``), or an edit distance of at most 1 for names of 4-5 characters and 2 for
    longer ones (``'lnprior'``, ``'weigth'``); never for the one- and two-letter names beyond
    case and plural, never for a known name followed by digits (``'log_mass_16'``, a percentile),
    and never for the names in ``_NOT_MISSPELLINGS``.
    """
    s = _squash(name)
    if not s or s in _NOT_MISSPELLINGS:
        return None
    best, best_distance = None, None
    for known in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
        k = _squash(known)
        if s == k or (len(k) > 1 and s in (k + "s", k + "es")):
            return known
        if s.startswith(k) and s[len(k):].isdigit():
            continue
        limit = 0 if len(k) < 4 else 1 if len(k) <= 5 else 2
        if limit and abs(len(s) - len(k)) <= limit:
            distance = _edit_distance(s, k)
            if distance <= limit and (best_distance is None or distance < best_distance):
                best, best_distance = known, distance
    return best


def _check_column_names(colnames: Sequence[str], source: str | None) -> None:
    """Raise for a misspelt or missing popmodel column; log the columns that are ignored."""
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    unknown = [c for c in colnames if c not in known and c not in ANALYTIC_COLUMNS]
    near = [(c, _near_miss(c)) for c in unknown]
    near = [(c, k) for c, k in near if k is not None]
    if near:
        parts = []
        for col, k in near:
            kind = "required" if k in REQUIRED_COLUMNS else "optional"
            also = ", which is also present" if k in colnames else ""
            parts.append(f"column {col!r} looks like the {kind} column {k!r}{also}")
        raise CatalogError(
            "; ".join(parts)
            + ". Columns that are not popmodel's are ignored, so a misspelt name would silently "
            "drop its values: rename "
            + (f"it to {near[0][1]!r}" if len(near) == 1 else "each to the popmodel name")
            + " to use it, or to a clearly different name to leave it out"
        )
    missing = [c for c in REQUIRED_COLUMNS if c not in colnames]
    if missing:
        raise CatalogError(
            f"required column(s) {', '.join(map(repr, missing))} missing from the table "
            f"(has {list(colnames)})"
        )
    if unknown:
        logger.warning(
            "%signoring column(s) %s: not popmodel columns (it reads %s)",
            f"catalogue {source!r}: " if source else "",
            ", ".join(map(repr, unknown)),
            ", ".join(c for c in known if c in colnames),
        )


# ------------------------------------------------------------------ column values
def _text_column(name: str, values: np.ndarray) -> np.ndarray:
    """Column ``name`` (``id`` or ``field``) as str; bytes are decoded as UTF-8.

    Raises:
        CatalogError: naming the rows whose bytes are not text (a corrupt file, usually).
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise CatalogError(f"column {name!r} must have one value per row, has shape {arr.shape}")
    if arr.dtype.kind == "S":
        try:
            return np.char.decode(arr, "utf-8")
        except UnicodeDecodeError:
            uniq = np.unique(arr)
            bad = [u for u in uniq if not _decodes(u)]
            rows = np.flatnonzero(np.isin(arr, bad))
            raise CatalogError(
                f"column {name!r} holds bytes that are not text (UTF-8) in {_where(rows, None)}, "
                f"e.g. {bytes(bad[0])!r}: the file looks corrupt"
            ) from None
    if arr.dtype.kind == "O":
        out = []
        for i, v in enumerate(arr):
            if isinstance(v, bytes):
                if not _decodes(v):
                    raise CatalogError(
                        f"column {name!r} holds bytes that are not text (UTF-8) in row {i}, "
                        f"e.g. {v!r}: the file looks corrupt"
                    )
                v = v.decode("utf-8")
            out.append(str(v))
        return np.array(out, dtype=str)
    return arr.astype(str)


def _decodes(value: bytes) -> bool:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError, OverflowError):
        return False
    return True


def _float_column(name: str, values: np.ndarray, sample_ids: np.ndarray) -> np.ndarray:
    """Column ``name`` as float64; numbers stored as text are converted.

    Raises:
        CatalogError: naming the column, the rows and the galaxies of values that are not
            numbers, or a column of another kind (complex, dates).
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise CatalogError(f"column {name!r} must have one value per row, has shape {arr.shape}")
    kind = arr.dtype.kind
    if kind in "fiub":
        return arr.astype(np.float64)
    if kind not in "USO":
        raise CatalogError(f"column {name!r} holds values of type {arr.dtype}, not real numbers")
    try:
        return arr.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        pass
    if kind == "O":
        bad_mask = np.array([not _is_number(v) for v in arr], dtype=bool)
    else:
        uniq = np.unique(arr)
        bad_values = [u for u in uniq if not _is_number(u)]
        bad_mask = np.isin(arr, bad_values)
    rows = np.flatnonzero(bad_mask)
    examples = [v.decode("utf-8", "backslashreplace") if isinstance(v, bytes) else v
                for v in arr[rows[:50]].tolist()]
    examples = list(dict.fromkeys(examples))[:3]
    raise CatalogError(
        f"column {name!r} has values that are not numbers ("
        + ", ".join(repr(v) for v in examples)
        + f") in {_where(rows, sample_ids)}"
    )


def _check_grouped(sample_ids: np.ndarray) -> None:
    """Raise naming the galaxy ids whose rows are not one contiguous block of the table."""
    if sample_ids.size == 0:
        return
    starts = np.flatnonzero(np.r_[True, sample_ids[1:] != sample_ids[:-1]])
    run_ids = sample_ids[starts]
    uniq, first, counts = np.unique(run_ids, return_index=True, return_counts=True)
    if uniq.size == run_ids.size:
        return
    ends = np.r_[starts[1:], sample_ids.size] - 1
    split = uniq[np.argsort(first)][counts[np.argsort(first)] > 1]
    details = []
    for gid in split[:3]:
        k = np.flatnonzero(run_ids == gid)
        blocks = [f"{starts[j]}-{ends[j]}" if ends[j] > starts[j] else f"{starts[j]}"
                  for j in k[:4]]
        more = f" and {k.size - 4} more blocks" if k.size > 4 else ""
        details.append(f"{str(gid)!r} in rows {', '.join(blocks)}{more}")
    raise CatalogError(
        f"the rows of galaxy id(s) {_format_ids(split)} are not contiguous ("
        + "; ".join(details)
        + ", counting rows from 0): two galaxies share the id, or the table is not grouped by "
        "galaxy. The rows of each galaxy must be adjacent; give each galaxy its own id, or, "
        "if they really are one galaxy's samples, group its rows (or pass "
        "allow_interleaved=True)"
    )


# ------------------------------------------------------------------ files
def _read_hdf5(name: str) -> Table:
    import h5py

    with h5py.File(name, "r") as f:
        obj = f.get(_HDF5_PATH)
        if not isinstance(obj, h5py.Dataset):
            found: list[str] = []
            f.visititems(lambda key, o: found.append(key) if isinstance(o, h5py.Dataset) else None)
            held = (
                "it holds no datasets"
                if not found
                else f"its datasets are {', '.join(map(repr, found[:_MAX_IDS_IN_MESSAGE]))}"
                + (f", ... ({len(found)} in total)" if len(found) > _MAX_IDS_IN_MESSAGE else "")
            )
            what = "no dataset" if obj is None else f"a {type(obj).__name__}, not a dataset,"
            raise CatalogFileError(
                f"catalogue file {name!r} has {what} at path {_HDF5_PATH!r} ({held}); popmodel "
                f"reads the long table that PosteriorCatalog.write stores there"
            )
    return Table.read(name, format="hdf5", path=_HDF5_PATH)


def _read_fits(name: str) -> Table:
    table = Table.read(name, format="fits")
    meta = dict(table.meta)
    if _FITS_META_KEY in meta:
        try:
            meta = json.loads(meta[_FITS_META_KEY])
        except (TypeError, ValueError) as exc:
            raise CatalogFileError(
                f"catalogue file {name!r}: header keyword {_FITS_META_KEY} (the metadata) is not "
                f"valid JSON ({exc})"
            ) from exc
        if not isinstance(meta, dict):
            raise CatalogFileError(
                f"catalogue file {name!r}: header keyword {_FITS_META_KEY} (the metadata) is not "
                f"a JSON object"
            )
    table.meta = meta
    return table


def _read_ecsv(name: str) -> Table:
    with open(name, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        last = fh.read(1)
    if last not in (b"\n", b"\r"):
        # astropy writes a final newline; a text file cut short usually ends mid-line, and its
        # last value could still parse (10.53 cut to 10.5), so this is an error, not a guess
        raise CatalogFileError(
            f"catalogue file {name!r} does not end with a newline: it looks truncated (cut in "
            f"the middle of its last line). If it is complete, add a newline at its end"
        )
    return Table.read(name, format="ascii.ecsv")


def _read_parquet(name: str) -> Table:
    return Table.read(name, format="parquet")


_READERS: dict[str, Callable[[str], Table]] = {
    "hdf5": _read_hdf5,
    "fits": _read_fits,
    "ecsv": _read_ecsv,
    "parquet": _read_parquet,
}


def _read_table_file(path: str | os.PathLike, fmt: str) -> Table:
    """The long table in ``path``, or a :class:`CatalogFileError` naming the file and the fault.

    Warnings from the readers (astropy's "File may have been truncated", say) are logged with
    the file name, or go into the error message when reading fails.
    """
    name = os.fspath(path)
    label, article = _FORMAT_NAMES[fmt], _FORMAT_ARTICLES[fmt]
    if not os.path.exists(name):
        raise CatalogFileNotFoundError(f"catalogue file {name!r} does not exist")
    if os.path.isdir(name):
        raise CatalogFileError(f"catalogue {name!r} is a directory, not {article} {label} file")
    if os.path.getsize(name) == 0:
        raise CatalogFileError(f"catalogue file {name!r} is empty (0 bytes)")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            table = _READERS[fmt](name)
        except CatalogError:
            raise
        except Exception as exc:  # h5py, astropy and pyarrow raise many types
            notes = list(dict.fromkeys(str(w.message) for w in caught))
            raise CatalogFileError(
                f"cannot read catalogue file {name!r} as {label}: it is not {article} {label} "
                f"file, or "
                f"it is truncated or corrupt ({type(exc).__name__}: {exc}"
                + (f"; warnings: {'; '.join(notes)}" if notes else "")
                + ")"
            ) from exc
    for w in caught:
        if issubclass(w.category, UserWarning):
            logger.warning("catalogue %r: %s", name, w.message)
        else:  # deprecations and the like: pass them on unchanged
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
    return table


@dataclass(frozen=True)
class PosteriorCatalog:
    """Posterior samples of stellar mass, redshift and (optionally) SFR for each galaxy.

    Samples are stored ragged and flat: the samples of galaxy ``i`` are the slice
    ``offsets[i]:offsets[i + 1]`` of every per-sample array.

    Attributes:
        ids: ``(N,)`` galaxy ids (str).
        fields: ``(N,)`` survey field of each galaxy (str).
        offsets: ``(N + 1,)`` int64 sample offsets, starting at 0 and ending at ``S``.
        log_mass: ``(S,)`` stellar mass samples [log10 Msun].
        z: ``(S,)`` redshift samples.
        log_sfr: ``(S,)`` star-formation-rate samples [log10 Msun/yr], or None.
        log_prior: ``(S,)`` natural log of the interim (SED-fitting) prior density of
            (log10 M, z), per unit log10 M per unit z: the marginal that the mass function
            divides out, or None for a flat interim prior.
        log_prior_sfr: ``(S,)`` natural log of the interim prior density of (log10 M,
            log10 SFR, z), per unit of each: what the sequence's flow divides out, or None
            (then a flat prior when ``log_prior`` is None too; a flow fit refuses a non-flat
            ``log_prior`` without it).
        weight: ``(S,)`` non-negative per-sample weights, or None for equal weights.
        meta: Free-form provenance, written to the file metadata.
        obs_log_mass: ``(N,)`` catalogue point estimate of log10 M that the survey's mass cut
            acted on (column ``log_mass_obs``), or None.
        obs_z: ``(N,)`` catalogue point estimate of z (column ``z_obs``), or None.
        analytic: the closed-form (z, log M) posterior of each galaxy
            (:class:`popmodel.analytic.AnalyticPosteriors`, columns ``pdf_*`` in a file), or
            None. Catalogues built from percentiles carry it; fits integrate such galaxies
            with a deterministic rule instead of their samples.

    Raises:
        CatalogError: If the arrays are inconsistent or contain invalid values.
    """

    ids: np.ndarray
    fields: np.ndarray
    offsets: np.ndarray
    log_mass: np.ndarray
    z: np.ndarray
    log_sfr: np.ndarray | None = None
    log_prior: np.ndarray | None = None
    weight: np.ndarray | None = None
    meta: dict = field(default_factory=dict)
    obs_log_mass: np.ndarray | None = None
    obs_z: np.ndarray | None = None
    log_prior_sfr: np.ndarray | None = None
    analytic: AnalyticPosteriors | None = None

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids)
        fields = np.asarray(self.fields)
        if ids.ndim != 1 or fields.ndim != 1:
            raise CatalogError("columns 'id' and 'field' must be one-dimensional")
        ids = ids.astype(str)
        fields = fields.astype(str)
        n_gal = ids.size
        if fields.size != n_gal:
            raise CatalogError(
                f"column 'field' has {fields.size} entries but there are {n_gal} galaxy ids"
            )
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "fields", fields)
        object.__setattr__(self, "meta", dict(self.meta) if self.meta is not None else {})

        offsets = np.asarray(self.offsets)
        if offsets.ndim != 1 or offsets.size != n_gal + 1:
            raise CatalogError(f"offsets must have shape ({n_gal + 1},), got {offsets.shape}")
        if offsets.size and not np.issubdtype(offsets.dtype, np.integer):
            raise CatalogError(f"offsets must be integers, got dtype {offsets.dtype}")
        offsets = offsets.astype(np.int64)
        object.__setattr__(self, "offsets", offsets)

        for name in _SAMPLE_COLUMNS:
            value = getattr(self, name)
            if value is None:
                if name in REQUIRED_COLUMNS:
                    raise CatalogError(f"required column {name!r} is missing")
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.ndim != 1:
                raise CatalogError(f"column {name!r} must be one-dimensional, got {arr.shape}")
            object.__setattr__(self, name, arr)

        n_total = self.log_mass.size
        if offsets[0] != 0:
            raise CatalogError(f"offsets must start at 0, got {offsets[0]}")
        if offsets[-1] != n_total:
            raise CatalogError(
                f"offsets must end at the number of samples ({n_total}), got {offsets[-1]}"
            )
        counts = np.diff(offsets)
        if np.any(counts < 0):
            raise CatalogError("offsets must be non-decreasing")
        if np.any(counts == 0):
            raise CatalogError(
                f"galaxy id(s) {_format_ids(ids[counts == 0])} have no posterior samples"
            )
        for name in _SAMPLE_COLUMNS:
            arr = getattr(self, name)
            if arr is not None and arr.size != n_total:
                raise CatalogError(
                    f"column {name!r} has {arr.size} samples, expected {n_total} (as 'log_mass')"
                )

        unique, counts_id = np.unique(ids, return_counts=True)
        if unique.size != n_gal:
            raise CatalogError(f"galaxy ids are not unique: {_format_ids(unique[counts_id > 1])}")

        gal = self.galaxy_index
        for name in _SAMPLE_COLUMNS:
            arr = getattr(self, name)
            if arr is None:
                continue
            bad = ~np.isfinite(arr)
            if np.any(bad):
                bad_ids = ids[np.unique(gal[bad])]
                kind = "NaN" if np.isnan(arr[bad]).any() else "infinite"
                raise CatalogError(
                    f"column {name!r} has {kind} (non-finite) samples for galaxy id(s) "
                    f"{_format_ids(bad_ids)}"
                )
        for col, attr in GALAXY_COLUMNS.items():
            value = getattr(self, attr)
            if value is None:
                continue
            arr = np.asarray(value, dtype=np.float64)
            if arr.shape != (n_gal,):
                raise CatalogError(f"column {col!r} must have one value per galaxy ({n_gal})")
            if not np.all(np.isfinite(arr)):
                raise CatalogError(
                    f"column {col!r} is not finite for galaxy id(s) "
                    f"{_format_ids(ids[~np.isfinite(arr)])}"
                )
            object.__setattr__(self, attr, arr)
        if self.analytic is not None and self.analytic.n_galaxies != n_gal:
            raise CatalogError(f"the analytic posteriors describe {self.analytic.n_galaxies} "
                               f"galaxies, the catalogue has {n_gal}")
        if self.weight is not None and n_gal:
            negative = self.weight < 0
            if np.any(negative):
                raise CatalogError(
                    f"column 'weight' has negative weights for galaxy id(s) "
                    f"{_format_ids(ids[np.unique(gal[negative])])}"
                )
            total = np.add.reduceat(self.weight, offsets[:-1])
            if np.any(total <= 0):
                raise CatalogError(
                    f"column 'weight' is zero for all samples of galaxy id(s) "
                    f"{_format_ids(ids[total <= 0])}"
                )

    # ------------------------------------------------------------------ properties
    @property
    def n_galaxies(self) -> int:
        """Number of galaxies ``N``."""
        return int(self.ids.size)

    @property
    def n_samples(self) -> np.ndarray:
        """``(N,)`` int64 number of posterior samples of each galaxy."""
        return np.diff(self.offsets)

    @property
    def galaxy_index(self) -> np.ndarray:
        """``(S,)`` int64 index of the galaxy that each sample belongs to."""
        return np.repeat(np.arange(self.n_galaxies, dtype=np.int64), self.n_samples)

    @property
    def has_sfr(self) -> bool:
        """Whether star-formation-rate samples are present."""
        return self.log_sfr is not None

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_arrays(
        cls,
        ids: Sequence[Any] | np.ndarray,
        fields: Sequence[str] | np.ndarray,
        log_mass: np.ndarray,
        z: np.ndarray,
        *,
        galaxy_index: np.ndarray | None = None,
        sample_ids: Sequence[Any] | np.ndarray | None = None,
        log_sfr: np.ndarray | None = None,
        log_prior: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        meta: Mapping[str, Any] | None = None,
        obs_log_mass: np.ndarray | None = None,
        obs_z: np.ndarray | None = None,
        log_prior_sfr: np.ndarray | None = None,
        analytic: AnalyticPosteriors | None = None,
    ) -> PosteriorCatalog:
        """Build a catalog from flat per-sample arrays in any order.

        Exactly one of ``galaxy_index`` (position in ``ids`` of each sample's galaxy) or
        ``sample_ids`` (galaxy id of each sample) must be given. Samples are grouped by galaxy
        with a stable sort, so the order of samples within a galaxy is kept and the galaxies
        follow the order of ``ids``.

        Args:
            ids: ``(N,)`` galaxy ids.
            fields: ``(N,)`` field of each galaxy.
            log_mass: ``(S,)`` stellar mass samples [log10 Msun].
            z: ``(S,)`` redshift samples.
            galaxy_index: ``(S,)`` integer index into ``ids`` for each sample.
            sample_ids: ``(S,)`` galaxy id of each sample.
            log_sfr: ``(S,)`` SFR samples [log10 Msun/yr].
            log_prior: ``(S,)`` natural-log interim prior density of (log M, z) at each sample.
            weight: ``(S,)`` non-negative sample weights.
            meta: Provenance metadata.
            obs_log_mass, obs_z: ``(N,)`` point estimates the survey's cuts acted on.
            log_prior_sfr: ``(S,)`` natural-log interim prior density of (log M, log SFR, z).
            analytic: ``(N,)`` closed-form posteriors, in the order of ``ids``.

        Returns:
            The catalog.

        Raises:
            CatalogError: If a galaxy has no samples, a sample refers to an unknown galaxy, or
                any other validation fails.
        """
        ids = np.asarray(ids).astype(str)
        if (galaxy_index is None) == (sample_ids is None):
            raise CatalogError("give exactly one of galaxy_index or sample_ids")
        if sample_ids is not None:
            sample_ids = np.asarray(sample_ids).astype(str)
            order = np.argsort(ids, kind="stable")
            pos = np.searchsorted(ids[order], sample_ids)
            pos = np.clip(pos, 0, max(ids.size - 1, 0))
            known = ids.size > 0 and ids[order][pos] == sample_ids
            if ids.size == 0 or not np.all(known):
                unknown = sample_ids if ids.size == 0 else sample_ids[~known]
                raise CatalogError(
                    f"samples refer to unknown galaxy id(s) {_format_ids(np.unique(unknown))}"
                )
            galaxy_index = order[pos]
        galaxy_index = np.asarray(galaxy_index)
        if galaxy_index.size and not np.issubdtype(galaxy_index.dtype, np.integer):
            raise CatalogError(f"galaxy_index must be integers, got dtype {galaxy_index.dtype}")
        galaxy_index = galaxy_index.astype(np.int64)
        if galaxy_index.size and (galaxy_index.min() < 0 or galaxy_index.max() >= ids.size):
            raise CatalogError(f"galaxy_index must lie in [0, {ids.size}) (the number of ids)")
        columns = {"log_mass": log_mass, "z": z, "log_sfr": log_sfr}
        columns.update(log_prior=log_prior, log_prior_sfr=log_prior_sfr, weight=weight)
        for name, value in columns.items():
            if value is not None and np.shape(value) != galaxy_index.shape:
                raise CatalogError(
                    f"column {name!r} has shape {np.shape(value)}, expected {galaxy_index.shape}"
                )
        order = np.argsort(galaxy_index, kind="stable")
        counts = np.bincount(galaxy_index, minlength=ids.size)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if np.any(counts == 0):
            raise CatalogError(
                f"galaxy id(s) {_format_ids(ids[counts == 0])} have no posterior samples"
            )
        sorted_cols = {
            name: None if value is None else np.asarray(value, dtype=np.float64)[order]
            for name, value in columns.items()
        }
        return cls(
            ids=ids,
            fields=np.asarray(fields),
            offsets=offsets,
            meta=dict(meta or {}),
            obs_log_mass=obs_log_mass,
            obs_z=obs_z,
            analytic=analytic,
            **sorted_cols,
        )

    @classmethod
    def from_table(cls, table: Table, *, allow_interleaved: bool = False) -> PosteriorCatalog:
        """Build a catalog from a long table with one row per posterior sample.

        The rows of each galaxy must be contiguous (as :meth:`to_table` and :meth:`write` give
        them): an id whose rows are split by other galaxies' rows is an error, since that is
        how two galaxies that share an id look. Galaxies keep the order of their first row, and
        all samples of each galaxy are kept (never downsampled). Columns that are not popmodel
        columns are ignored, and logged by name; a name close to a popmodel column (``weights``,
        ``logprior``, ``Log_Mass``) is an error, since its values would otherwise be dropped
        without a word. ``table.meta`` is copied into ``meta``.

        Args:
            table: Table with the columns :data:`REQUIRED_COLUMNS` and optionally
                :data:`OPTIONAL_COLUMNS`.
            allow_interleaved: Accept a galaxy's rows anywhere in the table and group them by
                id (e.g. a table stacked chain by chain); then two galaxies that share an id
                (in one field) are merged without a word.

        Returns:
            The catalog.

        Raises:
            CatalogError: If a column is missing, misspelt, masked or not numeric, ``field`` or
                an ``*_obs`` column changes within a galaxy, a galaxy's rows are not contiguous,
                or validation fails; the message names the column, rows and galaxy ids.
        """
        return cls._from_table(table, allow_interleaved=allow_interleaved, source=None)

    @classmethod
    def _from_table(
        cls, table: Table, *, allow_interleaved: bool, source: str | None
    ) -> PosteriorCatalog:
        """:meth:`from_table`, with the file name (``source``) for the log of ignored columns."""
        colnames = [str(c) for c in table.colnames]
        _check_column_names(colnames, source)
        data: dict[str, np.ndarray] = {}
        sample_ids = None  # decoded first, to name the galaxies of faults in other columns
        present = [c for c in ANALYTIC_COLUMNS if c in colnames]
        if present and len(present) != len(ANALYTIC_COLUMNS):
            raise CatalogError(
                "the analytic-posterior columns are incomplete: missing "
                + ", ".join(repr(c) for c in ANALYTIC_COLUMNS if c not in colnames)
                + " (all of " + ", ".join(ANALYTIC_COLUMNS) + " or none)")
        for name in REQUIRED_COLUMNS + OPTIONAL_COLUMNS + tuple(present):
            if name not in colnames:
                continue
            col = table[name]
            mask = getattr(col, "mask", None)
            if mask is not None and np.any(mask):
                rows = np.flatnonzero(np.asarray(mask).reshape(len(col), -1).any(axis=1))
                raise CatalogError(
                    f"column {name!r} has masked (missing) values in {_where(rows, sample_ids)}"
                )
            data[name] = np.asarray(col)
            if name == "id":
                sample_ids = _text_column("id", data["id"])
        sample_fields = _text_column("field", data["field"])
        for name in ("log_mass", "z", *OPTIONAL_COLUMNS, *present):
            if name in data:
                data[name] = _float_column(name, data[name], sample_ids)
        _, first, inverse = np.unique(sample_ids, return_index=True, return_inverse=True)
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        galaxy_index = rank[inverse.ravel()]
        first_rows = first[order]
        ids = sample_ids[first_rows]
        fields = sample_fields[first_rows]
        changed = sample_fields != fields[galaxy_index]
        if np.any(changed):
            raise CatalogError(
                f"column 'field' changes within galaxy id(s) "
                f"{_format_ids(ids[np.unique(galaxy_index[changed])])}"
            )
        per_galaxy = {}
        analytic_cols = {}
        for col, attr in (*GALAXY_COLUMNS.items(), *((c, c) for c in present)):
            if col in data:
                vals = data[col]
                first_vals = vals[first_rows]
                # NaN never equals itself; non-finite values are named by the validation below
                varies = (vals != first_vals[galaxy_index]) & ~(
                    np.isnan(vals) & np.isnan(first_vals[galaxy_index])
                )
                if np.any(varies):
                    raise CatalogError(
                        f"column {col!r} changes within galaxy id(s) "
                        f"{_format_ids(ids[np.unique(galaxy_index[varies])])} (a per-galaxy "
                        f"value, so the same in every row of a galaxy; two galaxies that share "
                        f"an id?)"
                    )
                if col in GALAXY_COLUMNS:
                    per_galaxy[attr] = first_vals
                else:
                    analytic_cols[col] = first_vals
        if analytic_cols:
            try:
                per_galaxy["analytic"] = AnalyticPosteriors.from_columns(analytic_cols)
            except ValueError as exc:
                raise CatalogError(str(exc)) from exc
        if not allow_interleaved:
            _check_grouped(sample_ids)
        return cls.from_arrays(
            ids,
            fields,
            data["log_mass"],
            data["z"],
            **per_galaxy,
            galaxy_index=galaxy_index,
            log_sfr=data.get("log_sfr"),
            log_prior=data.get("log_prior"),
            log_prior_sfr=data.get("log_prior_sfr"),
            weight=data.get("weight"),
            meta=dict(table.meta),
        )

    def to_table(self) -> Table:
        """Return the long table, one row per sample, with ``meta`` in ``table.meta``.

        Returns:
            Table with :data:`REQUIRED_COLUMNS` and the optional columns that are present.
        """
        gal = self.galaxy_index
        columns: dict[str, np.ndarray] = {
            "id": self.ids[gal],
            "field": self.fields[gal],
            "log_mass": self.log_mass,
            "z": self.z,
        }
        for name in OPTIONAL_COLUMNS:
            value = getattr(self, GALAXY_COLUMNS.get(name, name))
            if value is not None:
                columns[name] = value[gal] if name in GALAXY_COLUMNS else value
        if self.analytic is not None:
            for name, value in self.analytic.to_columns().items():
                columns[name] = value[gal]
        return Table(columns, meta=dict(self.meta))

    # ------------------------------------------------------------------ I/O
    @staticmethod
    def _resolve_format(path: str | os.PathLike, format: str | None) -> str:
        """Map an explicit format name or the file extension to a canonical format."""
        if format is not None:
            key = format.lower()
            if key not in _FORMAT_ALIASES:
                raise CatalogError(
                    f"unknown catalog format {format!r}; use one of {sorted(_FORMAT_ALIASES)}"
                )
            return _FORMAT_ALIASES[key]
        ext = os.path.splitext(os.fspath(path))[1].lower()
        if ext not in _EXTENSIONS:
            raise CatalogError(
                f"cannot infer the catalog format from extension {ext!r} of {os.fspath(path)!r};"
                f" use one of {sorted(_EXTENSIONS)} or pass format="
            )
        return _EXTENSIONS[ext]

    @classmethod
    def read(
        cls, path: str | os.PathLike, format: str | None = None, *, allow_interleaved: bool = False,
        **kwargs: Any,
    ) -> PosteriorCatalog:
        """Read a posterior catalogue: the long table :meth:`write` writes, or any layout that
        :func:`popmodel.readers.read_posteriors` reads (per-galaxy vector columns, a collated
        chains file, a PROVABGS-like sample cube, a qp ensemble), detected from the file.

        Args:
            path: File path; the extension (.h5/.hdf5, .fits/.fit, .ecsv, .parquet) selects the
                file format of a long table unless ``format`` is given.
            format: A file format of the long table ("hdf5", "fits", "ecsv", "parquet"), or a
                layout ("long", "wide", "chains", "provabgs", "qp", "auto") for
                :func:`popmodel.readers.read_posteriors`.
            allow_interleaved: As in :meth:`from_table`.
            **kwargs: ``columns``, ``hdf5_path``, ``field`` and the other options of
                :func:`popmodel.readers.read_posteriors`.

        Returns:
            The catalog.

        Raises:
            CatalogFileNotFoundError: If there is no file at ``path``.
            CatalogFileError: If the file cannot be read in its format (not that format,
                truncated or corrupt, or an HDF5 file without the dataset ``catalog``).
            CatalogError: For an unknown format or invalid content, as in :meth:`from_table`;
                every message names the file.
        """
        name = os.fspath(path)
        if not os.path.exists(name):
            raise CatalogFileNotFoundError(f"catalogue file {name!r} does not exist")
        layouts = ("auto", "long", "wide", "chains", "provabgs", "qp")
        if kwargs or (format is not None and format.lower() in layouts) or format is None:
            from popmodel.readers import detect_format, read_posteriors

            layout = format.lower() if format is not None and format.lower() in layouts else None
            if layout in (None, "auto") and not kwargs:
                try:
                    layout = detect_format(name)
                except CatalogFileError:  # unreadable: the long-table reader says why
                    layout = None
            if kwargs or layout not in (None, "long"):
                return read_posteriors(path, format=layout, allow_interleaved=allow_interleaved,
                                       **kwargs)
            format = None
        fmt = cls._resolve_format(path, format)
        table = _read_table_file(name, fmt)
        try:
            return cls._from_table(table, allow_interleaved=allow_interleaved, source=name)
        except CatalogError as exc:
            raise CatalogError(f"catalogue {name!r}: {exc}") from exc

    def write(
        self, path: str | os.PathLike, format: str | None = None, overwrite: bool = False
    ) -> None:
        """Write the catalog as a long table, with ``meta`` in the file metadata.

        HDF5 (dataset "catalog", metadata serialised), ECSV and parquet keep ``meta`` as YAML;
        FITS keeps it as one JSON string in header keyword ``PMMETA`` (tuples come back as
        lists).

        Args:
            path: File path; the extension selects the format unless ``format`` is given.
            format: One of "hdf5", "fits", "ecsv", "parquet".
            overwrite: Replace an existing file.

        Raises:
            CatalogError: For an unknown format.
        """
        fmt = self._resolve_format(path, format)
        table = self.to_table()
        if fmt == "hdf5":
            table.write(
                path, format="hdf5", path=_HDF5_PATH, serialize_meta=True, overwrite=overwrite
            )
        elif fmt == "fits":
            table.meta = {_FITS_META_KEY: json_dumps(self.meta, max_array_size=None)}
            table.write(path, format="fits", overwrite=overwrite)
        elif fmt == "ecsv":
            table.write(path, format="ascii.ecsv", overwrite=overwrite)
        else:
            table.write(path, format="parquet", overwrite=overwrite)

    # ------------------------------------------------------------------ transformations
    def subset(self, galaxies: np.ndarray | Sequence[int] | Sequence[bool]) -> PosteriorCatalog:
        """Select galaxies (boolean mask of length N, or integer indices), keeping their samples.

        Args:
            galaxies: ``(N,)`` boolean mask or integer indices (in the order wanted).

        Returns:
            The sub-catalog, with the same ``meta``.
        """
        sel = np.asarray(galaxies)
        if sel.dtype == bool:
            if sel.shape != (self.n_galaxies,):
                raise CatalogError(
                    f"boolean galaxy mask has shape {sel.shape}, expected ({self.n_galaxies},)"
                )
            idx = np.flatnonzero(sel)
        else:
            idx = np.arange(self.n_galaxies)[sel.astype(np.int64)]
        counts = self.n_samples[idx]
        new_offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        sample_idx = np.repeat(self.offsets[idx] - new_offsets[:-1], counts) + np.arange(
            new_offsets[-1]
        )

        def take(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[sample_idx]

        return PosteriorCatalog(
            ids=self.ids[idx],
            fields=self.fields[idx],
            offsets=new_offsets,
            log_mass=self.log_mass[sample_idx],
            z=self.z[sample_idx],
            log_sfr=take(self.log_sfr),
            log_prior=take(self.log_prior),
            log_prior_sfr=take(self.log_prior_sfr),
            weight=take(self.weight),
            meta=dict(self.meta),
            obs_log_mass=None if self.obs_log_mass is None else self.obs_log_mass[idx],
            obs_z=None if self.obs_z is None else self.obs_z[idx],
            analytic=None if self.analytic is None else self.analytic.take(idx),
        )

    def sample_slice(self, start: int, stop: int) -> PosteriorCatalog:
        """Samples ``start .. stop - 1`` (in stored order) of every galaxy, with all their
        per-sample columns: e.g. two independent halves of each posterior.

        Raises:
            CatalogError: naming the first galaxy with fewer than ``stop`` samples.
        """
        if not 0 <= start < stop:
            raise CatalogError(f"need 0 <= start < stop, got start={start}, stop={stop}")
        short = np.flatnonzero(self.n_samples < stop)
        if short.size:
            i = short[0]
            raise CatalogError(f"galaxy {str(self.ids[i])!r} has {self.n_samples[i]} samples, fewer "
                               f"than stop={stop} ({short.size} galaxies in all)")
        pos = np.arange(self.log_mass.size) - self.offsets[:-1][self.galaxy_index]
        return self.take_samples((pos >= start) & (pos < stop))

    def take_samples(self, keep: np.ndarray) -> PosteriorCatalog:
        """The samples where ``keep`` (a ``(n_samples_total,)`` bool mask) is True, with all
        their per-sample columns; every galaxy stays, with its point estimates.

        Raises:
            CatalogError: for a mask of the wrong shape, or naming the first galaxy that would
                keep no sample.
        """
        keep = np.asarray(keep)
        if keep.dtype != bool or keep.shape != self.log_mass.shape:
            raise CatalogError(f"sample mask must be a bool array of shape {self.log_mass.shape}, "
                               f"got {keep.dtype} {keep.shape}")
        counts = np.add.reduceat(keep.astype(np.int64), self.offsets[:-1]) if self.n_galaxies else \
            np.zeros(0, np.int64)
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            raise CatalogError(f"galaxy {str(self.ids[empty[0]])!r} would keep no sample "
                               f"({empty.size} galaxies in all)")

        def take(arr: np.ndarray | None) -> np.ndarray | None:
            return None if arr is None else arr[keep]

        return PosteriorCatalog(
            ids=self.ids, fields=self.fields,
            offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            log_mass=self.log_mass[keep], z=self.z[keep],
            log_sfr=take(self.log_sfr), log_prior=take(self.log_prior), weight=take(self.weight),
            log_prior_sfr=take(self.log_prior_sfr),
            meta=dict(self.meta), obs_log_mass=self.obs_log_mass, obs_z=self.obs_z,
            analytic=self.analytic,
        )

    def with_interim_prior(self, prior: InterimPrior) -> PosteriorCatalog:
        """Return a copy with the prior's log density at every sample: ``log_prior`` its
        (log M, z) marginal and, when the catalogue has SFR samples, ``log_prior_sfr`` its
        (log M, log SFR, z) density.

        Args:
            prior: The interim prior used by the SED fitter (a :class:`KDEPrior` over three
                dimensions gives its (log M, z) marginal for ``log_prior``).

        Returns:
            The catalog with ``log_prior`` (and ``log_prior_sfr``) filled in.
        """
        def full(x: np.ndarray) -> np.ndarray:
            return np.array(np.broadcast_to(np.asarray(x, dtype=np.float64), self.z.shape))

        two_d = prior.marginal() if isinstance(prior, KDEPrior) and prior.has_sfr else prior
        log_prior = full(two_d.log_density(self.log_mass, self.z))
        log_prior_sfr = None
        if self.has_sfr and _has_sfr_density(prior):
            log_prior_sfr = full(prior.log_density(self.log_mass, self.z, self.log_sfr))
        return dataclasses.replace(self, log_prior=log_prior, log_prior_sfr=log_prior_sfr)

    def log_prior_sfr_or_zero(self) -> np.ndarray:
        """The (log M, log SFR, z) interim prior density the flow divides out.

        ``log_prior_sfr`` when present; zeros when the prior is flat (no prior columns, or a
        ``log_prior`` that is constant within every galaxy, which is flat for that galaxy).

        Raises:
            CatalogError: a non-flat (log M, z) ``log_prior`` without ``log_prior_sfr``: the
                three-dimensional density cannot be recovered from its marginal.
        """
        if self.log_prior_sfr is not None:
            return self.log_prior_sfr
        if self.log_prior is None or not np.any(self.varying_log_prior()):
            return np.zeros_like(self.z)
        bad = self.ids[self.varying_log_prior()]
        raise CatalogError(
            f"the catalogue's interim prior varies within {bad.size} galaxies (e.g. "
            f"{_format_ids(bad)}) but it has no 'log_prior_sfr' column: the flow divides out "
            "the prior density of (log M, log SFR, z), which its (log M, z) marginal "
            "'log_prior' does not give; add 'log_prior_sfr' (the chains file's lnprior_sfr)")

    def varying_log_prior(self) -> np.ndarray:
        """``(N,)`` True for galaxies whose ``log_prior`` is not constant over their samples
        (all False without a ``log_prior`` column). A constant prior is flat for its galaxy."""
        if self.log_prior is None or self.n_galaxies == 0:
            return np.zeros(self.n_galaxies, bool)
        starts = self.offsets[:-1]
        return np.maximum.reduceat(self.log_prior, starts) != np.minimum.reduceat(self.log_prior, starts)

    def log_prior_or_zero(self) -> np.ndarray:
        """Return ``log_prior``, or zeros when absent (a flat prior drops out up to a constant).

        Returns:
            ``(S,)`` natural-log interim prior density.
        """
        if self.log_prior is None:
            return np.zeros_like(self.z)
        return self.log_prior

    def normalized_log_weights(self) -> np.ndarray:
        """Return ``ln(w_is / sum_s w_is)`` for every sample, normalised within each galaxy.

        Uses a per-galaxy log-sum-exp with ``np.maximum.reduceat``; equal weights give
        ``-ln S_i``. Zero weights give ``-inf``.

        Returns:
            ``(S,)`` normalised natural-log weights.
        """
        if self.n_galaxies == 0:
            return np.zeros(0)
        gal = self.galaxy_index
        starts = self.offsets[:-1]
        if self.weight is None:
            return -np.log(self.n_samples.astype(np.float64))[gal]
        with np.errstate(divide="ignore"):
            log_w = np.log(self.weight)
        peak = np.maximum.reduceat(log_w, starts)
        log_sum = peak + np.log(np.add.reduceat(np.exp(log_w - peak[gal]), starts))
        return log_w - log_sum[gal]

    def effective_sample_size(self) -> np.ndarray:
        """Return the Kish effective sample size ``(sum w)^2 / sum w^2`` of each galaxy.

        Returns:
            ``(N,)`` float ESS; the sample count ``S_i`` when there are no weights.
        """
        if self.weight is None or self.n_galaxies == 0:
            return self.n_samples.astype(np.float64)
        starts = self.offsets[:-1]
        w = self.weight
        return np.add.reduceat(w, starts) ** 2 / np.add.reduceat(w * w, starts)

    def _weighted_median(self, values: np.ndarray) -> np.ndarray:
        """Per-galaxy weighted median, interpolating between sample mid-points of the CDF.

        With equal weights this equals ``np.median`` of each galaxy's samples.
        """
        gal = self.galaxy_index
        w = np.ones_like(values) if self.weight is None else self.weight
        keep = w > 0
        values, gal, w = values[keep], gal[keep], w[keep]
        order = np.lexsort((values, gal))
        x, g, w = values[order], gal[order], w[order]
        counts = np.bincount(g, minlength=self.n_galaxies)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        total = np.add.reduceat(w, starts)
        cum = np.cumsum(w)
        cum_before = (cum - w) - np.repeat(cum[starts] - w[starts], counts)
        p = (cum_before + 0.5 * w) / total[g]  # mid-point CDF, strictly increasing per galaxy
        j = np.searchsorted(g + p, np.arange(self.n_galaxies) + 0.5, side="left")
        prev = np.maximum(j - 1, starts)
        interp = (j > starts) & (p[j] > 0.5)
        frac = np.where(interp, (0.5 - p[prev]) / np.where(interp, p[j] - p[prev], 1.0), 1.0)
        return np.where(interp, x[prev] + frac * (x[j] - x[prev]), x[j])

    def point_estimates(self) -> PosteriorCatalog:
        """Collapse each posterior to one sample: the catalogue point estimates.

        These are ``obs_log_mass`` / ``obs_z`` when present, else the weighted median of each
        quantity.

        ``log_prior`` and ``weight`` are dropped; ``meta["point_estimates"]`` records this.

        Returns:
            A catalog with exactly one sample per galaxy.
        """
        n = self.n_galaxies
        meta = dict(self.meta)
        meta["point_estimates"] = (
            "one sample per galaxy: per-galaxy weighted median of log_mass, z"
            + (", log_sfr" if self.has_sfr else "")
            + " (taken separately); log_prior and weight dropped"
        )
        return PosteriorCatalog(
            ids=self.ids.copy(),
            fields=self.fields.copy(),
            offsets=np.arange(n + 1, dtype=np.int64),
            log_mass=(
                self.obs_log_mass.copy()
                if self.obs_log_mass is not None
                else (self._weighted_median(self.log_mass) if n else np.zeros(0))
            ),
            z=(
                self.obs_z.copy()
                if self.obs_z is not None
                else (self._weighted_median(self.z) if n else np.zeros(0))
            ),
            log_sfr=(
                None
                if not self.has_sfr
                else (self._weighted_median(self.log_sfr) if n else np.zeros(0))
            ),
            meta=meta,
        )


def _has_sfr_density(prior: Any) -> bool:
    """Whether a prior gives a (log M, log SFR, z) density: a KDE fitted with SFR, a callable
    that takes three arguments, or any other :class:`InterimPrior` (its ``log_density``
    takes ``log_sfr``). A prior of (log M, z) only leaves ``log_prior_sfr`` unset: the mass
    function needs no more, and the flow then refuses a prior that varies."""
    if isinstance(prior, KDEPrior):
        return prior.has_sfr
    if isinstance(prior, CallablePrior):
        import inspect

        try:
            params = inspect.signature(prior.fn).parameters.values()
        except (TypeError, ValueError):
            return True
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return len(positional) >= 3 or any(p.kind == p.VAR_POSITIONAL for p in params)
    return True


# ---------------------------------------------------------------------- interim priors
@runtime_checkable
class InterimPrior(Protocol):
    """Interim prior of the SED fitter, as a natural-log density.

    The density is per unit log10 M per unit z (and per unit log10 SFR when SFR is given).
    """

    def log_density(
        self, log_mass: np.ndarray, z: np.ndarray, log_sfr: np.ndarray | None = None
    ) -> np.ndarray:
        """Return the natural-log prior density at each point."""
        ...


@dataclass(frozen=True)
class FlatPrior:
    """Flat interim prior: ``log_density`` is zero everywhere.

    Any constant density drops out of the population likelihood (it only shifts the
    log-likelihood by a constant), so its normalisation is irrelevant.
    """

    def log_density(
        self, log_mass: np.ndarray, z: np.ndarray, log_sfr: np.ndarray | None = None
    ) -> np.ndarray:
        """Return zeros with the broadcast shape of the inputs.

        Args:
            log_mass: Stellar mass [log10 Msun].
            z: Redshift.
            log_sfr: SFR [log10 Msun/yr], optional.

        Returns:
            Zeros.
        """
        arrays = [log_mass, z] if log_sfr is None else [log_mass, z, log_sfr]
        return np.zeros(np.broadcast_shapes(*(np.shape(a) for a in arrays)))


@dataclass(frozen=True)
class CallablePrior:
    """Interim prior given by a function returning the natural-log density.

    Attributes:
        fn: Called as ``fn(log_mass, z)``, or ``fn(log_mass, z, log_sfr)`` when SFR is given.
    """

    fn: Callable[..., np.ndarray]

    def log_density(
        self, log_mass: np.ndarray, z: np.ndarray, log_sfr: np.ndarray | None = None
    ) -> np.ndarray:
        """Evaluate ``fn``.

        Args:
            log_mass: Stellar mass [log10 Msun].
            z: Redshift.
            log_sfr: SFR [log10 Msun/yr], optional.

        Returns:
            Natural-log density, as float64.
        """
        if log_sfr is None:
            out = self.fn(log_mass, z)
            shape = np.broadcast_shapes(np.shape(log_mass), np.shape(z))
        else:
            out = self.fn(log_mass, z, log_sfr)
            shape = np.broadcast_shapes(np.shape(log_mass), np.shape(z), np.shape(log_sfr))
        return np.array(np.broadcast_to(np.asarray(out, dtype=np.float64), shape))


@dataclass
class KDEPrior:
    """Interim prior estimated by a Gaussian KDE of draws from the SED fitter's prior.

    Attributes:
        kde: The fitted :class:`scipy.stats.gaussian_kde` over (log10 M, z[, log10 SFR]).
        has_sfr: Whether the KDE includes log10 SFR as a third dimension.
    """

    kde: gaussian_kde
    has_sfr: bool = False

    @classmethod
    def from_draws(
        cls,
        log_mass: np.ndarray,
        z: np.ndarray,
        log_sfr: np.ndarray | None = None,
        bw_method: str | float | Callable | None = None,
    ) -> KDEPrior:
        """Fit the KDE to prior draws.

        Args:
            log_mass: ``(K,)`` prior draws of stellar mass [log10 Msun].
            z: ``(K,)`` prior draws of redshift.
            log_sfr: ``(K,)`` prior draws of SFR [log10 Msun/yr], optional.
            bw_method: Passed to :class:`scipy.stats.gaussian_kde`.

        Returns:
            The prior.
        """
        from scipy.stats import gaussian_kde

        cols = [log_mass, z] if log_sfr is None else [log_mass, z, log_sfr]
        data = np.vstack([np.asarray(c, dtype=np.float64).ravel() for c in cols])
        if not np.all(np.isfinite(data)):
            names = ("log_mass", "z", "log_sfr")
            bad = [names[k] for k in range(data.shape[0]) if not np.all(np.isfinite(data[k]))]
            raise CatalogError(f"prior draws have non-finite values in column(s) {bad}")
        return cls(kde=gaussian_kde(data, bw_method=bw_method), has_sfr=log_sfr is not None)

    def marginal(self) -> KDEPrior:
        """The (log M, z) marginal of a three-dimensional prior (itself for a 2-D one)."""
        if not self.has_sfr:
            return self
        return KDEPrior(kde=self.kde.marginal([0, 1]), has_sfr=False)

    def log_density(
        self, log_mass: np.ndarray, z: np.ndarray, log_sfr: np.ndarray | None = None
    ) -> np.ndarray:
        """Evaluate the KDE log-density per unit log10 M per unit z (per unit log10 SFR).

        Args:
            log_mass: Stellar mass [log10 Msun].
            z: Redshift.
            log_sfr: SFR [log10 Msun/yr]; required exactly when the KDE includes SFR.

        Returns:
            Natural-log density with the broadcast shape of the inputs.
        """
        if self.has_sfr != (log_sfr is not None):
            raise CatalogError(
                "KDEPrior was fitted "
                + ("with" if self.has_sfr else "without")
                + " log_sfr; pass log_sfr accordingly"
            )
        cols = [log_mass, z] if log_sfr is None else [log_mass, z, log_sfr]
        arrays = np.broadcast_arrays(*(np.asarray(c, dtype=np.float64) for c in cols))
        # (the KDE is over per-dex quantities, so its density is per dex as required)
        shape = arrays[0].shape
        points = np.vstack([a.ravel() for a in arrays])
        return self.kde.logpdf(points).reshape(shape)
