r"""Units and conventions, stated once.

- Stellar masses: ``log_mass`` = log10(M*/Msun), surviving stellar mass, Chabrier (2003) IMF.
- Star-formation rates: ``log_sfr`` = log10(SFR / (Msun/yr)).
- Mass function :math:`\Phi`: number per comoving Mpc^3 per dex of stellar mass (no h factors).
- Stellar mass density :math:`\rho_*`: Msun per comoving Mpc^3.
- Interim priors: natural-log density per unit log10 M per unit z (and per unit log10 SFR).
- Areas are stored in steradians; TOML files speak arcmin^2 or deg^2.
"""

from __future__ import annotations

import math

__all__ = ["ARCMIN2_PER_SR", "DEG2_PER_SR", "IMF", "LN10", "LOG10_E", "MASS_DEFINITION"]

LN10 = math.log(10.0)
LOG10_E = 1.0 / LN10
#: (u.sr).to(u.deg**2) = (180/pi)^2
DEG2_PER_SR = (180.0 / math.pi) ** 2
#: (u.sr).to(u.arcmin**2)
ARCMIN2_PER_SR = DEG2_PER_SR * 3600.0
IMF = "Chabrier2003"
MASS_DEFINITION = "surviving stellar mass, log10(M*/Msun)"
