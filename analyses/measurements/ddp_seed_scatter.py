"""Seed-to-seed scatter of flow training on 1 process and on 2 DDP (gloo) processes.

Sets the tolerance of tests/test_flow_scale.py::test_ddp_training_matches_one_process_statistically:
2000 galaxies x 16 samples (0.3 dex SFR errors), a small flow, 20 epochs; statistics are the
held-out log-likelihood and the median and half 16-84 width of p(log SFR | log M, z) at
(10.0, 1.0) and (10.5, 2.0). Prints one line per run, then the mean and standard deviation of
each group. Run from the repository root: ``python analyses/ddp_seed_scatter.py`` (about 2-4
minutes on 2 cores).
"""

import time

import numpy as np
import torch

from popmodel.flow.data import flow_data_from_catalog
from popmodel.flow.distributed import train_flow_distributed
from popmodel.flow.mock import sequence_mock
from popmodel.flow.model import FlowConfig
from popmodel.flow.train import TrainConfig, _Objective, _sfs_percentiles, build_flow, train_flow

SMALL = FlowConfig(mass_hidden=(8, 8), sfr_hidden=(8, 8), mass_transforms=1, sfr_transforms=1)


def stats(flow, held):
    obj = _Objective(flow, held, TrainConfig(), None)
    ll = -obj.mean_loss(np.arange(held.n_galaxies), 1024)
    q = _sfs_percentiles(flow, (np.array([10.0, 10.5]), np.array([1.0, 2.0])))
    return [ll, *q[1], *(0.5 * (q[2] - q[0]))]


if __name__ == "__main__":
    torch.set_num_threads(1)
    cat, _, _ = sequence_mock(2000, n_samples=16, sfr_error=0.3, seed=21)
    held = flow_data_from_catalog(sequence_mock(2000, n_samples=16, sfr_error=0.3, seed=22)[0])
    data = flow_data_from_catalog(cat)
    out = {}
    for mode, seeds in (("1", [0, 1, 2, 3, 4, 5]), ("2", [6, 7])):
        for sd in seeds:
            cfg = TrainConfig(max_epochs=20, batch_size=128, progress=False, seed=sd, patience=50, threads=1)
            f = build_flow(SMALL, data, seed=sd)
            t = time.time()
            if mode == "1":
                train_flow(f, data, cfg)
            else:
                train_flow_distributed(f, data, cfg, world_size=2, threads=1)
            s = stats(f, held)
            print(mode, sd, f"{time.time()-t:.1f}s", np.round(s, 4).tolist(), flush=True)
            out.setdefault(mode, []).append(s)
    for m, rows in out.items():
        a = np.array(rows)
        print(m, a.mean(0).round(4).tolist(), a.std(0, ddof=1).round(4).tolist())
