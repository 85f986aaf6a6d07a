"""The default NUTS (Laplace metric, 4 chains from Laplace draws) with a prior uniform in phi*
rather than log phi* (p(log phi) ~ phi^POWER) for the components in COMPS ("12", "2").

    COMPS=12 DATA=0 python phi_prior.py SEED WARMUP SAMPLES TAG    # 3D-HST, e.g. 0 150 125 h_lin12
    COMPS=12 DATA=-1 python phi_prior.py 0 300 250 readme_lin12    # the README example's mock
"""

import os
import pickle
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")
import arviz as az
import jax.numpy as jnp
import numpy as np
import numpyro

import popmodel.smf.inference as I
import popmodel.smf.model as M

comps = os.environ.get("COMPS", "2")  # "2", "12", or "none"
power = float(os.environ.get("POWER", "1"))  # p(log phi) ∝ phi^power


def smf_model3(data, prior):
    vals = {n: numpyro.sample(n, prior.distribution(n)) for n in prior.names}
    from popmodel.smf.evolution import ContinuityParams

    p = ContinuityParams.from_dict(vals, prior.anchor_z)
    delta = None
    if prior.density_terms:
        eta = jnp.stack(
            [numpyro.sample(n, numpyro.distributions.Normal(0.0, 1.0)) for n in prior.eta_names]
        )
        delta = data.delta_from_eta(eta)
        for i, t in enumerate(prior.density_terms):
            numpyro.deterministic(t, delta[i])
    numpyro.factor("log_likelihood", M.log_likelihood(p, data, delta=delta))
    if comps != "none":
        lp = sum(
            power * jnp.log(10.0) * vals[n]
            for n in prior.names
            if any(n.startswith(f"log_phi{c}") for c in comps)
        )
        numpyro.factor("phi_prior", lp)


I.smf_model = smf_model3
M.smf_model = smf_model3
import common as setup
from common import OUT

from popmodel.smf.inference import find_map, release_memory, run_nuts

seed = int(sys.argv[1])
W, S = int(sys.argv[2]), int(sys.argv[3])
tag = sys.argv[4]
ds = int(os.environ.get("DATA", "0"))
data, prior = setup.build(0) if ds >= 0 else setup.build_readme()
t = time.time()
mp = find_map(data, prior)
print("MAP", round(time.time() - t), mp.message, flush=True)
release_memory()
t = time.time()
m = run_nuts(
    data,
    prior,
    mp,
    num_warmup=W,
    num_samples=S,
    num_chains=4,
    seed=seed,
    init_spread=True,
    progress_bar=False,
)
wall = time.time() - t
samp = m.get_samples(group_by_chain=True)
ex = m.get_extra_fields(group_by_chain=True)
keep = prior.names + list(prior.density_terms)
idata = az.from_dict(posterior={k: np.asarray(samp[k]) for k in keep})
rh = az.rhat(idata)
eb = az.ess(idata, method="bulk")
et = az.ess(idata, method="tail")
r = {k: float(rh[k]) for k in keep}
b = {k: float(eb[k]) for k in keep}
tl = {k: float(et[k]) for k in keep}
wr = max(r, key=r.get)
wb = min(b, key=b.get)
wt = min(tl, key=tl.get)
e = np.asarray(ex["energy"])
bfmi = [float(np.sum(np.diff(x) ** 2) / np.sum((x - x.mean()) ** 2)) for x in e]
print(
    "RESULT",
    tag,
    {
        "rhat": (wr, round(r[wr], 4)),
        "bulk": (wb, round(b[wb])),
        "tail": (wt, round(tl[wt])),
        "div": int(np.sum(ex["diverging"])),
        "bfmi": np.round(bfmi, 2).tolist(),
        "grads": int(np.sum(ex["num_steps"])),
        "steps_mean": float(np.mean(ex["num_steps"])),
    },
    f"{wall:.0f} s",
    flush=True,
)
for k in ["alpha1", "alpha2", "log_phi2_z0.2", "log_phi2_z1.6", "log_phi2_z3.0", "log_phi1_z1.6"]:
    x = np.asarray(samp[k])
    print(
        f"  {k:15s} chain means {np.round(x.mean(1), 3)} MAP {mp.params[k]:.3f} rhat {r[k]:.3f} ess {b[k]:.0f}"
    )
Path(os.path.join(OUT, f"prior_{tag}.pkl")).write_bytes(
    pickle.dumps({"samp": {k: np.asarray(v) for k, v in samp.items()}, "mp": mp})
)
