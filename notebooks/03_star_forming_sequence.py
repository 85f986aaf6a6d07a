# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # The star-forming sequence from Leja et al.'s released flow
#
# Leja et al. (2022, ApJ 936, 165) released the normalizing flow that describes the density of
# their 3D-HST + COSMOS-2015 sample in (z, log M, log SFR). popmodel reimplements its
# architecture (`popmodel.flow.leja2022.Leja2022Flow`) to read the weights, and measures the
# star-forming sequence from the conditional density p(log SFR | log M, z) with
# `popmodel.flow.sfs.sequence_statistics`: the ridge (the mode of the star-forming branch) and
# the population mean $\log_{10}\langle{\rm SFR}\rangle$. Both are compared with the paper's Eq. 10 fits (Table 1).
# Use the flow only above the mass-completeness limit: below it, it is an extrapolation.
#
# The weights file carries no licence and is not shipped with popmodel: download
# `data/trained_flow_nsamp100.pth` from github.com/jrleja/sfs_leja_trained_flow and set
# `POPMODEL_LEJA2022_FLOW` to its path (or clone that repository next to this folder or one
# above it). `POPMODEL_SMOKE=1` evaluates fewer points (seconds). The same flow trained by
# popmodel on data is `popmodel fit-sfs` (see the user guide).

# %%
import os
from pathlib import Path

import numpy as np

from popmodel.flow.leja2022 import Leja2022Flow, leja2022_mass_limit
from popmodel.flow.parametric import leja2022_log_sfr
from popmodel.flow.sfs import sequence_statistics

SMOKE = os.environ.get("POPMODEL_SMOKE") == "1"
NAME = "trained_flow_nsamp100.pth"


def find_weights() -> Path:
    """The released weights: $POPMODEL_LEJA2022_FLOW, or a clone of Leja's repository here or
    in a folder above."""
    env = os.environ.get("POPMODEL_LEJA2022_FLOW")
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent if "__file__" in globals() else Path.cwd()
    for base in (here, *here.parents):
        for cand in (base / NAME, base / "sfs_leja_trained_flow" / "data" / NAME):
            if cand.is_file():
                return cand
    raise FileNotFoundError(f"{NAME} not found: download it from "
                            f"github.com/jrleja/sfs_leja_trained_flow (data/{NAME}) and set "
                            "POPMODEL_LEJA2022_FLOW to its path")


flow = Leja2022Flow.load(find_weights())

# %% [markdown]
# ## Ridge and mean SFR above the completeness limit

# %%
zs = np.array([1.0, 2.0]) if SMOKE else np.array([0.5, 1.0, 1.5, 2.0, 2.5])
step = 0.5 if SMOKE else 0.1
grid = np.arange(-3.0, 3.0001, 0.01)  # log SFR [Msun/yr]; covers the density's upper tail
rows = []
for z in zs:
    mc = float(leja2022_mass_limit(z))
    lm = np.arange(np.ceil(mc / step) * step, 11.5001, step)
    lp = flow.conditional_log_density(lm, np.full(lm.size, z), grid,
                                      n_dummy=15 if SMOKE else 49)
    st = sequence_statistics(grid, lp, lm, np.full(lm.size, z))
    ridge_eq10 = leja2022_log_sfr(lm, z, "ridge")
    mean_eq10 = leja2022_log_sfr(lm, z, "mean")
    rows += list(zip(np.full(lm.size, z), lm, st.ridge, ridge_eq10, st.log_mean_sfr, mean_eq10,
                     strict=True))
print(" z    log M   ridge(flow)  Eq.10   log<SFR>(flow)  Eq.10")
for z, m, r, re, mn, me in rows:
    print(f"{z:3.1f}  {m:5.2f}   {r:+8.3f}  {re:+7.3f}    {mn:+8.3f}    {me:+7.3f}")
arr = np.array(rows)
d_ridge, d_mean = arr[:, 2] - arr[:, 3], arr[:, 4] - arr[:, 5]
ok = np.isfinite(d_ridge)
print(f"flow - Eq. 10 over {arr.shape[0]} points: ridge median {np.median(d_ridge[ok]):+.3f}, "
      f"rms {np.sqrt(np.mean(d_ridge[ok] ** 2)):.3f} dex; log<SFR> median "
      f"{np.median(d_mean):+.3f}, rms {np.sqrt(np.mean(d_mean**2)):.3f} dex")

# %% [markdown]
# ## The sequence over the density
# The conditional density at z = 1 with the ridge and the mean; the mean lies below the ridge
# at high mass, where quiescent galaxies dominate.

# %%
import matplotlib.pyplot as plt

z = 1.0
lm = np.arange(9.0, 11.5001, 0.05 if not SMOKE else 0.25)
lp = flow.conditional_log_density(lm, np.full(lm.size, z), grid, n_dummy=15 if SMOKE else 49)
st = sequence_statistics(grid, lp, lm, np.full(lm.size, z))
fig, ax = plt.subplots(figsize=(5.5, 4.2))
ax.pcolormesh(lm, grid, np.exp(lp).T, shading="nearest", cmap="Greys")
ax.plot(lm, st.ridge, "C0", label="ridge (flow)")
ax.plot(lm, st.log_mean_sfr, "C1", label=r"$\log_{10}\langle$SFR$\rangle$ (flow)")
ax.plot(lm, leja2022_log_sfr(lm, z, "ridge"), "C0--", label="ridge, Leja+22 Eq. 10")
ax.plot(lm, leja2022_log_sfr(lm, z, "mean"), "C1--", label="mean, Leja+22 Eq. 10")
ax.axvline(float(leja2022_mass_limit(z)), color="0.5", lw=0.8, ls=":", label="completeness")
ax.set_xlabel(r"$\log_{10}\,M_*/M_\odot$")
ax.set_ylabel(r"$\log_{10}\,$SFR [$M_\odot\,$yr$^{-1}$]")
ax.set_ylim(-2.5, 2.5)
ax.set_title(f"Leja et al. 2022 released flow, z = {z:g}")
ax.legend(fontsize=7, loc="lower right")
fig.tight_layout()
