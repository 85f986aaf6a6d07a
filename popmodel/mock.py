"""Mock surveys drawn from a known continuity model, selected like a real catalogue.

The generator draws true (log M, z) from the Poisson intensity Phi dV/dz Omega_f of each
field, adds per-galaxy Gaussian mass errors (width drawn from the field's
``mass_error_dex`` list, so the field's mixture selection function is the truth) and
photometric-redshift errors (``z_error`` x (1+z); a ``spec_fraction`` of galaxies have exact
redshifts), then keeps the galaxies whose *observed* redshift lies in the field's range and
whose *observed* mass passes log M_c(z_obs). Each kept galaxy's posterior samples are centred
on its observed values: with a flat interim prior they are the Gaussian likelihood itself;
with ``interim_prior="prospector-beta"`` they are drawn exactly (inverse CDF on a grid) from
likelihood x a Prospector-beta-like prior, the Leja et al. (2020) median mass function at the
galaxy's redshift times the p(z) table shipped by Prospector (Wang, Leja et al. 2023), whose
log density is recorded per sample so that the fit can divide it out.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import numpy as np

from popmodel.catalog import PosteriorCatalog
from popmodel.cosmology import VolumeTable, cosmology_record
from popmodel.smf.density import DEFAULT_SLICE_DZ, build_density_terms
from popmodel.smf.derived import ln_phi_draws
from popmodel.smf.evolution import ContinuityParams, leja2020_params
from popmodel.survey import Survey, SurveyError

__all__ = ["MockTruth", "ProspectorBetaLikePrior", "draw_mock"]

#: Top of the mass grid the true galaxies are drawn on [log10 Msun].
_LOG_M_TOP = 13.5


class ProspectorBetaLikePrior:
    """A Prospector-beta-like interim prior: pi(log M, z) = p(z) Phi_L20(log M|z)/norm(z).

    Natural-log density per unit log10 M per unit z; the mass part is the Leja et al. (2020)
    median model normalised over [``log_mass_lo``, ``log_mass_hi``] at each z, the redshift
    part the p(z) table ``pdf_of_z_l20.txt`` of astro-prospector 1.4.1 (MIT; provenance in
    ``popmodel/data/README.md``).
    """

    def __init__(self, log_mass_lo: float = 6.0, log_mass_hi: float = 12.5) -> None:
        self.lo, self.hi = log_mass_lo, log_mass_hi
        path = resources.files("popmodel") / "data" / "pdf_of_z_l20.txt"
        tab = np.loadtxt(str(path))
        self._z, pz = tab[:, 0], tab[:, 1]
        self._ln_pz = np.log(np.maximum(pz / np.trapezoid(pz, self._z), 1e-300))
        self._p = leja2020_params()
        zg = np.linspace(0.0, 12.0, 1201)
        mg = np.linspace(self.lo, self.hi, 1301)
        lphi = ln_phi_draws(self._p, mg[None, :], np.clip(zg, 0.2, 3.0)[:, None])[0]
        self._zg = zg
        self._ln_norm = np.log(np.trapezoid(np.exp(lphi), mg, axis=1))

    def log_density(self, log_mass: np.ndarray, z: np.ndarray, log_sfr: np.ndarray | None = None) -> np.ndarray:
        log_mass, z = np.asarray(log_mass, float), np.asarray(z, float)
        zc = np.clip(z, 0.2, 3.0)  # Prospector-beta clamps the mass function outside 0.2-3
        lm = ln_phi_draws(self._p, log_mass, zc)[0] - np.interp(z, self._zg, self._ln_norm)
        out = lm + np.interp(z, self._z, self._ln_pz)
        return np.where((log_mass >= self.lo) & (log_mass <= self.hi), out, -np.inf)


@dataclass
class MockTruth:
    """What the mock was drawn from."""

    params: ContinuityParams
    seed: int
    n_true: dict[str, int]
    n_selected: dict[str, int]
    expected_true: dict[str, float]
    true_log_mass: np.ndarray  # of the selected galaxies, in catalogue order
    true_z: np.ndarray
    deltas: dict[str, float] = field(default_factory=dict)  # injected density contrasts
    #: index of the true galaxy behind each catalogue entry: a galaxy in an overlap that both
    #: fields detect appears twice with the same index (duplicates).
    source_index: np.ndarray | None = None


def draw_mock(
    survey: Survey,
    params: ContinuityParams | None = None,
    *,
    seed: int = 0,
    n_samples: int = 32,
    spec_fraction: float = 0.0,
    interim_prior: str | None = None,
    moment_matched: bool = False,
    cosmic_variance: bool = False,
    slice_dz: float = DEFAULT_SLICE_DZ,
    deltas: dict[str, float] | None = None,
    volume: VolumeTable | None = None,
    n_grid_z: int = 600,
    dlogm: float = 0.004,
) -> tuple[PosteriorCatalog, MockTruth]:
    """Draw a mock posterior catalogue.

    Fields that overlap on the sky (:attr:`popmodel.survey.Survey.overlaps`) share the true
    galaxies of their common footprint: each field observes them with its own errors and cuts,
    so galaxies that both detect appear twice (catalogue ``field`` values ``"B[A]"`` or the
    plain name of a field inside another, :meth:`popmodel.survey.Survey.region_labels`; the
    truth's ``source_index`` links the copies). The fit's ownership rules remove the copies.

    Args:
        survey: fields (areas, redshift ranges, completeness, error model) and cosmology.
        params: the true continuity model (default: Leja et al. 2020 medians).
        seed: seed of ``np.random.default_rng``; the same seed gives the same catalogue.
        n_samples: posterior samples per galaxy.
        spec_fraction: fraction of galaxies with exact (spectroscopic) redshifts.
        interim_prior: None (flat) or "prospector-beta" (needs exact redshifts).
        moment_matched: rescale each galaxy's standard-normal draws to zero mean and unit
            variance before use, so that the samples' mean and variance equal the exact
            Gaussian posterior's (flat prior only). A perfect SED fitter: the posterior's
            moments carry no sampling noise, so :func:`popmodel.compress.gauss_hermite`
            recovers the exact posterior (used to test the population model separately from
            the Monte Carlo error of finite samples).
        cosmic_variance: apply per-field, per-slice density contrasts to the true galaxies,
            drawn from the prior the fit uses (:mod:`popmodel.smf.density`; fields with a known
            geometry only): the number density of mass M in field f, slice k is multiplied by
            exp(b(M, z) delta_fk - b^2 sigma_DM^2 / 2).
        slice_dz: slice width of the density terms.
        deltas: label -> delta to inject instead of prior draws (others still drawn).
        volume: a precomputed :class:`VolumeTable` for the survey's cosmology.
        n_grid_z, dlogm: resolution of the grid the true galaxies are drawn from.

    Returns:
        The catalogue (with observed point estimates) and the truth. Its ``meta`` records the
        survey's cosmology and IMF (``meta["cosmology"]``, ``meta["imf"]``), in which the
        masses are drawn.
    """
    p = params if params is not None else leja2020_params()
    rng = np.random.default_rng(seed)
    vt = volume or VolumeTable.build(survey.cosmology)
    prior = None
    if interim_prior == "prospector-beta":
        if spec_fraction < 1.0 and any(max(f.z_error) > 0 for f in survey.fields):
            raise ValueError("interim_prior='prospector-beta' mocks need exact redshifts "
                             "(z_error = 0 or spec_fraction = 1)")
        prior = ProspectorBetaLikePrior()
    elif interim_prior is not None:
        raise ValueError(f"unknown interim_prior {interim_prior!r}")
    terms, delta_vec = None, None
    if cosmic_variance:
        terms = build_density_terms(survey, dz=slice_dz)
        if terms is None:
            raise ValueError("cosmic_variance=True, but no field has a known geometry")
        eta = rng.standard_normal(terms.n_terms)
        chol = terms.chol  # fields inside others: correlated contrasts
        delta_vec = terms.sigma_dm * eta if chol is None else chol @ eta
        for k, v in (deltas or {}).items():
            if k not in terms.labels:
                raise ValueError(f"unknown density term {k!r}; known: {list(terms.labels)}")
            delta_vec[terms.labels.index(k)] = float(v)
    elif deltas:
        raise ValueError("deltas given but cosmic_variance=False")
    if terms is not None and any(o.inside is None for o in survey.overlaps):
        raise ValueError("cosmic_variance mocks of partially overlapping fields are not "
                         "supported (only fields inside others have correlated density terms)")
    cols = {k: [] for k in ("field", "m", "z", "mo", "zo", "sm", "sz", "szf", "src")}
    n_true = {f.name: 0 for f in survey.fields}
    expected = {f.name: 0.0 for f in survey.fields}
    n_sel = {f.name: 0 for f in survey.fields}
    n_src = 0
    for area_sr, seen_by in _sky_regions(survey):
        fl = [survey.field(name) for name, _ in seen_by]
        smax = [max(f.mass_error_dex) for f in fl]
        pads = [5.0 * max(f.z_error) * (1.0 + f.z_max) for f in fl]
        z_edges = np.linspace(min(max(f.z_min - pd, 1e-3) for f, pd in zip(fl, pads, strict=True)),
                              max(f.z_max + pd for f, pd in zip(fl, pads, strict=True)), n_grid_z + 1)
        zc = 0.5 * (z_edges[1:] + z_edges[:-1])
        # the mass floor at each z: 6 sigma below the lowest limit of a field observing there
        floor = np.full(zc.shape, np.inf)
        for f, sm_max, pd in zip(fl, smax, pads, strict=True):
            inz = (zc >= max(f.z_min - pd, 1e-3) - 1e-12) & (zc <= f.z_max + pd + 1e-12)
            floor = np.where(inz, np.minimum(floor, f.log_mass_limit(zc) - 6.0 * sm_max - 0.05),
                             floor)
        m_lo = float(np.min(floor[np.isfinite(floor)]))
        m_edges = np.arange(m_lo, _LOG_M_TOP + dlogm, dlogm)
        mc = 0.5 * (m_edges[1:] + m_edges[:-1])
        rate = np.exp(ln_phi_draws(p, mc[None, :], zc[:, None])[0] + vt.log_dvdz_at(zc)[:, None])
        rate *= area_sr * np.diff(z_edges)[:, None] * dlogm
        rate[mc[None, :] < floor[:, None]] = 0.0
        if terms is not None:
            # a region inside a nested field takes that field's contrast; the rest of a parent
            # takes what makes the parent's area-weighted mean its own contrast
            names = [n for n, _ in seen_by]
            inner = [n for n in names if any(survey.field(n).inside)] or names
            g = survey.field_names.index(inner[0])
            if g in terms.field_index:
                gz, gm = np.meshgrid(zc, mc, indexing="ij")
                idx, b = terms.assign(np.full(gz.shape, g), gm, gz)
                dv = _rest_of_parent_delta(survey, terms, delta_vec, inner[0], area_sr)
                rate *= np.exp(b * dv[idx] - 0.5 * (b * terms.sigma_dm[idx]) ** 2)
        lam = float(rate.sum())
        if not (np.isfinite(lam) and lam > 0):
            # nothing to draw from: numpy's choice would fail with "Probabilities do not sum
            # to 1" (an empty mass grid) or "contain NaN" (a grid of zeros)
            raise SurveyError(_no_galaxies_message(fl, lam))
        n = int(rng.poisson(lam))
        cell = rng.choice(rate.size, size=n, p=(rate / lam).ravel()) if n else np.zeros(0, int)
        iz, im = np.unravel_index(cell, rate.shape)
        z = z_edges[iz] + rng.uniform(size=n) * np.diff(z_edges)[iz]
        m = m_edges[im] + rng.uniform(size=n) * dlogm
        src = n_src + np.arange(n)
        n_src += n
        for f, (_, label), pd in zip(fl, seen_by, pads, strict=True):  # each field observes
            sm = rng.choice(np.asarray(f.mass_error_dex), size=n)
            spec = rng.uniform(size=n) < spec_fraction
            szf = rng.choice(np.asarray(f.z_error), size=n)  # sigma_z/(1+z) per galaxy
            sz = np.where(spec, 0.0, szf * (1.0 + z))
            zo = z + sz * rng.standard_normal(n)
            mo = m + sm * rng.standard_normal(n)
            keep = f.selects(mo, zo)  # the catalogue cut the fits assume
            zr = (zc >= max(f.z_min - pd, 1e-3) - 1e-12) & (zc <= f.z_max + pd + 1e-12)
            n_true[f.name] += n if len(fl) == 1 else int(np.sum(zr[iz]))
            expected[f.name] += lam if len(fl) == 1 else float(rate[zr].sum())
            n_sel[f.name] += int(keep.sum())
            szf = np.where(spec, 0.0, szf)
            for k, v in zip(("m", "z", "mo", "zo", "sm", "sz", "szf", "src"),
                            (m, z, mo, zo, sm, sz, szf, src), strict=True):
                cols[k].append(v[keep])
            cols["field"].append(np.full(int(keep.sum()), label))
    c = {k: np.concatenate(v) for k, v in cols.items()}
    n = c["mo"].size
    if moment_matched and (prior is not None or n_samples < 2):
        raise ValueError("moment_matched mocks need a flat interim prior and n_samples >= 2")

    def normal_draws() -> np.ndarray:
        e = rng.standard_normal((n, n_samples))
        if moment_matched:
            e = (e - e.mean(axis=1, keepdims=True)) / e.std(axis=1, keepdims=True)
        return e

    sz_post = c["szf"] * (1.0 + c["zo"])  # posterior width from the observed redshift
    zs = c["zo"][:, None] + sz_post[:, None] * normal_draws()
    bad = zs <= 1e-3
    while np.any(bad):  # truncate at z > 0 by redrawing (the flat prior lives on z > 0)
        zs[bad] = (c["zo"][:, None] + sz_post[:, None] * normal_draws())[bad]
        bad = zs <= 1e-3
    if prior is None:
        ms = c["mo"][:, None] + c["sm"][:, None] * normal_draws()
        log_prior = None
    else:
        ms = _sample_mass_with_prior(rng, c["mo"], c["sm"], c["zo"], prior, n_samples)
        log_prior = prior.log_density(ms, zs).ravel()
    cat = PosteriorCatalog(
        ids=np.array([f"mock{i:07d}" for i in range(n)]),
        fields=c["field"].astype(str),
        offsets=np.arange(n + 1, dtype=np.int64) * n_samples,
        log_mass=ms.ravel(),
        z=zs.ravel(),
        log_prior=log_prior,
        obs_log_mass=c["mo"],
        obs_z=c["zo"],
        meta={
            "mock": True,
            # the conventions the masses are drawn in: the survey's (popmodel.conventions)
            "cosmology": cosmology_record(survey.cosmology),
            "imf": survey.imf,
            "seed": int(seed),
            "n_samples": int(n_samples),
            "spec_fraction": float(spec_fraction),
            "interim_prior": interim_prior or "flat",
            "moment_matched": bool(moment_matched),
            "deltas": {} if terms is None else dict(zip(terms.labels, map(float, delta_vec), strict=True)),
            "true_params": {k: float(v) for k, v in p.to_dict().items()},
            "error_model": "Gaussian mass errors (width drawn per galaxy from each field's "
            "mass_error_dex); z errors z_error*(1+z); posterior samples centred on observed values",
        },
    )
    dd = {} if terms is None else dict(zip(terms.labels, map(float, delta_vec), strict=True))
    return cat, MockTruth(p, seed, n_true, n_sel, expected, c["m"], c["z"], dd, c["src"])


def _no_galaxies_message(fl: list, lam: float) -> str:
    """Why a sky region of the mock can hold no galaxy, naming its field(s)."""
    names = " and ".join(repr(f.name) for f in fl)
    lims = "; ".join(
        f"{f.name!r}: log M_c from {np.min(f.completeness_log_mass):g} to "
        f"{np.max(f.completeness_log_mass):g}" for f in fl
    )
    if not np.isfinite(lam):
        return (f"mock: the expected number of galaxies of field {names} is {lam} (check the "
                "field's area and the survey's cosmology)")
    return (
        f"mock: field {names} can hold no galaxy: its completeness limit ({lims}) lies above "
        f"the masses the mock draws (log M up to {_LOG_M_TOP:g}, where the mass function vanishes) "
        "at every redshift of the field; is the table's log_mass in log10 Msun?"
    )


def _rest_of_parent_delta(survey: Survey, terms, delta_vec: np.ndarray, name: str,
                          area_sr: float) -> np.ndarray:
    """The contrasts to apply in a region seen by field ``name`` only: a parent's region outside
    its nested fields gets ``(A_P delta_P - sum A_c delta_c) / area`` (slice by slice), so that
    the parent's area-weighted mean contrast is ``delta_P``; any other region, ``delta_vec``."""
    children = [f for f in survey.fields if name in f.inside]
    if not children:
        return delta_vec
    out = delta_vec.copy()
    g = survey.field_names.index(name)
    parent = survey.field(name)
    for k in np.flatnonzero(terms.field_index == g):
        total = parent.area_sr * delta_vec[k]
        zc = 0.5 * (terms.z_lo[k] + terms.z_hi[k])
        for c in children:
            gc = survey.field_names.index(c.name)
            ck = [j for j in np.flatnonzero(terms.field_index == gc)
                  if terms.z_lo[j] - 1e-9 <= zc <= terms.z_hi[j] + 1e-9]
            total -= c.area_sr * (delta_vec[ck[0]] if ck else delta_vec[k])
        out[k] = total / area_sr
    return out


def _sky_regions(survey: Survey) -> list[tuple[float, list[tuple[str, str]]]]:
    """Disjoint pieces of the survey's footprint: (area [sr], [(field, catalogue label)]).

    Each field's area outside its overlaps is one piece seen by that field alone (labelled with
    its name); each overlap is one piece seen by both fields, whose galaxies are labelled with
    the region labels of :meth:`popmodel.survey.Survey.region_labels` (a field inside another
    keeps its plain name). Without overlaps: the fields, in order.
    """
    out = []
    for f in survey.fields:
        mine = [o for o in survey.overlaps if f.name in o.fields]
        rest = f.area_sr - sum(o.area_sr for o in mine)
        if rest > 1e-12 * f.area_sr:
            out.append((rest, [(f.name, f.name)]))
    for o in survey.overlaps:
        out.append((o.area_sr, [(n, n if n == o.inside else o.region_label(n)) for n in o.fields]))
    return out


def _sample_mass_with_prior(
    rng: np.random.Generator, mo: np.ndarray, sm: np.ndarray, z: np.ndarray,
    prior: ProspectorBetaLikePrior, n_samples: int, n_grid: int = 401,
) -> np.ndarray:
    """Exact draws from N(mo | m, sm) pi(m | z) by inverse CDF on a per-galaxy grid."""
    out = np.empty((mo.size, n_samples))
    t = np.linspace(-7.0, 7.0, n_grid)
    for sl in np.array_split(np.arange(mo.size), max(1, mo.size // 4096)):
        g = mo[sl, None] + sm[sl, None] * t[None, :]
        lp = -0.5 * t[None, :] ** 2 + prior.log_density(g, np.broadcast_to(z[sl, None], g.shape))
        lp -= lp.max(axis=1, keepdims=True)
        pdf = np.exp(lp)
        cdf = np.concatenate([np.zeros((len(sl), 1)), np.cumsum(0.5 * (pdf[:, 1:] + pdf[:, :-1]), axis=1)], axis=1)
        cdf /= cdf[:, -1:]
        u = rng.uniform(size=(len(sl), n_samples))
        for k, row in enumerate(sl):
            out[row] = np.interp(u[k], cdf[k], g[k])
    return out
