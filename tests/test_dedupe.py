"""One implementation each (issue 17, item 1): the Phi evaluator for posterior draws,
``percentile_bands``, ``laplace_draws``, the z grid, and the survey cut both models use."""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from numpyro.infer.util import constrain_fn

from popmodel import census as C
from popmodel.catalog import PosteriorCatalog
from popmodel.smf import checks, derived
from popmodel.smf.evolution import ContinuityParams, leja2020_params
from popmodel.smf.schechter import log10_phi
from popmodel.survey import Field, Survey

LN10 = np.log(10.0)


# ------------------------------------------------------------------ the Phi evaluator
def _random_draws(rng: np.random.Generator, anchors: tuple[float, ...], n: int) -> np.ndarray:
    """(n, 3K+2) draws around the Leja+20 medians (anchors other than theirs get the median
    curve's values there), with slopes inside the prior's ranges."""
    base = leja2020_params()
    tracks = [np.interp(anchors, base.anchor_z, np.asarray(getattr(base, k)))
              for k in ("log_phi1", "log_phi2", "log_mstar")]
    v = np.concatenate([*tracks, [float(base.alpha1), float(base.alpha2)]])
    d = v + rng.normal(0.0, 0.15, (n, v.size))
    d[:, -2] = rng.uniform(-0.9, 0.9, n)
    d[:, -1] = rng.uniform(-1.95, -1.05, n)
    return d


def _brute_log10_phi(v: np.ndarray, anchors: tuple[float, ...], log_m: float, z: float) -> float:
    """One draw, one point: the polynomial through the anchors by np.polyfit (degree K-1, so
    exact), then the double Schechter per dex summed in linear space (Leja et al. 2020, App. B)."""
    k = len(anchors)
    lp1, lp2, lms = (np.polyval(np.polyfit(anchors, v[j * k:(j + 1) * k], k - 1), z)
                     for j in range(3))
    x = 10.0 ** (log_m - lms)
    phi = LN10 * np.exp(-x) * (10.0**lp1 * x ** (v[3 * k] + 1) + 10.0**lp2 * x ** (v[3 * k + 1] + 1))
    return float(np.log10(phi))


@pytest.mark.parametrize("anchors", [(0.2, 1.6, 3.0), (0.2, 1.0, 2.0, 3.0)])
def test_phi_evaluator_against_brute_force(anchors: tuple[float, ...]) -> None:
    rng = np.random.default_rng(1701)
    v = _random_draws(rng, anchors, 6)
    p = ContinuityParams.from_vector(v, anchors)
    lm = rng.uniform(7.5, 12.5, 9)
    z = rng.uniform(0.1, 3.2, 5)
    grid = derived.log10_phi_grid(p, lm, z)  # (D, Z, M)
    pts = derived.log10_phi_draws(p, lm[:5], z)  # pointwise (D, 5)
    assert grid.shape == (6, 5, 9) and pts.shape == (6, 5) and grid.dtype == np.float64
    for d in range(6):
        for i, zz in enumerate(z):
            for j, mm in enumerate(lm):
                assert abs(grid[d, i, j] - _brute_log10_phi(v[d], anchors, mm, zz)) < 1e-10
            assert abs(pts[d, i] - _brute_log10_phi(v[d], anchors, lm[i], zz)) < 1e-10
        # and the JAX reference of the likelihood
        ref = np.asarray(log10_phi(jnp.asarray(lm)[None, :], jnp.asarray(z)[:, None],
                                   ContinuityParams.from_vector(jnp.asarray(v[d]), anchors)))
        np.testing.assert_allclose(grid[d], ref, rtol=0, atol=1e-10)
    np.testing.assert_allclose(derived.ln_phi_draws(p, lm[None, :], z[:, None]), LN10 * grid,
                               rtol=1e-14)


def test_phi_evaluator_shapes_and_validation() -> None:
    p = leja2020_params()
    assert derived.log10_phi_draws(p, np.linspace(9, 11, 4), 1.0).shape == (1, 4)
    assert derived.ln_phi_draws(p, 10.0, 1.0).shape == (1,)
    batched = ContinuityParams.from_vector(np.tile(np.asarray(p.to_vector()), (2, 3, 1)))
    assert derived.log10_phi_grid(batched, [9.0, 10.0], [0.5, 1.0, 2.0]).shape == (6, 3, 2)
    bad = p.replace(alpha1=np.float64(np.nan))
    with pytest.raises(ValueError, match="alpha1"):
        derived.log10_phi_grid(bad, [10.0], [1.0])


def test_one_phi_evaluator_everywhere() -> None:
    """The census, the model checks and the mock hold no copy of their own."""
    from popmodel import mock

    assert C.log10_phi_grid is derived.log10_phi_grid
    assert checks.ln_phi_draws is derived.ln_phi_draws
    assert mock.ln_phi_draws is derived.ln_phi_draws
    assert not hasattr(checks, "_ln_phi_grid") and not hasattr(mock, "_ln_phi_np")


# ------------------------------------------------------------------ percentile_bands
def test_percentile_bands_finite_inf_nan_and_axis() -> None:
    rng = np.random.default_rng(7)
    x = rng.normal(size=(201, 4))
    x[:, 1] = -np.inf  # every draw -inf: the band is -inf, not NaN
    x[:50, 2] = -np.inf  # a quarter -inf: p16 -inf, p50 and p84 finite order statistics
    x[3, 3] = np.nan
    b = derived.percentile_bands(x)
    assert b.shape == (3, 4)
    np.testing.assert_array_equal(b[:, 0], np.percentile(x[:, 0], [16, 50, 84]))
    assert np.all(b[:, 1] == -np.inf)
    assert b[0, 2] == -np.inf
    np.testing.assert_array_equal(b[1:, 2], np.percentile(x[:, 2], [50, 84], method="inverted_cdf"))
    assert np.all(np.isfinite(b[1:, 2]))
    assert np.all(np.isnan(b[:, 3]))
    # numpy's linear interpolation meets inf - inf: the reason for the special case
    with np.errstate(invalid="ignore"):
        assert np.isnan(np.percentile(np.array([-np.inf, -np.inf, 0.0]), 50 + 1e-9))
    # the draw axis anywhere
    y = np.moveaxis(x.reshape(201, 2, 2), 0, 2)
    np.testing.assert_array_equal(derived.percentile_bands(y, axis=2), b.reshape(3, 2, 2))
    np.testing.assert_array_equal(derived.percentile_bands(x, (5, 95)),
                                  derived.percentile_bands(x.T, (5, 95), axis=1))
    assert C.percentile_bands is derived.percentile_bands


# ------------------------------------------------------------------ laplace_draws
def test_one_laplace_draws_and_it_matches_numpyro_constrain() -> None:
    """The streamed fit uses the in-memory one; its transforms are NumPyro's constrain_fn
    (density terms included: delta = sigma_DM eta)."""
    from popmodel.mock import draw_mock
    from popmodel.smf import inference, stream
    from popmodel.smf.data import prepare_smf_data
    from popmodel.smf.model import SMFPrior, smf_model
    from popmodel.testing import deep_survey

    assert stream.laplace_draws is inference.laplace_draws
    sv = deep_survey(1, 6.0)
    f = sv.fields[0]
    sv = Survey([Field(f.name, f.area_sr, f.z_min, f.z_max, f.completeness_z,
                       f.completeness_log_mass, side_arcmin=(f.area_arcmin2**0.5,) * 2)],
                cosmology=sv.cosmology)
    cat, _ = draw_mock(sv, seed=2, n_samples=4)
    data = prepare_smf_data(cat, sv)
    prior = SMFPrior(density_terms=data.density.labels)
    assert prior.density_terms
    names = sorted(prior.latent_names)
    rng = np.random.default_rng(3)
    u0 = rng.normal(0.0, 0.7, (5, len(names)))
    mp = SimpleNamespace(u_names=names)
    got = inference.constrain_draws(u0, mp, prior, data=data)
    _, unravel = ravel_pytree({k: jnp.zeros(()) for k in names})
    for k in range(5):
        ref = constrain_fn(smf_model, (data.arrays, prior), {}, unravel(jnp.asarray(u0[k])),
                           return_deterministic=True)
        for n in prior.names + list(prior.density_terms):
            assert float(got[n][k]) == pytest.approx(float(ref[n]), abs=1e-12), n
    with pytest.raises(ValueError, match="density terms"):
        inference.constrain_draws(u0, mp, prior)
    # the draws: u ~ N(u_MAP, cov) with a JAX key, then constrained
    full = SimpleNamespace(u_names=names, u=u0[0], cov_u=np.eye(len(names)) * 0.01)
    d = inference.laplace_draws(full, prior, 4000, seed=1, data=data)
    assert set(d) == set(prior.names) | set(prior.density_terms)
    uu = jax.random.multivariate_normal(jax.random.key(1), jnp.asarray(full.u),
                                        jnp.asarray(full.cov_u), (4000,))
    np.testing.assert_array_equal(d["alpha1"],
                                  inference.constrain_draws(np.asarray(uu), full, prior,
                                                            data=data)["alpha1"])


# ------------------------------------------------------------------ the z grid
def test_one_z_grid() -> None:
    from pathlib import Path

    import popmodel
    from popmodel.io import smf as io_smf
    from popmodel.plots import figures
    from popmodel.units import Z_GRID

    np.testing.assert_allclose(np.diff(Z_GRID), 0.05, atol=1e-12)
    assert Z_GRID[0] == 0.2 and Z_GRID[-1] == 3.0
    assert io_smf.RHO_Z_GRID is Z_GRID and figures.Z_RHO is Z_GRID
    root = Path(popmodel.__file__).parent
    defs = [str(f.relative_to(root)) for f in root.rglob("*.py")
            if "arange(0.2, 3.0001, 0.05)" in f.read_text()]
    assert defs == ["units.py"]


# ------------------------------------------------------------------ one survey cut
def _catalog(fields: list[str], m_obs: np.ndarray, z_obs: np.ndarray) -> PosteriorCatalog:
    """Two posterior samples per galaxy around the catalogue values (with an SFR)."""
    n = len(fields)
    rep = np.repeat(np.arange(n), 2)
    jit = np.tile([-0.01, 0.01], n)
    return PosteriorCatalog(
        ids=[f"g{i}" for i in range(n)], fields=fields, offsets=np.arange(0, 2 * n + 1, 2),
        log_mass=m_obs[rep] + jit, z=z_obs[rep] + jit, log_sfr=np.zeros(2 * n),
        obs_log_mass=m_obs, obs_z=z_obs)


def _one_field_survey() -> Survey:
    return Survey([Field("A", 100.0 * u.arcmin**2, 0.5, 2.0, [0.5, 2.0], [9.0, 9.9])],
                  cosmology="WMAP9")


def test_a_galaxy_exactly_at_the_limit_is_kept_by_both_models() -> None:
    from popmodel.flow.fit import apply_survey_cuts as flow_cuts
    from popmodel.smf.data import apply_survey_cuts as smf_cuts

    sv = _one_field_survey()
    f = sv.fields[0]
    z = np.array([0.5, 1.3, 1.3, 2.0, 2.0, 1.0])
    lim = f.log_mass_limit(z)
    m = lim + np.array([0.0, 0.0, -1e-9, 0.0, 0.5, 0.5])
    z[-1] = 2.0 + 1e-9  # just outside the window
    # the convention: the limit and both window ends pass
    np.testing.assert_array_equal(f.selects(m, z), [True, True, False, True, True, False])
    cat = _catalog(["A"] * 6, m, z)
    keep_smf, _, _ = smf_cuts(cat, sv)
    kept_flow, report = flow_cuts(cat, sv)
    np.testing.assert_array_equal(keep_smf, f.selects(m, z))
    assert list(kept_flow.ids) == list(cat.ids[keep_smf])
    assert report["per_field"]["A"] == {"input": 6, "outside_z": 1, "owned_by_other_field": 0,
                                        "below_mass_limit": 1, "kept": 4}
    # the mock and the model checks make the same cut
    keep_chk, _, _, _ = checks._selected(cat, sv)
    np.testing.assert_array_equal(keep_chk, keep_smf)


def test_overlap_labels_go_through_the_flow_data_preparation() -> None:
    """DEEP lies inside WIDE and owns the overlap for 0.5 <= z <= 0.8: a galaxy labelled
    WIDE[DEEP] there is a duplicate; both models drop it and keep the others."""
    from popmodel.flow.data import flow_data_from_catalog
    from popmodel.flow.fit import apply_survey_cuts as flow_cuts
    from popmodel.smf.data import apply_survey_cuts as smf_cuts

    wide = Field("WIDE", 600.0 * u.arcmin**2, 0.2, 0.8, [0.2, 0.8], [9.9, 10.4])
    deep = Field("DEEP", 150.0 * u.arcmin**2, 0.5, 2.0, [0.5, 2.0], [9.3, 9.9], inside="WIDE")
    sv = Survey.combine({"W": [wide], "D": [deep]}, cosmology="WMAP9",
                        ownership=[{"fields": ["DEEP", "WIDE"], "owner": "DEEP", "z": [0.5, 0.8]}])
    assert "WIDE[DEEP]" in sv.region_labels()
    labels = ["WIDE", "WIDE[DEEP]", "WIDE[DEEP]", "DEEP", "DEEP[WIDE]"]
    z = np.array([0.6, 0.3, 0.6, 1.5, 0.7])
    m = np.full(5, 11.0)
    cat = _catalog(labels, m, z)
    keep_smf, group, rep = smf_cuts(cat, sv)
    np.testing.assert_array_equal(keep_smf, [True, True, False, True, True])
    assert rep.owned_by_other_field["WIDE"] == {"DEEP": 1}
    kept, report = flow_cuts(cat, sv)
    assert list(kept.ids) == list(cat.ids[keep_smf])
    assert list(kept.fields) == ["WIDE", "WIDE", "DEEP", "DEEP"]  # region labels -> fields
    assert report["per_field"]["WIDE"]["owned_by_other_field"] == 1
    data = flow_data_from_catalog(kept)
    assert data.field_names == ["DEEP", "WIDE"]
    keep_s, group_s = sv.selects(np.asarray(labels), m, z)
    np.testing.assert_array_equal(keep_s, keep_smf)
    np.testing.assert_array_equal(group_s, group)


# ------------------------------------------------------------------ layering and dead switches
def _modules_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "; import sys; print(' '.join(sys.modules))"],
                         check=True, capture_output=True, text=True).stdout
    return set(out.split())


def test_core_modules_neither_draw_nor_import_in_a_circle() -> None:
    mods = _modules_after("import popmodel.smf.checks, popmodel.census")
    assert "matplotlib" not in mods
    assert "popmodel.plots" not in mods and "popmodel.io" not in mods
    assert "popmodel.survey" not in _modules_after("import popmodel.cosmic_variance")


def test_cosmic_variance_still_knows_a_field() -> None:
    from popmodel.cosmic_variance import sigma_dm

    f = Field("F", 100.0 * u.arcmin**2, 0.5, 2.0, [0.5], [9.0], side_arcmin=(10.0, 10.0))
    np.testing.assert_allclose(sigma_dm(f, 1.0, 0.2), sigma_dm((10.0, 10.0), 1.0, 0.2))
    g = Field("G", 100.0 * u.arcmin**2, 0.5, 2.0, [0.5], [9.0], sigma_dm=0.123)
    np.testing.assert_allclose(sigma_dm(g, 1.0, 0.2), 0.123)


def test_no_dead_switches_in_the_kernel() -> None:
    from popmodel.smf import likelihood

    assert not hasattr(likelihood, "_MOMENTS") and not hasattr(likelihood, "_MIXED_PRECISION")


def test_write_model_checks_calls_the_figures_callback(tmp_path) -> None:
    """Tables always; figures only through the callback, with the documented arguments."""
    from popmodel.mock import draw_mock
    from popmodel.plots.checks import model_check_figures
    from popmodel.smf.data import prepare_smf_data
    from popmodel.testing import deep_survey

    sv = deep_survey(1, 6.0)
    cat, _ = draw_mock(sv, seed=4, n_samples=4)
    data = prepare_smf_data(cat, sv, cosmic_variance=False)
    v = np.asarray(leja2020_params().to_vector())
    draws = ContinuityParams.from_vector(v + np.random.default_rng(0).normal(0, 0.02, (8, v.size)))
    fit = SimpleNamespace(data=data, draws=lambda: draws)
    m_e, z_e = np.arange(9.0, 12.01, 0.5), np.array([0.5, 1.5, 2.5])
    calls = []

    def record(*args: object) -> list[str]:
        calls.append(args)
        return model_check_figures(*args)

    out = checks.write_model_checks(fit, str(tmp_path), log_mass_edges=m_e, z_edges=z_e,
                                    max_draws=8, figures=record)
    obs, pred, survey, vm, log_m, bands, out_dir = calls[0]
    assert obs.shape == (1, m_e.size - 1, z_e.size - 1) and pred.shape == (8, *obs.shape)
    assert survey is data.survey and isinstance(vm, checks.VmaxSMF) and out_dir == str(tmp_path)
    np.testing.assert_allclose(bands, derived.percentile_bands(
        derived.log10_phi_grid(draws, log_m, 0.5 * (z_e[1:] + z_e[:-1]))))
    names = {p.rsplit("/", 1)[-1] for p in out["files"]}
    assert names == {"ppc_counts.ecsv", "vmax_smf.ecsv", "ppc_counts.png", "ppc_counts.pdf",
                     "vmax_smf.png", "vmax_smf.pdf"}
    tables_only = checks.write_model_checks(fit, str(tmp_path / "t"), log_mass_edges=m_e,
                                            z_edges=z_e, max_draws=8)
    assert {p.rsplit("/", 1)[-1] for p in tables_only["files"]} == {"ppc_counts.ecsv", "vmax_smf.ecsv"}
    with pytest.raises(TypeError, match="model_check_figures"):
        checks.write_model_checks(fit, str(tmp_path / "x"), figures=True)
