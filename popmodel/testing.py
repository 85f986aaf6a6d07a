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
    "cv_calibration_summary",
    "cv_survey",
    "deep_survey",
    "draw_from_prior",
    "narrow_prior",
    "offset_chi2",
    "run_cv_calibration",
    "run_sbc",
    "sbc_rank_test",
    "sbc_rank_test_clustered",
    "sbc_ranks",
]

#: Redshifts at which the calibrations rank rho_*.
RHO_STAR_Z = (0.5, 1.0, 2.0)

#: 3D-HST mass-completeness limits converted to Prospector masses (Tal et al. 2014 limits,
#: as converted in github.com/jrleja/sfs_leja_trained_flow).
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
    """One parameter vector from a :class:`SMFPrior` (truncated normal, uniform, or uniform in
    phi* for the log phi* anchors by default)."""
    vals = {}
    for n in prior.names:
        lo, hi = prior.bounds[n]
        if n in prior.normal:
            mu, sd = prior.normal[n]
            vals[n] = float(stats.truncnorm.rvs((lo - mu) / sd, (hi - mu) / sd, loc=mu, scale=sd,
                                                random_state=rng))
        elif prior.linear_amplitude(n):  # 10^x uniform on [10^lo, 10^hi]
            vals[n] = float(np.log10(rng.uniform(10.0**lo, 10.0**hi)))
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


def sbc_rank_test_clustered(ranks: np.ndarray, n_keep: int, n_bins: int = 5) -> dict:
    """Pooled SBC rank test when each mock contributes several correlated ranks.

    The ranks of one mock's quantities (11 parameters and rho_* at three redshifts) are not
    independent: they share the mock's data and posterior correlations, so the plain pooled
    chi-square (:func:`sbc_rank_test`) treats e.g. 14 x 50 ranks as 700 independent draws and
    rejects a calibrated fit too often. The second-order Rao-Scott correction (Rao & Scott
    1981, JASA 76, 221; 1984, Ann. Stat. 12, 46) rescales the Pearson statistic by the
    eigenvalues of the design-effect matrix of the bin proportions, estimated from the
    spread of the per-mock bin counts (mocks as clusters): X^2 / (d (1 + a^2)) against
    chi-square with (n_bins - 1) / (1 + a^2) degrees of freedom, d the mean eigenvalue and a
    their coefficient of variation.

    Args:
        ranks: (n_mocks, n_quantities) ranks in 0..n_keep.
        n_keep: draws each rank was taken among.
        n_bins: bins of the rank histogram.

    Returns:
        ``{"chi2", "p_value_naive", "design_effect", "dof", "p_value"}``: the pooled Pearson
        statistic, its plain p-value, the mean design effect, the corrected degrees of
        freedom and the corrected p-value.
    """
    r = np.asarray(ranks)
    if r.ndim != 2 or r.shape[0] < 2:
        raise ValueError(f"ranks must be (n_mocks >= 2, n_quantities), got shape {r.shape}")
    n, m = r.shape
    b = (r * n_bins) // (n_keep + 1)
    y = np.stack([(b == k).sum(axis=1) for k in range(n_bins)], axis=1)  # (n, n_bins)
    total = n * m
    p0 = 1.0 / n_bins
    prop = y.sum(axis=0) / total
    chi2 = float(total * np.sum((prop - p0) ** 2) / p0)
    # covariance of the pooled proportions over mocks, against the multinomial one under H0,
    # on the first n_bins - 1 cells (the last is determined by them)
    v_cluster = np.atleast_2d(np.cov((y / m)[:, :-1], rowvar=False, ddof=1)) / n
    v_null = (np.diag(np.full(n_bins - 1, p0)) - p0 * p0) / total
    lam = np.linalg.eigvals(np.linalg.solve(v_null, v_cluster)).real
    d = float(max(lam.mean(), 1e-12))
    a2 = float(np.sum((lam - d) ** 2) / ((n_bins - 1) * d**2))
    dof = (n_bins - 1) / (1.0 + a2)
    return {"chi2": chi2, "p_value_naive": float(stats.chi2.sf(chi2, n_bins - 1)),
            "design_effect": d, "dof": dof,
            "p_value": float(stats.chi2.sf(chi2 / (d * (1.0 + a2)), dof))}


def run_sbc(n_mocks: int = 20, area: float = 40.0, n_samples: int = 8, seed: int = 2024,
            warmup: int = 150, draws: int = 100, dtype: str = "float64") -> dict:
    """Simulation-based calibration of the SMF fit (Talts et al. 2018, arXiv:1804.06788).

    Truths from :func:`narrow_prior` (which the fit also uses), one deep field of ``area``
    arcmin^2, NUTS (1 chain) per mock; returns the ranks, the pooled chi-square p-values and
    the 68% coverage of rho_*(z = 0.5, 1, 2). ``dtype``: precision of the per-sample terms
    (:class:`popmodel.smf.fit.FitConfig`).
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
    zs = np.array(RHO_STAR_Z)
    t0 = time.perf_counter()
    for k in tqdm(range(n_mocks), desc="SBC mocks"):
        truth = draw_from_prior(prior, rng)
        cat, _ = draw_mock(survey, truth, seed=seed + 1000 + k, n_samples=n_samples)
        fit = fit_smf(cat, survey, FitConfig(num_warmup=warmup, num_samples=draws, num_chains=1,
                                             n_bootstrap=0, seed=k, progress_bar=False,
                                             dtype=dtype, posterior="samples"),
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
        "nuts": {"warmup": warmup, "draws": draws, "chains": 1}, "n_keep": n_keep, "dtype": dtype,
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
              completeness: tuple[Sequence[float], Sequence[float]] | float | None = None,
              cosmology: str = "WMAP9") -> Survey:
    """Deep pencil-beam fields of known geometry (cosmic variance on), exact redshifts.

    ``completeness``: ``(z, log M)`` knots, or one log M limit at all redshifts; default the
    3D-HST limits (:data:`LEJA_COMPLETENESS_3DHST`).
    """
    if completeness is None:
        cz, cm = LEJA_COMPLETENESS_3DHST
    elif np.ndim(completeness) == 0:
        cz, cm = [z_min, z_max], [float(completeness)] * 2
    else:
        cz, cm = completeness
    a = side_arcmin[0] * side_arcmin[1]
    fields = [Field(f"F{k}", a * u.arcmin**2, z_min, z_max, cz, cm, mass_error_dex=mass_error_dex,
                    z_error=0.0, side_arcmin=side_arcmin) for k in range(n_fields)]
    return Survey(fields, cosmology=cosmology, name=f"{n_fields} pencil beams")


def run_cv_calibration(n_mocks: int = 50, *, first_mock: int = 0, n_fields: int = 5,
                       side_arcmin: tuple[float, float] = (10.0, 15.0), slice_dz: float = 0.5,
                       completeness: tuple[Sequence[float], Sequence[float]] | float | None = None,
                       seed: int = 7, warmup: int = 150, draws: int = 100, n_keep: int = 49,
                       dtype: str = "float64", gh_nodes: tuple[int, int] = (8, 3),
                       progress: bool = True) -> dict:
    """Calibration of the fit with cosmic variance (issue: per-field density terms).

    Each mock draws the 11 parameters from :func:`narrow_prior` and every field-and-slice
    density contrast from its prior, applies them (:func:`popmodel.mock.draw_mock` with
    ``cosmic_variance=True``), and is fitted twice with NUTS (1 chain; Gauss-Hermite posteriors
    of the moment-matched mock samples): with the density terms and without. Returns the SBC
    ranks of the 11 parameters and of rho_*(z = 0.5, 1, 2) with the terms (ranks among
    ``n_keep`` draws thinned evenly from the ``draws``, so that the kept draws are nearly
    independent; Talts et al. 2018, arXiv:1804.06788, section 5), their pooled chi-square
    p-values, and the 68% coverage of rho_* with and without the terms, with the 95% binomial
    band of the with-terms rate (:func:`cv_calibration_summary`).

    Args:
        n_mocks, first_mock: run mocks ``first_mock ... first_mock + n_mocks - 1`` (truths are
            drawn in sequence from ``seed``, so runs of disjoint ranges can be merged with
            :func:`cv_calibration_summary`).
        completeness: the fields' mass limits (:func:`cv_survey`; default 3D-HST's).
        dtype, gh_nodes: likelihood settings (:class:`popmodel.smf.fit.FitConfig`).
    """
    import time

    from tqdm import tqdm

    from popmodel.mock import draw_mock
    from popmodel.smf.derived import log10_rho_star
    from popmodel.smf.fit import FitConfig, fit_smf

    if not 1 <= n_keep <= draws:
        raise ValueError(f"n_keep must be between 1 and draws={draws}, got {n_keep}")
    prior = narrow_prior(2.0)
    survey = cv_survey(n_fields, side_arcmin, completeness=completeness)
    rng = np.random.default_rng(seed)
    for _ in range(first_mock):
        draw_from_prior(prior, rng)
    zs = np.array(RHO_STAR_Z)
    edges = np.arange(survey.fields[0].z_min, survey.fields[0].z_max + 1e-9, slice_dz)
    per_mock = []
    t0 = time.perf_counter()
    for k in tqdm(range(first_mock, first_mock + n_mocks), desc="cosmic-variance mocks",
                  disable=not progress):
        tm = time.perf_counter()
        truth = draw_from_prior(prior, rng)
        cat, _ = draw_mock(survey, truth, seed=seed + 1000 + k, n_samples=4, moment_matched=True,
                            cosmic_variance=True, slice_dz=slice_dz)
        lt = log10_rho_star(truth, zs)
        counts = [int(np.sum((cat.fields == f) & (cat.obs_z >= a) & (cat.obs_z < b)))
                  for f in survey.field_names for a, b in itertools.pairwise(edges)]
        rec = {"mock": k, "mock_seed": seed + 1000 + k, "n_galaxies": int(cat.n_galaxies),
               "min_per_field_slice": min(counts)}
        for cv in (True, False):
            cfg = FitConfig(num_warmup=warmup, num_samples=draws, num_chains=1, n_bootstrap=0,
                            seed=k, progress_bar=False, posterior="gauss-hermite",
                            cosmic_variance=cv, slice_dz=slice_dz, dtype=dtype,
                            gh_nodes=gh_nodes, compression_draws=0)  # Gaussian by construction
            tf = time.perf_counter()
            fit = fit_smf(cat, survey, cfg, prior=prior, log=lambda s: None)
            tag = "with" if cv else "without"
            rec[f"fit_s_{tag}"] = round(time.perf_counter() - tf, 1)
            rec[f"divergences_{tag}"] = fit.diagnostics["divergences"]
            rec[f"min_ess_{tag}"] = round(min(fit.diagnostics["ess_bulk"].values()), 1)
            lr = log10_rho_star(fit.draws(), zs)
            lo, hi = np.percentile(lr, [16, 84], axis=0)
            rec[f"rho_cover_{tag}"] = ((lo <= lt) & (lt <= hi)).tolist()
            if cv:
                tv = truth.to_dict()
                rec["ranks_parameters"] = [sbc_ranks(fit.samples[n], float(tv[n]), n_keep)
                                           for n in prior.names]
                rec["ranks_rho_star"] = [sbc_ranks(lr[:, j], float(lt[j]), n_keep)
                                         for j in range(zs.size)]
        rec["wall_s"] = round(time.perf_counter() - tm, 1)
        per_mock.append(rec)
    cz, cm = (survey.fields[0].completeness_z, survey.fields[0].completeness_log_mass)
    settings = {
        "n_fields": n_fields, "side_arcmin": list(side_arcmin),
        "slice_dz": slice_dz, "seed": seed, "mock_seeds": f"{seed + 1000} + mock index",
        "cosmology": "WMAP9", "imf": "Chabrier (masses as drawn from the Leja+20 model)",
        "completeness": {"z": np.asarray(cz, float).tolist(),
                         "log_mass": np.asarray(cm, float).tolist()},
        "nuts": {"warmup": warmup, "draws": draws, "chains": 1, "seed": "mock index"},
        "n_keep": n_keep, "dtype": dtype, "gh_nodes": list(gh_nodes),
        "posterior": "gauss-hermite (moment-matched mock samples, 4 per galaxy, exact z)",
        "prior": "Normal(Leja+20 median, 2 x published sigma), truncated; deltas N(0, sigma_DM)",
    }
    return cv_calibration_summary(per_mock, settings, wall_s=time.perf_counter() - t0)


def cv_calibration_summary(per_mock: Sequence[dict], settings: dict, *,
                           wall_s: float | None = None) -> dict:
    """Pool the per-mock records of :func:`run_cv_calibration` (one run or several merged)."""
    from popmodel import __version__

    recs = sorted(per_mock, key=lambda r: r["mock"])
    idx = [r["mock"] for r in recs]
    if len(set(idx)) != len(idx):
        raise ValueError(f"mock indices repeat: {idx}")
    n_keep = settings["n_keep"]
    ranks = [v for r in recs for v in r["ranks_parameters"]]
    rho_ranks = [v for r in recs for v in r["ranks_rho_star"]]
    cw = np.array([r["rho_cover_with"] for r in recs])
    cwo = np.array([r["rho_cover_without"] for r in recs])
    n_int = cw.size
    rate_with, rate_without = float(cw.mean()), float(cwo.mean())
    band = [float(x) / n_int for x in stats.binom.interval(0.95, n_int, rate_with)]
    pooled = ranks + rho_ranks
    mat = np.array([list(r["ranks_parameters"]) + list(r["ranks_rho_star"]) for r in recs])
    return {
        "popmodel_version": __version__,
        "n_mocks": len(recs), **settings,
        "min_galaxies_per_field_slice": int(min(r["min_per_field_slice"] for r in recs)),
        "median_min_galaxies_per_field_slice": float(
            np.median([r["min_per_field_slice"] for r in recs])),
        "ranks_parameters": ranks,
        "ranks_rho_star": rho_ranks,
        "sbc_chi2_p_value_5_bins": sbc_rank_test(pooled, n_keep, 5),
        "sbc_chi2_p_value_10_bins": sbc_rank_test(pooled, n_keep, 10),
        "sbc_chi2_p_value_5_bins_parameters_only": sbc_rank_test(ranks, n_keep, 5),
        "sbc_chi2_p_value_5_bins_rho_star_only": sbc_rank_test(rho_ranks, n_keep, 5),
        # the same pooled tests with the Rao-Scott correction for the correlation of one
        # mock's 14 ranks (sbc_rank_test_clustered): the valid version of the pooled test
        "sbc_clustered_5_bins": sbc_rank_test_clustered(mat, n_keep, 5) if len(recs) > 1 else None,
        "sbc_clustered_10_bins": sbc_rank_test_clustered(mat, n_keep, 10) if len(recs) > 1 else None,
        "sbc_chi2_p_value_5_bins_by_quantity": {
            name: sbc_rank_test(mat[:, j], n_keep, 5) for j, name in enumerate(
                narrow_prior().names + [f"log_rho_star_z{z:g}" for z in RHO_STAR_Z])},
        "rho_star_68_coverage_with_terms": rate_with,
        "rho_star_68_coverage_without_terms": rate_without,
        "rho_star_68_coverage_with_terms_95_band": band,
        "without_outside_band": bool(rate_without < band[0] or rate_without > band[1]),
        "rho_star_68_coverage_by_z_with": cw.mean(axis=0).tolist(),
        "rho_star_68_coverage_by_z_without": cwo.mean(axis=0).tolist(),
        "total_divergences_with": int(sum(r["divergences_with"] for r in recs)),
        "per_mock": recs,
        "wall_s": wall_s if wall_s is not None else float(sum(r["wall_s"] for r in recs)),
    }
