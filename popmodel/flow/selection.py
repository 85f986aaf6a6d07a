r"""Selection on observed quantities, and the normalisation it gives the flow's likelihood.

A galaxy enters the catalogue of field f when its *observed* redshift lies in the field's
range and its *observed* mass passes the completeness limit, so a galaxy of true
(z, log M) is selected with probability

.. math::

    S_f(z, \log M) = W_f(z)\;\frac{1}{K}\sum_k \Phi\!\left(\frac{\log M - \log M_{c,f}(z)}
    {\sigma_{M,k}}\right),\qquad
    W_f(z) = \frac{1}{J}\sum_j \left[\Phi\!\left(\frac{z_{\max} - z}{\sigma_{z,j}(1+z)}\right)
    - \Phi\!\left(\frac{z_{\min} - z}{\sigma_{z,j}(1+z)}\right)\right],

with the field's Gaussian mass-error mixture ``mass_error_dex`` (sigma_M,k) and redshift-error
mixture ``z_error`` (sigma_z,j; zero means a hard window), as in the mass-function likelihood
(:mod:`popmodel.smf.likelihood`). The limit is evaluated at the true redshift (the difference is
second order in the redshift errors). S_f does not depend on SFR.

**Likelihood.** For a galaxy i of field f with data d_i, the probability of its data given
that it was selected is

.. math::

    p(d_i \mid \mathrm{sel}, \theta) = \frac{\int p(d_i \mid x)\,p_\theta(x)\,dx}
    {P_f(\theta)},\qquad P_f(\theta) = \int S_f(z, \log M)\,p_\theta(z, \log M)\,dz\,d\log M,

because each selected galaxy passed the cut by definition (no cut in the numerator) and the
population shape p_theta must be renormalised to the selected part. The numerator is the
importance sum over posterior samples (:mod:`popmodel.flow.train`); this module precomputes
the quadrature of the denominator: a lattice in the flow's standardised (z, log M)
coordinates with log weights ``log(S_f * cell area)``, so that
``log P_f = logsumexp(log p_u(nodes) + log_weight_f)``, evaluated on a randomly shifted
sub-lattice at each training step (:class:`NormalizationGrid`). Mass the flow puts where S_f = 0
(below the cut, outside the window) cancels between numerator and denominator, so the density
is constrained, and reported, only above the limit.

For a flow conditional on redshift, p_theta(log M, log SFR | z), the redshift distribution
of the sample is taken as given rather than modelled: writing the population as
q(z) p_theta(log M, log SFR | z) with the *selected* redshift distribution q_sel(z) =
q(z) W_f(z) P^M_f(z) held fixed, the galaxy term becomes

.. math::

    p(d_i \mid \mathrm{sel}) \propto \int p(d_i \mid x)\,q_{\rm sel}(z)\,
    \frac{p_\theta(\log M, \log \mathrm{SFR} \mid z)}{P^M_f(z)}\,dx,\qquad
    P^M_f(z) = \int \frac{1}{K}\sum_k \Phi\!\left(\frac{\log M - \log M_{c,f}(z)}{\sigma_{M,k}}\right)
    p_\theta(\log M \mid z)\,d\log M,

so the mass-selection probability divides each posterior sample at its own redshift (the
window W_f cancels; q_sel is absorbed in the interim prior, flat over a galaxy's redshift
posterior). Dividing by P at the catalogue redshift alone is *not* safe: a flow can move its
mass distribution below the limit exactly there and keep it at the samples' redshifts, which
makes the likelihood unbounded (this was seen on the 3D-HST sample). The grid tabulates
log P^M_f on redshift nodes; the training interpolates it linearly to every sample.

*Caveat.* S_f treats the mass and redshift errors as independent, but for a photometric
redshift the mass moves with the luminosity distance: a posterior sample at low z has a low
mass *and* was selected through its catalogue redshift. Divided by P^M_f(z_s) at its own
redshift, such a sample can get a weight of e^10 or more (seen on the 3D-HST sample, where
P^M_f is tiny at z < 0.5). The joint mode divides by one number per field and is not exposed
to this, so it is the default; use the conditional mode for exact or nearly exact redshifts.

Because S_f does not depend on SFR, the conditional p(log SFR | log M, z) of the selected
sample equals that of the population wherever S_f > 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import ndtr

from popmodel.survey import Field, Survey

__all__ = ["NormalizationGrid", "selection_grids", "selection_probability"]


def selection_probability(
    field: Field, z: np.ndarray, log_mass: np.ndarray, mass_only: bool = False
) -> np.ndarray:
    """S_f(z, log M): probability that a galaxy of true (z, log M) enters field ``field``.

    Args:
        field: The survey field (completeness table, mass and redshift error mixtures).
        z: True redshift(s).
        log_mass: True log10 M* [Msun].
        mass_only: Return only the mass-completeness factor (no redshift window).

    Returns:
        Probabilities, broadcast over the inputs.
    """
    z, m = np.broadcast_arrays(np.asarray(z, np.float64), np.asarray(log_mass, np.float64))
    x = m - field.log_mass_limit(z)
    mass_part = np.zeros(z.shape)
    for sig in field.mass_error_dex:
        mass_part += (x > 0).astype(float) if sig == 0 else ndtr(x / sig)
    mass_part /= len(field.mass_error_dex)
    if mass_only:
        return mass_part
    window = np.zeros(z.shape)
    for sz in field.z_error:
        if sz == 0:
            window += ((z >= field.z_min) & (z <= field.z_max)).astype(float)
        else:
            width = sz * (1.0 + z)
            window += ndtr((field.z_max - z) / width) - ndtr((field.z_min - z) / width)
    window /= len(field.z_error)
    return mass_part * window


@dataclass
class NormalizationGrid:
    """Quadrature of P_f = int S_f p_theta over standardised coordinates.

    The nodes form a fine lattice, ``oversample`` times finer than the quadrature in each
    axis; every training step evaluates one randomly shifted sub-lattice (a stratified,
    shifted-lattice rule). With fixed nodes the flow learned to move its mass between them
    (on the 3D-HST sample the interpolated log P reached -15 while the samples' densities
    stayed normal), which makes the likelihood unbounded; random shifts remove the incentive.

    Attributes:
        mode: ``"joint"`` (P_f of the joint density) or ``"conditional"`` (P^M_f(z) of
            p(log M | z) on redshift nodes).
        nodes: ``(Z * M, 2)`` standardised (z, log M) nodes of the fine lattice (z-major).
        log_weight: ``(F, Z * M)``: joint, log(S_f x fine cell area); conditional, log(mass
            part of S_f x fine cell width in log M).
        field_names: The F field names.
        shape: ``(Z, M)`` of the fine lattice.
        oversample: Fine cells per quadrature cell, per axis.
        z_nodes: ``(Z,)`` standardised fine redshift nodes (conditional mode).
    """

    mode: str
    nodes: np.ndarray
    log_weight: np.ndarray
    field_names: list[str]
    shape: tuple[int, int]
    oversample: int = 4
    z_nodes: np.ndarray | None = None


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(x)


def selection_grids(
    survey: Survey,
    field_names: Sequence[str],
    loc: np.ndarray,
    scale: np.ndarray,
    *,
    mode: str = "joint",
    log_mass_max: float,
    z_range: tuple[float, float] | None = None,
    n_z: int = 64,
    n_mass: int = 64,
    n_sigma: float = 4.0,
    oversample: int = 4,
) -> NormalizationGrid:
    """Build the quadrature of the selection normalisation.

    Args:
        survey: The survey whose fields selected the galaxies.
        field_names: Names of the fields in the training data, in the order of its field
            index.
        loc, scale: Standardisation of (z, log M, log SFR) used by the flow.
        mode: ``"joint"`` or ``"conditional"`` (see the module docstring).
        log_mass_max: Upper end of the mass grid [log10 Msun] (above all the data).
        z_range: (min, max) of the samples' redshifts (conditional mode: the redshift nodes
            span it).
        n_z, n_mass: Quadrature nodes per axis (each step uses this many).
        n_sigma: The mass grid starts ``n_sigma`` widest mass errors below the lowest limit.
        oversample: Fine-lattice refinement per axis (the random shifts).

    Returns:
        The grid.
    """
    if mode not in ("joint", "conditional"):
        raise ValueError(f"mode must be 'joint' or 'conditional', got {mode!r}")
    if oversample < 1:
        raise ValueError(f"oversample must be >= 1, got {oversample}")
    fields = [survey.field(name) for name in field_names]
    sig_m = max(max(f.mass_error_dex) for f in fields)
    sig_z = max(max(f.z_error) for f in fields)
    z_lo = min(f.z_min for f in fields)
    z_hi = max(f.z_max for f in fields)
    z_lo = max(1e-3, z_lo - n_sigma * sig_z * (1 + z_lo))
    z_hi = z_hi + n_sigma * sig_z * (1 + z_hi)
    zs = np.linspace(z_lo, z_hi, 256)
    m_lo = min(float(f.log_mass_limit(zs).min()) for f in fields) - n_sigma * max(sig_m, 0.05)
    if not log_mass_max > m_lo:
        raise ValueError(f"log_mass_max={log_mass_max} is below the selection limit {m_lo:.2f}")
    nm = n_mass * oversample
    m_edges = np.linspace(m_lo, log_mass_max, nm + 1)
    m_mid = 0.5 * (m_edges[1:] + m_edges[:-1])
    dm_u = (m_edges[1] - m_edges[0]) / scale[1]
    if mode == "joint":
        nz = n_z * oversample
        z_edges = np.linspace(z_lo, z_hi, nz + 1)
        zf = 0.5 * (z_edges[1:] + z_edges[:-1])
        cell = (z_edges[1] - z_edges[0]) / scale[0] * dm_u
        zz, mm = np.meshgrid(zf, m_mid, indexing="ij")
        sel = [selection_probability(f, zz.ravel(), mm.ravel()) for f in fields]
    else:
        if z_range is None:
            raise ValueError("conditional mode needs z_range, the range of the samples' redshifts")
        # pad by one quadrature spacing so that every shifted sub-lattice brackets the samples
        span = z_range[1] - z_range[0] + 0.02
        pad = span / (n_z - 1)
        nz = n_z * oversample
        zf = np.linspace(max(1e-3, z_range[0] - 0.01 - pad), z_range[1] + 0.01 + pad, nz)
        cell = dm_u
        zz, mm = np.meshgrid(zf, m_mid, indexing="ij")
        sel = [selection_probability(f, zz.ravel(), mm.ravel(), mass_only=True) for f in fields]
    nodes = np.stack([(zz.ravel() - loc[0]) / scale[0], (mm.ravel() - loc[1]) / scale[1]], 1)
    log_w = np.stack([_log(sf * cell) for sf in sel])
    return NormalizationGrid(mode, nodes, log_w, list(field_names), (nz, nm), oversample,
                             (zf - loc[0]) / scale[0] if mode == "conditional" else None)
