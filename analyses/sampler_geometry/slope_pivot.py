"""NUTS with alpha2 replaced by the SMF's logarithmic slope at (z = 1.6, log M = MP), the
quantity the data fix in the bulk and in the tail alike (sd 0.010-0.013 in every chain of the
stuck run, at -0.604 to -0.610). Sampled as t = (s - s(alpha2 = -1.99)) / (s(-1) - s(-1.99))
in (0, 1), alpha2 found by bisection plus two Newton steps (exact first and second
derivatives), with the Jacobian that keeps alpha2's prior uniform.

    DATA=0 python slope_pivot.py 0 150 125 h          # 3D-HST
    DATA=-1 python slope_pivot.py 0 300 250 readme    # the README example's mock
"""

import os
import pickle
import sys
import time

os.environ.setdefault("JAX_ENABLE_X64", "1")
import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import popmodel.smf.inference as I
import popmodel.smf.model as M
from popmodel.smf.evolution import ContinuityParams

MP = float(os.environ.get("MP", "9.5"))
ZI = 1  # anchor index of z = 1.6
LN10 = np.log(10.0)


def slope(a2, a1, lp1, lp2, ms):
    lx = (MP - ms) * LN10  # ln x
    l1 = lp1 * LN10 + (a1 + 1) * lx
    l2 = lp2 * LN10 + (a2 + 1) * lx
    w2 = jax.nn.sigmoid(l2 - l1)
    return (1 - w2) * (a1 + 1) + w2 * (a2 + 1) - jnp.exp(lx)


dslope = jax.grad(slope)


def alpha2_of(s, a1, lp1, lp2, ms, lo, hi):
    def body(_, ab):
        a, b = ab
        m = 0.5 * (a + b)
        up = slope(m, a1, lp1, lp2, ms) < s
        return (jnp.where(up, m, a), jnp.where(up, b, m))

    a, b = jax.lax.fori_loop(0, 60, body, (jnp.asarray(lo, float), jnp.asarray(hi, float)))
    x = jax.lax.stop_gradient(0.5 * (a + b))
    for _ in range(2):  # Newton steps from the stopped root: the first gives exact first
        # derivatives (implicit function theorem), the second exact second derivatives
        x = x - (slope(x, a1, lp1, lp2, ms) - s) / dslope(x, a1, lp1, lp2, ms)
    return x


def model(data, prior):
    names = [n for n in prior.names if n != "alpha2"]
    vals = {n: numpyro.sample(n, prior.distribution(n)) for n in names}
    lo, hi = prior.bounds["alpha2"]
    t = numpyro.sample("alpha2_t", dist.Uniform(0.0, 1.0))
    z = prior.anchor_z[ZI]
    args = (
        vals["alpha1"],
        vals[f"log_phi1_z{z}"],
        vals[f"log_phi2_z{z}"],
        vals[f"log_mstar_z{z}"],
    )
    s_lo = slope(lo, *args)
    s_hi = slope(hi, *args)
    s = s_lo + t * (s_hi - s_lo)
    a2 = alpha2_of(s, *args, lo, hi)
    numpyro.deterministic("alpha2", a2)
    numpyro.deterministic("slope", s)
    # uniform prior on alpha2: p(alpha2) = p(t) |dt/dalpha2| must be constant
    numpyro.factor("alpha2_prior", jnp.log(s_hi - s_lo) - jnp.log(dslope(a2, *args)))
    vals["alpha2"] = a2
    p = ContinuityParams.from_dict(vals, prior.anchor_z)
    delta = None
    if prior.density_terms:
        eta = jnp.stack([numpyro.sample(n, dist.Normal(0.0, 1.0)) for n in prior.eta_names])
        delta = data.delta_from_eta(eta)
        for i, tt in enumerate(prior.density_terms):
            numpyro.deterministic(tt, delta[i])
    numpyro.factor("log_likelihood", M.log_likelihood(p, data, delta=delta))


I.smf_model = model
_orig_init = I._default_init


def _init(prior):
    d = _orig_init(prior)
    d["alpha2_t"] = 0.5
    return d


I._default_init = _init
_orig_cons = I._Potential.constrain


def _cons(self, u, template):
    from numpyro.infer.util import constrain_fn

    c = constrain_fn(
        model, (template, self.prior), {}, self.unravel(jnp.asarray(u)), return_deterministic=True
    )
    return {k: float(c[k]) for k in list(c) if np.ndim(c[k]) == 0}


I._Potential.constrain = _cons
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
print(
    "MAP",
    round(time.time() - t),
    mp.message,
    {
        k: round(v, 3)
        for k, v in mp.params.items()
        if k in ("alpha1", "alpha2", "alpha2_t", "slope")
    },
    flush=True,
)
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
for k in [
    "alpha1",
    "alpha2",
    "slope",
    "log_phi2_z0.2",
    "log_phi2_z1.6",
    "log_phi2_z3.0",
    "log_phi1_z1.6",
]:
    x = np.asarray(samp[k])
    print(
        f"  {k:15s} chain means {np.round(x.mean(1), 3)} sd {x.std():.3f} rhat {r.get(k, float(az.rhat(x))):.3f} ess {b.get(k, float(az.ess(x))):.0f}"
    )
with open(os.path.join(OUT, f"slope_{tag}.pkl"), "wb") as fh:
    pickle.dump({"samp": {k: np.asarray(v) for k, v in samp.items()}}, fh)
