"""Coverage study, step 6: does a freer cosmic-variance model take up the misses?

Run from the repository root (one process; fits cached like the others):

    JAX_ENABLE_X64=1 OPENBLAS_NUM_THREADS=1 python analyses/coverage/cv_variants.py sd025 slice025 slice025_sd025

Variants of the baseline Laplace fit (``common.fit_config``, anchors 0.2, 1.6, 3.0, 0.1 dex):
    sd025           every field's density-term prior sd set to 0.25 (``sigma_dm`` override,
                    about 2-3.5x the fields' own 0.068-0.119): more field-slice scatter allowed
    slice025        density terms per field and slice of dz = 0.25 instead of 0.5 (50 terms):
                    finer redshift structure within each field
    slice025_sd025  both
Records ``fits.<tag>`` in ``analyses/recorded/coverage_study.json`` with the PPC coverage on
the default bins and its class breakdown, as ``fits_real.py`` does.
"""

import dataclasses
import sys
import time

from common import BASE_ANCHORS, fit_config, fit_info, load_data, ppc, record_run, run_fit

VARIANTS = {"sd025": (0.25, 0.5), "slice025": (None, 0.25), "slice025_sd025": (0.25, 0.25)}


def main(tags):
    from popmodel.survey import Survey

    for tag in tags:
        sd, dz = VARIANTS[tag]
        t0 = time.perf_counter()
        cat, survey = load_data(0.1)
        if sd is not None:
            survey = Survey(fields=tuple(dataclasses.replace(f, sigma_dm=sd) for f in survey.fields),
                            cosmology=survey.cosmology, name=f"{survey.name} (sigma_dm {sd})",
                            imf=survey.imf)
        config = dataclasses.replace(fit_config(BASE_ANCHORS), slice_dz=dz)
        fit = run_fit(tag, cat, survey, BASE_ANCHORS, config=config)
        res = {"settings": {"sigma_dm_override": sd, "slice_dz": dz, "mass_error_dex": 0.1,
                            "anchor_z": list(BASE_ANCHORS),
                            "fit": "Laplace, 4 x 100 draws, seed 0, n_bootstrap 0", "ppc_seed": 0},
               **fit_info(fit)}
        res["n_density_terms"] = int(fit.data.density.n_terms)
        res["ppc_own"] = ppc(fit, cat, survey)
        print(f"[{tag}] {res['n_density_terms']} terms; PPC {res['ppc_own']['coverage']:.3f} "
              f"({res['ppc_own']['n_scored']} bins); lowest "
              f"{res['ppc_own']['by_class']['lowest']['coverage']}, rest "
              f"{res['ppc_own']['by_class']['not_lowest']['coverage']}", flush=True)
        record_run(["fits", tag], res, t0)


if __name__ == "__main__":
    main(sys.argv[1:])
