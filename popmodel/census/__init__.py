r"""The cosmic census from continuity-model draws: rho_*(z), n(>M) and the SFR density two ways.

Every function takes a :class:`~popmodel.smf.evolution.ContinuityParams` whose leaves carry a
leading draw axis (D posterior draws; an unbatched one counts as D = 1) and returns arrays with
that axis first, so each derived quantity is a set of draws and its bands are percentiles over
them. Units: :math:`\rho_*` in Msun Mpc^-3, number densities in Mpc^-3, SFR densities in
Msun yr^-1 Mpc^-3 (comoving, no h), Chabrier IMF, WMAP9 unless a cosmology is given.

The SFR density comes two ways, both derived in :mod:`popmodel.census.sfrd`: route 1 from
the time derivative of the mass density, :math:`\psi = (d\rho_*/dt)/(1-R)` or the inversion of
a :class:`MassLossKernel`; route 2 from the mass function times the population-mean SFR of the
star-forming sequence.

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
