r"""The cosmic census from continuity-model draws: rho_*(z), n(>M) and the SFR density two ways.

Every function takes a :class:`~popmodel.smf.evolution.ContinuityParams` whose leaves carry a
leading draw axis (D posterior draws; an unbatched one counts as D = 1) and returns arrays with
that axis first, so each derived quantity is a set of draws and its bands are percentiles over
them. Units: :math:`\rho_*` in Msun Mpc^-3, number densities in Mpc^-3, SFR densities in
Msun yr^-1 Mpc^-3 (comoving, no h), Chabrier IMF, WMAP9 unless a cosmology is given.

**Route 1: the time derivative of the mass density.** Stars formed at rate :math:`\psi` lose a
fraction :math:`f(\tau)` of their mass by age :math:`\tau` (winds and supernovae), so

.. math::
    \rho_*(t) = \int_0^t \psi(t')\,[1 - f(t-t')]\,dt'.

With instantaneous recycling, :math:`f \equiv R`, this is
:math:`\psi = (d\rho_*/dt)/(1-R)` with :math:`dt = -dz/[(1+z)H(z)]` (science.md section 1.8);
:math:`d\rho_*/dz` is differentiated in closed form (upper incomplete gamma functions and the
derivative of the anchor polynomial). R is uncertain: :class:`ReturnFractionPrior` (default
U(0.30, 0.45): 0.36 in Leja's SFRD code, ~0.41 for Chabrier in Madau & Dickinson 2014, 0.40-0.45
from the time-dependent Chabrier kernels below at ages of a few Gyr) gives one R per posterior
draw, marginalised into the band. With a :class:`MassLossKernel` the convolution is inverted
instead (:func:`sfr_history_from_mass`, a lower-triangular solve on a time grid). Whether the
masses count stellar remnants sets which fraction is lost: gas return only (remnants kept, the
FSPS/Prospector default) or gas plus remnants (living stars only).

**Route 2: the mass function times the mean SFR.**
:math:`\psi(z) = \int \Phi(\log M, z)\,\langle \mathrm{SFR}\rangle(\log M, z)\,d\log M`, with
:math:`\langle\mathrm{SFR}\rangle` the population mean over star-forming and quiescent galaxies
(not :math:`10^{\langle\log\mathrm{SFR}\rangle}`). Above the completeness limit
:math:`\log M_c(z)` it comes from a supplied model (the flow ensemble, one member per SMF draw);
below it, from the Leja et al. (2022) Eq. 10 form *fitted to that model above the limit* (never
the model's own extrapolation); the fraction of :math:`\psi` from below the limit is reported.
Without a model, the Leja+22 Table 1 mean fit is used at all masses.

**Tension** between the routes is computed from paired draws: both use the same SMF draw (and
the same mass offset), so the difference distribution carries their correlation.

References:
    | Leja et al. (2020), ApJ 893, 111 (continuity model); Leja et al. (2022), ApJ 936, 165.
    | Madau & Dickinson (2014), ARA&A 52, 415.
    | Leitner & Kravtsov (2011), ApJ 734, 48; Behroozi, Wechsler & Conroy (2013), ApJ 770, 57.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

import astropy.cosmology as apc
import astropy.units as u
import numpy as np
from scipy.linalg import solve_triangular
from scipy.special import erfc, exp1, gamma, gammaincc
from scipy.stats import norm

from popmodel.literature import leja2022_coefficients, leja2022_sfs
from popmodel.smf.evolution import ContinuityParams
from popmodel.units import LN10

__all__ = [
    "FAST_TO_PROSPECTOR_OFFSET",
    "SED_MODEL_OFFSET",
    "CensusResult",
    "MassLossKernel",
    "MassOffsetPrior",
    "ReturnFractionPrior",
    "SFRDFromRho",
    "SFRDFromSFS",
    "TensionSummary",
    "apply_mass_offset",
    "chabrier2003_imf",
    "compute_census",
    "drho_star_dz",
    "fit_leja2022_form",
    "imf_mass_budget",
    "leja2022_completeness",
    "log10_phi_grid",
    "number_density",
    "p_above_cut_split_normal",
    "parameterisation_sensitivity",
    "percentile_bands",
    "raiteri1996_lifetime",
    "rho_star_draws",
    "sf_q_mass_functions",
    "sfr_history_from_mass",
    "sfrd_from_rho",
    "sfrd_from_sfs",
    "sfrd_tension",
    "ssfr_cut",
    "upper_incomplete_gamma",
]

ArrayFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


# ============================================================================================
# draws and the anchor polynomial


def _leaves(p: ContinuityParams) -> tuple[np.ndarray, ...]:
    """(lp1, lp2, lms) as (D, K) and (a1, a2) as (D,), float64 numpy."""
    if not isinstance(p, ContinuityParams):
        raise TypeError(f"expected ContinuityParams, got {type(p).__name__}")
    k = len(p.anchor_z)
    arr = [np.asarray(getattr(p, n), dtype=float) for n in ("log_phi1", "log_phi2", "log_mstar")]
    alp = [np.asarray(getattr(p, n), dtype=float) for n in ("alpha1", "alpha2")]
    batch = arr[0].shape[:-1]
    for name, a in zip(("log_phi1", "log_phi2", "log_mstar"), arr, strict=True):
        if a.shape[-1:] != (k,) or a.shape[:-1] != batch:
            raise ValueError(f"ContinuityParams.{name} has shape {a.shape}; expected {batch + (k,)}")
    for name, a in zip(("alpha1", "alpha2"), alp, strict=True):
        if a.shape != batch:
            raise ValueError(f"ContinuityParams.{name} has shape {a.shape}; expected {batch}")
    arr = [a.reshape(-1, k) for a in arr]
    alp = [a.reshape(-1) for a in alp]
    for name, a in zip(("log_phi1", "log_phi2", "log_mstar", "alpha1", "alpha2"), arr + alp, strict=True):
        if not np.all(np.isfinite(a)):
            raise ValueError(f"ContinuityParams.{name} has NaN or inf values")
    return (*arr, *alp)


def n_draws(p: ContinuityParams) -> int:
    """Number of draws D of a (possibly unbatched) ContinuityParams."""
    return _leaves(p)[0].shape[0]


def _lagrange(anchor_z: tuple[float, ...], z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r"""Lagrange basis :math:`L_k(z)` and its derivative :math:`L_k'(z)`, each (Z, K)."""
    za = np.asarray(anchor_z, dtype=float)
    z = np.atleast_1d(np.asarray(z, dtype=float))
    kk = za.size
    basis = np.ones((z.size, kk))
    deriv = np.zeros((z.size, kk))
    for k in range(kk):
        others = [j for j in range(kk) if j != k]
        for j in others:
            basis[:, k] *= (z - za[j]) / (za[k] - za[j])
        for m in others:
            term = np.full(z.size, 1.0 / (za[k] - za[m]))
            for j in others:
                if j != m:
                    term *= (z - za[j]) / (za[k] - za[j])
            deriv[:, k] += term
    return basis, deriv


def _tracks(p: ContinuityParams, z: np.ndarray) -> dict[str, np.ndarray]:
    """log phi1*, log phi2*, log M* (D, Z), their z-derivatives, and alpha1, alpha2 (D, 1)."""
    lp1, lp2, lms, a1, a2 = _leaves(p)
    basis, deriv = _lagrange(p.anchor_z, z)
    return {
        "lp1": lp1 @ basis.T, "lp2": lp2 @ basis.T, "lms": lms @ basis.T,
        "dlp1": lp1 @ deriv.T, "dlp2": lp2 @ deriv.T, "dlms": lms @ deriv.T,
        "a1": a1[:, None], "a2": a2[:, None],
    }


def log10_phi_grid(p: ContinuityParams, log_m: np.ndarray, z: np.ndarray) -> np.ndarray:
    r"""log10 :math:`\Phi` [Mpc^-3 dex^-1] for every draw, redshift and mass: shape (D, Z, M)."""
    t = _tracks(p, z)
    x = np.asarray(log_m, dtype=float)[None, None, :] - t["lms"][..., None]
    ln = []
    for lp, a in ((t["lp1"], t["a1"]), (t["lp2"], t["a2"])):
        ln.append(np.log(LN10) + LN10 * (lp[..., None] + (a[..., None] + 1.0) * x) - 10.0**x)
    return np.logaddexp(ln[0], ln[1]) / LN10


# ============================================================================================
# mass and number densities


def upper_incomplete_gamma(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    r"""Upper incomplete gamma :math:`\Gamma(a, x)=\int_x^\infty t^{a-1}e^{-t}dt` for any real a.

    scipy's ``gammaincc`` (and JAX's) is the *regularised* function and is NaN for a <= 0. For
    a <= 0 and x > 0 this uses the downward recurrence
    :math:`\Gamma(b, x) = [\Gamma(b+1, x) - x^b e^{-x}]/b` from
    :math:`\Gamma(a+n, x)`, :math:`0 < a+n < 1` (or from :math:`\Gamma(0,x)=E_1(x)` for integer
    a). Both terms are positive with the second the larger, so there is no cancellation for
    x below a few hundred (above that :math:`e^{-x}` underflows and the result is 0).

    Args:
        a: exponent (any real), broadcast against ``x``.
        x: lower limit, x > 0 (x = 0 is allowed for a > 0).
    """
    a, x = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(x, dtype=float))
    if np.any(x < 0) or np.any((x == 0) & (a <= 0)):
        raise ValueError("upper_incomplete_gamma needs x > 0 (x = 0 only for a > 0)")
    out = np.empty(a.shape)
    pos = a > 0
    out[pos] = gammaincc(a[pos], x[pos]) * gamma(a[pos])
    if np.all(pos):
        return out
    an, xn = a[~pos], x[~pos]
    near_int = np.abs(an - np.round(an)) < 1e-9
    n = np.where(near_int, -np.round(an), np.floor(-an) + 1.0).astype(int)  # steps down
    start = an + n  # in (0, 1), or 0 for integer a
    g = np.where(near_int, exp1(xn), gammaincc(np.where(near_int, 1.0, start), xn)
                 * gamma(np.where(near_int, 1.0, start)))
    with np.errstate(over="ignore", under="ignore"):
        for step in range(int(n.max(initial=0))):
            b = start - (step + 1)
            act = step < n
            term = np.exp(b * np.log(xn) - xn)
            g = np.where(act, (g - term) / np.where(act, b, 1.0), g)
    out[~pos] = g
    return out


def number_density(p: ContinuityParams, z: np.ndarray, log_m_lo: float,
                   log_m_hi: float | None = None) -> np.ndarray:
    r"""Number density of galaxies with ``log_m_lo < log M < log_m_hi`` [Mpc^-3], (D, Z).

    .. math:: n = \sum_k \phi_k^*[\Gamma(\alpha_k+1, x_{lo}) - \Gamma(\alpha_k+1, x_{hi})],
        \quad x = M/M^*,

    with :func:`upper_incomplete_gamma` (alpha_k + 1 < 0 for the steep component).
    """
    t = _tracks(p, z)
    out = np.zeros_like(t["lms"])
    for lp, a in ((t["lp1"], t["a1"]), (t["lp2"], t["a2"])):
        aa = np.broadcast_to(a + 1.0, lp.shape)
        g = upper_incomplete_gamma(aa, 10.0 ** (log_m_lo - t["lms"]))
        if log_m_hi is not None:
            g = g - upper_incomplete_gamma(aa, 10.0 ** (log_m_hi - t["lms"]))
        out = out + 10.0**lp * g
    return out


def rho_star_draws(p: ContinuityParams, z: np.ndarray, log_m_lo: float | None = 8.0,
                   log_m_hi: float | None = 13.0) -> np.ndarray:
    r"""Stellar mass density [Msun Mpc^-3] per draw between two masses, (D, Z).

    The closed form of :func:`popmodel.smf.derived.rho_star`,
    :math:`\sum_k \phi_k^* M^* [\Gamma(\alpha_k+2, x_{lo}) - \Gamma(\alpha_k+2, x_{hi})]`,
    evaluated with scipy (the JAX version compiles its incomplete gamma anew for every
    input shape, seconds each; the two agree to 1e-12, tested). ``None`` bounds integrate from
    zero mass or to infinity.
    """
    t = _tracks(p, z)
    out = np.zeros_like(t["lms"])
    for lp, a in ((t["lp1"], t["a1"]), (t["lp2"], t["a2"])):
        aa = np.broadcast_to(a + 2.0, lp.shape)
        if np.any(aa <= 0):
            raise ValueError("rho_* diverges at low mass for alpha <= -2")
        q_lo = 1.0 if log_m_lo is None else gammaincc(aa, 10.0 ** (log_m_lo - t["lms"]))
        q_hi = 0.0 if log_m_hi is None else gammaincc(aa, 10.0 ** (log_m_hi - t["lms"]))
        out = out + 10.0 ** (lp + t["lms"]) * gamma(aa) * (q_lo - q_hi)
    return out


def drho_star_dz(p: ContinuityParams, z: np.ndarray, log_m_lo: float | None = 8.0,
                 log_m_hi: float | None = 13.0) -> np.ndarray:
    r""":math:`d\rho_*/dz` [Msun Mpc^-3 per unit z] in closed form, (D, Z).

    With :math:`\rho_k = 10^{\log\phi_k+\log M^*}\,[\Gamma(a_k, x_{lo}) - \Gamma(a_k, x_{hi})]`,
    :math:`a_k=\alpha_k+2`, :math:`x=10^{\log M-\log M^*}` and
    :math:`d\Gamma(a,x)/dz = \ln 10\,(d\log M^*/dz)\,x^a e^{-x}`:

    .. math:: \frac{d\rho_k}{dz} = \ln 10\,(\log\phi_k' + \log M^{*\prime})\,\rho_k
        + 10^{\log\phi_k+\log M^*}\ln 10\,\log M^{*\prime}\,[x_{lo}^{a}e^{-x_{lo}} - x_{hi}^{a}e^{-x_{hi}}].
    """
    t = _tracks(p, z)
    out = np.zeros_like(t["lms"])
    for lp, dlp, a in ((t["lp1"], t["dlp1"], t["a1"]), (t["lp2"], t["dlp2"], t["a2"])):
        aa = np.broadcast_to(a + 2.0, lp.shape)
        if np.any(aa <= 0):
            raise ValueError("rho_* diverges at low mass for alpha <= -2; give log_m_lo")
        norm_ = 10.0 ** (lp + t["lms"])

        def gam(lm: float | None, sign: float, aa: np.ndarray = aa) -> tuple[np.ndarray, np.ndarray]:
            if lm is None:
                inf = sign < 0
                return (np.zeros_like(aa) if inf else gamma(aa)), np.zeros_like(aa)
            x = 10.0 ** (lm - t["lms"])
            with np.errstate(under="ignore"):
                return gammaincc(aa, x) * gamma(aa), np.exp(aa * np.log(x) - x)

        g_lo, e_lo = gam(log_m_lo, +1.0)
        g_hi, e_hi = gam(log_m_hi, -1.0)
        rho_k = norm_ * (g_lo - g_hi)
        out = out + LN10 * (dlp + t["dlms"]) * rho_k + norm_ * LN10 * t["dlms"] * (e_lo - e_hi)
    return out


def _cosmo(cosmology: apc.Cosmology | str | dict | None) -> apc.Cosmology:
    from popmodel.cosmology import cosmology_from_config

    return cosmology_from_config(cosmology)


def _dz_dt(z: np.ndarray, cosmo: apc.Cosmology) -> np.ndarray:
    """dz/dt = -(1+z) H(z) [per yr]."""
    z = np.asarray(z, dtype=float)
    return -(1.0 + z) * cosmo.H(z).to_value(1 / u.yr)


# ============================================================================================
# stellar mass loss


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


# ============================================================================================
# route 1: d rho_*/dt


@dataclass(frozen=True)
class SFRDFromRho:
    """Result of :func:`sfrd_from_rho`: log10 SFRD draws (D, Z) [Msun/yr/Mpc^3] and what made them."""

    log_sfrd: np.ndarray
    return_fraction: np.ndarray | None
    method: str


def sfrd_from_rho(
    p: ContinuityParams,
    z: np.ndarray,
    *,
    return_fraction: float | np.ndarray | ReturnFractionPrior = 0.36,
    kernel: MassLossKernel | None = None,
    log_m_lo: float | None = 8.0,
    log_m_hi: float | None = 13.0,
    cosmology: apc.Cosmology | str | None = None,
    seed: int | np.random.Generator = 0,
    z_start: float | None = None,
    n_time: int = 400,
) -> SFRDFromRho:
    r"""SFRD implied by the growth of :math:`\rho_*` (route 1 of the module doc).

    Args:
        p: continuity-model draws (D).
        z: redshifts (Z).
        return_fraction: R (instantaneous recycling): a number, an array (D,) of draws, or a
            :class:`ReturnFractionPrior` sampled once per draw with ``seed``. Ignored when
            ``kernel`` is given.
        kernel: a time-dependent mass-loss kernel; then :math:`\psi` is obtained by inverting
            the convolution (:func:`sfr_history_from_mass`) from ``z_start`` (default
            max(z, 3)) down to min(z), assuming a Madau & Dickinson (2014)-shaped SFR history
            before ``z_start`` normalised to :math:`\rho_*(z_{start})`.
        log_m_lo, log_m_hi: mass range of :math:`\rho_*` [log10 Msun].
        cosmology: astropy cosmology or name (default WMAP9).
        seed: seed or Generator for the R draws.
        z_start, n_time: start redshift and number of time steps of the kernel inversion.

    Returns:
        :class:`SFRDFromRho` with ``log_sfrd`` of shape (D, Z).
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    cosmo = _cosmo(cosmology)
    d = n_draws(p)
    if kernel is None:
        if isinstance(return_fraction, ReturnFractionPrior):
            rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
            r = return_fraction.sample(d, rng)
            method = f"instantaneous recycling, {return_fraction.describe()}"
        else:
            r = np.broadcast_to(np.asarray(return_fraction, dtype=float), (d,)).copy()
            if np.any((r < 0) | (r >= 1)) or not np.all(np.isfinite(r)):
                raise ValueError("return_fraction must lie in [0, 1)")
            method = ("instantaneous recycling, R = " + f"{r[0]:g}" if np.all(r == r[0])
                      else "instantaneous recycling, R per draw")
        drho_dt = drho_star_dz(p, z, log_m_lo, log_m_hi) * _dz_dt(z, cosmo)[None, :]
        psi = drho_dt / (1.0 - r[:, None])
        return SFRDFromRho(_safe_log10(psi), r, method)

    z_end = float(z.min())
    zs = float(max(z.max(), 3.0) if z_start is None else z_start)
    if zs < z.max():
        raise ValueError(f"z_start={zs} is below the largest requested redshift {z.max()}")
    zt = _z_of_t_table(cosmo)
    t_edges = np.linspace(float(cosmo.age(zs).to_value(u.yr)), float(cosmo.age(z_end).to_value(u.yr)),
                          n_time + 1)
    z_edges = np.interp(t_edges, zt[1], zt[0])
    z_edges[0], z_edges[-1] = zs, z_end
    rho = rho_star_draws(p, z_edges, log_m_lo, log_m_hi)
    from popmodel.literature import madau_dickinson2014_sfrd

    def pre(t: np.ndarray) -> np.ndarray:
        return madau_dickinson2014_sfrd(np.interp(t, zt[1], zt[0]))

    psi = sfr_history_from_mass(t_edges, rho, kernel, pre_history=pre)
    t_mid = 0.5 * (t_edges[1:] + t_edges[:-1])
    t_req = cosmo.age(z).to_value(u.yr)
    lp = _safe_log10(psi)
    out = np.array([np.interp(t_req, t_mid, np.where(np.isfinite(row), row, -1e300)) for row in lp])
    out = np.where(out < -1e200, -np.inf, out)
    return SFRDFromRho(out, None, f"mass-loss kernel: {kernel.name}; MD14-shaped history before z={zs:g}")


def _safe_log10(x: np.ndarray) -> np.ndarray:
    """log10 with -inf where x <= 0 (an SFRD from a shrinking rho_* is not physical)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log10(np.where(x > 0, x, 1.0)), -np.inf)


def _z_of_t_table(cosmo: apc.Cosmology) -> tuple[np.ndarray, np.ndarray]:
    zg = np.concatenate([np.linspace(0.0, 10.0, 4001), np.geomspace(10.05, 1500.0, 1000)])
    tg = cosmo.age(zg).to_value(u.yr)
    order = np.argsort(tg)
    return zg[order], tg[order]


def sfr_history_from_mass(
    t_edges: np.ndarray,
    rho: np.ndarray,
    kernel: MassLossKernel,
    *,
    pre_history: Callable[[np.ndarray], np.ndarray] | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    r"""Invert :math:`\rho_*(t)=\int_0^t\psi(t')[1-s f(t-t')]dt'` for a piecewise-constant ψ.

    On the grid :math:`t_0<\dots<t_N` with :math:`\psi=\psi_i` on :math:`(t_{i-1}, t_i]`,

    .. math:: \rho_*(t_n) = A\,g(t_n) + \sum_{i\le n} \psi_i
        \{\Delta_i - s[F(t_n-t_{i-1}) - F(t_n-t_i)]\},

    a lower-triangular system (diagonal :math:`\Delta_n - sF(\Delta_n) > 0`), solved exactly.
    The history before :math:`t_0` has the shape ``pre_history`` (default constant) with
    amplitude A set by :math:`\rho_*(t_0)`: :math:`g(t)=\int_0^{t_0}\mathrm{shape}(t')[1-sf(t-t')]dt'`.

    Args:
        t_edges: (N+1,) increasing cosmic times [yr], t_edges[0] > 0.
        rho: (D, N+1) surviving mass density at the edges [Msun Mpc^-3].
        kernel: the mass-loss kernel f.
        pre_history: shape of the SFR history before t_edges[0] (callable of t [yr]).
        scale: (D,) multiplier s of the kernel per draw (default 1).

    Returns:
        (D, N) mean SFR density in each interval [Msun yr^-1 Mpc^-3].
    """
    t = np.asarray(t_edges, dtype=float)
    rho = np.atleast_2d(np.asarray(rho, dtype=float))
    if t.ndim != 1 or t.size < 2 or np.any(np.diff(t) <= 0) or t[0] <= 0:
        raise ValueError("t_edges must be a 1-D increasing grid of positive times")
    if rho.shape[-1] != t.size:
        raise ValueError(f"rho has {rho.shape[-1]} times per draw; t_edges has {t.size}")
    d = rho.shape[0]
    s = np.ones(d) if scale is None else np.broadcast_to(np.asarray(scale, float), (d,))
    n = t.size - 1
    dt = np.diff(t)
    tn = t[1:, None]
    # lag integrals: F(t_n - t_{i-1}) - F(t_n - t_i) for i <= n
    lag = kernel.integral(tn - t[None, :-1]) - kernel.integral(tn - t[None, 1:])
    tri = np.tril(np.ones((n, n), dtype=bool))
    w0 = np.where(tri, dt[None, :], 0.0)
    w1 = np.where(tri, lag, 0.0)
    # pre-history on a lag grid dense near t_0
    tau = np.concatenate([[0.0], np.geomspace(1e3, t[0], 3000)])
    shape = np.ones_like(tau) if pre_history is None else np.asarray(pre_history(t[0] - tau), float)
    if np.any(shape < 0) or not np.all(np.isfinite(shape)):
        raise ValueError("pre_history must be finite and non-negative")
    ages = t[:, None] - t[0] + tau[None, :]  # (N+1, T)
    g0 = np.trapezoid(np.broadcast_to(shape, ages.shape), tau, axis=-1)
    g1 = np.trapezoid(shape * kernel(ages), tau, axis=-1)
    out = np.empty((d, n))
    if np.all(s == s[0]):
        g = g0 - s[0] * g1
        amp = rho[:, :1] / g[0]
        rhs = rho[:, 1:] - amp * g[None, 1:]
        out[:] = solve_triangular(w0 - s[0] * w1, rhs.T, lower=True).T
        return out
    for k in range(d):
        g = g0 - s[k] * g1
        rhs = rho[k, 1:] - rho[k, 0] / g[0] * g[1:]
        out[k] = solve_triangular(w0 - s[k] * w1, rhs, lower=True)
    return out


# ============================================================================================
# route 2: Phi x <SFR>


def leja2022_completeness(z: np.ndarray) -> np.ndarray:
    """Mass-completeness limit log M_c(z) [log10 Msun, Prospector masses] of the Leja+22 sample.

    3D-HST (Tal+14 -> Prospector) at z >= 0.5, COSMOS-2015 (Laigle+16 -> Prospector) below,
    where 3D-HST has no galaxies (science.md section 1.5; linear interpolation, flat beyond the
    ends, as in jrleja/sfs_leja_trained_flow).
    """
    z = np.asarray(z, dtype=float)
    hst = np.interp(z, [0.65, 1.0, 1.5, 2.1, 3.0],
                    [8.86614882, 9.07108637, 9.63281923, 9.89486727, 10.15444536])
    cos = np.interp(z, [0.175, 0.5, 0.8, 1.125, 1.525, 2.0],
                    [8.57779419, 9.13212072, 9.54630419, 9.75007079, 10.10434753, 10.30023359])
    return np.where(z >= 0.5, hst, cos)


def fit_leja2022_form(
    log_m: np.ndarray,
    log_sfr: np.ndarray,
    z: np.ndarray,
    *,
    weights: np.ndarray | None = None,
    sigma_data: float = 0.05,
    prior_sigma: tuple[float, float, float, float] = (0.3, 0.3, 0.3, 0.3),
    log_mt_grid: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    r"""Fit the Leja+22 Eq. 10 broken power law to curves log SFR(log M), one fit per row.

    For each row b the fit minimises
    :math:`\sum_m w_{bm}(y_{bm}-\hat y)^2/\sigma^2 + \sum_j (\theta_j-\theta_{0,j})^2/\sigma_j^2`
    over :math:`\theta = (a, b, c, \log M_t)`, with the prior centred on the Table 1 *mean* row
    at the row's redshift. The model is linear in (a, b, c) at fixed :math:`\log M_t`, so those
    are solved exactly on a grid of :math:`\log M_t` (profile) and the best grid point kept.
    Where the data do not reach below :math:`\log M_t`, b stays at its Table 1 value.

    Args:
        log_m: (M,) masses.
        log_sfr: (B, M) curves; NaN entries are ignored.
        z: (B,) redshift of each row (prior centre).
        weights: (B, M) non-negative weights (default: 1 where finite).
        sigma_data: assumed scatter of the curve about the form [dex] (sets the prior's weight).
        prior_sigma: prior widths of (a, b, c, log M_t).
        log_mt_grid: grid of log M_t (default 9.0-11.8 in steps of 0.01).

    Returns:
        ``{"a", "b", "c", "log_mt", "n_used"}``, each (B,).
    """
    x = np.asarray(log_m, dtype=float)
    y = np.atleast_2d(np.asarray(log_sfr, dtype=float))
    z = np.broadcast_to(np.asarray(z, dtype=float), (y.shape[0],))
    w = np.isfinite(y).astype(float) if weights is None else np.asarray(weights, float) * np.isfinite(y)
    if np.any(w < 0):
        raise ValueError("weights must be non-negative")
    y = np.where(w > 0, np.nan_to_num(y), 0.0)
    grid = np.arange(9.0, 11.8001, 0.01) if log_mt_grid is None else np.asarray(log_mt_grid, float)
    q0 = leja2022_coefficients(z, "mean")
    th0 = np.stack([q0["a"], q0["b"], q0["c"]], axis=-1)  # (B, 3)
    lam = 1.0 / np.asarray(prior_sigma[:3]) ** 2
    dx = x[None, :] - grid[:, None]  # (G, M)
    cols = np.stack([np.maximum(dx, 0.0), np.minimum(dx, 0.0), np.ones_like(dx)], axis=-1)  # (G,M,3)
    outer = (cols[..., :, None] * cols[..., None, :]).reshape(grid.size, x.size, 9)
    s2 = sigma_data**2
    sxx = np.einsum("bm,gmk->bgk", w, outer).reshape(y.shape[0], grid.size, 3, 3) / s2
    sxy = np.einsum("bm,gmi->bgi", w * y, cols) / s2
    syy = np.sum(w * y**2, axis=1) / s2
    amat = sxx + np.diag(lam)[None, None]
    rhs = sxy + (lam * th0)[:, None, :]
    theta = np.linalg.solve(amat, rhs[..., None])[..., 0]  # (B, G, 3)
    jmin = (syy[:, None] + np.sum(lam * th0**2, axis=-1)[:, None]
            - np.einsum("bgi,bgi->bg", rhs, theta)
            + (grid[None, :] - q0["log_mt"][:, None]) ** 2 / prior_sigma[3] ** 2)
    best = np.argmin(jmin, axis=1)
    th = theta[np.arange(y.shape[0]), best]
    return {"a": th[:, 0], "b": th[:, 1], "c": th[:, 2], "log_mt": grid[best],
            "n_used": np.sum(w > 0, axis=1)}


def _eq10(log_m: np.ndarray, q: dict[str, np.ndarray]) -> np.ndarray:
    xx = log_m[None, :] - q["log_mt"][:, None]
    return np.where(xx > 0, q["a"][:, None] * xx, q["b"][:, None] * xx) + q["c"][:, None]


@dataclass(frozen=True)
class SFRDFromSFS:
    """Result of :func:`sfrd_from_sfs`.

    Attributes:
        log_sfrd: (D, Z) log10 SFRD [Msun/yr/Mpc^3].
        frac_below_limit: (D, Z) fraction of the SFRD from masses below log M_c(z).
        log_mc: (Z,) completeness limit used (NaN where none).
        source: where <SFR> came from.
        eq10_fits: (E, Z) Eq. 10 parameters fitted above the limit (None when not fitted).
    """

    log_sfrd: np.ndarray
    frac_below_limit: np.ndarray
    log_mc: np.ndarray
    source: str
    eq10_fits: dict[str, np.ndarray] | None = None


def _members(arr: np.ndarray, nz: int, nm: int, what: str) -> np.ndarray:
    a = np.asarray(arr, dtype=float)
    if a.shape == (nz, nm):
        return a[None]
    if a.ndim == 3 and a.shape[1:] == (nz, nm):
        return a
    raise ValueError(f"{what} returned shape {a.shape}; expected (Z, M) = {(nz, nm)} or (E, Z, M)")


def sfrd_from_sfs(
    p: ContinuityParams,
    z: np.ndarray,
    *,
    mean_log_sfr: ArrayFn | None = None,
    completeness: Callable[[np.ndarray], np.ndarray] | None = leja2022_completeness,
    log_m_lo: float = 8.0,
    log_m_hi: float = 13.0,
    dlogm: float = 0.01,
    fit_kwargs: dict | None = None,
) -> SFRDFromSFS:
    r"""SFRD as :math:`\int\Phi\,\langle\mathrm{SFR}\rangle\,d\log M` (route 2 of the module doc).

    Args:
        p: continuity-model draws (D).
        z: redshifts (Z).
        mean_log_sfr: callable ``(log_m (M,), z (Z,)) -> log10 <SFR>`` of shape (Z, M) or
            (E, Z, M) (E ensemble members; SMF draw d is paired with member d mod E); NaN where
            the model is not defined. Used only at and above ``completeness(z)``; below it the
            Eq. 10 form fitted to it above the limit (:func:`fit_leja2022_form`). ``None``: the
            Leja+22 Table 1 mean fit at all masses.
        completeness: callable z -> log M_c (default :func:`leja2022_completeness`); ``None``
            uses the model at all masses (and reports no below-limit fraction).
        log_m_lo, log_m_hi: integration range [log10 Msun].
        dlogm: quadrature step [dex] (trapezoid).
        fit_kwargs: extra arguments of :func:`fit_leja2022_form`.
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    if not log_m_hi > log_m_lo:
        raise ValueError(f"log_m_hi={log_m_hi} must exceed log_m_lo={log_m_lo}")
    lm = np.linspace(log_m_lo, log_m_hi, round((log_m_hi - log_m_lo) / dlogm) + 1)
    log_mc = np.full(z.shape, np.nan) if completeness is None else np.asarray(completeness(z), float)
    fits = None
    if mean_log_sfr is None:
        ls = leja2022_sfs(lm[None, :], z[:, None], "mean")[None]
        source = "Leja+22 Table 1 mean fit (Eq. 10) at all masses: no SFS posterior given"
    else:
        flow = _members(mean_log_sfr(lm, z), z.size, lm.size, "mean_log_sfr")
        e = flow.shape[0]
        above = lm[None, :] >= np.nan_to_num(log_mc, nan=-np.inf)[:, None]  # (Z, M)
        use = np.isfinite(flow) & above[None]
        fit_y = np.where(use, flow, np.nan).reshape(e * z.size, lm.size)
        step = max(1, round(0.05 / dlogm))
        fits = fit_leja2022_form(lm[::step], fit_y[:, ::step], np.tile(z, e), **(fit_kwargs or {}))
        param = _eq10(lm, fits).reshape(e, z.size, lm.size)
        ls = np.where(use, flow, param)
        fits = {k: v.reshape(e, z.size) for k, v in fits.items()}
        source = ("SFS model above log M_c(z); below it (and where the model is undefined) the "
                  "Leja+22 Eq. 10 form fitted to the model above the limit")
    d = n_draws(p)
    member = np.arange(d) % ls.shape[0]
    total = np.empty((d, z.size))
    below = np.full((d, z.size), np.nan)
    dl = np.diff(lm)
    for k in range(z.size):  # one redshift at a time keeps memory at (D, M)
        integrand = 10.0 ** (log10_phi_grid(p, lm, z[k : k + 1])[:, 0] + ls[member, k])
        cum = np.concatenate([np.zeros((d, 1)),
                              np.cumsum(0.5 * (integrand[:, 1:] + integrand[:, :-1]) * dl, axis=-1)],
                             axis=-1)
        total[:, k] = cum[:, -1]
        mc = log_mc[k]
        if np.isfinite(mc):  # linear interpolation of the running integral at log M_c
            mcc = float(np.clip(mc, lm[0], lm[-1]))
            j = int(min(np.searchsorted(lm, mcc, side="right") - 1, lm.size - 2))
            frac = (mcc - lm[j]) / (lm[j + 1] - lm[j])
            below[:, k] = cum[:, j] + frac * (cum[:, j + 1] - cum[:, j])
    return SFRDFromSFS(np.log10(total), below / total, log_mc, source, fits)


# ============================================================================================
# star-forming and quiescent mass functions


def ssfr_cut(z: np.ndarray, kind: str = "hubble", *, factor: float = 0.2,
             cosmology: apc.Cosmology | str | None = None) -> np.ndarray:
    r"""log10 of the sSFR [yr^-1] separating star-forming from quiescent galaxies.

    Args:
        kind: ``"hubble"``: :math:`\mathrm{sSFR} = 0.2/t_H(z)` with :math:`t_H` the age of the
            Universe (Pacifici et al. 2016, ApJ 832, 79; Carnall et al. 2018, MNRAS 480, 4379);
            ``"constant"``: :math:`10^{-11}` yr^-1 (the UniverseMachine definition, Behroozi
            et al. 2019, used in its quenched mass functions).
        factor: the multiplier of :math:`1/t_H` for ``"hubble"``.
    """
    z = np.asarray(z, dtype=float)
    if kind == "hubble":
        return np.log10(factor / _cosmo(cosmology).age(z).to_value(u.yr))
    if kind == "constant":
        return np.full(z.shape, -11.0)
    raise ValueError(f"ssfr cut kind must be 'hubble' or 'constant', not {kind!r}")


def p_above_cut_split_normal(log_sfr_cut: np.ndarray, q16: np.ndarray, q50: np.ndarray,
                             q84: np.ndarray) -> np.ndarray:
    r"""P(log SFR > cut) for a split normal with the given 16/50/84th percentiles.

    Two half-Gaussians of widths :math:`q_{50}-q_{16}` and :math:`q_{84}-q_{50}` joined at the
    median (each holds half the probability), so the percentiles are reproduced exactly. An
    approximation for a bimodal population; use the flow's own conditional where available.
    """
    c, a, m, b = np.broadcast_arrays(*(np.asarray(v, float) for v in (log_sfr_cut, q16, q50, q84)))
    lo, hi = m - a, b - m
    if np.any(lo[np.isfinite(lo)] <= 0) or np.any(hi[np.isfinite(hi)] <= 0):
        raise ValueError("percentiles must satisfy q16 < q50 < q84")
    with np.errstate(invalid="ignore"):
        up = 0.5 * erfc((c - m) / (hi * np.sqrt(2.0)))
        dn = 1.0 - 0.5 * erfc((m - c) / (lo * np.sqrt(2.0)))
    return np.where(c >= m, up, dn)


def sf_q_mass_functions(p: ContinuityParams, log_m: np.ndarray, z: np.ndarray,
                        p_star_forming: ArrayFn) -> tuple[np.ndarray, np.ndarray]:
    r"""Star-forming and quiescent mass functions :math:`\Phi\,P` and :math:`\Phi\,(1-P)`.

    Args:
        p: continuity-model draws (D).
        log_m: (M,) masses; z: (Z,) redshifts.
        p_star_forming: callable ``(log_m, z) -> P(sSFR > cut | M, z)`` of shape (Z, M) or
            (E, Z, M) (member d mod E for draw d); the cut is the caller's (document it, e.g.
            :func:`ssfr_cut`). NaN where undefined (propagates).

    Returns:
        (log10 Phi_SF, log10 Phi_Q), each (D, Z, M) [Mpc^-3 dex^-1].
    """
    lm = np.asarray(log_m, dtype=float)
    z = np.atleast_1d(np.asarray(z, dtype=float))
    prob = _members(p_star_forming(lm, z), z.size, lm.size, "p_star_forming")
    if np.any((prob < 0) | (prob > 1)):
        raise ValueError("p_star_forming must return probabilities in [0, 1]")
    log_phi = log10_phi_grid(p, lm, z)
    pr = prob[np.arange(log_phi.shape[0]) % prob.shape[0]]
    with np.errstate(divide="ignore"):
        return log_phi + np.log10(pr), log_phi + np.log10(1.0 - pr)


# ============================================================================================
# mass-offset nuisance


@dataclass(frozen=True)
class MassOffsetPrior:
    r"""Prior on a systematic shift :math:`\delta` of all stellar masses (SED-model systematics).

    The mass function in the shifted mass scale is :math:`\Phi(\log M - \delta)`: the anchors of
    :math:`\log M^*` move by :math:`\delta` (one draw per posterior draw).

    Attributes:
        kind: ``"uniform"`` on [a, b] or ``"normal"`` with mean a and sd b.
        a, b: parameters [dex].
        label: what the offset represents.
    """

    kind: str = "normal"
    a: float = 0.0
    b: float = 0.1
    label: str = "SED-model mass systematic"

    def __post_init__(self) -> None:
        if self.kind not in ("uniform", "normal"):
            raise ValueError(f"mass-offset prior kind must be 'uniform' or 'normal', not {self.kind!r}")
        if (self.kind == "uniform" and self.b < self.a) or (self.kind == "normal" and self.b < 0):
            raise ValueError(f"bad mass-offset prior parameters ({self.a}, {self.b})")

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.kind == "uniform":
            return rng.uniform(self.a, self.b, size=n)
        return rng.normal(self.a, self.b, size=n)

    def describe(self) -> str:
        par = f"U({self.a:g}, {self.b:g})" if self.kind == "uniform" else f"N({self.a:g}, {self.b:g})"
        return f"{self.label}: delta log M ~ {par} dex"


#: FAST -> Prospector: Prospector-alpha masses are 0.1-0.3 dex higher than FAST's (Leja et al.
#: 2019b, ApJ 877, 140); use when an SMF fitted to FAST masses is compared with Prospector ones.
FAST_TO_PROSPECTOR_OFFSET = MassOffsetPrior("uniform", 0.1, 0.3, "FAST -> Prospector masses")
#: A symmetric 0.1 dex uncertainty on the mass scale of any one SED model.
SED_MODEL_OFFSET = MassOffsetPrior("normal", 0.0, 0.1, "SED-model mass systematic")


def apply_mass_offset(p: ContinuityParams, offsets: np.ndarray) -> ContinuityParams:
    """Shift every draw's log M* anchors by ``offsets`` (D,) [dex] (float64 numpy leaves)."""
    lp1, lp2, lms, a1, a2 = _leaves(p)
    off = np.asarray(offsets, dtype=float)
    if off.ndim != 1 or (off.size != lp1.shape[0] and lp1.shape[0] != 1):
        raise ValueError(f"offsets must be (D,) with D = {lp1.shape[0]} draws, got {off.shape}")
    dd = off.size
    rep = (lambda x: np.broadcast_to(x, (dd,) + x.shape[1:]).copy()) if lp1.shape[0] == 1 else (lambda x: x)
    return ContinuityParams(rep(lp1), rep(lp2), rep(lms) + off[:, None], rep(a1), rep(a2), p.anchor_z)


# ============================================================================================
# tension and sensitivity


@dataclass(frozen=True)
class TensionSummary:
    r"""Distribution of :math:`\Delta = \log\psi_B - \log\psi_A` over paired draws, per redshift.

    Attributes:
        z: (Z,) redshifts.
        delta_p16, delta_p50, delta_p84: percentiles of Δ [dex].
        prob_positive: P(Δ > 0), ties counted one half.
        n_sigma: :math:`\Phi^{-1}(P(\Delta>0))`, the Gaussian-equivalent significance (signed;
            positive when B is higher). With D draws P is clipped to [1/(2D), 1 - 1/(2D)], so
            ``abs(n_sigma)`` cannot exceed :math:`\Phi^{-1}(1-1/2D)` (2.9 for D = 500).
        z_score: mean(Δ)/sd(Δ) (0 where both vanish; NaN where some Δ is infinite).

    A draw whose route-1 SFRD is not positive (log = -inf, a shrinking rho_*) counts as
    Δ = +inf: it enters P(Δ > 0) and the percentiles, not the mean.
    """

    z: np.ndarray
    delta_p16: np.ndarray
    delta_p50: np.ndarray
    delta_p84: np.ndarray
    prob_positive: np.ndarray
    n_sigma: np.ndarray
    z_score: np.ndarray


def sfrd_tension(log_a: np.ndarray, log_b: np.ndarray, z: np.ndarray) -> TensionSummary:
    """Tension between two SFRD routes from paired draws (both (D, Z), row d = SMF draw d)."""
    a, b = np.atleast_2d(np.asarray(log_a, float)), np.atleast_2d(np.asarray(log_b, float))
    if a.shape != b.shape:
        raise ValueError(f"paired draws must have equal shapes, got {a.shape} and {b.shape}")
    if np.any(np.isnan(a)) or np.any(np.isnan(b)):
        raise ValueError("SFRD draws contain NaN")
    if np.any(a == np.inf) or np.any(b == np.inf) or np.any((a == -np.inf) & (b == -np.inf)):
        raise ValueError("SFRD draws are +inf, or -inf in both routes for the same draw")
    with np.errstate(invalid="ignore"):
        delta = b - a  # +-inf where one route's SFRD is not positive
    d = delta.shape[0]
    q = percentile_bands(delta)
    prob = (np.sum(delta > 0, axis=0) + 0.5 * np.sum(delta == 0, axis=0)) / d
    n_sig = norm.ppf(np.clip(prob, 0.5 / d, 1 - 0.5 / d))
    fin = np.isfinite(delta)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = np.where(fin.all(axis=0), delta.mean(axis=0), np.nan)
        sd = np.where(fin.all(axis=0), delta.std(axis=0), np.nan)
        zs = np.where(sd > 0, mu / sd, np.where(mu == 0, 0.0, np.sign(mu) * np.inf))
    zs = np.where(np.isnan(mu), np.nan, zs)
    return TensionSummary(np.asarray(z, float), q[0], q[1], q[2], prob, n_sig, zs)


# ============================================================================================
# the whole census


def percentile_bands(x: np.ndarray, q: tuple[float, ...] = (16, 50, 84)) -> np.ndarray:
    """Percentiles over the draw axis (0), robust to non-finite values: (len(q), ...).

    Columns (draw sets) with a NaN give NaN; columns with +-inf (e.g. log10 of a non-positive
    SFRD, or of a zero probability) use the non-interpolating ``inverted_cdf`` definition so
    that inf never meets inf; finite columns use linear interpolation.
    """
    x = np.asarray(x, dtype=float)
    flat = x.reshape(x.shape[0], -1)
    out = np.full((len(q), flat.shape[1]), np.nan)
    has_nan = np.any(np.isnan(flat), axis=0)
    fin = np.all(np.isfinite(flat), axis=0)
    if np.any(fin):
        out[:, fin] = np.percentile(flat[:, fin], q, axis=0)
    inf = ~fin & ~has_nan
    if np.any(inf):
        out[:, inf] = np.percentile(flat[:, inf], q, axis=0, method="inverted_cdf")
    return out.reshape((len(q),) + x.shape[1:])


@dataclass(frozen=True)
class CensusResult:
    """Census draws on a redshift grid; all log10 arrays are (D, Z).

    Attributes:
        z: (Z,) redshifts.
        log_rho_star: [Msun Mpc^-3] over ``mass_range``.
        log_sfrd_from_rho, log_sfrd_from_sfs: [Msun yr^-1 Mpc^-3] (routes 1 and 2).
        frac_below_limit: fraction of route 2 from below log M_c(z).
        log_mc: (Z,) completeness limit used by route 2.
        return_fraction: (D,) R draws (None with a kernel).
        mass_offset: (D,) mass offsets [dex] (None when off).
        meta: labels and settings (``band_label`` is "statistical only" without the offset).
    """

    z: np.ndarray
    log_rho_star: np.ndarray
    log_sfrd_from_rho: np.ndarray
    log_sfrd_from_sfs: np.ndarray
    frac_below_limit: np.ndarray
    log_mc: np.ndarray
    return_fraction: np.ndarray | None
    mass_offset: np.ndarray | None
    meta: dict

    def bands(self, name: str, q: tuple[float, ...] = (16, 50, 84)) -> np.ndarray:
        """Percentiles over draws of ``log_rho_star``, ``log_sfrd_from_rho``, ... : (len(q), Z)."""
        return percentile_bands(getattr(self, name), q)

    def tension(self) -> TensionSummary:
        """Route 2 minus route 1, from the paired draws."""
        return sfrd_tension(self.log_sfrd_from_rho, self.log_sfrd_from_sfs, self.z)

    def table(self) -> object:
        """An astropy Table: ``z``; p16/p50/p84 of ``log_rho_star``, ``log_sfrd_from_rho``,
        ``log_sfrd_from_sfs``, ``frac_sfrd_below_limit``; the tension columns; ``meta``."""
        from astropy.table import Table

        cols: dict[str, object] = {"z": self.z}
        units = {"log_rho_star": u.dex(u.Msun / u.Mpc**3),
                 "log_sfrd_from_rho": u.dex(u.Msun / u.yr / u.Mpc**3),
                 "log_sfrd_from_sfs": u.dex(u.Msun / u.yr / u.Mpc**3)}
        for name, unit in units.items():
            b = self.bands(name)
            for k, lab in enumerate(("p16", "p50", "p84")):
                cols[f"{name}_{lab}"] = b[k] * unit
        fb = self.bands("frac_below_limit")
        for k, lab in enumerate(("p16", "p50", "p84")):
            cols[f"frac_sfrd_below_limit_{lab}"] = fb[k]
        cols["log_mass_limit"] = self.log_mc
        try:
            t = self.tension()
            cols.update({"delta_sfs_minus_rho_p16": t.delta_p16, "delta_sfs_minus_rho_p50": t.delta_p50,
                         "delta_sfs_minus_rho_p84": t.delta_p84, "prob_sfs_above_rho": t.prob_positive,
                         "tension_n_sigma": t.n_sigma})
        except ValueError:
            pass
        return Table(cols, meta=dict(self.meta))


def compute_census(
    p: ContinuityParams,
    z: np.ndarray,
    *,
    log_m_lo: float = 8.0,
    log_m_hi: float = 13.0,
    return_fraction: float | ReturnFractionPrior = ReturnFractionPrior(),
    kernel: MassLossKernel | None = None,
    mean_log_sfr: ArrayFn | None = None,
    completeness: Callable[[np.ndarray], np.ndarray] | None = leja2022_completeness,
    mass_offset: MassOffsetPrior | None = None,
    cosmology: apc.Cosmology | str | None = None,
    seed: int = 0,
    sfs_label: str | None = None,
) -> CensusResult:
    """rho_*(z) and both SFRD routes from the same draws (see the module doc).

    The R draws and the mass offsets come from independent streams spawned from ``seed``, so
    switching one on does not change the other. The mass offset (one per draw) is shared by
    both routes.

    Args:
        p: continuity-model draws (D).
        z: (Z,) redshifts.
        log_m_lo, log_m_hi: mass range of rho_* and of both SFRDs [log10 Msun].
        return_fraction, kernel: route 1 (:func:`sfrd_from_rho`).
        mean_log_sfr, completeness: route 2 (:func:`sfrd_from_sfs`).
        mass_offset: optional :class:`MassOffsetPrior`; None = statistical only.
        cosmology: astropy cosmology or name (default WMAP9).
        seed: master seed.
        sfs_label: describes ``mean_log_sfr`` in the metadata.
    """
    z = np.atleast_1d(np.asarray(z, dtype=float))
    r_seq, off_seq = np.random.SeedSequence(seed).spawn(2)
    d = n_draws(p)
    offsets = None
    if mass_offset is not None:
        offsets = mass_offset.sample(d, np.random.default_rng(off_seq))
        p = apply_mass_offset(p, offsets)
    cosmo = _cosmo(cosmology)
    lrho = np.log10(rho_star_draws(p, z, log_m_lo, log_m_hi))
    r1 = sfrd_from_rho(p, z, return_fraction=return_fraction, kernel=kernel, log_m_lo=log_m_lo,
                       log_m_hi=log_m_hi, cosmology=cosmo, seed=np.random.default_rng(r_seq))
    r2 = sfrd_from_sfs(p, z, mean_log_sfr=mean_log_sfr, completeness=completeness,
                       log_m_lo=log_m_lo, log_m_hi=log_m_hi)
    band = "statistical only" if mass_offset is None else f"statistical + {mass_offset.describe()}"
    from popmodel.cosmology import describe_cosmology

    if kernel is not None:
        short = "kernel: " + kernel.name.split(" (")[0]
    elif isinstance(return_fraction, ReturnFractionPrior):
        short = return_fraction.short()
    else:
        short = r1.method.replace("instantaneous recycling, ", "")
    meta = {
        "band_label": band,
        "sfrd_from_rho_short": short,
        "n_draws": d,
        "mass_range_log10_msun": [log_m_lo, log_m_hi],
        "sfrd_from_rho_method": r1.method,
        "sfrd_from_sfs_source": r2.source + (f" ({sfs_label})" if sfs_label else ""),
        "completeness": "none" if completeness is None else getattr(completeness, "__name__", "callable"),
        "cosmology": describe_cosmology(cosmo),
        "imf": "Chabrier2003",
        "seed": seed,
        "units": {"rho_star": "Msun Mpc-3", "sfrd": "Msun yr-1 Mpc-3", "comoving": True},
    }
    return CensusResult(z, lrho, r1.log_sfrd, r2.log_sfrd, r2.frac_below_limit, r2.log_mc,
                        r1.return_fraction, offsets, meta)


def parameterisation_sensitivity(p_a: ContinuityParams, p_b: ContinuityParams, z: np.ndarray,
                                 **census_kwargs: object) -> object:
    """How the census moves between two SMF redshift parameterisations (e.g. 3 vs 4 anchors).

    Runs :func:`compute_census` on both sets of draws (same seed and settings) and returns an
    astropy Table per redshift: the shift of each route's median (B - A) [dex], that shift in
    units of A's 16-84% half-width, and the route-2 minus route-1 tension (median and n_sigma)
    under each parameterisation.
    """
    from astropy.table import Table

    ca = compute_census(p_a, z, **census_kwargs)  # type: ignore[arg-type]
    cb = compute_census(p_b, z, **census_kwargs)  # type: ignore[arg-type]
    cols: dict[str, object] = {"z": ca.z}
    for name in ("log_rho_star", "log_sfrd_from_rho", "log_sfrd_from_sfs"):
        ba, bb = ca.bands(name), cb.bands(name)
        shift = bb[1] - ba[1]
        half = 0.5 * (ba[2] - ba[0])
        cols[f"{name}_shift"] = shift
        with np.errstate(invalid="ignore", divide="ignore"):
            cols[f"{name}_shift_in_sigma"] = np.where(half > 0, shift / half, np.nan)
    for tag, c in (("a", ca), ("b", cb)):
        t = c.tension()
        cols[f"tension_delta_p50_{tag}"] = t.delta_p50
        cols[f"tension_n_sigma_{tag}"] = t.n_sigma
    return Table(cols, meta={"anchors_a": list(p_a.anchor_z), "anchors_b": list(p_b.anchor_z),
                             "band_label": ca.meta["band_label"]})
