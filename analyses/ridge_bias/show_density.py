"""Print the learned and the true p(log SFR | log M, z) of one run_mock_fit.py result
(``python show_density.py RUN.npz NODE``): where the flow puts density between the quiescent
and star-forming populations."""
import sys

import numpy as np
from scipy.stats import norm

d = np.load(sys.argv[1]); g = d["grid"]; mu = d["truth"]
dens = np.exp(d["dens"])
for i in [int(x) for x in sys.argv[2:]]:
    t = 0.8 * norm.pdf(g, mu[i], 0.3) + 0.2 * ((g > mu[i] - 2.5) & (g < mu[i] - 1)) / 1.5
    print("node", i, "M,z", d["M"][i], d["Z"][i], "mu", round(mu[i], 3))
    for off in np.arange(-2.6, 1.01, 0.1):
        j = np.argmin(abs(g - (mu[i] + off)))
        print(f"{off:+.1f} true {t[j]:.3f} " + " ".join(f"{dens[k, i, j]:.3f}" for k in range(dens.shape[0])))
