"""Write the worked example of docs/guide/bring_your_own.md: a small chains file and its survey.

Run from the repository root (deterministic: the same files every time)::

    python tests/data/byo/make_example.py

It draws a mock survey from the Leja et al. (2020) median continuity model
(:func:`popmodel.mock.draw_mock`: Gaussian mass and photometric-redshift errors, galaxies
selected on their noisy catalogue values), gives each galaxy log SFR samples around the
Leja et al. (2022) ridge (Eq. 10; 0.3 dex scatter, 0.3 dex measurement error), and writes
what an SED-fitting team would collate:

* ``example_chains.h5``: the ``chains`` layout of :func:`popmodel.readers.read_posteriors`:
  ``chains`` (n_obj, n_samples, 4) with ``theta_labels`` ``logmass, zred, logsfr, dust2``
  (``dust2`` is not used by popmodel), ``objid``, ``field``, ``weights``, and the catalogue
  point estimates ``obs_log_mass`` / ``obs_z`` that the survey's cuts acted on. One object's
  chain is shorter (padded with NaN samples of weight 0) and one object's fit failed (every
  sample NaN), as in real collated files;
* ``survey.toml``: the one field, its area, redshift range, completeness limits and the error
  model of its catalogue values (``mass_error_dex``, ``z_error``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import jax
import numpy as np

from popmodel.flow.parametric import leja2022_log_sfr
from popmodel.mock import draw_mock
from popmodel.survey import Field, Survey

HERE = Path(__file__).resolve().parent
SEED = 20260401
N_SAMPLES = 48


def example_survey() -> Survey:
    """One deep field: 3D-HST-like completeness raised by 0.6 dex, so the mock stays small."""
    field = Field(
        "EXAMPLE", area=6.0, area_unit="arcmin2", z_min=0.5, z_max=2.5,
        completeness_z=[0.5, 1.0, 1.5, 2.1, 2.5],
        completeness_log_mass=[9.6, 9.7, 10.2, 10.5, 10.6],
        mass_error_dex=0.15, z_error=0.03,
    )
    return Survey([field], name="bring-your-own example")  # WMAP9, Chabrier: the defaults


def write_example(out: Path = HERE) -> dict:
    """Write ``example_chains.h5`` and ``survey.toml`` into ``out``; returns a summary."""
    jax.config.update("jax_enable_x64", True)  # the mock's rate grid in float64, as in the tests
    out.mkdir(parents=True, exist_ok=True)
    survey = example_survey()
    cat, truth = draw_mock(survey, seed=SEED, n_samples=N_SAMPLES)
    rng = np.random.default_rng(SEED + 1)
    n, s = cat.n_galaxies, N_SAMPLES
    log_mass = cat.log_mass.reshape(n, s)
    z = cat.z.reshape(n, s)
    # log SFR: the Leja et al. (2022) ridge at the true (log M, z), 0.3 dex intrinsic scatter;
    # observed with a 0.3 dex error; the posterior is that Gaussian likelihood (flat prior)
    true_sfr = leja2022_log_sfr(truth.true_log_mass, truth.true_z) + 0.3 * rng.standard_normal(n)
    obs_sfr = true_sfr + 0.3 * rng.standard_normal(n)
    log_sfr = obs_sfr[:, None] + 0.3 * rng.standard_normal((n, s))
    dust2 = rng.uniform(0.0, 2.0, (n, s))

    chains = np.stack([log_mass, z, log_sfr, dust2], axis=-1)
    weights = np.ones((n, s))
    objid = [f"byo{i:03d}" for i in range(n)]
    fields = list(cat.fields)
    obs_log_mass, obs_z = cat.obs_log_mass.copy(), cat.obs_z.copy()
    # a shorter chain: its last 8 samples are padding (NaN, weight 0)
    chains[3, -8:] = np.nan
    weights[3, -8:] = 0.0
    # one object whose SED fit failed: every sample NaN (read, counted and excluded)
    chains = np.concatenate([chains, np.full((1, s, 4), np.nan)])
    weights = np.concatenate([weights, np.ones((1, s))])
    objid.append("byo_failed")
    fields.append("EXAMPLE")
    obs_log_mass = np.append(obs_log_mass, np.nan)
    obs_z = np.append(obs_z, np.nan)

    text = h5py.string_dtype("utf-8")
    with h5py.File(out / "example_chains.h5", "w", track_order=True) as f:
        f.create_dataset("chains", data=chains.astype(np.float32), track_times=False)
        f.create_dataset("theta_labels", data=["logmass", "zred", "logsfr", "dust2"],
                         dtype=text, track_times=False)
        f.create_dataset("objid", data=objid, dtype=text, track_times=False)
        f.create_dataset("field", data=fields, dtype=text, track_times=False)
        f.create_dataset("weights", data=weights.astype(np.float32), track_times=False)
        f.create_dataset("obs_log_mass", data=obs_log_mass, track_times=False)
        f.create_dataset("obs_z", data=obs_z, track_times=False)
    survey.write(out / "survey.toml")
    return {"n_objects": n + 1, "n_samples": s, "n_selected": truth.n_selected,
            "expected_true": truth.expected_true}


if __name__ == "__main__":
    print(write_example())
