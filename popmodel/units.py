r"""Units and conventions, stated once.

- Stellar masses: ``log_mass`` = log10(M*/Msun), surviving stellar mass, Chabrier (2003) IMF
  (:data:`popmodel.cosmology.DEFAULT_IMF`) unless a survey says otherwise (``imf``).
- Cosmology: WMAP9 (:data:`popmodel.cosmology.DEFAULT_COSMOLOGY`, as Leja et al. 2020) unless
  a survey says otherwise; a catalogue records its own (``meta["cosmology"]``, ``meta["imf"]``)
  and is converted to the survey's before a fit (:mod:`popmodel.conventions`).
- Star-formation rates: ``log_sfr`` = log10(SFR / (Msun/yr)).
- Mass function :math:`\Phi`: number per comoving Mpc^3 per dex of stellar mass (no h factors).
- Stellar mass density :math:`\rho_*`: Msun per comoving Mpc^3.
- Interim priors: natural-log density per unit log10 M per unit z (and per unit log10 SFR).
- Areas are stored in steradians; TOML files speak arcmin^2 or deg^2.
- Tabulated functions of redshift (``rho_star.ecsv``, ``census.ecsv``, the rho_* and SFRD
  figures) use one grid, :data:`Z_GRID`: 0.2 <= z <= 3.0 in steps of 0.05.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = [
    "ARCMIN2_PER_SR",
    "DEG2_PER_SR",
    "IMF",
    "IMF_LABELS",
    "LN10",
    "LOG10_E",
    "MASS_DEFINITION",
    "Z_GRID",
    "imf_label",
]

LN10 = math.log(10.0)
LOG10_E = 1.0 / LN10
#: (u.sr).to(u.deg**2) = (180/pi)^2
DEG2_PER_SR = (180.0 / math.pi) ** 2
#: (u.sr).to(u.arcmin**2)
ARCMIN2_PER_SR = DEG2_PER_SR * 3600.0
#: Label of the default IMF in result files (:data:`popmodel.cosmology.DEFAULT_IMF`, "chabrier").
IMF = "Chabrier2003"
#: Result-file labels of the IMFs a survey may name (``imf`` in survey.toml).
IMF_LABELS = {"chabrier": "Chabrier2003", "kroupa": "Kroupa2001", "salpeter": "Salpeter1955"}


def imf_label(imf: str | None) -> str:
    """The result-file label of a survey's IMF (the default's when None)."""
    return IMF if imf is None else IMF_LABELS.get(str(imf).lower(), str(imf))
MASS_DEFINITION = "surviving stellar mass, log10(M*/Msun)"
#: The redshift grid of every tabulated function of redshift (rho_*, the census, their
#: figures), 0.2 to 3.0 in steps of 0.05 (the span of the Leja et al. 2020 anchors), rounded
#: to 4 decimals; read-only.
Z_GRID = np.round(np.arange(0.2, 3.0001, 0.05), 4)
Z_GRID.flags.writeable = False
