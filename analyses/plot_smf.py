"""(a) The stellar mass function in redshift panels with the literature and the Leja+20 model.

    python analyses/plot_smf.py RESULTS_DIR [--out DIR]   # RESULTS_DIR/smf from fit-smf / fit-3dhst
    python analyses/plot_smf.py --smoke [RESULTS_DIR]     # CI: makes and fits a tiny mock first

Posterior 16-50-84% of Phi averaged over each Tomczak+14 redshift bin, the Leja+20 median model,
Tomczak+14, Muzzin+13 and Ilbert+13 points in their own bins (Chabrier, the fit's cosmology).
Writes RESULTS_DIR/figures/smf.png and .pdf; same as ``popmodel figures RESULTS_DIR --only smf``
(see popmodel.plots.figures).
"""

import sys

from popmodel.cli.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("smf", __doc__))
