"""From a posterior catalogue and a survey to likelihood arrays, counting every galaxy cut."""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field

import numpy as np

from popmodel.catalog import CatalogError, InterimPrior, PosteriorCatalog
from popmodel.cosmology import VolumeTable
from popmodel.represent import likelihood_log_weights, represent
from popmodel.smf.density import DEFAULT_SLICE_DZ, DensityTerms, build_density_terms
from popmodel.smf.evolution import leja2020_params
from popmodel.smf.likelihood import (
    PAD,
    BlockIndex,
    LikelihoodData,
    build_blocks,
    build_selection_grid,
)
from popmodel.smf.schechter import ln_phi
from popmodel.survey import Survey

__all__ = [
    "LOG_MASS_SUPPORT",
    "MIN_EXPECTED_FOR_EMPTY",
    "REFERENCE_MODEL",
    "Z_SUPPORT",
    "EmptyFieldError",
    "SMFData",
    "SelectionReport",
    "apply_survey_cuts",
    "check_field_coverage",
    "expected_counts",
    "field_slices",
    "prepare_smf_data",
]

#: The model's support: samples outside it are an error, not something to drop.
LOG_MASS_SUPPORT = (4.0, 14.0)
Z_SUPPORT = (0.0, 12.0)

#: A field (or one of its redshift slices) where the reference model expects at least this many
#: catalogue galaxies and the catalogue has none is an error (:func:`check_field_coverage`):
#: a Poisson count of 0 at a mean of 20 has probability 2e-9, so a missing field in the
#: catalogue, not chance, is the explanation even if the reference model is off by a factor 3.
MIN_EXPECTED_FOR_EMPTY = 20.0

#: The model the expected counts come from (no fit needed).
REFERENCE_MODEL = "Leja et al. (2020) median continuity model"


class EmptyFieldError(CatalogError):
    """A survey field (or redshift slice) that should hold galaxies has none in the catalogue."""


@dataclass
class SelectionReport:
    """Which galaxies entered the fit, and why the others did not (counts per field)."""

    n_input: int
    n_used: int
    outside_z_range: dict[str, int] = field(default_factory=dict)
    below_completeness: dict[str, int] = field(default_factory=dict)
    #: field -> {owning field: n}: galaxies in an overlap whose (footprint, z) range another
    #: field owns (:class:`popmodel.survey.Ownership`), removed as duplicates.
    owned_by_other_field: dict[str, dict[str, int]] = field(default_factory=dict)
    n_samples_used: int = 0
    point_estimate: str = ""
    posterior: str = "samples"
    n_kept_as_samples: int = 0
    n_non_gaussian: int = 0  # posterior="auto": galaxies kept as samples as non-Gaussian
    #: how each galaxy's integral is computed, and why (:mod:`popmodel.represent`)
    representation: dict = field(default_factory=dict)
    #: rows read: posterior samples of all input galaxies (one row per sample in a long table)
    n_input_samples: int = 0
    #: field -> catalogue galaxies in the field (before the cuts)
    input_per_field: dict[str, int] = field(default_factory=dict)
    #: field -> galaxies used (after the cuts)
    observed: dict[str, int] = field(default_factory=dict)
    #: field -> catalogue galaxies that :data:`REFERENCE_MODEL` predicts through the field's
    #: selection and volume (:func:`expected_counts`; no fit involved)
    expected_reference: dict[str, float] = field(default_factory=dict)
    #: field -> its redshift slices, ``{"z_lo", "z_hi", "expected_reference", "observed"}``
    slices: dict[str, list[dict]] = field(default_factory=dict)
    reference_model: str = ""
    #: fields the survey marks ``empty = true`` (no galaxies expected in the catalogue)
    empty_fields: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def count_lines(self) -> list[str]:
        """Per field: galaxies used against the reference model's expectation (for the log)."""
        if not self.expected_reference:
            return []
        head = (f"galaxies per field, used (expected from the {self.reference_model} through "
                "the field's selection and volume, no fit):")
        out = [head]
        for name, exp in self.expected_reference.items():
            sl = self.slices.get(name, [])
            per = ", ".join(f"z {d['z_lo']:g}-{d['z_hi']:g}: {d['observed']} ({d['expected_reference']:.1f})"
                            for d in sl) if len(sl) > 1 else ""
            mark = " [marked empty]" if name in self.empty_fields else ""
            out.append(f"  {name}{mark}: {self.observed.get(name, 0)} ({exp:.1f})"
                       + (f"; {per}" if per else ""))
        return out

    def summary(self) -> str:
        nz = sum(self.outside_z_range.values())
        nc = sum(self.below_completeness.values())
        no = sum(sum(v.values()) for v in self.owned_by_other_field.values())
        owned = (f", {no} in an overlap owned by another field (duplicates: "
                 + "; ".join(f"{f} -> {o}: {n}" for f, d in self.owned_by_other_field.items()
                             for o, n in d.items() if n) + ")") if no else ""
        rep = ("posterior samples" if self.posterior == "samples" else
               f"{self.posterior} nodes/samples; {self.n_kept_as_samples} galaxies kept as "
               "samples" + (f", {self.n_non_gaussian} of them as non-Gaussian"
                            if self.posterior == "auto" else ""))
        return (
            f"{self.n_used} of {self.n_input} galaxies used ({self.n_samples_used} {rep}); not used: {nz} outside their field's redshift range{owned}, {nc} below "
            f"the mass-completeness limit (point estimates: {self.point_estimate})"
        )


@dataclass(frozen=True)
class SMFData:
    """Likelihood arrays plus the host-side bookkeeping that produced them."""

    arrays: LikelihoodData
    index: BlockIndex
    catalog: PosteriorCatalog  # the galaxies used, in their catalogue order
    report: SelectionReport
    volume: VolumeTable
    survey: Survey
    selection: str
    z_data_range: tuple[float, float]
    density: DensityTerms | None = None


def point_estimates(catalog: PosteriorCatalog) -> tuple[np.ndarray, np.ndarray, str]:
    """Catalogue point estimates (log M_obs, z_obs) that the survey's cut acts on.

    Uses the catalogue's own ``obs_log_mass`` / ``obs_z`` when it has them (mocks and
    percentile catalogues do), else the weighted median of each galaxy's *likelihood*: its
    samples reweighted by weight / interim prior (:func:`popmodel.represent.likelihood_log_weights`).
    The posterior median would not do: an informative prior (Prospector-beta, which follows
    the mass function) pulls it by 0.04-0.08 dex, and more above log M 11, while the survey's
    cut acted on what the photometry measured.
    """
    obs_m = getattr(catalog, "obs_log_mass", None)
    obs_z = getattr(catalog, "obs_z", None)
    if obs_m is not None and obs_z is not None:
        return np.asarray(obs_m, float), np.asarray(obs_z, float), "catalogue values"
    if catalog.varying_log_prior().any():
        lik = dataclasses.replace(catalog, weight=np.exp(likelihood_log_weights(catalog)),
                                  obs_log_mass=None, obs_z=None)
        pe = lik.point_estimates()
        return pe.log_mass, pe.z, "weighted median of the likelihood (samples / interim prior)"
    pe = catalog.point_estimates()
    return pe.log_mass, pe.z, "weighted median of the posterior samples"


def _outside(x: np.ndarray, col: str) -> np.ndarray:
    lo, hi = LOG_MASS_SUPPORT if col == "log_mass" else Z_SUPPORT
    return (x <= lo) | (x > hi) if col == "z" else (x < lo) | (x > hi)


def _support_text(col: str) -> str:
    lo, hi = LOG_MASS_SUPPORT if col == "log_mass" else Z_SUPPORT
    return f"{'(' if col == 'z' else '['}{lo}, {hi}]"


def tail_samples(catalog: PosteriorCatalog) -> np.ndarray:
    """``(S,)`` True for samples beyond the model's support where the mass function is zero or
    negligible: z above its top (a photometric-redshift tail) or log M outside its range (a
    mass moved by a redshift tail's luminosity distance). They contribute zero density."""
    lo, hi = LOG_MASS_SUPPORT
    return (catalog.z > Z_SUPPORT[1]) | (catalog.log_mass < lo) | (catalog.log_mass > hi)


def _check_support(catalog: PosteriorCatalog, *, point_estimates: bool = False,
                   among: np.ndarray | None = None, allow_z_above: bool = False) -> None:
    """Raise a CatalogError naming the column and galaxies with values outside the model's support.

    Args:
        catalog: the catalogue.
        point_estimates: check the per-galaxy point-estimate columns ``log_mass_obs`` and
            ``z_obs`` (the values the survey's cuts act on) instead of the samples.
        among: ``(N,)`` mask of the galaxies to check (default all), e.g. those that pass the
            cuts: as for the samples, only what the model sees must lie in its support.
    """
    if point_estimates:
        # (file column, attribute, sample column whose support and units it shares)
        cols = [(c, a, "log_mass" if "mass" in a else "z")
                for c, a in (("log_mass_obs", "obs_log_mass"), ("z_obs", "obs_z"))
                if getattr(catalog, a, None) is not None]
        for colname, attr, kind in cols:
            x = np.asarray(getattr(catalog, attr), float)
            bad = _outside(x, kind)
            if among is not None:
                bad &= among
            if np.any(bad):
                k = int(np.flatnonzero(bad)[0])
                ids = ", ".join(repr(str(i)) for i in catalog.ids[bad][:5])
                hint = ""
                if kind == "log_mass" and np.median(x[bad]) > 1e3:
                    hint = ("; it looks like a linear mass: give log10 M/Msun, in the same units "
                            "as the samples")
                raise CatalogError(
                    f"galaxy {str(catalog.ids[k])!r}: point-estimate column {colname!r} has "
                    f"{float(x[k])!r}, outside the model's support {_support_text(kind)} that "
                    f"column {kind!r} (the samples) must also satisfy ({int(bad.sum())} of the "
                    f"{x.size if among is None else int(among.sum())} galaxies that pass the "
                    f"survey's cuts on these values: {ids}{', ...' if bad.sum() > 5 else ''})"
                    + hint
                )
        return
    gi = catalog.galaxy_index
    allowed = np.zeros(gi.size, bool)
    if allow_z_above:  # tails beyond the support: zero density, if the galaxy has samples inside
        tail = tail_samples(catalog)
        inside = ~tail & (catalog.z > Z_SUPPORT[0])
        has_inside = np.bincount(gi[inside], minlength=catalog.n_galaxies) > 0
        allowed = tail & has_inside[gi]
    for col in ("log_mass", "z"):
        x = getattr(catalog, col)
        bad = _outside(x, col) & ~allowed
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise CatalogError(
                f"galaxy {str(catalog.ids[gi[k]])!r}: column {col!r} has sample {float(x[k])!r} outside the "
                f"model's support {_support_text(col)} "
                f"({int(bad.sum())} samples in {len(np.unique(gi[bad]))} galaxies)"
            )


def field_slices(survey: Survey, dz: float = DEFAULT_SLICE_DZ) -> list[np.ndarray]:
    """Edges of each field's redshift slices: ceil(range / dz) equal slices, as the density
    terms of :mod:`popmodel.smf.density` cut them."""
    out = []
    for f in survey.fields:
        n = max(1, int(np.ceil((f.z_max - f.z_min) / dz - 1e-9)))
        out.append(np.linspace(f.z_min, f.z_max, n + 1))
    return out


def expected_counts(
    survey: Survey,
    volume: VolumeTable,
    *,
    selection: str = "noisy",
    slice_dz: float = DEFAULT_SLICE_DZ,
    params: object | None = None,
) -> list[np.ndarray]:
    """Expected catalogue galaxies in each field's redshift slices under a fixed model.

    The likelihood's expected number (:func:`popmodel.smf.likelihood.expected_number`: the
    mass function times the field's selection, volume and effective area) evaluated at
    ``params`` (default: the Leja et al. 2020 medians), so it needs no fit. The slices are in
    true redshift (the catalogue's z errors move a few galaxies across their edges).

    Returns:
        One ``(n_slices,)`` array per field, in the order of :func:`field_slices`.
    """
    p = leja2020_params() if params is None else params
    edges = field_slices(survey, slice_dz)
    pieces = [survey.area_pieces(f.name) for f in survey.fields] if survey.overlaps else None
    gm, gz, gw, gg = build_selection_grid(list(survey.fields), volume.log_dvdz_at,
                                          hard=(selection == "hard"), area_pieces=pieces,
                                          z_breaks=[e[1:-1] for e in edges])
    n = np.exp(np.asarray(ln_phi(np.asarray(gm), np.asarray(gz), p), dtype=float) + gw)
    out = []
    for g, e in enumerate(edges):
        sel = gg == g
        k = np.clip(np.searchsorted(e[1:-1], gz[sel], side="right"), 0, e.size - 2)
        out.append(np.bincount(k, weights=n[sel], minlength=e.size - 1))
    return out


def _count_fields(report: SelectionReport, survey: Survey, z_used: np.ndarray,
                  group_used: np.ndarray, group_all: np.ndarray, expected: list[np.ndarray],
                  dz: float) -> None:
    """Fill the report's per-field and per-slice observed and expected counts."""
    report.reference_model = REFERENCE_MODEL
    report.empty_fields = [f.name for f in survey.fields if getattr(f, "empty", False)]
    for g, (f, e) in enumerate(zip(survey.fields, field_slices(survey, dz), strict=True)):
        mine = group_used == g
        report.input_per_field[f.name] = int(np.sum(group_all == g))
        k = np.clip(np.searchsorted(e[1:-1], z_used[mine], side="right"), 0, e.size - 2)
        obs = np.bincount(k, minlength=e.size - 1)
        report.observed[f.name] = int(mine.sum())
        report.expected_reference[f.name] = round(float(expected[g].sum()), 2)
        report.slices[f.name] = [
            {"z_lo": round(float(a), 4), "z_hi": round(float(b), 4),
             "expected_reference": round(float(x), 2), "observed": int(o)}
            for a, b, x, o in zip(e[:-1], e[1:], expected[g], obs, strict=True)
        ]


def check_field_coverage(report: SelectionReport, *,
                         min_expected: float = MIN_EXPECTED_FOR_EMPTY) -> None:
    """Raise :class:`EmptyFieldError` for a field, or a field's redshift slice, where the
    reference model expects at least ``min_expected`` catalogue galaxies and none were used.

    A survey field missing from the catalogue would otherwise count as observed-empty sky:
    its volume enters the expected number and the fitted densities come out low (two equal
    fields, one missing: rho_* about 0.3 dex low). Fields the survey marks ``empty = true``
    are exempt; such a field with galaxies that pass its cuts contradicts the mark and is an
    error too. Needs the counts of :func:`prepare_smf_data` (``report.slices``).
    """
    missing, marked = [], []
    for name, slices in report.slices.items():
        n_in = report.input_per_field.get(name, 0)
        if name in report.empty_fields:
            if report.observed.get(name, 0):
                marked.append(f"field {name!r} is marked 'empty = true' but "
                              f"{report.observed[name]} of its {n_in} catalogue galaxies pass "
                              "its cuts")
            continue
        exp_f = report.expected_reference.get(name, 0.0)
        if report.observed.get(name, 0) == 0 and exp_f >= min_expected:
            missing.append(f"field {name!r}: 0 galaxies used ({n_in} in the catalogue), "
                           f"{exp_f:.0f} expected")
            continue
        for d in slices:
            if d["observed"] == 0 and d["expected_reference"] >= min_expected:
                missing.append(f"field {name!r}, z {d['z_lo']:g}-{d['z_hi']:g}: 0 galaxies "
                               f"used, {d['expected_reference']:.0f} expected")
    msg = []
    if missing:
        msg.append(
            "the catalogue has no galaxies where the survey should hold many: "
            + "; ".join(missing)
            + f" (expected: the {report.reference_model} through each field's selection and "
            f"volume; an error at {min_expected:g} or more). A field or redshift range missing "
            "from the catalogue would be fitted as empty sky and bias the densities low: "
            "remove it from the survey (or narrow its z range), add its galaxies to the "
            "catalogue, or, if the field truly holds none, mark it 'empty = true' in the survey"
        )
    if marked:
        msg.append("; ".join(marked) + ": remove the mark, or the galaxies")
    if msg:
        raise EmptyFieldError(". ".join(msg))


def _no_galaxy_message(report: SelectionReport, survey: Survey, m_obs: np.ndarray | None,
                       z_obs: np.ndarray | None) -> str:
    """Why no galaxy entered the fit: what was read and each reason's count."""
    if report.n_input == 0:
        return ("the catalogue holds no galaxies (0 galaxies, 0 rows read): nothing to fit; "
                "check that the file is the catalogue meant")
    nz = sum(report.outside_z_range.values())
    nc = sum(report.below_completeness.values())
    no = sum(sum(v.values()) for v in report.owned_by_other_field.values())
    parts = []
    if nz:
        per = ", ".join(f"{f.name} (z {f.z_min:g}-{f.z_max:g}): {report.outside_z_range.get(f.name, 0)}"
                        for f in survey.fields)
        span = f"; catalogue redshifts span {np.min(z_obs):.3g}-{np.max(z_obs):.3g}" if z_obs is not None else ""
        parts.append(f"{nz} outside their field's redshift range ({per}{span})")
    if nc:
        per = ", ".join(f"{k}: {v}" for k, v in report.below_completeness.items())
        span = f"; catalogue masses span {np.min(m_obs):.3g}-{np.max(m_obs):.3g}" if m_obs is not None else ""
        parts.append(f"{nc} below the mass-completeness limit ({per}{span})")
    if no:
        parts.append(f"{no} in an overlap owned by another field (duplicates)")
    n_other = report.n_input - nz - nc - no
    if n_other:
        parts.append(f"{n_other} dropped for other reasons")
    return (
        f"no galaxy passes the survey's redshift and completeness cuts: read {report.n_input} "
        f"galaxies ({report.n_input_samples} rows, one per posterior sample); excluded: "
        + "; ".join(parts)
        + f" (point estimates: {report.point_estimate}); survey fields: "
        + ", ".join(f"{f.name} z {f.z_min:g}-{f.z_max:g}" for f in survey.fields)
    )


def apply_survey_cuts(catalog: PosteriorCatalog, survey: Survey
                      ) -> tuple[np.ndarray, np.ndarray, SelectionReport]:
    """The survey's cuts on the catalogue point estimates, every dropped galaxy counted.

    Returns:
        ``(keep, group, report)``: ``(N,)`` mask of the galaxies that enter the fit, ``(N,)``
        field index of each galaxy, and the :class:`SelectionReport` (``n_used`` and the
        posterior fields are filled in by :func:`prepare_smf_data`).

    Raises:
        CatalogError: for a galaxy in a field the survey does not have, or a point estimate
            (``log_mass_obs``, ``z_obs``) outside the model's support (e.g. a linear mass).
    """
    names = survey.field_names
    labels = list(survey.region_labels())  # field names, and "B[A]" for overlap regions
    known = np.isin(catalog.fields, labels)
    if not np.all(known):
        k = int(np.flatnonzero(~known)[0])
        regions = [lab for lab in labels if lab not in names]
        raise CatalogError(
            f"galaxy {str(catalog.ids[k])!r}: unknown field {str(catalog.fields[k])!r}; the survey has "
            f"{names}" + (f" and overlap regions {regions}" if regions else "")
            + f" ({int((~known).sum())} galaxies in unknown fields)"
        )
    m_obs, z_obs, how = point_estimates(catalog)
    # the cut shared with the SFS flow (Survey.selects: the limit itself passes), then the
    # field of each galaxy and the field that owns its (footprint, z) range, for the report
    keep, group = survey.selects(catalog.fields, m_obs, z_obs)
    _, owner = survey.resolve_regions(catalog.fields, z_obs)
    report = SelectionReport(n_input=catalog.n_galaxies, n_used=0, point_estimate=how,
                             n_input_samples=int(catalog.offsets[-1]))
    for g, f in enumerate(survey.fields):
        inf = group == g
        in_z = f.in_z_range(z_obs)
        mine = owner == g
        above = f.above_limit(m_obs, z_obs)
        report.outside_z_range[f.name] = int(np.sum(inf & ~in_z))
        if survey.overlaps:
            report.owned_by_other_field[f.name] = {
                names[o]: int(np.sum(inf & in_z & (owner == o)))
                for o in range(len(names)) if o != g and np.any(inf & in_z & (owner == o))
            }
        report.below_completeness[f.name] = int(np.sum(inf & in_z & mine & ~above))
    # the galaxies that pass (a linear mass such as 1e10 passes every limit): as for the
    # samples, a point estimate the cuts drop may lie outside the support (3D-HST holds a
    # log M = 3.97 galaxy far below every completeness limit)
    _check_support(catalog, point_estimates=True, among=keep)
    return keep, group, report


def prepare_smf_data(
    catalog: PosteriorCatalog,
    survey: Survey,
    *,
    selection: str = "noisy",
    chunk_size: int = 1 << 16,
    dtype: type = np.float64,
    volume: VolumeTable | None = None,
    posterior: str = "samples",
    gh_nodes: tuple[int, int] = (8, 3),
    interim_prior: InterimPrior | None = None,
    cosmic_variance: bool = True,
    slice_dz: float = DEFAULT_SLICE_DZ,
    count_fields: bool = True,
    node_factor: int = 1,
    kinds: np.ndarray | None = None,
) -> SMFData:
    """Validate, apply the survey's cuts to the point estimates, and build the arrays.

    Args:
        catalog: posterior samples (its interim prior is divided out; flat if absent).
        survey: fields, completeness limits and cosmology; possibly several surveys with
            overlaps and ownership rules (:class:`popmodel.survey.Survey`): a galaxy whose
            ``field`` value is an overlap region (``"B[A]"``) and whose catalogue redshift lies
            where the other field owns the overlap is removed as a duplicate (counted in
            ``report.owned_by_other_field``), and each field's expected number uses its
            effective area as a function of redshift (:meth:`Survey.area_pieces`).
        selection: ``"noisy"`` (default; cut acts on noisy catalogue masses, S_f an error
            function) or ``"hard"`` (hard cut on true mass, an approximation).
        chunk_size: samples per scan step.
        dtype: dtype of the sample arrays.
        posterior: "samples" (importance-sampled means over the posterior samples) or
            "auto" (Gauss-Hermite for the galaxies whose samples are consistent with a Gaussian,
            :func:`popmodel.compress.gaussian_galaxies`; samples for the others), or
            "gauss-hermite" (each used galaxy compressed to a Gauss-Hermite rule of its
            samples' mean and covariance, ``gh_nodes`` = (mass, z) nodes; no Monte Carlo
            error, exact for Gaussian posteriors; see :mod:`popmodel.compress`). Galaxies whose
            nodes would leave the model's support stay as samples (counted in the report).
        interim_prior: the SED fit's prior, needed by "gauss-hermite" when the catalogue
            carries a ``log_prior`` column.
        cosmic_variance: add per-field, per-slice density terms (:mod:`popmodel.smf.density`)
            for the fields with a known geometry (side lengths or a sigma_dm override) that
            hold galaxies; fields without one get none.
        slice_dz: redshift width of the density terms' slices, and of the slices in which
            the galaxies used are counted against the reference model's expectation.
        node_factor: multiply the rules' nodes per piece (2: the quadrature-error check).
        kinds: the galaxies' representations decided before (the quadrature check passes the
            fit's, :func:`popmodel.represent.represent`).
        count_fields: count the galaxies used per field and per redshift slice, and the
            number the reference model expects there (:func:`expected_counts`), into the
            report (``observed``, ``expected_reference``, ``slices``), for
            :func:`check_field_coverage`.

    Raises:
        CatalogError: invalid values (named), or no galaxy passing the cuts (the message
            counts the galaxies read and each reason they were excluded).
    """
    if posterior not in ("samples", "gauss-hermite", "auto", "reference"):
        raise ValueError(f"posterior must be 'samples', 'gauss-hermite' or 'auto', got {posterior!r}")
    if selection not in ("noisy", "hard"):
        raise ValueError(f"selection must be 'noisy' or 'hard', got {selection!r}")
    vt = volume or VolumeTable.build(survey.cosmology)
    keep, group, report = apply_survey_cuts(catalog, survey)
    if not np.any(keep):
        m_obs, z_obs, _ = point_estimates(catalog) if catalog.n_galaxies else (None, None, "")
        raise CatalogError(_no_galaxy_message(report, survey, m_obs, z_obs))
    if count_fields:
        _, z_obs, _ = point_estimates(catalog)
        _count_fields(report, survey, z_obs[keep], group[keep], group,
                      expected_counts(survey, vt, selection=selection, slice_dz=slice_dz), slice_dz)
    used = catalog.subset(np.flatnonzero(keep))
    report.posterior = posterior
    if catalog.has_sfr:  # the mass function integrates over (log M, z): the SFR is marginal
        used = dataclasses.replace(used, log_sfr=None, log_prior_sfr=None)
    _check_support(used, allow_z_above=True)  # what the model sees must lie in its support
    used, quad, rep_report = represent(
        used, posterior=posterior, interim_prior=interim_prior, gh_nodes=gh_nodes,
        cosmology=survey.cosmology, z_support=Z_SUPPORT, log_mass_support=LOG_MASS_SUPPORT,
        node_factor=node_factor, kinds=kinds)
    report.representation = rep_report.as_dict()
    report.n_kept_as_samples = int((~quad).sum())
    report.n_non_gaussian = int(rep_report.sample_reasons.get(
        "neither Gaussian nor split normal (skewness / kurtosis check)", 0))
    ugroup = group[keep]
    report.n_used = used.n_galaxies
    report.n_samples_used = int(used.n_samples.sum())
    area = np.array([f.area_sr for f in survey.fields])
    gi = used.galaxy_index
    beyond = tail_samples(used)  # zero density there (the mass function is zero)
    if beyond.any():
        used = dataclasses.replace(used, z=np.where(beyond, np.clip(used.z, 0.01, Z_SUPPORT[1]), used.z),
                                   log_mass=np.where(beyond, np.clip(used.log_mass, *LOG_MASS_SUPPORT),
                                                     used.log_mass))
    offset = (
        vt.log_dvdz_at(used.z)
        + np.log(area[ugroup[gi]])
        - used.log_prior_or_zero()
        + used.normalized_log_weights()
    )
    offset = np.where(beyond, PAD, offset)
    used_fields = [f for g, f in enumerate(survey.fields) if np.any(ugroup == g)]
    density = None
    if cosmic_variance:
        density = build_density_terms(survey, dz=slice_dz, fields=[f.name for f in used_fields])
    cv_i = cv_b = None
    if density is not None:
        cv_i, cv_b = density.assign(ugroup[gi], used.log_mass, used.z)
    blocks, index = build_blocks(
        used.offsets, used.log_mass, used.z, offset, ugroup,
        log_weight=used.normalized_log_weights(), monte_carlo=~quad,
        cv_index=cv_i, cv_bias=cv_b, chunk_size=chunk_size, dtype=dtype,
    )
    pieces = [survey.area_pieces(f.name) for f in survey.fields] if survey.overlaps else None
    breaks = None
    if density is not None:  # the density factor jumps at its slices' edges
        breaks = [np.concatenate([density.z_lo[density.field_index == g],
                                  density.z_hi[density.field_index == g]])
                  for g in range(len(survey.fields))]
    gm, gz, gw, gg = build_selection_grid(
        list(survey.fields), vt.log_dvdz_at, hard=(selection == "hard"), area_pieces=pieces,
        z_breaks=breaks,
    )
    gcv_i = gcv_b = cv_sigma = cv_chol = None
    if density is not None:
        gcv_i, gcv_b = density.assign(gg, gm, gz)
        cv_sigma = np.asarray(density.sigma_dm)
        cv_chol = density.chol  # nested fields: correlated terms
    arrays = LikelihoodData(
        blocks=blocks,
        grid_log_mass=np.asarray(gm),
        grid_z=np.asarray(gz),
        grid_log_weight=np.asarray(gw),
        grid_group=np.asarray(gg, dtype=np.int32),
        grid_cv_index=gcv_i,
        grid_cv_bias=gcv_b,
        cv_sigma=cv_sigma,
        cv_chol=cv_chol,
    )
    # the data's redshift range: the union of the ranges of the fields that hold galaxies
    zr = (min(f.z_min for f in used_fields), max(f.z_max for f in used_fields))
    return SMFData(arrays, index, used, report, vt, survey, selection, zr, density)
