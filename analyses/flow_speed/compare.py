"""Compare the sequence of flow-ensemble runs (``run_variant.py`` records or member files).

    python analyses/flow_speed/compare.py NEW.json REF.json [REF2.json]
    python analyses/flow_speed/compare.py --members NEW.json REF.json   # member 0 vs member 0

Ensemble comparison (the acceptance rule of the fast ensemble): at nodes above completeness,
the median |NEW - REF| of the central q50, log mean SFR and ridge (<= 0.03 dex) and of q16,
q84 (<= 0.05 dex); and at every node not flagged bimodal, |NEW - REF| <= 3 sqrt(se_new^2 +
se_ref^2) with se = the members' standard deviation / sqrt(K). With a second reference,
REF - REF2 gives the seed-to-seed difference of the reference itself.
"""

from __future__ import annotations

import json
import sys

import numpy as np

STATS = ("q16", "q50", "q84", "ridge", "log_mean_sfr")
CENTRAL = {"q16": "log_sfr_q16", "q50": "log_sfr_q50", "q84": "log_sfr_q84", "ridge": "ridge_p50",
           "log_mean_sfr": "log_mean_sfr_p50"}
LIMIT = {"q16": 0.05, "q50": 0.03, "q84": 0.05, "ridge": 0.03, "log_mean_sfr": 0.03}


def grid_record(table, stats) -> dict:
    """The grid part of a record: the nodes, the ensemble table and each member's
    :data:`STATS` (``table`` and ``stats`` as :func:`popmodel.flow.fit.sfs_table` returns them)."""
    return {
        "nodes": {"log_mass": np.asarray(table["log_mass"], float).tolist(),
                  "z": np.asarray(table["z"], float).tolist(),
                  "log_mass_limit": np.asarray(table["log_mass_limit"], float).tolist(),
                  "bimodal": np.asarray(table["bimodal"]).astype(bool).tolist()},
        "table": {c: np.asarray(table[c], float).tolist() for c in table.colnames if c != "bimodal"},
        "member_stats": {k: [np.asarray(getattr(s, k), float).tolist() for s in stats] for k in STATS},
    }


def load(path: str) -> dict:
    with open(path) as fh:
        return json.load(fh)


def _check_nodes(a: dict, b: dict) -> None:
    for k in ("log_mass", "z"):
        if not np.allclose(a["nodes"][k], b["nodes"][k]):
            raise SystemExit("the two runs have different SFS grids")


def ensemble(new: dict, ref: dict) -> dict:
    """The acceptance numbers of NEW against REF."""
    _check_nodes(new, ref)
    bimodal = np.asarray(new["nodes"]["bimodal"]) | np.asarray(ref["nodes"]["bimodal"])
    out = {}
    for s in STATS:
        a = np.asarray(new["table"][CENTRAL[s]], float)
        b = np.asarray(ref["table"][CENTRAL[s]], float)
        ma = np.asarray(new["member_stats"][s], float)
        mb = np.asarray(ref["member_stats"][s], float)
        with np.errstate(invalid="ignore"):
            se = np.hypot(np.nanstd(ma, 0, ddof=1) / np.sqrt(ma.shape[0]),
                          np.nanstd(mb, 0, ddof=1) / np.sqrt(mb.shape[0]))
        d = a - b
        ok = np.isfinite(d)
        fail = ok & ~bimodal & (np.abs(d) > 3 * se)
        out[s] = {"median_abs": float(np.median(np.abs(d[ok]))), "max_abs": float(np.max(np.abs(d[ok]))),
                  "limit": LIMIT[s], "n_nodes": int(ok.sum()), "n_tested": int((ok & ~bimodal).sum()),
                  "n_beyond_3se": int(fail.sum()),
                  "member_sd_median": float(np.nanmedian(np.nanstd(mb, 0, ddof=1)))}
    return out


def members(new: dict, ref: dict, k: int = 0) -> dict:
    _check_nodes(new, ref)
    out = {}
    for s in STATS:
        d = np.asarray(new["member_stats"][s][k], float) - np.asarray(ref["member_stats"][s][k], float)
        ok = np.isfinite(d)
        out[s] = {"median_abs": float(np.median(np.abs(d[ok]))), "mean": float(np.mean(d[ok]))}
    return out


def show(title: str, res: dict) -> None:
    print(title)
    for s, r in res.items():
        extra = (f"  limit {r['limit']} (over {r['n_nodes']} nodes), beyond 3 se at {r['n_beyond_3se']} of "
                 f"{r['n_tested']} not bimodal, "
                 f"member sd {r['member_sd_median']:.3f}" if "limit" in r else f"  mean {r['mean']:+.4f}")
        print(f"  {s:13s} median |d| {r['median_abs']:.4f}" + extra)


def main(argv: list[str]) -> None:
    if argv[0] == "--members":
        show("member 0 vs member 0", members(load(argv[1]), load(argv[2])))
        return
    new, ref = load(argv[0]), load(argv[1])
    show(f"{new['tag']} vs {ref['tag']}", ensemble(new, ref))
    if len(argv) > 2:
        ref2 = load(argv[2])
        show(f"seed-to-seed: {ref['tag']} vs {ref2['tag']}", ensemble(ref, ref2))


if __name__ == "__main__":
    main(sys.argv[1:])
