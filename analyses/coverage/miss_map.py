"""Where the PPC misses lie: (mass bin x z bin) maps of misses and residuals, from cached fits.

Run from the repository root after the fits exist in the cache (``fits_real.py``,
``mock_defect.py``):

    JAX_ENABLE_X64=1 OPENBLAS_NUM_THREADS=1 python analyses/coverage/miss_map.py base inside mock_control

For each tag: the default bins of the fit's own survey, all 400 draws with their density terms,
one Poisson draw each (seed 0, as ``common.ppc``). Records ``miss_map.<tag>``: per (mass bin, z
bin) the number of fields missed (of 5; ``+`` obs above the interval, ``-`` below), the
residual (obs - mean mu) / sqrt(mean mu) summed over fields / sqrt(5) (a field-coherent
offset), and the fields' residuals' rms; and the same with the cosmic-mean prediction (no
density terms), which says whether the contrasts absorb the misses. Mock tags re-draw their
catalogue deterministically (``mock_defect.make_mock``).
"""

import sys

import numpy as np
from common import default_edges, deltas_of, load_data, record, run_fit


def maps(fit, cat, survey, deltas):
    from popmodel.smf.checks import (
        central_interval,
        observed_counts,
        posterior_predictive_counts,
        predicted_counts,
    )

    m_e, z_e = default_edges(survey)
    mu = predicted_counts(fit.data, fit.draws(), m_e, z_e, deltas=deltas)
    pred = posterior_predictive_counts(mu, np.random.default_rng(0))
    obs = observed_counts(cat, survey, m_e, z_e)
    lo, hi = central_interval(pred, 0.95)
    scored = (obs > 0) | (hi > 0)
    mean = mu.mean(0)
    r = np.where(mean > 0, (obs - mean) / np.sqrt(np.maximum(mean, 1e-300)), 0.0)
    rows = []
    for i in range(m_e.size - 1):
        for j in range(z_e.size - 1):
            s = scored[:, i, j]
            if not s.any():
                continue
            rows.append({"log_m": [float(m_e[i]), float(m_e[i + 1])], "z": [round(float(z_e[j]), 4), round(float(z_e[j + 1]), 4)],
                         "n_fields": int(s.sum()), "obs": int(obs[:, i, j].sum()), "pred": round(float(mean[:, i, j].sum()), 1),
                         "miss_above": int((s & (obs[:, i, j] > hi[:, i, j])).sum()),
                         "miss_below": int((s & (obs[:, i, j] < lo[:, i, j])).sum()),
                         "coherent_resid": round(float(r[s, i, j].sum() / np.sqrt(s.sum())), 2),
                         "rms_resid": round(float(np.sqrt(np.mean(r[s, i, j] ** 2))), 2)})
    cov = float(((obs >= lo) & (obs <= hi))[scored].mean())
    return {"coverage": cov, "rows": rows}


def main(tags):
    for tag in tags:
        if tag.startswith("mock_"):
            from mock_defect import make_mock

            _cat0, survey = load_data(0.1)
            cat, _ = make_mock(tag[5:], survey)
        else:
            from common import raise_limits
            from fits_real import VARIANTS

            me, dex, _ = VARIANTS[tag]
            cat, s0 = load_data(me)
            survey = raise_limits(s0, dex)
        fit = run_fit(tag, None, None)
        out = {"with_density_terms": maps(fit, cat, survey, deltas_of(fit)),
               "cosmic_mean": maps(fit, cat, survey, None)}
        print(f"[{tag}] coverage with terms {out['with_density_terms']['coverage']:.3f}, "
              f"cosmic mean {out['cosmic_mean']['coverage']:.3f}")
        for row in out["with_density_terms"]["rows"]:
            if row["miss_above"] + row["miss_below"] >= 2 or abs(row["coherent_resid"]) > 3:
                print("  ", row)
        record(["miss_map", tag], out)


if __name__ == "__main__":
    main(sys.argv[1:])
