"""Shared set-up of the sampler-geometry experiments (issue 16, item 1): the default
``fit-3dhst`` data (16 samples per galaxy, float32 sample arrays, posterior "auto", density
terms) or the README example's mock, and their MAP, cached in $SAMPLER_GEOMETRY_DIR
(default /tmp/sampler_geometry). Run with JAX_ENABLE_X64=1 and OPENBLAS_NUM_THREADS=1."""

import os
import pickle
import time
from pathlib import Path

import numpy as np

from popmodel.datasets import threedhst_catalog, threedhst_survey
from popmodel.smf.data import prepare_smf_data
from popmodel.smf.inference import find_map, release_memory
from popmodel.smf.model import SMFPrior

OUT = os.environ.get("SAMPLER_GEOMETRY_DIR", "/tmp/sampler_geometry")
os.makedirs(OUT, exist_ok=True)


def build(seed=0):
    survey = threedhst_survey()
    cat, _ = threedhst_catalog(n_samples=16, seed=seed, z_min=0.5, z_max=2.55)
    data = prepare_smf_data(cat, survey, posterior="auto", dtype=np.float32)
    prior = SMFPrior(density_terms=data.density.labels)
    return data, prior


def build_readme():
    from popmodel.mock import draw_mock
    from popmodel.survey import Field, Survey

    field = Field(
        "deep",
        area=150.0,
        area_unit="arcmin2",
        z_min=0.2,
        z_max=3.0,
        completeness_z=[0.65, 1.0, 1.5, 2.1, 3.0],
        completeness_log_mass=[8.87, 9.07, 9.63, 9.89, 10.15],
        mass_error_dex=[0.1, 0.2, 0.3],
        z_error=0.02,
    )
    survey = Survey([field])
    catalog, _truth = draw_mock(survey, seed=1)
    data = prepare_smf_data(catalog, survey, posterior="auto")
    prior = SMFPrior(density_terms=data.density.labels if data.density is not None else ())
    return data, prior


def get(seed=0):
    """seed >= 0: the 3D-HST data (that catalogue seed); -1: the README example's mock."""
    data, prior = build(seed) if seed >= 0 else build_readme()
    fn = os.path.join(OUT, f"map_s{seed}.pkl")
    if os.path.exists(fn):
        mp = pickle.loads(Path(fn).read_bytes())
    else:
        t = time.time()
        mp = find_map(data, prior)
        print("MAP", time.time() - t, mp.message, flush=True)
        Path(fn).write_bytes(pickle.dumps(mp))
        release_memory()
    return data, prior, mp


if __name__ == "__main__":
    get(0)
