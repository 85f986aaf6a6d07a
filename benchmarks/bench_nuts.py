"""NUTS fit of a large mock with compressed posteriors: wall time, ESS and R-hat, and the
agreement with the uncompressed (posterior-sample) fit.

Run from the repository root::

    python benchmarks/bench_nuts.py                    # 2 x 10^4 galaxies, a few minutes
    python benchmarks/bench_nuts.py --full             # 10^5 galaxies x 100 samples
    python benchmarks/bench_nuts.py --full --reference out.json   # + the uncompressed fit (hours)
    python benchmarks/bench_nuts.py --full --compare-to analyses/recorded/bench_nuts_reference.json
    python benchmarks/bench_nuts.py --full --floor-to ref.json   # add uncompressed B to a --no-floor reference
    python benchmarks/bench_nuts.py --area 30 --chain-method parallel  # wall time per effective
                                                       # sample, chains one per device (or vectorized)

The mock: five 3D-HST-like deep fields (Leja et al. 2020 continuity model, the 3D-HST
completeness limits), mass errors 0.1/0.2/0.3 dex, redshift errors 0.02 (1 + z), 100
moment-matched posterior samples per galaxy, selection on the observed values. The fit:
Gauss-Hermite compression (8 mass x 2 redshift nodes per galaxy; :mod:`popmodel.compress`),
float32 node arrays, MAP + Laplace, then NUTS with 4 chains started from Laplace draws
(dense Laplace mass matrix, step size adapted), chains vectorised into each likelihood call.

Lines: ``SPEED`` (one loglik+grad call, and a speed probe), ``MAP``, ``NUTS`` (wall time,
gradients, divergences), ``ESS``/``RHAT`` per parameter (minimum over parameters printed
too), ``FIT wall time`` (prepare + MAP + NUTS), and with ``--reference`` the uncompressed fit
(100 samples per galaxy, the Jensen-corrected importance-sampled likelihood) and the
difference of the posterior means in units of the posterior sd and of the Monte Carlo
standard errors; ``--compare-to`` makes the same comparison with an uncompressed fit recorded
by an earlier ``--reference`` run (the same mock: 200 samples per galaxy, the first 100 used).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("JAX_ENABLE_X64", "1")
if "--chain-method" in sys.argv and "parallel" in sys.argv:  # one CPU device per chain
    _n = sys.argv[sys.argv.index("--chains") + 1] if "--chains" in sys.argv else "4"
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "")
                               + f" --xla_force_host_platform_device_count={_n}")

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from probe import exp_log_probe

from popmodel import __version__
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.evolution import leja2020_params
from popmodel.smf.inference import find_map, run_nuts
from popmodel.smf.likelihood import log_likelihood
from popmodel.smf.model import SMFPrior
from popmodel.testing import deep_survey


def fit(data, prior, args, label: str) -> dict:
    t0 = time.perf_counter()
    mp = find_map(data, prior)
    t_map = time.perf_counter() - t0
    print(f"MAP {label}: {t_map:.1f} s, {mp.n_evaluations} evaluations, converged {mp.converged}",
          flush=True)
    t0 = time.perf_counter()
    mcmc = run_nuts(data, prior, mp, num_warmup=args.warmup, num_samples=args.draws,
                    num_chains=args.chains, seed=args.seed, chain_method=args.chain_method,
                    init_spread=True, progress_bar=args.progress)
    samples = mcmc.get_samples(group_by_chain=True)
    jax.block_until_ready(samples)  # vectorised chains return before the sampling has run
    t_nuts = time.perf_counter() - t0
    extra = mcmc.get_extra_fields(group_by_chain=True)
    n_steps = int(np.sum(extra["num_steps"]))
    div = int(np.sum(extra["diverging"]))
    out = {"map_s": t_map, "nuts_s": t_nuts, "gradients_sampling": n_steps, "divergences": div,
           "params": {}}
    for n in prior.names:
        x = np.asarray(samples[n])
        out["params"][n] = {
            "mean": float(x.mean()), "sd": float(x.std()),
            "ess": float(effective_sample_size(x)), "rhat": float(split_gelman_rubin(x)),
        }
    ess = min(v["ess"] for v in out["params"].values())
    rhat = max(v["rhat"] for v in out["params"].values())
    print(f"NUTS {label}: {t_nuts:.1f} s ({args.chains} chains x ({args.warmup} + {args.draws}), "
          f"{args.chain_method}), {n_steps} leapfrog steps in sampling, {div} divergences; min "
          f"ESS {ess:.0f}, max R-hat {rhat:.4f}; WALL PER EFFECTIVE SAMPLE {t_nuts / ess:.3f} s "
          f"({args.chain_method})", flush=True)
    out["wall_per_ess_s"] = t_nuts / ess
    for n, v in out["params"].items():
        print(f"  {n:16s} mean {v['mean']:+.4f} sd {v['sd']:.4f} ESS {v['ess']:6.0f} "
              f"R-hat {v['rhat']:.4f}")
    out["min_ess"], out["max_rhat"] = ess, rhat
    return out


def compare(label: str, x: dict, y: dict, names: list[str]) -> float:
    """Print the difference of posterior means of fit x and fit y per parameter against the
    criterion |difference| <= 0.1 sd + 3 MCSE (MCSE of both fits); return the worst
    (|difference| - 3 MCSE) / sd."""
    worst = -np.inf
    print(label)
    for n in names:
        a, b = x["params"][n], y["params"][n]
        mcse = np.hypot(a["sd"] / np.sqrt(a["ess"]), b["sd"] / np.sqrt(b["ess"]))
        d = abs(a["mean"] - b["mean"])
        ok = d <= 0.1 * b["sd"] + 3 * mcse
        worst = max(worst, (d - 3 * mcse) / b["sd"])
        print(f"  {n:16s} {a['mean'] - b['mean']:+.4f} "
              f"({(a['mean'] - b['mean']) / b['sd']:+.2f} sd; MCSE {mcse:.4f}) "
              f"{'ok' if ok else 'OUTSIDE 0.1 sd + 3 MCSE'}")
    print(f"  worst (|difference| - 3 MCSE) / sd: {worst:.3f} (criterion: <= 0.1)")
    return float(worst)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="10^5 galaxies (default 2 x 10^4)")
    ap.add_argument("--reference", help="also run the uncompressed fit; write both to this JSON")
    ap.add_argument("--compare-to", help="a JSON written by --reference (the recorded one: "
                    "analyses/recorded/bench_nuts_reference.json): fit the same mock compressed "
                    "and compare with its uncompressed fit")
    ap.add_argument("--warmup", type=int, default=150)
    ap.add_argument("--draws", type=int, default=350)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--chain-method", default="vectorized", choices=("vectorized", "parallel",
                    "sequential"), help="how the chains run: batched into each likelihood call "
                    "(default), one per CPU device (the script makes one device per chain) or one "
                    "after another")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--progress", action="store_true")
    ap.add_argument("--area", type=float, help="arcmin^2 per field (overrides the size)")
    ap.add_argument("--floor-to", help="a JSON written by --reference --no-floor: fit only the "
                    "uncompressed B (the other 100 samples of the same mock) and compare both of "
                    "its fits with it: the Monte Carlo floor, run separately")
    ap.add_argument("--no-floor", action="store_true",
                    help="with --reference: skip the second uncompressed fit (independent samples, "
                         "the Monte Carlo floor), which halves the reference's cost")
    ap.add_argument("--chunk", type=int, default=1 << 16, help="samples per likelihood chunk "
                    "(larger on a GPU)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    area = args.area or (575.0 if args.full else 115.0)
    survey = deep_survey(5, area)
    print(f"# popmodel {__version__} NUTS benchmark; jax {jax.__version__}; devices "
          f"{jax.devices()}; {time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    t0 = time.perf_counter()
    # with --reference: 200 samples per galaxy, split into two independent sets of 100 (A
    # compressed and fitted uncompressed; B fitted uncompressed: the Monte Carlo noise floor)
    paired = bool(args.reference or args.compare_to or args.floor_to)
    cat2, truth = draw_mock(survey, seed=1, n_samples=200 if paired else 100, moment_matched=True)
    cat = cat2.sample_slice(0, 100) if paired else cat2
    print(f"MOCK {cat.n_galaxies} galaxies x 100 samples ({time.perf_counter() - t0:.1f} s)")
    prior = SMFPrior()
    t0 = time.perf_counter()
    data = prepare_smf_data(cat, survey, dtype=np.float32, cosmic_variance=False,
                            posterior="gauss-hermite", gh_nodes=(8, 2), chunk_size=args.chunk)
    t_prep = time.perf_counter() - t0
    nodes = sum(int(np.prod(b.log_mass.shape)) for b in data.arrays.blocks)
    print(f"PREPARE {t_prep:.1f} s: {data.report.n_used} galaxies, {nodes} padded nodes")
    p = leja2020_params()
    vg = jax.jit(jax.value_and_grad(log_likelihood))
    jax.block_until_ready(vg(p, data.arrays))
    best = np.inf
    for _ in range(3):
        t = time.perf_counter()
        jax.block_until_ready(vg(p, data.arrays))
        best = min(best, time.perf_counter() - t)
    pr = exp_log_probe(dtype=np.float32)
    print(f"SPEED loglik+grad {best * 1e3:.1f} ms per call ({nodes / best:.3g} nodes/s); "
          f"PROBE float32 exp+log {pr:.3g}/s")
    if args.floor_to:
        with open(args.floor_to) as fh:
            recorded = json.load(fh)
        full_b = prepare_smf_data(cat2.sample_slice(100, 200), survey, dtype=np.float32,
                                  cosmic_variance=False, chunk_size=args.chunk)
        ref_b = fit(full_b, prior, args, "uncompressed B (independent samples)")
        recorded["uncompressed_b"] = ref_b
        recorded["floor_command"] = " ".join(["bench_nuts.py", *sys.argv[1:]])
        for label, x, y in (("uncompressed B - uncompressed A", ref_b, recorded["uncompressed"]),
                            ("compressed - uncompressed B", recorded["compressed"], ref_b)):
            recorded[f"worst_excess_sd {label}"] = compare(label, x, y, prior.names)
        with open(args.floor_to, "w") as fh:
            json.dump(recorded, fh, indent=1)
        print(f"TOTAL {time.perf_counter() - t_start:.1f} s")
        return
    res = fit(data, prior, args, "compressed")
    total = t_prep + res["map_s"] + res["nuts_s"]
    print(f"FIT wall time (prepare + MAP + NUTS, compressed): {total:.1f} s; criterion: min ESS "
          f">= 400 ({res['min_ess']:.0f}), max R-hat < 1.01 ({res['max_rhat']:.4f}), < 600 s")
    record = {"popmodel_version": __version__, "command": " ".join(["bench_nuts.py", *sys.argv[1:]]),
              "n_galaxies": int(data.report.n_used), "compressed": res, "prepare_s": t_prep,
              "fit_wall_s": total, "seed": args.seed,
              "truth": {k: float(v) for k, v in truth.params.to_dict().items()}}
    if args.compare_to:
        with open(args.compare_to) as fh:
            recorded = json.load(fh)
        if recorded["n_galaxies"] != int(data.report.n_used):
            raise SystemExit(f"{args.compare_to} was run on {recorded['n_galaxies']} galaxies, this "
                             f"mock has {data.report.n_used}: use the same size options")
        print(f"against the uncompressed fit recorded in {args.compare_to} "
              f"({recorded['command']}, popmodel {recorded['popmodel_version']})")
        compare("compressed (this run) - uncompressed (recorded)", res, recorded["uncompressed"],
                prior.names)
    if args.reference:
        full = prepare_smf_data(cat, survey, dtype=np.float32, cosmic_variance=False,
                                chunk_size=args.chunk)
        ref = fit(full, prior, args, "uncompressed A")
        del full
        pairs = [("compressed - uncompressed A", res, ref)]
        record["uncompressed"] = ref
        if not args.no_floor:
            full_b = prepare_smf_data(cat2.sample_slice(100, 200), survey, dtype=np.float32,
                                      cosmic_variance=False, chunk_size=args.chunk)
            ref_b = fit(full_b, prior, args, "uncompressed B (independent samples)")
            record["uncompressed_b"] = ref_b
            pairs.append(("uncompressed B - uncompressed A", ref_b, ref))
        for label, x, y in pairs:
            record[f"worst_excess_sd {label}"] = compare(label, x, y, prior.names)
        with open(args.reference, "w") as fh:
            json.dump(record, fh, indent=1)
    print(f"TOTAL {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
