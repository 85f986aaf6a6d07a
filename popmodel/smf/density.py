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

__all__ = ["DEFAULT_SLICE_DZ", "DensityTerms", "build_density_terms"]

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
    """

    labels: tuple[str, ...]
    field_index: np.ndarray
    z_lo: np.ndarray
    z_hi: np.ndarray
    sigma_dm: np.ndarray
    dz: float

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
    return DensityTerms(tuple(labels), np.array(fidx), np.array(lo), np.array(hi),
                        np.array(sig), float(dz))
