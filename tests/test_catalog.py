"""Tests for popmodel.catalog: ragged posterior samples, validation, I/O and interim priors."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from popmodel.catalog import (
    CallablePrior,
    CatalogError,
    FlatPrior,
    KDEPrior,
    PosteriorCatalog,
)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


def make_catalog(rng: np.random.Generator, sfr: bool = True) -> PosteriorCatalog:
    """Ragged catalog with weights, log_prior and nested meta; ids deliberately unsorted."""
    ids = ["g7", "g2", "g10", "g1"]
    fields = ["COSMOS", "UDS", "COSMOS", "AEGIS"]
    counts = np.array([3, 1, 5, 2])
    gal = np.repeat(np.arange(4), counts)
    s = gal.size
    return PosteriorCatalog.from_arrays(
        ids,
        fields,
        rng.normal(10.0, 0.5, s),
        rng.uniform(0.2, 3.0, s),
        galaxy_index=gal,
        log_sfr=rng.normal(1.0, 0.3, s) if sfr else None,
        log_prior=rng.normal(-2.0, 0.5, s),
        weight=rng.uniform(0.1, 2.0, s),
        meta={"sed_fitter": "prospector", "settings": {"nlive": 400, "bands": ["u", "g"]}},
    )


def assert_catalogs_equal(a: PosteriorCatalog, b: PosteriorCatalog) -> None:
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.fields, b.fields)
    np.testing.assert_array_equal(a.offsets, b.offsets)
    for name in ("log_mass", "z", "log_sfr", "log_prior", "weight"):
        va, vb = getattr(a, name), getattr(b, name)
        assert (va is None) == (vb is None), name
        if va is not None:
            np.testing.assert_array_equal(va, vb, err_msg=name)
    assert a.meta == b.meta


def test_basic_properties(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    assert cat.n_galaxies == 4
    np.testing.assert_array_equal(cat.n_samples, [3, 1, 5, 2])
    np.testing.assert_array_equal(cat.offsets, [0, 3, 4, 9, 11])
    np.testing.assert_array_equal(cat.galaxy_index, np.repeat(np.arange(4), [3, 1, 5, 2]))
    assert cat.has_sfr
    assert cat.ids.dtype.kind == "U" and cat.log_mass.dtype == np.float64


def test_int_ids_converted_to_str() -> None:
    cat = PosteriorCatalog.from_arrays(
        [5, 3], ["a", "b"], np.ones(3), np.ones(3), galaxy_index=np.array([1, 0, 1])
    )
    np.testing.assert_array_equal(cat.ids, ["5", "3"])
    np.testing.assert_array_equal(cat.offsets, [0, 1, 3])


def test_from_arrays_sample_ids_groups_stably() -> None:
    cat = PosteriorCatalog.from_arrays(
        ["b", "a"],
        ["F1", "F2"],
        np.array([1.0, 2.0, 3.0, 4.0]),
        np.array([0.1, 0.2, 0.3, 0.4]),
        sample_ids=["a", "b", "a", "b"],
    )
    np.testing.assert_array_equal(cat.log_mass, [2.0, 4.0, 1.0, 3.0])
    np.testing.assert_array_equal(cat.offsets, [0, 2, 4])


def test_from_table_keeps_first_appearance_order_and_ragged_counts() -> None:
    table = Table(
        {
            "id": [30, 10, 30, 20, 10, 30],
            "field": ["A", "B", "A", "A", "B", "A"],
            "log_mass": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            "z": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
            "extra": [0, 0, 0, 0, 0, 0],
        },
        meta={"origin": "test"},
    )
    # rows of a galaxy split by other galaxies' rows are an error unless asked for (issue 15:
    # two galaxies that share an id look like this)
    with pytest.raises(CatalogError, match="not contiguous.*'30' in rows 0, 2, 5"):
        PosteriorCatalog.from_table(table)
    cat = PosteriorCatalog.from_table(table, allow_interleaved=True)
    np.testing.assert_array_equal(cat.ids, ["30", "10", "20"])
    np.testing.assert_array_equal(cat.fields, ["A", "B", "A"])
    np.testing.assert_array_equal(cat.n_samples, [3, 2, 1])
    np.testing.assert_array_equal(cat.log_mass, [1.0, 3.0, 6.0, 2.0, 5.0, 4.0])
    assert cat.meta == {"origin": "test"}
    assert cat.log_sfr is None and cat.weight is None


def test_to_table_from_table_round_trip(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    table = cat.to_table()
    assert table.colnames == ["id", "field", "log_mass", "z", "log_sfr", "log_prior", "weight"]
    assert_catalogs_equal(PosteriorCatalog.from_table(table), cat)


@pytest.mark.parametrize("ext", [".h5", ".hdf5", ".fits", ".ecsv", ".parquet"])
@pytest.mark.parametrize("sfr", [True, False])
def test_file_round_trip(rng: np.random.Generator, tmp_path: Path, ext: str, sfr: bool) -> None:
    cat = make_catalog(rng, sfr=sfr)
    path = tmp_path / f"catalog{ext}"
    cat.write(path)
    back = PosteriorCatalog.read(path)
    assert_catalogs_equal(back, cat)
    np.testing.assert_array_equal(back.ids, ["g7", "g2", "g10", "g1"])  # order kept
    with pytest.raises(OSError):
        cat.write(path)
    cat.write(path, overwrite=True)
    assert_catalogs_equal(PosteriorCatalog.read(str(path)), cat)


def test_explicit_format_and_unknown_extension(rng: np.random.Generator, tmp_path: Path) -> None:
    cat = make_catalog(rng)
    path = tmp_path / "catalog.dat"
    cat.write(path, format="ecsv")
    assert_catalogs_equal(PosteriorCatalog.read(path, format="ecsv"), cat)
    with pytest.raises(CatalogError, match=r"\.dat"):
        PosteriorCatalog.read(path)
    with pytest.raises(CatalogError, match="unknown catalog format"):
        cat.write(tmp_path / "x.h5", format="votable")


# ---------------------------------------------------------------------- validation
def _arrays(**overrides: object) -> dict:
    base = {
        "ids": ["a", "bad_one", "c"],
        "fields": ["F", "F", "F"],
        "log_mass": np.array([10.0, 10.5, 11.0, 9.0]),
        "z": np.array([1.0, 1.1, 1.2, 0.5]),
        "galaxy_index": np.array([0, 1, 1, 2]),
    }
    base.update(overrides)
    return base


@pytest.mark.parametrize("bad_value, word", [(np.nan, "NaN"), (np.inf, "infinite")])
@pytest.mark.parametrize("column", ["log_mass", "z", "log_sfr", "log_prior", "weight"])
def test_non_finite_sample_names_galaxy_and_column(
    bad_value: float, word: str, column: str
) -> None:
    values = np.ones(4)
    values[2] = bad_value
    kwargs = _arrays(**{column: values}) if column in ("log_mass", "z") else _arrays()
    if column not in ("log_mass", "z"):
        kwargs[column] = values
    with pytest.raises(CatalogError, match=rf"'{column}'.*{word}.*'bad_one'"):
        PosteriorCatalog.from_arrays(**kwargs)


def test_galaxy_without_samples_names_id() -> None:
    with pytest.raises(CatalogError, match="'c'.*no posterior samples"):
        PosteriorCatalog.from_arrays(**_arrays(galaxy_index=np.array([0, 1, 1, 1])))
    with pytest.raises(CatalogError, match="'b'.*no posterior samples"):
        PosteriorCatalog(
            ids=["a", "b"], fields=["F", "F"], offsets=[0, 2, 2], log_mass=[1, 2], z=[1, 2]
        )


def test_negative_and_all_zero_weights_name_id() -> None:
    with pytest.raises(CatalogError, match="negative.*'bad_one'"):
        PosteriorCatalog.from_arrays(**_arrays(), weight=np.array([1.0, 1.0, -0.1, 1.0]))
    with pytest.raises(CatalogError, match="zero for all samples.*'bad_one'"):
        PosteriorCatalog.from_arrays(**_arrays(), weight=np.array([1.0, 0.0, 0.0, 1.0]))
    # a single zero weight is fine
    PosteriorCatalog.from_arrays(**_arrays(), weight=np.array([1.0, 0.0, 1.0, 1.0]))


def test_missing_required_column_named() -> None:
    table = Table({"id": ["a"], "field": ["F"], "z": [1.0]})
    with pytest.raises(CatalogError, match="'log_mass'"):
        PosteriorCatalog.from_table(table)


def test_field_changing_within_galaxy_names_id() -> None:
    table = Table(
        {
            "id": ["a", "gal_x", "gal_x", "a"],
            "field": ["F1", "F1", "F2", "F1"],
            "log_mass": [1.0, 2.0, 3.0, 4.0],
            "z": [1.0, 1.0, 1.0, 1.0],
        }
    )
    with pytest.raises(CatalogError, match="'field'.*'gal_x'"):
        PosteriorCatalog.from_table(table)


def test_duplicate_ids_and_bad_offsets() -> None:
    with pytest.raises(CatalogError, match="not unique.*'a'"):
        PosteriorCatalog(
            ids=["a", "a"], fields=["F", "F"], offsets=[0, 1, 2], log_mass=[1, 2], z=[1, 2]
        )
    with pytest.raises(CatalogError, match="end at the number of samples"):
        PosteriorCatalog(ids=["a"], fields=["F"], offsets=[0, 1], log_mass=[1, 2], z=[1, 2])
    with pytest.raises(CatalogError, match="start at 0"):
        PosteriorCatalog(ids=["a"], fields=["F"], offsets=[1, 2], log_mass=[1, 2], z=[1, 2])
    with pytest.raises(CatalogError, match="'z' has 1 samples"):
        PosteriorCatalog(ids=["a"], fields=["F"], offsets=[0, 2], log_mass=[1, 2], z=[1])
    with pytest.raises(CatalogError, match="unknown galaxy id.*'zz'"):
        PosteriorCatalog.from_arrays(["a"], ["F"], [1.0], [1.0], sample_ids=["zz"])


# ---------------------------------------------------------------------- operations
def test_subset_mask_and_indices(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    sub = cat.subset(np.array([False, True, True, False]))
    np.testing.assert_array_equal(sub.ids, ["g2", "g10"])
    np.testing.assert_array_equal(sub.n_samples, [1, 5])
    np.testing.assert_array_equal(sub.log_mass, cat.log_mass[3:9])
    np.testing.assert_array_equal(sub.weight, cat.weight[3:9])
    sub2 = cat.subset([3, 0])
    np.testing.assert_array_equal(sub2.ids, ["g1", "g7"])
    np.testing.assert_array_equal(sub2.z, np.concatenate([cat.z[9:11], cat.z[0:3]]))
    np.testing.assert_array_equal(sub2.log_sfr, np.concatenate([cat.log_sfr[9:], cat.log_sfr[:3]]))


def test_sample_slice_against_per_galaxy_slicing(rng: np.random.Generator) -> None:
    """sample_slice(start, stop) equals slicing each galaxy's samples one by one."""
    cat = make_catalog(rng).subset([0, 2])  # 3 and 5 samples
    part = cat.sample_slice(1, 3)
    gi = [np.arange(cat.offsets[i], cat.offsets[i + 1])[1:3] for i in range(cat.n_galaxies)]
    expected = PosteriorCatalog.from_arrays(
        cat.ids, cat.fields, *(np.concatenate([x[g] for g in gi]) for x in (cat.log_mass, cat.z)),
        galaxy_index=np.repeat(np.arange(cat.n_galaxies), 2),
        **{k: np.concatenate([getattr(cat, k)[g] for g in gi])
           for k in ("log_sfr", "log_prior", "weight")}, meta=cat.meta)
    assert_catalogs_equal(part, expected)
    with pytest.raises(CatalogError, match="galaxy 'g7' has 3 samples, fewer than stop=4"):
        cat.sample_slice(0, 4)
    with pytest.raises(CatalogError, match="start < stop"):
        cat.sample_slice(2, 2)


def test_normalized_log_weights_match_numpy(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    expected = np.concatenate(
        [np.log(w / w.sum()) for w in np.split(cat.weight, cat.offsets[1:-1])]
    )
    np.testing.assert_allclose(cat.normalized_log_weights(), expected, rtol=1e-12)
    # huge dynamic range stays finite (stable log-sum-exp)
    big = PosteriorCatalog.from_arrays(
        ["a"],
        ["F"],
        np.zeros(3),
        np.ones(3),
        galaxy_index=np.zeros(3, dtype=int),
        weight=np.array([1e-300, 1e-300, 2e-300]),
    )
    np.testing.assert_allclose(big.normalized_log_weights(), np.log([0.25, 0.25, 0.5]))
    unweighted = PosteriorCatalog.from_arrays(**_arrays())
    np.testing.assert_allclose(
        unweighted.normalized_log_weights(), [0.0, -np.log(2), -np.log(2), 0.0]
    )


def test_effective_sample_size(rng: np.random.Generator) -> None:
    cat = make_catalog(rng)
    expected = [w.sum() ** 2 / (w**2).sum() for w in np.split(cat.weight, cat.offsets[1:-1])]
    np.testing.assert_allclose(cat.effective_sample_size(), expected, rtol=1e-12)
    unweighted = PosteriorCatalog.from_arrays(**_arrays())
    np.testing.assert_array_equal(unweighted.effective_sample_size(), [1.0, 2.0, 1.0])


def test_point_estimates() -> None:
    cat = PosteriorCatalog.from_arrays(
        ["a", "b"],
        ["F", "G"],
        np.array([3.0, 1.0, 2.0, 10.0, 40.0, 20.0, 30.0]),
        np.array([0.3, 0.1, 0.2, 1.0, 4.0, 2.0, 3.0]),
        galaxy_index=np.array([0, 0, 0, 1, 1, 1, 1]),
        log_prior=np.zeros(7),
        meta={"k": 1},
    )
    pe = cat.point_estimates()
    np.testing.assert_allclose(pe.log_mass, [2.0, 25.0])  # equals np.median
    np.testing.assert_allclose(pe.z, [0.2, 2.5])
    np.testing.assert_array_equal(pe.n_samples, [1, 1])
    assert pe.log_prior is None and "point_estimates" in pe.meta and pe.meta["k"] == 1
    # weights: interpolation of the mid-point weighted CDF at 0.5; zero weights are ignored
    weights = np.array([1.0, 1.0, 10.0, 0.0])
    w = PosteriorCatalog.from_arrays(
        ["a"],
        ["F"],
        np.array([1.0, 2.0, 3.0, 100.0]),
        np.ones(4),
        galaxy_index=np.zeros(4, dtype=int),
        weight=weights,
    )
    mid_cdf = (np.cumsum(weights[:3]) - 0.5 * weights[:3]) / weights.sum()
    expected = np.interp(0.5, mid_cdf, [1.0, 2.0, 3.0])
    assert expected == pytest.approx(2.0 + 0.375 / (7 / 12 - 1.5 / 12))
    np.testing.assert_allclose(w.point_estimates().log_mass, [expected], rtol=1e-12)


def test_interim_priors(rng: np.random.Generator) -> None:
    cat = make_catalog(rng, sfr=False)
    flat = cat.with_interim_prior(FlatPrior())
    np.testing.assert_array_equal(flat.log_prior, np.zeros(cat.z.size))
    fn = CallablePrior(lambda m, z: -0.5 * (m - 10.0) ** 2 + np.log1p(z))
    got = cat.with_interim_prior(fn).log_prior
    np.testing.assert_allclose(got, -0.5 * (cat.log_mass - 10.0) ** 2 + np.log1p(cat.z))
    sfr_cat = make_catalog(rng, sfr=True)
    # a prior over (log M, log SFR, z): log_prior holds its (log M, z) marginal, the one the
    # mass function divides out, and log_prior_sfr the full density, the flow's
    fn3 = CallablePrior(lambda m, z, s=None: m + z + (0.0 if s is None else -0.5 * s**2))
    with3 = sfr_cat.with_interim_prior(fn3)
    np.testing.assert_allclose(with3.log_prior, sfr_cat.log_mass + sfr_cat.z)
    np.testing.assert_allclose(with3.log_prior_sfr,
                               sfr_cat.log_mass + sfr_cat.z - 0.5 * sfr_cat.log_sfr**2)
    np.testing.assert_array_equal(with3.log_prior_sfr_or_zero(), with3.log_prior_sfr)
    # a varying (log M, z) prior without the 3-D density: the flow cannot divide it out
    only2 = dataclasses.replace(with3, log_prior_sfr=None)
    with pytest.raises(CatalogError, match="log_prior_sfr"):
        only2.log_prior_sfr_or_zero()
    # a prior constant within each galaxy is flat for it
    const = dataclasses.replace(with3, log_prior=np.repeat(np.arange(with3.n_galaxies, dtype=float),
                                                             with3.n_samples), log_prior_sfr=None)
    assert not const.varying_log_prior().any()
    np.testing.assert_array_equal(const.log_prior_sfr_or_zero(), np.zeros(const.z.size))
    no_prior = PosteriorCatalog.from_arrays(**_arrays())
    np.testing.assert_array_equal(no_prior.log_prior_or_zero(), np.zeros(4))


def test_kde_prior_normalised_and_matches_scipy(rng: np.random.Generator) -> None:
    from scipy.stats import gaussian_kde

    m = rng.normal(10.0, 0.8, 800)
    z = rng.gamma(4.0, 0.4, 800)
    prior = KDEPrior.from_draws(m, z)
    ref = gaussian_kde(np.vstack([m, z]))
    mg, zg = np.meshgrid(np.linspace(5.0, 15.0, 301), np.linspace(-2.0, 8.0, 301), indexing="ij")
    dens = np.exp(prior.log_density(mg, zg))
    assert dens.shape == mg.shape
    integral = np.trapezoid(np.trapezoid(dens, zg[0], axis=1), mg[:, 0])
    assert integral == pytest.approx(1.0, abs=2e-3)
    pts = np.vstack([m[:50], z[:50]])
    np.testing.assert_allclose(prior.log_density(m[:50], z[:50]), ref.logpdf(pts), rtol=1e-12)
    cat = make_catalog(rng, sfr=False).with_interim_prior(prior)
    np.testing.assert_allclose(
        cat.log_prior, ref.logpdf(np.vstack([cat.log_mass, cat.z])), rtol=1e-12
    )
    prior3 = KDEPrior.from_draws(m, z, rng.normal(0.0, 1.0, 800), bw_method=0.3)
    assert prior3.kde.d == 3
    with pytest.raises(CatalogError, match="log_sfr"):
        prior3.log_density(m, z)


def test_catalog_module_imports_no_jax_or_torch() -> None:
    code = (
        "import sys, popmodel.catalog; "
        "assert 'jax' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
