r"""Stellar mass loss: the Chabrier (2003) IMF, Raiteri et al. (1996) lifetimes, the IMF mass
budget, the mass-loss kernels f(tau) and the prior on the instantaneous return fraction R.

A population formed at rate :math:`\psi` loses a fraction :math:`f(\tau)` of its mass by age
:math:`\tau` (winds and supernovae). Whether the masses count stellar remnants sets which
fraction is lost: gas return only (remnants kept, the FSPS/Prospector default) or gas plus
remnants (living stars only).

References:
    | Chabrier (2003), PASP 115, 763; Raiteri, Villata & Navarro (1996), A&A 315, 105.
    | Leitner & Kravtsov (2011), ApJ 734, 48; Behroozi, Wechsler & Conroy (2013), ApJ 770, 57.
    | Madau & Dickinson (2014), ARA&A 52, 415.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

__all__ = [
    "MassLossKernel",
    "ReturnFractionPrior",
    "chabrier2003_imf",
    "imf_mass_budget",
    "raiteri1996_lifetime",
]


def chabrier2003_imf(m: np.ndarray) -> np.ndarray:
    r"""Chabrier (2003) single-star IMF :math:`dN/d\log_{10}m` (unnormalised; m in Msun).

    Log-normal below 1 Msun (:math:`m_c=0.079`, :math:`\sigma=0.69`, amplitude 0.158) and a
    power law :math:`A m^{-1.3}` above, with A fixed by continuity at 1 Msun (0.0443 in the
    paper's Table 1).

    References:
        | Chabrier (2003), PASP 115, 763, Eq. 17 and Table 1.
    """
    m = np.asarray(m, dtype=float)
    lognorm = 0.158 * np.exp(-((np.log10(m) - np.log10(0.079)) ** 2) / (2 * 0.69**2))
    amp = 0.158 * np.exp(-(np.log10(0.079) ** 2) / (2 * 0.69**2))
    return np.where(m <= 1.0, lognorm, amp * m**-1.3)


def raiteri1996_lifetime(m: np.ndarray, metallicity: float = 0.02) -> np.ndarray:
    r"""Stellar lifetime [yr] of Raiteri, Villata & Navarro (1996, A&A 315, 105), Eq. 3.

    :math:`\log t = a_0 + a_1\log m + a_2(\log m)^2` with
    :math:`a_0 = 10.13 + 0.07547\log Z - 0.008084(\log Z)^2`,
    :math:`a_1 = -4.424 - 0.7939\log Z - 0.1187(\log Z)^2`,
    :math:`a_2 = 1.262 + 0.3385\log Z + 0.05417(\log Z)^2` (fit to Padova tracks,
    7e-5 <= Z <= 0.03). Above the mass of minimum lifetime (~106 Msun at Z=0.02) the minimum
    lifetime is used.
    """
    a0, a1, a2 = _raiteri(metallicity)
    lm = np.minimum(np.log10(np.asarray(m, dtype=float)), -a1 / (2 * a2))
    return 10.0 ** (a0 + a1 * lm + a2 * lm**2)


def _raiteri(metallicity: float) -> tuple[float, float, float]:
    if not 7e-5 <= metallicity <= 0.03:
        raise ValueError(f"metallicity {metallicity} outside the Raiteri+96 range 7e-5..0.03")
    lz = np.log10(metallicity)
    return (10.13 + 0.07547 * lz - 0.008084 * lz**2, -4.424 - 0.7939 * lz - 0.1187 * lz**2,
            1.262 + 0.3385 * lz + 0.05417 * lz**2)


def _turnoff_mass(age: np.ndarray, metallicity: float, m_hi: float) -> np.ndarray:
    a0, a1, a2 = _raiteri(metallicity)
    lt = np.log10(np.maximum(np.asarray(age, dtype=float), 1.0))
    disc = a1**2 - 4 * a2 * (a0 - lt)
    with np.errstate(invalid="ignore"):
        lm = (-a1 - np.sqrt(disc)) / (2 * a2)
    return np.where(disc > 0, np.minimum(10.0**lm, m_hi), m_hi)


def _remnant_mass(m: np.ndarray) -> np.ndarray:
    """Initial-final mass relation [Msun]: Kalirai et al. (2008) white dwarfs below 8 Msun,
    1.4 Msun neutron stars for 8-40 Msun, 0.5 m black holes above (the neutron-star and
    black-hole prescription of Renzini & Ciotti 1993 used by Leitner & Kravtsov 2011)."""
    m = np.asarray(m, dtype=float)
    return np.where(m < 8.0, 0.109 * m + 0.394, np.where(m < 40.0, 1.4, 0.5 * m))


@lru_cache(maxsize=16)
def _budget_table(m_lo: float, m_hi: float, metallicity: float) -> tuple[np.ndarray, ...]:
    lm = np.linspace(np.log10(m_lo), np.log10(m_hi), 20001)
    m = 10.0**lm
    xi = chabrier2003_imf(m)
    dm = np.gradient(lm)
    mass = m * xi * dm
    rem = _remnant_mass(m) * xi * dm
    total = mass.sum()
    # cumulative from the top: mass and remnants of stars above each m
    mass_above = np.cumsum(mass[::-1])[::-1] / total
    rem_above = np.cumsum(rem[::-1])[::-1] / total
    return lm, mass_above, rem_above


def imf_mass_budget(age: np.ndarray, *, m_lo: float = 0.08, m_hi: float = 120.0,
                    metallicity: float = 0.02) -> dict[str, np.ndarray]:
    r"""Where the mass of a Chabrier (2003) single-age population is at a given age.

    Stars above the turnoff mass :math:`m_{to}(\tau)` (inverse of
    :func:`raiteri1996_lifetime`) have died, leaving the remnant of :func:`_remnant_mass` and
    returning the rest as gas:

    .. math:: f_{gas} = \int_{m_{to}}^{m_u} [m - w(m)]\,\xi\,dm \Big/ \int m\,\xi\,dm,\quad
        f_{rem} = \int_{m_{to}}^{m_u} w(m)\,\xi\,dm \Big/ \int m\,\xi\,dm.

    Defaults: 0.08-120 Msun (the FSPS/Prospector limits), Z = 0.02.

    Args:
        age: population age(s) [yr].

    Returns:
        ``{"gas": f_gas, "remnants": f_rem, "living": 1 - f_gas - f_rem}`` (shape of ``age``).
    """
    lm, mass_above, rem_above = _budget_table(float(m_lo), float(m_hi), float(metallicity))
    mto = _turnoff_mass(age, metallicity, m_hi)
    lt = np.log10(np.clip(mto, m_lo, m_hi))
    above = np.interp(lt, lm, mass_above, right=0.0)
    rem = np.interp(lt, lm, rem_above, right=0.0)
    above = np.where(mto >= m_hi, 0.0, above)
    rem = np.where(mto >= m_hi, 0.0, rem)
    return {"gas": above - rem, "remnants": rem, "living": 1.0 - above}


_AGE_GRID = np.concatenate([[0.0], np.geomspace(1e4, 3e10, 4000)])


@dataclass(frozen=True)
class MassLossKernel:
    r"""Fraction :math:`f(\tau)` of a stellar population's formed mass lost by age :math:`\tau`.

    Tabulated on an age grid [yr] (linear interpolation; f = 0 at age 0), with its running
    integral :math:`F(\tau)=\int_0^\tau f` used by :func:`sfr_history_from_mass`. Build one with
    :meth:`leitner_kravtsov2011`, :meth:`behroozi2013`, :meth:`from_imf` or :meth:`constant`.

    Attributes:
        name: description (goes into result metadata).
        age: (N,) ages [yr], starting at 0.
        fraction: (N,) f at those ages.
    """

    name: str
    age: np.ndarray = field(repr=False)
    fraction: np.ndarray = field(repr=False)

    def __post_init__(self) -> None:
        a, f = np.asarray(self.age, float), np.asarray(self.fraction, float)
        if a.ndim != 1 or a.shape != f.shape or a[0] != 0 or np.any(np.diff(a) <= 0):
            raise ValueError("MassLossKernel needs 1-D increasing ages from 0 with one fraction each")
        if np.any(f < 0) or np.any(f >= 1) or not np.all(np.isfinite(f)):
            raise ValueError("MassLossKernel fractions must lie in [0, 1)")
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (f[1:] + f[:-1]) * np.diff(a))])
        object.__setattr__(self, "age", a)
        object.__setattr__(self, "fraction", f)
        object.__setattr__(self, "_cum", cum)

    def __call__(self, tau: np.ndarray) -> np.ndarray:
        tau = np.asarray(tau, dtype=float)
        return np.where(tau > 0, np.interp(tau, self.age, self.fraction), 0.0)

    def integral(self, tau: np.ndarray) -> np.ndarray:
        r""":math:`F(\tau)=\int_0^\tau f(\tau')d\tau'` [yr] (0 for tau <= 0)."""
        tau = np.asarray(tau, dtype=float)
        cum = self._cum  # type: ignore[attr-defined]
        t = np.clip(tau, 0.0, self.age[-1])
        i = np.clip(np.searchsorted(self.age, t, side="right") - 1, 0, self.age.size - 2)
        dt = t - self.age[i]
        slope = (self.fraction[i + 1] - self.fraction[i]) / (self.age[i + 1] - self.age[i])
        return cum[i] + self.fraction[i] * dt + 0.5 * slope * dt**2

    @classmethod
    def constant(cls, r: float) -> MassLossKernel:
        """Instantaneous recycling: f = R at every age > 0."""
        a = _AGE_GRID
        f = np.where(a > 0, r, 0.0)
        f[1] = r  # the jump happens inside the first grid interval
        return cls(f"instantaneous R={r:g}", a, f)

    @classmethod
    def leitner_kravtsov2011(cls, masses_include_remnants: bool = True) -> MassLossKernel:
        r""":math:`f = 0.046\ln(1+\tau/2.76\times10^5\,\mathrm{yr})` (Chabrier; gas returned).

        References:
            | Leitner & Kravtsov (2011), ApJ 734, 48, Eq. 2 and Table 2.
        """
        return cls._fit("Leitner & Kravtsov 2011", 0.046, 2.76e5, masses_include_remnants)

    @classmethod
    def behroozi2013(cls, masses_include_remnants: bool = True) -> MassLossKernel:
        r""":math:`f = 0.05\ln(1+\tau/1.4\,\mathrm{Myr})` (Chabrier; gas returned).

        References:
            | Behroozi, Wechsler & Conroy (2013), ApJ 770, 57, Eq. 14 (after Conroy & Wechsler
              2009 and FSPS).
        """
        return cls._fit("Behroozi+13", 0.05, 1.4e6, masses_include_remnants)

    @classmethod
    def _fit(cls, name: str, c0: float, lam: float, masses_include_remnants: bool) -> MassLossKernel:
        a = _AGE_GRID
        f = c0 * np.log1p(a / lam)
        if not masses_include_remnants:
            f = f + imf_mass_budget(a)["remnants"]
            name += " + remnants (IMF calculation)"
        return cls(name, a, f)

    @classmethod
    def from_imf(cls, masses_include_remnants: bool = True, *, m_lo: float = 0.08,
                 m_hi: float = 120.0, metallicity: float = 0.02) -> MassLossKernel:
        """From the Chabrier IMF, Raiteri+96 lifetimes and the remnant masses of
        :func:`imf_mass_budget`: gas returned (masses include remnants) or gas plus remnants
        (masses count living stars only)."""
        b = imf_mass_budget(_AGE_GRID, m_lo=m_lo, m_hi=m_hi, metallicity=metallicity)
        f = b["gas"] if masses_include_remnants else b["gas"] + b["remnants"]
        tag = "gas" if masses_include_remnants else "gas + remnants"
        return cls(f"Chabrier IMF + Raiteri+96 lifetimes ({tag}; {m_lo:g}-{m_hi:g} Msun, Z={metallicity:g})",
                   _AGE_GRID, f)


@dataclass(frozen=True)
class ReturnFractionPrior:
    """Uniform prior on the instantaneous return fraction R, one draw per posterior draw.

    The default U(0.30, 0.45) spans Leja's 0.36, MD14's ~0.41 for Chabrier, and the Chabrier
    gas-return kernels (:class:`MassLossKernel`) at ages ~0.5-10 Gyr. ``low == high`` fixes R.

    Attributes:
        low, high: bounds of the gas-return fraction.
        masses_include_remnants: if False (masses count living stars only), each drawn R is
            mapped to the fraction no longer in living stars at the age where the IMF
            calculation (:func:`imf_mass_budget`) returns that much gas, i.e. remnants added.
    """

    low: float = 0.30
    high: float = 0.45
    masses_include_remnants: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high < 1.0:
            raise ValueError(f"return-fraction prior needs 0 <= low <= high < 1, got {self.low}, {self.high}")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        r = rng.uniform(self.low, self.high, size=n) if self.high > self.low else np.full(n, self.low)
        if self.masses_include_remnants:
            return r
        b = imf_mass_budget(_AGE_GRID[1:])
        gas, lost = b["gas"], b["gas"] + b["remnants"]
        if np.any(r > gas.max()):
            raise ValueError(f"R up to {r.max():.3f} exceeds the IMF calculation's maximum gas "
                             f"return {gas.max():.3f}; cannot map it to a remnant fraction")
        return np.interp(r, np.maximum.accumulate(gas), lost)

    def short(self) -> str:
        """``R ~ U(lo, hi)`` or ``R = r``, with a remnant note."""
        rem = "" if self.masses_include_remnants else " (+ remnants)"
        return (f"R = {self.low:g}" if self.high == self.low else f"R ~ U({self.low:g}, {self.high:g})") + rem

    def describe(self) -> str:
        rem = "" if self.masses_include_remnants else "; mapped to gas + remnants (living-star masses)"
        if self.high == self.low:
            return f"R = {self.low:g} (fixed){rem}"
        return f"R ~ U({self.low:g}, {self.high:g}), one draw per posterior draw{rem}"
