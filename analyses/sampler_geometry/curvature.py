"""The Hessian in the Laplace metric (L^T H L, identity at the MAP) at draws of a finished
3D-HST run: its stiffest and flattest directions. STUCK_RUN names the run's folder (the run
with a chain stuck in the tail: ``popmodel fit-3dhst --metric pooled --warmup 200 --samples
250`` at commit 04f51ca, whose ``--metric`` was reverted).
"""

import os

import arviz as az
import common as setup
import jax.numpy as jnp
import numpy as np
from common import OUT

from popmodel.smf.inference import _Potential

data, prior, mp = setup.get(0)
pot = _Potential(prior, data.arrays)
d = az.from_netcdf(
    os.environ.get("STUCK_RUN", os.path.join(OUT, "cli_pooled")) + "/smf_posterior.nc"
)
p = d.posterior
print(list(p.data_vars), p["delta"].shape if "delta" in p else "")
sig = np.asarray(data.density.sigma_dm)
labels = list(data.density.labels)


def params_of(c, i):
    out = {}
    for k in ["log_phi1", "log_phi2", "log_mstar"]:
        for j, z in enumerate(prior.anchor_z):
            out[f"{k}_z{z}"] = float(p[k].values[c, i, j])
    out["alpha1"] = float(p.alpha1.values[c, i])
    out["alpha2"] = float(p.alpha2.values[c, i])
    dl = np.asarray(p["delta"].values[c, i])
    for t, dv, s in zip(labels, dl, sig, strict=False):
        out[t + "_eta"] = float(dv / s)
    return out


umap = mp.u
H = lambda u: np.asarray(pot.hessian(jnp.asarray(u), data.arrays))
Hm = H(umap)
Um = float(pot.value_and_grad(jnp.asarray(umap), data.arrays)[0])
names = mp.u_names
L = np.linalg.cholesky(mp.cov_u)
for c, i in [(1, 50), (1, 200), (0, 100), (2, 100)]:
    u = pot.unconstrain(params_of(c, i), data.arrays)
    Hu = H(u)
    U = float(pot.value_and_grad(jnp.asarray(u), data.arrays)[0])
    # curvature relative to the Laplace metric: eigen of L^T H L (1 at the MAP for all directions)
    w, V = np.linalg.eigh(L.T @ Hu @ L)
    top = L @ V[:, -1]
    top /= np.abs(top).max()
    print(
        f"chain {c} draw {i}: U-Umap {U - Um:.1f}; whitened curvature eig max {w[-1]:.1f} min {w[0]:.3f}, median {np.median(w):.2f}"
    )
    print(
        "   stiffest direction:",
        {n: round(float(x), 2) for n, x in zip(names, top, strict=False) if abs(x) > 0.2},
    )
    wlo = L @ V[:, 0]
    wlo /= np.abs(wlo).max()
    print(
        "   flattest direction:",
        {n: round(float(x), 2) for n, x in zip(names, wlo, strict=False) if abs(x) > 0.2},
    )
