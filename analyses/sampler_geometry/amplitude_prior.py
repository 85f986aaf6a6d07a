"""NUTS (4 chains from Laplace draws) under a prior p(log phi*) proportional to phi*^POWER on top
of the prior that ``SMFPrior(amplitude="log")`` gives (POWER 0: uniform in log phi*; 1: uniform
in phi*, popmodel's default since 2026-12-07), with the Laplace metric (ADAPT 0) or NumPyro's
windowed re-estimation of it (ADAPT 1). Prints the RESULT line of ``common.diagnostics``.

    DATA SEED WARMUP SAMPLES POWER ADAPT TARGET TAG     (DATA -1: the README mock, 0: 3D-HST)
    python amplitude_prior.py -1 0 500 500 1 1 0.8 r_phi_adapt
"""

import dataclasses
import os
import pickle
import sys

os.environ.setdefault("JAX_ENABLE_X64", "1")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import jax.numpy as jnp
import numpyro

import popmodel.smf.inference as I
import popmodel.smf.model as M

ds, seed, W, S = (int(a) for a in sys.argv[1:5])
power = float(sys.argv[5])
adapt = bool(int(sys.argv[6]))
target = float(sys.argv[7])
tag = sys.argv[8]
_m = M.smf_model


def model2(data, prior):
    prior = dataclasses.replace(prior, amplitude="log")
    vals = _m(data, prior)
    if power:
        numpyro.factor(
            "phi_prior",
            sum(power * jnp.log(10.0) * vals[n] for n in prior.names if n.startswith("log_phi")),
        )
    return vals


I.smf_model = model2
M.smf_model = model2
import common

data, prior = common.build(0) if ds >= 0 else common.build_readme()
show = ["alpha1", "alpha2", "log_phi2_z0.2", "log_phi2_z1.6", "log_phi1_z1.6", "log_mstar_z1.6"]
samp, mp = common.fit_and_report(
    data, prior, seed, W, S, tag, show, adapt_mass_matrix=adapt, target_accept=target
)
with open(os.path.join(common.OUT, f"amp_{tag}.pkl"), "wb") as fh:
    pickle.dump({"samp": samp, "mp": mp}, fh)
