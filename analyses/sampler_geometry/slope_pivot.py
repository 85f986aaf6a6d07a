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

os.environ.setdefault("JAX_ENABLE_X64", "1")
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

import popmodel.smf.inference as I
import popmodel.smf.model as M

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
    M.likelihood_sites(vals, data, prior)


I.smf_model = model
_orig_init = I._default_init


def _init(prior):
    d = _orig_init(prior)
    d["alpha2_t"] = 0.5
    return d


I._default_init = _init


def _cons(self, u, template):
    from numpyro.infer.util import constrain_fn

    c = constrain_fn(
        model, (template, self.prior), {}, self.unravel(jnp.asarray(u)), return_deterministic=True
    )
    return {k: float(c[k]) for k in list(c) if np.ndim(c[k]) == 0}


I._Potential.constrain = _cons
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
    [
        "alpha1",
        "alpha2",
        "slope",
        "log_phi2_z0.2",
        "log_phi2_z1.6",
        "log_phi2_z3.0",
        "log_phi1_z1.6",
    ],
    map_keys=("alpha1", "alpha2", "alpha2_t", "slope"),
)
with open(os.path.join(OUT, f"slope_{tag}.pkl"), "wb") as fh:
    pickle.dump({"samp": samp}, fh)
