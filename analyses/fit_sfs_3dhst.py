"""The star-forming sequence of the real 3D-HST sample (FAST masses, UV+IR SFRs), vs Leja+22.

    python analyses/fit_sfs_3dhst.py --out results/sfs_3dhst           # 5 members (~20-40 min, 1 core)
    python analyses/fit_sfs_3dhst.py --smoke --out results/sfs_smoke   # CI: 500 galaxies, 1 epoch

Runs ``popmodel fit-sfs --3dhst`` (0.5 <= z <= 2.5, galaxies above the Tomczak+14 FAST
completeness limits, 32 samples per galaxy, ASSUMED uncertainties of 0.1 dex in mass and 0.3 dex
in SFR) and records in ``analyses/recorded/fit_sfs_3dhst.json`` the ridge and log10 <SFR> (with
ensemble bands) at z = 1 and 2 against Leja et al. 2022 Table 1 (Eq. 10) and the released
flow's values, plus the training record and timing. The UV+IR SFRs and
FAST masses are expected to give a sequence above Leja's Prospector one (lower masses, higher
SFRs; Leja et al. 2022 abstract).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from astropy.table import Table

from popmodel.cli.sfs import main as flow_main
from popmodel.flow.parametric import leja2022_log_sfr

HERE = Path(__file__).resolve().parent


def _git_commit() -> str:
    """The checkout's commit (with '+dirty' when popmodel/flow has uncommitted changes); the
    environment variable POPMODEL_GIT_COMMIT overrides it (a copy of the tree run elsewhere)."""
    import subprocess

    if os.environ.get("POPMODEL_GIT_COMMIT"):
        return os.environ["POPMODEL_GIT_COMMIT"]

    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True,
                              text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "popmodel/flow"], cwd=HERE.parent,
                               capture_output=True, text=True, check=True).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
LEJA_CURVES = HERE.parents[1] / "shared" / "data" / "velociraptor_comparison_data" / "sfs_leja2022"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/sfs_3dhst")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--recorded-dir", default=str(HERE / "recorded"), help="where the JSON record goes")
    a, rest = ap.parse_known_args(argv)
    args = ["fit-sfs", "--3dhst", "--out", a.out, "--no-progress", *rest]
    if LEJA_CURVES.is_dir():
        args += ["--leja-curves", str(LEJA_CURVES)]
    if a.smoke:
        args += ["--max-galaxies", "500", "--n-samples", "8", "--members", "1", "--epochs", "1"]
    t0 = time.perf_counter()
    rc = flow_main(args)
    wall = time.perf_counter() - t0
    out = Path(a.out)
    t = Table.read(out / "sfs.ecsv")
    meta = json.loads((out / "summary.json").read_text())
    comparison = []
    for row in t:
        if not any(abs(row["z"] - z) < 1e-6 for z in (1.0, 2.0)):
            continue
        m, z = float(row["log_mass"]), float(row["z"])
        comparison.append({
            "z": z, "log_mass": m,
            "ridge": [round(float(row[c]), 3) for c in ("ridge_p16", "ridge_p50", "ridge_p84")],
            "log_mean_sfr": [round(float(row[c]), 3) for c in ("log_mean_sfr_p16", "log_mean_sfr_p50",
                                                                "log_mean_sfr_p84")],
            "scatter": round(float(row["scatter_p50"]), 3), "bimodal": bool(row["bimodal"]),
            "leja2022_ridge_eq10": round(float(leja2022_log_sfr(m, z, "ridge")), 3),
            "leja2022_mean_eq10": round(float(leja2022_log_sfr(m, z, "mean")), 3),
            "ridge_minus_leja": round(float(row["ridge_p50"] - leja2022_log_sfr(m, z, "ridge")), 3),
            "mean_minus_leja": round(float(row["log_mean_sfr_p50"] - leja2022_log_sfr(m, z, "mean")), 3),
        })
    offsets = [c["ridge_minus_leja"] for c in comparison if np.isfinite(c["ridge_minus_leja"])]
    record = {
        "command": " ".join(["fit_sfs_3dhst.py", *(argv if argv is not None else sys.argv[1:])]),
        "smoke": a.smoke, "wall_s": round(wall, 1), "popmodel_version": meta["popmodel_version"],
        "git_commit": _git_commit(),
        "data": meta["data"], "catalog_provenance": meta.get("catalog_provenance"),
        "training": meta["training"], "timing_s": meta["timing_s"], "eq10": meta.get("eq10"),
        "comparison_z1_z2": comparison,
        "median_ridge_offset_vs_leja2022_dex": float(np.median(offsets)) if offsets else None,
        "warnings": meta["warnings"],
    }
    path = Path(a.recorded_dir) / ("fit_sfs_3dhst" + ("_smoke" if a.smoke else "") + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    print(f"wrote {path}")
    for c in comparison:
        print(f"z={c['z']:.1f} logM={c['log_mass']:.2f}: ridge {c['ridge'][1]:+.3f} "
              f"[{c['ridge'][0]:+.3f}, {c['ridge'][2]:+.3f}] (Leja+22 {c['leja2022_ridge_eq10']:+.3f}); "
              f"log<SFR> {c['log_mean_sfr'][1]:+.3f} (Leja+22 {c['leja2022_mean_eq10']:+.3f})")
    return rc


if __name__ == "__main__":
    raise SystemExit(main())
