"""The catalogue's own counts around the Tomczak+14 limits (no fit): is the sample complete there?

Run from the repository root (numpy only, seconds):

    OPENBLAS_NUM_THREADS=1 python analyses/coverage/data_near_limit.py

Uses ``load_3dhst_table("td_new")`` point estimates (``fast_lmass``, ``z_best``), z_best in
[0.5, 2.55], all five fields, and x = fast_lmass - log M_c(z_best) with the Tomczak+14 limit of
``threedhst_survey()``. Records ``data_near_limit`` in the results JSON: per z bin (the four
default PPC bins and eight bins of ~0.26) the counts in 0.1 dex bins of x from -0.5 to +0.8 and
the ratio N(x in [k, k+0.1)) / N(x in [k+0.1, k+0.2)) (a power-law SMF with alpha ~ -1.6 gives
~1.15, rising smoothly; a drop at or above x = 0 means the sample is incomplete there, a
continued rise below 0 that it is complete below the limit). Also the fraction of spectroscopic
or grism redshifts per x bin.
"""

import itertools

import numpy as np
from common import record


def main():
    from popmodel.datasets import load_3dhst_table, threedhst_survey

    t = load_3dhst_table("td_new")
    z = np.asarray(t["z_best"], float)
    m = np.asarray(t["fast_lmass"], float)
    zs = np.asarray(t["z_best_s"]).astype(int)
    ok = np.isfinite(m) & (m > 0) & (z >= 0.5) & (z <= 2.55)
    z, m, zs = z[ok], m[ok], zs[ok]
    f = threedhst_survey().fields[0]
    x = m - f.log_mass_limit(z)
    xe = np.round(np.arange(-0.5, 0.8 + 1e-9, 0.1), 2)
    out = {}
    for name, ze in (("default_zbins", np.linspace(0.5, 2.55, 5)), ("fine_zbins", np.linspace(0.5, 2.55, 9))):
        rows = []
        for a, b in itertools.pairwise(ze):
            s = (z >= a) & (z < b) if b < 2.55 else (z >= a) & (z <= b)
            h, _ = np.histogram(x[s], xe)
            hs, _ = np.histogram(x[s & (zs <= 2)], xe)
            rows.append({"z": [round(float(a), 4), round(float(b), 4)],
                         "limit_range": [round(float(f.log_mass_limit(a)), 3), round(float(f.log_mass_limit(b)), 3)],
                         "x_edges": xe.tolist(), "counts": h.tolist(),
                         "ratio_adjacent": [round(float(h[k] / h[k + 1]), 3) if h[k + 1] else None for k in range(h.size - 1)],
                         "spec_or_grism_fraction": [round(float(hs[k] / h[k]), 3) if h[k] else None for k in range(h.size)]})
            print(name, rows[-1]["z"], rows[-1]["limit_range"], h.tolist())
        out[name] = rows
    record(["data_near_limit"], out)


if __name__ == "__main__":
    main()
