"""Fit the continuity SMF to the real 3D-HST sample and draw the SMF and rho_* figures.

    python analyses/fit_3dhst.py --out results/3dhst          # reduced default (~10 min)
    python analyses/fit_3dhst.py --out results/3dhst --full   # 64 samples, 500 + 1000 NUTS
    python analyses/fit_3dhst.py --smoke --out results/smoke  # CI: tiny subset, Laplace draws

Same as ``popmodel fit-3dhst``; ``--smoke`` keeps the real data but fits a Laplace
approximation with 4 samples per galaxy, to exercise the whole path quickly.
"""

from __future__ import annotations

import argparse
import sys

from popmodel.cli import main

if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/3dhst")
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--smoke", action="store_true")
    a, rest = ap.parse_known_args()
    argv = ["fit-3dhst", "--out", a.out, *rest]
    if a.full:
        argv.append("--full")
    if a.smoke:
        argv += ["--method", "laplace", "--n-samples", "4", "--samples", "100", "--bootstrap", "2",
                 "--no-progress"]
    sys.exit(main(argv))
