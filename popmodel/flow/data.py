"""Posterior catalogues as padded arrays for the flow, with the standardisation and checks.

The flow's loss needs, for every galaxy i and posterior sample s, the point
x_is = (z, log M, log SFR), the normalised log weight ln w_is (sum_s w_is = 1; -inf pads
galaxies with fewer samples than the largest) and the interim-prior log density ln pi_i(x_is).
Galaxies with more than ``max_samples`` samples keep an evenly spaced subset of them with
their weights renormalised (the samples of a posterior are exchangeable, so this is a smaller
draw of the same posterior).

**Exact redshifts.** With ``z_jitter`` > 0, galaxies whose samples all share one redshift
(spectroscopic redshifts, mocks) get Gaussian redshift jitter of ``z_jitter * (1 + z)`` on their
samples. This bounds the likelihood: a flow evaluated at one exact redshift shared by many
galaxies (3D-HST quotes spectroscopic redshifts to 4 decimals; 1934 distinct values for 2745
galaxies, up to 22 at one value) can otherwise grow a spike there, or, conditioned on z, put a
narrow mass spike at that redshift only, and the importance sum then diverges (seen on the
3D-HST sample: the validation loss fell without bound). The jitter is equivalent to smoothing
the population model in redshift by a kernel of that width, far below the scales on which the
sequence evolves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popmodel.catalog import CatalogError, PosteriorCatalog

__all__ = ["FlowData", "check_point_estimates", "flow_data_from_catalog"]

#: Where catalogue point estimates can lie (the mass-function model's support, the same
#: numbers as :data:`popmodel.smf.data.LOG_MASS_SUPPORT` / ``Z_SUPPORT``; kept here so that the
#: torch side does not import JAX).
POINT_ESTIMATE_SUPPORT = {"log_mass_obs": ("obs_log_mass", 4.0, 14.0, False),
                          "z_obs": ("obs_z", 0.0, 12.0, True)}


def check_point_estimates(catalog: PosteriorCatalog, among: np.ndarray | None = None) -> None:
    """Raise CatalogError when ``log_mass_obs`` / ``z_obs`` lie outside [4, 14] / (0, 12].

    These per-galaxy point estimates pick the galaxies that pass the survey's cuts and set
    the SFS table's grid; in other units than the samples (a linear mass such as 1e10) every
    galaxy would pass the mass limit without a word. The message names the column and the
    galaxies.

    Args:
        catalog: the catalogue.
        among: ``(N,)`` mask of the galaxies to check (default all), e.g. those that pass the
            survey's cuts (a galaxy the cuts drop may lie outside: 3D-HST holds one of
            log M = 3.97).
    """
    for col, (attr, lo, hi, open_lo) in POINT_ESTIMATE_SUPPORT.items():
        x = getattr(catalog, attr, None)
        if x is None:
            continue
        x = np.asarray(x, float)
        bad = ((x <= lo) if open_lo else (x < lo)) | (x > hi)
        if among is not None:
            bad &= among
        if np.any(bad):
            ids = ", ".join(repr(str(i)) for i in catalog.ids[bad][:5])
            hint = ("; it looks like a linear mass: give log10 M/Msun, in the same units as the "
                    "samples") if attr == "obs_log_mass" and np.median(x[bad]) > 1e3 else ""
            raise CatalogError(
                f"point-estimate column {col!r} has values outside {'(' if open_lo else '['}"
                f"{lo}, {hi}] for {int(bad.sum())} of the "
                f"{x.size if among is None else int(among.sum())} galaxies checked ({ids}"
                f"{', ...' if bad.sum() > 5 else ''}; e.g. {float(x[bad][0])!r}){hint}"
            )


@dataclass
class FlowData:
    """Training arrays of one posterior catalogue.

    Attributes:
        x: ``(N, S, 3)`` float64 points (z, log M, log SFR); padding repeats the first sample.
        log_weight: ``(N, S)`` normalised natural-log sample weights, -inf for padding.
        log_prior: ``(N, S)`` natural-log interim prior density (0 for a flat prior).
        field_index: ``(N,)`` index into ``field_names``.
        field_names: Fields present, sorted.
        ids: ``(N,)`` galaxy ids.
        z_ref: ``(N,)`` catalogue redshift of each galaxy (``obs_z`` or the weighted median).
        log_mass_ref: ``(N,)`` catalogue mass (``obs_log_mass`` or the weighted median).
        ess: ``(N,)`` Kish effective sample size of each galaxy's weights.
        n_samples: ``(N,)`` samples kept per galaxy.
    """

    x: np.ndarray
    log_weight: np.ndarray
    log_prior: np.ndarray
    field_index: np.ndarray
    field_names: list[str]
    ids: np.ndarray
    z_ref: np.ndarray
    log_mass_ref: np.ndarray
    ess: np.ndarray
    n_samples: np.ndarray

    @property
    def n_galaxies(self) -> int:
        """Number of galaxies."""
        return int(self.x.shape[0])

    def subset(self, idx: np.ndarray) -> FlowData:
        """Galaxies ``idx`` (integer indices, repeats allowed, e.g. for a bootstrap)."""
        idx = np.asarray(idx)
        return FlowData(
            x=self.x[idx], log_weight=self.log_weight[idx], log_prior=self.log_prior[idx],
            field_index=self.field_index[idx], field_names=list(self.field_names),
            ids=self.ids[idx], z_ref=self.z_ref[idx], log_mass_ref=self.log_mass_ref[idx],
            ess=self.ess[idx], n_samples=self.n_samples[idx],
        )

    def standardization(self) -> tuple[np.ndarray, np.ndarray]:
        """Per-coordinate mean and standard deviation, each galaxy weighted equally."""
        w = np.exp(self.log_weight)  # (N, S), rows sum to 1
        tot = w.sum()
        mean = np.einsum("ns,nsk->k", w, self.x) / tot
        var = np.einsum("ns,nsk->k", w, (self.x - mean) ** 2) / tot
        return mean, np.sqrt(np.maximum(var, 1e-6))

    def summary(self) -> dict:
        """Counts and effective-sample-size statistics (for results files)."""
        return {
            "n_galaxies": self.n_galaxies,
            "samples_per_galaxy": {"min": int(self.n_samples.min()), "max": int(self.n_samples.max())},
            "ess_percentiles_1_16_50": [float(v) for v in np.percentile(self.ess, [1, 16, 50])],
            "fields": {name: int(np.sum(self.field_index == k)) for k, name in enumerate(self.field_names)},
        }


def flow_data_from_catalog(
    catalog: PosteriorCatalog, max_samples: int | None = None, z_jitter: float = 0.0, seed: int = 0
) -> FlowData:
    """Pad a :class:`~popmodel.catalog.PosteriorCatalog` with SFR samples into :class:`FlowData`.

    Args:
        catalog: Catalogue with ``log_sfr`` samples.
        max_samples: Keep at most this many (evenly spaced) samples per galaxy; None keeps all.
        z_jitter: Gaussian jitter, in units of (1 + z), given to the samples of galaxies with
            an exact redshift (see the module docstring); 0 for none.
        seed: Seed of the jitter.

    Returns:
        The arrays.

    Raises:
        CatalogError: If the catalogue has no ``log_sfr`` column or no galaxies.
    """
    if not catalog.has_sfr:
        raise CatalogError("column 'log_sfr' is missing: the star-forming sequence needs SFR samples")
    n = catalog.n_galaxies
    if n == 0:
        raise CatalogError("the catalogue has no galaxies")
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be positive, got {max_samples}")
    counts = catalog.n_samples
    keep_counts = counts if max_samples is None else np.minimum(counts, max_samples)
    s_max = int(keep_counts.max())
    log_w_all = catalog.normalized_log_weights()
    log_prior_all = catalog.log_prior_sfr_or_zero()  # the (log M, log SFR, z) density
    x = np.empty((n, s_max, 3))
    log_w = np.full((n, s_max), -np.inf)
    log_prior = np.zeros((n, s_max))
    cols = np.stack([catalog.z, catalog.log_mass, catalog.log_sfr], axis=1)
    if np.all(keep_counts == counts) and np.all(counts == s_max):
        x[:] = cols.reshape(n, s_max, 3)
        log_w[:] = log_w_all.reshape(n, s_max)
        log_prior[:] = log_prior_all.reshape(n, s_max)
    else:
        for i in range(n):
            start, c, k = catalog.offsets[i], counts[i], keep_counts[i]
            sel = start + (np.arange(k) * c) // k
            x[i, :k] = cols[sel]
            x[i, k:] = cols[sel[0]]
            lw = log_w_all[sel]
            log_w[i, :k] = lw - np.logaddexp.reduce(lw)
            log_prior[i, :k] = log_prior_all[sel]
    if z_jitter < 0:
        raise ValueError(f"z_jitter must be >= 0, got {z_jitter}")
    if z_jitter > 0:
        exact = np.ptp(np.where(np.isfinite(log_w), x[..., 0], x[:, :1, 0]), axis=1) == 0.0
        rng = np.random.default_rng([seed, 2718])
        eps = rng.standard_normal((int(exact.sum()), s_max))
        x[exact, :, 0] = x[exact, :, 0] + z_jitter * (1.0 + x[exact, :, 0]) * eps
    names = sorted(set(catalog.fields.tolist()))
    field_index = np.searchsorted(np.array(names), catalog.fields)
    w = np.exp(log_w)
    ess = w.sum(1) ** 2 / np.maximum((w * w).sum(1), 1e-300)
    point = catalog.point_estimates()
    return FlowData(
        x=x, log_weight=log_w, log_prior=log_prior, field_index=field_index.astype(np.int64),
        field_names=names, ids=catalog.ids.copy(), z_ref=np.asarray(point.z, float),
        log_mass_ref=np.asarray(point.log_mass, float), ess=ess, n_samples=keep_counts.astype(np.int64),
    )
