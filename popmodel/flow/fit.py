r"""Fit the star-forming sequence: an ensemble of deconvolving flows and its SFS grid.

:func:`fit_sfs` is the Python entry point behind ``popmodel fit-sfs``:

1. keep the catalogue galaxies that pass the survey's cuts on their *observed* values
   (redshift window and completeness limit, as the selection model assumes; counted);
2. pad the posterior samples (:mod:`popmodel.flow.data`) and build the selection
   normalisation (:mod:`popmodel.flow.selection`);
3. train ``n_members`` flows (:mod:`popmodel.flow.train`), each on a bootstrap resample of the
   galaxies (validated and early-stopped on out-of-bag galaxies) with its own seed, so that
   the spread of the ensemble carries both the sampling noise of the catalogue and the
   optimisation noise;
4. evaluate every member's p(log SFR | log M, z) on a (log M, z) grid above completeness and
   reduce it to the ridge, log10 <SFR>, percentiles and a bimodality flag
   (:mod:`popmodel.flow.sfs`); bands are the 16/84th percentiles over the members, the
   central ridge is the mode of the ensemble-averaged density (see :func:`sfs_table`) and
   the central log mean SFR the members' median;
5. fit Leja et al. 2022 Eq. 10 to the central ridge and mean, and to each member's,
   for coefficient bands (:mod:`popmodel.flow.parametric`).
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from astropy.table import Table

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.flow.data import FlowData, check_point_estimates, flow_data_from_catalog
from popmodel.flow.model import FlowConfig, SFSFlow
from popmodel.flow.parametric import EQ10_PARAMETERS, Eq10Fit, fit_eq10
from popmodel.flow.selection import NormalizationGrid, selection_grids
from popmodel.flow.sfs import (
    DEFAULT_DOUBLING_CUT,
    SequenceStatistics,
    ridge_columns,
    sequence_statistics,
)
from popmodel.flow.train import TrainConfig, TrainResult, build_flow, train_flow
from popmodel.survey import Survey, SurveyError

if TYPE_CHECKING:
    from popmodel.io.sfs import SFSResult

__all__ = [
    "SFSConfig",
    "SFSFit",
    "apply_survey_cuts",
    "fit_sfs",
    "load_flow",
    "resolve_workers",
    "save_flow",
    "sfs_grid",
    "sfs_table",
]

#: Redshift nodes of ``sfs.ecsv`` (those within the data's range are used).
Z_NODES = tuple(np.round(np.arange(0.25, 2.7501, 0.25), 4))


@dataclass(frozen=True)
class SFSConfig:
    """Settings of :func:`fit_sfs`.

    Attributes:
        flow: Architecture of each member.
        train: Optimisation settings (its ``seed`` is the base seed of the ensemble). The
            default warms the learning rate up to 0.02 over the first epoch and decays it along
            a cosine over the next 11 (more epochs, up to 120, where 12 make fewer than 1,500
            optimiser steps, i.e. below about 3.2x10^4 galaxies at 256 per batch); a member
            stops earlier when the validation loss stops improving in the schedule's second
            half or when the sequence's percentiles on the SFS grid move by < 0.005 dex per
            epoch for 3 epochs. On the 3D-HST sample (3.7x10^4 galaxies, 32 samples each) this
            gives the sequence of up to 60 epochs of the plateau schedule (``TrainConfig``'s own
            default) within the ensemble's noise, in about a sixth of the time.
        n_members: Ensemble size.
        bootstrap: Train each member on a bootstrap resample of the galaxies (validation on
            out-of-bag galaxies); otherwise on the same data with different seeds and splits.
        max_samples: Posterior samples kept per galaxy (None: all).
        z_jitter: Redshift jitter [units of 1 + z] of galaxies with exact redshifts (see
            :mod:`popmodel.flow.data`); 0 for none.
        selection: ``"survey"`` (normalise by the probability of passing the survey's cuts; the
            default when a survey is given) or ``"none"``.
        apply_cuts: Drop galaxies that fail the survey's cuts on their catalogue values.
        z_nodes: Redshifts of the SFS grid (only those within the data's range are used).
        mass_step: Mass step of the grid [dex]; nodes are multiples of it above completeness.
        log_mass_max: Upper end of the grid [log10 Msun] (also capped at the data's 99.5th
            percentile of catalogue mass + 0.25).
        sfr_grid: (min, max, step) of the log SFR grid for the statistics.
        doubling_cut: Mass-doubling number of the star-forming-branch cut of the ridge.
        ridge_smoothing: Gaussian kernel [dex] applied to p(log SFR | log M, z) before its
            mode is located (see :func:`popmodel.flow.sfs.sequence_statistics`).
        ridge_estimator: Central ridge of the table: ``"pooled"`` (mode of the
            ensemble-averaged density) or ``"median"`` (median of the members' modes); see
            :func:`sfs_table`.
        n_norm_grid: Nodes per axis of the selection-normalisation quadrature.
        n_workers: Train members in this many processes, each with ``train.threads`` torch
            threads (default 1 there); 1: sequentially in this process with torch's threads.
            None (default): one process per core, at most one per member
            (:func:`resolve_workers`). Measured on the 3D-HST sample on 2 cores: 4 min 13 s with
            2 processes (the default), 6 min 22 s with 1 process of 2 threads.
    """

    flow: FlowConfig = field(default_factory=FlowConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_epochs=12, min_steps=1500, learning_rate=2e-2, lr_schedule="cosine", lr_warmup=1.0,
        sfs_tolerance=0.005))
    n_members: int = 5
    bootstrap: bool = True
    max_samples: int | None = 32
    z_jitter: float = 0.005
    selection: str = "survey"
    apply_cuts: bool = True
    z_nodes: tuple[float, ...] = Z_NODES
    mass_step: float = 0.25
    log_mass_max: float = 11.75
    sfr_grid: tuple[float, float, float] = (-4.0, 4.0, 0.01)
    doubling_cut: float = DEFAULT_DOUBLING_CUT
    ridge_smoothing: float = 0.1
    ridge_estimator: str = "pooled"
    n_norm_grid: int = 64
    n_workers: int | None = None

    def __post_init__(self) -> None:
        if self.n_members < 1:
            raise ValueError(f"n_members must be >= 1, got {self.n_members}")
        if self.n_workers is not None and self.n_workers < 1:
            raise ValueError(f"n_workers must be >= 1 or None, got {self.n_workers}")
        if self.selection not in ("survey", "none"):
            raise ValueError(f"selection must be 'survey' or 'none', got {self.selection!r}")
        if self.ridge_estimator not in ("pooled", "median"):
            raise ValueError(f"ridge_estimator must be 'pooled' or 'median', got {self.ridge_estimator!r}")
        if not self.mass_step > 0:
            raise ValueError("mass_step must be positive")
        lo, hi, step = self.sfr_grid
        if not (hi > lo and step > 0):
            raise ValueError(f"sfr_grid must be (min, max, step) with max > min, step > 0: {self.sfr_grid}")

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        d = asdict(self)
        d["flow"] = self.flow.to_dict()
        d["train"] = self.train.to_dict()
        d["z_nodes"] = [float(z) for z in self.z_nodes]
        d["sfr_grid"] = list(self.sfr_grid)
        return d


@dataclass
class SFSFit:
    """Result of :func:`fit_sfs`.

    Attributes:
        flows: The trained ensemble.
        results: Training record of each member.
        table: The SFS grid (see :func:`sfs_table`).
        eq10: Eq. 10 fits to the ensemble-median ``"ridge"`` and ``"mean"``.
        eq10_members: Per-member Eq. 10 coefficients, ``{kind: (n_members, 12)}``.
        config: Settings.
        survey: The survey (or None).
        data_summary: Counts and sample statistics of the training data.
        cuts: What the survey cuts removed.
        timing: Seconds per stage.
        warnings: Messages for the results files.
    """

    flows: list[SFSFlow]
    results: list[TrainResult]
    table: Table
    eq10: dict[str, Eq10Fit | None]
    eq10_members: dict[str, np.ndarray]
    config: SFSConfig
    survey: Survey | None
    data_summary: dict
    cuts: dict
    timing: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    member_stats: list[SequenceStatistics] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SFSResult:
        """Read a sequence result folder (``popmodel fit-sfs`` / ``write_sfs_results``).

        Returns a :class:`popmodel.io.sfs.SFSResult` (the stored flows and ``sfs.ecsv``; its
        ``ridge`` evaluates the members), not an :class:`SFSFit`: the training data are not
        stored. Delegates to :func:`popmodel.io.sfs.load_sfs` (imported when called: this
        module does not import the io layer).
        """
        from popmodel.io.sfs import load_sfs

        return load_sfs(path)


def apply_survey_cuts(catalog: PosteriorCatalog, survey: Survey) -> tuple[PosteriorCatalog, dict]:
    """Keep galaxies whose catalogue (z, log M) pass their field's cut and whose field owns them.

    The cut is :meth:`popmodel.survey.Survey.selects`, the one the mass function uses
    (:func:`popmodel.smf.data.apply_survey_cuts`): ``z_min <= z_obs <= z_max`` and
    ``log_mass_obs >= log M_c(z_obs)`` (a galaxy exactly at the limit is kept), and a galaxy
    labelled with an overlap region (``"B[A]"``) is dropped as a duplicate where the other field
    owns the overlap. Kept galaxies carry their field's name (the region label is replaced), so
    the selection function finds the field.

    The catalogue values are ``obs_z`` / ``obs_log_mass`` when present, else weighted
    medians of the samples.

    Raises:
        SurveyError: If a catalogue field is neither a field of the survey nor an overlap
            region of it.
        CatalogError: If ``log_mass_obs`` / ``z_obs`` of a galaxy that passes lie outside the
            model's support (:func:`popmodel.flow.data.check_point_estimates`).
    """
    labels = survey.region_labels()  # field names, and "B[A]" for overlap regions
    unknown = sorted(set(catalog.fields.tolist()) - set(labels))
    if unknown:
        regions = [lab for lab in labels if lab not in survey.field_names]
        raise SurveyError(f"catalogue field(s) {unknown} are not in the survey (has "
                          f"{survey.field_names}" + (f" and overlap regions {regions}" if regions else "")
                          + ")")
    point = catalog.point_estimates()
    keep, group = survey.selects(catalog.fields, point.log_mass, point.z)
    _, owner = survey.resolve_regions(catalog.fields, point.z)
    report: dict[str, Any] = {"n_input": catalog.n_galaxies, "per_field": {}}
    for g, f in enumerate(survey.fields):
        rows = group == g
        in_z = rows & f.in_z_range(point.z)
        other = in_z & (owner != g)
        report["per_field"][f.name] = {
            "input": int(rows.sum()), "outside_z": int((rows & ~in_z).sum()),
            "owned_by_other_field": int(other.sum()),
            "below_mass_limit": int((in_z & ~other & ~keep).sum()), "kept": int((rows & keep).sum()),
        }
    report["n_kept"] = int(keep.sum())
    check_point_estimates(catalog, among=keep)  # a linear mass (1e10) passes every limit
    if not keep.any():
        raise CatalogError("no galaxy passes the survey's redshift window and mass limit")
    kept = catalog.subset(keep)
    names = np.asarray(survey.field_names)[group[keep]]
    if not np.array_equal(names, kept.fields.astype(str)):  # overlap regions -> field names
        kept = replace(kept, fields=names)
    return kept, report


def save_flow(flow: SFSFlow, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Save a flow (weights, architecture and standardisation) to ``path``."""
    torch.save({"state_dict": flow.state_dict(), "config": flow.config.to_dict(),
                "loc": flow.loc.tolist(), "scale": flow.scale.tolist(), "extra": extra or {}}, path)


def load_flow(path: str | os.PathLike) -> SFSFlow:
    """Load a flow written by :func:`save_flow`."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    flow = SFSFlow(FlowConfig.from_dict(state["config"]), state["loc"], state["scale"])
    flow.load_state_dict(state["state_dict"])
    return flow.eval()


def sfs_grid(data: FlowData, survey: Survey | None, config: SFSConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log M, z) nodes of the SFS table and the completeness limit at each node.

    Redshift nodes within the data's catalogue-redshift range (and the survey's windows);
    mass nodes at multiples of ``mass_step`` from the lowest completeness limit of the fields
    at that redshift (or the data's 1st percentile of mass without a survey) to
    ``log_mass_max`` or the data's 99.5th percentile + ``mass_step``.
    """
    z_lo, z_hi = float(data.z_ref.min()), float(data.z_ref.max())
    if survey is not None:
        z_lo = max(z_lo, min(f.z_min for f in survey.fields))
        z_hi = min(z_hi, max(f.z_max for f in survey.fields))
    zs = [z for z in config.z_nodes if z_lo - 1e-9 <= z <= z_hi + 1e-9]
    m_hi = min(config.log_mass_max, float(np.percentile(data.log_mass_ref, 99.5)) + config.mass_step)
    ms, zz, lim = [], [], []
    for z in zs:
        if survey is not None:
            fields = [f for f in survey.fields if f.z_min <= z <= f.z_max and f.name in data.field_names]
            limit = min(float(f.log_mass_limit(z)) for f in fields) if fields else np.inf
        else:
            limit = float(np.percentile(data.log_mass_ref, 1.0))
        start = np.ceil(limit / config.mass_step - 1e-9) * config.mass_step
        for m in np.arange(start, m_hi + 1e-9, config.mass_step):
            ms.append(round(float(m), 6))
            zz.append(z)
            lim.append(limit)
    return np.array(ms), np.array(zz), np.array(lim)


def _member_split(n: int, config: SFSConfig, k: int) -> tuple[np.ndarray, np.ndarray]:
    seed = config.train.seed + k
    rng = np.random.default_rng([seed, 104729])
    if not config.bootstrap:
        perm = rng.permutation(n)
        n_val = max(1, round(config.train.val_fraction * n)) if n > 1 else 0
        return np.sort(perm[n_val:]), np.sort(perm[:n_val])
    train = rng.integers(0, n, n)
    oob = np.setdiff1d(np.arange(n), train)
    n_val = min(oob.size, max(1, round(config.train.val_fraction * n)))
    val = np.sort(rng.choice(oob, n_val, replace=False)) if n_val else oob
    return np.sort(train), val


def resolve_workers(config: SFSConfig) -> int:
    """Processes that train the members: ``config.n_workers``, or (None) one per available
    core, in both cases at most one per member."""
    n = config.n_workers
    if n is None:
        try:
            n = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            n = os.cpu_count() or 1
    return max(1, min(int(n), config.n_members))


def _member_threads(config: SFSConfig, k: int, workers: int) -> int | None:
    """torch threads of member ``k`` when members train in ``workers`` processes
    (:func:`resolve_workers`).

    Each worker gets ``train.threads`` (default 1). The members of a last, incomplete round
    (5 members on 2 workers: the fifth) would leave workers idle, so they share those cores
    (on the 3D-HST sample a member took about 80 s at 1 thread, and the ensemble on 2 workers
    255 s with the fifth member alone on one core).
    """
    if workers <= 1:
        return None
    per = config.train.threads or 1
    last = config.n_members % workers
    if last and k >= config.n_members - last:
        return per * (workers // last)
    return per


def _train_member(args: tuple) -> tuple[dict, TrainResult]:
    data, config, norm, k, ckpt, resume, threads, monitor = args
    if threads is not None:
        torch.set_num_threads(threads)
    train_idx, val_idx = _member_split(data.n_galaxies, config, k)
    tc = replace(config.train, seed=config.train.seed + k)
    flow = build_flow(config.flow, data, seed=tc.seed)
    res = train_flow(flow, data, tc, normalization=norm, train_idx=train_idx, val_idx=val_idx,
                     checkpoint=ckpt, resume=resume, desc=f"member {k + 1}/{config.n_members}",
                     monitor=monitor)
    return flow.state_dict(), res


def sfs_table(
    flows: list[SFSFlow],
    log_mass: np.ndarray,
    z: np.ndarray,
    log_mass_limit: np.ndarray,
    config: SFSConfig,
    cosmology: Any = None,
) -> tuple[Table, list[SequenceStatistics]]:
    """Evaluate the ensemble on the nodes and reduce to the ``sfs.ecsv`` columns.

    Columns: ``z``, ``log_mass``, ``ridge_p16/p50/p84``, ``log_mean_sfr_p16/p50/p84``,
    ``log_sfr_q16/q50/q84`` (ensemble medians of the population's percentiles), ``bimodal``
    (at least half of the members see two prominent peaks), plus ``scatter_p50`` (median half
    16-84 width), ``ridge_members_p50`` (median of the members' ridges), ``ridge_n_members``
    (members with a ridge above the sSFR cut), ``log_sfr_cut`` and ``log_mass_limit``.

    Bands are the 16th/84th percentiles over the members, except the ridge's: the central
    ridge +- t_{K-1}(0.84) times the members' standard deviation
    (:func:`popmodel.flow.sfs.ridge_band`; the members' 16-84th percentiles cover the truth at
    only ~48% of the nodes for K = 5). The central ``log_mean_sfr_p50`` is
    the members' median; the central ridge depends on ``config.ridge_estimator``:

    * ``"pooled"`` (default): the mode of the ensemble-averaged density
      (1/K) sum_k p_k(log SFR | log M, z) over the K members. A deconvolved density is
      constrained only on scales above the SFR errors, so each member's mode moves with the
      unconstrained small-scale shape of its density (on the 0.4 dex-error sequence mock of
      ``analyses/validate_sfs.py``, 0.1 dex smoothing: 0.045 dex rms between members, against
      0.011 dex for noise-free training); these fluctuations partly average out in the
      averaged density before its mode is taken (measured there: largest ridge error 0.052 dex
      pooled vs 0.064 dex for the median of the five members' modes);
    * ``"median"``: the median of the members' modes (``ridge_members_p50``).
    """
    lo, hi, step = config.sfr_grid
    grid = np.arange(lo, hi + step / 2, step)
    kw = {"doubling_cut": config.doubling_cut, "ridge_smoothing": config.ridge_smoothing, "cosmology": cosmology}
    log_dens = [f.conditional_log_density(log_mass, z, grid) for f in flows]
    stats = [sequence_statistics(grid, lp, log_mass, z, **kw) for lp in log_dens]
    from scipy.special import logsumexp

    pooled = sequence_statistics(grid, logsumexp(np.stack(log_dens), axis=0) - np.log(len(log_dens)),
                                 log_mass, z, **kw)

    def band(name: str) -> np.ndarray:
        arr = np.stack([getattr(s, name) for s in stats])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return np.nanpercentile(arr, [16, 50, 84], axis=0)

    ridges = np.stack([s.ridge for s in stats])
    r_lo, ridge_mid, r_hi, ridge_members = ridge_columns(ridges, pooled.ridge,
                                                         config.ridge_estimator)
    mn = band("log_mean_sfr")
    cols = {
        "z": z, "log_mass": log_mass,
        "ridge_p16": r_lo, "ridge_p50": ridge_mid, "ridge_p84": r_hi,
        "log_mean_sfr_p16": mn[0], "log_mean_sfr_p50": mn[1], "log_mean_sfr_p84": mn[2],
        "log_sfr_q16": np.median(np.stack([s.q16 for s in stats]), 0),
        "log_sfr_q50": np.median(np.stack([s.q50 for s in stats]), 0),
        "log_sfr_q84": np.median(np.stack([s.q84 for s in stats]), 0),
        "bimodal": np.mean(np.stack([s.bimodal for s in stats]), 0) >= 0.5,
        "scatter_p50": np.median(np.stack([s.scatter for s in stats]), 0),
        "ridge_members_p50": ridge_members,
        "ridge_n_members": np.sum(np.isfinite(ridges), 0),
        "log_sfr_cut": stats[0].log_sfr_cut,
        "log_mass_limit": log_mass_limit,
    }
    return Table(cols), stats


def _fit_eq10_safe(m: np.ndarray, z: np.ndarray, y: np.ndarray, sig: np.ndarray | None, kind: str) -> Eq10Fit | None:
    ok = np.isfinite(y)
    if ok.sum() < 2 * len(EQ10_PARAMETERS) or np.unique(z[ok]).size < 3:
        return None
    return fit_eq10(m[ok], z[ok], y[ok], None if sig is None else sig[ok], p0=kind)


def fit_sfs(
    catalog: PosteriorCatalog,
    survey: Survey | None = None,
    config: SFSConfig | None = None,
    *,
    workdir: str | os.PathLike | None = None,
    resume: bool = False,
    interim_prior: object | None = None,
) -> SFSFit:
    """Train the ensemble on a posterior catalogue and tabulate the star-forming sequence.

    Args:
        catalog: Posterior samples with ``log_sfr``.
        survey: The survey whose fields selected the catalogue (completeness limits, mass
            errors); None for a sample without selection (no normalisation, grid from the
            data's 1st mass percentile).
        config: Settings.
        workdir: Directory for per-member checkpoints (``checkpoints/member_k.pt``).
        resume: Resume members from their checkpoints.
        interim_prior: the SED fitter's prior, in any form
            :func:`popmodel.interim.resolve_interim_prior` takes (default: the catalogue's
            ``log_prior_sfr`` column, flat without prior columns; a varying ``log_prior``
            without ``log_prior_sfr`` is refused).

    Returns:
        The fit.
    """
    config = config or SFSConfig()
    t0 = time.perf_counter()
    timing: dict[str, float] = {}
    msgs: list[str] = []
    from popmodel.conventions import conform_for_fit  # one cosmology and IMF per fit
    catalog = conform_for_fit(catalog, survey, msgs.append)  # notes go to fit.warnings
    if interim_prior is not None:
        from popmodel.interim import resolve_interim_prior

        catalog, _, note = resolve_interim_prior(catalog, interim_prior)
        msgs.append(note)
    cuts: dict = {"applied": False}
    if survey is not None and config.apply_cuts:
        catalog, cuts = apply_survey_cuts(catalog, survey)
        cuts["applied"] = True
    elif survey is not None:
        unknown = sorted(set(catalog.fields.tolist()) - set(survey.field_names))
        if unknown:
            raise SurveyError(f"catalogue field(s) {unknown} are not in the survey")
    data = flow_data_from_catalog(catalog, max_samples=config.max_samples, z_jitter=config.z_jitter,
                                  seed=config.train.seed)
    low_ess = int(np.sum(data.ess < 2.0))
    if low_ess:
        msgs.append(f"{low_ess} galaxies have an effective sample size < 2 of their weights")
    norm: NormalizationGrid | None = None
    loc, scale = data.standardization()
    if survey is not None and config.selection == "survey":
        norm = selection_grids(
            survey, data.field_names, loc, scale,
            mode="conditional" if config.flow.conditional_on_z else "joint",
            log_mass_max=float(data.x[..., 1].max()) + 1.0,
            z_range=(float(data.x[..., 0].min()), float(data.x[..., 0].max())),
            n_z=config.n_norm_grid, n_mass=config.n_norm_grid,
        )
    elif survey is None:
        msgs.append("no survey: no selection normalisation; the density is that of the sample")
    timing["prepare_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    ckdir = None
    if workdir is not None:
        ckdir = Path(workdir) / "checkpoints"
        ckdir.mkdir(parents=True, exist_ok=True)
    m_grid, z_grid, _ = sfs_grid(data, survey, config)
    monitor = (m_grid, z_grid) if m_grid.size else None
    n_workers = resolve_workers(config)
    jobs = [
        (data, config, norm, k, None if ckdir is None else ckdir / f"member_{k}.pt", resume,
         _member_threads(config, k, n_workers), monitor)
        for k in range(config.n_members)
    ]
    if n_workers > 1:
        import multiprocessing as mp
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=n_workers, mp_context=mp.get_context("spawn")) as ex:
            outs = list(ex.map(_train_member, jobs))
    else:
        outs = [_train_member(j) for j in jobs]
    flows, results = [], []
    for state, res in outs:
        f = SFSFlow(config.flow, loc, scale)
        f.load_state_dict(state)
        flows.append(f.eval())
        results.append(res)
    timing["train_s"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    cosmo = survey.cosmology if survey is not None else None
    m, z, lim = sfs_grid(data, survey, config)
    if m.size == 0:
        raise CatalogError("no SFS grid node lies within the data's redshift range and above completeness")
    table, stats = sfs_table(flows, m, z, lim, config, cosmology=cosmo)
    timing["grid_s"] = time.perf_counter() - t2

    eq10: dict[str, Eq10Fit | None] = {}
    members: dict[str, np.ndarray] = {}
    for kind, col, attr in (("ridge", "ridge", "ridge"), ("mean", "log_mean_sfr", "log_mean_sfr")):
        sig = np.maximum(0.5 * (table[f"{col}_p84"] - table[f"{col}_p16"]), 0.02)
        eq10[kind] = _fit_eq10_safe(m, z, np.asarray(table[f"{col}_p50"]), np.asarray(sig), kind)
        rows = []
        for s in stats:
            fit = _fit_eq10_safe(m, z, getattr(s, attr), None, kind)
            rows.append(fit.as_array() if fit is not None else np.full(12, np.nan))
        members[kind] = np.array(rows)
        if eq10[kind] is None:
            msgs.append(f"Eq. 10 not fitted to the {kind}: too few grid nodes or redshifts")
    timing["total_s"] = time.perf_counter() - t0
    summary = data.summary()
    summary["standardization"] = {"loc": loc.tolist(), "scale": scale.tolist()}
    return SFSFit(flows=flows, results=results, table=table, eq10=eq10, eq10_members=members,
                  config=config, survey=survey, data_summary=summary, cuts=cuts, timing=timing,
                  warnings=msgs, member_stats=stats)
