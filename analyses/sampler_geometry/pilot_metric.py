"""Two-stage NUTS: a pilot with the Laplace metric (4 chains, from Laplace draws), then the
dense metric of all chains' pilot draws together ((n S + 10 L) / (n + 10)), from where each
pilot ended. Prints the diagnostics of both stages.

    DATA=0 python pilot_metric.py SEED W1 S1 W2 S2 TAG      # 3D-HST, e.g. 0 150 100 100 250 a
    DATA=-1 python pilot_metric.py 0 300 100 100 250 readme_a
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("JAX_ENABLE_X64", "1")
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from common import OUT, diagnostics, get
from jax.flatten_util import ravel_pytree
from numpyro.infer import MCMC, NUTS, init_to_value

from popmodel.smf.inference import _Potential, release_memory
from popmodel.smf.model import smf_model

seed = int(sys.argv[1])
W1, S1, W2, S2 = map(int, sys.argv[2:6])
tag = sys.argv[6]
shrink = float(os.environ.get("SHRINK", "10"))
data, prior, mp = get(int(os.environ.get("DATA", "0")))
arrays = data.arrays
pot = _Potential(prior, arrays)
rng = np.random.default_rng(seed)
u0 = rng.multivariate_normal(mp.u, mp.cov_u, size=4)
extra = ("diverging", "num_steps", "energy", "adapt_state.step_size")
from numpyro.infer.util import unconstrain_fn

sites = prior.latent_names


def to_u(d):
    return ravel_pytree(unconstrain_fn(smf_model, (arrays, prior), {}, {k: d[k] for k in sites}))[
        0
    ]


def run(metric, W, S, inits, key):
    kern = NUTS(
        partial(smf_model, prior=prior),
        dense_mass=True,
        target_accept_prob=0.8,
        adapt_mass_matrix=False,
        inverse_mass_matrix=jnp.asarray(metric),
        init_strategy=init_to_value(values=mp.params),
    )
    out = []
    for c, k in enumerate(jax.random.split(key, 4)):
        m = MCMC(
            kern,
            num_warmup=W,
            num_samples=S,
            num_chains=1,
            progress_bar=False,
            jit_model_args=True,
        )
        t = time.time()
        m.run(k, arrays, extra_fields=extra, init_params=pot.unravel(jnp.asarray(inits[c])))
        ex = m.get_extra_fields()
        smp = m.get_samples()
        z = np.asarray(jax.vmap(to_u)({k: smp[k] for k in sites}))
        out.append(
            {
                "z": z,
                "div": int(np.sum(ex["diverging"])),
                "steps": np.asarray(ex["num_steps"]),
                "eps": float(ex["adapt_state.step_size"][-1]),
                "energy": np.asarray(ex["energy"]),
                "samples": {k2: np.asarray(v) for k2, v in m.get_samples().items()},
                "t": time.time() - t,
            }
        )
        print(
            f"chain {c}: {out[-1]['t']:.0f} s, div {out[-1]['div']}, mean steps {out[-1]['steps'].mean():.1f}, eps {out[-1]['eps']:.3f}",
            flush=True,
        )
        release_memory()
    return out


t0 = time.time()
key1, key2 = jax.random.split(jax.random.key(seed))
pil = run(mp.cov_u, W1, S1, u0, key1)
Z = np.concatenate([o["z"] for o in pil])
n = len(Z)
S_hat = np.cov(Z.T)
metric = (n / (n + shrink)) * S_hat + (shrink / (n + shrink)) * mp.cov_u
from scipy.linalg import eigh

w = eigh(S_hat, mp.cov_u, eigvals_only=True)
print("pilot eig vs Laplace:", np.round(w[-4:], 2), np.round(w[:3], 2))
t1 = time.time()
fin = run(metric, W2, S2, [o["z"][-1] for o in pil], key2)
t2 = time.time()


def diag(runs):
    samp = {k: np.stack([o["samples"][k] for o in runs]) for k in runs[0]["samples"]}
    return diagnostics(
        samp,
        prior.names + list(prior.density_terms),
        np.stack([o["energy"] for o in runs]),
        [o["div"] for o in runs],
        np.stack([o["steps"] for o in runs]),
    )[1]


print("PILOT", diag(pil), f"{t1 - t0:.0f} s", flush=True)
print("FINAL", diag(fin), f"{t2 - t1:.0f} s", flush=True)
import pickle

Path(os.path.join(OUT, f"pilot_{tag}.pkl")).write_bytes(
    pickle.dumps({"pil": pil, "fin": fin, "metric": metric})
)
