"""From a posterior catalogue and a survey to likelihood arrays, counting every galaxy cut."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from popmodel.catalog import CatalogError, InterimPrior, PosteriorCatalog
from popmodel.compress import gauss_hermite, gaussian_galaxies, quadrature_galaxies
from popmodel.cosmology import VolumeTable
from popmodel.smf.density import DEFAULT_SLICE_DZ, DensityTerms, build_density_terms
from popmodel.smf.likelihood import BlockIndex, LikelihoodData, build_blocks, build_selection_grid
from popmodel.survey import Survey

__all__ = [
    "LOG_MASS_SUPPORT",
    "Z_SUPPORT",
    "SMFData",
    "SelectionReport",
    "apply_survey_cuts",
    "prepare_smf_data",
]

#: The model's support: samples outside it are an error, not something to drop.
LOG_MASS_SUPPORT = (4.0, 14.0)
Z_SUPPORT = (0.0, 12.0)


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

    def as_dict(self) -> dict:
        return asdict(self)

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
    percentile catalogues do), else the weighted median of each galaxy's samples.
    """
    obs_m = getattr(catalog, "obs_log_mass", None)
    obs_z = getattr(catalog, "obs_z", None)
    if obs_m is not None and obs_z is not None:
        return np.asarray(obs_m, float), np.asarray(obs_z, float), "catalogue values"
    pe = catalog.point_estimates()
    return pe.log_mass, pe.z, "weighted median of the posterior samples"


def _check_support(catalog: PosteriorCatalog) -> None:
    gi = catalog.galaxy_index
    for col, (lo, hi) in (("log_mass", LOG_MASS_SUPPORT), ("z", Z_SUPPORT)):
        x = getattr(catalog, col)
        bad = (x <= lo) | (x > hi) if col == "z" else (x < lo) | (x > hi)
        if np.any(bad):
            k = int(np.flatnonzero(bad)[0])
            raise CatalogError(
                f"galaxy {str(catalog.ids[gi[k]])!r}: column {col!r} has sample {float(x[k])!r} outside the "
                f"model's support {'(' if col == 'z' else '['}{lo}, {hi}] "
                f"({int(bad.sum())} samples in {len(np.unique(gi[bad]))} galaxies)"
            )


def apply_survey_cuts(catalog: PosteriorCatalog, survey: Survey
                      ) -> tuple[np.ndarray, np.ndarray, SelectionReport]:
    """The survey's cuts on the catalogue point estimates, every dropped galaxy counted.

    Returns:
        ``(keep, group, report)``: ``(N,)`` mask of the galaxies that enter the fit, ``(N,)``
        field index of each galaxy, and the :class:`SelectionReport` (``n_used`` and the
        posterior fields are filled in by :func:`prepare_smf_data`).

    Raises:
        CatalogError: for a galaxy in a field the survey does not have.
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
    # field of each galaxy, and the field that owns its (footprint, z) range
    group, owner = survey.resolve_regions(catalog.fields, z_obs)
    keep = np.ones(catalog.n_galaxies, bool)
    report = SelectionReport(n_input=catalog.n_galaxies, n_used=0, point_estimate=how)
    for g, f in enumerate(survey.fields):
        inf = group == g
        in_z = (z_obs >= f.z_min) & (z_obs <= f.z_max)
        mine = owner == g
        above = m_obs >= f.log_mass_limit(z_obs)
        report.outside_z_range[f.name] = int(np.sum(inf & ~in_z))
        if survey.overlaps:
            report.owned_by_other_field[f.name] = {
                names[o]: int(np.sum(inf & in_z & (owner == o)))
                for o in range(len(names)) if o != g and np.any(inf & in_z & (owner == o))
            }
        report.below_completeness[f.name] = int(np.sum(inf & in_z & mine & ~above))
        keep &= ~inf | (in_z & mine & above)
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
        slice_dz: redshift width of the density terms' slices.
    """
    if posterior not in ("samples", "gauss-hermite", "auto"):
        raise ValueError(f"posterior must be 'samples', 'gauss-hermite' or 'auto', got {posterior!r}")
    if selection not in ("noisy", "hard"):
        raise ValueError(f"selection must be 'noisy' or 'hard', got {selection!r}")
    vt = volume or VolumeTable.build(survey.cosmology)
    keep, group, report = apply_survey_cuts(catalog, survey)
    used = catalog.subset(np.flatnonzero(keep))
    report.posterior = posterior
    if posterior in ("gauss-hermite", "auto"):
        non_gaussian = None
        if posterior == "auto":
            non_gaussian = ~gaussian_galaxies(used)
            report.n_non_gaussian = int(non_gaussian.sum())
        used = gauss_hermite(used, n_mass=gh_nodes[0], n_z=gh_nodes[1],
                             interim_prior=interim_prior, on_invalid="keep",
                             keep_samples=non_gaussian, log_mass_min=LOG_MASS_SUPPORT[0],
                             log_mass_max=LOG_MASS_SUPPORT[1], z_max=Z_SUPPORT[1])
        report.n_kept_as_samples = used.meta["compression"]["n_kept_as_samples"]
    _check_support(used)  # only what the model sees must lie in its support
    ugroup = group[keep]
    report.n_used = used.n_galaxies
    report.n_samples_used = int(used.n_samples.sum())
    if used.n_galaxies == 0:
        raise CatalogError("no galaxy passes the survey's redshift and completeness cuts")
    area = np.array([f.area_sr for f in survey.fields])
    gi = used.galaxy_index
    offset = (
        vt.log_dvdz_at(used.z)
        + np.log(area[ugroup[gi]])
        - used.log_prior_or_zero()
        + used.normalized_log_weights()
    )
    used_fields = [f for g, f in enumerate(survey.fields) if np.any(ugroup == g)]
    density = None
    if cosmic_variance:
        density = build_density_terms(survey, dz=slice_dz, fields=[f.name for f in used_fields])
    cv_i = cv_b = None
    if density is not None:
        cv_i, cv_b = density.assign(ugroup[gi], used.log_mass, used.z)
    blocks, index = build_blocks(
        used.offsets, used.log_mass, used.z, offset, ugroup,
        log_weight=used.normalized_log_weights(), monte_carlo=~quadrature_galaxies(used),
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
    gcv_i = gcv_b = cv_sigma = None
    if density is not None:
        gcv_i, gcv_b = density.assign(gg, gm, gz)
        cv_sigma = np.asarray(density.sigma_dm)
    arrays = LikelihoodData(
        blocks=blocks,
        grid_log_mass=np.asarray(gm),
        grid_z=np.asarray(gz),
        grid_log_weight=np.asarray(gw),
        grid_group=np.asarray(gg, dtype=np.int32),
        grid_cv_index=gcv_i,
        grid_cv_bias=gcv_b,
        cv_sigma=cv_sigma,
    )
    # the data's redshift range: the union of the ranges of the fields that hold galaxies
    zr = (min(f.z_min for f in used_fields), max(f.z_max for f in used_fields))
    return SMFData(arrays, index, used, report, vt, survey, selection, zr, density)
