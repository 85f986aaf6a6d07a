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
# Three figures: the mock in the mass-redshift plane, the fitted mass function with its band
# against the truth, and $\rho_*$(z).
# Run as a script: `python notebooks/01_quickstart.py` (NUTS, several minutes on 2 cores; set
# `POPMODEL_SMOKE=1` for a quick Laplace version). Open as a notebook with jupytext.

# %%
import os
import warnings

# tqdm (imported by NumPyro) warns in a Jupyter kernel without ipywidgets; no progress bars here
warnings.filterwarnings("ignore", message="IProgress not found")
os.environ.setdefault("JAX_ENABLE_X64", "1")
import jax

jax.config.update("jax_enable_x64", True)
import matplotlib.pyplot as plt
import numpy as np

from popmodel.mock import draw_mock
from popmodel.plots.smf import plot_rho_star, plot_smf
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
# The catalogue is selected on the *observed* (noisy) masses and redshifts: galaxies scatter
# across the completeness limit in both directions, which the likelihood's selection term
# accounts for (Eddington bias).

# %%
zg = np.linspace(survey.fields[0].z_min, survey.fields[0].z_max, 200)
fig, ax = plt.subplots(figsize=(5.5, 4.0))
ax.scatter(truth.true_z, truth.true_log_mass, s=2, color="0.6", lw=0,
           label="true (selected galaxies)")
ax.scatter(catalog.obs_z, catalog.obs_log_mass, s=2, color="C0", lw=0, alpha=0.6,
           label="catalogue point estimates")
ax.plot(zg, survey.fields[0].log_mass_limit(zg), "k-", lw=1.2, label="mass-completeness limit")
ax.set_xlabel("redshift z")
ax.set_ylabel(r"$\log_{10}\,M_*/M_\odot$")
ax.set_ylim(8.0, 12.0)
ax.legend(fontsize=7, markerscale=4, loc="lower right")
ax.set_title(f"mock survey: {catalog.n_galaxies} galaxies in {len(survey.fields)} fields")
fig.tight_layout()

# %% [markdown]
# ## The fit: MAP, Laplace, Monte Carlo checks, then NUTS
# `log=print` shows the fit's progress and its diagnostics here (by default they go to the
# `popmodel.smf.fit` logger). The quick smoke version fits too few galaxies and samples for
# some parameters, and says so.

# %%
# the smoke version: Laplace draws, the samples as they are, no bootstrap of the Monte Carlo error
cfg = (FitConfig(method="laplace", num_samples=200, n_bootstrap=0, posterior="samples",
                 progress_bar=False) if SMOKE
       else FitConfig(num_warmup=200, num_samples=300, progress_bar=False))
fit = fit_smf(catalog, survey, cfg, log=print)

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

# %% [markdown]
# ## The figures
# The posterior median and 16-84% band of Phi at three redshifts, against the model the mock
# was drawn from (dashed); shaded: below the completeness limit, where the fit extrapolates.

# %%
lm_grid = np.linspace(8.5, 12.0, 71)
z_panels = [0.5, 1.0, 2.0]
bands = np.stack([percentile_bands(log10_phi_draws(fit.draws(), lm_grid, zz)) for zz in z_panels],
                 axis=1)
true_phi = np.stack([log10_phi_draws(leja2020_params(), lm_grid, zz)[0] for zz in z_panels])
fig_smf = plot_smf(lm_grid, z_panels, bands, reference=true_phi,
                   reference_label="truth (Leja+20 medians)",
                   completeness=[float(survey.fields[0].log_mass_limit(zz)) for zz in z_panels])

# %%
z_grid = np.linspace(0.2, 3.0, 57)
fig_rho = plot_rho_star(z_grid, percentile_bands(log10_rho_star(fit.draws(), z_grid)),
                        reference=log10_rho_star(leja2020_params(), z_grid),
                        reference_label="truth (Leja+20 medians)")
