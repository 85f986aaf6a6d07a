"""The packaged 3D-HST sample with UV+IR SFRs, as a posterior catalogue for the SFS flow.

Built from ``popmodel/data/threedhst_td_leja_sample.csv.gz`` (provenance in
``popmodel/data/README.md``) with :func:`popmodel.percentiles.catalog_from_percentiles`:
redshift samples from the catalogue's 68/95% intervals (spectroscopic redshifts exact), FAST
masses with an **assumed** Gaussian uncertainty (default 0.1 dex) and the UV+IR SFRs of
Whitaker et al. 2014 (3D-HST ``sfr`` column) with an **assumed** Gaussian uncertainty (default
0.3 dex); both move with the luminosity distance of each redshift sample. The catalogue gives
no uncertainty for either, so these widths are assumptions and are recorded in the provenance.

Selection: galaxies with ``z_min <= z_best <= z_max`` and FAST mass above the Tomczak et al.
2014 completeness limit at z_best (:func:`popmodel.datasets.threedhst_survey`, which also
describes the mass-error model of the selection function). Galaxies without a UV+IR SFR
(sentinel -99 or SFR <= 0; 253 of the 37,285 selected td_new galaxies at 0.5 <= z <= 2.5) or
without a valid mass are dropped and counted.

These are not Prospector fits: FAST masses are lower and UV+IR SFRs higher than Prospector's
(Leja et al. 2019b, 2022), so the sequence is expected to sit above Leja et al. 2022.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from popmodel.catalog import PosteriorCatalog
from popmodel.cosmology import cosmology_record
from popmodel.datasets import (
    THREEDHST_COSMOLOGY,
    THREEDHST_IMF,
    load_3dhst_table,
    threedhst_cosmology,
    threedhst_survey,
)
from popmodel.percentiles import catalog_from_percentiles
from popmodel.survey import Survey

__all__ = ["threedhst_sfs_catalog"]


def threedhst_sfs_catalog(
    *,
    n_samples: int = 32,
    mass_error_dex: float = 0.1,
    sfr_error_dex: float = 0.3,
    z_min: float = 0.5,
    z_max: float = 2.5,
    seed: int = 0,
    sample: str = "td_new",
    max_galaxies: int | None = None,
) -> tuple[PosteriorCatalog, Survey, dict[str, Any]]:
    """The 3D-HST galaxies above completeness with (z, log M, log SFR) posterior samples.

    Args:
        n_samples: Samples per galaxy.
        mass_error_dex: Assumed FAST mass uncertainty [dex] (also the selection's error model).
        sfr_error_dex: Assumed UV+IR SFR uncertainty [dex].
        z_min, z_max: Redshift window on ``z_best`` (``z_max`` at most 2.55).
        seed: Seed of the sample draws.
        sample: ``"td_new"`` (default), ``"td_huge"`` or ``"all"``.
        max_galaxies: Keep a random subset of this size (for quick runs).

    Returns:
        ``(catalog, survey, provenance)``. ``catalog.meta["cosmology"]`` and
        ``catalog.meta["imf"]`` record the conventions of the masses and SFRs (flat
        Lambda-CDM, H0 = 70, Om0 = 0.3; Chabrier IMF: the 3D-HST catalogue README and
        Skelton et al. 2014, ApJS 214, 24), the survey's too.
    """
    survey = threedhst_survey(z_min=z_min, z_max=z_max, mass_error_dex=mass_error_dex)
    t = load_3dhst_table(sample)
    z = np.asarray(t["z_best"], float)
    m = np.asarray(t["fast_lmass"], float)
    sfr = np.asarray(t["sfr"], float)
    fields = np.asarray(t["field"]).astype(str)
    limit = survey.fields[0].log_mass_limit(z)
    valid_m = np.isfinite(m) & (m > 0)
    in_z = (z >= z_min) & (z <= z_max)
    above = in_z & valid_m & (m > limit)
    has_sfr = np.isfinite(sfr) & (sfr > 0)
    keep = above & has_sfr
    rng = np.random.default_rng([seed, 3])
    rows = np.flatnonzero(keep)
    if max_galaxies is not None and rows.size > max_galaxies:
        rows = np.sort(rng.choice(rows, max_galaxies, replace=False))
    ids = np.char.add(np.char.add(fields[rows], "_"), np.asarray(t["phot_id"]).astype(str)[rows])
    cosmo = threedhst_cosmology()
    col = {c: np.asarray(t[c], float)[rows] for c in ("z_best_l95", "z_best_l68", "z_best_u68", "z_best_u95")}
    catalog, report = catalog_from_percentiles(
        ids, fields[rows], z[rows], col["z_best_l68"], col["z_best_u68"], m[rows],
        mass_error_dex=mass_error_dex, n_samples=n_samples, z_p2_5=col["z_best_l95"],
        z_p97_5=col["z_best_u95"], log_sfr=np.log10(sfr[rows]), sfr_error_dex=sfr_error_dex,
        cosmology=cosmo, seed=seed,
    )
    provenance = {
        "data_set": "Leja et al. 3D-HST td sample (popmodel/data/threedhst_td_leja_sample.csv.gz)",
        "sample": sample,
        "masses": "FAST (Skelton et al. 2014 setup), Chabrier",
        "sfrs": "UV+IR (Whitaker et al. 2014; 3D-HST v4.1.5 'sfr' column), Chabrier",
        "assumed_mass_error_dex": mass_error_dex,
        "assumed_sfr_error_dex": sfr_error_dex,
        "assumption_note": (
            f"the catalogue gives no uncertainties: Gaussian {mass_error_dex} dex in mass and "
            f"{sfr_error_dex} dex in SFR are ASSUMED, plus the luminosity-distance shift of both "
            "with each redshift sample"
        ),
        "counts": {
            "input": len(t), "in_z_window": int(in_z.sum()),
            "above_completeness": int(above.sum()),
            "dropped_no_uvir_sfr": int((above & ~has_sfr).sum()),
            "kept": int(rows.size),
        },
        "z_window": [z_min, z_max],
        "completeness": "Tomczak et al. 2014 FAST limits (popmodel.datasets.FAST_COMPLETENESS_TOMCZAK14)",
        "percentiles_report": report.as_dict() | {"ids_median_outside_68": len(report.ids_median_outside_68)},
        "n_samples": n_samples,
        "seed": seed,
        "cosmology": dict(THREEDHST_COSMOLOGY),
    }
    catalog.meta["provenance"] = provenance
    catalog.meta["seed"] = seed
    catalog.meta["cosmology"] = cosmology_record(cosmo)
    catalog.meta["imf"] = THREEDHST_IMF
    return catalog, survey, provenance
