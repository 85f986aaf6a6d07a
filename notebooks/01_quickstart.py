# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # popmodel quick start: a mock survey, the hierarchical SMF, and $\rho_*$(z)
#
# Draw a mock deep survey from the Leja et al. (2020) continuity model, with noisy masses and
# photometric redshifts, selected on the *observed* values like a real catalogue; fit the
# continuity model to the per-galaxy posterior samples; compare Phi and $\rho_*$ with the truth.
# Run as a script: `python notebooks/01_quickstart.py` (set `POPMODEL_SMOKE=1` for a seconds-long
# version). Open as a notebook with jupytext.

# %%
import os

os.environ.setdefault("JAX_ENABLE_X64", "1")
import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

from popmodel.mock import draw_mock
from popmodel.smf.derived import log10_phi_draws, log10_rho_star, percentile_bands
from popmodel.smf.evolution import leja2020_params
from popmodel.smf.fit import FitConfig, fit_smf
from popmodel.testing import deep_survey

SMOKE = os.environ.get("POPMODEL_SMOKE") == "1"

# %% [markdown]
# ## A survey and a mock catalogue

# %%
survey = deep_survey(n_fields=2, area_arcmin2=30.0 if SMOKE else 150.0)
catalog, truth = draw_mock(survey, seed=42, n_samples=8 if SMOKE else 32)
print(f"{catalog.n_galaxies} galaxies selected of {sum(truth.n_true.values())} drawn")

# %% [markdown]
# ## The fit: MAP, Laplace, Monte Carlo checks, then NUTS

# %%
cfg = (FitConfig(method="laplace", num_samples=200, n_bootstrap=2, progress_bar=False) if SMOKE
       else FitConfig(num_warmup=200, num_samples=300))
fit = fit_smf(catalog, survey, cfg)

# %% [markdown]
# ## Phi at z = 1 and $\rho_*$(z) against the truth

# %%
lm = np.array([9.5, 10.0, 10.5, 11.0, 11.5])
band = percentile_bands(log10_phi_draws(fit.draws(), lm, 1.0))
true = log10_phi_draws(leja2020_params(), lm, 1.0)[0]
for m, lo, med, hi, t in zip(lm, *band, true, strict=True):
    print(f"log M = {m:5.2f}: log Phi = {med:6.3f} [{lo:6.3f}, {hi:6.3f}]   truth {t:6.3f}")
z = np.array([0.5, 1.0, 2.0])
rb = percentile_bands(log10_rho_star(fit.draws(), z))
print("log rho_* (8 < log M < 13):", np.round(rb[1], 3), "truth", np.round(log10_rho_star(leja2020_params(), z), 3))
