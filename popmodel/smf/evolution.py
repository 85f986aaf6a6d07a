r"""Continuity-model parameters: values at anchor redshifts, smooth in z.

Leja et al. (2020, ApJ 893, 111, Appendix B) write log phi1*, log phi2* and
log M* as quadratics in z fixed by their values at three anchors (0.2, 1.6, 3.0), with
alpha1, alpha2 constant. With K anchors the curve is the unique degree K-1 polynomial
through them (Lagrange form); K = 3 is exactly Leja's quadratic.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "DEFAULT_ANCHORS",
    "LEJA2020_MEDIAN",
    "LEJA2020_SIGMA",
    "ContinuityParams",
    "anchor_polynomial",
    "leja2020_params",
    "parameter_names",
]

DEFAULT_ANCHORS: tuple[float, ...] = (0.2, 1.6, 3.0)


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["log_phi1", "log_phi2", "log_mstar", "alpha1", "alpha2"],
    meta_fields=["anchor_z"],
)
@dataclass(frozen=True)
class ContinuityParams:
    """Parameters of the continuity model (a JAX pytree; leading batch axes allowed).

    Attributes:
        log_phi1: log10 phi1* at the anchors [log10 Mpc^-3 dex^-1], shape (..., K).
        log_phi2: log10 phi2* at the anchors [log10 Mpc^-3 dex^-1], shape (..., K).
        log_mstar: log10 M* at the anchors [log10 Msun], shape (..., K).
        alpha1: low-mass slope of the first (massive) component, shape (...).
        alpha2: low-mass slope of the second (steep) component, shape (...).
        anchor_z: the anchor redshifts (static).
    """

    log_phi1: jax.Array
    log_phi2: jax.Array
    log_mstar: jax.Array
    alpha1: jax.Array
    alpha2: jax.Array
    anchor_z: tuple[float, ...] = DEFAULT_ANCHORS

    @property
    def names(self) -> list[str]:
        return parameter_names(self.anchor_z)

    def to_vector(self) -> jax.Array:
        """Stack to (..., 3K+2) in the order of :func:`parameter_names`."""
        return jnp.concatenate(
            [
                jnp.asarray(self.log_phi1),
                jnp.asarray(self.log_phi2),
                jnp.asarray(self.log_mstar),
                jnp.asarray(self.alpha1)[..., None],
                jnp.asarray(self.alpha2)[..., None],
            ],
            axis=-1,
        )

    @classmethod
    def from_vector(cls, v: jax.Array, anchor_z: tuple[float, ...] = DEFAULT_ANCHORS) -> ContinuityParams:
        k = len(anchor_z)
        v = jnp.asarray(v)
        return cls(v[..., :k], v[..., k : 2 * k], v[..., 2 * k : 3 * k], v[..., 3 * k], v[..., 3 * k + 1], tuple(anchor_z))

    @classmethod
    def from_dict(cls, d: dict, anchor_z: tuple[float, ...] = DEFAULT_ANCHORS) -> ContinuityParams:
        """From a dict keyed by :func:`parameter_names` (values may carry draw axes)."""
        anchor_z = tuple(anchor_z)

        def stack(p: str) -> jax.Array:
            return jnp.stack([jnp.asarray(d[f"{p}_z{_fmt(z)}"]) for z in anchor_z], axis=-1)

        return cls(
            stack("log_phi1"), stack("log_phi2"), stack("log_mstar"),
            jnp.asarray(d["alpha1"]), jnp.asarray(d["alpha2"]), anchor_z,
        )

    def to_dict(self) -> dict[str, np.ndarray]:
        v = np.asarray(self.to_vector())
        return {n: v[..., i] for i, n in enumerate(self.names)}

    def at(self, z: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """(log phi1*, log phi2*, log M*) at redshift(s) ``z`` (broadcast against batch axes)."""
        basis = anchor_polynomial(self.anchor_z, z)  # (..., K)
        return tuple(jnp.sum(basis * getattr(self, n), axis=-1) for n in ("log_phi1", "log_phi2", "log_mstar"))

    def replace(self, **kw: jax.Array) -> ContinuityParams:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d.update(kw)
        return ContinuityParams(**d)


def _fmt(z: float) -> str:
    s = f"{z:g}"
    return s if ("." in s or "e" in s) else s + ".0"


def parameter_names(anchor_z: tuple[float, ...] = DEFAULT_ANCHORS) -> list[str]:
    """``log_phi1_z0.2, ..., log_phi2_*, log_mstar_*, alpha1, alpha2`` (the file contract)."""
    return [f"{p}_z{_fmt(z)}" for p in ("log_phi1", "log_phi2", "log_mstar") for z in anchor_z] + [
        "alpha1",
        "alpha2",
    ]


def anchor_polynomial(anchor_z: tuple[float, ...], z: jax.Array) -> jax.Array:
    r"""Lagrange basis :math:`L_k(z)=\prod_{j\ne k}(z-z_j)/(z_k-z_j)`, shape ``z.shape + (K,)``.

    ``sum_k y_k L_k(z)`` is the polynomial through ``(z_k, y_k)``; for three anchors it is
    Leja et al. (2020) Appendix B's quadratic.
    """
    z = jnp.asarray(z)[..., None]
    za = np.asarray(anchor_z, dtype=float)
    cols = []
    for k in range(za.size):
        term = jnp.ones_like(z[..., 0])
        for j in range(za.size):
            if j != k:
                term = term * (z[..., 0] - za[j]) / (za[k] - za[j])
        cols.append(term)
    return jnp.stack(cols, axis=-1)


#: Posterior medians of Leja et al. (2020) Appendix B (ApJ 893, 111), with their
#: published 1-sigma errors in ``LEJA2020_SIGMA``.
LEJA2020_MEDIAN = {
    "log_phi1_z0.2": -2.44, "log_phi1_z1.6": -3.08, "log_phi1_z3.0": -4.14,
    "log_phi2_z0.2": -2.89, "log_phi2_z1.6": -3.29, "log_phi2_z3.0": -3.51,
    "log_mstar_z0.2": 10.79, "log_mstar_z1.6": 10.88, "log_mstar_z3.0": 10.84,
    "alpha1": -0.28, "alpha2": -1.48,
}
LEJA2020_SIGMA = {
    "log_phi1_z0.2": 0.02, "log_phi1_z1.6": 0.03, "log_phi1_z3.0": 0.10,
    "log_phi2_z0.2": 0.04, "log_phi2_z1.6": 0.03, "log_phi2_z3.0": 0.03,
    "log_mstar_z0.2": 0.02, "log_mstar_z1.6": 0.02, "log_mstar_z3.0": 0.04,
    "alpha1": 0.07, "alpha2": 0.10,
}


def leja2020_params() -> ContinuityParams:
    """The Leja et al. (2020) median continuity model (float64 numpy leaves)."""
    return ContinuityParams.from_dict({k: np.float64(v) for k, v in LEJA2020_MEDIAN.items()})
