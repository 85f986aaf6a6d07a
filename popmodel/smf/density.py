r"""Per-field, per-redshift-slice density terms: cosmic variance in the mass function fit.

Model (Moster et al. 2011, ApJ 731, 113)
----------------------------------------
A pencil-beam field f sits on a large-scale over- or under-density. In redshift slice k the
dark-matter density contrast of the field's volume is :math:`\delta_{fk}`, with prior
:math:`\delta_{fk}\sim\mathcal N(0, \sigma_{\rm DM}^2(f, \bar z_k, \Delta z_k))`, shared by all
masses. Galaxies trace it with the linear bias :math:`b(M, z)` of Moster et al. (Eq. 13,
Table 4), so the number density of galaxies of mass M in that field and slice is multiplied by

.. math::
    F_{fk}(M, z) = \exp\!\big(b(M, z)\,\delta_{fk} - \tfrac12 b^2(M, z)\,\sigma_{{\rm DM},fk}^2\big),

which is positive, has prior mean 1 (the log-normal mean correction) and fractional rms
:math:`\sqrt{e^{b^2\sigma^2}-1}\approx b\,\sigma_{\rm DM} = \sigma_{gg}` for small
:math:`\sigma_{gg}`. The factor multiplies :math:`\Phi` both in each galaxy's integral
(per posterior sample, evaluated at the sample's mass and redshift) and in the field's expected
number (per quadrature node), so an over-dense field raises the expected count there and the
fit attributes the excess to :math:`\delta_{fk}` rather than to the global mass function.

The sampler sees the non-centred variables ``delta_<field>_z<lo>_<hi>_eta ~ N(0, 1)``;
``delta_<field>_z<lo>_<hi> = sigma_DM * eta`` is recorded as a deterministic site.

Nested fields. A field inside another (``inside = "COSMOS2015"``: CANDELS-COSMOS within
COSMOS-2015) looks at part of the same volume, so its contrast is not independent of its
parent's. With the parent's mean contrast over its own (larger) volume as the common part,
:math:`\delta_A = \delta_B + \epsilon_A` with :math:`\epsilon_A` independent of
:math:`\delta_B`, which gives :math:`{\rm Cov}(\delta_A, \delta_B) = \sigma_B^2` and
:math:`{\rm Var}(\epsilon_A) = \sigma_A^2 - \sigma_B^2` (the large-scale modes that fill the
parent's volume are shared; e.g. Moster et al. 2011, Sec. 4, for the variance of a volume
average). Two fields inside the same parent share :math:`\sigma_B^2` as well. Where slices of
the two fields differ, the parent's slice enters in proportion to the redshift interval they
share. The terms are then ``delta = L eta`` with ``L`` the Cholesky factor of that covariance
(non-centred still); without nesting ``L`` is the diagonal ``sigma_DM``. Partially overlapping
fields (``overlap_arcmin2``) keep independent terms: their shared volume is a fraction of each.

Slices: each field's redshift range is cut into equal slices about ``dz`` wide (default 0.5:
wide enough that neighbouring slices are nearly independent, Moster et al. 2011, and
narrow enough to follow structures along the line of sight); samples outside the field's range
(photometric-redshift tails) belong to the nearest slice. Fields with neither side lengths nor a
``sigma_dm`` override get no density terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from popmodel.survey import Survey

__all__ = ["DEFAULT_SLICE_DZ", "DensityTerms", "build_density_terms", "nested_covariance"]

#: Default redshift-slice width of the density terms.
DEFAULT_SLICE_DZ = 0.5


def _fmt(z: float) -> str:
    return f"{z:.2f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class DensityTerms:
    """The density terms of a survey: which (field, slice) pairs exist and their prior widths.

    Attributes:
        labels: ``delta_<field>_z<lo>_<hi>`` of each term, in index order.
        field_index: (G,) index (in the survey) of each term's field.
        z_lo, z_hi: (G,) slice edges.
        sigma_dm: (G,) prior sd of the dark-matter contrast.
        dz: the requested slice width.
        cov: (G, G) prior covariance of the contrasts; None: independent (diagonal
            ``sigma_dm**2``). Off-diagonal only between nested fields (module docstring).
    """

    labels: tuple[str, ...]
    field_index: np.ndarray
    z_lo: np.ndarray
    z_hi: np.ndarray
    sigma_dm: np.ndarray
    dz: float
    cov: np.ndarray | None = None

    @property
    def chol(self) -> np.ndarray | None:
        """Lower Cholesky factor of :attr:`cov` (``delta = chol @ eta``); None if independent."""
        return None if self.cov is None else np.linalg.cholesky(self.cov)

    @property
    def n_terms(self) -> int:
        return len(self.labels)

    def eta_names(self) -> list[str]:
        return [f"{lab}_eta" for lab in self.labels]

    def assign(self, field_group: np.ndarray, log_mass: np.ndarray, z: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """Term index and galaxy bias of points (samples or quadrature nodes).

        Args:
            field_group: field index (in the survey) of each point.
            log_mass, z: the points.

        Returns:
            ``(index, bias)``: index into the terms (0 with bias 0 for fields without terms).
        """
        from popmodel.cosmic_variance import galaxy_bias

        field_group = np.asarray(field_group)
        idx = np.zeros(field_group.shape, np.int32)
        has = np.zeros(field_group.shape, bool)
        for f in np.unique(self.field_index):
            terms = np.flatnonzero(self.field_index == f)
            sel = field_group == f
            if not np.any(sel):
                continue
            edges = self.z_hi[terms][:-1]  # inner edges, increasing
            k = np.searchsorted(edges, z[sel], side="right")
            idx[sel] = terms[k]
            has[sel] = True
        bias = np.where(has, galaxy_bias(log_mass, np.maximum(z, 0.0)), 0.0)
        return idx, bias

    def describe(self) -> list[dict]:
        return [
            {"name": lab, "z_lo": float(a), "z_hi": float(b), "sigma_dm": float(s)}
            for lab, a, b, s in zip(self.labels, self.z_lo, self.z_hi, self.sigma_dm, strict=True)
        ]


def build_density_terms(
    survey: Survey,
    *,
    dz: float = DEFAULT_SLICE_DZ,
    fields: list[str] | None = None,
    method: str = "pk",
) -> DensityTerms | None:
    """Density terms for the survey's fields with a known geometry (or sigma_dm override).

    Args:
        survey: the survey (its cosmology sets the power spectrum).
        dz: target slice width; each field's range is cut into ceil(range / dz) equal slices.
        fields: restrict to these field names (default: every field with a known geometry).
        method: passed to :func:`popmodel.cosmic_variance.sigma_dm`; default "pk" (the linear
            power spectrum in the survey's cosmology for every field, so that all fields share
            one cosmology; a field's ``sigma_dm`` override still wins).

    Returns:
        The terms, or None when no field has a known geometry.
    """
    if not dz > 0:
        raise ValueError(f"slice width dz must be positive, got {dz}")
    labels, fidx, lo, hi, sig = [], [], [], [], []
    for g, f in enumerate(survey.fields):
        if fields is not None and f.name not in fields:
            continue
        if not f.has_cosmic_variance:
            continue
        n = max(1, int(np.ceil((f.z_max - f.z_min) / dz - 1e-9)))
        e = np.linspace(f.z_min, f.z_max, n + 1)
        zc, w = 0.5 * (e[1:] + e[:-1]), np.diff(e)
        m = "auto" if f.sigma_dm is not None else method  # a user override always wins
        s = np.asarray(survey.sigma_dm(f.name, zc, w, method=m), dtype=float)
        for a, b, sk in zip(e[:-1], e[1:], s, strict=True):
            labels.append(f"delta_{f.name}_z{_fmt(a)}_{_fmt(b)}")
            fidx.append(g)
            lo.append(a)
            hi.append(b)
            sig.append(sk)
    if not labels:
        return None
    fidx, lo, hi, sig = np.array(fidx), np.array(lo), np.array(hi), np.array(sig)
    cov = nested_covariance(survey, fidx, lo, hi, sig, labels)
    return DensityTerms(tuple(labels), fidx, lo, hi, sig, float(dz), cov)


def _overlap_fraction(lo_i: float, hi_i: float, lo_j: float, hi_j: float) -> float:
    """The part of slice i's redshift interval that slice j covers."""
    return max(0.0, min(hi_i, hi_j) - max(lo_i, lo_j)) / (hi_i - lo_i)


def nested_covariance(survey: Survey, field_index: np.ndarray, z_lo: np.ndarray,
                      z_hi: np.ndarray, sigma: np.ndarray, labels: list[str]) -> np.ndarray | None:
    """Prior covariance of the density terms when some fields lie inside others.

    ``delta_A = sum_k f_ik delta_{B,k} + eps_A`` for a field A inside B (``f_ik``: the part
    of A's slice i that B's slice k covers): Cov(A_i, B_k) = f_ik sigma_{B,k}^2, two children
    of B share sum_k f_ik f_jk sigma_{B,k}^2, and each term keeps its own variance
    sigma_{A,i}^2 on the diagonal.

    Returns:
        The (G, G) covariance, or None when no field with terms lies inside another with terms.

    Raises:
        ValueError: a nested field's own variance is below what it shares with its parent
            (its sigma_DM smaller than the parent's, e.g. by an override), which no volume
            inside the parent can have; names both fields and the slice.
    """
    names = [f.name for f in survey.fields]
    has = {int(g) for g in field_index}
    parent: dict[int, int] = {}
    for g in has:
        for outer in survey.fields[g].inside:
            h = names.index(outer) if outer in names else -1
            if h in has:
                parent[g] = h  # the innermost listed parent with terms
                break
    if not parent:
        return None
    n = len(labels)
    top = np.array([int(field_index[i]) not in parent for i in range(n)])
    # delta = load @ delta_top + eps: a field without a parent loads on itself, a child on its
    # parent's slices by the redshift interval they share
    load = np.diag(top.astype(float))
    for i in np.flatnonzero(~top):
        for k in np.flatnonzero(field_index == parent[int(field_index[i])]):
            load[i, k] = _overlap_fraction(z_lo[i], z_hi[i], z_lo[k], z_hi[k])
    cov = load @ np.diag(sigma**2) @ load.T
    for i in np.flatnonzero(~top):  # eps_i: what the child's own variance adds
        if sigma[i] ** 2 < cov[i, i] - 1e-15:
            p = names[parent[int(field_index[i])]]
            raise ValueError(
                f"density term {labels[i]}: sigma_DM {sigma[i]:.4f} of a field inside {p!r} is "
                f"below the {np.sqrt(cov[i, i]):.4f} it shares with {p!r}; a volume inside "
                "another cannot vary less (check the fields' sigma_dm overrides or side lengths)")
        cov[i, i] = sigma[i] ** 2
    return cov
