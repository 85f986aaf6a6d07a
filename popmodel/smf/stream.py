r"""Mass-function fits of catalogues too big for NUTS: a streamed full-data MAP and its Laplace.

The scheme (chosen by measurement, issue 6 item 3)
--------------------------------------------------
The log-posterior is a sum over galaxies plus terms that do not grow with the catalogue (the
expected number on a fixed quadrature grid, the priors), so its value, gradient and Hessian are
sums over chunks of galaxies. For 10^6-10^7 galaxies:

1. **Read** the catalogue from disk in chunks of rows (HDF5 or Parquet long table, each galaxy's
   rows contiguous, as :meth:`popmodel.catalog.PosteriorCatalog.write` leaves them), never all
   samples at once. Each chunk goes through :func:`popmodel.smf.data.prepare_smf_data`: the
   survey's cuts (every dropped galaxy counted, per reason, in one summed
   :class:`~popmodel.smf.data.SelectionReport`), validation, Gauss-Hermite compression
   (:mod:`popmodel.compress`; exact for Gaussian posteriors, no Monte Carlo error) and the
   theta-independent offsets. Only the compressed nodes are kept: with 8 float32 nodes per
   galaxy about 143 bytes per galaxy (1.37 GiB at 10^7, measured). Galaxy ids are checked for uniqueness
   across chunks through 64-bit hashes (a galaxy split over two non-adjacent runs of rows is
   an error, not a double count).
2. **Pack** the nodes into :class:`~popmodel.smf.likelihood.GalaxyBlock` s of fixed shape per
   node count (the last one padded with masked galaxies), so that each per-block function
   compiles once.
3. **MAP** by L-BFGS (scipy) on the unconstrained parameters in float64, each evaluation the
   sum of jitted per-block value-and-gradient calls of the fused likelihood plus the
   expected-number and prior terms. The 11 parameters are strongly correlated, so L-BFGS
   first solves a subsample (every 16th block, galaxy terms scaled up) and takes that
   solution's Hessian as a preconditioner for the full-data run (unpreconditioned, it took
   120 full passes at 10^7 galaxies). Then Newton steps with the summed per-block Hessians
   (reverse over reverse) until the step is below ``newton_tol`` posterior sigma. The float32
   rounding of the samples makes the summed value noisy (sd 1e-5 measured at 2 x 10^5
   galaxies), which can stall L-BFGS's line search near the optimum; the Newton step,
   measured in posterior sigma, is the convergence test that does not care.
4. **Laplace**: the posterior of the 11 parameters as a Gaussian in the unconstrained space
   with the inverse summed Hessian as covariance; draws -> rho_*(z) bands.
   Measured (``benchmarks/bench_scale.py --full``, ``benchmarks/README.md``): on 10^5
   galaxies the Laplace means agree with NUTS (dense Laplace mass matrix) within 0.10 NUTS
   sigma and the sds within 4%; importance reweighting of the Laplace draws did not improve
   that (heavy-tailed weights, Pareto k 0.77), so it is a diagnostic
   (:func:`laplace_importance_check`), not part of the scheme. The departure from a Gaussian
   falls as the catalogue grows (log-weight sd 3.4 at 10^5, 0.2 at 10^7); at 1.1 x 10^4
   galaxies one Laplace sd was 27% below NUTS's: below a few 10^4 galaxies, use NUTS.

Why not stochastic variational inference: a first look (issue 6) with 4096-galaxy minibatches
and 6000 steps at 10^6 galaxies landed 5-64 sigma from the optimum (11 strongly correlated
parameters, noisy minibatch gradients), while full-data L-BFGS needs 40-120 passes, and
each full pass at 10^7 galaxies x 8 nodes costs 1.7 s here (3 s on the loaded machine).

Cosmic-variance density terms are not supported by the streamed fit (their number grows with
fields x slices; fit them on a catalogue that NUTS can handle).
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from numpyro.distributions.transforms import biject_to

from popmodel.catalog import (
    GALAXY_COLUMNS,
    OPTIONAL_COLUMNS,
    CatalogError,
    InterimPrior,
    PosteriorCatalog,
)
from popmodel.cosmology import VolumeTable
from popmodel.rows import open_rows
from popmodel.smf.data import (
    SelectionReport,
    _no_galaxy_message,
    apply_survey_cuts,
    prepare_smf_data,
)
from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.inference import (
    MAPResult,
    _Potential,
    constrain_draws,
    laplace_draws,
    require_x64,
)
from popmodel.smf.likelihood import (
    PAD,
    GalaxyBlock,
    LikelihoodData,
    build_selection_grid,
    galaxy_sum,
)
from popmodel.smf.model import SMFPrior
from popmodel.survey import Survey

__all__ = [
    "HDF5CatalogWriter",
    "StreamedData",
    "StreamedMAP",
    "StreamedPotential",
    "find_map_streamed",
    "fit_streamed",
    "hash_ids",
    "iter_catalog_chunks",
    "laplace_importance_check",
    "stream_smf_data",
]

#: Rows (posterior samples) read per chunk.
DEFAULT_CHUNK_ROWS = 1 << 20
#: Samples per scan step inside a block, and scan steps per block (one jitted call).
DEFAULT_BLOCK_SAMPLES = 1 << 16
DEFAULT_CHUNKS_PER_BLOCK = 16
_READ_COLUMNS = ("id", "field", "log_mass", "z", *[c for c in OPTIONAL_COLUMNS if c != "log_sfr"])


# ------------------------------------------------------------------------------------ reading
def hash_ids(ids: np.ndarray) -> np.ndarray:
    """64-bit FNV-1a hashes of galaxy ids (bytes or str; trailing NULs ignored)."""
    a = np.asarray(ids)
    if a.dtype.kind != "S":
        a = np.char.encode(a.astype(str), "utf-8")
    a = np.ascontiguousarray(a)
    width = a.dtype.itemsize
    b = a.view(np.uint8).reshape(a.size, width).astype(np.uint64)
    h = np.full(a.size, 0xCBF29CE484222325, dtype=np.uint64)
    prime = np.uint64(0x100000001B3)
    with np.errstate(over="ignore"):
        for k in range(width):
            byte = b[:, k]
            h = np.where(byte != 0, (h ^ byte) * prime, h)
    return h


def _concat(a: dict[str, np.ndarray] | None, b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    if a is None:
        return b
    return {k: np.concatenate([a[k], b[k]]) for k in b}


def _slice(cols: dict[str, np.ndarray], a: int, b: int) -> dict[str, np.ndarray]:
    return {k: v[a:b] for k, v in cols.items()}


def _catalog_from_columns(cols: dict[str, np.ndarray], meta: dict | None = None) -> PosteriorCatalog:
    from astropy.table import Table

    return PosteriorCatalog.from_table(Table(cols, meta=dict(meta or {}), copy=False))


def iter_catalog_chunks(
    path: str | os.PathLike,
    *,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    format: str | None = None,
    check_unique: bool = True,
) -> Iterator[PosteriorCatalog]:
    """The catalogue in ``path`` as a sequence of :class:`PosteriorCatalog` s of whole galaxies.

    Reads ``chunk_rows`` rows at a time; the rows of the last galaxy of a read, which may go on
    in the next one, are carried over, so every galaxy arrives whole (a galaxy with more rows
    than ``chunk_rows`` is read in several pieces and joined). Memory: one chunk plus, with
    ``check_unique``, 8 bytes per galaxy for the id hashes.

    Args:
        path: HDF5 (``.h5``/``.hdf5``, dataset ``catalog``) or Parquet long table with one row
            per posterior sample and each galaxy's rows contiguous.
        chunk_rows: rows per read.
        format: "hdf5" or "parquet" (default: from the extension).
        check_unique: raise :class:`CatalogError` at the end when a galaxy id occurs in two
            chunks (its rows were not contiguous), naming the ids.

    Raises:
        CatalogError: a missing column, invalid values (naming the galaxies), non-contiguous ids.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    path = Path(path)
    rows = open_rows(path, format)
    missing = [c for c in ("id", "field", "log_mass", "z") if c not in rows.columns]
    if missing:
        raise CatalogError(f"column(s) {missing} missing from {path} (has {rows.columns})")
    columns = [c for c in _READ_COLUMNS if c in rows.columns]
    hashes: list[np.ndarray] = []
    carry: dict[str, np.ndarray] | None = None
    for a in range(0, rows.n_rows, chunk_rows):
        b = min(a + chunk_rows, rows.n_rows)
        cols = _concat(carry, rows.read(a, b, columns))
        carry = None
        if b < rows.n_rows:  # hold back the last galaxy: its rows may go on
            rid = cols["id"]
            change = np.flatnonzero(rid[1:] != rid[:-1])
            cut = int(change[-1]) + 1 if change.size else 0
            carry = _slice(cols, cut, len(rid))
            if cut == 0:
                continue
            cols = _slice(cols, 0, cut)
        cat = _catalog_from_columns(cols)
        if check_unique:
            hashes.append(hash_ids(cat.ids))
        yield cat
    if carry is not None:  # pragma: no cover - the last read always finishes the file
        raise AssertionError("unfinished galaxy at the end of the file")
    if check_unique and hashes:
        h = np.sort(np.concatenate(hashes))
        dup = np.unique(h[1:][h[1:] == h[:-1]])
        if dup.size:  # name them (one more pass, only on failure); equal hashes of different
            # ids (probability ~N^2 / 2^65) are not an error
            seen: dict[str, int] = {}
            for cat in iter_catalog_chunks(path, chunk_rows=chunk_rows, format=format, check_unique=False):
                for i in cat.ids[np.isin(hash_ids(cat.ids), dup)]:
                    seen[str(i)] = seen.get(str(i), 0) + 1
            repeated = sorted(k for k, c in seen.items() if c > 1)
            if repeated:
                raise CatalogError(
                    f"galaxy id(s) {repeated[:10]} appear in more than one run of rows of {path}: "
                    "streaming needs each galaxy's samples contiguous (as PosteriorCatalog.write "
                    "leaves them)"
                )


class HDF5CatalogWriter:
    """Append :class:`PosteriorCatalog` s to one HDF5 long table, readable by
    :meth:`PosteriorCatalog.read` and :func:`iter_catalog_chunks` (dataset ``catalog``).

    For writing catalogues larger than memory piece by piece (mocks drawn chunk-wise). Ids and
    field names are stored as fixed-width bytes; ``sample_dtype`` (float64 or float32) is used
    for the per-sample columns, float64 for the catalogue point estimates (the survey cuts act
    on them).

    Example:
        >>> with HDF5CatalogWriter("big.h5") as w:  # doctest: +SKIP
        ...     for k in range(100):
        ...         w.append(draw_mock(sub_survey, seed=k)[0])
    """

    def __init__(self, path: str | os.PathLike, *, id_width: int = 24, field_width: int = 16,
                 sample_dtype: type = np.float64, overwrite: bool = False) -> None:
        import h5py

        self.path = Path(path)
        if self.path.exists() and not overwrite:
            raise FileExistsError(f"{self.path} exists (pass overwrite=True)")
        self.id_width, self.field_width = int(id_width), int(field_width)
        self.sample_dtype = np.dtype(sample_dtype)
        self._file = h5py.File(self.path, "w")
        self._ds = None
        self.n_rows = 0
        self.n_galaxies = 0

    def _dtype(self, cat: PosteriorCatalog) -> np.dtype:
        fields = [("id", f"S{self.id_width}"), ("field", f"S{self.field_width}"),
                  ("log_mass", self.sample_dtype), ("z", self.sample_dtype)]
        for name in ("log_prior", "weight"):
            if getattr(cat, name) is not None:
                fields.append((name, self.sample_dtype))
        for col, attr in GALAXY_COLUMNS.items():
            if getattr(cat, attr) is not None:
                fields.append((col, np.float64))
        return np.dtype(fields)

    def append(self, cat: PosteriorCatalog) -> None:
        """Append the catalogue's rows (its galaxies must be new: ids are not checked here)."""
        if cat.has_sfr:
            raise CatalogError("HDF5CatalogWriter writes (log_mass, z) catalogues; this one has log_sfr")
        dt = self._dtype(cat)
        enc = {"id": np.char.encode(cat.ids.astype(str), "utf-8"),
               "field": np.char.encode(cat.fields.astype(str), "utf-8")}
        for name, width in (("id", self.id_width), ("field", self.field_width)):
            longest = int(np.char.str_len(enc[name]).max()) if cat.n_galaxies else 0
            if longest > width:
                raise CatalogError(f"column {name!r} has values of {longest} bytes, more than the "
                                   f"writer's {name}_width={width}")
        if self._ds is None:
            self._ds = self._file.create_dataset("catalog", shape=(0,), maxshape=(None,), dtype=dt,
                                                 chunks=(1 << 16,))
        elif self._ds.dtype != dt:
            raise CatalogError(f"columns {dt.names} differ from the file's {self._ds.dtype.names}")
        gal = cat.galaxy_index
        rec = np.empty(gal.size, dtype=dt)
        rec["id"] = enc["id"][gal]
        rec["field"] = enc["field"][gal]
        rec["log_mass"], rec["z"] = cat.log_mass, cat.z
        for name in ("log_prior", "weight"):
            if name in dt.names:
                rec[name] = getattr(cat, name)
        for col, attr in GALAXY_COLUMNS.items():
            if col in dt.names:
                rec[col] = getattr(cat, attr)[gal]
        n0 = self.n_rows
        self._ds.resize((n0 + rec.size,))
        self._ds[n0:] = rec
        self.n_rows += rec.size
        self.n_galaxies += cat.n_galaxies

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---------------------------------------------------------------------------------- packing
def _pad_values(dtype: np.dtype) -> dict[str, tuple[object, np.dtype]]:
    return {"log_mass": (10.0, dtype), "z": (1.0, dtype), "offset": (PAD, dtype), "weight": (0.0, dtype),
            "galaxy_offset": (0.0, np.float64), "group": (0, np.int32), "monte_carlo": (False, bool)}


class _Packer:
    """Galaxies with one node count, packed into fixed-shape blocks (C, G, S)."""

    def __init__(self, s: int, g: int, c: int, dtype: np.dtype) -> None:
        self.s, self.g, self.c, self.dtype = s, g, c, dtype
        self.cap = g * c
        self._new()

    def _new(self) -> None:
        self.n = 0
        self.buf = {}
        for k, (fill, dt) in _pad_values(self.dtype).items():
            shape = (self.cap, self.s) if k in ("log_mass", "z", "offset", "weight") else (self.cap,)
            self.buf[k] = np.full(shape, fill, dtype=dt)

    def add(self, arrays: dict[str, np.ndarray]) -> list[GalaxyBlock]:
        out = []
        n_new = len(arrays["galaxy_offset"])
        k = 0
        while k < n_new:
            take = min(self.cap - self.n, n_new - k)
            for name, a in arrays.items():
                self.buf[name][self.n:self.n + take] = a[k:k + take]
            self.n += take
            k += take
            if self.n == self.cap:
                out.append(self._emit(self.c))
                self._new()
        return out

    def flush(self) -> list[GalaxyBlock]:
        if self.n == 0:
            return []
        return [self._emit(-(-self.n // self.g))]

    def _emit(self, c: int) -> GalaxyBlock:
        size = c * self.g
        b = {k: v[:size] for k, v in self.buf.items()}

        def r(a: np.ndarray) -> jax.Array:
            return jnp.asarray(a.reshape((c, self.g) + a.shape[1:]))

        return GalaxyBlock(
            log_mass=r(b["log_mass"]), z=r(b["z"]), offset=r(b["offset"]), weight=r(b["weight"]),
            galaxy_offset=r(b["galaxy_offset"]), valid=r(np.arange(size) < self.n),
            group=r(b["group"]), monte_carlo=r(b["monte_carlo"]),
        )


def _unpack_valid(blk: GalaxyBlock) -> dict[str, np.ndarray]:
    s = blk.log_mass.shape[-1]
    v = np.asarray(blk.valid).ravel()
    out = {k: np.asarray(getattr(blk, k)).reshape(-1, s)[v] for k in ("log_mass", "z", "offset", "weight")}
    for k in ("galaxy_offset", "group", "monte_carlo"):
        out[k] = np.asarray(getattr(blk, k)).ravel()[v]
    return out


@dataclass
class StreamedData:
    """A catalogue read in chunks, compressed and packed for the streamed likelihood.

    Attributes:
        blocks: the galaxy blocks (fixed shape per node count; padding galaxies masked).
        grid: the expected-number grid as a :class:`LikelihoodData` without galaxies.
        report: the survey cuts, summed over the chunks.
        n_galaxies, n_nodes: galaxies used and their nodes (samples) in all.
        nbytes: bytes of the blocks' arrays.
        n_chunks: chunks read; read_seconds: time spent reading, cutting and compressing.
    """

    blocks: list[GalaxyBlock]
    grid: LikelihoodData
    report: SelectionReport
    survey: Survey
    volume: VolumeTable
    selection: str
    n_galaxies: int
    n_nodes: int
    nbytes: int
    n_chunks: int
    read_seconds: float
    config: dict = field(default_factory=dict)


def _merge_reports(total: SelectionReport | None, r: SelectionReport) -> SelectionReport:
    if total is None:
        return dataclasses.replace(r, outside_z_range=dict(r.outside_z_range),
                                   below_completeness=dict(r.below_completeness),
                                   owned_by_other_field={k: dict(v) for k, v in r.owned_by_other_field.items()})
    total.n_input += r.n_input
    total.n_input_samples += r.n_input_samples
    total.n_used += r.n_used
    total.n_samples_used += r.n_samples_used
    total.n_kept_as_samples += r.n_kept_as_samples
    for name in ("outside_z_range", "below_completeness"):
        d = getattr(total, name)
        for k, v in getattr(r, name).items():
            d[k] = d.get(k, 0) + v
    for f, d in r.owned_by_other_field.items():
        t = total.owned_by_other_field.setdefault(f, {})
        for o, n in d.items():
            t[o] = t.get(o, 0) + n
    if r.point_estimate and r.point_estimate not in total.point_estimate:
        total.point_estimate = f"{total.point_estimate}; {r.point_estimate}" if total.point_estimate else r.point_estimate
    return total


def stream_smf_data(
    source: str | os.PathLike | Iterable[PosteriorCatalog],
    survey: Survey,
    *,
    selection: str = "noisy",
    posterior: str = "gauss-hermite",
    gh_nodes: tuple[int, int] = (8, 1),
    interim_prior: InterimPrior | None = None,
    dtype: type = np.float32,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    block_samples: int = DEFAULT_BLOCK_SAMPLES,
    chunks_per_block: int = DEFAULT_CHUNKS_PER_BLOCK,
    format: str | None = None,
    volume: VolumeTable | None = None,
    log: Callable[[str], None] | None = None,
) -> StreamedData:
    """Read a catalogue chunk by chunk, cut, compress and pack it for the streamed likelihood.

    Args:
        source: path of an HDF5/Parquet long table (read with :func:`iter_catalog_chunks`), or
            any iterable of :class:`PosteriorCatalog` chunks (ids unique across chunks).
        survey: the survey (fields, limits, error model, cosmology).
        selection, posterior, gh_nodes, interim_prior: as in
            :func:`popmodel.smf.data.prepare_smf_data` (default: Gauss-Hermite nodes, 8 in mass
            and 1 in redshift, i.e. for exact or negligible redshift errors; use (8, 3) with
            photometric redshifts).
        dtype: sample dtype of the blocks (float32: half the memory; sums are float64).
        chunk_rows: rows per read.
        block_samples, chunks_per_block: a block is ``chunks_per_block`` scan steps of about
            ``block_samples`` samples; one jitted call evaluates one block.
        volume: a precomputed :class:`VolumeTable`.
        log: progress messages (e.g. ``print``).
    """
    require_x64()
    t0 = time.perf_counter()
    vt = volume or VolumeTable.build(survey.cosmology)
    chunks = iter_catalog_chunks(source, chunk_rows=chunk_rows, format=format) if isinstance(
        source, (str, os.PathLike)) else iter(source)
    dt = np.dtype(dtype)
    packers: dict[int, _Packer] = {}
    blocks: list[GalaxyBlock] = []
    report: SelectionReport | None = None
    n_chunks = 0
    for cat in chunks:
        n_chunks += 1
        keep, _, rep = apply_survey_cuts(cat, survey)
        if keep.any():
            d = prepare_smf_data(cat, survey, selection=selection, chunk_size=1 << 62, dtype=dt,
                                 volume=vt, posterior=posterior, gh_nodes=gh_nodes,
                                 interim_prior=interim_prior, cosmic_variance=False,
                                 count_fields=False)
            rep = d.report
            for blk in d.arrays.blocks:
                s = int(blk.log_mass.shape[-1])
                if s not in packers:
                    packers[s] = _Packer(s, max(1, block_samples // s), chunks_per_block, dt)
                blocks += packers[s].add(_unpack_valid(blk))
        else:
            rep.posterior = posterior
        report = _merge_reports(report, rep)
        if log is not None and n_chunks % 10 == 0:
            log(f"read {n_chunks} chunks: {report.n_used} of {report.n_input} galaxies used "
                f"({time.perf_counter() - t0:.0f} s)")
    for p in packers.values():
        blocks += p.flush()
    if report is None:
        raise CatalogError(f"{source} holds no galaxies")
    if report.n_used == 0:
        raise CatalogError(_no_galaxy_message(report, survey, None, None))
    pieces = [survey.area_pieces(f.name) for f in survey.fields] if survey.overlaps else None
    gm, gz, gw, gg = build_selection_grid(list(survey.fields), vt.log_dvdz_at,
                                          hard=(selection == "hard"), area_pieces=pieces)
    grid = LikelihoodData(blocks=(), grid_log_mass=np.asarray(gm), grid_z=np.asarray(gz),
                          grid_log_weight=np.asarray(gw), grid_group=np.asarray(gg, dtype=np.int32))
    nbytes = sum(int(getattr(b, k).nbytes) for b in blocks
                 for k in ("log_mass", "z", "offset", "weight", "galaxy_offset", "valid", "group",
                           "monte_carlo"))
    n_nodes = sum(int(np.sum(np.asarray(b.weight) > 0)) for b in blocks)
    cfg = {"selection": selection, "posterior": posterior, "gh_nodes": list(gh_nodes),
           "dtype": dt.name, "chunk_rows": chunk_rows, "block_samples": block_samples,
           "chunks_per_block": chunks_per_block,
           "source": str(source) if isinstance(source, (str, os.PathLike)) else "iterable"}
    return StreamedData(blocks, grid, report, survey, vt, selection, report.n_used, n_nodes, nbytes,
                        n_chunks, time.perf_counter() - t0, cfg)


# ------------------------------------------------------------------------------- potential
_FUNCTIONS: dict[str, tuple] = {}


def _block_functions(prior: SMFPrior, unravel: Callable) -> tuple:
    """theta(u), and the jitted per-block value-and-gradient, value and Hessian of
    -galaxy_sum(theta(u)) for one prior."""
    transforms = {n: biject_to(prior.distribution(n).support) for n in prior.names}
    empty = np.zeros(0)
    grid_less = {"grid_log_mass": empty, "grid_z": empty, "grid_log_weight": empty,
                 "grid_group": np.zeros(0, np.int32)}

    def constrained(u: jax.Array) -> dict[str, jax.Array]:
        d = unravel(u)
        return {n: transforms[n](d[n]) for n in prior.names}

    def neg_gal(u: jax.Array, blk: GalaxyBlock) -> jax.Array:
        p = ContinuityParams.from_dict(constrained(u), prior.anchor_z)
        return -galaxy_sum(p, LikelihoodData(blocks=(blk,), **grid_less))

    return (constrained, jax.jit(jax.value_and_grad(neg_gal)), jax.jit(neg_gal),
            jax.jit(jax.jacrev(jax.grad(neg_gal))))


class StreamedPotential:
    """U(u) = -ln posterior on the unconstrained vector of :class:`~popmodel.smf.inference._Potential`,
    evaluated as a sum over the blocks of a :class:`StreamedData`.

    U(u) = U_grid(u) - sum_b galaxy_sum_b(theta(u)), where U_grid is NumPyro's potential of the
    model with no galaxies (priors, Jacobian of the transforms, expected number) and theta(u)
    applies NumPyro's transforms (``biject_to`` of each prior's support). Value, gradient and
    Hessian are float64 sums of per-block jitted calls (one compilation per block shape).
    """

    def __init__(self, prior: SMFPrior, data: StreamedData, *, blocks: list[GalaxyBlock] | None = None,
                 galaxy_scale: float = 1.0) -> None:
        require_x64()
        if prior.density_terms:
            raise ValueError("the streamed fit has no cosmic-variance density terms: use a prior "
                             "without density_terms")
        self.prior, self.data = prior, data
        self.base = _Potential(prior, data.grid)
        self.u0, self.unravel, self.u_names = self.base.u0, self.base.unravel, self.base.u_names
        key = repr(prior)
        if key not in _FUNCTIONS:  # compiled once per prior (and block shape), not per instance
            _FUNCTIONS[key] = _block_functions(prior, self.unravel)
        self.constrained, self._vg, self._v, self._h = _FUNCTIONS[key]
        self.n_passes = {"value_and_grad": 0, "value": 0, "hessian": 0}
        self.blocks = data.blocks if blocks is None else blocks
        self.galaxy_scale = float(galaxy_scale)

    def value_and_grad(self, u: np.ndarray) -> tuple[float, np.ndarray]:
        uj = jnp.asarray(u, dtype=jnp.float64)
        base = self.base.value_and_grad(uj, self.data.grid)
        parts = [self._vg(uj, b) for b in self.blocks]  # dispatched asynchronously
        self.n_passes["value_and_grad"] += 1
        c = self.galaxy_scale
        v = float(base[0]) + c * math.fsum(float(p[0]) for p in parts)
        g = np.asarray(base[1], dtype=np.float64) + c * np.sum(
            [np.asarray(p[1], dtype=np.float64) for p in parts], axis=0)
        return v, g

    def value(self, u: np.ndarray) -> float:
        uj = jnp.asarray(u, dtype=jnp.float64)
        base = self.base.value_and_grad(uj, self.data.grid)[0]
        parts = [self._v(uj, b) for b in self.blocks]
        self.n_passes["value"] += 1
        return float(base) + self.galaxy_scale * math.fsum(float(p) for p in parts)

    def hessian(self, u: np.ndarray) -> np.ndarray:
        uj = jnp.asarray(u, dtype=jnp.float64)
        base = self.base.hessian(uj, self.data.grid)
        parts = [self._h(uj, b) for b in self.blocks]
        self.n_passes["hessian"] += 1
        h = np.asarray(base, dtype=np.float64) + self.galaxy_scale * np.sum(
            [np.asarray(p, dtype=np.float64) for p in parts], axis=0)
        return 0.5 * (h + h.T)

    def params(self, u: np.ndarray) -> dict[str, float]:
        return {k: float(v) for k, v in self.constrained(jnp.asarray(u)).items()}

    def constrained_jacobian(self, u: np.ndarray) -> np.ndarray:
        """d(parameters in ``prior.names`` order)/du at u."""
        f = lambda uu: jnp.stack([self.constrained(uu)[n] for n in self.prior.names])
        return np.asarray(jax.jacrev(f)(jnp.asarray(u)))


# ------------------------------------------------------------------------------------- MAP
@dataclass
class StreamedMAP:
    """The streamed MAP with its Laplace approximation and how it was reached."""

    map: MAPResult
    n_lbfgs_evaluations: int
    lbfgs_message: str
    newton_steps: int
    last_newton_step_sigma: float  # max |du / sigma_u| of the last Newton step computed
    n_passes: dict
    seconds: dict
    warm_start: dict = field(default_factory=dict)
    potential: StreamedPotential | None = field(default=None, repr=False)


def _laplace(pot: StreamedPotential, u: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    evals, evecs = np.linalg.eigh(h)
    ok = bool(np.all(evals > 0))
    if not ok:
        evals = np.maximum(evals, 1e-6 * np.max(np.abs(evals)))
    cov_u = (evecs / evals) @ evecs.T
    jac = pot.constrained_jacobian(u)
    return cov_u, jac @ cov_u @ jac.T, ok


def find_map_streamed(
    data: StreamedData,
    prior: SMFPrior,
    init: dict[str, float] | None = None,
    *,
    maxiter: int = 1000,
    newton_tol: float = 1e-3,
    max_newton: int = 6,
    warm_start: int = 16,
    log: Callable[[str], None] | None = None,
) -> StreamedMAP:
    """Streamed full-data MAP (L-BFGS, then Newton steps with the summed Hessian) and Laplace.

    Args:
        data: from :func:`stream_smf_data`.
        prior: the priors (no density terms).
        init: starting parameters (default: Leja et al. 2020 medians moved inside the prior, as
            :func:`popmodel.smf.inference.find_map`).
        maxiter: L-BFGS iterations at most.
        newton_tol: stop when the Newton step is below this many posterior sigma in every
            unconstrained coordinate.
        max_newton: Newton steps at most (each one gradient pass; the Hessian is recomputed
            only after a step larger than 0.1 sigma).
        warm_start: with at least twice this many blocks, first find the MAP of every
            ``warm_start``-th block (galaxy terms scaled up to the whole catalogue) and its
            Hessian; the full-data L-BFGS then starts there, in the coordinates that make that
            Hessian the identity (the 11 parameters are strongly correlated: unpreconditioned,
            L-BFGS took 120 full passes at 10^7 galaxies). 0 or 1: no warm start.
        log: progress messages.

    Returns:
        A :class:`StreamedMAP` whose ``map`` is a :class:`MAPResult` like ``find_map``'s.
    """
    say = log or (lambda s: None)
    pot = StreamedPotential(prior, data)
    u0 = np.asarray(pot.u0 if init is None else pot.base.unconstrain(init, data.grid), float)
    t0 = time.perf_counter()
    precond = np.eye(u0.size)
    warm = {}
    if warm_start > 1 and len(data.blocks) >= 2 * warm_start:
        sub_blocks = data.blocks[::warm_start]
        n_all = sum(int(np.sum(np.asarray(b.valid))) for b in data.blocks)
        n_sub = sum(int(np.sum(np.asarray(b.valid))) for b in sub_blocks)
        sub = StreamedPotential(prior, data, blocks=sub_blocks, galaxy_scale=n_all / n_sub)
        r = scipy.optimize.minimize(sub.value_and_grad, u0, jac=True, method="L-BFGS-B",
                                    options={"maxiter": maxiter, "ftol": 1e-12, "gtol": 1e-8})
        h_sub = sub.hessian(r.x)
        ev, evec = np.linalg.eigh(h_sub)
        if np.all(ev > 0):
            u0 = np.asarray(r.x, float)
            precond = evec / np.sqrt(ev)  # u = u0 + P w: unit Hessian in w (subsample's)
        warm = {"fraction": n_sub / n_all, "lbfgs_evaluations": int(r.nfev),
                "seconds": time.perf_counter() - t0}
        say(f"warm start on {len(sub_blocks)} of {len(data.blocks)} blocks: {r.nfev} evaluations, "
            f"{warm['seconds']:.1f} s")
    t_full = time.perf_counter()

    def fun(w: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = pot.value_and_grad(u0 + precond @ w)
        return v, precond.T @ g

    # In the preconditioned coordinates the gradient is about the distance to the optimum in
    # posterior sigma: stop at 0.01 sigma and let the Newton steps finish (L-BFGS would go on
    # until the float32 noise of the sums fails its line search).
    gtol = 1e-2 if warm else 1e-8
    res = scipy.optimize.minimize(
        fun, np.zeros(u0.size), jac=True, method="L-BFGS-B",
        options={"maxiter": maxiter, "maxfun": 2 * maxiter, "ftol": 1e-13, "gtol": gtol},
    )
    res.x = u0 + precond @ res.x
    t_lbfgs = time.perf_counter() - t0
    say(f"L-BFGS: {res.nfev} evaluations, {time.perf_counter() - t_full:.1f} s ({res.message})")
    u, (v, g) = np.asarray(res.x, float), pot.value_and_grad(res.x)
    t1 = time.perf_counter()
    h = pot.hessian(u)
    n_newton, step_sigma = 0, np.inf
    for _ in range(max_newton):
        cov_u = np.linalg.inv(h)
        step = -cov_u @ g
        sd = np.sqrt(np.clip(np.diag(cov_u), 1e-300, None))
        step_sigma = float(np.max(np.abs(step) / sd))
        if step_sigma < newton_tol:
            break
        scale = min(1.0, 1.0 / step_sigma)  # at most 1 sigma per step
        u_new = u + scale * step
        v_new, g_new = pot.value_and_grad(u_new)
        n_newton += 1
        if not (v_new <= v or step_sigma < 0.1):
            say(f"Newton step of {step_sigma:.3g} sigma did not decrease U; stopping")
            break
        u, v, g = u_new, v_new, g_new
        if step_sigma > 0.1:
            h = pot.hessian(u)
    t_newton = time.perf_counter() - t1
    say(f"Newton: {n_newton} steps, last step {step_sigma:.2g} sigma, {t_newton:.1f} s")
    cov_u, cov, ok = _laplace(pot, u, h)
    names = prior.names
    conv = ok and step_sigma < max(newton_tol, 1e-2)
    mp = MAPResult(
        params=pot.params(u), u_names=pot.u_names, u=u, cov_u=cov_u,
        sigma={n: float(np.sqrt(cov[i, i])) for i, n in enumerate(names)}, cov=cov, names=names,
        log_posterior=-float(v), n_evaluations=int(res.nfev) + n_newton, converged=conv,
        message=f"L-BFGS: {res.message}; Newton: {n_newton} steps, last {step_sigma:.2g} sigma"
        + ("" if ok else "; Hessian not positive definite"),
    )
    return StreamedMAP(mp, int(res.nfev), str(res.message), n_newton, step_sigma, dict(pot.n_passes),
                       {"lbfgs": t_lbfgs, "newton_and_hessian": t_newton,
                        "total": time.perf_counter() - t0}, warm, pot)


def laplace_importance_check(data: StreamedData, prior: SMFPrior, map_result: MAPResult, n: int = 64,
                             seed: int = 0, potential: StreamedPotential | None = None) -> dict:
    """How Gaussian the full posterior is: importance weights of ``n`` Laplace draws.

    log w_k = -[U(u_k) - U(u_MAP)] + |z_k|^2 / 2 for u_k = u_MAP + L z_k (L L^T = Cov_u), one
    full-data value pass per draw; w = 1 for an exactly Gaussian posterior. Returns the Kish
    effective sample size fraction, the sd of the log weights, the Pareto k-hat of PSIS
    (Vehtari et al. 2015, arXiv:1507.02646; k-hat < 0.5: Laplace adequate, < 0.7: usable after
    smoothing; unreliable below about 100 draws), and the draws (``draws``: name -> (n,)) with
    their PSIS-smoothed normalised log weights (``log_weights``), for importance-weighted
    posterior summaries.
    """
    import arviz as az

    pot = potential or StreamedPotential(prior, data)
    rng = np.random.default_rng(seed)
    cov = np.asarray(map_result.cov_u)
    ch = np.linalg.cholesky(cov)
    z = rng.standard_normal((n, cov.shape[0]))
    u = np.asarray(map_result.u) + z @ ch.T
    u_map = -map_result.log_posterior
    log_w = np.array([-(pot.value(uk) - u_map) + 0.5 * float(zk @ zk) for uk, zk in zip(u, z, strict=True)])
    lw = log_w - log_w.max()
    w = np.exp(lw)
    ess = float(w.sum() ** 2 / np.sum(w**2))
    smoothed, khat = az.psislw(lw.copy())
    return {"n_draws": n, "ess_fraction": ess / n, "pareto_k": float(khat),
            "log_weight_sd": float(np.std(log_w)), "draws": constrain_draws(u, map_result, prior),
            "log_weights": np.asarray(smoothed)}


def fit_streamed(
    source: str | os.PathLike | Iterable[PosteriorCatalog],
    survey: Survey,
    prior: SMFPrior | None = None,
    *,
    n_draws: int = 4000,
    seed: int = 0,
    z_rho: tuple[float, ...] = (0.5, 1.0, 2.0),
    log: Callable[[str], None] | None = None,
    **stream_kwargs: object,
) -> dict:
    """Read, compress and fit a catalogue too big for NUTS: streamed MAP + Laplace (the scheme of
    the module docstring), as a JSON-ready result with its provenance.

    Args:
        source, survey: as :func:`stream_smf_data` (``stream_kwargs`` go there too).
        prior: the priors (default :class:`SMFPrior`; no density terms).
        n_draws, seed: Laplace draws of the parameters (numpy seed).
        z_rho: redshifts of the rho_*(z) (8 < log M < 13) percentiles.
        log: progress messages.

    Returns:
        dict with ``map``, ``sigma``, ``cov`` (constrained, order ``names``), ``u``, ``cov_u``,
        ``rho_star`` (16/50/84 percentiles of log10 rho_* [Msun Mpc^-3] at ``z_rho``), the
        ``selection_report``, convergence and timing, and the provenance (popmodel version,
        configuration, seed, cosmology, IMF, priors, survey).
    """
    from popmodel import __version__
    from popmodel.cosmology import describe_cosmology
    from popmodel.smf.derived import log10_rho_star
    from popmodel.units import IMF, MASS_DEFINITION

    prior = prior or SMFPrior()
    t0 = time.perf_counter()
    data = stream_smf_data(source, survey, log=log, **stream_kwargs)
    mp = find_map_streamed(data, prior, log=log)
    draws = laplace_draws(mp.map, prior, n_draws, seed=seed)
    lr = log10_rho_star(ContinuityParams.from_dict(draws, prior.anchor_z), np.asarray(z_rho, float))
    q = np.percentile(lr, [16, 50, 84], axis=0)
    return {
        "popmodel_version": __version__,
        "method": "streamed full-data MAP (L-BFGS + Newton) and Laplace approximation",
        "config": {**data.config, "n_draws": n_draws, "seed": seed},
        "cosmology": describe_cosmology(survey.cosmology),
        "imf": IMF,
        "mass_definition": MASS_DEFINITION,
        "priors": prior.describe(),
        "survey": survey.name,
        "selection_report": data.report.as_dict(),
        "n_galaxies": data.n_galaxies,
        "n_nodes": data.n_nodes,
        "names": list(mp.map.names),
        "map": mp.map.params,
        "sigma": mp.map.sigma,
        "cov": mp.map.cov.tolist(),
        "u_names": list(mp.map.u_names),
        "u": mp.map.u.tolist(),
        "cov_u": mp.map.cov_u.tolist(),
        "converged": mp.map.converged,
        "message": mp.map.message,
        "rho_star": {"z": list(z_rho), "log10_q16": q[0].tolist(), "log10_q50": q[1].tolist(),
                     "log10_q84": q[2].tolist(), "log_m_range": [8.0, 13.0]},
        "passes": mp.n_passes,
        "warm_start": mp.warm_start,
        "timing_s": {"read_cut_compress": data.read_seconds, **mp.seconds,
                     "total": time.perf_counter() - t0},
        "memory_bytes_blocks": data.nbytes,
    }
