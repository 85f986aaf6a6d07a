r"""Flow training from a posterior catalogue on disk, read in chunks of galaxies.

A :class:`FlowStream` stands in for :class:`~popmodel.flow.data.FlowData` in
:func:`~popmodel.flow.train.train_flow`: the objective is the same, but no more than a chunk of
galaxies' samples is in memory at a time, so catalogues larger than memory can be used.

**Files.** The long table written by :meth:`popmodel.catalog.PosteriorCatalog.write`, one row per
posterior sample, with each galaxy's rows contiguous (as ``write`` leaves them): HDF5 (dataset
``catalog``, read by row ranges with h5py) or Parquet (read by row groups with pyarrow; a
chunk read loads the row groups that overlap it, so memory is bounded by the chunk plus two row
groups: pyarrow writes at most 2^20 rows per group by default).

**Opening** makes two passes over the file in blocks of rows: the first finds where each
galaxy's rows start (and checks that ids are unique and contiguous, fields constant), the second
reads every chunk as the trainer will (so that bad values fail here, naming the galaxy), and
accumulates the standardisation (the same per-galaxy-weighted moments as
:meth:`FlowData.standardization`), the data's range and each galaxy's catalogue redshift and
mass. What stays in memory is per galaxy (offsets, field, id, reference values: about 40 bytes
plus the id), not per sample.

**Minibatches.** Galaxies are grouped in chunks of ``chunk_galaxies`` consecutive galaxies. In
each epoch the chunks are visited in a seeded random order; the training galaxies of each chunk
(repeats of a bootstrap included) are permuted by one seeded generator that runs through the
epoch; their concatenation is cut into minibatches of ``batch_size`` (a batch can straddle two
chunks; samples are padded to the widest galaxy of the batch). With a single chunk this is
exactly the in-memory order of :func:`~popmodel.flow.train.train_flow`. Validation reads the
chunks that hold validation galaxies, in file order. Shuffling within chunks only is the usual
compromise of out-of-core training: galaxies that are neighbours in the file share minibatches
more often than in a full shuffle, which does not bias the gradient (every training galaxy is
used once per epoch) but correlates consecutive steps if the file is sorted (by field, say);
use chunks much larger than the batch, or shuffle the file once when writing it.

Every process of a distributed run reads every chunk and uses its share of each batch: reading
costs about a microsecond per sample against tens of microseconds of flow training per sample
on a CPU core.

Redshift jitter (``z_jitter`` > 0, see :mod:`popmodel.flow.data`) is drawn per chunk from
``(seed, first galaxy of the chunk)``: the same in every epoch, but not the same draws as for
the whole catalogue in memory.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from popmodel.catalog import GALAXY_COLUMNS, CatalogError, PosteriorCatalog
from popmodel.flow.data import FlowData, flow_data_from_catalog
from popmodel.rows import HDF5Rows, ParquetRows

if TYPE_CHECKING:
    from popmodel.flow.train import _Batch, _Objective

__all__ = ["FlowStream"]

_SAMPLE = ("log_mass", "z", "log_sfr", "log_prior", "log_prior_sfr", "weight")


def _text(a: np.ndarray) -> np.ndarray:
    """Bytes or str array as str."""
    a = np.asarray(a)
    return np.char.decode(a, "utf-8") if a.dtype.kind == "S" else a.astype(str)


class FlowStream:
    """A posterior catalogue on disk, served to the flow trainer in chunks of galaxies.

    Args:
        path: HDF5 (``.h5``/``.hdf5``) or Parquet (``.parquet``) long table as written by
            :meth:`~popmodel.catalog.PosteriorCatalog.write`.
        chunk_galaxies: Galaxies per chunk (the unit of reading and of shuffling).
        max_samples: Keep at most this many (evenly spaced) samples per galaxy (None: all).
        z_jitter: Redshift jitter of galaxies with exact redshifts (:mod:`popmodel.flow.data`).
        seed: Seed of the jitter.
        format: ``"hdf5"`` or ``"parquet"`` (None: from the extension).
        block_rows: Rows per block of the opening passes.

    Raises:
        CatalogError: For a missing column, non-contiguous or repeated galaxy ids, a field or
            per-galaxy column that changes within a galaxy, or invalid values (naming the
            galaxies).

    Example:
        >>> stream = FlowStream("catalog.h5", chunk_galaxies=4096)  # doctest: +SKIP
        >>> flow = build_flow(FlowConfig(), stream, seed=0)  # doctest: +SKIP
        >>> train_flow(flow, stream, TrainConfig())  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        chunk_galaxies: int = 4096,
        max_samples: int | None = None,
        z_jitter: float = 0.0,
        seed: int = 0,
        format: str | None = None,
        block_rows: int = 1_000_000,
    ) -> None:
        if chunk_galaxies < 1 or block_rows < 1:
            raise ValueError("chunk_galaxies and block_rows must be positive")
        if max_samples is not None and max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        if z_jitter < 0:
            raise ValueError(f"z_jitter must be >= 0, got {z_jitter}")
        self.path = Path(path)
        fmt = PosteriorCatalog._resolve_format(self.path, format)
        if fmt not in ("hdf5", "parquet"):
            raise CatalogError(f"streaming reads HDF5 or Parquet catalogues, not {fmt!r} ({self.path})")
        self.format = fmt
        self.chunk_galaxies = int(chunk_galaxies)
        self.max_samples = max_samples
        self.z_jitter = float(z_jitter)
        self.seed = int(seed)
        self._memory: FlowData | None = None
        rows = self._rows()
        missing = [c for c in ("id", "field", "log_mass", "z", "log_sfr") if c not in rows.columns]
        if missing:
            raise CatalogError(f"column(s) {missing} missing from {self.path} (has {rows.columns})")
        self._columns = [c for c in (*_SAMPLE, *GALAXY_COLUMNS) if c in rows.columns]
        self._index(rows, int(block_rows))
        self._statistics()

    @classmethod
    def from_flow_data(cls, data: FlowData, chunk_galaxies: int = 4096) -> FlowStream:
        """The chunked minibatch order over in-memory data (for comparisons and tests)."""
        self = cls.__new__(cls)
        self.path, self.format = None, "memory"
        self.chunk_galaxies = int(chunk_galaxies)
        self.max_samples, self.z_jitter, self.seed = None, 0.0, 0
        self._memory = data
        n = data.n_galaxies
        self.ids = np.asarray(data.ids)
        self.field_names = list(data.field_names)
        self.field_index = np.asarray(data.field_index)
        self.offsets = np.concatenate([[0], np.cumsum(data.n_samples)]).astype(np.int64)
        self.chunks = [(g, min(g + self.chunk_galaxies, n)) for g in range(0, n, self.chunk_galaxies)]
        self._statistics()
        return self

    # ------------------------------------------------------------------ opening passes
    def _rows(self) -> HDF5Rows | ParquetRows:
        return HDF5Rows(self.path) if self.format == "hdf5" else ParquetRows(self.path)

    def _index(self, rows: HDF5Rows | ParquetRows, block: int) -> None:
        """Pass 1: galaxy boundaries, ids and fields, in blocks of rows."""
        ids: list[np.ndarray] = []
        fields: list[np.ndarray] = []
        starts: list[np.ndarray] = []
        last_id, last_field = None, None
        for a in range(0, rows.n_rows, block):
            b = min(a + block, rows.n_rows)
            cols = rows.read(a, b, ["id", "field"])
            rid, rfield = np.asarray(cols["id"]), np.asarray(cols["field"])
            new = np.ones(b - a, dtype=bool)
            new[1:] = rid[1:] != rid[:-1]
            if last_id is not None and rid[0] == last_id:
                new[0] = False  # the previous block's last galaxy goes on
            first = np.flatnonzero(new)
            head = int(first[0]) if first.size else b - a  # rows of the previous galaxy
            if head and np.any(rfield[:head] != last_field):
                raise CatalogError(f"column 'field' changes within galaxy id {_text(rid[:1])[0]!r}")
            varies = rfield[head:] != rfield[first][np.cumsum(new)[head:] - 1]
            if np.any(varies):
                raise CatalogError(f"column 'field' changes within galaxy id(s) "
                                   f"{sorted(set(_text(rid[head:][varies]).tolist()))[:10]}")
            ids.append(rid[first])
            fields.append(rfield[first])
            starts.append(first + a)
            last_id, last_field = rid[-1], rfield[-1]
        if not ids:
            raise CatalogError(f"{self.path} has no rows")
        self.ids = np.concatenate(ids)
        uniq, counts = np.unique(self.ids, return_counts=True)
        if uniq.size != self.ids.size:
            raise CatalogError(
                f"galaxy id(s) {sorted(_text(uniq[counts > 1]).tolist())[:10]} appear in more than one run "
                "of rows: streaming needs each galaxy's samples contiguous (as PosteriorCatalog.write "
                "leaves them)"
            )
        gal_fields = _text(np.concatenate(fields))
        self.field_names = sorted(set(gal_fields.tolist()))
        self.field_index = np.searchsorted(np.array(self.field_names), gal_fields).astype(np.int64)
        self.offsets = np.concatenate([np.concatenate(starts), [rows.n_rows]]).astype(np.int64)
        n = self.ids.size
        self.chunks = [(g, min(g + self.chunk_galaxies, n)) for g in range(0, n, self.chunk_galaxies)]

    def _statistics(self) -> None:
        """Pass 2: read every chunk; standardisation moments, ranges, reference values."""
        n = self.n_galaxies
        self.z_ref = np.empty(n)
        self.log_mass_ref = np.empty(n)
        self.ess = np.empty(n)
        self.n_samples = np.empty(n, dtype=np.int64)
        s1 = np.zeros(3)
        s2 = np.zeros(3)
        lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
        width = 0
        for g0, g1 in self.chunks:
            d = self.read(g0, g1)
            w = np.exp(d.log_weight)
            s1 += np.einsum("ns,nsk->k", w, d.x)
            s2 += np.einsum("ns,nsk->k", w, d.x * d.x)
            lo = np.minimum(lo, d.x.min(axis=(0, 1)))
            hi = np.maximum(hi, d.x.max(axis=(0, 1)))
            self.z_ref[g0:g1] = d.z_ref
            self.log_mass_ref[g0:g1] = d.log_mass_ref
            self.ess[g0:g1] = d.ess
            self.n_samples[g0:g1] = d.n_samples
            width = max(width, d.x.shape[1])
        self._mean = s1 / n
        self._var = np.maximum(s2 / n - self._mean**2, 0.0)
        self.x_min, self.x_max = lo, hi
        self.max_samples_per_galaxy = int(width)

    # ------------------------------------------------------------------ FlowData-like
    @property
    def n_galaxies(self) -> int:
        """Number of galaxies."""
        return int(self.ids.size)

    def standardization(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coordinate mean and standard deviation, each galaxy weighted equally (as
        :meth:`FlowData.standardization`, from one pass of sums)."""
        return self._mean.copy(), np.sqrt(np.maximum(self._var, 1e-6))

    def summary(self) -> dict:
        """Counts and effective-sample-size statistics (for results files)."""
        return {
            "n_galaxies": self.n_galaxies,
            "samples_per_galaxy": {"min": int(self.n_samples.min()), "max": int(self.n_samples.max())},
            "ess_percentiles_1_16_50": [float(v) for v in np.percentile(self.ess, [1, 16, 50])],
            "fields": {name: int(np.sum(self.field_index == k)) for k, name in enumerate(self.field_names)},
            "stream": {"path": None if self.path is None else str(self.path), "format": self.format,
                       "chunk_galaxies": self.chunk_galaxies, "n_chunks": len(self.chunks)},
        }

    def fingerprint(self) -> str:
        """Hash of the layout and the moments (what a checkpoint must match)."""
        h = hashlib.sha1()
        for a in (self.offsets, self.field_index, self._mean, self._var, self.n_samples):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(repr((self.chunk_galaxies, self.max_samples, self.z_jitter, self.seed)).encode())
        return h.hexdigest()[:16]

    def read(self, g0: int, g1: int) -> FlowData:
        """Galaxies ``g0 .. g1 - 1`` as :class:`FlowData` (fields indexed globally).

        Raises:
            CatalogError: For invalid values (naming the galaxies).
        """
        if self._memory is not None:
            return self._memory.subset(np.arange(g0, g1))
        a, b = int(self.offsets[g0]), int(self.offsets[g1])
        cols = self._rows().read(a, b, ["id", *self._columns])
        rid = np.asarray(cols["id"])
        gal = np.repeat(np.arange(g1 - g0), np.diff(self.offsets[g0 : g1 + 1]))
        if np.any(rid != self.ids[g0:g1][gal]):
            raise CatalogError(f"{self.path} changed since it was opened (rows {a}-{b} hold other galaxies)")
        per_gal = {}
        first = self.offsets[g0:g1] - a
        for col, attr in GALAXY_COLUMNS.items():
            if col in cols:
                v = np.asarray(cols[col], dtype=np.float64)
                varies = v != v[first][gal]
                if np.any(varies):
                    raise CatalogError(f"column {col!r} changes within galaxy id(s) "
                                       f"{sorted(set(_text(rid[varies]).tolist()))[:10]}")
                per_gal[attr] = v[first]
        names = np.array(self.field_names)
        cat = PosteriorCatalog(
            ids=_text(self.ids[g0:g1]), fields=names[self.field_index[g0:g1]],
            offsets=self.offsets[g0 : g1 + 1] - a,
            **{c: (np.asarray(cols[c], dtype=np.float64) if c in cols else None) for c in _SAMPLE},
            **per_gal,
        )
        d = flow_data_from_catalog(cat, max_samples=self.max_samples, z_jitter=self.z_jitter,
                                   seed=self.seed * 1_000_003 + g0)
        d.field_index = self.field_index[g0:g1].copy()
        d.field_names = list(self.field_names)
        return d

    def source(self, objective: _Objective) -> _StreamSource:
        """The minibatch source of :func:`~popmodel.flow.train.train_flow`."""
        return _StreamSource(self, objective.device)

    def chunk_of(self, idx: np.ndarray) -> np.ndarray:
        """Chunk number of each galaxy index."""
        starts = np.array([c[0] for c in self.chunks])
        return np.searchsorted(starts, np.asarray(idx), side="right") - 1


def _pad_cat(a: _Batch, b: _Batch) -> _Batch:
    """Concatenate two batches, padding samples to the wider one."""
    from popmodel.flow.train import _Batch

    s = max(a.x.shape[1], b.x.shape[1])

    def pad(t: _Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        k = s - t.x.shape[1]
        if k == 0:
            return t.x, t.log_w, t.log_prior
        n = t.x.shape[0]
        x = torch.cat([t.x, t.x[:, :1].expand(n, k, 3)], 1)
        lw = torch.cat([t.log_w, torch.full((n, k), -math.inf, device=t.x.device)], 1)
        lp = torch.cat([t.log_prior, torch.zeros((n, k), device=t.x.device)], 1)
        return x, lw, lp

    (xa, wa, pa), (xb, wb, pb) = pad(a), pad(b)
    return _Batch(np.concatenate([a.rows, b.rows]), torch.cat([xa, xb]), torch.cat([wa, wb]),
                  torch.cat([pa, pb]), torch.cat([a.field_index, b.field_index]),
                  np.concatenate([a.ids, b.ids]))


class _StreamSource:
    """Minibatches read chunk by chunk (see the module docstring for the order)."""

    def __init__(self, stream: FlowStream, device: torch.device) -> None:
        self.stream = stream
        self.device = device

    def _chunk_batch(self, c: int, idx: np.ndarray) -> _Batch:
        from popmodel.flow.train import _Batch

        g0, g1 = self.stream.chunks[c]
        d = self.stream.read(g0, g1)
        return _Batch.from_flow_data(d.subset(idx - g0), idx, self.device)

    def train_batches(self, train_idx: np.ndarray, batch_size: int, seed: int, epoch: int) -> Iterator[_Batch]:
        gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
        chunk_gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 250_007)
        chunk = self.stream.chunk_of(train_idx)
        n_chunks = len(self.stream.chunks)
        order = torch.randperm(n_chunks, generator=chunk_gen).tolist() if n_chunks > 1 else [0]
        carry: _Batch | None = None
        for c in order:
            mine = train_idx[chunk == c]
            if mine.size == 0:
                continue
            mine = mine[torch.randperm(mine.size, generator=gen).numpy()]
            b = self._chunk_batch(c, mine)
            if carry is not None:
                b = _pad_cat(carry, b)
            k = 0
            while b.size - k >= batch_size:
                yield _slice(b, k, k + batch_size)
                k += batch_size
            carry = _slice(b, k, b.size) if k < b.size else None
        if carry is not None:
            yield carry

    def eval_batches(self, idx: np.ndarray, batch_size: int) -> Iterator[_Batch]:
        idx = np.asarray(idx, dtype=np.int64)
        chunk = self.stream.chunk_of(idx)
        for c in np.unique(chunk):
            b = self._chunk_batch(int(c), idx[chunk == c])
            for k in range(0, b.size, batch_size):
                yield _slice(b, k, k + batch_size)


def _slice(b: _Batch, k0: int, k1: int) -> _Batch:
    from popmodel.flow.train import _Batch

    return _Batch(b.rows[k0:k1], b.x[k0:k1], b.log_w[k0:k1], b.log_prior[k0:k1], b.field_index[k0:k1],
                  b.ids[k0:k1])
