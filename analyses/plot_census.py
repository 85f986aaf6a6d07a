"""The cosmic census figures: rho_*(z), the SFR density two ways, the SF/Q mass functions.

    python analyses/plot_census.py --smf results/3dhst --out results/census
    python analyses/plot_census.py --smf results/3dhst --sfs results/sfs --out results/census
    python analyses/plot_census.py --smoke --out results/census_smoke   # CI: no inputs needed

Same as ``popmodel census`` (all its options pass through). ``--smoke`` needs no fit: it writes
an SMF result folder holding draws of the Leja+20 *published* medians with their 1-sigma
errors as independent Gaussians (their Appendix B recipe; not a fit) and runs the census on it,
to exercise the whole path quickly (into ``OUT_leja2020_published_draws`` beside ``--out``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np


def write_leja2020_smf_dir(path: Path, n: int = 200, seed: int = 0) -> None:
    """An SMF result folder (popmodel.io.smf layout) with Leja+20 published-median draws."""
    from popmodel.io.smf import write_smf_posterior
    from popmodel.smf.evolution import LEJA2020_MEDIAN, LEJA2020_SIGMA

    rng = np.random.default_rng(seed)
    post = {k: LEJA2020_MEDIAN[k] + LEJA2020_SIGMA[k] * rng.standard_normal((1, n)) for k in LEJA2020_MEDIAN}
    write_smf_posterior(path / "smf_posterior.nc", post, (0.2, 1.6, 3.0), method="draws", attrs={
        "cosmology_config": {"name": "WMAP9"}, "data_z_range": [0.2, 3.0],
        "note": "Leja+20 Appendix B medians +- 1 sigma as independent Gaussians (not a fit)"})


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="results/census")
    ap.add_argument("--smf", default=None)
    ap.add_argument("--smoke", action="store_true")
    a, rest = ap.parse_known_args()
    smf = a.smf
    if a.smoke:
        # beside --out, not inside it: an input never lies in the folder a command writes
        smf = str(Path(a.out).with_name(Path(a.out).name + "_leja2020_published_draws"))
        if not (Path(smf) / "smf_posterior.nc").is_file():
            write_leja2020_smf_dir(Path(smf))
        rest += ["--dz", "0.1"]
    if smf is None:
        ap.error("give --smf DIR (an SMF result folder) or --smoke")
    from popmodel.cli.census import register
    from popmodel.cli.common import logging_to_stderr, run_handled, setup_jax

    setup_jax(1)
    cli = argparse.ArgumentParser(prog="plot_census")
    register(cli.add_subparsers(dest="cmd"))
    args = cli.parse_args(["census", "--smf", smf, "--out", a.out, *rest])
    with logging_to_stderr():
        sys.exit(run_handled("plot_census", lambda: args.func(args)))
