"""Record a ``popmodel fit-sfs`` result folder in the form ``run_variant.py`` writes.

    python analyses/flow_speed/record_result.py RESULT_DIR TAG

Re-evaluates the stored members on the table's nodes with the stored settings (the table is
reproduced exactly) and writes ``$FLOW_SPEED_DIR/<TAG>.json`` with the members' statistics,
the training histories and the run's timing.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
from compare import grid_record

from popmodel.flow.fit import SFSConfig, sfs_table
from popmodel.io.sfs import load_sfs

OUT = Path(os.environ.get("FLOW_SPEED_DIR", "/tmp/flow_speed"))


def main(path: str, tag: str) -> None:
    res = load_sfs(path)
    cfg_d = res.meta["config"]
    cfg = SFSConfig(ridge_smoothing=cfg_d["ridge_smoothing"], ridge_estimator=cfg_d["ridge_estimator"],
                    doubling_cut=cfg_d["doubling_cut"], sfr_grid=tuple(cfg_d["sfr_grid"]))
    t0 = res.table
    m, z, lim = (np.asarray(t0[c], float) for c in ("log_mass", "z", "log_mass_limit"))
    cosmo = res.survey.cosmology if res.survey is not None else None
    table, stats = sfs_table(res.flows, m, z, lim, cfg, cosmology=cosmo)
    assert np.allclose(np.asarray(table["ridge_p50"]), np.asarray(t0["ridge_p50"]), equal_nan=True, atol=1e-6)
    rec = {
        "tag": tag, "config": cfg_d, "source": str(path),
        "timing": res.meta.get("timing_s"), "members": res.meta.get("training"),
        **grid_record(table, stats),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{tag}.json").write_text(json.dumps(rec))
    print(f"wrote {OUT / f'{tag}.json'} ({len(stats)} members, {m.size} nodes)")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
