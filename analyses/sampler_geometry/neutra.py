"""Neural-transport HMC (Hoffman et al. 2019, numpyro.infer.reparam.NeuTraReparam): an IAF
guide trained by SVI on the Laplace-whitened space, then NUTS in the warped space.

    DATA=-1 python neutra.py SEED WARMUP SAMPLES SVI_STEPS TAG   # e.g. 0 200 250 2000 readme_iaf
"""

import os
import pickle
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")

import common as setup
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from common import OUT
from numpyro.infer import MCMC, NUTS, SVI, Trace_ELBO, init_to_uniform, init_to_value
from numpyro.infer.autoguide import AutoBNAFNormal, AutoIAFNormal
from numpyro.infer.reparam import NeuTraReparam
from numpyro.infer.util import constrain_fn, potential_energy

from popmodel.smf.inference import _Potential, release_memory
from popmodel.smf.model import smf_model

seed = int(sys.argv[1])
W, S, NSVI = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tag = sys.argv[5]
GUIDE = os.environ.get("GUIDE", "iaf")
NP = int(os.environ.get("NP", "1"))
LR = float(os.environ.get("LR", "3e-3"))
ds = int(os.environ.get("DATA", "0"))
data, prior, mp = setup.get(ds)
arrays = data.arrays
pot = _Potential(prior, arrays)
d = len(mp.u)
Lc = jnp.asarray(np.linalg.cholesky(mp.cov_u))
um = jnp.asarray(mp.u)


def U(u, arrays):
    with numpyro.handlers.block():
        return potential_energy(smf_model, (arrays, prior), {}, pot.unravel(u))


def model_z(arrays):
    z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([d]).to_event(1))
    numpyro.factor("lp", -U(um + Lc @ z, arrays) + 0.5 * jnp.sum(z**2))


t0 = time.time()
if GUIDE == "iaf":
    guide = AutoIAFNormal(
        model_z,
        num_flows=int(os.environ.get("NF", "2")),
        hidden_dims=[2 * d, 2 * d],
        init_loc_fn=init_to_value(values={"z": jnp.zeros(d)}),
    )
else:
    guide = AutoBNAFNormal(
        model_z,
        num_flows=1,
        hidden_factors=[4, 4],
        init_loc_fn=init_to_value(values={"z": jnp.zeros(d)}),
    )
from numpyro.optim import ClippedAdam

opt = ClippedAdam(step_size=lambda i: LR * 0.1 ** (i / NSVI), clip_norm=10.0)
svi = SVI(model_z, guide, opt, Trace_ELBO(num_particles=NP, vectorize_particles=True))
res = svi.run(jax.random.key(seed + 100), NSVI, arrays, progress_bar=False)
losses = np.asarray(res.losses)
print(
    f"SVI {NSVI} steps {time.time() - t0:.0f} s; loss first {losses[:50].mean():.1f} last {losses[-200:].mean():.1f} (Laplace ref: U_map {float(U(um, arrays)):.1f})",
    flush=True,
)
release_memory()
neutra = NeuTraReparam(guide, res.params)
nm = neutra.reparam(model_z)
kern = NUTS(nm, target_accept_prob=0.8, init_strategy=init_to_uniform(radius=1.0))
t1 = time.time()
mc = MCMC(
    kern, num_warmup=W, num_samples=S, num_chains=4, chain_method="sequential", progress_bar=False
)
mc.run(
    jax.random.key(seed),
    arrays,
    extra_fields=("diverging", "num_steps", "energy", "adapt_state.step_size"),
)
t2 = time.time()
lat = mc.get_samples(group_by_chain=True)["auto_shared_latent"]
zs = neutra.transform_sample(lat.reshape(-1, lat.shape[-1]))["z"]
us = um + zs @ Lc.T


def cons(u):
    return constrain_fn(smf_model, (arrays, prior), {}, pot.unravel(u), return_deterministic=True)


c = jax.vmap(cons)(us)
keep = prior.names + list(prior.density_terms)
samp = {k: np.asarray(c[k]).reshape(4, S) for k in keep}
ex = mc.get_extra_fields(group_by_chain=True)
rep, line = setup.diagnostics(samp, keep, ex["energy"], ex["diverging"], ex["num_steps"])
line["eps"] = np.round(np.asarray(ex["adapt_state.step_size"])[:, -1], 3).tolist()
print(
    "RESULT",
    tag,
    line,
    f"NUTS {t2 - t1:.0f} s, total {t2 - t0:.0f} s",
    flush=True,
)
for k in ["alpha1", "alpha2", "log_phi2_z0.2", "log_phi2_z1.6", "log_phi2_z3.0", "log_phi1_z1.6"]:
    x = samp[k]
    print(
        f"  {k:15s} chain means {np.round(x.mean(1), 3)} sd {x.std():.3f} MAP {mp.params[k]:.3f} rhat {rep['r_hat'][k]:.3f} ess {rep['ess_bulk'][k]:.0f}"
    )
Path(os.path.join(OUT, f"neutra_{tag}.pkl")).write_bytes(pickle.dumps({"samp": samp}))
