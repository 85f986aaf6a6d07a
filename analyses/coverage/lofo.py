"""Step 5 of the coverage study: leave-one-field-out fits of the real 3D-HST data.

Run from the repository root (after ``fits_real.py base``, used for the fitted contrasts):

    JAX_ENABLE_X64=1 OPENBLAS_NUM_THREADS=1 python analyses/coverage/lofo.py AEGIS COSMOS GOODSN GOODSS UDS

For each named field F: fit the other four fields (``common.fit_config``, Laplace, anchors
(0.2, 1.6, 3.0), mass error 0.1), then predict F's counts on the default bins
(``write_model_checks`` edges) with F's density contrasts drawn from their prior
N(0, sigma_DM) per slice (``build_density_terms`` of the one-field survey, dz 0.5; seed
``DELTA_SEED``), one per posterior draw. Records ``lofo.<F>``:
* ``log_pred_pointwise``: sum over bins of log mean_d Poisson(N_obs | mu_d);
* ``log_pred_joint``: log mean_d prod_bins Poisson(N_obs | mu_d) (bins share the draw's contrasts);
* ``ppc``: coverage of the central 95% interval (one Poisson draw per posterior draw, seed 0);
* ``slices``: per density slice (5 of ~0.41 in z), observed / predicted total counts above the
  limit, the relative sd of the prediction from the contrasts alone (``cv_sd``: parameters
  held at their draws, delta from the prior), from the parameters alone (``param_sd``), the
  total sd with Poisson, the z-score, and the full-survey baseline fit's contrast of F in that
  slice in units of its sigma_DM (``base_delta_over_sigma``; MAP).
"""

import sys
import time

import numpy as np
from common import (
    BASE_ANCHORS,
    code_state,
    default_edges,
    fit_info,
    load_data,
    record,
    run_fit,
    sub_survey,
    summarize_ppc,
)
from scipy.special import logsumexp
from scipy.stats import poisson

DELTA_SEED = 5


def main(names):
    from popmodel.smf.checks import observed_counts, posterior_predictive_counts, predicted_counts
    from popmodel.smf.density import build_density_terms

    cat, survey = load_data(0.1)
    base = run_fit("base", None, None, BASE_ANCHORS)
    fields = np.asarray(cat.fields).astype(str)
    for name in names:
        t0 = time.perf_counter()
        others = [f.name for f in survey.fields if f.name != name]
        s4 = sub_survey(survey, others)
        c4 = cat.subset(np.isin(fields, others))
        fit = run_fit(f"lofo_{name}", c4, s4, BASE_ANCHORS)
        s1 = sub_survey(survey, [name])
        c1 = cat.subset(fields == name)
        terms = build_density_terms(s1, dz=0.5)
        draws = fit.draws()
        n_d = np.asarray(draws.alpha1).reshape(-1).size
        rng = np.random.default_rng(DELTA_SEED)
        dl = rng.standard_normal((n_d, terms.n_terms)) * terms.sigma_dm[None, :]
        view = fit.with_survey(s1)
        view.data.density = terms
        m_e, z_e = default_edges(survey)
        mu = predicted_counts(view.data, draws, m_e, z_e, deltas=dl)  # (D, 1, nM, nZ)
        obs = observed_counts(c1, s1, m_e, z_e)
        pred = posterior_predictive_counts(mu, np.random.default_rng(0))
        pp = summarize_ppc(obs, mu, pred, s1, m_e, z_e)
        lp = poisson.logpmf(obs[None], np.maximum(mu, 1e-300))
        res = {"settings": {"fitted_fields": others, "anchor_z": list(BASE_ANCHORS),
                            "delta_seed": DELTA_SEED, "ppc_seed": 0, "mass_error_dex": 0.1},
               **fit_info(fit)}
        res["log_pred_pointwise"] = float((logsumexp(lp, axis=0) - np.log(n_d)).sum())
        res["log_pred_joint"] = float(logsumexp(lp.reshape(n_d, -1).sum(axis=1)) - np.log(n_d))
        res["ppc"] = {k: pp[k] for k in ("coverage", "n_scored", "n_missed", "n_missed_obs_below",
                                         "n_missed_obs_above", "by_class", "lowest_bins",
                                         "observed_total", "predicted_total")}
        # totals per density slice, all masses above the limit
        se = np.concatenate([terms.z_lo, terms.z_hi[-1:]])
        mm = np.array([6.0, 13.0])
        mu_s = predicted_counts(view.data, draws, mm, se, deltas=dl)[:, 0, 0, :]
        mu_p = predicted_counts(view.data, draws, mm, se, deltas=None)[:, 0, 0, :]
        o_s = observed_counts(c1, s1, mm, se)[0, 0, :]
        mp = base.map_params
        slices = []
        for k in range(se.size - 1):
            m = mu_s[:, k]
            lab = terms.labels[k]
            bd = mp.get(lab, None)
            if bd is None and f"{lab}_eta" in mp:
                bd = mp[f"{lab}_eta"] * float(terms.sigma_dm[k])
            # contrasts-only spread: ratio of the with-delta to no-delta prediction per draw
            cv = np.std(m / mu_p[:, k]) / np.mean(m / mu_p[:, k])
            slices.append({
                "z": [float(se[k]), float(se[k + 1])], "observed": int(o_s[k]),
                "pred_mean": float(m.mean()), "obs_over_pred": float(o_s[k] / m.mean()),
                "cv_sd": float(cv), "param_sd": float(mu_p[:, k].std() / mu_p[:, k].mean()),
                "total_sd_rel": float(np.sqrt(m.var() + m.mean()) / m.mean()),
                "z_score": float((o_s[k] - m.mean()) / np.sqrt(m.var() + m.mean())),
                "sigma_dm": float(terms.sigma_dm[k]),
                "base_delta_over_sigma": None if bd is None else float(bd / terms.sigma_dm[k]),
            })
        res["slices"] = slices
        res["wall_s_total"] = time.perf_counter() - t0
        print(f"[lofo {name}] logpred pw {res['log_pred_pointwise']:.1f} joint {res['log_pred_joint']:.1f} "
              f"cov {pp['coverage']:.3f}; obs/pred per slice "
              f"{[round(s['obs_over_pred'], 3) for s in slices]} z {[round(s['z_score'], 2) for s in slices]}",
              flush=True)
        res["code_state"] = code_state()
        record(["lofo", name], res)


if __name__ == "__main__":
    main(sys.argv[1:])
