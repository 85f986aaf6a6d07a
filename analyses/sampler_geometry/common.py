"""Shared set-up of the sampler-geometry experiments (issue 16, item 1): the default
``fit-3dhst`` data (16 samples per galaxy, float32 sample arrays, posterior "auto", density
terms) or the README example's mock, and their MAP, cached in $SAMPLER_GEOMETRY_DIR
(default /tmp/sampler_geometry). Run with JAX_ENABLE_X64=1 and OPENBLAS_NUM_THREADS=1."""

import os
import pickle
import time
from pathlib import Path

import numpy as np

from popmodel.datasets import threedhst_catalog, threedhst_survey
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.inference import find_map, release_memory
from popmodel.smf.model import SMFPrior

OUT = os.environ.get("SAMPLER_GEOMETRY_DIR", "/tmp/sampler_geometry")
os.makedirs(OUT, exist_ok=True)


def build(seed=0):
    survey = threedhst_survey()
    cat, _ = threedhst_catalog(n_samples=16, seed=seed, z_min=0.5, z_max=2.55)
    data = prepare_smf_data(cat, survey, posterior="auto", dtype=np.float32)
    prior = SMFPrior(density_terms=data.density.labels)
    return data, prior


def build_readme():
    from popmodel.mock import draw_mock
    from popmodel.survey import Field, Survey

    field = Field(
        "deep",
        area=150.0,
        area_unit="arcmin2",
        z_min=0.2,
        z_max=3.0,
        completeness_z=[0.65, 1.0, 1.5, 2.1, 3.0],
        completeness_log_mass=[8.87, 9.07, 9.63, 9.89, 10.15],
        mass_error_dex=[0.1, 0.2, 0.3],
        z_error=0.02,
    )
    survey = Survey([field])
    catalog, _truth = draw_mock(survey, seed=1)
    data = prepare_smf_data(catalog, survey, posterior="auto")
    prior = SMFPrior(density_terms=data.density.labels if data.density is not None else ())
    return data, prior


def get(seed=0):
    """seed >= 0: the 3D-HST data (that catalogue seed); -1: the README example's mock."""
    data, prior = build(seed) if seed >= 0 else build_readme()
    fn = os.path.join(OUT, f"map_s{seed}.pkl")
    if os.path.exists(fn):
        mp = pickle.loads(Path(fn).read_bytes())
    else:
        t = time.time()
        mp = find_map(data, prior)
        print("MAP", time.time() - t, mp.message, flush=True)
        Path(fn).write_bytes(pickle.dumps(mp))
        release_memory()
    return data, prior, mp


if __name__ == "__main__":
    get(0)


def diagnostics(samples, names, energy, diverging, num_steps):
    """popmodel's own sampler report (:func:`popmodel.smf.fit._plain_diagnostics`, E-BFMI per
    chain by :func:`popmodel.smf.fit._sampler_stats`) for draws grouped by chain, with the
    worst parameter of each statistic. Returns (per-parameter report, one-line summary)."""
    from popmodel.smf.fit import _plain_diagnostics, _sampler_stats

    samp = {k: np.asarray(samples[k], dtype=float) for k in names}
    n_chains, n_draws = samp[names[0]].shape
    stats = _sampler_stats({"energy": energy, "num_steps": num_steps}, n_chains)
    div = int(np.sum(diverging))
    rep = _plain_diagnostics(samp, div, n_chains * n_draws, stats)
    r, b, tl = rep["r_hat"], rep["ess_bulk"], rep["ess_tail"]
    wr, wb, wt = max(r, key=r.get), min(b, key=b.get), min(tl, key=tl.get)
    line = {
        "rhat": (wr, round(r[wr], 4)),
        "bulk": (wb, round(b[wb])),
        "tail": (wt, round(tl[wt])),
        "div": div,
        "bfmi": np.round(stats["e_bfmi"], 2).tolist(),
        "grads": int(np.sum(num_steps)),
        "steps_mean": float(np.mean(num_steps)),
    }
    return rep, line


def fit_and_report(data, prior, seed, num_warmup, num_samples, tag, show, map_keys=(), **nuts_kw):
    """The default NUTS of these experiments (MAP, then 4 chains from Laplace draws with the
    Laplace metric, unless ``nuts_kw`` passes other :func:`run_nuts` settings), its RESULT line
    and a line per parameter in ``show``; returns the draws grouped by chain and the MAP."""
    import arviz as az

    from popmodel.smf.inference import run_nuts

    t = time.time()
    mp = find_map(data, prior)
    print(
        "MAP",
        round(time.time() - t),
        mp.message,
        {k: round(v, 3) for k, v in mp.params.items() if k in map_keys},
        flush=True,
    )
    release_memory()
    t = time.time()
    m = run_nuts(
        data,
        prior,
        mp,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=4,
        seed=seed,
        init_spread=True,
        progress_bar=False,
        **nuts_kw,
    )
    wall = time.time() - t
    samp = {k: np.asarray(v) for k, v in m.get_samples(group_by_chain=True).items()}
    ex = m.get_extra_fields(group_by_chain=True)
    rep, line = diagnostics(
        samp,
        prior.names + list(prior.density_terms),
        ex["energy"],
        ex["diverging"],
        ex["num_steps"],
    )
    print("RESULT", tag, line, f"{wall:.0f} s", flush=True)
    for k in show:
        x = samp[k]
        r = rep["r_hat"].get(k, float(az.rhat(x)))
        b = rep["ess_bulk"].get(k, float(az.ess(x)))
        print(
            f"  {k:15s} chain means {np.round(x.mean(1), 3)} sd {x.std():.3f} "
            f"rhat {r:.3f} ess {b:.0f}",
            flush=True,
        )
    return samp, mp
