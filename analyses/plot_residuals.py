"""(e) Residuals: the mass function against the literature points, the sequence against Leja+22.

    python analyses/plot_residuals.py RESULTS_DIR [--out DIR]   # RESULTS_DIR/smf and/or /sfs
    python analyses/plot_residuals.py --smoke [RESULTS_DIR]     # CI: tiny mock fits first

log Phi_fit - log Phi_lit (Tomczak+14, Muzzin+13, Ilbert+13; the model averaged over each set's
own redshift bin) in redshift panels, and the ridge and log <SFR> minus Leja+22 (Eq. 10 and the
released flow curves). Writes RESULTS_DIR/figures/residuals_smf and residuals_sfs (.png, .pdf);
same as ``popmodel figures RESULTS_DIR --only residuals``.
"""

import sys

from popmodel.cli.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("residuals", __doc__))
