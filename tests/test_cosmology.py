"""Tests for popmodel.cosmology: tabulated volumes against astropy, and the config round trip."""

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
import pytest

from popmodel.cosmology import VolumeTable, cosmology_from_config, cosmology_to_config

COSMOLOGIES = {"WMAP9": apc.WMAP9, "flat70_0.3": apc.FlatLambdaCDM(H0=70.0, Om0=0.3)}


@pytest.fixture(scope="module", params=list(COSMOLOGIES))
def cosmo_and_table(request) -> tuple[apc.Cosmology, VolumeTable]:
    c = COSMOLOGIES[request.param]
    return c, VolumeTable.build(c)


@pytest.mark.parametrize(
    ("z_lo", "z_hi"),
    [(0.2, 0.8), (0.5, 3.0), (0.2, 3.0), (1.0, 1.0037), (0.65, 2.1), (2.5, 11.9), (0.05, 0.3)],
)
def test_volume_vs_astropy(cosmo_and_table, z_lo: float, z_hi: float) -> None:
    cosmo, vt = cosmo_and_table
    area_sr = float((172.0 * u.arcmin**2).to_value(u.sr))
    full_sky = (cosmo.comoving_volume(z_hi) - cosmo.comoving_volume(z_lo)).to_value(u.Mpc**3)
    expected = full_sky * area_sr / (4.0 * np.pi)
    np.testing.assert_allclose(vt.volume(z_lo, z_hi, area_sr), expected, rtol=1e-5)


def test_volume_is_additive_and_linear_in_area(cosmo_and_table) -> None:
    _, vt = cosmo_and_table
    v = vt.volume(0.3, 2.7, 1e-4)
    np.testing.assert_allclose(
        vt.volume(0.3, 1.234, 1e-4) + vt.volume(1.234, 2.7, 1e-4), v, rtol=1e-6
    )
    np.testing.assert_allclose(vt.volume(0.3, 2.7, 3e-4), 3 * v, rtol=1e-14)


def test_log_dvdz_vs_astropy_in_model_range(cosmo_and_table) -> None:
    cosmo, vt = cosmo_and_table
    z = np.random.default_rng(3).uniform(0.2, 12.0, 500)
    expected = cosmo.differential_comoving_volume(z).to_value(u.Mpc**3 / u.sr)
    np.testing.assert_allclose(np.exp(vt.log_dvdz_at(z)), expected, rtol=1e-4)


def test_log_dvdz_vs_astropy_low_redshift(cosmo_and_table) -> None:
    """The class promises ~1e-5 relative; the model's support is z > 0 (fields may start at z~0.02)."""
    cosmo, vt = cosmo_and_table
    z = np.random.default_rng(4).uniform(0.02, 0.2, 200)
    expected = cosmo.differential_comoving_volume(z).to_value(u.Mpc**3 / u.sr)
    np.testing.assert_allclose(np.exp(vt.log_dvdz_at(z)), expected, rtol=1e-4)


def test_luminosity_distance_table(cosmo_and_table) -> None:
    cosmo, vt = cosmo_and_table
    z = np.array([0.3, 1.0, 2.5, 6.0])
    got = 10.0 ** np.interp(z, vt.z, vt.log10_dl)
    np.testing.assert_allclose(got, cosmo.luminosity_distance(z).to_value(u.Mpc), rtol=1e-4)


# --------------------------------------------------------------------- config
def test_cosmology_from_config_names_and_defaults() -> None:
    assert cosmology_from_config(None) is apc.WMAP9
    assert cosmology_from_config("WMAP9") is apc.WMAP9
    assert cosmology_from_config({"name": "Planck18"}) is apc.Planck18
    c = apc.FlatLambdaCDM(H0=68.0, Om0=0.31)
    assert cosmology_from_config(c) is c


def test_cosmology_from_config_h0_om0() -> None:
    c = cosmology_from_config({"H0": 70.0, "Om0": 0.3})
    assert isinstance(c, apc.FlatLambdaCDM)
    assert c.H0.to_value(u.km / u.s / u.Mpc) == 70.0
    assert c.Om0 == 0.3
    assert c.Tcmb0.to_value(u.K) == 0.0
    ref = apc.FlatLambdaCDM(H0=70.0, Om0=0.3)
    z = np.array([0.5, 2.0])
    np.testing.assert_allclose(
        c.comoving_distance(z).value, ref.comoving_distance(z).value, rtol=1e-12
    )
    assert cosmology_from_config({"H0": 70, "Om0": 0.3, "Tcmb0": 2.7}).Tcmb0.to_value(u.K) == 2.7


def test_cosmology_from_config_errors() -> None:
    with pytest.raises(ValueError, match="'WMAP99'"):
        cosmology_from_config("WMAP99")
    with pytest.raises(ValueError, match="Om0"):
        cosmology_from_config({"H0": 70.0})
    with pytest.raises(ValueError, match="H0"):
        cosmology_from_config({"Om0": 0.3})
    with pytest.raises(ValueError, match="not physical"):
        cosmology_from_config({"H0": -70.0, "Om0": 0.3})
    with pytest.raises(ValueError, match="not physical"):
        cosmology_from_config({"H0": 70.0, "Om0": 1.5})


@pytest.mark.parametrize(
    "cosmo",
    [
        apc.WMAP9,
        apc.Planck18,
        apc.FlatLambdaCDM(H0=70.0, Om0=0.3),
        apc.FlatLambdaCDM(H0=67.0, Om0=0.32, Tcmb0=2.725, name="mine"),
    ],
)
def test_cosmology_to_config_round_trip(cosmo: apc.Cosmology) -> None:
    cfg = cosmology_to_config(cosmo)
    back = cosmology_from_config(cfg)
    if getattr(cosmo, "name", None) in apc.realizations.available:
        assert cfg == {"name": cosmo.name}
        assert back is getattr(apc, cosmo.name)
    z = np.array([0.1, 1.0, 3.0, 8.0])
    np.testing.assert_allclose(
        back.differential_comoving_volume(z).value,
        cosmo.differential_comoving_volume(z).value,
        rtol=1e-12,
    )
    assert back.H0 == cosmo.H0
    assert back.Om0 == cosmo.Om0


@pytest.mark.parametrize(
    "cosmo",
    [apc.LambdaCDM(H0=70.0, Om0=0.3, Ode0=0.6), apc.FlatwCDM(H0=70.0, Om0=0.3, w0=-0.8)],
    ids=["nonflat", "wCDM"],
)
def test_cosmology_to_config_does_not_silently_change_cosmology(cosmo: apc.Cosmology) -> None:
    """A cosmology the dict form cannot express must raise, not round-trip into another one."""
    try:
        cfg = cosmology_to_config(cosmo)
    except ValueError:
        return
    back = cosmology_from_config(cfg)
    z = np.array([0.5, 2.0])
    np.testing.assert_allclose(
        back.differential_comoving_volume(z).value,
        cosmo.differential_comoving_volume(z).value,
        rtol=1e-6,
    )
