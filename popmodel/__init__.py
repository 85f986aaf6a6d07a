"""popmodel: population-level hierarchical inference of galaxy demographics.

The names a notebook needs, resolved when first used (``import popmodel`` loads neither jax,
torch nor matplotlib):

- :class:`PosteriorCatalog` (:mod:`popmodel.catalog`): per-galaxy posterior samples;
- :class:`Survey`, :class:`Field` (:mod:`popmodel.survey`): fields, areas, completeness;
- :func:`draw_mock` (:mod:`popmodel.mock`): a mock catalogue from the Leja et al. 2020 model;
- :func:`fit_smf` (:mod:`popmodel.smf.fit`, JAX): the stellar mass function;
- :func:`fit_sfs` (:mod:`popmodel.flow.fit`, torch): the star-forming sequence;
- :func:`load` (:mod:`popmodel.io.results`): any result folder, with ``.smf.phi(log_mass, z)``,
  ``.smf.rho_star(z)``, ``.sfs.ridge(log_mass, z)`` and ``.census.sfrd(z, route=...)``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from popmodel._version import __version__

if TYPE_CHECKING:
    from popmodel.catalog import PosteriorCatalog
    from popmodel.flow.fit import fit_sfs
    from popmodel.io.results import load
    from popmodel.mock import draw_mock
    from popmodel.smf.fit import fit_smf
    from popmodel.survey import Field, Survey

__all__ = [
    "Field",
    "PosteriorCatalog",
    "Survey",
    "__version__",
    "draw_mock",
    "fit_sfs",
    "fit_smf",
    "load",
]

_LAZY = {
    "PosteriorCatalog": "popmodel.catalog",
    "Survey": "popmodel.survey",
    "Field": "popmodel.survey",
    "draw_mock": "popmodel.mock",
    "fit_smf": "popmodel.smf.fit",
    "fit_sfs": "popmodel.flow.fit",
    "load": "popmodel.io.results",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'popmodel' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolved once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
