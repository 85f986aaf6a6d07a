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
(science.md section 1.4). The limit is evaluated at the true redshift (the difference is
second order in the redshift errors). S_f does not depend on SFR.

**Likelihood.** For a galaxy i of field f with data d_i, the probability of its data given
that it was selected is

.. math::

    p(d_i \mid \mathrm{sel}, \theta) = \frac{\int p(d_i \mid x)\,p_\theta(x)\,dx}
    {P_f(\theta)},\qquad P_f(\theta) = \int S_f(z, \log M)\,p_\theta(z, \log M)\,dz\,d\log M,

because each selected galaxy passed the cut by definition (no cut in the numerator) and the
population shape p_theta must be renormalised to the selected part. The numerator is the
importance sum over posterior samples (:mod:`popmodel.flow.train`); this module precomputes
the quadrature of the denominator: a midpoint grid in the flow's standardised (z, log M)
coordinates with log weights ``log(S_f * cell area)``, so that
``log P_f = logsumexp(log p_u(grid) + log_weight_f)``. Mass the flow puts where S_f = 0
(below the cut, outside the window) cancels between numerator and denominator, so the density
is constrained, and reported, only above the limit.

For a flow conditional on redshift, p_theta(log M, log SFR | z), the normalisation is
P_f(theta | z_i) = int S_f(z_i, log M) p_theta(log M | z_i) d log M at each galaxy's catalogue
redshift (a conditional likelihood that treats the redshift distribution as given).
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


def selection_probability(field: Field, z: np.ndarray, log_mass: np.ndarray) -> np.ndarray:
    """S_f(z, log M): probability that a galaxy of true (z, log M) enters field ``field``.

    Args:
        field: The survey field (completeness table, mass and redshift error mixtures).
        z: True redshift(s).
        log_mass: True log10 M* [Msun].

    Returns:
        Probabilities, broadcast over the inputs.
    """
    z, m = np.broadcast_arrays(np.asarray(z, np.float64), np.asarray(log_mass, np.float64))
    x = m - field.log_mass_limit(z)
    mass_part = np.zeros(z.shape)
    for sig in field.mass_error_dex:
        mass_part += (x > 0).astype(float) if sig == 0 else ndtr(x / sig)
    mass_part /= len(field.mass_error_dex)
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

    Attributes:
        mode: ``"joint"`` (one (z, log M) grid shared by the fields) or ``"conditional"``
            (a log M grid at each galaxy's redshift).
        nodes: Joint: ``(G, 2)`` standardised (z, log M) nodes. Conditional: ``(N, G)``
            standardised log M nodes of each galaxy.
        log_weight: Joint: ``(F, G)`` log(S_f x cell area) per field. Conditional: ``(N, G)``
            log(S_f(z_i, .) x cell width) of each galaxy's field.
        field_names: The F field names (joint mode).
    """

    mode: str
    nodes: np.ndarray
    log_weight: np.ndarray
    field_names: list[str]


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
    z_galaxy: np.ndarray | None = None,
    field_index: np.ndarray | None = None,
    n_z: int = 64,
    n_mass: int = 64,
    n_sigma: float = 4.0,
) -> NormalizationGrid:
    """Build the quadrature of the selection normalisation.

    Args:
        survey: The survey whose fields selected the galaxies.
        field_names: Names of the fields in the training data, in the order of its field
            index.
        loc, scale: Standardisation of (z, log M, log SFR) used by the flow.
        mode: ``"joint"`` or ``"conditional"`` (see the module docstring).
        log_mass_max: Upper end of the mass grid [log10 Msun] (above all the data).
        z_galaxy: ``(N,)`` catalogue redshift of each galaxy (conditional mode).
        field_index: ``(N,)`` field index of each galaxy (conditional mode).
        n_z, n_mass: Grid sizes.
        n_sigma: The mass grid starts ``n_sigma`` widest mass errors below the lowest limit.

    Returns:
        The grid.
    """
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
    m_edges = np.linspace(m_lo, log_mass_max, n_mass + 1)
    m_mid = 0.5 * (m_edges[1:] + m_edges[:-1])
    dm_u = (m_edges[1] - m_edges[0]) / scale[1]
    if mode == "joint":
        z_edges = np.linspace(z_lo, z_hi, n_z + 1)
        z_mid = 0.5 * (z_edges[1:] + z_edges[:-1])
        dz_u = (z_edges[1] - z_edges[0]) / scale[0]
        zz, mm = np.meshgrid(z_mid, m_mid, indexing="ij")
        nodes = np.stack([(zz.ravel() - loc[0]) / scale[0], (mm.ravel() - loc[1]) / scale[1]], 1)
        log_w = np.stack([_log(selection_probability(f, zz.ravel(), mm.ravel()) * dz_u * dm_u) for f in fields])
        return NormalizationGrid("joint", nodes, log_w, list(field_names))
    if mode != "conditional":
        raise ValueError(f"mode must be 'joint' or 'conditional', got {mode!r}")
    if z_galaxy is None or field_index is None:
        raise ValueError("conditional mode needs z_galaxy and field_index")
    zg = np.asarray(z_galaxy, np.float64)
    fi = np.asarray(field_index)
    log_w = np.empty((zg.size, m_mid.size))
    for k, f in enumerate(fields):
        rows = fi == k
        log_w[rows] = _log(selection_probability(f, zg[rows, None], m_mid[None, :]) * dm_u)
    nodes = np.broadcast_to((m_mid - loc[1]) / scale[1], log_w.shape).copy()
    return NormalizationGrid("conditional", nodes, log_w, list(field_names))
