"""Throughput of the mass-function log-likelihood + gradient, and wall time of the default fit.

Run from the repository root::

    python benchmarks/bench_likelihood.py          # under 5 minutes on a 2-core CPU
    python benchmarks/bench_likelihood.py --full   # more timed calls; the fit at full size

Prints, among other lines, exactly one line per precision of the form::

    THROUGHPUT float32 N=100000 S=100 loglik+grad: 1.234e+07 galaxy-samples/s

Timings are machine- and moment-dependent (noise of 2-3x between runs on shared CPUs), so
every run also times, in the same process, a speed probe (jitted exp+log over N*S float64
values) and a naive numpy implementation of the same log-likelihood value; the ratios
against those are what to compare across machines. Every timing is the best of 3 repeats.
See benchmarks/README.md for what each line means.
"""

from __future__ import annotations

import os

# JAX must be configured before anything else imports it, hence the late imports below.
os.environ["JAX_ENABLE_X64"] = "1"

import numpyro

# Two host devices so that the fit's two NUTS chains run in parallel; this sets XLA_FLAGS and
# must happen before JAX initialises its backend.
numpyro.set_host_device_count(2)

import jax

jax.config.update("jax_enable_x64", True)

import argparse
import gc
import platform
import resource
import sys
import time
from collections.abc import Callable

import jax.numpy as jnp
import jaxlib
import numpy as np
import scipy
from probe import exp_log_probe
from scipy.special import logsumexp

from popmodel.catalog import PosteriorCatalog
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.evolution import ContinuityParams, leja2020_params
from popmodel.smf.fit import FitConfig, fit_smf
from popmodel.smf.likelihood import log_likelihood
from popmodel.survey import Field, Survey

N_GALAXIES = 100_000
N_SAMPLES = 100
N_REPEATS = 3
LN10 = float(np.log(10.0))


# ---------------------------------------------------------------------------------- helpers
def best_time(fn: Callable[[], object], n_calls: int, n_repeats: int = N_REPEATS) -> float:
    """Best over ``n_repeats`` of the mean time of ``n_calls`` calls of ``fn`` [s per call]."""
    best = np.inf
    for _ in range(n_repeats):
        t0 = time.perf_counter()
        for _ in range(n_calls):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - t0) / n_calls)
    return best


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far [MiB] (ru_maxrss is KiB on Linux)."""
    scale = 1.0 / 1024**2 if sys.platform == "darwin" else 1.0 / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def tree_mib(tree: object) -> float:
    return sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(tree)) / 1024**2


# ---------------------------------------------------------------------------- the catalogue
def synthetic_survey(n_fields: int = 5) -> Survey:
    """Fields whose completeness limit (10^7 Msun) lies far below every synthetic galaxy."""
    fields = [
        Field(
            f"F{i}", 180.0, 0.2, 3.0, [0.2, 3.0], [7.0, 7.0],
            mass_error_dex=0.1, z_error=0.0, area_unit="arcmin2",
        )
        for i in range(n_fields)
    ]
    return Survey(tuple(fields), name="synthetic")


def synthetic_catalog(survey: Survey, n: int, s: int, seed: int = 1) -> PosteriorCatalog:
    """n galaxies x s posterior samples: masses 9-11.5, redshifts 0.5-2.5, Gaussian scatter."""
    rng = np.random.default_rng(seed)
    m0 = rng.uniform(9.0, 11.5, n)
    z0 = rng.uniform(0.5, 2.5, n)
    log_mass = m0[:, None] + 0.1 * rng.standard_normal((n, s))
    z = z0[:, None] + 0.03 * (1.0 + z0[:, None]) * rng.standard_normal((n, s))
    names = np.array(survey.field_names)
    return PosteriorCatalog(
        ids=np.char.add("g", np.arange(n).astype(str)),
        fields=names[rng.integers(0, names.size, n)],
        offsets=np.arange(n + 1, dtype=np.int64) * s,
        log_mass=log_mass.ravel(),
        z=z.ravel(),
        obs_log_mass=m0,
        obs_z=z0,
        meta={"synthetic": True, "seed": seed},
    )


# -------------------------------------------------------------------- the numpy reference
def _lagrange(anchor_z: tuple[float, ...], z: np.ndarray, values: np.ndarray) -> np.ndarray:
    za = np.asarray(anchor_z, float)
    out = np.zeros_like(z)
    for k in range(za.size):
        term = np.full_like(z, values[k])
        for j in range(za.size):
            if j != k:
                term *= (z - za[j]) / (za[k] - za[j])
        out += term
    return out


def numpy_ln_phi(log_m: np.ndarray, z: np.ndarray, p: ContinuityParams) -> np.ndarray:
    """The continuity double Schechter, ln Phi [ln(Mpc^-3 dex^-1)], in plain numpy."""
    lp1 = _lagrange(p.anchor_z, z, np.asarray(p.log_phi1))
    lp2 = _lagrange(p.anchor_z, z, np.asarray(p.log_phi2))
    x = log_m - _lagrange(p.anchor_z, z, np.asarray(p.log_mstar))
    cut = np.exp(LN10 * x)
    c = np.log(LN10)
    s1 = c + LN10 * (lp1 + (float(p.alpha1) + 1.0) * x) - cut
    s2 = c + LN10 * (lp2 + (float(p.alpha2) + 1.0) * x) - cut
    return np.logaddexp(s1, s2)


def numpy_value_and_grad(
    v: np.ndarray, anchor_z: tuple[float, ...], log_m: np.ndarray, z: np.ndarray,
    offset: np.ndarray, weight: np.ndarray, grid: tuple,
) -> tuple[float, np.ndarray]:
    """ln L and its analytic gradient on dense (N, S) float64 arrays, vectorised numpy.

    The same likelihood as popmodel's default (importance-sampled galaxy terms with the
    Jensen correction, minus the expected number on the quadrature grid), written
    independently: sum_i [logsumexp_j(ln Phi + c_ij) + J_i] - sum_g exp(ln Phi_g + w_g),
    with dJ_i = sum_j [c_ij - q_ij C_i] dv_ij. ``v`` is the 11-vector of
    :func:`popmodel.smf.evolution.parameter_names`.
    """
    k = len(anchor_z)
    vinv = np.linalg.inv(np.vander(np.asarray(anchor_z, float), increasing=True))
    coef = [vinv @ v[i * k:(i + 1) * k] for i in range(3)]
    ap1, ap2 = v[3 * k] + 1.0, v[3 * k + 1] + 1.0

    def parts(lm, zz):
        zp = np.stack([zz**n for n in range(k)])  # (k, ...)
        lp1, lp2, lms = (np.tensordot(c, zp, axes=1) for c in coef)
        u = lm - lms
        a1 = LN10 * (lp1 + ap1 * u)
        a2 = LN10 * (lp2 + ap2 * u)
        e = np.exp(LN10 * u)
        lae = np.logaddexp(a1, a2)
        r1 = np.exp(a1 - lae)
        return zp, u, e, r1, np.log(LN10) + lae - e

    def grad_from(wgt, zp, u, e, r1):
        wa, wb = wgt * r1, wgt * (1.0 - r1)
        wm = wgt * e - ap1 * wa - ap2 * wb
        axes = tuple(range(1, zp.ndim))
        g = [vinv.T @ np.sum(w * zp, axis=axes) for w in (wa, wb, wm)]
        return LN10 * np.concatenate([*g, [np.sum(wa * u), np.sum(wb * u)]])

    zp, u, e, r1, lnphi = parts(log_m, z)
    val = lnphi + offset
    lg = logsumexp(val, axis=1)
    q = np.exp(val - lg[:, None])
    c = (q - weight) * q
    jterm = 0.5 * np.sum((q - weight) ** 2, axis=1)
    wgt = q * (1.0 - c.sum(axis=1, keepdims=True)) + c
    gal_grad = grad_from(wgt, zp, u, e, r1)
    gm, gz, gw = grid
    zp_g, u_g, e_g, r1_g, lnphi_g = parts(gm, gz)
    n_g = np.exp(lnphi_g + gw)
    value = float(np.sum(lg + jterm) - np.sum(n_g))
    return value, gal_grad - grad_from(n_g, zp_g, u_g, e_g, r1_g)


def time_numpy_reference(
    cat: PosteriorCatalog, offset: np.ndarray, weight: np.ndarray, grid: tuple, n: int, s: int
) -> tuple[float, float, np.ndarray]:
    """Best-of-3 seconds per call of :func:`numpy_value_and_grad`, its value and gradient."""
    lm, zz, off, w = (a.reshape(n, s) for a in (cat.log_mass, cat.z, offset, weight))
    p = leja2020_params()
    v = np.asarray(p.to_vector())
    t = best_time(lambda: numpy_value_and_grad(v, p.anchor_z, lm, zz, off, w, grid), n_calls=1)
    val, grad = numpy_value_and_grad(v, p.anchor_z, lm, zz, off, w, grid)
    return t, val, grad


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true",
                    help="more timed calls, and the default fit at full (5-field) size")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    n, s = N_GALAXIES, N_SAMPLES
    n_calls = 10 if args.full else 3

    print(f"# popmodel likelihood benchmark ({'full' if args.full else 'default'} mode), "
          f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    print(f"# python {platform.python_version()}, jax {jax.__version__}, "
          f"jaxlib {jaxlib.__version__}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"numpyro {numpyro.__version__}")
    print(f"# machine: {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} CPUs; jax devices: {jax.devices()}")

    probe_before = exp_log_probe(n * s)
    print(f"PROBE exp+log float64 (before): {probe_before:.3e} transcendental evaluations/s")

    t0 = time.perf_counter()
    survey = synthetic_survey()
    cat = synthetic_catalog(survey, n, s)
    print(f"CATALOGUE synthetic N={n} S={s} ({len(survey.fields)} fields): "
          f"built in {time.perf_counter() - t0:.1f} s")

    p = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), leja2020_params())
    vg = jax.jit(jax.value_and_grad(log_likelihood))
    results = {}
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        t0 = time.perf_counter()
        data = prepare_smf_data(cat, survey, dtype=dtype)
        t_prep = time.perf_counter() - t0
        assert data.report.n_used == n, data.report.summary()
        arrays = jax.device_put(data.arrays)
        jax.block_until_ready(arrays)
        t0 = time.perf_counter()
        val, grad = vg(p, arrays)
        jax.block_until_ready((val, grad))
        t_compile = time.perf_counter() - t0
        t_call = best_time(lambda arrays=arrays: vg(p, arrays), n_calls)
        thr = n * s / t_call
        results[name] = (thr, float(val), np.asarray(grad.to_vector()))
        print(f"  {name}: prepare_smf_data {t_prep:.1f} s; compile + first call "
              f"{t_compile:.1f} s; {t_call * 1e3:.0f} ms per loglik+grad call "
              f"(best of {N_REPEATS} x {n_calls} calls); ln L = {float(val):.6f}")
        print(f"THROUGHPUT {name} N={n} S={s} loglik+grad: {thr:.3e} galaxy-samples/s")
        print(f"MEMORY {name}: peak RSS so far {peak_rss_mib():.0f} MiB "
              f"(likelihood arrays {tree_mib(data.arrays):.0f} MiB, samples padded to "
              f"{data.arrays.blocks[0].log_mass.shape[-1]} per galaxy)")
        if name == "float64":
            grid = tuple(np.asarray(a, np.float64) for a in (
                data.arrays.grid_log_mass, data.arrays.grid_z, data.arrays.grid_log_weight))
            used = data.catalog
            area = np.array([f.area_sr for f in survey.fields])
            group = np.array([survey.field_names.index(f) for f in used.fields])
            offset = (data.volume.log_dvdz_at(used.z) + np.log(area[group[used.galaxy_index]])
                      - used.log_prior_or_zero() + used.normalized_log_weights())
            weight = np.exp(used.normalized_log_weights())
        del data, arrays
        gc.collect()

    # The numpy reference: the same ln L and its analytic gradient on dense (N, S) arrays.
    t_np, val_np, grad_np = time_numpy_reference(cat, offset, weight, grid, n, s)
    thr_np = n * s / t_np
    print(f"NUMPY float64 N={n} S={s} loglik+grad (vectorised, analytic gradient): "
          f"{thr_np:.3e} galaxy-samples/s ({t_np:.2f} s per call, best of {N_REPEATS}); "
          f"ln L = {val_np:.6f}")
    for name, (_, val, grad) in results.items():
        gerr = np.max(np.abs(grad - grad_np) / np.maximum(np.abs(grad_np), 1.0))
        print(f"  check {name}: |ln L_jax - ln L_numpy| = {abs(val - val_np):.3g} "
              f"(relative {abs(val - val_np) / abs(val_np):.2g}); max relative gradient "
              f"difference {gerr:.2g}")
    del offset, weight, cat
    gc.collect()

    probe_after = exp_log_probe(n * s)
    probe = max(probe_before, probe_after)
    print(f"PROBE exp+log float64 (after): {probe_after:.3e} transcendental evaluations/s")
    for name, (thr, _, _) in results.items():
        print(f"RATIO {name} jax loglik+grad / numpy loglik+grad: {thr / thr_np:.2f}")
        print(f"RATIO {name} jax loglik+grad / probe: {thr / probe:.4f} galaxy-samples per "
              f"exp-or-log evaluation (~{probe / thr:.1f} exp/log-equivalents per sample)")

    # The wall time of the default fit.
    fit_fields, fit_area = (5, 180.0) if args.full else (1, 60.0)
    fit_survey = Survey(tuple(
        Field(f"F{i}", fit_area, 0.2, 3.0, [0.65, 1.0, 1.5, 2.1, 3.0],
              [8.87, 9.07, 9.63, 9.89, 10.15], mass_error_dex=[0.1, 0.2, 0.3], z_error=0.02,
              area_unit="arcmin2")
        for i in range(fit_fields)), name="3dhst-like")
    mock, _ = draw_mock(fit_survey, seed=0, n_samples=32)
    if args.full:
        cfg = FitConfig(progress_bar=False)
    else:
        cfg = FitConfig(num_warmup=50, num_samples=50, n_bootstrap=2, progress_bar=False)
    t0 = time.perf_counter()
    fit = fit_smf(mock, fit_survey, cfg, log=lambda msg: print(f"  [fit] {msg}"))
    t_fit = time.perf_counter() - t0
    tm = fit.timing
    print(f"FIT wall time: {t_fit:.1f} s ({fit.data.report.n_used} galaxies, 32 samples, "
          f"{cfg.num_warmup}+{cfg.num_samples} warmup+draws, {cfg.num_chains} chains; "
          f"{fit_fields} fields x {fit_area:g} arcmin2, "
          f"{'FitConfig() defaults' if args.full else 'shortened FitConfig'})")
    parts = ", ".join(f"{k} {v:.1f} s" for k, v in tm.items() if k.endswith("_s"))
    grads = tm.get("nuts_sampling_gradients")
    print(f"  fit breakdown: {parts}; NUTS gradients in the sampling phase (all chains): "
          f"{grads if grads is not None else 'n/a'}; "
          f"{jax.local_device_count()} host devices")
    print(f"MEMORY peak RSS at end: {peak_rss_mib():.0f} MiB")
    print(f"TOTAL benchmark wall time: {time.perf_counter() - t_start:.1f} s")


if __name__ == "__main__":
    main()
