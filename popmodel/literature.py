"""Published comparison data packaged with popmodel, on one IMF (Chabrier) and a chosen cosmology.

Cosmology conversion: a number density per dex measured under cosmology A is rescaled to B by
the ratio of volume elements, Phi_B = Phi_A (dV_A/dz)/(dV_B/dz), and masses (from
luminosities) move by log M_B = log M_A + 2 log10(D_L,B / D_L,A), both evaluated with astropy
at the bin's redshift (not with powers of h alone, which is wrong when Omega_m differs).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import astropy.cosmology as apc
import astropy.units as u
import numpy as np

__all__ = ["SMFPoints", "convert_smf_cosmology", "tomczak2014_smf"]

TOMCZAK_COSMOLOGY = apc.FlatLambdaCDM(H0=70.0, Om0=0.3, name="H0=70, Om0=0.3")
_TOMCZAK_BINS = [(0.5, 0.75), (0.75, 1.0), (1.0, 1.25), (1.25, 1.5), (1.5, 2.0), (2.0, 2.5), (2.5, 3.0)]


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


def convert_smf_cosmology(
    log_mass: np.ndarray, log_phi: np.ndarray, z: float, src: apc.Cosmology, dst: apc.Cosmology
) -> tuple[np.ndarray, np.ndarray]:
    """Move binned mass-function points from cosmology ``src`` to ``dst`` (see module doc)."""
    dl = (dst.luminosity_distance(z) / src.luminosity_distance(z)).to_value(u.one)
    dv = (src.differential_comoving_volume(z) / dst.differential_comoving_volume(z)).to_value(u.one)
    return np.asarray(log_mass) + 2.0 * np.log10(dl), np.asarray(log_phi) + np.log10(dv)


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
