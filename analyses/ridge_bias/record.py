"""Collect the run_mock_fit.py results (/tmp/exp/*.json, *.npz) into
analyses/recorded/ridge_bias_experiments.json: ridge - truth per run and the coverage of the
Student-t ridge band against the members' 16-84th percentiles."""
import glob
import json
from pathlib import Path

import numpy as np
from scipy.special import logsumexp

from popmodel.flow.sfs import ridge_band, sequence_statistics

out = {"what": "ridge_p50 (pooled, 0.1 dex smoothing) - truth at (log M, z) nodes; band coverage of the Student-t band (ridge_band) and of the members' 16-84th percentiles (the band before 33fe827)",
       "mock": "sequence_mock(n, n_samples=32, scatter=0.3, sfr_error=(0.15, 0.35), mass_error=0.1 unless noted, log_mass_limit=((0.3, 2.7), (9.25, 9.75)), log_mass_rolloff=8.0, schechter=(10.8, -1.0), quiescent_fraction=0.2 unless noted, seed)",
       "fit": "fit_sfs defaults (4-bin x 2 SFR splines, bootstrap, sfs_tolerance 0.005, patience 6) with 3 members and the run's options; one torch thread on a shared 2-core machine",
       "commands": "RIDGE_BIAS_DIR=/tmp/exp python analyses/ridge_bias/run_mock_fit.py --tag <tag> <args> (args in each run)", "runs": {}}
for f in sorted(glob.glob("/tmp/exp/*.json")):
    if f.endswith("record.json"): continue
    with open(f) as fh:
        d = json.load(fh)
    tag = d["args"]["tag"]
    z = np.load(f[:-5] + ".npz"); dens, M, Z, g, t = z["dens"], z["M"], z["Z"], z["grid"], z["truth"]
    r = {"args": d["args"], "wall_s": round(d["wall_s"]), "epochs": d["epochs"], "best_epoch": d["best_epoch"], "stop": d["stop"]}
    for h in (0.0, 0.1, 0.2, 0.3):
        st = np.stack([sequence_statistics(g, x, M, Z, ridge_smoothing=h).ridge for x in dens])
        pooled = sequence_statistics(g, logsumexp(dens, 0) - np.log(len(dens)), M, Z, ridge_smoothing=h).ridge
        lo, hi = ridge_band(st, pooled); p16, p84 = np.percentile(st, [16, 84], 0)
        r[f"h{h}"] = {"ridge_minus_truth": np.round(pooled - t, 4).tolist(),
                      "t_band_covers": ((lo <= t) & (t <= hi)).tolist(), "pct_band_covers": ((p16 <= t) & (t <= p84)).tolist(),
                      "t_band_width": np.round(hi - lo, 4).tolist(), "pct_band_width": np.round(p84 - p16, 4).tolist()}
    out["runs"][tag] = r
out["heldout_likelihood"] = {
    "command": "python analyses/ridge_bias/heldout_likelihood.py 2 6000 (one member, no bootstrap, trained on the seed-2 mock; evaluated on it and on an independent seed-1002 mock)",
    "mean_lnL_per_galaxy_bias_corrected": {"training_mock": {"flow": -2.4996, "true_conditional": -2.5175},
                                           "independent_mock": {"flow": -2.5577, "true_conditional": -2.5514}},
    "reading": "the flow beats the true p(log SFR | log M, z) by 0.018 nats/galaxy on the mock it was trained on and loses by 0.0063 on an independent one: the shape it puts near the peak (gap between quiescent and star-forming filled, left flank depleted) is fitted noise, not the likelihood optimum in the population"}
out["nodes"] = {"log_mass": M.tolist(), "z": Z.tolist()}
rec = Path(__file__).resolve().parents[1] / "recorded" / "ridge_bias_experiments.json"
with open(rec, "w") as fh:
    json.dump(out, fh, indent=1)
print(len(out["runs"]), "runs")
