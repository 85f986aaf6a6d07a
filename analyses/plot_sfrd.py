"""(c) The cosmic SFR density from both routes with the literature.

    python analyses/plot_sfrd.py RESULTS_DIR [--out DIR]   # RESULTS_DIR/census from popmodel census
    python analyses/plot_sfrd.py --smoke [RESULTS_DIR]     # CI: mock SMF + flow + census first

Route 1 (d rho_*/dt / (1 - R)) and route 2 (Phi x mean SFR) from census/census.ecsv with Madau &
Dickinson 2014 (fit and Table 1), Driver+18, Behroozi+13 and UniverseMachine (Behroozi+19), and
their paired difference. Writes RESULTS_DIR/figures/sfrd.png and .pdf; same as
``popmodel figures RESULTS_DIR --only sfrd``.
"""

import sys

from popmodel.cli.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("sfrd", __doc__))
