"""Steps 1-3 of the coverage study: Laplace fits to the real 3D-HST data and their checks.

Run from the repository root, one variant or several (sequentially, one process):

    JAX_ENABLE_X64=1 OPENBLAS_NUM_THREADS=1 python analyses/coverage/fits_real.py base inside base_r01 base_r02 \
        me005_r02 me015_r02 me02_r02 inside_r02 cubic4 cubic4_r02

Variants (tag: assumed mass error [dex], limits raised by [dex], anchors):
    base        0.10, 0.0, (0.2, 1.6, 3.0)     step 1
    inside      0.10, 0.0, (0.5, 1.525, 2.55)  step 1
    base_r01    0.10, 0.1, (0.2, 1.6, 3.0)     step 2
    base_r02    0.10, 0.2, (0.2, 1.6, 3.0)     steps 2 and 3 (held-out baseline)
    me005_r02   0.05, 0.2, (0.2, 1.6, 3.0)     step 3
    me015_r02   0.15, 0.2, (0.2, 1.6, 3.0)     step 3
    me02_r02    0.20, 0.2, (0.2, 1.6, 3.0)     step 3
    inside_r02  0.10, 0.2, (0.5, 1.525, 2.55)  step 3
    cubic4      0.10, 0.0, (0.5, 1.183, 1.867, 2.55)  extra: a freer (cubic) z evolution
    cubic4_r02  0.10, 0.2, (0.5, 1.183, 1.867, 2.55)  extra, held-out band

Each fit: ``common.fit_config`` (Laplace, 400 draws, seed 0); catalogue
``threedhst_catalog(n_samples=16, mass_error_dex=me, seed=0, z_min=0.5, z_max=2.55)``; the mass
error is changed in BOTH the survey's selection kernel and the catalogue's posterior widths.
Records into ``analyses/recorded/coverage_study.json`` under ``fits.<tag>``: the PPC coverage
on the fit's own default bins with the class breakdown (``ppc_own``), for raised fits also the
PPC on the original survey's bins (``ppc_original_limits``, band included) and the held-out band
score (``heldout_band``, for raise 0.2). Fits are cached in ``$COVERAGE_CACHE`` (/tmp).
"""

import sys
import time

from common import (
    BASE_ANCHORS,
    CUBIC_ANCHORS,
    INSIDE_ANCHORS,
    band_scores,
    code_state,
    fit_info,
    load_data,
    ppc,
    raise_limits,
    record,
    record_run,
    run_fit,
)

VARIANTS = {
    "base": (0.10, 0.0, BASE_ANCHORS),
    "inside": (0.10, 0.0, INSIDE_ANCHORS),
    "base_r01": (0.10, 0.1, BASE_ANCHORS),
    "base_r02": (0.10, 0.2, BASE_ANCHORS),
    "me005_r02": (0.05, 0.2, BASE_ANCHORS),
    "me015_r02": (0.15, 0.2, BASE_ANCHORS),
    "me02_r02": (0.20, 0.2, BASE_ANCHORS),
    "inside_r02": (0.10, 0.2, INSIDE_ANCHORS),
    "cubic4": (0.10, 0.0, CUBIC_ANCHORS),
    "cubic4_r02": (0.10, 0.2, CUBIC_ANCHORS),
}


def main(tags):
    for tag in tags:
        me, dex, anchors = VARIANTS[tag]
        t0 = time.perf_counter()
        cat, survey = load_data(me)
        fsurvey = raise_limits(survey, dex)
        fit = run_fit(tag, cat, fsurvey, anchors)
        res = {"settings": {"mass_error_dex": me, "limits_raised_dex": dex, "anchor_z": list(anchors),
                            "catalog": "threedhst_catalog(n_samples=16, seed=0, z 0.5-2.55)",
                            "fit": "Laplace, 4 x 100 draws, seed 0, n_bootstrap 0",
                            "ppc_seed": 0},
               **fit_info(fit)}
        if not fit.timing.get("map_converged", True):
            res["status"] = "MAP (L-BFGS) not converged"
        try:
            res["ppc_own"] = ppc(fit, cat, fsurvey)
        except ValueError as err:  # e.g. numpy's "lam value too large" from runaway draws
            res["status"] = f"{res.get('status', 'fit')}; PPC failed: {err}"
            res["code_state"] = code_state()
            print(f"[{tag}] {res['status']}", flush=True)
            record(["fits", tag], res)
            continue
        print(f"[{tag}] PPC own bins: {res['ppc_own']['coverage']:.3f} "
              f"({res['ppc_own']['n_scored']} bins); lowest "
              f"{res['ppc_own']['by_class']['lowest']['coverage']}, rest "
              f"{res['ppc_own']['by_class']['not_lowest']['coverage']}", flush=True)
        if dex > 0:
            res["ppc_original_limits"] = ppc(fit, cat, survey)
            print(f"[{tag}] PPC original bins: {res['ppc_original_limits']['coverage']:.3f}", flush=True)
        if abs(dex - 0.2) < 1e-9:
            res["heldout_band"] = band_scores(fit, cat, survey, fsurvey)
            hb = res["heldout_band"]
            print(f"[{tag}] held-out band log pred {hb['log_pred_total']:.2f}; obs "
                  f"{hb['obs_band_per_zbin']} pred {[round(x) for x in hb['pred_band_per_zbin_mean']]}",
                  flush=True)
        record_run(["fits", tag], res, t0)


if __name__ == "__main__":
    main(sys.argv[1:])
