r"""Per-galaxy compression of posterior samples into Gauss-Hermite quadrature nodes.

Why
---
The hierarchical likelihood needs, for each galaxy, the integral
:math:`I_i(\theta) = \int n(x|\theta)\,p(d_i|x)\,dx`. With posterior samples it is estimated by
an importance-sampled mean (Hogg, Myers & Bovy 2010, ApJ 725, 2166). When the posterior is
broad compared with the scale on which the mass function changes (0.3 dex mass errors on the
exponential cut-off above M*), only a few samples carry the weight: ln of the mean is then
biased low by an amount that depends on theta, and the delta-method correction removes only its
O(1/ESS) part. Measured on a 145,000-galaxy mock with 0.3 dex errors: M* came back +0.16 dex
high with 16 samples per galaxy and +0.06 dex with 128.

What
----
:func:`gauss_hermite` replaces each galaxy's samples by the nodes of a product Gauss-Hermite
rule for the Gaussian with the samples' (weighted) mean and covariance in (log M, z), and
returns a catalogue whose ``weight`` column holds the rule's weights. The likelihood code
treats nodes exactly like weighted samples, so nothing downstream changes. For a Gaussian
posterior the rule integrates the smooth part exactly to high order and has no Monte Carlo
noise: the same fit with 8 nodes in mass is unbiased where 128 samples were not.

The price is the Gaussian approximation of each posterior. :func:`gaussianity` reports the
per-galaxy skewness and excess kurtosis of the samples so that non-Gaussian posteriors (a
photometric redshift with two peaks) can be kept as samples: pass ``keep_samples`` (a boolean
mask) to leave those galaxies untouched.

Interim prior: the posterior is p(x|d) ∝ p(d|x) pi(x), so the rule approximates
:math:`\int n\,p(x|d)/\pi\,dx`; pi must therefore be evaluable at the new nodes (flat, or an
:class:`~popmodel.catalog.InterimPrior`). A catalogue that only carries a per-sample
``log_prior`` column cannot be compressed and raises :class:`CatalogError`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from popmodel.catalog import CatalogError, InterimPrior, PosteriorCatalog

__all__ = ["gauss_hermite", "gaussian_galaxies", "gaussianity", "quadrature_galaxies", "weighted_moments"]

#: Smallest redshift variance treated as a real spread (below: an exact redshift, one z node).
_Z_VAR_EXACT = 1e-12


def weighted_moments(catalog: PosteriorCatalog) -> tuple[np.ndarray, ...]:
    """Per-galaxy weighted mean and covariance of (log M, z).

    Returns:
        ``(mean_m, mean_z, var_m, var_z, cov_mz)``, each of shape ``(N,)``.
    """
    w = np.exp(catalog.normalized_log_weights())
    starts = catalog.offsets[:-1]
    g = catalog.galaxy_index

    def wsum(x: np.ndarray) -> np.ndarray:
        return np.add.reduceat(w * x, starts)

    mm, mz = wsum(catalog.log_mass), wsum(catalog.z)
    dm, dz = catalog.log_mass - mm[g], catalog.z - mz[g]
    return mm, mz, wsum(dm * dm), wsum(dz * dz), wsum(dm * dz)


def gaussianity(catalog: PosteriorCatalog) -> dict[str, np.ndarray]:
    """Per-galaxy weighted skewness and excess kurtosis of the mass and redshift samples.

    Values near zero mean a Gaussian rule represents the posterior well; an absolute skewness
    above 0.5 or an absolute excess kurtosis above 1 flags galaxies better kept as samples.
    """
    w = np.exp(catalog.normalized_log_weights())
    starts = catalog.offsets[:-1]
    g = catalog.galaxy_index
    mm, mz, vm, vz, _ = weighted_moments(catalog)
    out = {}
    for name, x, mu, var in (("log_mass", catalog.log_mass, mm, vm), ("z", catalog.z, mz, vz)):
        sd = np.sqrt(np.where(var > 0, var, np.inf))
        t = (x - mu[g]) / sd[g]
        out[f"skew_{name}"] = np.add.reduceat(w * t**3, starts)
        out[f"kurt_{name}"] = np.add.reduceat(w * t**4, starts) - 3.0
    return out


def gaussian_galaxies(catalog: PosteriorCatalog, n_sigma: float = 4.0) -> np.ndarray:
    """Galaxies whose samples are consistent with a Gaussian posterior: ``(N,)`` bool.

    A galaxy passes when the skewness and excess kurtosis of its mass and redshift samples
    lie within ``n_sigma`` times their sampling noise for a Gaussian, sqrt(6/n) and
    sqrt(24/n), with n the Kish effective sample size of its weights (``n_sigma = 4``: about
    1 Gaussian galaxy in 4,000 is flagged by chance). Galaxies with fewer than 8 effective
    samples, or an exact redshift, are judged on what they have (an exact redshift passes
    its z test). Used by ``posterior="auto"`` (:func:`popmodel.smf.data.prepare_smf_data`):
    Gaussian galaxies get the quadrature rule, the others keep their samples.
    """
    w = np.exp(catalog.normalized_log_weights())
    n_eff = 1.0 / np.add.reduceat(w**2, catalog.offsets[:-1])
    g = gaussianity(catalog)
    _, _, _, vz, _ = weighted_moments(catalog)
    ok = n_eff >= 8.0 * (1.0 - 1e-9)  # 8 equal weights give 1/sum(w^2) = 8 only to rounding
    for name in ("log_mass", "z"):
        sk, ku = g[f"skew_{name}"], g[f"kurt_{name}"]
        good = (np.abs(sk) <= n_sigma * np.sqrt(6.0 / n_eff)) & (np.abs(ku) <= n_sigma * np.sqrt(24.0 / n_eff))
        if name == "z":
            good |= vz <= _Z_VAR_EXACT
        ok &= np.nan_to_num(good, nan=False).astype(bool)
    return ok


def gauss_hermite(
    catalog: PosteriorCatalog,
    *,
    n_mass: int = 8,
    n_z: int = 3,
    interim_prior: InterimPrior | None = None,
    keep_samples: np.ndarray | None = None,
    on_invalid: str = "raise",
    log_mass_max: float = 14.0,
    log_mass_min: float = -np.inf,
    z_max: float = np.inf,
) -> PosteriorCatalog:
    """Compress each galaxy's posterior samples into a Gauss-Hermite rule.

    Args:
        catalog: the posterior catalogue.
        n_mass: nodes along the (conditional) mass direction.
        n_z: nodes along redshift (galaxies with an exact redshift get one).
        interim_prior: the SED fit's interim prior, evaluated at the nodes (default: flat;
            required when the catalogue carries a ``log_prior`` column).
        keep_samples: ``(N,)`` boolean mask of galaxies to leave as samples.
        on_invalid: what to do with galaxies whose nodes would fall outside the model's
            support (z <= 0 or above ``z_max``, log M outside ``log_mass_min``..``log_mass_max``):
            "raise" (default) or "keep" them as samples (counted in
            ``meta["compression"]["n_kept_as_samples"]``).
        log_mass_max, log_mass_min, z_max: the model's support.

    Returns:
        A catalogue with the nodes as samples, the rule's weights in ``weight`` and, when an
        interim prior is given, its log density at the nodes in ``log_prior``. Point estimates,
        ids and fields are unchanged; ``meta["compression"]`` records the rule.

    Raises:
        CatalogError: a ``log_prior`` column without an evaluable prior, bad node counts, or a
            node outside z > 0 (the error names the galaxies; pass them in ``keep_samples``).
    """
    if n_mass < 1 or n_z < 1:
        raise CatalogError(f"node counts must be >= 1 (n_mass={n_mass}, n_z={n_z})")
    if catalog.log_prior is not None and interim_prior is None:
        raise CatalogError(
            "the catalogue carries a per-sample log_prior column, which cannot be evaluated at "
            "new quadrature nodes: pass interim_prior= (the SED fit's prior as an InterimPrior)"
        )
    if catalog.has_sfr:
        raise CatalogError("Gauss-Hermite compression covers (log_mass, z); this catalogue has "
                           "log_sfr samples: compress a copy without them for the SMF")
    n = catalog.n_galaxies
    keep = np.zeros(n, bool) if keep_samples is None else np.asarray(keep_samples, bool)
    if keep.shape != (n,):
        raise CatalogError(f"keep_samples must have shape ({n},), got {keep.shape}")
    mm, mz, vm, vz, cmz = weighted_moments(catalog)
    exact_z = vz <= _Z_VAR_EXACT
    xm, wm = np.polynomial.hermite_e.hermegauss(n_mass)
    xz, wz = np.polynomial.hermite_e.hermegauss(n_z)
    wm, wz = wm / wm.sum(), wz / wz.sum()

    # z = mz + sz u;  log M | z = mm + (cmz / vz)(z - mz) + sqrt(vm - cmz^2 / vz) v
    sz = np.sqrt(np.where(exact_z, 0.0, vz))
    slope = np.where(exact_z, 0.0, cmz / np.where(exact_z, 1.0, vz))
    sm_cond = np.sqrt(np.maximum(vm - slope * cmz, 0.0))
    two_d = ~exact_z
    # Exact-z galaxies: n_mass nodes; others: n_mass * n_z nodes.
    u2 = np.repeat(xz, n_mass)
    v2 = np.tile(xm, n_z)
    w2 = np.repeat(wz, n_mass) * np.tile(wm, n_z)
    z2 = mz[:, None] + sz[:, None] * u2[None, :]
    m2 = mm[:, None] + slope[:, None] * (z2 - mz[:, None]) + sm_cond[:, None] * v2[None, :]
    m1 = mm[:, None] + np.sqrt(vm)[:, None] * xm[None, :]
    if on_invalid not in ("raise", "keep"):
        raise CatalogError(f"on_invalid must be 'raise' or 'keep', got {on_invalid!r}")
    def outside(m: np.ndarray) -> np.ndarray:
        return np.any((m > log_mass_max) | (m < log_mass_min), axis=1)

    bad = ~keep & np.where(two_d, np.any((z2 <= 0.0) | (z2 > z_max), axis=1) | outside(m2),
                           outside(m1))
    if np.any(bad) and on_invalid == "keep":
        keep = keep | bad
    elif np.any(bad):
        ids = ", ".join(map(str, catalog.ids[bad][:5]))
        raise CatalogError(f"{int(bad.sum())} galaxies (e.g. {ids}) have Gauss-Hermite nodes "
                           f"outside 0 < z <= {z_max}, {log_mass_min} <= log M <= {log_mass_max}; "
                           "keep them as samples with keep_samples or on_invalid='keep'")
    counts = np.where(keep, catalog.n_samples, np.where(two_d, n_mass * n_z, n_mass))
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    log_mass = np.empty(offsets[-1])
    z = np.empty(offsets[-1])
    lw = np.empty(offsets[-1])
    orig_lw = catalog.normalized_log_weights()
    for sel, mk, zk, wk in ((two_d & ~keep, m2, z2, w2), (exact_z & ~keep, m1, None, wm)):
        idx = np.flatnonzero(sel)
        if idx.size == 0:
            continue
        k = mk.shape[1]
        pos = offsets[idx][:, None] + np.arange(k)[None, :]
        log_mass[pos] = mk[idx]
        z[pos] = zk[idx] if zk is not None else np.broadcast_to(mz[idx, None], (idx.size, k))
        lw[pos] = np.log(wk)[None, :]
    for i in np.flatnonzero(keep):
        a, b = catalog.offsets[i], catalog.offsets[i + 1]
        log_mass[offsets[i]:offsets[i + 1]] = catalog.log_mass[a:b]
        z[offsets[i]:offsets[i + 1]] = catalog.z[a:b]
        lw[offsets[i]:offsets[i + 1]] = orig_lw[a:b]
    log_prior = None
    if interim_prior is not None:
        log_prior = np.asarray(interim_prior.log_density(log_mass, z), dtype=np.float64)
        log_prior = np.broadcast_to(log_prior, z.shape).copy()
        if keep.any() and catalog.log_prior is not None:
            for i in np.flatnonzero(keep):
                a, b = catalog.offsets[i], catalog.offsets[i + 1]
                log_prior[offsets[i]:offsets[i + 1]] = catalog.log_prior[a:b]
    meta = dict(catalog.meta)
    meta["compression"] = {
        "method": "gauss-hermite",
        "n_mass": int(n_mass),
        "n_z": int(n_z),
        "n_kept_as_samples": int(keep.sum()),
        "kept_ids": [str(i) for i in catalog.ids[keep]],
        "n_exact_z": int((exact_z & ~keep).sum()),
    }
    return dataclasses.replace(
        catalog, offsets=offsets, log_mass=log_mass, z=z, weight=np.exp(lw),
        log_prior=log_prior, log_sfr=None, meta=meta,
    )


def quadrature_galaxies(catalog: PosteriorCatalog) -> np.ndarray:
    """``(N,)`` True for galaxies whose samples are quadrature nodes (no Monte Carlo error).

    Read from ``meta["compression"]`` written by :func:`gauss_hermite`; all False for an
    uncompressed catalogue.
    """
    comp = catalog.meta.get("compression")
    if not comp:
        return np.zeros(catalog.n_galaxies, bool)
    return ~np.isin(catalog.ids.astype(str), np.asarray(comp.get("kept_ids", []), dtype=str))
