r"""The census result: rho_*(z) and both SFRD routes from the same draws (:func:`compute_census`).

Its Python API takes objects: a :class:`~popmodel.census.kernels.ReturnFractionPrior` or a
:class:`~popmodel.census.kernels.MassLossKernel` (or None), a
:class:`~popmodel.census.systematics.MassOffsetPrior` (or None), callables for the SFS.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import astropy.cosmology as apc
import astropy.units as u
import numpy as np

from popmodel.census.densities import n_draws, rho_star_draws
from popmodel.census.kernels import MassLossKernel, ReturnFractionPrior
from popmodel.census.sfrd import ArrayFn, leja2022_completeness, sfrd_from_rho, sfrd_from_sfs
from popmodel.census.systematics import (
    MassOffsetPrior,
    TensionSummary,
    apply_mass_offset,
    sfrd_tension,
)
from popmodel.cosmology import cosmology_from_config, describe_cosmology
from popmodel.smf.derived import percentile_bands
from popmodel.smf.evolution import ContinuityParams

__all__ = ["CensusResult", "compute_census", "parameterisation_sensitivity"]

#: The default prior on R of :func:`compute_census` (frozen, so one instance serves every call).
DEFAULT_RETURN_FRACTION = ReturnFractionPrior()


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

    @classmethod
    def load(cls, path: str | object) -> object:
        """Read a census result folder (``popmodel census``): a
        :class:`popmodel.io.census.CensusFolder` whose ``result`` is this class, rebuilt from
        ``census_draws.nc``, and whose ``sfrd(z, route=...)`` / ``rho_star(z)`` answer from
        the stored draws. Delegates to :func:`popmodel.io.census.load_census` (imported when
        called: this module does not import the io layer)."""
        from popmodel.io.census import load_census

        return load_census(path)

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
    return_fraction: float | ReturnFractionPrior = DEFAULT_RETURN_FRACTION,
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
    cosmo = cosmology_from_config(cosmology)
    lrho = np.log10(rho_star_draws(p, z, log_m_lo, log_m_hi))
    r1 = sfrd_from_rho(p, z, return_fraction=return_fraction, kernel=kernel, log_m_lo=log_m_lo,
                       log_m_hi=log_m_hi, cosmology=cosmo, seed=np.random.default_rng(r_seq))
    r2 = sfrd_from_sfs(p, z, mean_log_sfr=mean_log_sfr, completeness=completeness,
                       log_m_lo=log_m_lo, log_m_hi=log_m_hi)
    band = "statistical only" if mass_offset is None else f"statistical + {mass_offset.describe()}"
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
