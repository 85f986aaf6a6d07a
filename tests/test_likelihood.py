"""Tests for popmodel.smf.likelihood and popmodel.smf.data.

The likelihood is compared with a brute-force evaluation written here from science.md
section 1.4 alone: a numpy double Schechter, quadratics through the anchors (np.polyfit),
astropy's dV/dz at every sample, and nested adaptive quadrature (scipy.integrate.quad) of
Phi dV/dz Omega S_f for the expected number.
"""

import dataclasses

import astropy.units as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from scipy import integrate, special

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.cosmology import VolumeTable
from popmodel.mock import draw_mock
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.evolution import DEFAULT_ANCHORS, ContinuityParams, leja2020_params
from popmodel.smf.likelihood import expected_number, galaxy_log_terms, log_likelihood
from popmodel.smf.schechter import ln_phi
from popmodel.survey import Field, Survey

LN10 = np.log(10.0)
THREEDHST_Z = [0.65, 1.0, 1.5, 2.1, 3.0]
THREEDHST_M = [8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536]

# A perturbed parameter point (inside the default priors) besides the Leja et al. medians.
OTHER = np.array([-2.6, -3.0, -3.9, -2.8, -3.4, -3.7, 10.7, 10.95, 10.8, -0.5, -1.6])


def params_from(v: np.ndarray) -> ContinuityParams:
    return ContinuityParams.from_vector(jnp.asarray(v, dtype=jnp.float64))


# --------------------------------------------------------------------- brute force
def np_phi(v: np.ndarray, log_m, z):
    """Phi(log M, z) [Mpc^-3 dex^-1] of parameter vector v, numpy only."""
    return np_phi_from_coef(anchor_coefficients(v), v[9], v[10], log_m, z)


def anchor_coefficients(v: np.ndarray) -> list[np.ndarray]:
    """Quadratic coefficients of log phi1, log phi2, log M* through the anchors (np.polyfit)."""
    return [np.polyfit(DEFAULT_ANCHORS, v[3 * k : 3 * k + 3], 2) for k in range(3)]


def np_phi_from_coef(coef, a1, a2, log_m, z):
    lp1, lp2, lms = (np.polyval(c, z) for c in coef)
    x = 10.0 ** (np.asarray(log_m) - lms)
    return LN10 * np.exp(-x) * (10.0**lp1 * x ** (a1 + 1) + 10.0**lp2 * x ** (a2 + 1))


def dvdz(cosmo, z):
    return cosmo.differential_comoving_volume(z).to_value(u.Mpc**3 / u.sr)


def brute_galaxy_terms(v: np.ndarray, cat: PosteriorCatalog, survey: Survey) -> np.ndarray:
    """ln[ sum_j w~_ij Phi(x_ij) dV/dz(z_ij) Omega_f / pi_i(x_ij) ] for every galaxy."""
    out = []
    for i in range(cat.n_galaxies):
        s = slice(cat.offsets[i], cat.offsets[i + 1])
        m, z = cat.log_mass[s], cat.z[s]
        w = np.ones_like(m) if cat.weight is None else cat.weight[s]
        lp = np.zeros_like(m) if cat.log_prior is None else cat.log_prior[s]
        if np.all(lp == lp[0]):  # a prior constant over a galaxy's samples is flat for it
            lp = np.zeros_like(m)
        f = survey.field(cat.fields[i])
        terms = np.log(np_phi(v, m, z) * dvdz(survey.cosmology, z) * f.area_sr) - lp
        out.append(special.logsumexp(terms, b=w / w.sum()))
    return np.array(out)


def brute_expected_number(v: np.ndarray, f: Field, cosmo, hard: bool = False) -> float:
    """Omega_f ∫dz P_z dV/dz ∫dlogM Phi S_f by nested adaptive quadrature."""
    sig = np.asarray(f.mass_error_dex)
    sz = 0.0 if hard else float(np.max(f.z_error))  # these tests use a single width
    coef = anchor_coefficients(v)

    def phi(m: float, z: float) -> float:
        return np_phi_from_coef(coef, v[9], v[10], m, z)

    def over_mass(z: float) -> float:
        mc = float(np.interp(z, f.completeness_z, f.completeness_log_mass))
        if hard:
            val, _ = integrate.quad(
                lambda m: phi(m, z), mc, 14.0, epsabs=0, epsrel=1e-11, limit=200
            )
        else:
            val = integrate.quad(
                lambda m: phi(m, z) * np.mean(special.ndtr((m - mc) / sig)),
                mc - 10.0 * sig.max(),
                14.0,
                points=[mc],
                epsabs=0,
                epsrel=1e-11,
                limit=200,
            )[0]
        if sz > 0:
            s = sz * (1.0 + z)
            val *= special.ndtr((f.z_max - z) / s) - special.ndtr((f.z_min - z) / s)
        return val * dvdz(cosmo, z)

    pad = 8.0 * sz * (1.0 + f.z_max)
    lo, hi = f.z_min - pad, f.z_max + pad
    pts = [x for x in [*f.completeness_z, f.z_min, f.z_max] if lo < x < hi]
    return (
        integrate.quad(over_mass, lo, hi, points=pts, epsabs=0, epsrel=1e-10, limit=200)[0]
        * f.area_sr
    )


def _ln_phi(arr, p) -> np.ndarray:
    """ln Phi at the package's N_exp quadrature nodes (to split N_exp by field)."""
    return np.asarray(ln_phi(jnp.asarray(arr.grid_log_mass), jnp.asarray(arr.grid_z), p))


# --------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def survey() -> Survey:
    return Survey(
        (
            Field(
                "A",
                40.0 * u.arcmin**2,
                0.5,
                2.5,
                THREEDHST_Z,
                THREEDHST_M,
                mass_error_dex=[0.1, 0.25],
            ),
            Field(
                "B",
                25.0 * u.arcmin**2,
                0.8,
                2.0,
                [0.8, 1.5, 2.0],
                [9.3, 9.8, 10.1],
                mass_error_dex=[0.15],
                z_error=0.03,
            ),
        )
    )


@pytest.fixture(scope="module")
def tiny_catalog() -> PosteriorCatalog:
    """Ragged: 1, 3, 7, 40, 16, 5 samples; weights and an interim prior; two fields."""
    rng = np.random.default_rng(11)
    counts = [1, 3, 7, 40, 16, 5]
    fields = ["A", "B", "A", "B", "A", "B"]
    obs_z = np.array([0.9, 1.2, 2.2, 1.7, 0.6, 1.0])
    obs_m = np.array([10.4, 10.2, 11.0, 10.3, 9.5, 11.2])
    gal = np.repeat(np.arange(6), counts)
    zerr = np.where(np.array(fields) == "B", 0.03 * (1 + obs_z), 0.0)
    return PosteriorCatalog(
        ids=[f"gal{c}" for c in counts],
        fields=fields,
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        log_mass=obs_m[gal] + rng.normal(0.0, 0.2, gal.size),
        z=obs_z[gal] + zerr[gal] * rng.standard_normal(gal.size),
        log_prior=rng.normal(-1.0, 0.5, gal.size),
        weight=rng.uniform(0.1, 2.0, gal.size),
        obs_log_mass=obs_m,
        obs_z=obs_z,
    )


@pytest.fixture(scope="module")
def tiny_data(tiny_catalog, survey):
    return prepare_smf_data(tiny_catalog, survey)


@pytest.fixture(scope="module")
def loglike():
    # the brute-force references are the plain importance-sampled estimator
    return jax.jit(lambda p, d: log_likelihood(p, d, jensen_correction=False))


# --------------------------------------------------------------------- (a) brute force
@pytest.mark.parametrize(
    "v", [np.asarray(leja2020_params().to_vector()), OTHER], ids=["leja", "other"]
)
def test_galaxy_terms_vs_brute_force(v, tiny_catalog, tiny_data, survey, loglike) -> None:
    assert tiny_data.report.n_used == tiny_catalog.n_galaxies
    p = params_from(v)
    expected = brute_galaxy_terms(v, tiny_catalog, survey)
    got = tiny_data.index.gather_galaxies(list(galaxy_log_terms(p, tiny_data.arrays)), 6)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    galaxy_part = float(loglike(p, tiny_data.arrays) + expected_number(p, tiny_data.arrays))
    np.testing.assert_allclose(galaxy_part, expected.sum(), rtol=1e-6)


@pytest.mark.parametrize(
    "v", [np.asarray(leja2020_params().to_vector()), OTHER], ids=["leja", "other"]
)
def test_expected_number_vs_quadrature(v, tiny_data, survey) -> None:
    p = params_from(v)
    arr = tiny_data.arrays
    per_grid = np.exp(_ln_phi(arr, p) + arr.grid_log_weight)
    refs = [brute_expected_number(v, f, survey.cosmology) for f in survey.fields]
    for g, ref in enumerate(refs):
        np.testing.assert_allclose(
            per_grid[arr.grid_group == g].sum(),
            ref,
            rtol=1e-5,
            err_msg=f"field {survey.fields[g].name}",
        )
    np.testing.assert_allclose(float(expected_number(p, arr)), sum(refs), rtol=1e-5)


def test_expected_number_hard_cut_vs_quadrature(tiny_catalog, survey) -> None:
    data = prepare_smf_data(tiny_catalog, survey, selection="hard")
    v = np.asarray(leja2020_params().to_vector())
    arr = data.arrays
    per_grid = np.exp(_ln_phi(arr, params_from(v)) + arr.grid_log_weight)
    for g, f in enumerate(survey.fields):
        ref = brute_expected_number(v, f, survey.cosmology, hard=True)
        np.testing.assert_allclose(
            per_grid[arr.grid_group == g].sum(), ref, rtol=1e-5, err_msg=f.name
        )
    # the galaxy terms do not depend on the selection model
    p = params_from(v)
    np.testing.assert_allclose(
        float(log_likelihood(p, arr, jensen_correction=False) + expected_number(p, arr)),
        brute_galaxy_terms(v, tiny_catalog, survey).sum(),
        rtol=1e-6,
    )


# --------------------------------------------------------------------- (b) layout and dtype
@pytest.fixture(scope="module")
def small_mock(survey):
    cat, truth = draw_mock(survey, seed=5, n_samples=12)
    # make it ragged: drop a different number of samples from some galaxies
    keep = np.ones(cat.log_mass.size, bool)
    rng = np.random.default_rng(0)
    for i in range(0, cat.n_galaxies, 3):
        keep[cat.offsets[i] + rng.integers(1, 12) : cat.offsets[i + 1]] = False
    gi = cat.galaxy_index[keep]
    ragged = PosteriorCatalog.from_arrays(
        cat.ids,
        cat.fields,
        cat.log_mass[keep],
        cat.z[keep],
        galaxy_index=gi,
        weight=rng.uniform(0.2, 1.0, gi.size),
        obs_log_mass=cat.obs_log_mass,
        obs_z=cat.obs_z,
    )
    return ragged, truth


def test_chunk_size_and_dtype_do_not_matter(small_mock, survey, loglike) -> None:
    cat, _ = small_mock
    assert cat.n_galaxies > 50
    ref = prepare_smf_data(cat, survey)
    assert len(ref.arrays.blocks) >= 3  # several padded sample counts
    small = prepare_smf_data(cat, survey, chunk_size=16, volume=ref.volume)
    f32 = prepare_smf_data(cat, survey, dtype=np.float32, volume=ref.volume)
    assert f32.arrays.blocks[0].log_mass.dtype == np.float32
    assert max(b.log_mass.shape[0] for b in small.arrays.blocks) > 10  # many chunks
    for v in (np.asarray(leja2020_params().to_vector()), OTHER):
        p = params_from(v)
        l_ref = float(loglike(p, ref.arrays))
        np.testing.assert_allclose(float(loglike(p, small.arrays)), l_ref, rtol=1e-12)
        l32 = loglike(p, f32.arrays)
        assert l32.dtype == np.float64  # accumulated in float64
        np.testing.assert_allclose(float(l32), l_ref, rtol=1e-5)
        # and the brute force agrees with the chunked sum
        gal = float(loglike(p, small.arrays) + expected_number(p, small.arrays))
        np.testing.assert_allclose(gal, brute_galaxy_terms(v, cat, survey).sum(), rtol=1e-6)


# --------------------------------------------------------------------- (c) gradients
@pytest.mark.parametrize(
    "v", [np.asarray(leja2020_params().to_vector()), OTHER], ids=["leja", "other"]
)
def test_gradients_check_grads(v, tiny_data, loglike) -> None:
    p = params_from(v)
    check_grads(lambda q: loglike(q, tiny_data.arrays), (p,), order=1, modes=["rev"], eps=1e-5)


# --------------------------------------------------------------------- (d) Monte Carlo N_exp
def test_expected_number_vs_mock_counts() -> None:
    survey = Survey(
        (
            Field(
                "W",
                120.0 * u.arcmin**2,
                1.0,
                2.0,
                THREEDHST_Z,
                THREEDHST_M,
                mass_error_dex=[0.1, 0.3],
            ),
            Field(
                "Z",
                80.0 * u.arcmin**2,
                0.8,
                1.6,
                [0.8, 1.6],
                [9.4, 9.9],
                mass_error_dex=[0.2],
                z_error=0.05,
            ),
        )
    )
    vt = VolumeTable.build(survey.cosmology)
    cat, truth = draw_mock(survey, seed=1, n_samples=1, volume=vt)
    p = leja2020_params()
    data = prepare_smf_data(cat, survey, volume=vt)
    hard = prepare_smf_data(cat, survey, volume=vt, selection="hard")
    arr = data.arrays
    per_grid = np.exp(_ln_phi(arr, p) + arr.grid_log_weight)
    for g, f in enumerate(survey.fields):
        n_exp = per_grid[arr.grid_group == g].sum()
        n_obs = truth.n_selected[f.name]
        assert n_exp > 500
        assert abs(n_obs - n_exp) < 4.0 * np.sqrt(n_exp), (f.name, n_obs, n_exp)
    n_exp = float(expected_number(p, arr))
    assert abs(cat.n_galaxies - n_exp) < 4.0 * np.sqrt(n_exp)
    # Eddington bias: errors scatter more galaxies up across a falling Phi than down
    n_hard = float(expected_number(p, hard.arrays))
    assert n_exp > 1.005 * n_hard


# --------------------------------------------------------------------- (e) bad input
def _one(field: str, log_mass: float, z: float, gid: str = "bad7") -> PosteriorCatalog:
    return PosteriorCatalog(
        ids=["ok1", gid],
        fields=["A", field],
        offsets=np.array([0, 2, 5]),
        log_mass=np.array([10.5, 10.6, 10.0, log_mass, 10.1]),
        z=np.array([1.0, 1.0, 1.2, z, 1.2]),
        obs_log_mass=np.array([10.5, 10.0]),
        obs_z=np.array([1.0, 1.2]),
    )


def test_unknown_field_is_named(survey) -> None:
    with pytest.raises(CatalogError, match=r"bad7.*unknown field.*GOODSN"):
        prepare_smf_data(_one("GOODSN", 10.0, 1.2), survey)


@pytest.mark.parametrize(
    ("log_mass", "z", "col"),
    [
        (15.0, 1.2, "log_mass"),
        (2.0, 1.2, "log_mass"),
        (10.0, 0.0, "z"),
        (10.0, -0.3, "z"),
    ],
)
def test_sample_outside_support_is_named(survey, log_mass: float, z: float, col: str) -> None:
    """z <= 0 is an error; a mass outside 4-14 is one when every sample of the galaxy lies
    there (a galaxy with some samples inside gives the others zero density, tested below)."""
    cat = _one("A", log_mass, z)
    if col == "log_mass":
        cat = dataclasses.replace(cat, log_mass=np.where(cat.galaxy_index == 1, log_mass,
                                                         cat.log_mass))
    with pytest.raises(CatalogError, match=rf"bad7.*'{col}'"):
        prepare_smf_data(cat, survey)


@pytest.mark.parametrize("posterior", ["samples", "auto"])
@pytest.mark.parametrize(("tail_m", "tail_z"), [(10.0, 12.5), (3.5, 1.2), (14.5, 1.2)])
def test_tail_beyond_support_has_zero_density(survey, posterior: str, tail_m: float,
                                              tail_z: float) -> None:
    """A photometric-redshift sample beyond z = 12 (where the mass function is zero) adds
    nothing to its galaxy's sum but still counts in the normalisation: galaxy 'bad7' with
    samples (10.0, 1.2), (10.0, 12.5), (10.1, 1.2) has the term ln[(f1 + 0 + f3) / 3], that of
    its two other samples plus ln(2/3). The sample is counted in the report."""
    cat = _one("A", tail_m, tail_z)
    data = prepare_smf_data(cat, survey, posterior=posterior, cosmic_variance=False)
    rep = data.report.representation
    assert rep["n_samples_outside"] == 1 and rep["n_galaxies_with_samples_outside"] == 1
    assert data.catalog.n_samples[1] == 3  # kept as samples, the tail included
    if posterior == "auto":  # the galaxy keeps its samples: the same term as "samples"
        assert rep["sample_reasons"]["samples beyond the model's support"] == 1
        ref = prepare_smf_data(cat, survey, posterior="samples", cosmic_variance=False)
        p = leja2020_params()
        t = [d.index.gather_galaxies(list(galaxy_log_terms(p, d.arrays)), 2) for d in (data, ref)]
        np.testing.assert_allclose(t[0][1], t[1][1], rtol=0, atol=1e-12)
        return
    inside = (cat.z <= 12.0) & (cat.log_mass >= 4.0) & (cat.log_mass <= 14.0)
    two = prepare_smf_data(cat.take_samples(inside), survey, posterior=posterior,
                           cosmic_variance=False)
    p = leja2020_params()
    got = data.index.gather_galaxies(list(galaxy_log_terms(p, data.arrays)), 2)
    ref = two.index.gather_galaxies(list(galaxy_log_terms(p, two.arrays)), 2)
    # the Jensen correction differs with the sample count: compare without it, on the sums
    lnl = log_likelihood(p, data.arrays, jensen_correction=False)
    lnl_two = log_likelihood(p, two.arrays, jensen_correction=False)
    np.testing.assert_allclose(float(lnl - lnl_two), np.log(2.0 / 3.0), rtol=0, atol=1e-9)
    assert np.isfinite(got).all() and np.isfinite(ref).all()


def test_error_messages_print_plain_names(survey) -> None:
    """Names appear as the user wrote them ('bad7'), not as numpy reprs (np.str_('bad7'))."""
    for cat in (_one("GOODSN", 10.0, 1.2), _one("A", 10.0, -0.5)):
        with pytest.raises(CatalogError) as err:
            prepare_smf_data(cat, survey)
        msg = str(err.value)
        assert "galaxy 'bad7'" in msg, msg
        assert "np.str_" not in msg and "np.float64" not in msg, msg


def test_bad_selection_keyword(tiny_catalog, survey) -> None:
    with pytest.raises(ValueError, match="selection"):
        prepare_smf_data(tiny_catalog, survey, selection="soft")


# --------------------------------------------------------------------- (f) selection report
def test_selection_report_counts_and_unused_galaxies(survey, tiny_catalog, loglike) -> None:
    # (field, obs_z, obs_m, expected status): A has z in [0.5, 2.5], limit 3D-HST;
    # B has z in [0.8, 2.0], limit 9.3 / 9.8 / 10.1 at z = 0.8 / 1.5 / 2.0.
    rows = [
        ("A", 0.3, 11.0, "z"),
        ("A", 2.7, 11.0, "z"),
        ("A", 0.49, 11.0, "z"),
        ("A", 1.0, 9.0, "m"),
        ("A", 2.1, 9.85, "m"),
        ("A", 1.0, 9.1, "ok"),
        ("A", 2.5, 10.5, "ok"),
        ("A", 0.5, 8.9, "ok"),
        ("A", 1.8, 10.9, "ok"),
        ("B", 2.2, 11.0, "z"),
        ("B", 0.8, 9.25, "m"),
        ("B", 1.5, 9.7, "m"),
        ("B", 1.75, 9.9, "m"),
        ("B", 1.75, 10.0, "ok"),
        ("B", 1.1, 10.4, "ok"),
    ]
    rng = np.random.default_rng(4)
    n = len(rows)
    counts = rng.integers(1, 9, n)
    gal = np.repeat(np.arange(n), counts)
    obs_z = np.array([r[1] for r in rows])
    obs_m = np.array([r[2] for r in rows])
    cat = PosteriorCatalog(
        ids=[f"g{i:02d}" for i in range(n)],
        fields=[r[0] for r in rows],
        offsets=np.concatenate([[0], np.cumsum(counts)]),
        log_mass=obs_m[gal] + rng.normal(0, 0.1, gal.size),
        z=np.clip(obs_z[gal] + rng.normal(0, 0.02, gal.size), 0.05, None),
        obs_log_mass=obs_m,
        obs_z=obs_z,
    )
    data = prepare_smf_data(cat, survey)
    rep = data.report
    ok = np.array([r[3] == "ok" for r in rows])
    assert rep.n_input == n and rep.n_used == int(ok.sum()) == 6
    assert rep.outside_z_range == {"A": 3, "B": 1}
    assert rep.below_completeness == {"A": 2, "B": 3}
    assert rep.n_samples_used == int(counts[ok].sum())
    assert rep.point_estimate == "catalogue values"
    assert "6 of 15 galaxies used" in rep.summary()
    np.testing.assert_array_equal(data.catalog.ids, cat.ids[ok])
    assert data.z_data_range == (0.5, 2.5)
    # the cut galaxies play no part: same likelihood as the catalogue of the used ones only
    only = prepare_smf_data(cat.subset(ok), survey, volume=data.volume)
    assert only.report.n_used == 6 and sum(only.report.below_completeness.values()) == 0
    for v in (np.asarray(leja2020_params().to_vector()), OTHER):
        p = params_from(v)
        np.testing.assert_allclose(
            float(loglike(p, data.arrays)), float(loglike(p, only.arrays)), rtol=1e-13
        )
        gal = float(loglike(p, data.arrays) + expected_number(p, data.arrays))
        np.testing.assert_allclose(
            gal, brute_galaxy_terms(v, cat.subset(ok), survey).sum(), rtol=1e-6
        )


def test_selection_uses_weighted_median_without_catalogue_values(survey) -> None:
    # galaxy 0: median mass 9.0 at z = 1.0 (limit 9.07) -> below completeness;
    # galaxy 1: the same samples but weights that move the weighted median to 10.0 -> used.
    m = np.array([8.0, 9.0, 10.0])
    cat = PosteriorCatalog(
        ids=["low", "high"],
        fields=["A", "A"],
        offsets=np.array([0, 3, 6]),
        log_mass=np.concatenate([m, m]),
        z=np.full(6, 1.0),
        weight=np.array([1.0, 1.0, 1.0, 0.1, 0.1, 5.0]),
    )
    data = prepare_smf_data(cat, survey)
    assert data.report.below_completeness == {"A": 1, "B": 0}
    assert data.report.point_estimate.startswith("weighted median")
    np.testing.assert_array_equal(data.catalog.ids, ["high"])


def test_jensen_correction_is_half_the_delta_method_variance(tiny_data):
    """ln L with the correction minus ln L without = 0.5 sum_i Var(ln L-hat_i), the variance that
    mc_error_diagnostics estimates (itself checked against a bootstrap in test_mc_error)."""
    from popmodel.smf.inference import mc_error_diagnostics

    p = leja2020_params()
    d = float(log_likelihood(p, tiny_data.arrays)) - float(
        log_likelihood(p, tiny_data.arrays, jensen_correction=False))
    var = mc_error_diagnostics(tiny_data, p)["var_log_l_total"]
    assert var > 0
    np.testing.assert_allclose(d, 0.5 * var, rtol=1e-8)


@pytest.mark.parametrize(("a", "s"), [(0.5, 4), (0.7, 4), (0.5, 8)])
def test_jensen_correction_against_brute_force_resampling_and_the_flow(a: float, s: int) -> None:
    """ln of an importance-sampled mean of f = exp(a x), x ~ N(0, 1), S samples: over 100,000
    resampled sets its mean falls short of ln E f = a^2 / 2. The SMF's correction, with the
    factor 1 / (1 - sum w^2), leaves less of that bias than without the factor (the old
    correction), and equals the flow's correction (popmodel.flow.train) set for set."""
    import torch

    from popmodel.flow.train import galaxy_log_likelihood
    from popmodel.smf.likelihood import jensen_term

    rng = np.random.default_rng(int(10 * a) + s)
    r = 100_000
    v = a * rng.standard_normal((r, s))
    w = np.full((r, s), 1.0 / s)
    lse = special.logsumexp(v, axis=1) - np.log(s)
    q = np.exp(v - special.logsumexp(v, axis=1, keepdims=True))
    new = lse + np.asarray(jensen_term(jnp.asarray(q), jnp.asarray(w)))
    old = lse + 0.5 * np.sum((q - w) ** 2, axis=1)
    truth = 0.5 * a * a
    se = new.std() / np.sqrt(r)
    bias_new, bias_old = new.mean() - truth, old.mean() - truth
    assert abs(bias_new) < abs(bias_old) - 2 * se, (bias_new, bias_old, se)
    assert abs(lse.mean() - truth) > 3 * abs(bias_new)  # it is a correction worth having
    flow = galaxy_log_likelihood(torch.tensor(v), torch.zeros((r, s), dtype=torch.float64),
                                 torch.tensor(np.log(w))).numpy()
    np.testing.assert_allclose(flow, new, rtol=0, atol=1e-6)
