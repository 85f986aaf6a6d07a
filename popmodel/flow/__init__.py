r"""The deconvolving normalizing flow of the galaxy population and the star-forming sequence.

PyTorch + zuko only: nothing here imports JAX or numpyro (numpy arrays cross the boundary).

Modules, one concept each:

- :mod:`~popmodel.flow.model`: the flow p(z, log M, log SFR) = p(z, log M) p(log SFR | z, log M)
  (zuko neural-spline flows, standardised inputs; optionally conditional on z).
- :mod:`~popmodel.flow.data`: posterior catalogues as padded arrays.
- :mod:`~popmodel.flow.selection`: selection on observed mass and its likelihood normalisation.
- :mod:`~popmodel.flow.train`: the deconvolution loss with the small-S bias correction,
  early stopping, checkpoints.
- :mod:`~popmodel.flow.stream`: training from a catalogue on disk, in chunks of galaxies.
- :mod:`~popmodel.flow.distributed`: training on several processes or GPUs (DDP, torchrun).
- :mod:`~popmodel.flow.sfs`: ridge, log10 <SFR>, percentiles and bimodality of
  p(log SFR | log M, z).
- :mod:`~popmodel.flow.parametric`: Leja et al. 2022 Eq. 10 with Table 1, and its fitter.
- :mod:`~popmodel.flow.leja2022`: the released Leja et al. 2022 flow, reimplemented to load
  its weights.
- :mod:`~popmodel.flow.fit`: the ensemble fit behind ``popmodel fit-sfs``.
- :mod:`~popmodel.flow.mock`: mocks with known sequences; :mod:`~popmodel.flow.threedhst`: the
  packaged 3D-HST sample with UV+IR SFRs.
- :mod:`~popmodel.io.sfs`, :mod:`~popmodel.plots.sfs`, :mod:`~popmodel.cli.sfs`.

Example::

    from popmodel.flow import SFSConfig, fit_sfs, sequence_mock

    catalog, survey, truth = sequence_mock(5000, n_samples=16)
    fit = fit_sfs(catalog, survey, SFSConfig(n_members=2))
    fit.table["ridge_p50"]
"""

import importlib
from typing import TYPE_CHECKING

# Public names are loaded on first use (PEP 562), so that ``import popmodel.cli.sfs`` (done by
# the ``popmodel`` command line to build its parser) does not import torch.
_WHERE = {
    "SFSConfig": "fit", "SFSFit": "fit", "fit_sfs": "fit", "load_flow": "fit", "save_flow": "fit",
    "Leja2022Flow": "leja2022",
    "leja2022_flow_mock": "mock", "sequence_mock": "mock",
    "FlowConfig": "model", "SFSFlow": "model",
    "LEJA2022_TABLE1": "parametric", "eq10_log_sfr": "parametric", "fit_eq10": "parametric",
    "leja2022_log_sfr": "parametric",
    "sequence_statistics": "sfs",
    "FlowTrainingError": "train", "TrainConfig": "train", "train_flow": "train",
    "FlowStream": "stream", "train_flow_distributed": "distributed",
}

if TYPE_CHECKING:
    from popmodel.flow.distributed import train_flow_distributed
    from popmodel.flow.fit import SFSConfig, SFSFit, fit_sfs, load_flow, save_flow
    from popmodel.flow.leja2022 import Leja2022Flow
    from popmodel.flow.mock import leja2022_flow_mock, sequence_mock
    from popmodel.flow.model import FlowConfig, SFSFlow
    from popmodel.flow.parametric import (
        LEJA2022_TABLE1,
        eq10_log_sfr,
        fit_eq10,
        leja2022_log_sfr,
    )
    from popmodel.flow.sfs import sequence_statistics
    from popmodel.flow.stream import FlowStream
    from popmodel.flow.train import FlowTrainingError, TrainConfig, train_flow


def __getattr__(name: str) -> object:
    if name in _WHERE:
        return getattr(importlib.import_module(f"popmodel.flow.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'popmodel.flow' has no attribute {name!r}")


__all__ = [
    "LEJA2022_TABLE1",
    "FlowConfig",
    "FlowStream",
    "FlowTrainingError",
    "Leja2022Flow",
    "SFSConfig",
    "SFSFit",
    "SFSFlow",
    "TrainConfig",
    "eq10_log_sfr",
    "fit_eq10",
    "fit_sfs",
    "leja2022_flow_mock",
    "leja2022_log_sfr",
    "load_flow",
    "save_flow",
    "sequence_mock",
    "sequence_statistics",
    "train_flow",
    "train_flow_distributed",
]
