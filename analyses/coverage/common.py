"""Shared helpers of the coverage study (issue 16, item 4): data, fits, PPC and held-out scores.

Not run by itself; imported by the step scripts of ``analyses/coverage/`` (run them with
``JAX_ENABLE_X64=1 python analyses/coverage/<script>.py`` from the repository root).

Conventions of the study
------------------------
* Data: ``threedhst_catalog(n_samples=16, mass_error_dex=me, seed=0, z_min=0.5, z_max=2.55)``
  and ``threedhst_survey(mass_error_dex=me)`` (z 0.5-2.55, Tomczak+14 limits).
* Fits: ``FitConfig(method="laplace", n_bootstrap=0, num_samples=100, num_chains=4, seed=0,
  anchor_z=...)`` (400 Laplace draws); the baseline anchors are written out explicitly,
  ``BASE_ANCHORS = (0.2, 1.6, 3.0)`` (the package default when this study was made), so that
  a change of the package default does not change these numbers.
* PPC: the edges of ``popmodel.smf.checks.write_model_checks`` (0.25 dex from the lowest limit
  rounded down to 12; four z bins over 0.5-2.55), all 400 draws, one Poisson draw each with
  ``np.random.default_rng(seed)``; density terms of each draw included (``density_draws``).
* Bin classes per (field, z bin): ``lowest`` = the lowest mass bin whose upper edge exceeds the
  smallest limit inside the z bin (the lowest populated bin, straddling the limit);
  ``second`` = the bin above it; ``rest`` = the others. A second partition: ``straddling``
  (lower edge below the largest limit inside the z bin: the limit cuts through the bin for part
  of the z bin) vs ``complete``.
"""

from __future__ import annotations

import os

# multi-threaded OpenBLAS on a busy 2-core machine made predicted_counts' matrix products ~100x
# slower (4 s instead of 0.03 s each); one thread (set before numpy is first imported)
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import dataclasses
import json
import pickle
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy.special import logsumexp
from scipy.stats import poisson

REPO = Path(__file__).resolve().parents[2]
RECORD = REPO / "analyses" / "recorded" / "coverage_study.json"
CACHE = Path(os.environ.get("COVERAGE_CACHE", "/tmp/coverage_cache"))

BASE_ANCHORS = (0.2, 1.6, 3.0)
INSIDE_ANCHORS = (0.5, 1.525, 2.55)
CUBIC_ANCHORS = (0.5, 1.183, 1.867, 2.55)
Z_MIN, Z_MAX = 0.5, 2.55
N_SAMPLES = 16
CAT_SEED = 0
BAND_DEX = 0.2


def fit_config(anchor_z=BASE_ANCHORS, seed: int = 0):
    from popmodel.smf.fit import FitConfig

    return FitConfig(method="laplace", n_bootstrap=0, num_samples=100, num_chains=4, seed=seed,
                     anchor_z=tuple(anchor_z), progress_bar=False)


def raise_limits(survey, dex: float):
    """The survey with every field's completeness limits raised by ``dex``."""
    from popmodel.survey import Survey

    if dex == 0:
        return survey
    fields = tuple(dataclasses.replace(f, completeness_log_mass=np.asarray(f.completeness_log_mass) + dex)
                   for f in survey.fields)
    return Survey(fields=fields, cosmology=survey.cosmology, name=f"{survey.name} (+{dex} dex)",
                  imf=survey.imf)


def sub_survey(survey, names):
    from popmodel.survey import Survey

    return Survey(fields=tuple(f for f in survey.fields if f.name in names),
                  cosmology=survey.cosmology, name=f"{survey.name} {list(names)}", imf=survey.imf)


def load_data(mass_error_dex: float = 0.1):
    from popmodel.datasets import threedhst_catalog, threedhst_survey

    survey = threedhst_survey(z_min=Z_MIN, z_max=Z_MAX, mass_error_dex=mass_error_dex)
    cat, _ = threedhst_catalog(n_samples=N_SAMPLES, mass_error_dex=mass_error_dex, seed=CAT_SEED,
                               z_min=Z_MIN, z_max=Z_MAX)
    return cat, survey


class Lite:
    """What the checks need of a fit: ``data`` (survey, volume, density), ``samples``, draws."""

    def __init__(self, survey, density, samples, anchor_z, names, map_params, timing):
        from popmodel.cosmology import VolumeTable

        self.data = SimpleNamespace(survey=survey, density=density,
                                    volume=VolumeTable.build(survey.cosmology))
        self.samples = samples
        self.anchor_z = tuple(anchor_z)
        self.names = names
        self.map_params = map_params
        self.timing = timing

    def draws(self):
        from popmodel.smf.evolution import ContinuityParams

        flat = {k: np.asarray(v).reshape(-1) for k, v in self.samples.items() if k in self.names}
        return ContinuityParams.from_dict(flat, self.anchor_z)

    def with_survey(self, survey):
        """A view whose predictions use another survey (same fields and slices)."""
        out = object.__new__(Lite)
        out.__dict__.update(self.__dict__)
        out.data = SimpleNamespace(survey=survey, density=self.data.density, volume=self.data.volume)
        return out


def run_fit(tag: str, catalog, survey, anchor_z=BASE_ANCHORS, *, refit: bool = False,
            config=None) -> Lite:
    """Laplace fit (cached in ``CACHE/<tag>.pkl``), returned as a :class:`Lite`; ``config``
    replaces :func:`fit_config` of ``anchor_z``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"{tag}.pkl"
    if path.exists() and not refit:
        with open(path, "rb") as fh:
            d = pickle.load(fh)
        print(f"[{tag}] loaded cached fit ({d['timing']['wall_s']:.0f} s when run)", flush=True)
        return Lite(**d)
    from popmodel.smf.fit import fit_smf

    t0 = time.perf_counter()
    fit = fit_smf(catalog, survey, config or fit_config(anchor_z), log=lambda s: None)
    wall = time.perf_counter() - t0
    print(f"[{tag}] fit in {wall:.0f} s; MAP converged={fit.map.converged}", flush=True)
    d = {"survey": fit.data.survey, "density": fit.data.density,
             "samples": {k: np.asarray(v) for k, v in fit.samples.items()},
             "anchor_z": tuple(fit.prior.anchor_z), "names": list(fit.prior.names),
             "map_params": {k: float(v) for k, v in fit.map.params.items()},
             "timing": {"wall_s": wall, **{k: float(v) for k, v in fit.timing.items()},
                     "n_galaxies_fit": int(fit.data.report.n_selected)
                     if hasattr(fit.data.report, "n_selected") else None,
                     "map_converged": bool(fit.map.converged)}}
    with open(path, "wb") as fh:
        pickle.dump(d, fh)
    return Lite(**d)


def deltas_of(fit: Lite):
    dens = fit.data.density
    if dens is None:
        return None
    return np.stack([np.asarray(fit.samples[lab]).reshape(-1) for lab in dens.labels], axis=-1)


def default_edges(survey):
    """The edges of write_model_checks for this survey (its own limits)."""
    n = max(1, round((Z_MAX - Z_MIN) / 0.5))
    z_e = np.linspace(Z_MIN, Z_MAX, n + 1)
    m_lo = np.floor(min(float(np.min(f.completeness_log_mass)) for f in survey.fields) * 4) / 4
    return np.arange(m_lo, 12.0 + 1e-9, 0.25), z_e


def bin_classes(survey, m_e, z_e):
    """(F, nM, nZ) arrays: class index (0 lowest, 1 second, 2 rest) and straddling flag."""
    n_f, n_m, n_z = len(survey.fields), m_e.size - 1, z_e.size - 1
    cls = np.full((n_f, n_m, n_z), 2)
    strad = np.zeros((n_f, n_m, n_z), bool)
    for g, f in enumerate(survey.fields):
        for j in range(n_z):
            zz = np.linspace(z_e[j], z_e[j + 1], 201)
            lim = f.log_mass_limit(zz)
            i0 = int(np.flatnonzero(m_e[1:] > lim.min())[0])
            cls[g, i0, j] = 0
            if i0 + 1 < n_m:
                cls[g, i0 + 1, j] = 1
            cls[g, :i0, j] = -1  # below every limit: never populated
            strad[g, :, j] = (m_e[:-1] < lim.max()) & (m_e[1:] > lim.min())
    return cls, strad


def ppc(fit: Lite, catalog, survey=None, m_e=None, z_e=None, *, seed: int = 0, deltas="fit"):
    """PPC coverage and its breakdown for a fit (optionally on another survey / edges).

    ``deltas``: "fit" (the draws' density terms), None (cosmic mean) or a (D, G) array.
    """
    from popmodel.smf.checks import (
        observed_counts,
        posterior_predictive_counts,
        ppc_coverage,
        predicted_counts,
    )

    survey = survey or fit.data.survey
    d_e = default_edges(survey)
    m_e = d_e[0] if m_e is None else np.asarray(m_e)
    z_e = d_e[1] if z_e is None else np.asarray(z_e)
    view = fit.with_survey(survey)
    dl = deltas_of(fit) if isinstance(deltas, str) else deltas
    mu = predicted_counts(view.data, fit.draws(), m_e, z_e, deltas=dl)
    rng = np.random.default_rng(seed)
    pred = posterior_predictive_counts(mu, rng)
    obs = observed_counts(catalog, survey, m_e, z_e)
    frac, _t = ppc_coverage(obs, pred, 0.95, survey=survey, log_mass_edges=m_e, z_edges=z_e)
    return summarize_ppc(obs, mu, pred, survey, m_e, z_e, frac)


def summarize_ppc(obs, mu, pred, survey, m_e, z_e, frac=None):
    from popmodel.smf.checks import central_interval

    lo, hi = central_interval(pred, 0.95)
    covered = (obs >= lo) & (obs <= hi)
    scored = (obs > 0) | (hi > 0)
    mean = mu.mean(axis=0)
    resid = np.where(mean > 0, (obs - mean) / np.sqrt(np.maximum(mean, 1e-300)), 0.0)
    cls, strad = bin_classes(survey, m_e, z_e)
    out = {"coverage": float(covered[scored].mean()), "n_scored": int(scored.sum()),
           "n_missed": int((scored & ~covered).sum()),
           "n_missed_obs_below": int((scored & (obs < lo)).sum()),
           "n_missed_obs_above": int((scored & (obs > hi)).sum()),
           "observed_total": int(obs.sum()), "predicted_total": float(mean.sum()),
           "log_mass_edges": [float(x) for x in m_e], "z_edges": [float(x) for x in z_e]}
    by = {}
    for name, mask in (("lowest", cls == 0), ("second", cls == 1), ("rest", cls == 2),
                       ("not_lowest", cls >= 1), ("straddling", strad), ("complete", ~strad)):
        s = mask & scored
        n = int(s.sum())
        by[name] = {
            "n_scored": n,
            "coverage": float(covered[s].mean()) if n else None,
            "n_missed": int((s & ~covered).sum()),
            "n_missed_obs_below": int((s & (obs < lo)).sum()),
            "n_missed_obs_above": int((s & (obs > hi)).sum()),
            "mean_signed_resid": float(resid[s].mean()) if n else None,
            "median_signed_resid": float(np.median(resid[s])) if n else None,
            "rms_resid": float(np.sqrt(np.mean(resid[s] ** 2))) if n else None,
            "obs_over_pred_total": float(obs[s].sum() / mean[s].sum()) if n else None,
        }
    out["by_class"] = by
    # the lowest bin per (field, z bin): signed residual and obs/pred
    low = {}
    for g, f in enumerate(survey.fields):
        for j in range(z_e.size - 1):
            i0 = int(np.flatnonzero(cls[g, :, j] == 0)[0])
            low[f"{f.name}|z{z_e[j]:.4g}-{z_e[j + 1]:.4g}|M{m_e[i0]:.2f}"] = {
                "obs": int(obs[g, i0, j]), "pred_mean": round(float(mean[g, i0, j]), 2),
                "resid": round(float(resid[g, i0, j]), 2), "covered": bool(covered[g, i0, j])}
    out["lowest_bins"] = low
    # per z bin coverage
    out["coverage_by_zbin"] = [float(covered[:, :, j][scored[:, :, j]].mean())
                               if scored[:, :, j].any() else None for j in range(z_e.size - 1)]
    return out


def band_scores(fit: Lite, catalog, survey_orig, survey_raised, *, deltas="fit"):
    """Held-out band [limit, limit + BAND_DEX): Poisson log predictive and totals.

    Predicted band counts per draw = predicted_counts(original) - predicted_counts(raised) with
    one mass bin [6, 13] and the default z bins; observed likewise from observed_counts.
    """
    from popmodel.smf.checks import observed_counts, predicted_counts

    m_e = np.array([6.0, 13.0])
    _, z_e = default_edges(survey_orig)
    dl = deltas_of(fit) if isinstance(deltas, str) else deltas
    draws = fit.draws()
    mu_o = predicted_counts(fit.with_survey(survey_orig).data, draws, m_e, z_e, deltas=dl)
    mu_r = predicted_counts(fit.with_survey(survey_raised).data, draws, m_e, z_e, deltas=dl)
    mu = np.maximum((mu_o - mu_r)[:, :, 0, :], 1e-12)  # (D, F, nZ)
    n_obs = (observed_counts(catalog, survey_orig, m_e, z_e)
             - observed_counts(catalog, survey_raised, m_e, z_e))[:, 0, :]
    lp = poisson.logpmf(n_obs[None], mu)  # (D, F, nZ)
    d = mu.shape[0]
    point = logsumexp(lp, axis=0) - np.log(d)  # (F, nZ)
    names = [f.name for f in survey_orig.fields]
    return {
        "log_pred_total": float(point.sum()),
        "log_pred_per_field": {n: float(point[g].sum()) for g, n in enumerate(names)},
        "log_pred_per_zbin": [float(point[:, j].sum()) for j in range(z_e.size - 1)],
        "z_edges": [float(x) for x in z_e],
        "obs_band_per_zbin": [int(n_obs[:, j].sum()) for j in range(z_e.size - 1)],
        "pred_band_per_zbin_mean": [float(mu[:, :, j].sum(axis=1).mean()) for j in range(z_e.size - 1)],
        "pred_band_per_zbin_sd": [float(mu[:, :, j].sum(axis=1).std()) for j in range(z_e.size - 1)],
        "obs_over_pred_per_zbin": [float(n_obs[:, j].sum() / mu[:, :, j].sum(axis=1).mean())
                                   for j in range(z_e.size - 1)],
        "obs_band_field_zbin": n_obs.tolist(),
        "pred_band_field_zbin_mean": np.round(mu.mean(axis=0), 2).tolist(),
        "fields": names,
    }


def record(path_keys: list[str], value) -> None:
    """Write ``value`` at ``path_keys`` in the results JSON (read-modify-write)."""
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    d = json.loads(RECORD.read_text()) if RECORD.exists() else {}
    cur = d
    for k in path_keys[:-1]:
        cur = cur.setdefault(k, {})
    cur[path_keys[-1]] = value
    RECORD.write_text(json.dumps(d, indent=1, sort_keys=False) + "\n")


def record_run(path_keys: list[str], res: dict, t0: float) -> None:
    """Record a finished run: its total wall time since ``t0``, the code state, then ``res``."""
    res["wall_s_total"] = time.perf_counter() - t0
    res["code_state"] = code_state()
    record(path_keys, res)


def fit_info(fit: Lite) -> dict:
    return {"anchor_z": list(fit.anchor_z), "timing": fit.timing,
            "map_params": {k: round(v, 4) for k, v in fit.map_params.items()}}


def code_state() -> dict:
    """HEAD and whether popmodel/ had uncommitted changes (another engineer edits it)."""
    import subprocess

    def git(*a):
        return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()

    return {"head": git("rev-parse", "HEAD"), "popmodel_dirty_files": git("diff", "--name-only", "--", "popmodel").split()}
