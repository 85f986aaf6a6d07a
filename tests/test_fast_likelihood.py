"""The fused likelihood (value and analytic gradient in one pass) against the JAX-autodiff
reference of the same sum, its chunking and padding, and its float32 accuracy.

The autodiff reference is itself tested against a brute-force numpy evaluation in
``test_likelihood.py``; here the fused path must agree with it to rounding, for values,
gradients (parameters and density contrasts) and Hessians, on layouts that exercise every
branch: ragged sample counts, sample weights, Monte Carlo and quadrature galaxies, the Jensen
correction, cosmic-variance terms, padding galaxies in the last chunk.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from popmodel.compress import gauss_hermite
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.evolution import LEJA2020_SIGMA, ContinuityParams, leja2020_params
from popmodel.smf.likelihood import (
    LikelihoodData,
    build_blocks,
    galaxy_sum,
    log_likelihood,
    padded_count,
)
from popmodel.testing import cv_survey

SIG = np.array(list(LEJA2020_SIGMA.values()))
V0 = np.asarray(leja2020_params().to_vector())


def params(v) -> ContinuityParams:
    return ContinuityParams.from_vector(jnp.asarray(v, jnp.float64))


@pytest.fixture(scope="module")
def mixed_data():
    """Three fields with density terms; ragged weighted samples and Gauss-Hermite galaxies."""
    survey = cv_survey(2, (4.0, 5.0))
    cat, _ = draw_mock(survey, seed=3, n_samples=10)
    rng = np.random.default_rng(5)
    keep = np.ones(cat.log_mass.size, bool)
    for i in range(0, cat.n_galaxies, 4):  # ragged: 1..9 samples for every fourth galaxy
        keep[cat.offsets[i] + rng.integers(1, 10): cat.offsets[i + 1]] = False
    from popmodel.catalog import PosteriorCatalog

    ragged = PosteriorCatalog.from_arrays(
        cat.ids, cat.fields, cat.log_mass[keep], cat.z[keep],
        galaxy_index=cat.galaxy_index[keep], weight=rng.uniform(0.2, 1.0, int(keep.sum())),
        obs_log_mass=cat.obs_log_mass, obs_z=cat.obs_z,
    )
    # half of the galaxies as Gauss-Hermite nodes (monte_carlo False), half as samples
    gh = gauss_hermite(ragged, n_mass=6, n_z=1, keep_samples=np.arange(ragged.n_galaxies) % 2 == 0)
    data = prepare_smf_data(gh, survey, chunk_size=96)
    assert data.arrays.n_density_terms > 3
    mc = np.concatenate([np.asarray(b.monte_carlo).ravel() for b in data.arrays.blocks])
    valid = np.concatenate([np.asarray(b.valid).ravel() for b in data.arrays.blocks])
    assert mc[valid].any() and (~mc[valid]).any()
    assert (~valid).any()  # padding galaxies in some last chunk
    return data


@pytest.mark.parametrize("jensen", [True, False])
def test_fused_equals_autodiff(mixed_data, jensen: bool) -> None:
    a = mixed_data.arrays
    rng = np.random.default_rng(int(jensen))
    v = V0 + 3.0 * SIG * rng.normal(size=11)
    delta = jnp.asarray(rng.normal(size=a.n_density_terms) * np.asarray(a.cv_sigma))

    def f(method):
        return jax.jit(jax.value_and_grad(
            lambda vv, dd: log_likelihood(params(vv), a, jensen, dd, method=method), argnums=(0, 1)))

    (l_f, (g_f, gd_f)) = f("fused")(jnp.asarray(v), delta)
    (l_a, (g_a, gd_a)) = f("autodiff")(jnp.asarray(v), delta)
    assert float(l_f) == pytest.approx(float(l_a), rel=1e-12, abs=1e-8)
    np.testing.assert_allclose(np.asarray(g_f), np.asarray(g_a), rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(np.asarray(gd_f), np.asarray(gd_a), rtol=1e-9, atol=1e-8)
    assert np.abs(np.asarray(gd_a)).max() > 1.0  # the density terms do move ln L


def test_hessian_reverse_over_reverse(mixed_data) -> None:
    a = mixed_data.arrays
    delta = jnp.asarray(0.5 * np.asarray(a.cv_sigma))

    def fn(method):
        return lambda vv: log_likelihood(params(vv), a, True, delta, method=method)

    h_f = jax.jit(jax.jacrev(jax.grad(fn("fused"))))(jnp.asarray(V0))
    h_a = jax.jit(jax.hessian(fn("autodiff")))(jnp.asarray(V0))
    np.testing.assert_allclose(np.asarray(h_f), np.asarray(h_a), rtol=1e-8,
                               atol=1e-8 * np.abs(np.asarray(h_a)).max())


def test_release_memory_keeps_the_potential(mixed_data) -> None:
    """Freeing JAX's compiled programs between a large fit's stages
    (:func:`popmodel.smf.inference.release_memory`) leaves the potential, its gradient and its
    Hessian bit for bit as they were: the recompiled programs compute the same numbers."""
    from popmodel.smf.inference import _Potential, release_memory
    from popmodel.smf.model import SMFPrior

    a = mixed_data
    prior = SMFPrior(density_terms=a.density.labels)
    pot = _Potential(prior, a.arrays)
    u = jnp.asarray(pot.u0 + 0.1 * np.random.default_rng(4).normal(size=pot.u0.size))
    v0, g0 = (np.asarray(x) for x in pot.value_and_grad(u, a.arrays))
    h0 = np.asarray(pot.hessian(u, a.arrays))
    release_memory()
    v1, g1 = (np.asarray(x) for x in pot.value_and_grad(u, a.arrays))
    np.testing.assert_array_equal(v1, v0)
    np.testing.assert_array_equal(g1, g0)
    np.testing.assert_array_equal(np.asarray(pot.hessian(u, a.arrays)), h0)


def test_chunking_with_a_partial_last_chunk(mixed_data) -> None:
    """N not a multiple of the chunk: the last chunk is padded with masked rows, not dropped."""
    cat = mixed_data.catalog
    a_small = mixed_data.arrays
    big = prepare_smf_data(cat, _survey_of(mixed_data), chunk_size=1 << 20).arrays
    for blk in a_small.blocks:
        g_per_chunk = blk.valid.shape[1]
        n_gal = int(np.asarray(blk.valid).sum())
        if n_gal % g_per_chunk:
            assert not bool(np.asarray(blk.valid)[-1].all())
    assert sum(b.valid.shape[0] for b in a_small.blocks) > 2 * len(big.blocks)
    p = params(V0 + 2 * SIG)
    assert float(galaxy_sum(p, a_small)) == pytest.approx(float(galaxy_sum(p, big)), rel=1e-13)


def _survey_of(data):
    return data.survey


def test_padding_ladder() -> None:
    n = np.arange(1, 5000)
    p = padded_count(n)
    assert np.all(p >= n)
    assert np.all((p - n) / n <= 1 / 8 + 1e-12)  # at most 12.5% padding
    assert len(np.unique(padded_count(np.arange(65, 129)))) == 8  # 8 shapes per octave
    assert padded_count(np.array([100]))[0] == 104


def test_float32_differences_match_float64_at_1e7_samples() -> None:
    """ln L differences between parameter points: float32 sample arrays within 0.05 of float64
    at N = 10^5 galaxies x 100 samples (float32 parameters alone would be off by ~0.1: the
    polynomials are evaluated in float64)."""
    n, s = 100_000, 100
    rng = np.random.default_rng(2)
    m0 = rng.uniform(9.0, 11.5, n)
    z0 = rng.uniform(0.5, 2.5, n)
    lm = np.repeat(m0, s) + rng.normal(0, 0.1, n * s)
    z = np.repeat(z0, s) + rng.normal(0, 0.03, n * s) * (1 + np.repeat(z0, s))
    off = 20.0 + np.log1p(z) + rng.normal(0, 0.05, n * s)  # stand-in for ln dV/dz Omega / pi
    offsets = np.arange(n + 1) * s
    group = np.zeros(n, np.int64)
    out = {}
    pts = [V0 + c * SIG * rng.normal(size=11) for c in (0.0, 0.03, 0.1, 0.3, 1.0)]
    for dt in (np.float32, np.float64):
        blocks, _ = build_blocks(offsets, lm, z, off, group, dtype=dt)
        d = LikelihoodData(blocks, *(jnp.zeros(1),) * 3, jnp.zeros(1, jnp.int32))
        f = jax.jit(lambda vv, d: galaxy_sum(params(vv), d))
        out[dt] = np.array([float(f(jnp.asarray(v), d)) for v in pts])
        del blocks, d
    d32 = out[np.float32] - out[np.float32][0]
    d64 = out[np.float64] - out[np.float64][0]
    assert np.abs(d64[1:]).min() > 10.0  # the points really differ
    np.testing.assert_allclose(d32, d64, rtol=0, atol=0.05)


def test_sharded_over_two_devices_equals_one_device(mixed_data) -> None:
    """The galaxy axis split over 2 (simulated CPU) devices: same value and gradients."""
    from popmodel.smf.sharding import shard_likelihood_data

    if jax.device_count() < 2:
        pytest.skip("needs XLA_FLAGS=--xla_force_host_platform_device_count=2 (conftest sets it)")
    a = mixed_data.arrays
    sh = shard_likelihood_data(a)
    blk = sh.blocks[0]
    shards = blk.log_mass.addressable_shards
    assert len({s.device for s in shards}) == 2
    assert shards[0].data.shape[1] * 2 == blk.log_mass.shape[1]  # galaxies split in halves
    delta = jnp.asarray(0.7 * np.asarray(a.cv_sigma))
    f = jax.jit(jax.value_and_grad(lambda v, dd, data: log_likelihood(params(v), data, True, dd),
                                   argnums=(0, 1)))
    v = jnp.asarray(V0 + SIG)
    (l1, (g1, gd1)), (l2, (g2, gd2)) = f(v, delta, a), f(v, delta, sh)
    assert float(l2) == pytest.approx(float(l1), rel=1e-13)
    np.testing.assert_allclose(np.asarray(g2), np.asarray(g1), rtol=1e-11, atol=1e-9)
    np.testing.assert_allclose(np.asarray(gd2), np.asarray(gd1), rtol=1e-11, atol=1e-9)
    hlo = jax.jit(lambda data: log_likelihood(params(v), data, True, delta)).lower(sh).compile().as_text()
    assert "all-reduce" in hlo  # partitioned, not gathered onto one device
