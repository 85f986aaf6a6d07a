"""MAP, Laplace, NUTS and Monte Carlo error control for the mass-function fit.

The recipe (measured on this problem: the MAP's Laplace covariance as the initial dense
mass matrix cuts NUTS warm-up several-fold):

1. MAP by L-BFGS on the unconstrained parameters (float64, JAX gradients);
2. Laplace covariance = inverse Hessian there: the initial dense inverse mass matrix;
3. NUTS from the MAP (several chains where devices allow), diagnostics in plain words;
4. Monte Carlo error of the importance-sampled likelihood: per-galaxy effective sample size
   and the variance of ln L-hat, and the shift of the MAP that the finite posterior samples
   cause, estimated by a bootstrap of each galaxy's samples with one Newton step per
   replicate (delta u = -H^-1 grad U_b at the MAP), reported in units of the posterior sigma.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.flatten_util import ravel_pytree
from numpyro.distributions.transforms import biject_to
from numpyro.infer import MCMC, NUTS, init_to_value
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from popmodel.compress import quadrature_galaxies
from popmodel.smf.data import SMFData
from popmodel.smf.evolution import LEJA2020_MEDIAN, ContinuityParams
from popmodel.smf.likelihood import PAD, GalaxyBlock, LikelihoodData, _cast, jensen_factor
from popmodel.smf.model import SMFPrior, smf_model
from popmodel.smf.schechter import ln_phi

__all__ = [
    "RELEASE_MIN_NODES",
    "MAPResult",
    "SequentialChains",
    "bootstrap_map_shift",
    "constrain_draws",
    "find_map",
    "laplace_draws",
    "mc_error_diagnostics",
    "mc_galaxies",
    "n_nodes",
    "release_memory",
    "require_x64",
    "run_nuts",
]


def release_memory() -> None:
    """Drop JAX's compiled programs and hand freed heap pages back to the operating system.

    Each compiled likelihood program (the gradient, the Hessian, the checks' twice-the-nodes
    copy, the NUTS kernel) keeps a few hundred MB of code and scratch on CPU that stays
    resident after its last use, so the fit's stages add up: on 3D-HST (1.1M nodes) the MAP's
    Hessian alone left 0.4 GB. Called between the fit's stages, it costs one recompilation
    of what runs next (seconds). It clears every JAX cache of the process, not only
    popmodel's; ``malloc_trim`` is glibc's and is skipped elsewhere.
    """
    import ctypes
    import gc

    jax.clear_caches()
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def require_x64() -> None:
    """Fail clearly when JAX runs in float32 (the fit accumulates ln L in float64)."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            "popmodel's mass-function fit needs JAX in 64-bit mode: set the environment "
            "variable JAX_ENABLE_X64=1 before starting Python, or call "
            "jax.config.update('jax_enable_x64', True) before any JAX work "
            "(the popmodel command line does this for you)"
        )


@dataclass
class MAPResult:
    """The maximum a posteriori point and its Laplace approximation."""

    params: dict[str, float]
    u_names: list[str]  # order of the unconstrained vector (sorted site names)
    u: np.ndarray
    cov_u: np.ndarray  # Laplace covariance of u (the NUTS inverse mass matrix)
    sigma: dict[str, float]  # Laplace sigma of each constrained parameter
    cov: np.ndarray  # Laplace covariance of the constrained parameters, order ``names``
    names: list[str]
    log_posterior: float
    n_evaluations: int
    converged: bool
    message: str = ""

    def continuity_params(self, anchor_z: tuple[float, ...]) -> ContinuityParams:
        return ContinuityParams.from_dict(self.params, anchor_z)


def _default_init(prior: SMFPrior) -> dict[str, float]:
    init = {}
    for n in prior.names:
        lo, hi = prior.bounds[n]
        if n in prior.normal:
            v = prior.normal[n][0]
        else:
            key = n
            if key not in LEJA2020_MEDIAN:  # other anchors: the Leja curve at that z
                base, zs = n.rsplit("_z", 1)
                cp = ContinuityParams.from_dict(LEJA2020_MEDIAN)
                v = float(np.asarray(dict(zip(("log_phi1", "log_phi2", "log_mstar"),
                                              cp.at(float(zs)), strict=True))[base]))
            else:
                v = LEJA2020_MEDIAN[key]
        init[n] = float(np.clip(v, lo + 0.02 * (hi - lo), hi - 0.02 * (hi - lo)))
    for n in prior.eta_names:
        init[n] = 0.0
    return init


class _Potential:
    """Jitted potential U(u) = -ln posterior on the flat unconstrained vector, data as argument."""

    def __init__(self, prior: SMFPrior, template: LikelihoodData) -> None:
        self.prior = prior
        u0 = unconstrain_fn(smf_model, (template, prior), {}, _default_init(prior))
        self.u0, self.unravel = ravel_pytree(u0)
        self.u_names = sorted(u0)

        def pot(u: jax.Array, data: LikelihoodData) -> jax.Array:
            return potential_energy(smf_model, (data, prior), {}, self.unravel(u))

        self.value_and_grad = jax.jit(jax.value_and_grad(pot))
        self.grad = jax.jit(jax.grad(pot))
        self.hessian = jax.jit(jax.jacrev(jax.grad(pot)))  # reverse over reverse: the
        # fused likelihood is a custom_vjp (no forward mode). Row by row (lax.map over vjp
        # rows) would hold less memory, but changes the Laplace mass matrix at the 1e-12 level,
        # and NUTS's trajectories with it; large fits free the program after the MAP instead

    def constrain(self, u: np.ndarray, template: LikelihoodData) -> dict[str, float]:
        c = constrain_fn(smf_model, (template, self.prior), {}, self.unravel(jnp.asarray(u)),
                         return_deterministic=True)
        keys = self.prior.latent_names + list(self.prior.density_terms)
        return {k: float(c[k]) for k in keys}

    def unconstrain(self, params: dict[str, float], template: LikelihoodData) -> np.ndarray:
        full = _default_init(self.prior)  # density terms not given start at delta = 0
        full.update({k: v for k, v in params.items() if k in full})
        u = unconstrain_fn(smf_model, (template, self.prior), {}, full)
        return np.asarray(ravel_pytree(u)[0])


def find_map(
    data: SMFData | LikelihoodData,
    prior: SMFPrior,
    init: dict[str, float] | None = None,
    *,
    maxiter: int = 3000,
) -> MAPResult:
    """Maximise the posterior with L-BFGS (scipy) on JAX float64 gradients; Laplace at the peak.

    Args:
        data: prepared data (:func:`popmodel.smf.data.prepare_smf_data`) or its arrays.
        prior: the priors.
        init: starting parameters (default: Leja et al. 2020 medians, moved inside the prior).
    """
    require_x64()
    arrays = data.arrays if isinstance(data, SMFData) else data
    pot = _Potential(prior, arrays)
    u0 = pot.u0 if init is None else pot.unconstrain(init, arrays)

    def fun(u: np.ndarray) -> tuple[float, np.ndarray]:
        v, g = pot.value_and_grad(jnp.asarray(u), arrays)
        return float(v), np.asarray(g, dtype=np.float64)

    res = scipy.optimize.minimize(
        fun, np.asarray(u0, float), jac=True, method="L-BFGS-B",
        options={"maxiter": maxiter, "maxfun": 2 * maxiter, "ftol": 1e-13, "gtol": 1e-6},
    )
    u = res.x

    def laplace(u: np.ndarray) -> tuple[np.ndarray, bool, np.ndarray, float]:
        # Laplace covariance of the whole latent vector (mass function and density terms), the
        # gradient there and the Newton decrement
        h = np.asarray(pot.hessian(jnp.asarray(u), arrays))
        h = 0.5 * (h + h.T)
        evals, evecs = np.linalg.eigh(h)
        ok = bool(np.all(evals > 0))
        if not ok:  # not a proper maximum: regularise so NUTS still gets a usable mass matrix
            evals = np.maximum(evals, 1e-6 * np.max(np.abs(evals)))
        cov_u = (evecs / evals) @ evecs.T
        g_u = fun(u)[1]
        return cov_u, ok, g_u, float(g_u @ cov_u @ g_u)

    # Newton decrement g^T H^-1 g: the log posterior still to gain, in a quadratic model (twice
    # over). With float32 sample arrays the objective carries ~1e-4 rounding noise, on which
    # L-BFGS's line search can stop "abnormally" at the optimum; a decrement below 1e-4 (the
    # MAP within ~0.01 sigma of the peak) counts as converged whatever scipy says. Above it, up
    # to four Newton steps (each kept only if it raises the posterior) finish the job.
    cov_u, ok, g_u, decrement = laplace(u)
    f_u, newton = float(res.fun), 0
    while ok and decrement >= 1e-4 and newton < 4:
        u_try = u - cov_u @ g_u
        f_try = fun(u_try)[0]
        if not f_try < f_u:
            break
        u, f_u, newton = u_try, f_try, newton + 1
        cov_u, ok, g_u, decrement = laplace(u)
    converged = (bool(res.success) or decrement < 1e-4) and ok
    jac = np.asarray(
        jax.jacrev(lambda uu: jnp.stack([jnp.asarray(v) for v in _constrain_vec(pot, uu, arrays)]))(jnp.asarray(u))
    )
    cov = jac @ cov_u @ jac.T
    params = pot.constrain(u, arrays)
    names = prior.names
    return MAPResult(
        params=params,
        u_names=pot.u_names,
        u=u,
        cov_u=cov_u,
        sigma={n: float(np.sqrt(cov[i, i])) for i, n in enumerate(names)},
        cov=cov,
        names=names,
        log_posterior=-f_u,
        n_evaluations=int(res.nfev),
        converged=converged,
        message=(str(res.message) + (f"; {newton} Newton step(s)" if newton else "")
                 + f"; Newton decrement {decrement:.2g}"
                 + ("" if ok else "; Hessian not positive definite")),
    )


def laplace_draws(mp: MAPResult, prior: SMFPrior, n: int, seed: int = 0, *,
                  data: SMFData | LikelihoodData | None = None) -> dict[str, np.ndarray]:
    """``n`` draws from the MAP's Laplace approximation, constrained: ``{name: (n,)}``.

    Gaussian in the unconstrained space, :math:`u \\sim N(u_{MAP}, \\Sigma_u)` (a JAX key from
    ``seed``), mapped through NumPyro's transforms (:func:`constrain_draws`). Used by the
    in-memory fit (:mod:`popmodel.smf.fit`), the compression check and the streamed fit
    (:mod:`popmodel.smf.stream`).

    Args:
        mp: the MAP and its unconstrained covariance (``find_map`` or ``find_map_streamed``).
        prior: the priors (they set the transforms).
        n: number of draws.
        seed: seed of the JAX key.
        data: the fit's data; needed only when the prior has density terms (their sigma_DM
            turns the standard-normal latents into contrasts).

    Returns:
        The mass-function parameters and, with density terms, the contrasts ``delta_*``.
    """
    key = jax.random.key(seed)
    u = jax.random.multivariate_normal(key, jnp.asarray(mp.u), jnp.asarray(mp.cov_u), (n,))
    return constrain_draws(np.asarray(u), mp, prior, data=data)


def constrain_draws(u: np.ndarray, mp: MAPResult, prior: SMFPrior, *,
                    data: SMFData | LikelihoodData | None = None) -> dict[str, np.ndarray]:
    """Map unconstrained draws (n, len(mp.u)) to the parameters: ``{name: (n,)}``.

    Each parameter goes through the bijection onto its prior's support (what NumPyro's
    ``constrain_fn`` does for a sample site); density terms are ``delta = sigma_DM * eta``, as
    in :func:`popmodel.smf.model.smf_model`, with sigma_DM from ``data``.
    """
    _, unravel = ravel_pytree({k: jnp.zeros(()) for k in mp.u_names})
    d = jax.vmap(unravel)(jnp.asarray(u))
    out = {n: np.asarray(biject_to(prior.distribution(n).support)(d[n])) for n in prior.names}
    if prior.density_terms:
        if data is None:
            raise ValueError("the prior has density terms: pass the data (their sigma_DM)")
        arrays = data.arrays if isinstance(data, SMFData) else data
        if arrays.n_density_terms != len(prior.density_terms):
            raise ValueError(f"the prior names {len(prior.density_terms)} density terms, the "
                             f"data have {arrays.n_density_terms}")
        eta = jnp.stack([d[e] for e in prior.eta_names], axis=-1)
        delta = np.asarray(arrays.delta_from_eta(eta))
        for i, t in enumerate(prior.density_terms):
            out[t] = delta[:, i]
    return out


def _constrain_vec(pot: _Potential, u: jax.Array, arrays: LikelihoodData) -> list[jax.Array]:
    c = constrain_fn(smf_model, (arrays, pot.prior), {}, pot.unravel(u))
    return [c[k] for k in pot.prior.names]


def run_nuts(
    data: SMFData | LikelihoodData,
    prior: SMFPrior,
    map_result: MAPResult | None,
    *,
    num_warmup: int = 300,
    num_samples: int = 500,
    num_chains: int = 2,
    seed: int = 0,
    target_accept: float = 0.8,
    dense_mass: bool = True,
    adapt_mass_matrix: bool = False,
    progress_bar: bool = True,
    chain_method: str = "auto",
    init_spread: bool = False,
    one_run_per_chain: bool | None = None,
) -> MCMC | SequentialChains:
    """NUTS from the MAP with its Laplace covariance as the initial dense inverse mass matrix.

    By default the Laplace mass matrix is kept and only the step size adapts: windowed
    re-estimation of an 11-D dense matrix from a few dozen autocorrelated warm-up draws was
    measured here to make it worse (step sizes collapse, trees hit depth 10);
    ``adapt_mass_matrix=True`` restores NumPyro's windowed adaptation. Without a MAP the
    matrix is adapted as usual.

    Chains run in parallel when JAX has that many devices (``numpyro.set_host_device_count``
    before JAX starts; the CLI does this), otherwise one after another
    (``chain_method="auto"``); ``"vectorized"`` batches all chains into each likelihood call
    (best where one core does the work), or name any NumPyro chain method.

    Args:
        init_spread: start each chain from its own draw of the Laplace approximation (in the
            unconstrained space) instead of all at the MAP, so that R-hat compares chains that
            began apart (Gelman & Rubin 1992).
        one_run_per_chain: for chains one after another, run each as its own NumPyro run and
            free JAX's compiled programs between them (:func:`release_memory`), returning a
            :class:`SequentialChains`; None (default): for large data only (at least
            :data:`RELEASE_MIN_NODES` nodes/samples). The draws are NumPyro's sequential
            chains' (the key is split per chain in the same way). On 3D-HST, 3 chains x
            (100 + 100) peaked at 1.54 GB this way against 1.83 GB as one NumPyro run, whose
            resident memory grows with the sampling time, in 300 s against 342 s.
    """
    require_x64()
    arrays = data.arrays if isinstance(data, SMFData) else data
    kw = {}
    if map_result is not None:
        kw["init_strategy"] = init_to_value(values=map_result.params)
        if dense_mass:
            kw["inverse_mass_matrix"] = jnp.asarray(map_result.cov_u)
    kernel = NUTS(
        partial(smf_model, prior=prior),
        dense_mass=dense_mass,
        target_accept_prob=target_accept,
        adapt_mass_matrix=adapt_mass_matrix or map_result is None or not dense_mass,
        **kw,
    )
    method = chain_method
    if method == "auto":
        method = "parallel" if jax.local_device_count() >= num_chains else "sequential"
    per_chain = None
    if init_spread and map_result is not None:
        pot = _Potential(prior, arrays)
        rng = np.random.default_rng(seed)
        u = rng.multivariate_normal(map_result.u, map_result.cov_u, size=num_chains)
        per_chain = [pot.unravel(jnp.asarray(ui)) for ui in u]
    # energy, accept_prob, ... go into the posterior file's sample_stats (az.bfmi needs energy)
    extra = ("diverging", "num_steps", "energy", "potential_energy", "accept_prob",
             "adapt_state.step_size")

    def mcmc_of(n: int, how: str) -> MCMC:
        return MCMC(kernel, num_warmup=num_warmup, num_samples=num_samples, num_chains=n,
                    chain_method=how, progress_bar=progress_bar, jit_model_args=True)

    if one_run_per_chain is None:
        one_run_per_chain = n_nodes(arrays) >= RELEASE_MIN_NODES
    if method == "sequential" and num_chains > 1 and one_run_per_chain:
        runs = []
        for c, key in enumerate(jax.random.split(jax.random.key(seed), num_chains)):
            m = mcmc_of(1, "sequential")
            m.run(key, arrays, extra_fields=extra,
                  init_params=None if per_chain is None else per_chain[c])
            jax.block_until_ready(m.get_samples())
            runs.append(m)
            release_memory()
        return SequentialChains(runs)
    init_params = None
    if per_chain is not None:
        init_params = (per_chain[0] if num_chains == 1 else
                       jax.tree_util.tree_map(lambda *a: jnp.stack(a), *per_chain))
    mcmc = mcmc_of(num_chains, method)
    mcmc.run(jax.random.key(seed), arrays, extra_fields=extra, init_params=init_params)
    return mcmc


#: Nodes/samples from which a fit frees JAX's compiled programs between its stages and runs
#: chains one after another as separate runs (:func:`release_memory`): the default 3D-HST fit
#: (1.1M) peaked at 1.58 GB that way, 2.7-3.0 GB without. Small fits (the tests) skip the
#: recompilations.
RELEASE_MIN_NODES = 200_000


def n_nodes(arrays: LikelihoodData) -> int:
    """Nodes/samples in the likelihood's blocks (padding included)."""
    return int(sum(np.asarray(b.log_mass).size for b in arrays.blocks))


class SequentialChains:
    """Chains run one after another as separate NumPyro runs (:func:`run_nuts`), read back as
    one :class:`numpyro.infer.MCMC` would: chains along the first axis."""

    def __init__(self, runs: list[MCMC]) -> None:
        self.runs = runs

    @staticmethod
    def _join(parts: list[dict], group_by_chain: bool) -> dict:
        out = {k: jnp.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}
        if group_by_chain:
            return out
        return {k: v.reshape((-1, *v.shape[2:])) for k, v in out.items()}

    def get_samples(self, group_by_chain: bool = False) -> dict:
        return self._join([r.get_samples(group_by_chain=True) for r in self.runs], group_by_chain)

    def get_extra_fields(self, group_by_chain: bool = False) -> dict:
        return self._join([r.get_extra_fields(group_by_chain=True) for r in self.runs],
                          group_by_chain)


@jax.jit
def _per_galaxy_mc(p: ContinuityParams, blocks: tuple[GalaxyBlock, ...], lw: tuple[jax.Array, ...]) -> tuple:
    out = []
    for blk, lwn in zip(blocks, lw, strict=True):
        pc = _cast(p, blk.log_mass.dtype)
        v = ln_phi(blk.log_mass, blk.z, pc) + blk.offset
        lse = jax.nn.logsumexp(v, axis=-1, keepdims=True)
        q = jnp.exp(v - lse)
        ess = 1.0 / jnp.sum(q**2, axis=-1)
        w = jnp.exp(lwn)
        var = jensen_factor(w) * jnp.sum((q - w) ** 2, axis=-1)  # unbiased (Bessel-like)
        out.append((ess, var))
    return tuple(out)


#: What the Monte Carlo estimators say for galaxies on a quadrature rule.
NOT_APPLICABLE = "not applicable (deterministic rule)"


def mc_galaxies(catalog: object) -> dict:
    """Which galaxies the Monte Carlo error estimators apply to, and a status line.

    Galaxies compressed to a Gauss-Hermite rule (:mod:`popmodel.compress`) have no Monte Carlo
    error; the error of a galaxy with fewer than two samples cannot be estimated from its
    samples (a single sample always looks exact: ESS 1, variance 0, every bootstrap the same).

    Returns:
        dict with ``monte_carlo`` (N,) bool, ``estimable`` (N,) bool (Monte Carlo galaxies with
        >= 2 samples), the counts ``n_galaxies``, ``n_monte_carlo``, ``n_deterministic``,
        ``n_too_few_samples``, and ``status``: "ok", "not applicable (deterministic rule) ...",
        "cannot estimate: ..." or "lower bound: ...".
    """
    mc = ~quadrature_galaxies(catalog)
    few = mc & (np.asarray(catalog.n_samples) < 2)
    n, n_mc, n_few = int(catalog.n_galaxies), int(mc.sum()), int(few.sum())
    det = ""
    if n - n_mc:
        det = (f"; {NOT_APPLICABLE} for the {n - n_mc} galaxies integrated with a Gauss-Hermite "
               "rule")
    if n_mc == 0:
        who = "the galaxy is" if n == 1 else f"all {n} galaxies are"
        status = (f"{NOT_APPLICABLE}: {who} integrated with a Gauss-Hermite rule, which has no "
                  "Monte Carlo error")
    elif n_few == n_mc:
        status = (f"cannot estimate: galaxies with < 2 samples ({n_few} of {n_mc}); provide more "
                  "samples per galaxy" + det)
    elif n_few:
        status = (f"lower bound: the Monte Carlo error of the {n_few} of {n_mc} galaxies with "
                  "< 2 samples cannot be estimated and is left out; provide more samples per "
                  "galaxy" + det)
    else:
        status = "ok" + det
    return {"monte_carlo": mc, "estimable": mc & ~few, "n_galaxies": n, "n_monte_carlo": n_mc,
            "n_deterministic": n - n_mc, "n_too_few_samples": n_few, "status": status}


def mc_error_diagnostics(data: SMFData, p: ContinuityParams) -> dict:
    """Importance-sampling diagnostics of every galaxy's term at parameters ``p``.

    For galaxy i with normalised sample weights w~_j and importance ratios
    q_j = w~_j f_j / sum_k w~_k f_k (f = Phi dV/dz Omega / pi), the effective sample size is
    1 / sum_j q_j^2 and the delta-method variance of ln L-hat_i is
    sum_j (q_j - w~_j)^2 / (1 - sum_j w~_j^2) (:func:`popmodel.smf.likelihood.jensen_factor`)
    (= (1/ESS - 1/S) S / (S - 1) for equal weights). Galaxy terms are independent, so the variances add.

    Only Monte Carlo galaxies with at least two samples enter (:func:`mc_galaxies`): for a
    galaxy on a Gauss-Hermite rule the numbers are not applicable, and for a galaxy with one
    sample they would read as exact (variance 0) while its error is unknown. Their per-galaxy
    entries are NaN, and where no galaxy is left the summary numbers are None with
    ``status`` saying why (never 0).

    Returns:
        dict with ``ess`` (N,), ``var_log_l`` (N,), ``var_log_l_total``, ``sd_log_l_total``,
        ``ess_min``, ``ess_median``, ``n_ess_below_10`` (None where not estimable), ``status``
        and the counts of :func:`mc_galaxies`.
    """
    who = mc_galaxies(data.catalog)
    counts = {k: who[k] for k in ("n_galaxies", "n_monte_carlo", "n_deterministic",
                                  "n_too_few_samples")}
    ok = who["estimable"]
    if not ok.any():
        nan = np.full(data.catalog.n_galaxies, np.nan)
        return {"ess": nan, "var_log_l": nan.copy(), "var_log_l_total": None,
                "sd_log_l_total": None, "ess_min": None, "ess_median": None,
                "n_ess_below_10": None, "status": who["status"], **counts}
    lw = data.index.scatter(data.catalog.normalized_log_weights(), PAD)
    per = _per_galaxy_mc(p, data.arrays.blocks, tuple(jnp.asarray(a, b.log_mass.dtype) for a, b in zip(lw, data.arrays.blocks, strict=True)))
    n = data.catalog.n_galaxies
    ess = np.where(ok, data.index.gather_galaxies([e for e, _ in per], n), np.nan)
    var = np.where(ok, data.index.gather_galaxies([v for _, v in per], n), np.nan)
    return {
        "ess": ess,
        "var_log_l": var,
        "var_log_l_total": float(np.sum(var[ok])),
        "sd_log_l_total": float(np.sqrt(np.sum(var[ok]))),
        "ess_min": float(np.min(ess[ok])),
        "ess_median": float(np.median(ess[ok])),
        "n_ess_below_10": int(np.sum(ess[ok] < 10)),
        "status": who["status"],
        **counts,
    }


def bootstrap_counts(offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicity of each sample when each galaxy's samples are resampled with replacement."""
    counts = np.diff(offsets)
    gal = np.repeat(np.arange(counts.size), counts)
    idx = offsets[gal] + np.floor(rng.uniform(size=gal.size) * counts[gal]).astype(np.int64)
    return np.bincount(idx, minlength=int(offsets[-1])).astype(float)


def bootstrap_map_shift(
    data: SMFData,
    prior: SMFPrior,
    map_result: MAPResult,
    *,
    n_boot: int = 16,
    seed: int = 0,
) -> dict:
    """Scatter of the MAP under a bootstrap of each galaxy's posterior samples, in sigma units.

    Each replicate resamples every galaxy's samples with replacement (weights travel with
    their samples), which adds ln(multiplicity) to each sample's offset; the MAP shift is one
    Newton step, delta u = -Cov_u grad U_b(u_MAP). The shift divided by the Laplace sigma of
    u measures how much the Monte Carlo noise of the finite samples moves the fit; popmodel
    warns when its rms exceeds 0.3 for any parameter.

    Galaxies on a Gauss-Hermite rule are not resampled (no Monte Carlo error), and a galaxy
    with one sample resamples to itself, which would read as no error at all: when no galaxy
    has a Monte Carlo error that the bootstrap can see (:func:`mc_galaxies`) nothing is run,
    and ``shift_sigma``, ``rms_shift_sigma`` and ``max_rms_shift_sigma`` are None, with
    ``status`` saying why (never 0).
    """
    arrays = data.arrays
    who = mc_galaxies(data.catalog)
    counts = {k: who[k] for k in ("n_galaxies", "n_monte_carlo", "n_deterministic",
                                  "n_too_few_samples")}
    if not who["estimable"].any():
        return {"u_names": list(map_result.u_names), "shift_sigma": None,
                "rms_shift_sigma": None, "max_rms_shift_sigma": None, "warn": False,
                "n_boot": 0, "status": who["status"], **counts}
    pot = _Potential(prior, arrays)
    u = jnp.asarray(map_result.u)
    g0 = np.asarray(pot.grad(u, arrays))
    rng = np.random.default_rng(seed)
    sd_u = np.sqrt(np.diag(map_result.cov_u))
    mc_gal = who["monte_carlo"]
    shifts = []
    for _ in range(n_boot):
        k = bootstrap_counts(data.catalog.offsets, rng)
        k[np.repeat(~mc_gal, data.catalog.n_samples)] = 1.0  # quadrature nodes: no MC error
        with np.errstate(divide="ignore"):
            extra = np.where(k > 0, np.log(k), PAD)
        ex = data.index.scatter(extra, 0.0)
        mult = data.index.scatter(k, 0.0)
        blocks = tuple(
            dataclasses.replace(b, offset=b.offset + jnp.asarray(e, b.offset.dtype),
                                weight=b.weight * jnp.asarray(m, b.weight.dtype))
            for b, e, m in zip(arrays.blocks, ex, mult, strict=True)
        )
        ab = dataclasses.replace(arrays, blocks=blocks)
        gb = np.asarray(pot.grad(u, ab)) - g0
        shifts.append(-(map_result.cov_u @ gb) / sd_u)
    shifts = np.array(shifts)
    rms = np.sqrt(np.mean(shifts**2, axis=0))
    return {
        "u_names": pot.u_names,
        "shift_sigma": shifts,
        "rms_shift_sigma": {n: float(r) for n, r in zip(pot.u_names, rms, strict=True)},
        "max_rms_shift_sigma": float(np.max(rms)),
        "warn": bool(np.max(rms) > 0.3),
        "n_boot": int(n_boot),
        "status": who["status"],
        **counts,
    }


