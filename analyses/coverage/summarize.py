"""Print the coverage study's tables from ``analyses/recorded/coverage_study.json`` (no compute).

    python analyses/coverage/summarize.py
"""

import json

import numpy as np
from common import RECORD


def main():
    d = json.loads(RECORD.read_text())
    print("== fits to the real data (PPC 95% coverage on each fit's own default bins) ==")
    base_lp = d["fits"].get("base_r02", {}).get("heldout_band", {}).get("log_pred_total")
    for tag, v in d.get("fits", {}).items():
        if "ppc_own" not in v:
            print(f"{tag:11s} no PPC ({v.get('status', 'failed')})")
            continue
        p = v["ppc_own"]
        b = p["by_class"]
        line = (f"{tag:11s} fit {v['timing']['wall_s']:5.0f} s  cov {p['coverage']:.3f} ({p['n_scored']} bins, "
                f"miss below/above {p['n_missed_obs_below']}/{p['n_missed_obs_above']})  lowest "
                f"{b['lowest']['coverage']:.2f} (resid {b['lowest']['mean_signed_resid']:+.2f}, obs/pred "
                f"{b['lowest']['obs_over_pred_total']:.3f})  others {b['not_lowest']['coverage']:.2f} "
                f"(resid {b['not_lowest']['mean_signed_resid']:+.2f})  straddling {b['straddling']['coverage']:.2f} "
                f"complete {b['complete']['coverage']:.2f}")
        if "ppc_original_limits" in v:
            line += f"  | on original-limit bins {v['ppc_original_limits']['coverage']:.3f}"
        print(line)
        hb = v.get("heldout_band")
        if hb:
            diff = hb["log_pred_total"] - base_lp if base_lp is not None else float("nan")
            print(f"{'':11s} held-out band log pred {hb['log_pred_total']:.2f} (vs base_r02 {diff:+.2f}); "
                  f"obs {hb['obs_band_per_zbin']} pred {[round(x) for x in hb['pred_band_per_zbin_mean']]} "
                  f"obs/pred {[round(x, 3) for x in hb['obs_over_pred_per_zbin']]}")
    print("\n== mocks ==")
    for case, v in d.get("mock", {}).items():
        p = v["ppc"]
        b = p["by_class"]
        print(f"{case:15s} N={v['mock']['n_catalogue']} cov {p['coverage']:.3f} ({p['n_scored']} bins, miss "
              f"below/above {p['n_missed_obs_below']}/{p['n_missed_obs_above']}) lowest {b['lowest']['coverage']:.2f} "
              f"(resid {b['lowest']['mean_signed_resid']:+.2f}) others {b['not_lowest']['coverage']:.2f} "
              f"straddling {b['straddling']['coverage']:.2f} complete {b['complete']['coverage']:.2f} "
              f"by z bin {[round(x, 2) for x in p['coverage_by_zbin']]}")
    print("\n== leave one field out ==")
    for name, v in d.get("lofo", {}).items():
        s = v["slices"]
        print(f"{name:7s} logpred pointwise {v['log_pred_pointwise']:.1f} joint {v['log_pred_joint']:.1f} "
              f"cov {v['ppc']['coverage']:.3f}")
        for r in s:
            print(f"    z {r['z'][0]:.2f}-{r['z'][1]:.2f} obs {r['observed']:5d} pred {r['pred_mean']:7.1f} "
                  f"obs/pred {r['obs_over_pred']:.3f} cv_sd {r['cv_sd']:.3f} param_sd {r['param_sd']:.3f} "
                  f"z-score {r['z_score']:+.2f} base delta/sigma {r['base_delta_over_sigma']:+.2f}")
    print("\n== field-coherent vs within-field residuals (miss_map; bins with 5 fields, pred > 50) ==")
    for tag, v in d.get("miss_map", {}).items():
        for kind in ("with_density_terms", "cosmic_mean"):
            rows = [r for r in v[kind]["rows"] if r["n_fields"] == 5 and r["pred"] > 50]
            mean = np.array([r["coherent_resid"] / np.sqrt(5) for r in rows])
            rms = np.array([r["rms_resid"] for r in rows])
            within = np.sqrt(np.maximum(rms ** 2 - mean ** 2, 0.0))
            print(f"{tag:24s} {kind:18s} cov {v[kind]['coverage']:.3f}  coherent rms "
                  f"{np.sqrt(np.mean(5 * mean ** 2)):.2f}  within-field sd {np.sqrt(np.mean(within ** 2 * 5 / 4)):.2f}"
                  f"  ({len(rows)} mass-z bins; both ~1 for Poisson scatter about a right model)")


if __name__ == "__main__":
    main()
