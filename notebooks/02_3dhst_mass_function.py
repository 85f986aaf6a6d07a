# ---
# jupyter:
#   jupytext:
#     formats: py:percent
# ---

# %% [markdown]
# # The real 3D-HST mass function against Tomczak et al. (2014)
#
# Fit the Leja et al. (2020) continuity model to the packaged 3D-HST sample (Leja's `td_new`
# selection, FAST masses, the Tomczak et al. 2014 mass-completeness limits), then compare the
# fitted Phi(M, z) with the ZFOURGE/NMBS mass functions of Tomczak et al. (2014), which use
# the same kind of masses (FAST, Chabrier). This is a quick look: a MAP fit with its Laplace
# approximation and no cosmic-variance terms. The main job (`popmodel fit-3dhst`) runs NUTS.
# Two figures: the fitted Phi in the Tomczak et al. redshift bins with their points, and the
# stellar mass density $\rho_*$(z) against their fit.
#
# The catalogue has no mass posteriors; popmodel builds approximate ones from the redshift
# percentiles with an **assumed** 0.1 dex mass uncertainty (recorded in the outputs).
#
# Run as a script: `python notebooks/02_3dhst_mass_function.py`; `POPMODEL_SMOKE=1` fits one
# field (COSMOS) at 0.5 < z < 1.5 with 4 samples per galaxy, in well under a minute.

# %%
import os
import warnings

# tqdm (imported by NumPyro) warns in a Jupyter kernel without ipywidgets; no progress bars here
warnings.filterwarnings("ignore", message="IProgress not found")
os.environ.setdefault("JAX_ENABLE_X64", "1")
import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

from popmodel.datasets import catalog_from_3dhst_table, load_3dhst_table, threedhst_survey
from popmodel.literature import tomczak2014_rho_star, tomczak2014_smf
from popmodel.plots.smf import plot_rho_star, plot_smf
from popmodel.smf import checks
from popmodel.smf.derived import log10_phi_draws, log10_rho_star, percentile_bands
from popmodel.smf.fit import FitConfig, fit_smf
from popmodel.survey import Survey

SMOKE = os.environ.get("POPMODEL_SMOKE") == "1"

# %% [markdown]
# ## The sample and the survey
# Five CANDELS/3D-HST fields, 0.5 < z < 2.55, in the catalogue's own cosmology (H0 = 70,
# Om0 = 0.3). The smoke version keeps one field (with its own area, so densities stay
# correct) and 0.5 < z < 1.5.

# %%
Z_MIN, Z_MAX = (0.5, 1.5) if SMOKE else (0.5, 2.55)
survey = threedhst_survey(z_min=Z_MIN, z_max=Z_MAX)
table = load_3dhst_table("td_new")
if SMOKE:
    survey = Survey([survey.field("COSMOS")], cosmology=survey.cosmology, name="3D-HST COSMOS")
    table = table[np.asarray(table["field"]) == "COSMOS"]
catalog, report = catalog_from_3dhst_table(table, n_samples=4 if SMOKE else 16,
                                           mass_error_dex=0.1, seed=0, z_min=Z_MIN, z_max=Z_MAX)
print(f"{catalog.n_galaxies} galaxies in {survey.field_names}")

# %% [markdown]
# ## MAP + Laplace fit (no cosmic-variance terms)

# %%
cfg = FitConfig(method="laplace", num_samples=200 if SMOKE else 1000, n_bootstrap=0,
                cosmic_variance=False, progress_bar=False)
fit = fit_smf(catalog, survey, cfg, log=lambda s: None)
print(fit.data.report.summary())
for line in fit.summary_lines()[1:]:
    print(line)

# %% [markdown]
# ## Phi against Tomczak et al. (2014)
# Their points, converted to our cosmology (here the same: H0 = 70, Om0 = 0.3), against the
# posterior median of Phi at the middle of each of their redshift bins, above the 3D-HST
# limit. The difference is printed in dex with their error; agreement within ~0.1-0.2 dex is
# expected (same kind of masses, different fields and methods).

# %%
draws = fit.draws()
z_lo, z_hi = fit.data.z_data_range
limit = {f.name: f for f in survey.fields}
rows = []
for pts in tomczak2014_smf(survey.cosmology):
    zc = 0.5 * (pts.z_lo + pts.z_hi)
    if not z_lo <= zc <= z_hi:
        continue
    mc = max(float(f.log_mass_limit(pts.z_hi)) for f in limit.values())
    ok = (pts.log_mass >= mc) & (pts.log_mass <= 11.5)
    if not np.any(ok):
        continue
    lo, med, hi = percentile_bands(log10_phi_draws(draws, pts.log_mass[ok], zc))
    err = 0.5 * (pts.err_hi[ok] + pts.err_lo[ok])
    for m, p, t, e in zip(pts.log_mass[ok], med, pts.log_phi[ok], err, strict=True):
        rows.append((zc, m, p, t, e))
print(" z     log M   log Phi(fit)  Tomczak+14   diff [dex]")
for zc, m, p, t, e in rows:
    print(f"{zc:4.2f}  {m:6.2f}  {p:10.3f}  {t:10.3f}   {p - t:+.3f} +- {e:.3f}")
diff = np.array([p - t for _, _, p, t, _ in rows])
print(f"{diff.size} points: median difference {np.median(diff):+.3f} dex, "
      f"rms {np.sqrt(np.mean(diff**2)):.3f} dex")

# %% [markdown]
# The same comparison as a figure: one panel per Tomczak et al. redshift bin inside the data,
# the posterior median and 16-84% band of Phi at the bin centre, their points, and in grey the
# masses below the 3D-HST completeness limit at the bin's upper edge.

# %%
tomczak = tomczak2014_smf(survey.cosmology)
bins = [(pts.z_lo, pts.z_hi) for pts in tomczak if z_lo <= 0.5 * (pts.z_lo + pts.z_hi) <= z_hi]
z_panels = [0.5 * (a + b) for a, b in bins]
lm_grid = np.linspace(8.5, 12.0, 71)
bands = np.stack([percentile_bands(log10_phi_draws(draws, lm_grid, zz)) for zz in z_panels],
                 axis=1)
fig_smf = plot_smf(lm_grid, z_panels, bands, points=tomczak,
                   completeness=[max(float(f.log_mass_limit(b)) for f in survey.fields)
                                 for _, b in bins],
                   panel_titles=[f"{a:g} < z < {b:g}" for a, b in bins],
                   title=f"{survey.name}: {catalog.n_galaxies} galaxies, MAP + Laplace")

# %% [markdown]
# ## The stellar mass density
# $\rho_*$ over 9 < log M < 13 from the same draws, against the Tomczak et al. (2014) fit
# $\log\rho_* = -0.33(1+z) + 8.75$; grey: redshifts outside the fitted sample.

# %%
z_grid = np.linspace(max(0.2, z_lo - 0.3), min(3.0, z_hi + 0.3), 41)  # the data and a bit beyond
rho_bands = percentile_bands(log10_rho_star(draws, z_grid, 9.0, 13.0))
fig_rho = plot_rho_star(z_grid, rho_bands,
                        reference=tomczak2014_rho_star(z_grid, survey.cosmology),
                        reference_label="Tomczak+14 fit", data_range=(z_lo, z_hi),
                        mass_range=(9.0, 13.0))
for zz in (0.75, 1.25, 2.0):
    if z_lo <= zz <= z_hi:
        k = int(np.argmin(np.abs(z_grid - zz)))
        print(f"z = {z_grid[k]:.2f}: log rho_* (9 < log M < 13) = {rho_bands[1, k]:.3f} "
              f"[{rho_bands[0, k]:.3f}, {rho_bands[2, k]:.3f}]; Tomczak+14 fit "
              f"{float(tomczak2014_rho_star(z_grid[k], survey.cosmology)):.3f}")

# %% [markdown]
# ## A posterior predictive check
# Predicted against observed counts in (field, log M, z) bins; the 95% predictive intervals
# should cover about 95% of the populated bins (popmodel.smf.checks).

# %%
m_edges = np.arange(9.0, 12.01, 0.25)
z_edges = np.linspace(z_lo, z_hi, 5)
sub = jax.tree_util.tree_map(lambda a: a[:100] if SMOKE else a, draws)  # fewer draws: faster
mu = checks.predicted_counts(fit.data, sub, m_edges, z_edges)
pred = checks.posterior_predictive_counts(mu, np.random.default_rng(0))
obs = checks.observed_counts(catalog, survey, m_edges, z_edges)
cov, tab = checks.ppc_coverage(obs, pred, 0.95)
print(f"95% posterior predictive coverage: {cov:.3f} of {tab.meta['n_scored']} populated bins")
