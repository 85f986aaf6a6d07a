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
:math:`\psi = (d\rho_*/dt)/(1-R)` with :math:`dt = -dz/[(1+z)H(z)]`
(Madau & Dickinson 2014, ARA&A 52, 415);
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

Modules (one family each): :mod:`~popmodel.census.densities` (Phi on a grid, n(>M), rho_*,
d rho_*/dz), :mod:`~popmodel.census.kernels` (IMF, lifetimes, mass-loss kernels, the R prior),
:mod:`~popmodel.census.sfrd` (both SFRD routes, the SF/Q split, the Leja+22 completeness and
form), :mod:`~popmodel.census.systematics` (mass offset, tension) and
:mod:`~popmodel.census.result` (:class:`CensusResult`, :func:`compute_census`). Every public
name is importable from ``popmodel.census``.
"""

from popmodel.census.densities import (
    drho_star_dz,
    log10_phi_grid,
    n_draws,
    number_density,
    rho_star_draws,
    upper_incomplete_gamma,
)
from popmodel.census.kernels import (
    MassLossKernel,
    ReturnFractionPrior,
    chabrier2003_imf,
    imf_mass_budget,
    raiteri1996_lifetime,
)
from popmodel.census.result import (
    DEFAULT_RETURN_FRACTION,
    CensusResult,
    compute_census,
    parameterisation_sensitivity,
)
from popmodel.census.sfrd import (
    SFRDFromRho,
    SFRDFromSFS,
    fit_leja2022_form,
    leja2022_completeness,
    p_above_cut_split_normal,
    sf_q_mass_functions,
    sfr_history_from_mass,
    sfrd_from_rho,
    sfrd_from_sfs,
    ssfr_cut,
)
from popmodel.census.systematics import (
    FAST_TO_PROSPECTOR_OFFSET,
    SED_MODEL_OFFSET,
    MassOffsetPrior,
    TensionSummary,
    apply_mass_offset,
    sfrd_tension,
)
from popmodel.smf.derived import percentile_bands

__all__ = [
    "DEFAULT_RETURN_FRACTION",
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
    "n_draws",
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
