"""The SED fitter's interim prior, however a user gives it.

Forms accepted by :func:`resolve_interim_prior` (and by ``fit_smf``, ``fit_sfs``, ``FitConfig``
and ``--interim-prior`` on the command line):

* nothing: the catalogue's per-sample ``log_prior`` column when it has one (the prior of
  (log M, z), per dex per unit z), else flat;
* ``"flat"``: a flat prior, even if the catalogue has a column (the column is then ignored,
  and the fit says so);
* a named prior with a version, ``"prospector-beta-like@1"`` (``"prospector-beta"`` and
  ``"prospector-beta-like"`` name the current version): the Prospector-beta-like prior of
  :class:`popmodel.mock.ProspectorBetaLikePrior` (after Wang, Leja et al. 2023, ApJL 944, L58);
* a file of draws from the SED fitter's prior (``.npz``, or any table astropy reads, with
  ``log_mass``, ``z`` and optionally ``log_sfr``): a Gaussian kernel density estimate of
  them (:class:`popmodel.catalog.KDEPrior`); without ``log_sfr`` it serves the mass function
  only (the flow then needs the catalogue's ``log_prior_sfr``);
* in Python, a callable ``f(log_mass, z[, log_sfr])`` returning the natural-log density, or
  any :class:`popmodel.catalog.InterimPrior`.

The prior is evaluated at every sample only where the catalogue has no ``log_prior``
column; with a column, the column is what is divided out, and the object is used to check
that quadrature nodes stay inside its support (:func:`popmodel.represent.represent`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from popmodel.catalog import (
    CallablePrior,
    CatalogError,
    FlatPrior,
    InterimPrior,
    KDEPrior,
    PosteriorCatalog,
)

__all__ = ["NAMED_PRIORS", "describe_interim_prior", "named_prior", "resolve_interim_prior"]

#: name -> (current version, {version: factory})
NAMED_PRIORS: dict[str, tuple[str, dict[str, Callable[[], InterimPrior]]]] = {}


def _prospector_beta_like() -> InterimPrior:
    from popmodel.mock import ProspectorBetaLikePrior

    return ProspectorBetaLikePrior()


NAMED_PRIORS["prospector-beta-like"] = ("1", {"1": _prospector_beta_like})
_ALIASES = {"prospector-beta": "prospector-beta-like"}


def named_prior(spec: str) -> tuple[InterimPrior, str]:
    """The named prior ``name[@version]`` and its canonical ``name@version``."""
    name, _, version = spec.partition("@")
    name = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if name not in NAMED_PRIORS:
        raise CatalogError(f"unknown interim prior {spec!r}: give 'flat', one of "
                           f"{sorted(NAMED_PRIORS) + sorted(_ALIASES)} (optionally @version), a "
                           "file of prior draws, or, in Python, a callable")
    current, versions = NAMED_PRIORS[name]
    version = version.strip() or current
    if version not in versions:
        raise CatalogError(f"interim prior {name!r} has no version {version!r} (versions: "
                           f"{sorted(versions)})")
    return versions[version](), f"{name}@{version}"


def _draws_prior(path: str) -> KDEPrior:
    if path.endswith(".npz"):
        with np.load(path) as f:
            cols = {k: np.asarray(f[k], float) for k in f.files}
    else:
        from astropy.table import Table

        try:
            t = Table.read(path)
        except Exception as exc:  # astropy's registry errors name no format the user knows
            raise CatalogError(f"interim-prior draws {path!r}: cannot read it as a table "
                               f"({type(exc).__name__}: {exc}); give an .npz file or a table "
                               "astropy reads (FITS, ECSV, HDF5, Parquet)") from exc
        cols = {c: np.asarray(t[c], float) for c in t.colnames}
    missing = [c for c in ("log_mass", "z") if c not in cols]
    if missing:
        raise CatalogError(f"interim-prior draws {path!r}: column(s) {missing} missing (has "
                           f"{sorted(cols)}); give log_mass, z and optionally log_sfr")
    return KDEPrior.from_draws(cols["log_mass"], cols["z"], cols.get("log_sfr"))


def describe_interim_prior(spec: Any) -> str | None:
    """A JSON-friendly record of an interim-prior spec (for the result files)."""
    if spec is None or isinstance(spec, str):
        return spec
    return f"python object {type(spec).__name__}"


def resolve_interim_prior(
    catalog: PosteriorCatalog, spec: Any = None,
) -> tuple[PosteriorCatalog, InterimPrior | None, str]:
    """Apply an interim-prior spec (module doc) to a catalogue.

    Returns:
        ``(catalog, prior, note)``: the catalogue with the ``log_prior`` (and, with SFR,
        ``log_prior_sfr``) it should be divided by; the prior as an object where one is known
        (for support checks), else None; a line for the fit's log.

    Raises:
        CatalogError: an unknown name or version, an unreadable file of draws.
    """
    has_col = catalog.log_prior is not None
    if spec is None:
        if not has_col:
            return catalog, None, "interim prior: flat (the catalogue has no log_prior column)"
        n = int(catalog.varying_log_prior().sum())
        return catalog, None, (f"interim prior: the catalogue's per-sample log_prior column, "
                               f"divided out for the {n} galaxies where it varies (constant "
                               "within a galaxy is flat for it)")
    if isinstance(spec, str) and spec.strip().lower() == "flat":
        note = "interim prior: flat"
        if has_col:
            note += " (as asked; the catalogue's log_prior column is ignored)"
        return _with(catalog, FlatPrior()), FlatPrior(), note
    if isinstance(spec, str | os.PathLike) and os.path.exists(os.fspath(spec)):
        prior = _draws_prior(os.fspath(spec))
        label = f"a Gaussian KDE of the prior draws in {os.fspath(spec)!r}"
    elif isinstance(spec, str):
        prior, label = named_prior(spec)
    elif isinstance(spec, InterimPrior):
        prior, label = spec, type(spec).__name__
    elif callable(spec):
        prior, label = CallablePrior(spec), "a Python callable"
    else:
        raise CatalogError(f"interim_prior must be None, 'flat', a name, a file of prior draws "
                           f"or a callable; got {type(spec).__name__}")
    if has_col:
        return catalog, prior, (f"interim prior: the catalogue's log_prior column is divided "
                                f"out; {label} checks that quadrature nodes stay in its support")
    return _with(catalog, prior), prior, f"interim prior: {label}, evaluated at every sample"


def _with(catalog: PosteriorCatalog, prior: InterimPrior) -> PosteriorCatalog:
    if isinstance(prior, FlatPrior):
        import dataclasses

        return dataclasses.replace(catalog, log_prior=None, log_prior_sfr=None)
    out = catalog.with_interim_prior(prior)
    bad = ~np.isfinite(out.log_prior)
    if np.any(bad):
        ids = np.unique(out.ids[out.galaxy_index[bad]])
        raise CatalogError(f"the interim prior is zero at {int(bad.sum())} samples of "
                           f"{ids.size} galaxies (e.g. {', '.join(map(repr, ids[:5].tolist()))}): "
                           "a posterior sample cannot lie where its prior is zero; is this the "
                           "prior the posteriors were drawn under?")
    return out
