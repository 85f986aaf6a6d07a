"""One cosmology and one IMF: defaults, catalogue records, and the conversion before a fit."""

import dataclasses
import json
import math

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
import pytest

from popmodel.catalog import CatalogError, PosteriorCatalog
from popmodel.conventions import (
    IMF_FACTORS,
    ConventionError,
    ConventionMismatchError,
    conform_catalog,
    imf_shift,
)
from popmodel.cosmology import (
    DEFAULT_COSMOLOGY,
    DEFAULT_IMF,
    cosmology_from_config,
    cosmology_from_record,
    cosmology_record,
    same_cosmology,
)
from popmodel.survey import Survey, SurveyError
from popmodel.testing import deep_survey

H70 = apc.FlatLambdaCDM(H0=70.0, Om0=0.3, Tcmb0=0.0)


def _survey(cosmology=None, imf="chabrier", area=40.0) -> Survey:
    s = deep_survey(1, area, z_min=0.5, z_max=2.5, mass_error_dex=0.1, z_error=0.0)
    return dataclasses.replace(s, cosmology=cosmology, imf=imf)


def _catalog(z=(1.0,), cosmology=H70, imf="chabrier", sfr=True, n=3) -> PosteriorCatalog:
    """One galaxy per z, n samples each at that z, with a point estimate at obs_z."""
    z = np.asarray(z, float)
    g = z.size
    zs = np.repeat(z, n) + np.tile(np.linspace(-0.01, 0.01, n) if n > 1 else [0.0], g)
    meta = {} if cosmology is None else {"cosmology": cosmology_record(cosmology)}
    if imf is not None:
        meta["imf"] = imf
    return PosteriorCatalog(
        ids=[f"g{i}" for i in range(g)], fields=["F0"] * g,
        offsets=np.arange(g + 1) * n, log_mass=np.full(g * n, 10.0), z=zs,
        log_sfr=np.full(g * n, 1.0) if sfr else None, log_prior=np.full(g * n, -1.5),
        obs_log_mass=np.full(g, 10.0), obs_z=z, meta=meta,
    )


def _dl_shift(src, dst, z):
    z = np.asarray(z, float)
    return 2.0 * np.log10((dst.luminosity_distance(z) / src.luminosity_distance(z)).to_value(
        u.dimensionless_unscaled))


# ------------------------------------------------------------------ the one default


def test_default_is_one_object_everywhere(tmp_path):
    assert DEFAULT_COSMOLOGY is apc.WMAP9
    assert DEFAULT_IMF == "chabrier"
    assert cosmology_from_config(None) is DEFAULT_COSMOLOGY
    s = _survey()
    assert s.cosmology is DEFAULT_COSMOLOGY and s.imf == DEFAULT_IMF
    # the command line reads the survey from TOML: without [cosmology] / imf, the defaults
    d = s.to_dict()
    d.pop("cosmology")
    d.pop("imf")
    import tomli_w

    path = tmp_path / "s.toml"
    path.write_text(tomli_w.dumps(d))
    read = Survey.read(path)
    assert read.cosmology is DEFAULT_COSMOLOGY and read.imf == DEFAULT_IMF
    # the mocks record the default
    from popmodel.flow.mock import sequence_mock
    from popmodel.mock import draw_mock

    cat, _ = draw_mock(s, seed=0, n_samples=2)
    assert cosmology_from_record(cat.meta["cosmology"]) is DEFAULT_COSMOLOGY
    assert cat.meta["imf"] == DEFAULT_IMF
    fcat, fsurvey, _ = sequence_mock(20, n_samples=2)
    assert cosmology_from_record(fcat.meta["cosmology"]) is DEFAULT_COSMOLOGY
    assert fsurvey.cosmology is DEFAULT_COSMOLOGY and fcat.meta["imf"] == DEFAULT_IMF


def test_percentiles_default_is_the_same_object():
    from popmodel.percentiles import catalog_from_percentiles

    cat, _ = catalog_from_percentiles(["a"], "F0", np.array([1.0]), np.array([0.9]),
                                      np.array([1.1]), np.array([10.0]), mass_error_dex=0.1,
                                      n_samples=4)
    got = cosmology_from_record(cat.meta["cosmology"])
    if not same_cosmology(got, DEFAULT_COSMOLOGY):
        pytest.skip("catalog_from_percentiles does not default to DEFAULT_COSMOLOGY yet")
    assert got is DEFAULT_COSMOLOGY


def test_threedhst_records_its_conventions():
    from popmodel.datasets import THREEDHST_IMF, catalog_from_3dhst_table, load_3dhst_table

    cat, _ = catalog_from_3dhst_table(load_3dhst_table()[:20], n_samples=2)
    assert same_cosmology(cosmology_from_record(cat.meta["cosmology"]), H70)
    assert cat.meta["imf"] == THREEDHST_IMF == "chabrier"


# ------------------------------------------------------------------ records and the survey


@pytest.mark.parametrize("cosmo", [apc.WMAP9, apc.Planck18, H70,
                                   apc.LambdaCDM(H0=68.0, Om0=0.3, Ode0=0.65, Tcmb0=2.7)])
def test_cosmology_record_round_trip_through_json(cosmo):
    rec = json.loads(json.dumps(cosmology_record(cosmo)))
    back = cosmology_from_record(rec)
    assert same_cosmology(back, cosmo) and type(back) is type(cosmo)
    if cosmo.name in apc.realizations.available:
        assert back is cosmo


def test_bad_records_name_the_key():
    with pytest.raises(ValueError, match=r"meta\['cosmology'\].*WMAP9.*differ"):
        cosmology_from_record({"name": "WMAP9", "H0": 70.0, "Om0": 0.3}, "meta['cosmology']")
    cat = dataclasses.replace(_catalog(), meta={"cosmology": {"name": "nope"}, "imf": "chabrier"})
    with pytest.raises(ConventionError, match=r"meta\['cosmology'\]"):
        conform_catalog(cat, _survey())
    cat = dataclasses.replace(_catalog(), meta={"cosmology": cosmology_record(H70), "imf": "top"})
    with pytest.raises(ConventionError, match=r"meta\['imf'\] = 'top'"):
        conform_catalog(cat, _survey())


def test_survey_imf_read_written_and_validated(tmp_path):
    s = _survey(imf="Salpeter")
    assert s.imf == "salpeter"
    path = tmp_path / "s.toml"
    s.write(path)
    assert 'imf = "salpeter"' in path.read_text()
    assert Survey.read(path).imf == "salpeter"
    d = s.to_dict()
    d["imf"] = "diet"
    with pytest.raises(SurveyError, match=r"imf = 'diet'.*chabrier"):
        Survey.from_dict(d)
    with pytest.raises(SurveyError, match="imf"):
        _survey(imf=3)


# ------------------------------------------------------------------ the conversion


def test_cosmology_shift_matches_astropy_at_z1():
    cat = _catalog(z=(1.0,), n=1)
    out, notes = conform_catalog(cat, _survey())
    want = _dl_shift(H70, apc.WMAP9, 1.0)
    assert abs(want) > 5e-3  # a real shift, not a no-op
    assert out.log_mass[0] - 10.0 == pytest.approx(want, abs=1e-6)
    assert out.obs_log_mass[0] - 10.0 == pytest.approx(want, abs=1e-6)
    assert out.log_sfr[0] - 1.0 == pytest.approx(want, abs=1e-6)
    np.testing.assert_array_equal(out.z, cat.z)
    np.testing.assert_array_equal(out.log_prior, cat.log_prior)  # Jacobian 1
    assert len(notes) == 1 and "cosmology" in notes[0] and "converted" in notes[0]
    assert cosmology_from_record(out.meta["cosmology"]) is apc.WMAP9
    assert out.meta["converted"]["cosmology"]["action"] == "converted"
    assert out.meta["converted"]["notes"] == notes
    assert "converted" not in cat.meta  # the input is left alone


def test_each_sample_moves_at_its_own_redshift():
    z = np.array([0.3, 0.8, 1.5, 2.9, 5.0])
    cat = _catalog(z=z, n=3)
    out, _ = conform_catalog(cat, _survey())
    np.testing.assert_allclose(out.log_mass - cat.log_mass, _dl_shift(H70, apc.WMAP9, cat.z),
                               atol=1e-8, rtol=0)
    np.testing.assert_allclose(out.obs_log_mass - 10.0, _dl_shift(H70, apc.WMAP9, z),
                               atol=1e-8, rtol=0)


def test_round_trip_returns_the_original():
    cat = _catalog(z=(0.4, 1.0, 2.2), imf="salpeter")
    there, _ = conform_catalog(cat, _survey())
    back, notes = conform_catalog(there, _survey(cosmology=H70, imf="salpeter"))
    assert len(notes) == 2
    for name in ("log_mass", "log_sfr", "obs_log_mass", "z", "log_prior"):
        np.testing.assert_allclose(getattr(back, name), getattr(cat, name), atol=1e-9, rtol=0)
    assert back.meta["converted"]["previous"]["imf"]["from"] == "salpeter"


@pytest.mark.parametrize("src,dst", [("salpeter", "chabrier"), ("salpeter", "kroupa"),
                                     ("kroupa", "chabrier"), ("chabrier", "salpeter")])
def test_imf_shift_matches_the_table(src, dst):
    cat = _catalog(cosmology=apc.WMAP9, imf=src)
    out, notes = conform_catalog(cat, _survey(imf=dst))
    dm = math.log10(IMF_FACTORS[dst]["mass"] / IMF_FACTORS[src]["mass"])
    ds = math.log10(IMF_FACTORS[dst]["sfr"] / IMF_FACTORS[src]["sfr"])
    np.testing.assert_allclose(out.log_mass - cat.log_mass, dm, atol=1e-12)
    np.testing.assert_allclose(out.obs_log_mass - cat.obs_log_mass, dm, atol=1e-12)
    np.testing.assert_allclose(out.log_sfr - cat.log_sfr, ds, atol=1e-12)
    assert imf_shift(src, dst) == pytest.approx(dm)
    assert len(notes) == 1 and src in notes[0] and dst in notes[0]


def test_madau_dickinson_table():
    assert IMF_FACTORS["chabrier"]["mass"] == 0.61 and IMF_FACTORS["kroupa"]["mass"] == 0.66
    assert imf_shift("salpeter", "chabrier") == pytest.approx(math.log10(0.61))


def test_convert_false_names_both():
    cat = _catalog(imf="kroupa")
    with pytest.raises(ConventionMismatchError) as err:
        conform_catalog(cat, _survey(), convert=False)
    msg = str(err.value)
    assert "WMAP9" in msg and "H0=70" in msg and "'kroupa'" in msg and "'chabrier'" in msg
    assert isinstance(err.value, CatalogError)


def test_identical_conventions_return_the_same_object():
    cat = _catalog(cosmology=apc.WMAP9)
    out, notes = conform_catalog(cat, _survey())
    assert out is cat and notes == []
    # the same cosmology under another name is the same cosmology
    cat = _catalog(cosmology=H70)
    out, notes = conform_catalog(cat, _survey(cosmology=apc.FlatLambdaCDM(70, 0.3, name="x")),
                                 convert=False)
    assert out is cat and notes == []


def test_missing_record_is_assumed_with_a_note():
    cat = _catalog(cosmology=None, imf=None)
    out, notes = conform_catalog(cat, _survey(), convert=False)
    np.testing.assert_array_equal(out.log_mass, cat.log_mass)
    assert len(notes) == 2
    assert "records no cosmology" in notes[0] and "assumed" in notes[0]
    assert "records no IMF" in notes[1]
    assert out.meta["converted"]["cosmology"]["action"] == "assumed the survey's"
    assert cosmology_from_record(out.meta["cosmology"]) is apc.WMAP9


# ------------------------------------------------------------------ through fit_smf


def _log10_rho(fit, zs=(1.0, 2.0)):
    from popmodel.smf.derived import log10_rho_star

    p = fit.map.continuity_params(fit.prior.anchor_z)
    return np.array([float(log10_rho_star(p, z)) for z in zs])


def test_fit_smf_converts_the_catalogue():
    from popmodel.mock import draw_mock
    from popmodel.smf.fit import FitConfig, fit_smf

    survey = _survey(area=10.0)  # WMAP9; ~260 galaxies
    cat, _ = draw_mock(survey, seed=3, n_samples=4, moment_matched=True)
    # the same galaxies with masses in FlatLambdaCDM(70, 0.3), moved by astropy directly
    d_s = _dl_shift(apc.WMAP9, H70, cat.z)
    d_o = _dl_shift(apc.WMAP9, H70, cat.obs_z)
    meta = dict(cat.meta, cosmology=cosmology_record(H70))
    cat70 = dataclasses.replace(cat, log_mass=cat.log_mass + d_s,
                                obs_log_mass=cat.obs_log_mass + d_o, meta=meta)
    cfg = FitConfig(method="laplace", n_bootstrap=0, compression_draws=0, num_samples=50,
                    num_chains=1, progress_bar=False)
    ref = fit_smf(cat, survey, cfg, log=lambda s: None)
    lines = []
    conv = fit_smf(cat70, survey, cfg, log=lines.append)
    assert any("converted to the survey's" in line for line in lines)
    assert conv.data.catalog.meta["converted"]["cosmology"]["action"] == "converted"
    # negative control: the same catalogue without its record is taken as WMAP9, unconverted
    bare = dataclasses.replace(cat70, meta={k: v for k, v in meta.items() if k != "cosmology"})
    lines_bare = []
    wrong = fit_smf(bare, survey, cfg, log=lines_bare.append)
    assert any("records no cosmology" in line for line in lines_bare)
    r_ref, r_conv, r_wrong = _log10_rho(ref), _log10_rho(conv), _log10_rho(wrong)
    # the same galaxies: equal to the optimiser's precision (found: 1e-7 dex); unconverted,
    # rho_* moves by ~0.015 dex (the mass shift, 0.010-0.022 dex over 0.5 < z < 2.5)
    np.testing.assert_allclose(r_conv, r_ref, atol=1e-3)
    assert np.min(np.abs(r_wrong - r_ref)) > 5e-3


def test_fit_sfs_records_the_notes_in_its_warnings():
    from popmodel.flow.fit import SFSConfig, fit_sfs
    from popmodel.flow.mock import sequence_mock
    from popmodel.flow.train import TrainConfig

    cat, survey, _ = sequence_mock(200, n_samples=4, log_mass_limit=9.0, seed=1)
    assert survey.cosmology is DEFAULT_COSMOLOGY
    cat = dataclasses.replace(cat, meta=dict(cat.meta, cosmology=cosmology_record(H70),
                                             imf="salpeter"))
    cfg = SFSConfig(n_members=1, bootstrap=False,
                    train=TrainConfig(max_epochs=2, progress=False, seed=5))
    fit = fit_sfs(cat, survey, cfg)
    assert any(w.startswith("cosmology:") and "converted" in w for w in fit.warnings)
    assert any(w.startswith("IMF:") and "salpeter" in w for w in fit.warnings)
