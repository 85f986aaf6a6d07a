"""(d) The star-forming sequence (ridge and mean SFR) against Leja et al. 2022.

    python analyses/plot_sfs.py RESULTS_DIR [--out DIR]   # RESULTS_DIR/sfs from popmodel fit-sfs
    python analyses/plot_sfs.py --smoke [RESULTS_DIR]     # CI: trains a tiny flow on a mock first

The ridge and log <SFR> bands of sfs/sfs.ecsv with Leja+22 Eq. 10 and the released flow curves,
in the sequence fit's cosmology. Writes RESULTS_DIR/figures/sfs.png and .pdf; same as
``popmodel figures RESULTS_DIR --only sfs``.
"""

import sys

from popmodel.cli.figures import script_main

if __name__ == "__main__":
    sys.exit(script_main("sfs", __doc__))
