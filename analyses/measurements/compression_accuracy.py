"""Accuracy of Gauss-Hermite compression against the sample-based likelihood, over posterior draws.

The scale issue's criterion: over 200 posterior draws, the difference between the compressed
and the full log-likelihood has a standard deviation below 0.1. The "full" likelihood of S
posterior samples per galaxy carries its own Monte Carlo noise, so this script measures the
difference for S = 100, 400 and 1600 samples of the same galaxies, beside the floor set by the
samples themselves (two independent sets of S samples, both uncompressed):

    sd_S[GH(S) - samples(S)]        compression of the S samples against those S samples
    sd_S[samples(S, A) - samples(S, B)]   two independent sample sets: the Monte Carlo floor

If the compression is accurate, the first falls like 1/sqrt(S) with the second (both are the
samples' Monte Carlo noise); a compression error would show as a floor that does not fall.

Mock: five 3D-HST-like deep fields (``deep_survey``; mass errors 0.1/0.2/0.3 dex, redshift
errors 0.02(1+z)), about 2 x 10^4 galaxies with Gaussian posterior samples (not moment matched:
the Gauss-Hermite rule is built from each galaxy's sample mean and covariance, with their
sampling noise). Draws: 200 from the Laplace approximation at the MAP of the 1600-sample
Gauss-Hermite likelihood. Gauss-Hermite rule 8 mass x 2 redshift nodes, float32 arrays.

    python analyses/measurements/compression_accuracy.py            # about 5 minutes
    python analyses/measurements/compression_accuracy.py --out results/compression_accuracy.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_ENABLE_X64", "1")

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

from popmodel import __version__
from popmodel.catalog import PosteriorCatalog
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.inference import find_map
from popmodel.smf.likelihood import log_likelihood
from popmodel.smf.model import SMFPrior
from popmodel.testing import deep_survey


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--area", type=float, default=115.0, help="arcmin^2 per field")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100, 400, 1600])
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", default="results/compression_accuracy.json")
    a = ap.parse_args()
    t0 = time.perf_counter()
    survey = deep_survey(5, a.area)
    s_max = max(a.sizes)
    n_b = max(s for s in a.sizes if s < s_max) if len(a.sizes) > 1 else 0
    cat, _ = draw_mock(survey, seed=a.seed, n_samples=s_max + n_b)
    print(f"mock: {cat.n_galaxies} galaxies x {s_max + n_b} samples "
          f"({time.perf_counter() - t0:.0f} s)", flush=True)

    def prep(c: PosteriorCatalog, gh: bool):
        kw = {"posterior": "gauss-hermite", "gh_nodes": (8, 2)} if gh else {}
        return prepare_smf_data(c, survey, dtype=np.float32, cosmic_variance=False, **kw)

    prior = SMFPrior()
    ref_gh = prep(cat.sample_slice(0, s_max), gh=True)
    mp = find_map(ref_gh, prior)
    rng = np.random.default_rng(a.seed)
    mean = np.array([mp.params[n] for n in prior.names])
    draws = rng.multivariate_normal(mean, mp.cov, size=a.draws)
    params = [ContinuityParams.from_vector(v) for v in draws]
    f = jax.jit(log_likelihood)

    def lnl(arr) -> np.ndarray:
        return np.array([float(f(p, arr)) for p in params])

    rows = []
    for s in sorted(a.sizes):
        set_a = cat.sample_slice(0, s)
        la = lnl(prep(set_a, gh=False).arrays)
        lg = lnl(prep(set_a, gh=True).arrays)
        row = {"samples_per_galaxy": s, "sd_gh_minus_samples": float(np.std(lg - la))}
        if s <= n_b:  # an independent set of s samples: the Monte Carlo floor
            set_b = cat.sample_slice(s_max, s_max + s)
            row["sd_samples_b_minus_a"] = float(np.std(lnl(prep(set_b, gh=False).arrays) - la))
            row["sd_gh_b_minus_gh_a"] = float(np.std(lnl(prep(set_b, gh=True).arrays) - lg))
        rows.append(row)
        print(" ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                       for k, v in row.items()), flush=True)
    res = {"popmodel_version": __version__, "command": "python " + " ".join(sys.argv),
           "n_galaxies": int(ref_gh.report.n_used), "draws": a.draws, "seed": a.seed,
           "gh_nodes": [8, 2], "dtype": "float32", "cosmology": "WMAP9",
           "imf": "Chabrier (Leja+20 model)", "rows": rows,
           "wall_s": time.perf_counter() - t0}
    os.makedirs(os.path.dirname(a.out) or ".", exist_ok=True)
    with open(a.out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(f"wrote {a.out} ({res['wall_s']:.0f} s)")


if __name__ == "__main__":
    main()
