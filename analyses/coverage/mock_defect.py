"""Step 4 of the coverage study: injected-defect mocks fitted like the data.

Run from the repository root (after ``fits_real.py base``, whose cached fit gives the truth):

    JAX_ENABLE_X64=1 OPENBLAS_NUM_THREADS=1 python analyses/coverage/mock_defect.py control incompleteness narrow_errors

Truth: the MAP of the baseline fit (``fits_real.py base``: mass error 0.1, anchors
(0.2, 1.6, 3.0)), its continuity parameters and its five fields x five slices of density
contrasts (injected through ``draw_mock(..., cosmic_variance=True, deltas=...)``). Every mock is
drawn through ``threedhst_survey()`` (z 0.5-2.55, catalogue z-error mixture) with
``draw_mock(seed=MOCK_SEED, n_samples=16)`` and fitted with the same Laplace settings as the
data (``common.fit_config``, anchors (0.2, 1.6, 3.0)) against the 0.1 dex survey.

Cases:
    control         no defect (true and assumed mass errors 0.1 dex, sharp limits).
    incompleteness  galaxies with observed mass in [limit, limit + 0.2) kept with probability
                    0.9 + 0.5 (log M_obs - limit): 90% at the limit, 100% 0.2 dex above it
                    (Tomczak+14 limits are 90% completeness limits).
    incompl80       the same with 80% at the limit (0.8 + 1.0 (log M_obs - limit)).
    narrow_errors   true mass errors 0.05 dex; the catalogue posteriors and the fit assume 0.1
                    (each sample's offset from the observed mass is doubled).
    wide_errors     true mass errors 0.2 dex; posteriors and fit assume 0.1 (offsets halved).
    zstructure      a redshift modulation common to all fields that the smooth model cannot
                    follow: galaxies kept with probability
                    0.85 + 0.075 (1 + cos(2 pi (z_true - 1.75) / 1.0)) (1 at z = 0.75, 1.75;
                    0.85 at z = 1.25, 2.25), the pattern of the data's field-coherent residuals.
    zstructure_strong  the same with twice the amplitude: 0.7 + 0.15 (1 + cos(...)), 0.7-1.0.
    data_residual   the real data's own field-coherent deviation from the baseline model: each
                    galaxy kept with probability r / max(r), r = (observed / predicted counts of
                    all five fields) of its (observed mass, observed z) PPC bin in the baseline
                    fit (``miss_map.base``; bins with prediction < 50 get r = 1). The same
                    deviation in every field, no field zero point, sharp limits, true errors 0.1.
                    Needs ``miss_map.py base`` first.

Records ``mock.<case>`` in ``analyses/recorded/coverage_study.json``: PPC coverage on the
default bins with the class breakdown, and the fit's time.
"""

import dataclasses
import sys
import time

import numpy as np
from common import BASE_ANCHORS, fit_info, load_data, ppc, record_run, run_fit

MOCK_SEED = 11


def truth_from_base():
    from popmodel.smf.evolution import ContinuityParams

    base = run_fit("base", None, None, BASE_ANCHORS)  # cached
    mp = base.map_params
    params = ContinuityParams.from_dict({k: mp[k] for k in base.names}, BASE_ANCHORS)
    dens = base.data.density
    deltas = {}
    for lab, s in zip(dens.labels, dens.sigma_dm, strict=True):
        if lab in mp:
            deltas[lab] = mp[lab]
        else:  # the MAP holds the standardized latent
            deltas[lab] = float(s) * mp[f"{lab}_eta"]
    return params, deltas


def make_mock(case: str, survey_assumed):
    from popmodel.datasets import threedhst_survey
    from popmodel.mock import draw_mock

    params, deltas = truth_from_base()
    true_me = {"narrow_errors": 0.05, "wide_errors": 0.2}.get(case, 0.1)
    s_true = threedhst_survey(mass_error_dex=true_me)
    cat, truth = draw_mock(s_true, params, seed=MOCK_SEED, n_samples=16, cosmic_variance=True,
                           deltas=deltas)
    info = {"true_mass_error_dex": true_me, "n_drawn_selected": int(cat.n_galaxies),
            "deltas_injected": {k: round(v, 4) for k, v in deltas.items()}}
    if true_me != 0.1:  # posterior widths as the catalogue assumes them (0.1 dex)
        obs = np.repeat(np.asarray(cat.obs_log_mass), np.diff(cat.offsets))
        lm = obs + (np.asarray(cat.log_mass) - obs) * (0.1 / true_me)
        cat = dataclasses.replace(cat, log_mass=lm)
    if case.startswith("incompl"):
        c0 = 0.9 if case == "incompleteness" else 0.8
        rng = np.random.default_rng(MOCK_SEED + 1000)
        mo, zo = np.asarray(cat.obs_log_mass), np.asarray(cat.obs_z)
        lim = np.empty(mo.size)
        fields = np.asarray(cat.fields).astype(str)
        for f in survey_assumed.fields:
            sel = fields == f.name
            lim[sel] = f.log_mass_limit(zo[sel])
        x = mo - lim
        p = np.where(x < 0.2, c0 + (1 - c0) * np.clip(x, 0, 0.2) / 0.2, 1.0)
        keep = rng.uniform(size=mo.size) < p
        info.update(completeness_at_limit=c0, n_removed=int((~keep).sum()))
        cat = cat.subset(keep)
    if case.startswith("zstructure"):
        rng = np.random.default_rng(MOCK_SEED + 2000)
        zt = np.asarray(truth.true_z)
        amp = 0.15 if case == "zstructure" else 0.3
        p = 1 - amp + 0.5 * amp * (1 + np.cos(2 * np.pi * (zt - 1.75) / 1.0))
        keep = rng.uniform(size=zt.size) < p
        info.update(n_removed=int((~keep).sum()),
                    keep_probability=f"{1 - amp:g} + {amp / 2:g} (1 + cos(2 pi (z_true - 1.75)))")
        cat = cat.subset(keep)
    if case == "data_residual":
        import json

        from common import RECORD

        rows = json.loads(RECORD.read_text())["miss_map"]["base"]["with_density_terms"]["rows"]
        mo, zo = np.asarray(cat.obs_log_mass), np.asarray(cat.obs_z)
        r = np.ones(mo.size)
        for row in rows:
            if row["pred"] < 50:
                continue
            sel = (mo >= row["log_m"][0]) & (mo < row["log_m"][1]) & (zo >= row["z"][0]) & (zo < row["z"][1])
            r[sel] = row["obs"] / row["pred"]
        rng = np.random.default_rng(MOCK_SEED + 3000)
        keep = rng.uniform(size=mo.size) < r / r.max()
        info.update(n_removed=int((~keep).sum()), r_range=[float(r.min()), float(r.max())])
        cat = cat.subset(keep)
    info["n_catalogue"] = int(cat.n_galaxies)
    return cat, info


def main(cases):
    _, survey = load_data(0.1)
    for case in cases:
        t0 = time.perf_counter()
        cat, info = make_mock(case, survey)
        fit = run_fit(f"mock_{case}", cat, survey, BASE_ANCHORS)
        res = {"settings": {"mock_seed": MOCK_SEED, "case": case, "fit_mass_error_dex": 0.1,
                            "anchor_z": list(BASE_ANCHORS), "ppc_seed": 0,
                            "truth": "MAP of fits.base (continuity params + density contrasts)"},
               "mock": info, **fit_info(fit)}
        res["ppc"] = ppc(fit, cat, survey)
        b = res["ppc"]["by_class"]
        print(f"[mock {case}] coverage {res['ppc']['coverage']:.3f}; lowest {b['lowest']['coverage']} "
              f"(resid {b['lowest']['mean_signed_resid']:.2f}); rest {b['not_lowest']['coverage']}",
              flush=True)
        record_run(["mock", case], res, t0)


if __name__ == "__main__":
    main(sys.argv[1:])
