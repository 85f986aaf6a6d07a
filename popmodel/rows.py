"""Row ranges of a posterior catalogue's long table on disk (HDF5 or Parquet), for the
streaming readers of the mass function (:mod:`popmodel.smf.stream`) and the flow
(:mod:`popmodel.flow.stream`). numpy only: importing it pulls in neither jax nor torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from popmodel.catalog import CatalogError, PosteriorCatalog

__all__ = ["HDF5Rows", "ParquetRows", "open_rows"]


class HDF5Rows:
    """Row ranges of the HDF5 long table (dataset ``catalog``) with h5py."""

    def __init__(self, path: Path) -> None:
        import h5py

        self.path = path
        with h5py.File(path, "r") as f:
            if "catalog" not in f:
                raise CatalogError(f"{path} has no dataset 'catalog' (write it with PosteriorCatalog.write)")
            ds = f["catalog"]
            self.columns = list(ds.dtype.names or ())
            self.n_rows = int(ds.shape[0])

    def read(self, a: int, b: int, columns: list[str]) -> dict[str, np.ndarray]:
        import h5py

        with h5py.File(self.path, "r") as f:
            if len(columns) == 1:
                return {columns[0]: f["catalog"].fields(columns[0])[a:b]}
            block = f["catalog"].fields(columns)[a:b]
        return {c: block[c] for c in columns}


class ParquetRows:
    """Row ranges of a Parquet long table, read by row groups (pyarrow)."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        meta = pq.ParquetFile(path).metadata
        self.columns = [meta.schema.column(i).name for i in range(meta.num_columns)]
        sizes = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
        self.starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.n_rows = int(self.starts[-1])

    def read(self, a: int, b: int, columns: list[str]) -> dict[str, np.ndarray]:
        import pyarrow.parquet as pq

        g0 = int(np.searchsorted(self.starts, a, side="right") - 1)
        g1 = int(np.searchsorted(self.starts, b, side="left"))
        table = pq.ParquetFile(self.path).read_row_groups(list(range(g0, g1)), columns=columns)
        table = table.slice(a - int(self.starts[g0]), b - a)
        return {c: table.column(c).to_numpy() for c in columns}


def open_rows(path: Path, format: str | None = None) -> HDF5Rows | ParquetRows:
    """The row reader for ``path`` (format from ``format`` or the file's extension)."""
    fmt = PosteriorCatalog._resolve_format(path, format)
    if fmt == "hdf5":
        return HDF5Rows(path)
    if fmt == "parquet":
        return ParquetRows(path)
    raise CatalogError(f"streaming reads HDF5 or Parquet catalogues, not {fmt!r} ({path})")
