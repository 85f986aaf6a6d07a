"""The ridge of ``fit_sfs(catalog, survey)`` with every default on the issue's mock, over seeds.

    python analyses/ridge_bias/defaults_coverage.py SEED [SEED ...]

Mock (as in ``run_mock_fit.py``): 15,000 galaxies, the Leja et al. 2022 ridge with a 0.3 dex
Gaussian scatter, 20% quiescent galaxies 1-2.5 dex below it, SFR errors uniform in 0.15-0.35
dex, 0.1 dex mass errors, 32 samples per galaxy, selection on observed mass. Prints, per seed,
ridge_p50 - truth at the nine nodes z = 1, 1.5, 2 x log M = 10, 10.5, 11 and whether the
68% ridge band (ridge_p16 - ridge_p84) covers the truth, then the pooled coverage. Appends
each seed's record to ``$RIDGE_BIAS_DIR/defaults_coverage.jsonl`` (default /tmp/ridge_bias).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from popmodel.flow.fit import fit_sfs
from popmodel.flow.mock import sequence_mock

LIMIT = (np.array([0.3, 2.7]), np.array([9.25, 9.75]))
OUT = Path(os.environ.get("RIDGE_BIAS_DIR", "/tmp/ridge_bias"))


def run(seed: int) -> dict:
    cat, survey, truth = sequence_mock(15000, n_samples=32, scatter=0.3, sfr_error=(0.15, 0.35), mass_error=0.1,
                                       log_mass_limit=LIMIT, log_mass_rolloff=8.0, schechter=(10.8, -1.0),
                                       quiescent_fraction=0.2, seed=seed)
    t0 = time.perf_counter()
    fit = fit_sfs(cat, survey)
    wall = time.perf_counter() - t0
    t = fit.table
    z, m = np.asarray(t["z"]), np.asarray(t["log_mass"])
    rows = np.isin(z, [1.0, 1.5, 2.0]) & np.isin(m, [10.0, 10.5, 11.0])
    true = truth.ridge(m[rows], z[rows])
    mid, lo, hi = (np.asarray(t[c])[rows] for c in ("ridge_p50", "ridge_p16", "ridge_p84"))
    return {"seed": seed, "wall_s": wall, "log_mass": m[rows].tolist(), "z": z[rows].tolist(),
            "ridge_minus_truth": (mid - true).tolist(), "band_width": (hi - lo).tolist(),
            "covers": ((lo <= true) & (true <= hi)).tolist(),
            "epochs": [len(r.history) for r in fit.results]}


def main(seeds: list[int]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    recs = []
    for s in seeds:
        r = run(s)
        recs.append(r)
        with open(OUT / "defaults_coverage.jsonl", "a") as fh:
            fh.write(json.dumps(r) + "\n")
        d = np.array(r["ridge_minus_truth"])
        print(f"seed {s}: ridge - truth {np.round(d, 3).tolist()} (max |.| {np.max(np.abs(d)):.3f}), "
              f"band covers {sum(r['covers'])}/9, half-width median {np.median(r['band_width']) / 2:.3f}, "
              f"{r['wall_s']:.0f} s, epochs {r['epochs']}", flush=True)
    cov = np.concatenate([r["covers"] for r in recs])
    print(f"coverage of the 68% ridge band: {cov.mean():.2f} of {cov.size} node-seeds")


if __name__ == "__main__":
    main([int(s) for s in sys.argv[1:]])
