"""Training throughput of the deconvolving SFS flow, and the time to train the 5-flow ensemble.

Run from the repository root::

    python benchmarks/bench_flow.py          # about a minute on a 2-core CPU
    python benchmarks/bench_flow.py --full   # + the 5-flow ensemble on the real 3D-HST sample

Data: the packaged 3D-HST sample above completeness at 0.5 <= z <= 2.5 (37,032 galaxies with
UV+IR SFRs, 32 samples each; :func:`popmodel.flow.threedhst.threedhst_sfs_catalog`). The issue's
target is stated for "63k galaxies x 32 samples" (the whole td_new sample, most of which lies
below completeness); the script reports both sizes.

Lines (timings are the best of 3 repeats of ``--steps`` optimiser steps, batches of 256
galaxies x 32 samples, the full objective: deconvolution sum with the small-S correction and
the selection normalisation, backward, clipping, AdamW, EMA):

* ``THROUGHPUT <config> threads=<t>: <v> sample-points/s`` for the popmodel default (joint) flow
  at 1 and 2 threads, the flow conditional on z (the real-data default) at 1 thread, and two
  same-process references at 1 thread (the reference NSF has no selection term): ``ref-zuko-NSF-3x64`` (a stock
  ``zuko.flows.NSF`` over the three variables with 3 transforms of (64, 64) hidden units, the
  configuration of the issue's first look) and ``ref-stock-zuko-spline`` (the popmodel
  architecture with zuko's own spline transform, whose softmax is slower on CPU).
* ``RATIO``: popmodel default over each reference (compare these across machines).
* ``EPOCH``: wall time of one training epoch of one member on the real sample (1 thread).
* ``ESTIMATE``: 5 members x epochs x epoch time, for 37k and 63k galaxies, for the default
  (a cosine schedule over 12 epochs) and for the plateau schedule's 60 epochs (the default
  before it, the reference).
* ``--full``: ``ENSEMBLE wall time`` of :func:`popmodel.flow.fit.fit_sfs` with the default
  settings on the real sample (``--workers`` processes; each ``--threads`` threads) and its
  ``RATIO`` to the plateau-60 estimate from this run's ``EPOCH``.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")

import numpy as np
import torch
import zuko
from torch import nn

from popmodel.flow.data import flow_data_from_catalog
from popmodel.flow.fit import SFSConfig, fit_sfs
from popmodel.flow.model import FlowConfig, SFSFlow
from popmodel.flow.selection import selection_grids
from popmodel.flow.threedhst import threedhst_sfs_catalog
from popmodel.flow.train import TrainConfig, _Objective, build_flow, train_flow

ROOT = Path(__file__).resolve().parents[1]
BATCH = 256


class _StockNSF(nn.Module):
    """Reference: one zuko NSF over standardised (z, log M, log SFR), same interface."""

    def __init__(self, like: SFSFlow, transforms: int = 3, hidden: tuple[int, ...] = (64, 64)) -> None:
        super().__init__()
        self.config = like.config
        self.register_buffer("loc", like.loc.clone())
        self.register_buffer("scale", like.scale.clone())
        self.flow = zuko.flows.NSF(3, transforms=transforms, hidden_features=hidden)

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        return self.flow().log_prob((x - self.loc) / self.scale) - torch.log(self.scale).sum()


def _steps_per_second(model: nn.Module, data, norm, steps: int, threads: int) -> float:
    torch.set_num_threads(threads)
    obj = _Objective(model, data, TrainConfig(), norm)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(0)
    best = np.inf
    for rep in range(4):  # the first repeat is a warm-up
        t0 = time.perf_counter()
        for _ in range(steps):
            idx = torch.randint(0, data.n_galaxies, (BATCH,), generator=gen)
            loss = -obj.galaxy_terms(idx).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
        if rep > 0:
            best = min(best, time.perf_counter() - t0)
    return steps / best


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="also train the 5-flow ensemble on the real sample")
    ap.add_argument("--steps", type=int, default=30, help="optimiser steps per timing repeat")
    ap.add_argument("--workers", type=int, default=1, help="--full: members trained in parallel")
    ap.add_argument("--threads", type=int, default=1, help="--full: torch threads per worker")
    a = ap.parse_args(argv)
    t_start = time.perf_counter()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} python {platform.python_version()} torch {torch.__version__} "
          f"zuko {zuko.__version__} numpy {np.__version__} cpus {os.cpu_count()}")
    t0 = time.perf_counter()
    catalog, survey, prov = threedhst_sfs_catalog(n_samples=32)
    data = flow_data_from_catalog(catalog)
    loc, scale = data.standardization()
    m_max = float(data.x[..., 1].max()) + 1
    norm = selection_grids(survey, data.field_names, loc, scale, log_mass_max=m_max)
    norm_c = selection_grids(survey, data.field_names, loc, scale, mode="conditional", log_mass_max=m_max,
                             z_range=(float(data.x[..., 0].min()), float(data.x[..., 0].max())))
    print(f"DATA 3D-HST {data.n_galaxies} galaxies x 32 samples ({time.perf_counter() - t0:.1f} s); "
          f"counts {prov['counts']}")
    points = BATCH * 32
    ours = build_flow(FlowConfig(), data, seed=0)
    ours_c = build_flow(FlowConfig(conditional_on_z=True), data, seed=0)
    stock_spline = build_flow(FlowConfig(), data, seed=0)
    from functools import partial

    from zuko.transforms import MonotonicRQSTransform

    for sub in (stock_spline.mass_flow, stock_spline.sfr_flow):
        for t in sub.transform.transforms:
            if isinstance(getattr(t, "univariate", None), partial):
                t.univariate = partial(MonotonicRQSTransform, slope=1e-3)
    ref = _StockNSF(ours)
    results = {}
    for name, model, threads, nrm in (("popmodel-default", ours, 1, norm), ("popmodel-default", ours, 2, norm),
                                      ("popmodel-conditional-on-z", ours_c, 1, norm_c),
                                      ("ref-zuko-NSF-3x64", ref, 1, None),
                                      ("ref-stock-zuko-spline", stock_spline, 1, norm)):
        rate = _steps_per_second(model, data, nrm, a.steps, threads) * points
        results[(name, threads)] = rate
        n_par = sum(p.numel() for p in model.parameters())
        print(f"THROUGHPUT {name} threads={threads}: {rate:.3e} sample-points/s ({n_par} parameters)", flush=True)
    base = results[("popmodel-default", 1)]
    print(f"RATIO popmodel-default / ref-zuko-NSF-3x64 (1 thread): {base / results[('ref-zuko-NSF-3x64', 1)]:.2f}")
    print(f"RATIO popmodel-default / ref-stock-zuko-spline (1 thread): "
          f"{base / results[('ref-stock-zuko-spline', 1)]:.2f}")
    print(f"RATIO 2 threads / 1 thread: {results[('popmodel-default', 2)] / base:.2f}")

    torch.set_num_threads(1)
    one = build_flow(FlowConfig(), data, seed=0)
    res = train_flow(one, data, TrainConfig(max_epochs=1, progress=False), normalization=norm)
    epoch_s = res.history[0]["seconds"]
    print(f"EPOCH 1 member, 1 thread, {res.n_train} training galaxies: {epoch_s:.1f} s "
          f"({res.sample_points_per_second:.3e} sample-points/s incl. validation)")
    default = SFSConfig()
    plans = {
        "default": (default.train.max_epochs,
                    f"the default's {default.train.max_epochs}-epoch cosine schedule, at most"),
        "plateau-60": (60, ("the plateau schedule's 60 epochs (the default before the cosine schedule: "
                            "the validation loss kept improving, so most members ran to 60)")),
    }

    def ensemble_s(epochs: int, workers: int, n_gal: int = data.n_galaxies) -> float:
        """5 members in ceil(5 / workers) rounds of one member's epochs."""
        return np.ceil(5 / workers) * epochs * epoch_s * n_gal / data.n_galaxies

    for name, (epochs, why) in plans.items():
        for n_gal in (data.n_galaxies, 63430):
            print(f"ESTIMATE {name}: 5 members x {epochs} epochs ({why}), {n_gal} galaxies x 32, 1 thread: "
                  f"{ensemble_s(epochs, 1, n_gal) / 60:.1f} min; on 2 workers about "
                  f"{ensemble_s(epochs, 2, n_gal) / 60:.1f} min")
    if a.full:
        cfg = replace(default, n_workers=a.workers,
                      train=replace(default.train, threads=a.threads, progress=False))
        torch.set_num_threads(a.threads)
        t0 = time.perf_counter()
        fit = fit_sfs(catalog, survey, cfg)
        wall = time.perf_counter() - t0
        ref = ensemble_s(60, a.workers)
        print(f"ENSEMBLE wall time: {wall:.0f} s = {wall / 60:.1f} min (5 members, {data.n_galaxies} galaxies x 32, "
              f"{a.workers} worker(s) x {a.threads} thread(s); epochs per member "
              f"{[len(r.history) for r in fit.results]}; train {fit.timing['train_s']:.0f} s, "
              f"grid {fit.timing['grid_s']:.0f} s)")
        print(f"RATIO ensemble / plateau-60 estimate on the same workers (ceil(5 / workers) x 60 x EPOCH = {ref:.0f} s): "
              f"{wall / ref:.3f}")
    print(f"TOTAL {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
