"""Calibration of the mass-function fit with cosmic variance (per-field density terms).

Mocks of five deep pencil-beam fields (14' x 15', 0.5 < z < 2.5, the 3D-HST completeness
limits) carry field-and-slice over-densities drawn from the prior the fit uses
(delta ~ N(0, sigma_DM), galaxies scaled by exp(b delta - b^2 sigma^2/2)); truths of the 11
parameters come from a narrow prior that the fit also uses. Each mock is fitted with NUTS with
the density terms and without them. Reported: the SBC rank test pooled over the 11 parameters
and rho_*(z = 0.5, 1, 2) (with the terms), and the 68% coverage of rho_* with and without the
terms, with the 95% binomial band of the with-terms rate.

Settings of the recorded run (analyses/recorded/calibrate_cosmic_variance.json), chosen to cut
the cost per mock without weakening the test: float32 sample arrays; Gauss-Hermite rules of 4
mass nodes (exact redshifts: one z node), which move the MAP by <= 0.03 sigma from 8 nodes on
these mocks; NUTS 100 warm-up (step size only: the dense mass matrix is the MAP's Laplace
covariance) + 100 draws, ranks among 49 draws thinned evenly from the 100 (the smallest bulk
ESS is ~80-100 of 100); JAX's persistent compilation cache. The mocks can run in shards
(--first) that --merge pools.

(A single mass limit log M > 9.7 at all z, which would halve the galaxies, was tried and
dropped: the two Schechter components become degenerate, NUTS from the Laplace mass matrix
mixes badly (bulk ESS ~17) and the ranks pile up at the ends.)

    python analyses/calibrate_cosmic_variance.py --mocks 100 --out results/calibrate_cosmic_variance.json
    python analyses/calibrate_cosmic_variance.py --first 0 --mocks 50 --records part0.jsonl
    python analyses/calibrate_cosmic_variance.py --first 50 --mocks 50 --records part1.jsonl
    python analyses/calibrate_cosmic_variance.py --merge part0.jsonl part1.jsonl --out all.json

The recorded run (150 mocks, seven record files under
analyses/recorded/calibrate_cosmic_variance_records/, merged into
analyses/recorded/calibrate_cosmic_variance.json) took 7000 s of fits, two shards at a time.

With --records every finished mock is appended to a JSON-lines file at once, and a rerun with
the same file skips the mocks already there (an interrupted run resumes).
    python analyses/calibrate_cosmic_variance.py --smoke      # 2 mocks
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax

jax.config.update("jax_enable_x64", True)

from popmodel.testing import cv_calibration_summary, run_cv_calibration


def _report(res: dict) -> None:
    print(f"SBC over {res['n_mocks']} mocks x (11 parameters + 3 rho_*): chi2 p = "
          f"{res['sbc_chi2_p_value_5_bins']:.3f} (5 bins), {res['sbc_chi2_p_value_10_bins']:.3f} (10 bins)")
    cl = res.get("sbc_clustered_5_bins")
    if cl:
        print(f"  corrected for the correlation of one mock's ranks (Rao-Scott): p = "
              f"{cl['p_value']:.4f} (5 bins, design effect {cl['design_effect']:.2f}), "
              f"{res['sbc_clustered_10_bins']['p_value']:.4f} (10 bins)")
        by_q = res["sbc_chi2_p_value_5_bins_by_quantity"]
        worst = min(by_q, key=by_q.get)
        print(f"  parameters alone p = {res['sbc_chi2_p_value_5_bins_parameters_only']:.4f}, "
              f"rho_* alone p = {res['sbc_chi2_p_value_5_bins_rho_star_only']:.4f}; lowest "
              f"single quantity: {worst} p = {by_q[worst]:.3f}")
    print(f"68% coverage of rho_*: with terms {res['rho_star_68_coverage_with_terms']:.3f} "
          f"(95% band {res['rho_star_68_coverage_with_terms_95_band']}), without "
          f"{res['rho_star_68_coverage_without_terms']:.3f}; min galaxies per field-slice "
          f"{res['min_galaxies_per_field_slice']}; wall {res['wall_s']:.0f} s")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mocks", type=int, default=50)
    ap.add_argument("--first", type=int, default=0, help="index of the first mock (shards)")
    ap.add_argument("--fields", type=int, default=5)
    ap.add_argument("--side", type=float, nargs=2, default=(14.0, 15.0), metavar=("A", "B"),
                    help="each field is A' x B' (default 14 x 15 arcmin^2: every field-slice "
                         "then holds >= 200 galaxies)")
    ap.add_argument("--slice-dz", type=float, default=0.5)
    ap.add_argument("--mass-limit", type=float, default=0.0,
                    help="one log M completeness limit at all z; 0 (default) = the 3D-HST limits")
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--draws", type=int, default=100)
    ap.add_argument("--n-keep", type=int, default=49)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--gh-mass-nodes", type=int, default=4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--jax-cache", default=os.path.join(os.path.expanduser("~"), ".cache",
                                                        "popmodel-jax"),
                    help="JAX persistent compilation cache directory ('' = off)")
    ap.add_argument("--records", help="JSON-lines file: one line per finished mock (resumable)")
    ap.add_argument("--merge", nargs="+", metavar="JSONL", help="pool --records files")
    ap.add_argument("--out", default="results/calibrate_cosmic_variance.json")
    ap.add_argument("--smoke", action="store_true")
    a = ap.parse_args()
    command = "python " + " ".join(sys.argv)
    if a.merge:
        recs, info = [], []
        for p in a.merge:
            lines = [json.loads(x) for x in Path(p).read_text().splitlines() if x.strip()]
            recs += lines
            info.append({"file": p, "mocks": [r["mock"] for r in lines],
                         "commands": sorted({r["command"] for r in lines}),
                         "wall_s": sum(r["wall_s"] for r in lines)})
        keys = ("n_fields", "side_arcmin", "slice_dz", "seed", "completeness", "nuts", "n_keep",
                "dtype", "gh_nodes")
        for r in recs[1:]:
            diff = [k for k in keys if r["settings"][k] != recs[0]["settings"][k]]
            if diff:
                raise SystemExit(f"mock {r['mock']}: settings {diff} differ from mock "
                                 f"{recs[0]['mock']}")
        res = cv_calibration_summary(recs, recs[0]["settings"])
        res = {"command": command, "parts": info, **res}
        for r in res["per_mock"]:
            r.pop("settings", None)
    else:
        if a.smoke:
            a.mocks, a.warmup, a.draws = 2, 50, 50
        if a.jax_cache:
            jax.config.update("jax_compilation_cache_dir", a.jax_cache)
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        done = set()
        if a.records and Path(a.records).exists():
            done = {json.loads(x)["mock"] for x in Path(a.records).read_text().splitlines()
                    if x.strip()}
        recs = []
        for k in range(a.first, a.first + a.mocks):
            if k in done:
                continue
            one = run_cv_calibration(1, first_mock=k, n_fields=a.fields, slice_dz=a.slice_dz,
                                     side_arcmin=tuple(a.side),
                                     seed=a.seed, completeness=a.mass_limit or None,
                                     warmup=a.warmup, draws=a.draws,
                                     n_keep=min(a.n_keep, a.draws), dtype=a.dtype,
                                     gh_nodes=(a.gh_mass_nodes, 1), progress=False)
            keep = ("per_mock", "popmodel_version", "n_mocks", "min_galaxies_per_field_slice",
                    "median_min_galaxies_per_field_slice", "ranks_parameters",
                    "ranks_rho_star", "wall_s", "total_divergences_with")
            settings = {kk: v for kk, v in one.items() if kk not in keep and "p_value" not in kk
                        and "coverage" not in kk and kk != "without_outside_band"}
            rec = {**one["per_mock"][0], "command": command,
                   "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                   "popmodel_version": one["popmodel_version"], "settings": settings}
            recs.append(rec)
            print(f"mock {k}: {rec['wall_s']:.0f} s", flush=True)
            if a.records:
                with open(a.records, "a") as fh:
                    fh.write(json.dumps(rec) + "\n")
        if not recs:
            raise SystemExit("no mocks left to run")
        res = cv_calibration_summary(recs, recs[0]["settings"])
        res = {"command": command, **res}
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)
    _report(res)
