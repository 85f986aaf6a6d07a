r"""Systematics of the census: the stellar-mass offset and the tension between the SFRD routes.

The mass offset (one draw per posterior draw, :class:`MassOffsetPrior`) shifts every log M*
anchor; the tension compares the two SFRD routes draw by draw: both use the same SMF draw (and
the same mass offset), so the difference distribution carries their correlation.

References:
    | Leja et al. (2019b), ApJ 877, 140 (FAST vs Prospector masses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from popmodel.smf.derived import draw_arrays, percentile_bands
from popmodel.smf.evolution import ContinuityParams

__all__ = [
    "FAST_TO_PROSPECTOR_OFFSET",
    "SED_MODEL_OFFSET",
    "MassOffsetPrior",
    "TensionSummary",
    "apply_mass_offset",
    "sfrd_tension",
]


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
    lp1, lp2, lms, a1, a2 = draw_arrays(p)
    off = np.asarray(offsets, dtype=float)
    if off.ndim != 1 or (off.size != lp1.shape[0] and lp1.shape[0] != 1):
        raise ValueError(f"offsets must be (D,) with D = {lp1.shape[0]} draws, got {off.shape}")
    dd = off.size
    rep = (lambda x: np.broadcast_to(x, (dd,) + x.shape[1:]).copy()) if lp1.shape[0] == 1 else (lambda x: x)
    return ContinuityParams(rep(lp1), rep(lp2), rep(lms) + off[:, None], rep(a1), rep(a2), p.anchor_z)




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
