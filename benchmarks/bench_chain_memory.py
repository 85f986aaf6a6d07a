"""Resident memory of NUTS on the 3D-HST fit: chains one after another against side by side.

Run from the repository root::

    python benchmarks/bench_chain_memory.py                 # 2 chains x (80 + 20), ~10 min
    python benchmarks/bench_chain_memory.py --warmup 150 --draws 50

Each setting runs in its own process (JAX fixes its CPU device count at start-up): the data
of ``popmodel fit-3dhst`` (exact rules, float32, 25 density terms), MAP + Laplace with the
same ``fit_smf`` defaults, then ``run_nuts`` with ``chain_method="sequential"`` (one device)
as one NumPyro run (``sequential``) and as one run per chain with JAX's programs freed between
them (``sequential-runs``, what large fits do by default), and ``"parallel"`` (a device per
chain). A thread reads the resident set size every second.
Lines: ``RSS <setting>`` with the resident memory when the sampling starts, the peak, the
growth rate over the sampling (a least-squares slope, MB per second) and the wall time and
leapfrog steps, and ``RATIO`` lines (parallel and sequential-runs over sequential: peak
memory, wall time, slope), with a speed probe beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time

MODES = ("sequential", "sequential-runs", "parallel")


def _rss_gb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e9


def child(args: argparse.Namespace) -> None:
    import numpyro

    numpyro.set_host_device_count(args.chains if args.mode == "parallel" else 1)
    import jax
    import numpy as np

    jax.config.update("jax_enable_x64", True)
    from popmodel.datasets import threedhst_catalog, threedhst_survey
    from popmodel.smf.fit import FitConfig, fit_smf
    from popmodel.smf.inference import run_nuts

    survey = threedhst_survey(z_min=0.5, z_max=2.55, mass_error_dex=0.1, z_error="catalog")
    cat, _ = threedhst_catalog(n_samples=16, mass_error_dex=0.1, seed=0, z_min=0.5, z_max=2.55)
    fit = fit_smf(cat, survey, FitConfig(method="laplace", dtype="float32", compression_draws=0,
                                         n_bootstrap=0, progress_bar=False, num_samples=8),
                  log=lambda s: None)
    trace: list[tuple[float, float]] = []
    stop = threading.Event()

    def watch() -> None:
        t0 = time.perf_counter()
        while not stop.is_set():
            trace.append((time.perf_counter() - t0, _rss_gb()))
            time.sleep(1.0)

    start_rss = _rss_gb()
    t0 = time.perf_counter()
    th = threading.Thread(target=watch, daemon=True)
    th.start()
    mcmc = run_nuts(fit.data, fit.prior, fit.map, num_warmup=args.warmup,
                    num_samples=args.draws, num_chains=args.chains, seed=0,
                    chain_method="parallel" if args.mode == "parallel" else "sequential",
                    one_run_per_chain=args.mode == "sequential-runs", init_spread=True,
                    progress_bar=False)
    jax.block_until_ready(mcmc.get_samples())
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    t = np.array([a for a, _ in trace])
    r = np.array([b for _, b in trace])
    late = t > 0.25 * t[-1]  # past compilation
    slope = float(np.polyfit(t[late], r[late], 1)[0]) * 1e3 if late.sum() > 2 else float("nan")
    steps = int(np.sum(mcmc.get_extra_fields()["num_steps"])) if "num_steps" in mcmc.get_extra_fields() else -1
    print(json.dumps({"mode": args.mode, "start_gb": start_rss, "peak_gb": float(r.max()),
                      "slope_mb_s": slope, "wall_s": wall, "sampling_steps": steps}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--warmup", type=int, default=80)
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mode:
        child(args)
        return
    sys.path.insert(0, os.path.dirname(__file__))
    from probe import exp_log_probe

    print(f"speed probe before: {exp_log_probe():.2e} exp+log per second", flush=True)
    out = {}
    for mode in MODES:
        cmd = [sys.executable, __file__, "--mode", mode, "--warmup", str(args.warmup),
               "--draws", str(args.draws), "--chains", str(args.chains)]
        res = subprocess.run(cmd, capture_output=True, text=True, check=True,
                             env={**os.environ, "JAX_ENABLE_X64": "1"})
        out[mode] = json.loads(res.stdout.strip().splitlines()[-1])
        o = out[mode]
        print(f"RSS {mode}: {args.chains} chains x ({args.warmup} + {args.draws}); at the start "
              f"{o['start_gb']:.2f} GB, peak {o['peak_gb']:.2f} GB, growth {o['slope_mb_s']:+.1f} "
              f"MB/s over the sampling; {o['wall_s']:.0f} s, {o['sampling_steps']} leapfrog "
              "steps in the draws", flush=True)
    s = out["sequential"]
    for mode in ("parallel", "sequential-runs"):
        p = out[mode]
        print(f"RATIO {mode} / sequential: peak memory {p['peak_gb'] / s['peak_gb']:.2f}, wall "
              f"{p['wall_s'] / s['wall_s']:.2f}; growth {p['slope_mb_s']:+.1f} against "
              f"{s['slope_mb_s']:+.1f} MB/s", flush=True)
    print(f"speed probe after: {exp_log_probe():.2e} exp+log per second", flush=True)


if __name__ == "__main__":
    main()
