"""Helpers shared by the tests, the calibration scripts and the notebooks: small surveys,
narrow priors, offsets in sigma, and simulation-based-calibration ranks."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import astropy.units as u
import numpy as np
from scipy import stats

from popmodel.smf.evolution import LEJA2020_MEDIAN, LEJA2020_SIGMA, ContinuityParams
from popmodel.smf.model import SMFPrior
from popmodel.survey import Field, Survey

__all__ = [
    "LEJA_COMPLETENESS_3DHST",
    "cv_survey",
    "deep_survey",
    "draw_from_prior",
    "narrow_prior",
    "offset_chi2",
    "run_cv_calibration",
    "run_sbc",
    "sbc_rank_test",
    "sbc_ranks",
]

#: 3D-HST mass-completeness limits converted to Prospector masses (science.md section 1.5).
LEJA_COMPLETENESS_3DHST = ([0.65, 1.0, 1.5, 2.1, 3.0],
                           [8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536])


def deep_survey(
    n_fields: int = 1,
    area_arcmin2: float = 150.0,
    *,
    z_min: float = 0.2,
    z_max: float = 3.0,
    mass_error_dex: float | Sequence[float] = (0.1, 0.2, 0.3),
    z_error: float = 0.02,
    completeness_shift: float = 0.0,
    cosmology: str = "WMAP9",
) -> Survey:
    """A 3D-HST-like survey of identical deep fields (Leja et al. 2022 limits)."""
    cz, cm = LEJA_COMPLETENESS_3DHST
    fields = [
        Field(f"F{k}", area_arcmin2 * u.arcmin**2, z_min, z_max, cz,
              np.asarray(cm) + completeness_shift, mass_error_dex=mass_error_dex, z_error=z_error)
        for k in range(n_fields)
    ]
    return Survey(fields, cosmology=cosmology, name=f"{n_fields} deep field(s)")


def narrow_prior(scale: float = 2.0) -> SMFPrior:
    """Normal priors centred on the Leja et al. (2020) medians, ``scale`` x their published
    sigma wide, truncated to the default bounds (for simulation-based calibration)."""
    return SMFPrior(normal={k: (LEJA2020_MEDIAN[k], scale * LEJA2020_SIGMA[k]) for k in LEJA2020_MEDIAN})


def draw_from_prior(prior: SMFPrior, rng: np.random.Generator) -> ContinuityParams:
    """One parameter vector from a (truncated-normal / uniform) :class:`SMFPrior`."""
    vals = {}
    for n in prior.names:
        lo, hi = prior.bounds[n]
        if n in prior.normal:
            mu, sd = prior.normal[n]
            vals[n] = float(stats.truncnorm.rvs((lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd,
                                                random_state=rng))
        else:
            vals[n] = float(rng.uniform(lo, hi))
    return ContinuityParams.from_dict(vals, prior.anchor_z)


def offset_chi2(estimate: dict[str, float], cov: np.ndarray, truth: dict[str, float],
                names: Sequence[str]) -> float:
    """(estimate - truth)^T Cov^-1 (estimate - truth) over ``names`` (chi2 with len(names) dof)."""
    d = np.array([estimate[n] - truth[n] for n in names])
    return float(d @ np.linalg.solve(cov, d))


def sbc_ranks(draws: np.ndarray, truth: float, n_keep: int) -> int:
    """Rank of ``truth`` among ``n_keep`` draws thinned evenly from ``draws`` (0..n_keep)."""
    d = np.asarray(draws).reshape(-1)
    idx = np.linspace(0, d.size - 1, n_keep).round().astype(int)
    return int(np.sum(d[idx] < truth))


def sbc_rank_test(ranks: Sequence[int], n_keep: int, n_bins: int = 5) -> float:
    """Chi-square p-value that pooled SBC ranks (0..n_keep) are uniform, in ``n_bins`` bins."""
    r = np.asarray(ranks)
    counts = np.bincount((r * n_bins) // (n_keep + 1), minlength=n_bins)
    return float(stats.chisquare(counts).pvalue)


def run_sbc(n_mocks: int = 20, area: float = 40.0, n_samples: int = 8, seed: int = 2024,
            warmup: int = 150, draws: int = 100) -> dict:
    """Simulation-based calibration of the SMF fit (Talts et al. 2018, arXiv:1804.06788).

    Truths from :func:`narrow_prior` (which the fit also uses), one deep field of ``area``
    arcmin^2, NUTS (1 chain) per mock; returns the ranks, the pooled chi-square p-values and
    the 68% coverage of rho_*(z = 0.5, 1, 2).
    """
    import time

    from tqdm import tqdm

    from popmodel import __version__
    from popmodel.mock import draw_mock
    from popmodel.smf.derived import log10_rho_star
    from popmodel.smf.fit import FitConfig, fit_smf

    prior = narrow_prior(2.0)
    survey = deep_survey(1, area, mass_error_dex=(0.1, 0.2))
    rng = np.random.default_rng(seed)
    n_keep = 49
    ranks, cover = [], []
    zs = np.array([0.5, 1.0, 2.0])
    t0 = time.perf_counter()
    for k in tqdm(range(n_mocks), desc="SBC mocks"):
        truth = draw_from_prior(prior, rng)
        cat, _ = draw_mock(survey, truth, seed=seed + 1000 + k, n_samples=n_samples)
        fit = fit_smf(cat, survey, FitConfig(num_warmup=warmup, num_samples=draws, num_chains=1,
                                             n_bootstrap=0, seed=k, progress_bar=False),
                      prior=prior, log=lambda s: None)
        tv = truth.to_dict()
        ranks += [sbc_ranks(fit.samples[n], float(tv[n]), n_keep) for n in prior.names]
        lr = log10_rho_star(fit.draws(), zs)
        lt = log10_rho_star(truth, zs)
        lo, hi = np.percentile(lr, [16, 84], axis=0)
        cover.append(((lo <= lt) & (lt <= hi)).tolist())
    cover = np.array(cover)
    return {
        "popmodel_version": __version__,
        "n_mocks": n_mocks, "area_arcmin2": area, "n_samples_per_galaxy": n_samples, "seed": seed,
        "nuts": {"warmup": warmup, "draws": draws, "chains": 1}, "n_keep": n_keep,
        "prior": "Normal(Leja+20 median, 2 x published sigma), truncated to the default bounds",
        "ranks": ranks,
        "sbc_chi2_p_value_5_bins": sbc_rank_test(ranks, n_keep, 5),
        "sbc_chi2_p_value_10_bins": sbc_rank_test(ranks, n_keep, 10),
        "rho_star_68_coverage": dict(zip(["z0.5", "z1", "z2"], cover.mean(axis=0).tolist(),
                                         strict=True)),
        "wall_s": time.perf_counter() - t0,
    }


def cv_survey(n_fields: int = 5, side_arcmin: tuple[float, float] = (10.0, 15.0), *,
              z_min: float = 0.5, z_max: float = 2.5, mass_error_dex: float = 0.15,
              cosmology: str = "WMAP9") -> Survey:
    """Deep pencil-beam fields of known geometry (cosmic variance on), exact redshifts."""
    cz, cm = LEJA_COMPLETENESS_3DHST
    a = side_arcmin[0] * side_arcmin[1]
    fields = [Field(f"F{k}", a * u.arcmin**2, z_min, z_max, cz, cm, mass_error_dex=mass_error_dex,
                    z_error=0.0, side_arcmin=side_arcmin) for k in range(n_fields)]
    return Survey(fields, cosmology=cosmology, name=f"{n_fields} pencil beams")


def run_cv_calibration(n_mocks: int = 50, *, n_fields: int = 5,
                       side_arcmin: tuple[float, float] = (10.0, 15.0), slice_dz: float = 0.5,
                       seed: int = 7, warmup: int = 150, draws: int = 100,
                       progress: bool = True) -> dict:
    """Calibration of the fit with cosmic variance (issue: per-field density terms).

    Each mock draws the 11 parameters from :func:`narrow_prior` and every field-and-slice
    density contrast from its prior, applies them (:func:`popmodel.mock.draw_mock` with
    ``cosmic_variance=True``), and is fitted twice with NUTS (1 chain; Gauss-Hermite posteriors
    of the moment-matched mock samples): with the density terms and without. Returns the SBC
    ranks of the 11 parameters and of rho_*(z = 0.5, 1, 2) with the terms, their pooled
    chi-square p-values, and the 68% coverage of rho_* with and without the terms, with the
    95% binomial band of the with-terms rate.
    """
    import time

    from tqdm import tqdm

    from popmodel import __version__
    from popmodel.mock import draw_mock
    from popmodel.smf.derived import log10_rho_star
    from popmodel.smf.fit import FitConfig, fit_smf

    prior = narrow_prior(2.0)
    survey = cv_survey(n_fields, side_arcmin)
    rng = np.random.default_rng(seed)
    n_keep = 49
    zs = np.array([0.5, 1.0, 2.0])
    ranks, rho_ranks, cover_with, cover_without, min_counts = [], [], [], [], []
    t0 = time.perf_counter()
    for k in tqdm(range(n_mocks), desc="cosmic-variance mocks", disable=not progress):
        truth = draw_from_prior(prior, rng)
        cat, _ = draw_mock(survey, truth, seed=seed + 1000 + k, n_samples=4, moment_matched=True,
                            cosmic_variance=True, slice_dz=slice_dz)
        lt = log10_rho_star(truth, zs)
        edges = np.arange(survey.fields[0].z_min, survey.fields[0].z_max + 1e-9, slice_dz)
        counts = [np.sum((cat.fields == f) & (cat.obs_z >= a) & (cat.obs_z < b))
                  for f in survey.field_names for a, b in itertools.pairwise(edges)]
        min_counts.append(int(min(counts)))
        for cv, cover in ((True, cover_with), (False, cover_without)):
            cfg = FitConfig(num_warmup=warmup, num_samples=draws, num_chains=1, n_bootstrap=0,
                            seed=k, progress_bar=False, posterior="gauss-hermite",
                            cosmic_variance=cv, slice_dz=slice_dz)
            fit = fit_smf(cat, survey, cfg, prior=prior, log=lambda s: None)
            lr = log10_rho_star(fit.draws(), zs)
            lo, hi = np.percentile(lr, [16, 84], axis=0)
            cover.append(((lo <= lt) & (lt <= hi)).tolist())
            if cv:
                tv = truth.to_dict()
                ranks += [sbc_ranks(fit.samples[n], float(tv[n]), n_keep) for n in prior.names]
                rho_ranks += [sbc_ranks(lr[:, j], float(lt[j]), n_keep) for j in range(zs.size)]
    cw, cwo = np.array(cover_with), np.array(cover_without)
    n_int = cw.size
    rate_with, rate_without = float(cw.mean()), float(cwo.mean())
    band = [float(x) / n_int for x in stats.binom.interval(0.95, n_int, rate_with)]
    pooled = ranks + rho_ranks
    return {
        "popmodel_version": __version__,
        "n_mocks": n_mocks, "n_fields": n_fields, "side_arcmin": list(side_arcmin),
        "slice_dz": slice_dz, "seed": seed, "cosmology": "WMAP9",
        "nuts": {"warmup": warmup, "draws": draws, "chains": 1}, "n_keep": n_keep,
        "posterior": "gauss-hermite (moment-matched mock samples)",
        "prior": "Normal(Leja+20 median, 2 x published sigma), truncated; deltas N(0, sigma_DM)",
        "min_galaxies_per_field_slice": int(min(min_counts)),
        "median_min_galaxies_per_field_slice": float(np.median(min_counts)),
        "ranks_parameters": ranks,
        "ranks_rho_star": rho_ranks,
        "sbc_chi2_p_value_5_bins": sbc_rank_test(pooled, n_keep, 5),
        "sbc_chi2_p_value_10_bins": sbc_rank_test(pooled, n_keep, 10),
        "rho_star_68_coverage_with_terms": rate_with,
        "rho_star_68_coverage_without_terms": rate_without,
        "rho_star_68_coverage_with_terms_95_band": band,
        "without_outside_band": bool(rate_without < band[0] or rate_without > band[1]),
        "rho_star_68_coverage_by_z_with": cw.mean(axis=0).tolist(),
        "rho_star_68_coverage_by_z_without": cwo.mean(axis=0).tolist(),
        "wall_s": time.perf_counter() - t0,
    }
