"""Ridge-bias experiments (branch wip/sfs-ridge-bias): mock -> fit_sfs -> ridge - truth.

The issue's mock (sequence_mock: Leja+22 ridge, 0.3 dex scatter, ``--qf`` quiescent fraction
with offsets uniform in 1-2.5 dex below, SFR errors uniform in ``--err``, 0.1 dex mass errors,
32 samples, selection on observed mass above 9.25-9.75 (z = 0.3-2.7)), fitted with fit_sfs
defaults except the ensemble size and the options below; the ridge at log M = 10, 10.5, 11 and
z = 1, 1.5, 2 minus the truth is printed (pooled ridge and each member, 0 and 0.1 dex
smoothing) and the members' densities saved to $RIDGE_BIAS_DIR/<tag>.npz for summarize.py.

    RIDGE_BIAS_DIR=/tmp/exp OMP_NUM_THREADS=1 python analyses/ridge_bias/run_mock_fit.py --tag base6k_s2 --n 6000 --seed 2
"""
import argparse
import json
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np
import torch

OUT = os.environ.get("RIDGE_BIAS_DIR", "/tmp/exp")
os.makedirs(OUT, exist_ok=True)
torch.set_num_threads(1)
from popmodel.flow.fit import SFSConfig, fit_sfs
from popmodel.flow.mock import sequence_mock
from popmodel.flow.sfs import sequence_statistics
from popmodel.flow.train import TrainConfig

ap = argparse.ArgumentParser()
ap.add_argument("--tag", required=True)
ap.add_argument("--n", type=int, default=4000)
ap.add_argument("--seed", type=int, default=1)
ap.add_argument("--qf", type=float, default=0.2)
ap.add_argument("--err", type=float, nargs=2, default=[0.15, 0.35])
ap.add_argument("--members", type=int, default=3)
ap.add_argument("--epochs", type=int, default=60)
ap.add_argument("--no-bc", action="store_true")
ap.add_argument("--sfs-tol", type=float, default=0.005)
ap.add_argument("--patience", type=int, default=6)
ap.add_argument("--lr-patience", type=int, default=2)
ap.add_argument("--lr", type=float, default=3e-3)
ap.add_argument("--noise-free", action="store_true")
ap.add_argument("--sfr-bins", type=int, default=4)
ap.add_argument("--sfr-transforms", type=int, default=2)
ap.add_argument("--no-selection", action="store_true")
ap.add_argument("--mass-err", type=float, default=0.1)
a = ap.parse_args()

LIMIT = (np.array([0.3, 2.7]), np.array([9.25, 9.75]))
cat, survey, truth = sequence_mock(a.n, n_samples=32, scatter=0.3, sfr_error=tuple(a.err), mass_error=a.mass_err,
                                   log_mass_limit=LIMIT, log_mass_rolloff=8.0, schechter=(10.8, -1.0),
                                   quiescent_fraction=a.qf, seed=a.seed)
if a.noise_free:
    cat = truth.noise_free_catalog(cat.ids, cat.fields)
from popmodel.flow.model import FlowConfig

cfg = SFSConfig(n_members=a.members, max_samples=1 if a.noise_free else 32,
                flow=FlowConfig(sfr_bins=a.sfr_bins, sfr_transforms=a.sfr_transforms),
                train=TrainConfig(max_epochs=a.epochs, progress=False, seed=a.seed * 100,
                                  bias_correction=not a.no_bc, sfs_tolerance=a.sfs_tol, patience=a.patience, lr_patience=a.lr_patience, learning_rate=a.lr, threads=1))
t0 = time.time()
fit = fit_sfs(cat, None if a.no_selection else survey, cfg)
M = np.repeat([10.0, 10.5, 11.0], 3); Z = np.tile([1.0, 1.5, 2.0], 3)
GRID = np.arange(-4.0, 4.0001, 0.01)
dens = np.stack([f.conditional_log_density(M, Z, GRID) for f in fit.flows])
true = truth.ridge(M, Z)
out = {"args": vars(a), "wall_s": time.time() - t0, "M": M.tolist(), "Z": Z.tolist(), "truth": true.tolist(),
       "epochs": [len(r.history) for r in fit.results], "best_epoch": [r.best_epoch for r in fit.results],
       "stop": [r.stop_reason for r in fit.results], "best_val": [r.best_val_loss for r in fit.results],
       "hist": [[(h["epoch"], round(h["val_loss"], 4), h["lr"]) for h in r.history] for r in fit.results]}
from scipy.special import logsumexp

pooled = logsumexp(dens, 0) - np.log(len(dens))
for h in (0.0, 0.1):
    st = [sequence_statistics(GRID, d, M, Z, ridge_smoothing=h) for d in dens]
    sp = sequence_statistics(GRID, pooled, M, Z, ridge_smoothing=h)
    r = np.stack([s.ridge for s in st])
    out[f"h{h}"] = {"pooled": (sp.ridge - true).tolist(), "members": (r - true).tolist(),
                    "band16": (np.percentile(r, 16, 0) - true).tolist(), "band84": (np.percentile(r, 84, 0) - true).tolist(),
                    "q50": (np.median([s.q50 for s in st], 0) - true).tolist(),
                    "scatter": np.median([s.scatter for s in st], 0).tolist()}
np.savez(f"{OUT}/{a.tag}.npz", dens=dens, M=M, Z=Z, grid=GRID, truth=true)
with open(f"{OUT}/{a.tag}.json", "w") as fh:
    json.dump(out, fh, indent=1)
f = lambda x: " ".join(f"{v:+.3f}" for v in x)
print(a.tag, "wall", round(out["wall_s"]), "epochs", out["epochs"], out["best_epoch"], out["stop"])
print("best val", np.round(out["best_val"], 4))
print("hist0", out["hist"][0])
for h in ("h0.0", "h0.1"):
    print(h, "pooled  ", f(out[h]["pooled"]))
    for k, r in enumerate(out[h]["members"]): print(h, f"member{k} ", f(r))
    print(h, "band16/84", f(out[h]["band16"]), "|", f(out[h]["band84"]))
print("q50-mu ", f(out["h0.1"]["q50"]))
print("scatter", f(out["h0.1"]["scatter"]))
