r"""Published comparison data packaged with popmodel, on one IMF (Chabrier) and one cosmology.

Every loader returns values for a Chabrier (2003) IMF, converted to the cosmology it is given
(WMAP9, popmodel's default, unless said otherwise; :func:`tomczak2014_smf` keeps the paper's
cosmology when given none, for backward compatibility). The files live in ``popmodel/data``
with their provenance in ``popmodel/data/README.md``.

**Cosmology.** Masses, star-formation rates and luminosities of galaxies at redshift z scale as
:math:`D_L^2`; a number per comoving volume scales as the inverse of the volume surveyed. So a
quantity measured in cosmology A moves to cosmology B as

- mass function: :math:`\log M_B = \log M_A + 2\log_{10}(D_{L,B}/D_{L,A})` and
  :math:`\Phi_B = \Phi_A\,(dV_A/dz)/(dV_B/dz)` (per dex, so unchanged by the mass shift);
- luminosity-like densities (SFRD, :math:`\rho_*`): :math:`\rho_B = \rho_A\,
  (D_{L,B}/D_{L,A})^2\,V_A/V_B`, with :math:`V` the comoving volume of the redshift bin
  (:math:`dV/dz` for a single redshift) and :math:`D_L` at the bin centre;
- a star-forming sequence (log SFR at fixed log M): both axes move by :math:`2\log_{10}
  (D_{L,B}/D_{L,A})`.

All ratios come from astropy at the bin's redshift, never from powers of h alone: with the same
:math:`\Omega_m` they reduce to :math:`\Phi\propto h^3`, :math:`M\propto h^{-2}`,
:math:`\rho\propto h`, but they do not when :math:`\Omega_m` differs (e.g. 0.3 vs WMAP9's 0.2865;
the difference grows with z).

**IMF.** Conversions to Chabrier (2003) are multiplicative, following Madau & Dickinson (2014,
ARA&A 52, 415, section 3): Salpeter (0.1-100 Msun) SFR x 0.63 and stellar mass x 0.61;
Kroupa (2001) stellar mass -0.04 dex (the offset used by the shark and
velociraptor comparison-data converters, ``M_Kroupa = M_Chabrier + 0.04 dex``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
from scipy.integrate import quad

__all__ = [
    "B13_COSMOLOGY",
    "B13_VARIANTS",
    "IMF_TO_CHABRIER_DEX",
    "LEJA2022_TABLE1",
    "LITERATURE_H70",
    "UNIVERSEMACHINE_COSMOLOGY",
    "DensityPoints",
    "SFSCurve",
    "SMFPoints",
    "as_function",
    "behroozi2013_sfrd",
    "behroozi2019_csfrd",
    "behroozi2019_smf",
    "convert_density_cosmology",
    "convert_sfs_cosmology",
    "convert_smf_cosmology",
    "driver2018_rho_star",
    "driver2018_sfrd",
    "ilbert2013_smf",
    "leja2022_coefficients",
    "leja2022_sfs",
    "leja2022_sfs_curves",
    "madau_dickinson2014_rho_star",
    "madau_dickinson2014_sfrd",
    "md14_rho_star_points",
    "md14_sfrd_points",
    "muzzin2013_rho_star",
    "muzzin2013_smf",
    "tomczak2014_rho_star",
    "tomczak2014_smf",
]

#: The "concordance" cosmology most survey papers assume: H0=70, Om0=0.3, flat.
LITERATURE_H70 = apc.FlatLambdaCDM(H0=70.0, Om0=0.3, name="H0=70, Om0=0.3")
TOMCZAK_COSMOLOGY = LITERATURE_H70
#: Bolshoi-Planck / MultiDark-Planck cosmology, on which UniverseMachine DR1 runs (h=0.6777).
UNIVERSEMACHINE_COSMOLOGY = apc.FlatLambdaCDM(H0=67.77, Om0=0.307115, name="Bolshoi-Planck")

#: log10 factor taking (stellar mass, SFR) from an IMF to Chabrier (2003); see module doc.
IMF_TO_CHABRIER_DEX: dict[str, dict[str, float]] = {
    "chabrier": {"mass": 0.0, "sfr": 0.0},
    "salpeter": {"mass": float(np.log10(0.61)), "sfr": float(np.log10(0.63))},
    "kroupa": {"mass": -0.04},
}

_TOMCZAK_BINS = [(0.5, 0.75), (0.75, 1.0), (1.0, 1.25), (1.25, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0)]


def _default_cosmology(cosmology: apc.Cosmology | str | None) -> apc.Cosmology:
    from popmodel.cosmology import cosmology_from_config

    return cosmology_from_config(cosmology)


def _path(name: str) -> str:
    return str(resources.files("popmodel") / "data" / "literature" / name)


def _imf_dex(imf: str, kind: str) -> float:
    try:
        return IMF_TO_CHABRIER_DEX[imf.lower()][kind]
    except KeyError:
        raise ValueError(f"no {kind} conversion from IMF {imf!r} to Chabrier is defined "
                         f"(known: {sorted(IMF_TO_CHABRIER_DEX)})") from None


def _from_salpeter(imf: str, kind: str) -> float:
    """log10 factor from a Salpeter quantity to the requested output IMF."""
    if imf.lower() == "salpeter":
        return 0.0
    if imf.lower() == "chabrier":
        return _imf_dex("salpeter", kind)
    raise ValueError(f"output IMF must be 'chabrier' or 'salpeter', not {imf!r}")


# --------------------------------------------------------------------------------------------
# containers


@dataclass(frozen=True)
class SMFPoints:
    """Binned mass-function points [log10 Msun, log10 Mpc^-3 dex^-1, dex errors]."""

    label: str
    z_lo: float
    z_hi: float
    log_mass: np.ndarray
    log_phi: np.ndarray
    err_hi: np.ndarray
    err_lo: np.ndarray


@dataclass(frozen=True)
class DensityPoints:
    """A cosmic density against redshift (points or a curve), Chabrier IMF.

    Attributes:
        label: source, for legends.
        quantity: ``"sfrd"`` [log10 Msun yr^-1 Mpc^-3] or ``"rho_star"`` [log10 Msun Mpc^-3].
        z: representative redshift of each point.
        z_lo, z_hi: redshift bin edges (equal to ``z`` for a single redshift).
        log_value: log10 of the density.
        err_hi, err_lo: 1-sigma errors [dex], positive (zero where none is quoted).
        note: conversions applied.
    """

    label: str
    quantity: str
    z: np.ndarray
    z_lo: np.ndarray
    z_hi: np.ndarray
    log_value: np.ndarray
    err_hi: np.ndarray
    err_lo: np.ndarray
    note: str = ""


@dataclass(frozen=True)
class SFSCurve:
    """A star-forming-sequence curve set at one redshift: log SFR [Msun/yr] against log M."""

    label: str
    z: float
    log_mass: np.ndarray
    ridge: np.ndarray
    mean: np.ndarray
    median: np.ndarray
    q16: np.ndarray
    q84: np.ndarray


# --------------------------------------------------------------------------------------------
# cosmology conversions


def convert_smf_cosmology(
    log_mass: np.ndarray, log_phi: np.ndarray, z: float, src: apc.Cosmology, dst: apc.Cosmology
) -> tuple[np.ndarray, np.ndarray]:
    """Move binned mass-function points from cosmology ``src`` to ``dst`` (see module doc)."""
    dl = (dst.luminosity_distance(z) / src.luminosity_distance(z)).to_value(u.one)
    dv = (src.differential_comoving_volume(z) / dst.differential_comoving_volume(z)).to_value(u.one)
    return np.asarray(log_mass) + 2.0 * np.log10(dl), np.asarray(log_phi) + np.log10(dv)


def convert_density_cosmology(
    log_value: np.ndarray,
    z_lo: np.ndarray,
    z_hi: np.ndarray,
    src: apc.Cosmology,
    dst: apc.Cosmology,
) -> np.ndarray:
    r"""Move luminosity-like densities (SFRD, :math:`\rho_*`) from ``src`` to ``dst``.

    :math:`\rho_B = \rho_A (D_{L,B}/D_{L,A})^2 V_A/V_B` with :math:`D_L` at the bin centre and
    :math:`V` the comoving volume between ``z_lo`` and ``z_hi`` (:math:`dV/dz` where they are
    equal).

    Args:
        log_value: log10 densities in cosmology ``src``.
        z_lo, z_hi: bin edges (broadcast against ``log_value``).
        src, dst: astropy cosmologies.

    Returns:
        log10 densities in cosmology ``dst``.
    """
    z_lo, z_hi = np.broadcast_arrays(np.asarray(z_lo, float), np.asarray(z_hi, float))
    zc = 0.5 * (z_lo + z_hi)
    out = np.asarray(log_value, float) + 2.0 * np.log10(
        (dst.luminosity_distance(zc) / src.luminosity_distance(zc)).to_value(u.one))
    single = np.isclose(z_lo, z_hi)
    v_ratio = np.empty(zc.shape)
    if np.any(single):
        v_ratio[single] = (src.differential_comoving_volume(zc[single])
                           / dst.differential_comoving_volume(zc[single])).to_value(u.one)
    if np.any(~single):
        zl, zh = z_lo[~single], z_hi[~single]
        v_src = src.comoving_volume(zh) - src.comoving_volume(zl)
        v_dst = dst.comoving_volume(zh) - dst.comoving_volume(zl)
        v_ratio[~single] = (v_src / v_dst).to_value(u.one)
    return out + np.log10(v_ratio)


def convert_sfs_cosmology(
    log_mass: np.ndarray, log_sfr: np.ndarray, z: float, src: apc.Cosmology, dst: apc.Cosmology
) -> tuple[np.ndarray, np.ndarray]:
    """Move a star-forming sequence (both axes scale as D_L^2) from ``src`` to ``dst``."""
    shift = 2.0 * np.log10((dst.luminosity_distance(z) / src.luminosity_distance(z)).to_value(u.one))
    return np.asarray(log_mass) + shift, np.asarray(log_sfr) + shift


# --------------------------------------------------------------------------------------------
# parametric fits


def madau_dickinson2014_sfrd(z: np.ndarray, imf: str = "chabrier",
                             cosmology: apc.Cosmology | str | None = None) -> np.ndarray:
    r"""The Madau & Dickinson (2014) SFRD fit [Msun yr^-1 Mpc^-3] (linear, not log).

    .. math:: \psi(z) = 0.015\,\frac{(1+z)^{2.7}}{1+[(1+z)/2.9]^{5.6}}

    for a Salpeter 0.1-100 Msun IMF and H0=70, Om0=0.3 (their Eq. 15).

    Args:
        z: redshift(s).
        imf: ``"chabrier"`` (x 0.63, their conversion) or ``"salpeter"`` (as published).
        cosmology: convert to this cosmology as a luminosity density at each z (default:
            keep H0=70, Om0=0.3, the published form).

    References:
        | Madau & Dickinson (2014), ARA&A 52, 415, Eq. 15.
    """
    z = np.asarray(z, float)
    psi = 0.015 * (1.0 + z) ** 2.7 / (1.0 + ((1.0 + z) / 2.9) ** 5.6)
    psi = psi * 10.0 ** _from_salpeter(imf, "sfr")
    if cosmology is not None:
        psi = 10.0 ** convert_density_cosmology(np.log10(psi), z, z, LITERATURE_H70,
                                                _default_cosmology(cosmology))
    return psi


def madau_dickinson2014_rho_star(z: np.ndarray, imf: str = "chabrier", return_fraction: float = 0.27,
                                 cosmology: apc.Cosmology | str | None = None) -> np.ndarray:
    r"""Stellar mass density implied by the MD14 SFRD fit [Msun Mpc^-3].

    .. math:: \rho_*(z) = (1-R)\int_z^\infty \frac{\psi(z')\,dz'}{H(z')(1+z')}

    with R = 0.27 (their Salpeter instantaneous-recycling value), in their cosmology (H0=70,
    Om0=0.3), Salpeter masses; ``imf="chabrier"`` then multiplies by 0.61 (their mass
    conversion). ``cosmology`` converts the result as a luminosity density.

    References:
        | Madau & Dickinson (2014), ARA&A 52, 415, Eq. 2 and Fig. 11.
    """
    z = np.atleast_1d(np.asarray(z, float))
    h0_inv_yr = LITERATURE_H70.H0.to_value(1 / u.yr)

    def integrand(zz: float) -> float:
        psi = 0.015 * (1.0 + zz) ** 2.7 / (1.0 + ((1.0 + zz) / 2.9) ** 5.6)
        return psi / (h0_inv_yr * LITERATURE_H70.efunc(zz) * (1.0 + zz))

    rho = np.array([quad(integrand, zz, np.inf, limit=200, epsabs=0, epsrel=1e-10)[0] for zz in z])
    rho = (1.0 - return_fraction) * rho * 10.0 ** _from_salpeter(imf, "mass")
    if cosmology is not None:
        rho = 10.0 ** convert_density_cosmology(np.log10(rho), z, z, LITERATURE_H70,
                                                _default_cosmology(cosmology))
    return rho


#: Behroozi, Wechsler & Conroy (2013, ApJ 770, 57) cosmic SFR fit (z0, A, B, C), Chabrier;
#: "B13high"/"B13low" bracket it.
B13_VARIANTS: dict[str, tuple[float, float, float, float]] = {
    "B13": (1.243, -0.997, 0.241, 0.180),
    "B13high": (1.293, -0.980, 0.219, 0.269),
    "B13low": (1.176, -0.980, 0.254, 0.116),
}


#: The cosmology of Behroozi, Wechsler & Conroy (2013): Bolshoi's flat LCDM, h=0.7, Om0=0.27.
B13_COSMOLOGY = apc.FlatLambdaCDM(H0=70.0, Om0=0.27, name="Bolshoi (H0=70, Om0=0.27)")


def behroozi2013_sfrd(z: np.ndarray, variant: str = "B13",
                      cosmology: apc.Cosmology | str | None = None) -> np.ndarray:
    r"""Behroozi et al. (2013) cosmic SFR fit [Msun yr^-1 Mpc^-3], Chabrier.

    .. math:: \psi(z) = C / [10^{A(z-z_0)} + 10^{B(z-z_0)}]

    Args:
        z: redshift(s).
        variant: ``"B13"``, ``"B13high"`` or ``"B13low"`` (:data:`B13_VARIANTS`).
        cosmology: convert from their cosmology (:data:`B13_COSMOLOGY`, Bolshoi: h=0.7,
            Om0=0.27) to this one as a luminosity density at each z (default: keep theirs,
            the published form).

    References:
        | Behroozi, Wechsler & Conroy (2013), ApJ 770, 57, Eq. 1.
    """
    try:
        z0, a, b, c = B13_VARIANTS[variant]
    except KeyError:
        raise ValueError(f"unknown Behroozi+13 variant {variant!r}; choose {list(B13_VARIANTS)}") from None
    z = np.asarray(z, float)
    psi = c / (10.0 ** (a * (z - z0)) + 10.0 ** (b * (z - z0)))
    if cosmology is not None:
        psi = 10.0 ** convert_density_cosmology(np.log10(psi), z, z, B13_COSMOLOGY,
                                                _default_cosmology(cosmology))
    return psi


def tomczak2014_rho_star(z: np.ndarray, cosmology: apc.Cosmology | str | None = None) -> np.ndarray:
    r"""Tomczak et al. (2014) fit :math:`\log\rho_* = -0.33(1+z) + 8.75` (9 < log M < 13).

    Returns log10 rho_* [Msun Mpc^-3], Chabrier, in H0=70, Om0=0.3 (as quoted in Leja's code,
    jrleja/prospector_alpha), or converted to ``cosmology`` as a luminosity density at each z.
    """
    z = np.asarray(z, float)
    lv = -0.33 * (1.0 + z) + 8.75
    if cosmology is not None:
        lv = convert_density_cosmology(lv, z, z, LITERATURE_H70, _default_cosmology(cosmology))
    return lv


#: Leja et al. (2022, ApJ 936, 165) Eq. 10 / Table 1 coefficients: each of a, b, c, logMt is
#: X0 + X1 z + X2 z^2 (from public copies of Table 1; b1 of the ridge is +0.04990).
LEJA2022_TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "ridge": {
        "a": (0.03746, 0.3448, -0.1156),
        "b": (0.9605, 0.04990, -0.05984),
        "c": (0.2516, 1.118, -0.2006),
        "log_mt": (10.22, 0.3826, -0.04491),
    },
    "mean": {
        "a": (-0.06707, 0.3684, -0.1047),
        "b": (0.8552, -0.1010, -0.001816),
        "c": (0.2148, 0.8137, -0.08052),
        "log_mt": (10.29, -0.1284, 0.1203),
    },
}


def leja2022_coefficients(z: np.ndarray, kind: str = "mean") -> dict[str, np.ndarray]:
    """(a, b, c, log_mt) of Leja+22 Eq. 10 at redshift(s) ``z`` (``kind`` = mean or ridge)."""
    try:
        tab = LEJA2022_TABLE1[kind]
    except KeyError:
        raise ValueError(f"Leja+22 Table 1 has rows 'ridge' and 'mean', not {kind!r}") from None
    z = np.asarray(z, float)
    return {k: v[0] + v[1] * z + v[2] * z**2 for k, v in tab.items()}


def leja2022_sfs(log_m: np.ndarray, z: np.ndarray, kind: str = "mean") -> np.ndarray:
    r"""Leja et al. (2022) Eq. 10: log SFR [Msun/yr] of the ridge or of log10 <SFR>.

    .. math::
        \log\mathrm{SFR} = \begin{cases} a(z)(\log M - \log M_t(z)) + c(z) & \log M > \log M_t\\
        b(z)(\log M - \log M_t(z)) + c(z) & \log M \le \log M_t \end{cases}

    ``log_m`` and ``z`` broadcast against each other. Chabrier IMF, WMAP9, Prospector masses
    and SFRs; quoted validity 0.3 <= z <= 2.7 above the mass-completeness limit.

    References:
        | Leja et al. (2022), ApJ 936, 165, Eq. 10 and Table 1.
    """
    q = leja2022_coefficients(z, kind)
    x = np.asarray(log_m, float) - q["log_mt"]
    return np.where(x > 0, q["a"] * x, q["b"] * x) + q["c"]


# --------------------------------------------------------------------------------------------
# point data


def tomczak2014_smf(cosmology: apc.Cosmology | None = None) -> list[SMFPoints]:
    """Tomczak et al. (2014, ApJ 783, 85) ZFOURGE/NMBS total SMFs (Table 1; FAST, Chabrier).

    Args:
        cosmology: convert to this cosmology (default: keep the paper's H0=70, Om0=0.3).
    """
    path = resources.files("popmodel") / "data" / "tomczak2014_smf.txt"
    tab = np.loadtxt(str(path), comments="#")
    out = []
    for k, (lo, hi) in enumerate(_TOMCZAK_BINS):
        lm, lp, ep, em = tab[:, 0], tab[:, 1 + 3 * k], tab[:, 2 + 3 * k], tab[:, 3 + 3 * k]
        ok = lp > -98
        lm, lp = lm[ok], lp[ok]
        if cosmology is not None:
            lm, lp = convert_smf_cosmology(lm, lp, 0.5 * (lo + hi), TOMCZAK_COSMOLOGY, cosmology)
        out.append(SMFPoints("Tomczak+14", lo, hi, lm, lp, ep[ok], em[ok]))
    return out


def _density(label: str, quantity: str, z_lo: np.ndarray, z_hi: np.ndarray, log_value: np.ndarray,
             err_hi: np.ndarray, err_lo: np.ndarray, *, imf: str, src: apc.Cosmology,
             cosmology: apc.Cosmology | str | None, z: np.ndarray | None = None,
             note: str = "") -> DensityPoints:
    dst = _default_cosmology(cosmology)
    kind = "sfr" if quantity == "sfrd" else "mass"
    lv = np.asarray(log_value, float) + _imf_dex(imf, kind)
    lv = convert_density_cosmology(lv, z_lo, z_hi, src, dst)
    zc = 0.5 * (np.asarray(z_lo) + np.asarray(z_hi)) if z is None else np.asarray(z, float)
    conv = f"IMF {imf} -> Chabrier ({_imf_dex(imf, kind):+.3f} dex); cosmology {src.name} -> {dst.name}"
    return DensityPoints(label, quantity, zc, np.asarray(z_lo, float), np.asarray(z_hi, float), lv,
                         np.abs(np.asarray(err_hi, float)), np.abs(np.asarray(err_lo, float)),
                         f"{conv}. {note}".strip())


def md14_sfrd_points(cosmology: apc.Cosmology | str | None = None) -> DensityPoints:
    """Madau & Dickinson (2014) Table 1: 51 dust-corrected SFRDs (28 UV, 23 IR).

    Salpeter -> Chabrier (x 0.63) and H0=70, Om0=0.3 -> ``cosmology`` (default WMAP9).
    """
    import csv

    with open(_path("md14_table1_sfrd_salpeter.csv")) as fh:
        rows = list(csv.DictReader(fh))
    col = {k: np.array([float(r[k]) for r in rows]) for k in
           ("z_lo", "z_hi", "z_plot", "log10_psi_salpeter", "err_up_dex", "err_dn_dex")}
    return _density("Madau & Dickinson 2014 (Table 1)", "sfrd", col["z_lo"], col["z_hi"],
                    col["log10_psi_salpeter"], col["err_up_dex"], col["err_dn_dex"], imf="salpeter",
                    src=LITERATURE_H70, cosmology=cosmology, z=col["z_plot"],
                    note="tracers: " + ",".join(sorted({r["tracer"] for r in rows})))


def md14_rho_star_points(cosmology: apc.Cosmology | str | None = None) -> DensityPoints:
    """Madau & Dickinson (2014) Table 2 stellar mass densities (Salpeter -> Chabrier x 0.61)."""
    tab = np.loadtxt(_path("md14_table2_smd_salpeter.dat"), comments="#")
    return _density("Madau & Dickinson 2014 (Table 2)", "rho_star", tab[:, 0], tab[:, 1], tab[:, 2],
                    tab[:, 3], tab[:, 4], imf="salpeter", src=LITERATURE_H70, cosmology=cosmology,
                    note="zero errors: none quoted")


def _driver(fname: str, quantity: str, offset: int, cosmology: apc.Cosmology | str | None) -> DensityPoints:
    tab = np.loadtxt(_path(fname), comments="#")
    tab = tab[:, offset:]
    err = np.sqrt(np.sum(tab[:, 3:7] ** 2, axis=1))
    return _density("Driver+18 (GAMA/G10-COSMOS/3D-HST)", quantity, tab[:, 0], tab[:, 1], tab[:, 2],
                    err, err, imf="chabrier", src=LITERATURE_H70, cosmology=cosmology,
                    note="error = Eddington bias, Poisson, cosmic variance and AGN terms in quadrature")


def driver2018_sfrd(cosmology: apc.Cosmology | str | None = None) -> DensityPoints:
    """Driver et al. (2018, MNRAS 475, 2891) cosmic SFRD, 0 < z < 5 (Chabrier, h=0.7)."""
    return _driver("driver2018_sfrd.dat", "sfrd", 0, cosmology)


def driver2018_rho_star(cosmology: apc.Cosmology | str | None = None) -> DensityPoints:
    """Driver et al. (2018, MNRAS 475, 2891) stellar mass density, 0 < z < 5 (Chabrier, h=0.7)."""
    return _driver("driver2018_smd.dat", "rho_star", 1, cosmology)


def muzzin2013_rho_star(mass_range: str = "8", cosmology: apc.Cosmology | str | None = None) -> DensityPoints:
    """Muzzin et al. (2013, ApJ 777, 18) rho_* from their Schechter fits (Kroupa -> Chabrier).

    Args:
        mass_range: lower mass of the integral, ``"8"``, ``"9"``, ``"10"``, ``"11"`` or
            ``"115"`` (to log M = 13).
    """
    path = _path("muzzin2013_smd.txt")
    with open(path) as fh:
        header = next(ln for ln in fh if ln.startswith("# z_low")).lstrip("#").split()
    tab = np.loadtxt(path, comments="#")
    key = f"rho_{mass_range}"
    if key not in header:
        raise ValueError(f"Muzzin+13 mass range {mass_range!r} not in {header[2:]}")
    j = header.index(key)
    return _density(f"Muzzin+13 (log M>{mass_range.replace('115', '11.5')})", "rho_star", tab[:, 0],
                    tab[:, 1], tab[:, j], tab[:, j + 1], tab[:, j + 2], imf="kroupa",
                    src=LITERATURE_H70, cosmology=cosmology)


def muzzin2013_smf(kind: str = "all", cosmology: apc.Cosmology | str | None = None) -> list[SMFPoints]:
    """Muzzin et al. (2013) UltraVISTA 1/Vmax SMFs, 0.2 < z < 4 (Kroupa -> Chabrier -0.04 dex).

    Args:
        kind: ``"all"``, ``"quiescent"`` or ``"star-forming"`` (their UVJ classes).
    """
    cols = {"all": 2, "quiescent": 5, "star-forming": 8}
    if kind not in cols:
        raise ValueError(f"Muzzin+13 kind must be one of {list(cols)}, not {kind!r}")
    dst = _default_cosmology(cosmology)
    out = []
    block: list[list[float]] = []
    zr: tuple[float, float] | None = None

    def flush() -> None:
        if zr is None or not block:
            return
        t = np.array(block)
        c = cols[kind]
        ok = t[:, c] > -98
        lm = t[ok, 0] + _imf_dex("kroupa", "mass")
        lm, lp = convert_smf_cosmology(lm, t[ok, c], 0.5 * sum(zr), LITERATURE_H70, dst)
        out.append(SMFPoints(f"Muzzin+13 {kind}", zr[0], zr[1], lm, lp, t[ok, c + 1], t[ok, c + 2]))

    with open(_path("muzzin2013_smf.txt")) as fh:
        lines = fh.readlines()
    for line in lines:
        m = re.search(r"z=\[([0-9.]+),([0-9.]+)\)", line)
        if m:
            flush()
            zr, block = (float(m.group(1)), float(m.group(2))), []
        elif line.strip() and not line.lstrip().startswith("#"):
            block.append([float(v) for v in line.split()])
    flush()
    return out


def ilbert2013_smf(cosmology: apc.Cosmology | str | None = None) -> list[SMFPoints]:
    """Ilbert et al. (2013, A&A 556, A55) UltraVISTA Vmax SMFs (Chabrier, H0=70, Om0=0.3).

    The file's columns 3-4 are dex offsets (lower, upper); 999.9 marks an open error (kept as
    NaN). Four rows (z 2.0-2.5, 2.5-3.0, 3.0-4.0) carry both offsets with a minus sign; their
    magnitudes are used, so every returned error is positive.
    """
    dst = _default_cosmology(cosmology)
    out = []
    block: list[list[float]] = []
    zr: tuple[float, float] | None = None

    def flush() -> None:
        if zr is None or not block:
            return
        t = np.array(block)
        lm, lp = convert_smf_cosmology(t[:, 0], t[:, 1], 0.5 * sum(zr), LITERATURE_H70, dst)
        lo = np.where(t[:, 2] > 99, np.nan, np.abs(t[:, 2]))
        hi = np.where(t[:, 3] > 99, np.nan, np.abs(t[:, 3]))
        out.append(SMFPoints("Ilbert+13", zr[0], zr[1], lm, lp, hi, lo))

    with open(_path("ilbert2013_smf.txt")) as fh:
        lines = fh.readlines()
    for line in lines:
        m = re.match(r"#\s*z_([0-9.]+)_([0-9.]+)\.dat", line.strip())
        if m:
            flush()
            zr, block = (float(m.group(1)), float(m.group(2))), []
        elif line.strip() and not line.lstrip().startswith("#") and zr is not None:
            block.append([float(v) for v in line.split()])
    flush()
    return out


def behroozi2019_csfrd(kind: str = "observed", cosmology: apc.Cosmology | str | None = None
                       ) -> DensityPoints:
    """UniverseMachine DR1 (Behroozi et al. 2019, MNRAS 488, 3143) cosmic SFR history.

    A model fitted to an observational compilation (a smooth literature curve, not data).

    Args:
        kind: ``"observed"`` (what observers would infer, with UM's systematics) or ``"true"``.
        cosmology: target (default WMAP9); UM runs on Bolshoi-Planck (h=0.6777, Om0=0.307),
            converted as a luminosity density (the model was fitted to data in its cosmology).
    """
    cols = {"observed": 1, "true": 7}
    if kind not in cols:
        raise ValueError(f"kind must be 'observed' or 'true', not {kind!r}")
    tab = np.loadtxt(_path("universemachine/Behroozi2019_csfrs.dat"), comments="#")
    z = 1.0 / tab[:, 0] - 1.0
    c = cols[kind]
    val = tab[:, c]
    ok = (val > 0) & (z > 0)  # the last snapshot (a = 1.0023) lies just beyond z = 0
    order = np.argsort(z[ok])
    z, val, ep, em = z[ok][order], val[ok][order], tab[ok, c + 1][order], tab[ok, c + 2][order]
    lv = np.log10(val)
    err_hi = np.log10(val + ep) - lv
    err_lo = lv - np.log10(np.clip(val - em, val * 1e-3, None))
    return _density(f"UniverseMachine (Behroozi+19), {kind}", "sfrd", z, z, lv, err_hi, err_lo,
                    imf="chabrier", src=UNIVERSEMACHINE_COSMOLOGY, cosmology=cosmology)


def behroozi2019_smf(cosmology: apc.Cosmology | str | None = None) -> dict[str, list[SMFPoints]]:
    """UniverseMachine DR1 SMFs (all and quenched: observed sSFR < 1e-11/yr) at the packaged
    scale factors (z = 0 ... 3).

    Returns:
        ``{"all": [...], "quiescent": [...], "star-forming": [...]}``; each SMFPoints has
        ``z_lo == z_hi`` = the snapshot redshift. Masses are UM "observed" masses (Chabrier).
    """
    dst = _default_cosmology(cosmology)
    folder = resources.files("popmodel") / "data" / "literature" / "universemachine"
    out: dict[str, list[SMFPoints]] = {"all": [], "quiescent": [], "star-forming": []}
    files = sorted((f for f in folder.iterdir() if f.name.startswith("Behroozi2019_smf_a")),
                   key=lambda f: -float(f.name[18:-4]))
    for f in files:
        z = max(1.0 / float(f.name[18:-4]) - 1.0, 0.0)  # a = 1.0023 -> z = 0
        zc = max(z, 1e-3)  # distances at the snapshot (z = 0 has no D_L ratio)
        t = np.loadtxt(str(f), comments="#")
        phi, ep, em, q, qp, qm = t[:, 1], t[:, 2], t[:, 3], t[:, 7], t[:, 8], t[:, 9]
        sf, sfe = phi - q, np.hypot(ep, qp)
        for kind, val, e_hi, e_lo in (("all", phi, ep, em), ("quiescent", q, qp, qm),
                                      ("star-forming", sf, sfe, sfe)):
            ok = val > 0
            lv = np.log10(val[ok])
            hi = np.log10(val[ok] + e_hi[ok]) - lv
            lo = lv - np.log10(np.clip(val[ok] - e_lo[ok], val[ok] * 1e-3, None))
            lm, lp = convert_smf_cosmology(t[ok, 0], lv, zc, UNIVERSEMACHINE_COSMOLOGY, dst)
            out[kind].append(SMFPoints(f"UniverseMachine {kind}", z, z, lm, lp, hi, lo))
    return out


def leja2022_sfs_curves(cosmology: apc.Cosmology | str | None = None) -> list[SFSCurve]:
    """Leja et al. (2022) SFS curves from their flow (ridge, log <SFR>, median, 16/84%).

    z = 0.3, 0.6, 1.0, 1.5, 2.0, 2.7; masses from about the completeness limit; Chabrier,
    WMAP9 (so the default target is no change).
    """
    dst = _default_cosmology(cosmology)
    src = apc.WMAP9
    folder = resources.files("popmodel") / "data" / "literature" / "leja2022_sfs"
    out = []
    for f in sorted(folder.iterdir(), key=lambda f: f.name):
        if not f.name.endswith(".txt"):
            continue
        z = float(f.name[len("Leja2022_z"):-4].replace("p", "."))
        t = np.loadtxt(str(f), delimiter=",", comments="#")
        lm = t[:, 0]
        cols = []
        for j in range(1, 6):
            lm2, s = convert_sfs_cosmology(lm, t[:, j], z, src, dst)
            cols.append(s)
        out.append(SFSCurve("Leja+22 flow", z, lm2, *cols[:3], q16=cols[4], q84=cols[3]))
    return out


def as_function(points: DensityPoints) -> Callable[[np.ndarray], np.ndarray]:
    """Linear interpolation of a curve's log value in z (for smooth model curves)."""
    return lambda z: np.interp(z, points.z, points.log_value)
