"""Every figure popmodel draws: numbers in, matplotlib figures out.

:mod:`~popmodel.plots.smf` (the mass function in redshift panels, saving), :mod:`~popmodel.plots.sfs`
(the star-forming sequence), :mod:`~popmodel.plots.census` (rho_*, the SFR density by both
routes, the SF/Q mass functions), :mod:`~popmodel.plots.checks` (the SMF model checks) and
:mod:`~popmodel.plots.figures` (the figures of an analysis, drawn from its result folders).

This package imports nothing heavy: matplotlib is imported by the functions that draw.
"""

__all__ = ["FIGURES", "NEEDS"]

#: The figures of ``popmodel figures``, in the order of issue 5 item 3: (a) ... (e).
FIGURES = ("smf", "rho_star", "sfrd", "sfs", "residuals")
#: What each figure needs (any one of the result folders, in order of preference).
NEEDS = {"smf": ("smf",), "rho_star": ("census", "smf"), "sfrd": ("census",), "sfs": ("sfs",),
         "residuals": ("smf", "sfs")}
