"""Ridge - truth and band coverage per variant (tag prefix before _s<seed>) at 0-0.3 dex smoothing,
from the .npz files of run_mock_fit.py in $RIDGE_BIAS_DIR."""
import glob
import os

import numpy as np

OUT = os.environ.get("RIDGE_BIAS_DIR", "/tmp/exp")
from collections import defaultdict

from scipy.special import logsumexp
from scipy.stats import norm

from popmodel.flow.sfs import ridge_band, sequence_statistics

H = (0.0, 0.1, 0.2, 0.3)
# the truth's own smoothed ridge
d = np.load(min(glob.glob(f"{OUT}/*.npz"))); g = d["grid"]; mu = d["truth"]; M, Z = d["M"], d["Z"]
tl = np.log(np.maximum(0.8 * norm.pdf(g[None], mu[:, None], 0.3) + 0.2 * ((g[None] > mu[:, None] - 2.5) & (g[None] < mu[:, None] - 1)) / 1.5, 1e-300))
for h in H:
    print("truth smoothed h", h, "ridge - mu max abs", np.abs(sequence_statistics(g, tl, M, Z, ridge_smoothing=h).ridge - mu).max().round(4))
res = defaultdict(lambda: defaultdict(list))
for f in sorted(glob.glob(f"{OUT}/*.npz")):
    tag = f.split("/")[-1][:-4]; var = tag.rsplit("_s", 1)[0]
    d = np.load(f); dens = d["dens"]; t = d["truth"]
    for h in H:
        st = np.stack([sequence_statistics(g, x, M, Z, ridge_smoothing=h).ridge for x in dens])
        pooled = sequence_statistics(g, logsumexp(dens, 0) - np.log(len(dens)), M, Z, ridge_smoothing=h).ridge
        lo, hi = ridge_band(st, pooled)
        res[var][h].append((pooled - t, (lo <= t) & (t <= hi)))
print(f"{'variant':14s} n " + "".join(f"   h={h}: mean  mabs  max  cov" for h in H))
for var in sorted(res):
    row = f"{var:14s} {len(res[var][0.0])} "
    for h in H:
        e = np.array([r[0] for r in res[var][h]]); c = np.mean([r[1] for r in res[var][h]])
        row += f"   {e.mean():+.3f} {np.abs(e).mean():.3f} {np.abs(e).max():.3f} {c:.2f}"
    print(row)
