r"""The inhomogeneous-Poisson likelihood of the mass function, over per-galaxy posterior samples.

Derivation
----------
Galaxies are a Poisson point process in (log M, z) with intensity, in field f,

.. math::
    n_f(\log M, z\,|\,\theta) = \Phi(\log M, z\,|\,\theta)\,\frac{dV_c}{dz\,d\Omega}(z)\,\Omega_f
    \quad [\text{galaxies dex}^{-1}\,(\text{unit } z)^{-1}].

A galaxy of true x = (log M, z) produces data d (photometry, hence a catalogue point estimate
x_obs) with probability p(d|x), and enters the catalogue when x_obs passes the field's cut:
z_min <= z_obs <= z_max and log M_obs >= log M_c(z_obs). The selection is a function of the
data only, so for the detected galaxies it is 1 and only the expected number feels it. The
likelihood of the catalogue {d_i} is (Foreman-Mackey, Hogg & Morton 2014, ApJ 795, 64)

.. math::
    \ln\mathcal L(\theta) = \sum_i \ln\!\int n_{f(i)}(x|\theta)\,p(d_i|x)\,dx
    \;-\;\sum_f \int n_f(x|\theta)\,S_f(x)\,dx .

**Galaxy terms.** The SED fit returns samples x_ij ~ p(x|d_i) ∝ p(d_i|x) pi_i(x) under an
interim prior pi_i, so p(d_i|x) ∝ p(x|d_i)/pi_i(x) and the integral is the importance-sampled
mean (Hogg, Myers & Bovy 2010, ApJ 725, 2166)

.. math::
    \int n_f\,p(d_i|x)\,dx \;\propto\; \sum_j \tilde w_{ij}\,\frac{n_f(x_{ij}|\theta)}{\pi_i(x_{ij})},
    \qquad \tilde w_{ij} = w_{ij}/\textstyle\sum_j w_{ij},

with optional sample weights w (uniform when absent); the constant of proportionality does
not depend on theta. We evaluate it as
``logsumexp_j[ln Phi(x_ij) + c_ij]`` with the theta-independent offset
``c_ij = ln(dV/dz dOmega)(z_ij) + ln Omega_f - ln pi_i(x_ij) + ln w~_ij`` precomputed once.
Galaxies are packed into dense blocks by sample count (rounded up to a power of two; padding
samples get c = -1e30, so they add exp(-1e30) = 0) and the blocks are split into chunks that
a ``lax.scan`` visits under ``jax.checkpoint``: memory stays near the size of the input, and
each chunk's sum is accumulated in float64 (when JAX runs with x64) whatever the sample dtype.

**Expected number.** With Gaussian catalogue mass errors of width sigma the probability that
a galaxy of true (log M, z) passes the cut is

.. math::
    S_f(\log M, z) = P_z(z)\,\frac1K\sum_k \Phi_{\mathcal N}\!\left(\frac{\log M-\log M_c(z)}{\sigma_k}\right),
    \quad P_z(z)=\Phi_{\mathcal N}\!\Big(\frac{z_\max-z}{\sigma_z(1+z)}\Big)-\Phi_{\mathcal N}\!\Big(\frac{z_\min-z}{\sigma_z(1+z)}\Big),

(an equal-weight mixture over the field's widths sigma_k; P_z = 1 on [z_min, z_max] when
sigma_z = 0). ``N_exp = sum_f Omega_f ∫dz dV/dz ∫ dlogM Phi S_f`` is computed by quadrature:
Gauss-Legendre in z on each piece between completeness nodes and, at every z node,
Gauss-Legendre in log M on [log M_c - 6 sigma_max, log M_c], [log M_c, 12] and [12, 14], so the
kink of S_f at the limit is a segment edge (exact for a hard cut); the integrand is analytic
within each segment, where Gauss-Legendre converges exponentially (about 1e-7 relative against
adaptive quadrature with 16 + 40 + 8 nodes per z node and 16 z nodes per piece). All
theta-independent factors are folded into the grid's log weights. A hard cut on *true* mass
(``selection="hard"``, sigma -> 0) is available as an approximation; with mass errors of
0.15-0.3 dex it biases the low-mass slope (science.md section 1.4), so it is not the default.

**Monte Carlo (Jensen) correction.** ln of an importance-sampled mean is biased low,
E ln L-hat_i ~ ln L_i - Var(L-hat_i)/(2 L_i^2), and the bias depends on theta (it is largest for
massive galaxies whose broad posteriors straddle the exponential cut-off). By default each
galaxy term adds the delta-method estimate 0.5 sum_j (q_ij - w~_ij)^2, q_ij being the
normalised importance ratios, which removes the O(1/ESS) part of the bias. It does not remove
the rest: with 0.3 dex mass errors a 145,000-galaxy mock gave M* +0.16 dex high at 16 samples
and +0.06 dex at 128. Galaxies compressed to Gauss-Hermite nodes (:mod:`popmodel.compress`)
carry no Monte Carlo error and get no correction.

The approximation that the limit is evaluated at the true rather than the observed redshift
is second order in sigma_z.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from popmodel.smf.evolution import ContinuityParams
from popmodel.smf.schechter import ln_phi

__all__ = [
    "GalaxyBlock",
    "LikelihoodData",
    "build_blocks",
    "build_selection_grid",
    "expected_number",
    "galaxy_log_terms",
    "log_likelihood",
]

PAD = -1.0e30
LOG_MASS_MAX = 14.0
MASS_SPLIT = 12.0  # the expected-number quadrature splits the mass range here


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["log_mass", "z", "offset", "log_weight", "valid", "group", "monte_carlo",
                 "cv_index", "cv_bias"],
    meta_fields=[],
)
@dataclass(frozen=True)
class GalaxyBlock:
    """Galaxies with the same padded sample count, split in chunks: arrays (C, G, S).

    Attributes:
        log_mass, z: samples [log10 Msun], [-]; padding holds benign finite values.
        offset: theta-independent per-sample log term c_ij (PAD for padding samples).
        log_weight: ln of the normalised sample weights w~_ij (PAD for padding samples).
        valid: (C, G) False for padding galaxies.
        group: (C, G) int field index of each galaxy (later: field x redshift-slice index).
        monte_carlo: (C, G) True where the samples are Monte Carlo draws (the Jensen
            correction applies), False for quadrature nodes (:mod:`popmodel.compress`).
        cv_index, cv_bias: (C, G, S) density-term index and galaxy bias of each sample
            (:mod:`popmodel.smf.density`), or None without cosmic-variance terms.
    """

    log_mass: jax.Array
    z: jax.Array
    offset: jax.Array
    log_weight: jax.Array
    valid: jax.Array
    group: jax.Array
    monte_carlo: jax.Array
    cv_index: jax.Array | None = None
    cv_bias: jax.Array | None = None


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["blocks", "grid_log_mass", "grid_z", "grid_log_weight", "grid_group",
                 "grid_cv_index", "grid_cv_bias", "cv_sigma"],
    meta_fields=[],
)
@dataclass(frozen=True)
class LikelihoodData:
    """Everything the likelihood needs, as arrays (a pytree; pass it through ``jit``)."""

    blocks: tuple[GalaxyBlock, ...]
    grid_log_mass: jax.Array
    grid_z: jax.Array
    grid_log_weight: jax.Array
    grid_group: jax.Array
    grid_cv_index: jax.Array | None = None
    grid_cv_bias: jax.Array | None = None
    cv_sigma: jax.Array | None = None

    @property
    def n_density_terms(self) -> int:
        return 0 if self.cv_sigma is None else int(self.cv_sigma.shape[0])


@dataclass(frozen=True)
class BlockIndex:
    """Where each flat sample / galaxy went in the block layout (numpy, host side)."""

    sample_index: tuple[np.ndarray, ...]  # per block (C, G, S): flat sample index, -1 = pad
    galaxy_index: tuple[np.ndarray, ...]  # per block (C, G): galaxy index, -1 = pad

    def scatter(self, flat: np.ndarray, fill: float) -> tuple[np.ndarray, ...]:
        """Lay a flat per-sample array out in block form."""
        return tuple(np.where(ix >= 0, flat[np.maximum(ix, 0)], fill) for ix in self.sample_index)

    def gather_galaxies(self, per_block: list[np.ndarray], n_galaxies: int) -> np.ndarray:
        """Inverse for per-galaxy block arrays (C, G) -> (N,) in galaxy order."""
        out = np.full(n_galaxies, np.nan)
        for gi, arr in zip(self.galaxy_index, per_block, strict=True):
            m = gi >= 0
            out[gi[m]] = np.asarray(arr)[m]
        return out


def build_blocks(
    offsets: np.ndarray,
    log_mass: np.ndarray,
    z: np.ndarray,
    sample_offset: np.ndarray,
    group: np.ndarray,
    *,
    log_weight: np.ndarray | None = None,
    monte_carlo: np.ndarray | None = None,
    cv_index: np.ndarray | None = None,
    cv_bias: np.ndarray | None = None,
    chunk_size: int = 1 << 16,
    dtype: np.dtype = np.float64,
) -> tuple[tuple[GalaxyBlock, ...], BlockIndex]:
    """Pack ragged per-galaxy samples into dense, chunked blocks.

    Args:
        offsets: (N+1,) sample offsets of the galaxies.
        log_mass, z, sample_offset: (S,) flat per-sample arrays.
        group: (N,) integer group (field) of each galaxy.
        log_weight: (S,) ln of the normalised sample weights (default: equal).
        monte_carlo: (N,) False for galaxies whose samples are quadrature nodes.
        cv_index, cv_bias: (S,) density-term index and galaxy bias of each sample (optional).
        chunk_size: target number of samples per chunk (memory of one scan step).
        dtype: dtype of the sample arrays (float32 halves memory; sums stay float64).
    """
    counts = np.diff(offsets)
    if log_weight is None:
        log_weight = -np.log(np.repeat(counts, counts).astype(float))
    if monte_carlo is None:
        monte_carlo = np.ones(counts.size, bool)
    padded = 1 << np.ceil(np.log2(np.maximum(counts, 1))).astype(int)
    blocks, sidx, gidx = [], [], []
    for s_b in np.unique(padded):
        gal = np.flatnonzero(padded == s_b)
        g_per_chunk = int(max(1, min(len(gal), chunk_size // s_b)))
        n_chunks = -(-len(gal) // g_per_chunk)
        gi = np.full(n_chunks * g_per_chunk, -1, dtype=np.int64)
        gi[: len(gal)] = gal
        gi = gi.reshape(n_chunks, g_per_chunk)
        j = np.arange(s_b)
        ix = offsets[np.maximum(gi, 0)][..., None] + j
        ok = (gi[..., None] >= 0) & (j < counts[np.maximum(gi, 0)][..., None])
        ix = np.where(ok, ix, -1)
        sidx.append(ix)
        gidx.append(gi)
        blocks.append(
            GalaxyBlock(
                log_mass=jnp.asarray(np.where(ok, log_mass[np.maximum(ix, 0)], 10.0), dtype=dtype),
                z=jnp.asarray(np.where(ok, z[np.maximum(ix, 0)], 1.0), dtype=dtype),
                offset=jnp.asarray(np.where(ok, sample_offset[np.maximum(ix, 0)], PAD), dtype=dtype),
                log_weight=jnp.asarray(np.where(ok, log_weight[np.maximum(ix, 0)], PAD), dtype=dtype),
                valid=jnp.asarray(gi >= 0),
                group=jnp.asarray(np.where(gi >= 0, group[np.maximum(gi, 0)], 0), dtype=jnp.int32),
                monte_carlo=jnp.asarray((gi >= 0) & monte_carlo[np.maximum(gi, 0)]),
                cv_index=None if cv_index is None else jnp.asarray(
                    np.where(ok, cv_index[np.maximum(ix, 0)], 0), dtype=jnp.int32),
                cv_bias=None if cv_bias is None else jnp.asarray(
                    np.where(ok, cv_bias[np.maximum(ix, 0)], 0.0), dtype=dtype),
            )
        )
    return tuple(blocks), BlockIndex(tuple(sidx), tuple(gidx))


def _gl_segment(a: np.ndarray, b: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [a_i, b_i] for every row i: (Z, n) each."""
    x, w = np.polynomial.legendre.leggauss(n)
    half = 0.5 * (np.asarray(b) - np.asarray(a))[:, None]
    return 0.5 * (np.asarray(b) + np.asarray(a))[:, None] + half * x[None, :], half * w[None, :]


def build_selection_grid(
    fields: list,
    log_dvdz: callable,
    *,
    hard: bool = False,
    n_z: int = 16,
    n_m_low: int = 16,
    n_m_high: int = 40,
    n_m_tail: int = 8,
    log_mass_max: float = LOG_MASS_MAX,
    area_pieces: list | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Quadrature nodes and theta-independent log weights for the expected number.

    Args:
        fields: :class:`popmodel.survey.Field` objects (group index = position).
        log_dvdz: function z -> ln(dV/dz/dOmega) [ln Mpc^3 sr^-1].
        hard: use a hard cut on true mass (sigma -> 0) instead of the error model.
        area_pieces: optional, one entry per field: None (its area over its whole redshift
            range) or ``(edges, area_sr)``, an effective solid angle [sr] piecewise constant
            in the catalogue redshift, area_sr[k] on [edges[k], edges[k+1]], the edges spanning
            [z_min, z_max] (:meth:`popmodel.survey.Survey.area_pieces`: overlaps owned by
            another field). The z-range factor becomes sum_k area_k P(edges[k] <= z_obs <
            edges[k+1] | z), and the z quadrature also breaks at the inner edges.

    Returns:
        (log_mass, z, log_weight, group) flat arrays: N_exp = sum exp(ln Phi + log_weight).
    """
    xs, ws = np.polynomial.legendre.leggauss(n_z)
    out = [[], [], [], []]
    for g, f in enumerate(fields):
        sig = np.zeros(1) if hard else np.asarray(f.mass_error_dex, dtype=float)
        sz = np.zeros(1) if hard else np.asarray(f.z_error, dtype=float)
        pad = 5.0 * float(sz.max()) * (1.0 + f.z_max)
        z_lo, z_hi = max(f.z_min - pad, 1e-3), f.z_max + pad
        ap = None if area_pieces is None else area_pieces[g]
        e_z, a_z = ((np.array([f.z_min, f.z_max]), np.array([f.area_sr])) if ap is None
                    else (np.asarray(ap[0], float), np.asarray(ap[1], float)))
        # Gauss-Legendre on each piece between the completeness table's nodes (the limit
        # has kinks there) and the area pieces' inner edges, n_z nodes per piece.
        cz = np.concatenate([np.asarray(f.completeness_z, float), e_z[1:-1]])
        brk = np.concatenate([[z_lo], np.unique(cz[(cz > z_lo) & (cz < z_hi)]), [z_hi]])
        zn = np.concatenate([0.5 * (b - a) * xs + 0.5 * (b + a) for a, b in itertools.pairwise(brk)])
        wz = np.concatenate([0.5 * (b - a) * ws for a, b in itertools.pairwise(brk)])
        pz = np.zeros_like(zn)  # area-weighted probability that z_obs passes the cut [sr]
        for s_k in sz:  # equal-weight mixture of Gaussian redshift errors
            for k, (a, b) in enumerate(itertools.pairwise(e_z)):
                if s_k > 0:
                    pk = ndtr((b - zn) / (s_k * (1 + zn))) - ndtr((a - zn) / (s_k * (1 + zn)))
                else:
                    pk = ((zn >= a) & ((zn <= b) if k == len(a_z) - 1 else (zn < b))).astype(float)
                pz += a_z[k] * pk
        pz /= sz.size
        mc = f.log_mass_limit(zn)
        smax = float(sig.max())
        segs = []
        if smax > 0:  # below the limit: the error function's tail, 6 sigma deep
            a = mc - 6.0 * smax
            segs.append((*_gl_segment(a, mc, n_m_low), False))
        if np.any(log_mass_max - mc <= 0):
            raise ValueError(f"field {f.name!r}: completeness limit above log M = {log_mass_max}")
        # above: [M_c, 12] holds the knee and the exponential cut-off, [12, 14] the far tail
        split = np.maximum(mc, np.minimum(MASS_SPLIT, log_mass_max))
        segs.append((*_gl_segment(mc, split, n_m_high), True))
        segs.append((*_gl_segment(split, np.full_like(mc, log_mass_max), n_m_tail), True))
        for m, wm, upper in segs:
            with np.errstate(divide="ignore", invalid="ignore"):
                u = (m - mc[:, None])[..., None] / sig
            comp = np.where(sig > 0, ndtr(u), 1.0 if upper else 0.0).mean(axis=-1)
            w = wz[:, None] * pz[:, None] * wm * comp
            with np.errstate(divide="ignore"):
                lw = np.log(w) + log_dvdz(zn)[:, None]
            keep = w > 0
            out[0].append(m[keep])
            out[1].append(np.broadcast_to(zn[:, None], m.shape)[keep])
            out[2].append(lw[keep])
            out[3].append(np.full(int(keep.sum()), g))
    return tuple(np.concatenate(o) for o in out)


def _cast(p: ContinuityParams, dtype: jnp.dtype) -> ContinuityParams:
    return jax.tree_util.tree_map(lambda a: jnp.asarray(a).astype(dtype), p)


def _cv_log_factor(idx: jax.Array | None, bias: jax.Array | None, delta: jax.Array | None,
                   sigma: jax.Array | None) -> jax.Array | float:
    """ln F = b delta - b^2 sigma^2 / 2 at each point (0 without density terms)."""
    if idx is None or delta is None:
        return 0.0
    d = jnp.take(delta, idx).astype(bias.dtype)
    s = jnp.take(sigma, idx).astype(bias.dtype)
    return bias * d - 0.5 * (bias * s) ** 2


def _sample_log_terms(pc: ContinuityParams, lm: jax.Array, z: jax.Array, off: jax.Array,
                      idx: jax.Array | None, bias: jax.Array | None, delta: jax.Array | None,
                      sigma: jax.Array | None) -> jax.Array:
    """ln Phi + offset (+ the density factor) of every sample."""
    return ln_phi(lm, z, pc) + off + _cv_log_factor(idx, bias, delta, sigma)


def _block_terms(p: ContinuityParams, blk: GalaxyBlock, delta: jax.Array | None = None,
                 sigma: jax.Array | None = None) -> jax.Array:
    """Per-galaxy ln of the importance-sampled integral, (C, G), in the sample dtype."""
    pc = _cast(p, blk.log_mass.dtype)

    def chunk(args: tuple) -> jax.Array:
        lm, z, off, idx, bias = args
        return jax.nn.logsumexp(_sample_log_terms(pc, lm, z, off, idx, bias, delta, sigma), axis=-1)

    return jax.lax.map(chunk, (blk.log_mass, blk.z, blk.offset, blk.cv_index, blk.cv_bias))


def galaxy_log_terms(p: ContinuityParams, data: LikelihoodData, delta: jax.Array | None = None
                     ) -> tuple[jax.Array, ...]:
    """Per-galaxy log terms, one (C, G) array per block (padding galaxies included)."""
    return tuple(_block_terms(p, b, delta, data.cv_sigma) for b in data.blocks)


def _sum_block(p: ContinuityParams, blk: GalaxyBlock, acc_dtype: jnp.dtype, jensen: bool,
               delta: jax.Array | None = None, sigma: jax.Array | None = None) -> jax.Array:
    pc = _cast(p, blk.log_mass.dtype)

    @jax.checkpoint
    def step(carry: jax.Array, args: tuple) -> tuple[jax.Array, None]:
        lm, z, off, lw, valid, mc, idx, bias = args
        v = _sample_log_terms(pc, lm, z, off, idx, bias, delta, sigma)
        lg = jax.nn.logsumexp(v, axis=-1)
        if jensen:
            q = jnp.exp(v - lg[..., None])
            lg = lg + jnp.where(mc, 0.5 * jnp.sum((q - jnp.exp(lw)) ** 2, axis=-1), 0.0)
        return carry + jnp.sum(jnp.where(valid, lg, 0.0).astype(acc_dtype)), None

    args = (blk.log_mass, blk.z, blk.offset, blk.log_weight, blk.valid, blk.monte_carlo,
            blk.cv_index, blk.cv_bias)
    total, _ = jax.lax.scan(step, jnp.zeros((), acc_dtype), args)
    return total


def expected_number(p: ContinuityParams, data: LikelihoodData, delta: jax.Array | None = None
                    ) -> jax.Array:
    """Expected number of catalogue galaxies, sum_f ∫∫ n_f S_f (float64 under x64)."""
    acc = jnp.result_type(float)
    pc = _cast(p, acc)
    ln_f = _cv_log_factor(data.grid_cv_index, data.grid_cv_bias, delta, data.cv_sigma)
    return jnp.sum(jnp.exp(ln_phi(data.grid_log_mass, data.grid_z, pc) + data.grid_log_weight + ln_f))


def log_likelihood(p: ContinuityParams, data: LikelihoodData, jensen_correction: bool = True,
                   delta: jax.Array | None = None) -> jax.Array:
    """ln L(theta) of the module docstring, up to a theta-independent constant.

    Args:
        delta: (G,) dark-matter density contrasts of the survey's density terms
            (:mod:`popmodel.smf.density`); None (or data without terms) means no cosmic
            variance.
        jensen_correction: add the delta-method correction +Var(L-hat)/(2 L-hat^2) =
            0.5 sum_j (q_j - w~_j)^2 to each galaxy term, which removes the O(1/ESS) bias of
            ln of an importance-sampled mean (E ln L-hat ~ ln L - Var/2L^2). Without it, at
            small effective sample sizes (massive galaxies with broad mass posteriors on the
            exponential cut-off) the fit prefers models that are flat across each posterior,
            pushing M* up (measured: +2-3 sigma on a 26,000-galaxy mock at 8 samples).
    """
    acc = jnp.result_type(float)
    if data.cv_sigma is None:
        delta = None
    total = sum(_sum_block(p, b, acc, jensen_correction, delta, data.cv_sigma) for b in data.blocks)
    return total - expected_number(p, data, delta)
