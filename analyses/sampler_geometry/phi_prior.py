"""The default NUTS (Laplace metric, 4 chains from Laplace draws) with a prior uniform in phi*
rather than log phi* (p(log phi) ~ phi^POWER) for the components in COMPS ("12", "2").

    COMPS=12 DATA=0 python phi_prior.py SEED WARMUP SAMPLES TAG    # 3D-HST, e.g. 0 150 125 h_lin12
    COMPS=12 DATA=-1 python phi_prior.py 0 300 250 readme_lin12    # the README example's mock
"""

import os
import pickle
import sys
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")
import jax.numpy as jnp
import numpyro

import popmodel.smf.inference as I
import popmodel.smf.model as M

comps = os.environ.get("COMPS", "2")  # "2", "12", or "none"
power = float(os.environ.get("POWER", "1"))  # p(log phi) ∝ phi^power


_smf_model = M.smf_model


def smf_model3(data, prior):
    vals = _smf_model(data, prior)
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

seed = int(sys.argv[1])
W, S = int(sys.argv[2]), int(sys.argv[3])
tag = sys.argv[4]
ds = int(os.environ.get("DATA", "0"))
data, prior = setup.build(0) if ds >= 0 else setup.build_readme()
samp, mp = setup.fit_and_report(
    data,
    prior,
    seed,
    W,
    S,
    tag,
    ["alpha1", "alpha2", "log_phi2_z0.2", "log_phi2_z1.6", "log_phi2_z3.0", "log_phi1_z1.6"],
)
Path(os.path.join(OUT, f"prior_{tag}.pkl")).write_bytes(pickle.dumps({"samp": samp, "mp": mp}))
