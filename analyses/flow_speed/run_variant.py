"""Train the 3D-HST flow ensemble with chosen settings and record its sequence per member.

Writes ``$FLOW_SPEED_DIR/<tag>.json`` (default directory ``/tmp/flow_speed``): the settings,
wall time, the training history of every member, and per member and node the 16/50/84th
percentiles, ridge and log mean SFR of p(log SFR | log M, z) on the SFS grid, plus the
ensemble table. ``compare.py`` compares two such files (or a reference folder).

    python analyses/flow_speed/run_variant.py TAG [--members 5] [--workers 2] [--epochs 60]
        [--batch-size 256] [--lr 3e-3] [--schedule plateau] [--samples 32] [--tol 0.005]
        [--seed 0] [--warm-start]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from compare import grid_record

from popmodel.flow.fit import SFSConfig, fit_sfs
from popmodel.flow.threedhst import threedhst_sfs_catalog

OUT = Path(os.environ.get("FLOW_SPEED_DIR", "/tmp/flow_speed"))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("tag")
    p.add_argument("--members", type=int, default=5)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--schedule", default=None)
    p.add_argument("--samples", type=int, default=None)
    p.add_argument("--tol", type=float, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--warmup", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    base = SFSConfig()
    tr = {"seed": a.seed, "threads": a.threads, "progress": False}
    for name, val in (("max_epochs", a.epochs), ("batch_size", a.batch_size), ("learning_rate", a.lr),
                      ("lr_schedule", a.schedule), ("sfs_tolerance", a.tol), ("patience", a.patience),
                      ("lr_warmup", a.warmup)):
        if val is not None:
            tr[name] = val
    cfg = replace(base, train=replace(base.train, **tr), n_members=a.members, n_workers=a.workers)
    if a.samples is not None:
        cfg = replace(cfg, max_samples=a.samples)
    n_cat = max(32, cfg.max_samples or 32)
    t0 = time.perf_counter()
    catalog, survey, _ = threedhst_sfs_catalog(n_samples=n_cat, seed=a.seed)
    fit = fit_sfs(catalog, survey, cfg)
    wall = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rss_children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    rec = {
        "tag": a.tag, "config": cfg.to_dict(), "wall_s": wall, "timing": fit.timing,
        "peak_rss_mb": max(rss, rss_children),
        "members": [r.to_dict() for r in fit.results],
        **grid_record(fit.table, fit.member_stats),
    }
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{a.tag}.json").write_text(json.dumps(rec))
    epochs = [len(r.history) for r in fit.results]
    vl = [r.best_val_loss for r in fit.results]
    print(f"{a.tag}: wall {wall:.0f} s, train {fit.timing['train_s']:.0f} s, epochs {epochs}, "
          f"best val {np.round(vl, 4).tolist()}, peak {rec['peak_rss_mb']:.0f} MB", flush=True)


if __name__ == "__main__":
    main()
