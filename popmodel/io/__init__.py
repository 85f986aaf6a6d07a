"""Result formats, each written and read in one place (the layer between the core and the plots).

:mod:`~popmodel.io.smf` (the mass-function posterior ``smf_posterior.nc`` and tables;
:class:`~popmodel.io.smf.SMFResult`), :mod:`~popmodel.io.sfs` (the sequence: ``sfs.ecsv``,
flows; :class:`~popmodel.io.sfs.SFSResult`), :mod:`~popmodel.io.census` (the census's inputs and
outputs, ``census_draws.nc``; :class:`~popmodel.io.census.CensusFolder`),
:mod:`~popmodel.io.results` (``popmodel.load``), :mod:`~popmodel.io.resultdir` (staged result
folders with a manifest) and :mod:`~popmodel.io.meta` (netCDF attributes, ECSV units, input
checksums). Modules here import the core only, never :mod:`popmodel.plots` or
:mod:`popmodel.cli`: figures reach a writer as a callable.
"""
