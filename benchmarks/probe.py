"""The speed probe the benchmarks print beside their timings.

A jitted ``sum(exp(-x) + log(x))`` over ``n`` values, as exp-or-log evaluations per second
(best of ``repeats``): it tells how fast this machine is *right now*, so that timings taken on a
shared or throttled machine can be read as ratios (``benchmarks/README.md``). Imported by the
``bench_*.py`` scripts, which run with this folder on ``sys.path``.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp
import numpy as np


def exp_log_probe(n: int = 10_000_000, dtype=np.float64, lo: float = 0.1, hi: float = 10.0,
                  repeats: int = 3) -> float:
    """exp + log evaluations per second of a jitted loop over ``n`` values in [lo, hi]."""
    x = jax.device_put(np.linspace(lo, hi, n, dtype=dtype))
    f = jax.jit(lambda a: jnp.sum(jnp.exp(-a) + jnp.log(a)))  # not log(exp(a)): XLA folds it
    f(x).block_until_ready()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(x).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return 2 * n / best
