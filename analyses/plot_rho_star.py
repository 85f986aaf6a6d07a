"""(b) The cosmic stellar mass density rho_*(z) with the literature.

    python analyses/plot_rho_star.py RESULTS_DIR [--out DIR]   # RESULTS_DIR/census (or /smf)
    python analyses/plot_rho_star.py --smoke [RESULTS_DIR]     # CI: makes and fits a tiny mock first

The census band of rho_* (census/census.ecsv from ``popmodel census``; without it, from the SMF
draws) with the Leja+20 model, Madau & Dickinson 2014 (points and integrated fit), Driver+18,
Tomczak+14 and Muzzin+13 (Chabrier, the fit's cosmology). Writes RESULTS_DIR/figures/rho_star.png
and .pdf; same as ``popmodel figures RESULTS_DIR --only rho_star``.
"""

import sys

from popmodel.cli.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("rho_star", __doc__))
