"""Scaling of the streamed mass-function fit to millions of galaxies (issue 6, item 3).

Run from the repository root::

    python benchmarks/bench_scale.py          # under 5 minutes: one loglik+grad pass at
                                              # 10^4, 10^5, 10^6 galaxies, with memory
    python benchmarks/bench_scale.py --full   # the 10^7-galaxy mock: written to disk chunk by
                                              # chunk, streamed fit, rho_* vs truth, NUTS on 10^5

The mock: one 3D-HST-like deep field (:func:`popmodel.testing.deep_survey`: 0.2 < z < 3,
Leja et al. 2022 completeness limits, mass errors an equal mixture of 0.1, 0.2 and 0.3 dex),
**exact redshifts** (``z_error = 0``, so Gauss-Hermite nodes (8, 1): 8 mass nodes per galaxy),
truth = Leja et al. (2020) medians, 4 moment-matched posterior samples per galaxy (their mean
and variance are the exact Gaussian posterior's, so the compression carries no Monte Carlo
error: what the fit recovers tests the scheme, not the sample count). It is drawn as
independent sub-surveys of ``SUB_AREA`` arcmin^2 (about 10^5 galaxies each; the union of
independent Poisson draws over disjoint areas is a draw over the total area) and appended to
one HDF5 file, so the whole catalogue is never in memory. The first sub-survey is the 10^5
subset that NUTS fits.

``--full`` runs the fit in a child process so that its peak resident memory (``ru_maxrss``) is
the fit's own. Every timing is wall-clock on whatever the machine gives at the moment; the
speed probe (jitted exp+log) printed beside them tells how fast that was.
"""

from __future__ import annotations

import os

os.environ["JAX_ENABLE_X64"] = "1"

import jax

jax.config.update("jax_enable_x64", True)

import argparse
import json
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from probe import exp_log_probe

from popmodel import __version__
from popmodel.catalog import PosteriorCatalog
from popmodel.cosmology import VolumeTable
from popmodel.mock import draw_mock
from popmodel.smf.derived import log10_rho_star
from popmodel.smf.evolution import ContinuityParams, leja2020_params
from popmodel.smf.inference import laplace_draws
from popmodel.smf.model import SMFPrior
from popmodel.smf.stream import (
    HDF5CatalogWriter,
    StreamedPotential,
    find_map_streamed,
    laplace_importance_check,
    stream_smf_data,
)
from popmodel.testing import deep_survey

SUB_AREA = 2880.0  # arcmin^2: about 1.0e5 selected galaxies per sub-survey
N_SAMPLES = 4
MASS_ERRORS = (0.1, 0.2, 0.3)
SEED = 20261126
Z_RHO = np.array([0.5, 1.0, 2.0])


def survey(area_arcmin2: float):
    return deep_survey(1, area_arcmin2, z_error=0.0, mass_error_dex=MASS_ERRORS)


def peak_rss_mib(children: bool = False) -> float:
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024.0


def sub_mock(k: int, vt: VolumeTable, area: float = SUB_AREA) -> PosteriorCatalog:
    """Sub-survey k of the mock (same seed -> same catalogue), ids unique across sub-surveys."""
    import dataclasses

    cat, _ = draw_mock(survey(area), leja2020_params(), seed=SEED + k, n_samples=N_SAMPLES,
                       moment_matched=True, volume=vt)
    ids = np.char.add(f"s{k:04d}g", np.char.zfill(np.arange(cat.n_galaxies).astype(str), 7))
    return dataclasses.replace(cat, ids=ids)


def write_mock(path: Path, n_sub: int, vt: VolumeTable) -> dict:
    """Draw n_sub sub-surveys one at a time and append each to one HDF5 file."""
    t0 = time.perf_counter()
    counts = []
    with HDF5CatalogWriter(path, id_width=16, field_width=4, sample_dtype=np.float32,
                           overwrite=True) as w:
        for k in range(n_sub):
            cat = sub_mock(k, vt)
            counts.append(cat.n_galaxies)
            w.append(cat)
            if (k + 1) % 10 == 0:
                print(f"  wrote {k + 1}/{n_sub} sub-surveys, {sum(counts)} galaxies "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)
        n_rows = w.n_rows
    info = {"n_sub": n_sub, "n_galaxies": int(sum(counts)), "n_rows": int(n_rows),
            "sub_counts": counts, "seconds": time.perf_counter() - t0,
            "bytes": path.stat().st_size}
    path.with_suffix(".json").write_text(json.dumps(info))
    return info


def header() -> None:
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, popmodel {__version__}, "
          f"Python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"# mock: deep_survey (0.2<z<3, Leja+22 limits), mass errors {MASS_ERRORS} dex, exact "
          f"redshifts, {N_SAMPLES} moment-matched samples/galaxy -> Gauss-Hermite (8, 1); truth "
          f"Leja+20 medians; seed {SEED}")
    print(f"PROBE exp+log float64: {exp_log_probe(lo=0.5, hi=2.0):.3g} evaluations/s")


def time_pass(pot: StreamedPotential, u: np.ndarray, n: int = 3) -> float:
    best = np.inf
    for _ in range(n):
        t0 = time.perf_counter()
        pot.value_and_grad(u)
        best = min(best, time.perf_counter() - t0)
    return best


# ---------------------------------------------------------------------------- default mode
def default_mode(workdir: Path) -> None:
    header()
    vt = VolumeTable.build(survey(1.0).cosmology)
    prior = SMFPrior()
    path = workdir / "bench_scale_1e6.h5"
    print("writing the 10^6 mock (10 sub-surveys) ...", flush=True)
    info = write_mock(path, 10, vt)
    print(f"MOCK {info['n_galaxies']} galaxies, {info['n_rows']} rows, "
          f"{info['bytes'] / 2**20:.0f} MiB on disk, written in {info['seconds']:.1f} s")
    cases = [
        ("1e4", lambda: [sub_mock(0, vt, SUB_AREA / 10)], SUB_AREA / 10),
        ("1e5", lambda: [sub_mock(0, vt)], SUB_AREA),
        ("1e6", lambda: str(path), 10 * SUB_AREA),
    ]
    rows = []
    for _label, source, area in cases:
        rss0 = peak_rss_mib()
        t0 = time.perf_counter()
        sd = stream_smf_data(source(), survey(area), volume=vt)
        t_read = time.perf_counter() - t0
        pot = StreamedPotential(prior, sd)
        t0 = time.perf_counter()
        pot.value_and_grad(pot.u0)
        t_first = time.perf_counter() - t0
        t = time_pass(pot, pot.u0)
        rate = sd.n_nodes / t
        rows.append((sd.n_galaxies, t))
        print(f"SCALE N={sd.n_galaxies} nodes={sd.n_nodes} read+cut+compress {t_read:.1f} s "
              f"({sd.n_galaxies / t_read:.3g} galaxies/s), compile+first {t_first:.1f} s, "
              f"loglik+grad {t * 1e3:.0f} ms ({rate:.3g} galaxy-nodes/s), arrays "
              f"{sd.nbytes / 2**20:.0f} MiB ({sd.nbytes / sd.n_galaxies:.0f} B/galaxy), "
              f"peak RSS {peak_rss_mib():.0f} MiB (before: {rss0:.0f})", flush=True)
        del sd, pot
    n, t = np.array(rows).T
    slope = np.polyfit(np.log(n[1:]), np.log(t[1:]), 1)[0]
    t7 = t[-1] * 1e7 / n[-1]
    print(f"SCALING time per pass ~ N^{slope:.2f} (10^5 -> 10^6); linear extrapolation to 10^7: "
          f"{t7:.1f} s per loglik+grad pass")
    path.unlink()
    path.with_suffix(".json").unlink()


# ------------------------------------------------------------------------------- full mode
def fit_child(path: Path, n_sub: int, out: Path, n_importance: int) -> None:
    """The streamed fit of the file (run in its own process for its peak memory)."""
    t_all = time.perf_counter()
    vt = VolumeTable.build(survey(1.0).cosmology)
    prior = SMFPrior()
    sd = stream_smf_data(str(path), survey(n_sub * SUB_AREA), volume=vt, log=print)
    print(f"READ {sd.n_galaxies} galaxies used, {sd.n_nodes} nodes, {sd.n_chunks} chunks, "
          f"{sd.read_seconds:.0f} s; arrays {sd.nbytes / 2**20:.0f} MiB; {sd.report.summary()}",
          flush=True)
    mp = find_map_streamed(sd, prior, log=print)
    draws = laplace_draws(mp.map, prior, 4000, seed=1)
    p = ContinuityParams.from_dict(draws, prior.anchor_z)
    lr = log10_rho_star(p, Z_RHO)
    t_fit = time.perf_counter() - t_all
    rss_fit = peak_rss_mib()
    imp = None
    if n_importance:
        t0 = time.perf_counter()
        imp = laplace_importance_check(sd, prior, mp.map, n=n_importance, seed=2,
                                       potential=mp.potential)
        imp["seconds"] = time.perf_counter() - t0
        imp.pop("draws")
        imp.pop("log_weights")
    res = {
        "n_galaxies": sd.n_galaxies, "n_nodes": sd.n_nodes, "report": sd.report.as_dict(),
        "read_seconds": sd.read_seconds, "array_bytes": sd.nbytes,
        "map": mp.map.params, "sigma": mp.map.sigma, "u": mp.map.u.tolist(),
        "cov_u": mp.map.cov_u.tolist(), "converged": mp.map.converged, "message": mp.map.message,
        "n_lbfgs": mp.n_lbfgs_evaluations, "newton_steps": mp.newton_steps,
        "last_newton_step_sigma": mp.last_newton_step_sigma, "passes": mp.n_passes,
        "fit_seconds": mp.seconds, "total_fit_seconds": t_fit, "peak_rss_mib_fit": rss_fit,
        "rho_star_q16_50_84": np.percentile(lr, [16, 50, 84], axis=0).tolist(),
        "importance": imp,
    }
    out.write_text(json.dumps(res))


def nuts_subset(vt: VolumeTable, full: dict, num_samples: int, num_warmup: int,
                n_importance: int = 2000) -> dict:
    """NUTS (dense Laplace mass) and the streamed Laplace on sub-survey 0 (10^5 galaxies)."""
    from popmodel.smf.data import prepare_smf_data
    from popmodel.smf.inference import find_map, run_nuts

    prior = SMFPrior()
    cat = sub_mock(0, vt)
    sv = survey(SUB_AREA)
    t0 = time.perf_counter()
    sd = stream_smf_data([cat], sv, volume=vt)
    mp = find_map_streamed(sd, prior)
    t_laplace = time.perf_counter() - t0
    data = prepare_smf_data(cat, sv, dtype=np.float32, posterior="gauss-hermite", gh_nodes=(8, 1),
                            cosmic_variance=False, volume=vt)
    t0 = time.perf_counter()
    m0 = find_map(data, prior)
    mcmc = run_nuts(data, prior, m0, num_warmup=num_warmup, num_samples=num_samples,
                    num_chains=2, seed=3, progress_bar=False)
    t_nuts = time.perf_counter() - t0
    import numpyro.diagnostics as nd

    s = mcmc.get_samples(group_by_chain=True)
    summ = nd.summary(s)
    ld = laplace_draws(mp.map, prior, 4000, seed=4)
    t0 = time.perf_counter()
    imp = laplace_importance_check(sd, prior, mp.map, n=n_importance, seed=5, potential=mp.potential)
    t_imp = time.perf_counter() - t0
    iw = np.exp(imp["log_weights"] - np.max(imp["log_weights"]))
    iw /= iw.sum()
    out = {"n_galaxies": sd.n_galaxies, "laplace_seconds": t_laplace, "nuts_seconds": t_nuts,
           "importance": {k: imp[k] for k in ("n_draws", "ess_fraction", "pareto_k", "log_weight_sd")},
           "importance_seconds": t_imp, "params": {}}
    for n in prior.names:
        x = np.asarray(s[n]).ravel()
        mu, sdv = float(x.mean()), float(x.std())
        mcse = sdv / np.sqrt(float(summ[n]["n_eff"]))
        out["params"][n] = {
            "nuts_mean": mu, "nuts_sd": sdv, "ess": float(summ[n]["n_eff"]),
            "r_hat": float(summ[n]["r_hat"]), "mcse": mcse,
            "laplace_map": mp.map.params[n], "laplace_mean": float(ld[n].mean()),
            "laplace_sd": float(ld[n].std()), "full_map": full["map"][n],
            "is_mean": float(np.sum(iw * imp["draws"][n])),
            "is_sd": float(np.sqrt(np.sum(iw * (imp["draws"][n] - np.sum(iw * imp["draws"][n])) ** 2))),
            "full_sigma": full["sigma"][n],
        }
    pn = ContinuityParams.from_dict({n: np.asarray(s[n]).ravel() for n in prior.names}, prior.anchor_z)
    pl = ContinuityParams.from_dict(ld, prior.anchor_z)
    out["rho_nuts_q16_50_84"] = np.percentile(log10_rho_star(pn, Z_RHO), [16, 50, 84], axis=0).tolist()
    out["rho_laplace_q16_50_84"] = np.percentile(log10_rho_star(pl, Z_RHO), [16, 50, 84], axis=0).tolist()
    return out


def full_mode(workdir: Path, n_sub: int, keep: bool, nuts_samples: int, nuts_warmup: int,
              n_importance: int, subset_importance: int) -> None:
    header()
    t_script = time.perf_counter()
    vt = VolumeTable.build(survey(1.0).cosmology)
    path = workdir / f"bench_scale_{n_sub}x.h5"
    meta = path.with_suffix(".json")
    if keep and path.exists() and meta.exists():
        info = json.loads(meta.read_text())
        print("reusing", path)
    else:
        print(f"writing the mock ({n_sub} sub-surveys of {SUB_AREA} arcmin^2) ...", flush=True)
        info = write_mock(path, n_sub, vt)
    print(f"MOCK {info['n_galaxies']} galaxies, {info['n_rows']} rows, "
          f"{info['bytes'] / 2**30:.2f} GiB on disk (float32 samples), written in "
          f"{info['seconds']:.0f} s, peak RSS of the writer {peak_rss_mib():.0f} MiB", flush=True)
    out = workdir / "bench_scale_fit.json"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--fit-child", str(path), "--n-sub", str(n_sub),
                    "--out", str(out), "--importance", str(n_importance)], check=True)
    wall_child = time.perf_counter() - t0
    res = json.loads(out.read_text())
    truth = log10_rho_star(leja2020_params(), Z_RHO)
    q = np.array(res["rho_star_q16_50_84"])
    print(f"FIT {res['n_galaxies']} galaxies ({res['n_nodes']} nodes): wall {res['total_fit_seconds']:.0f} s "
          f"(read+cut+compress {res['read_seconds']:.0f} s, L-BFGS {res['fit_seconds']['lbfgs']:.0f} s "
          f"/ {res['n_lbfgs']} passes, Newton+Hessian {res['fit_seconds']['newton_and_hessian']:.0f} s); "
          f"child process wall {wall_child:.0f} s")
    print(f"MEMORY peak RSS of the fit process {res['peak_rss_mib_fit']:.0f} MiB "
          f"(at the end: {peak_rss_mib(children=True):.0f} MiB); galaxy arrays "
          f"{res['array_bytes'] / 2**20:.0f} MiB")
    print(f"CONVERGENCE {res['message']} (converged: {res['converged']})")
    for j, z in enumerate(Z_RHO):
        print(f"RHO z={z}: fit {q[1, j]:.4f} (+{q[2, j] - q[1, j]:.4f} / -{q[1, j] - q[0, j]:.4f}) "
              f"truth {truth[j]:.4f}  diff {q[1, j] - truth[j]:+.4f} dex "
              f"({(q[1, j] - truth[j]) / (0.5 * (q[2, j] - q[0, j])):+.2f} sigma)")
    tp = leja2020_params().to_dict()
    print("PARAMS name: MAP, sigma, (MAP - truth)/sigma")
    for n, v in res["map"].items():
        print(f"  {n}: {v:.5f} {res['sigma'][n]:.5f} {(v - float(tp[n])) / res['sigma'][n]:+.2f}")
    if res["importance"]:
        im = res["importance"]
        print(f"IMPORTANCE {im['n_draws']} Laplace draws: ESS fraction {im['ess_fraction']:.3f}, "
              f"Pareto k {im['pareto_k']:.2f}, sd of log weights {im['log_weight_sd']:.3f} "
              f"({im['seconds']:.0f} s)")
    if nuts_samples:
        sub = nuts_subset(vt, res, nuts_samples, nuts_warmup, subset_importance)
        print(f"SUBSET {sub['n_galaxies']} galaxies (sub-survey 0): streamed Laplace "
              f"{sub['laplace_seconds']:.0f} s, NUTS (2 chains, {nuts_warmup}+{nuts_samples}) "
              f"{sub['nuts_seconds']:.0f} s")
        im = sub["importance"]
        print(f"  importance-weighted Laplace: {im['n_draws']} draws, ESS fraction "
              f"{im['ess_fraction']:.3f}, Pareto k {im['pareto_k']:.2f}, sd of log weights "
              f"{im['log_weight_sd']:.3f} ({sub['importance_seconds']:.0f} s)")
        print("  name: (Laplace mean - NUTS mean)/NUTS sd, Laplace sd / NUTS sd, "
              "(IS-Laplace mean - NUTS mean)/NUTS sd, IS sd / NUTS sd, NUTS MCSE/sd, ESS, R-hat, "
              "(10^7 MAP - NUTS mean)/NUTS sd")
        dm, di = [], []
        for n, r in sub["params"].items():
            d = (r["laplace_mean"] - r["nuts_mean"]) / r["nuts_sd"]
            e = (r["is_mean"] - r["nuts_mean"]) / r["nuts_sd"]
            dm.append(d)
            di.append(e)
            print(f"  {n}: {d:+.3f}  {r['laplace_sd'] / r['nuts_sd']:.3f}  {e:+.3f}  "
                  f"{r['is_sd'] / r['nuts_sd']:.3f}  {r['mcse'] / r['nuts_sd']:.3f}  {r['ess']:.0f}  "
                  f"{r['r_hat']:.3f}  {(r['full_map'] - r['nuts_mean']) / r['nuts_sd']:+.2f}")
        print(f"  max |Laplace - NUTS| = {np.max(np.abs(dm)):.3f} NUTS sigma; max |IS-Laplace - NUTS| "
              f"= {np.max(np.abs(di)):.3f} NUTS sigma")
        for j, z in enumerate(Z_RHO):
            a, b = np.array(sub["rho_laplace_q16_50_84"])[:, j], np.array(sub["rho_nuts_q16_50_84"])[:, j]
            print(f"  rho z={z}: Laplace {a[1]:.4f} +-{0.5 * (a[2] - a[0]):.4f}, NUTS {b[1]:.4f} "
                  f"+-{0.5 * (b[2] - b[0]):.4f}, 10^7 fit {q[1, j]:.4f}, truth {truth[j]:.4f}")
        res["subset"] = sub
    res["config"] = {"n_sub": n_sub, "sub_area_arcmin2": SUB_AREA, "seed": SEED,
                     "n_samples": N_SAMPLES, "mass_errors": MASS_ERRORS, "z_error": 0.0,
                     "gh_nodes": [8, 1], "dtype": "float32", "cosmology": "WMAP9",
                     "truth": "Leja+20 medians", "popmodel": __version__, "mock": info}
    (workdir / "bench_scale_full.json").write_text(json.dumps(res, indent=1))
    print(f"TOTAL {time.perf_counter() - t_script:.0f} s; results in {workdir / 'bench_scale_full.json'}")
    if not keep:
        path.unlink()
        meta.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="the 10^7-galaxy run")
    ap.add_argument("--n-sub", type=int, default=100, help="sub-surveys of ~1e5 galaxies (--full)")
    ap.add_argument("--workdir", default="/tmp", help="where the mock file goes")
    ap.add_argument("--keep", action="store_true", help="keep (and reuse) the mock file")
    ap.add_argument("--nuts-samples", type=int, default=600, help="NUTS draws per chain (0: skip)")
    ap.add_argument("--nuts-warmup", type=int, default=150)
    ap.add_argument("--subset-importance", type=int, default=2000,
                    help="importance-weighted Laplace draws on the 10^5 subset")
    ap.add_argument("--importance", type=int, default=32, help="Laplace importance draws")
    ap.add_argument("--fit-child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.fit_child:
        fit_child(Path(a.fit_child), a.n_sub, Path(a.out), a.importance)
    elif a.full:
        full_mode(Path(a.workdir), a.n_sub, a.keep, a.nuts_samples, a.nuts_warmup, a.importance,
                  a.subset_importance)
    else:
        t0 = time.perf_counter()
        default_mode(Path(a.workdir))
        print(f"TOTAL {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
