"""The stellar mass function (JAX + NumPyro): Leja et al. 2020 continuity model.

Modules: :mod:`~popmodel.smf.schechter` (the double Schechter form),
:mod:`~popmodel.smf.evolution` (parameters through anchor redshifts),
:mod:`~popmodel.smf.likelihood` (the inhomogeneous-Poisson likelihood over posterior samples),
:mod:`~popmodel.smf.model` (the thin NumPyro model and its priors),
:mod:`~popmodel.smf.derived` (Phi bands, rho_*).
"""
