"""Flow training at scale: 1 vs 2 DistributedDataParallel processes, and streaming memory.

Run from the repository root::

    python benchmarks/bench_flow_scale.py          # a few minutes on a 2-core CPU
    python benchmarks/bench_flow_scale.py --full   # 10^6 galaxies for the memory lines

Lines:

* ``THROUGHPUT ddp processes=<W>``: sample-points per second of one training epoch (the
  default flow, batches of 256 galaxies x 32 samples over all ranks, selection normalisation,
  1 torch thread per process) on ``--galaxies`` mock galaxies, for 1 process and for 2 gloo
  processes spawned by :func:`popmodel.flow.distributed.train_flow_distributed` (the timing
  excludes the start of the processes and the validation). ``RATIO`` is 2 over 1 in the same
  run. On this machine the 2 vCPUs give about one core of vector math, so the ratio measures
  the cost of the all-reduce rather than a speed-up; on a cluster each rank has its own core
  or GPU.
* ``MEMORY``: peak resident memory of a fresh process that trains one epoch of a small flow on
  a ``--memory-galaxies`` x 32-sample HDF5 catalogue, in memory (read the catalogue, pad it)
  and streamed (:class:`popmodel.flow.stream.FlowStream`, chunks of ``--chunk`` galaxies), with
  the growth over the same process after its imports, and the tracemalloc peak (numpy/h5py).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from popmodel.flow.data import flow_data_from_catalog
from popmodel.flow.distributed import train_flow_distributed
from popmodel.flow.mock import sequence_mock
from popmodel.flow.model import FlowConfig
from popmodel.flow.selection import selection_grids
from popmodel.flow.train import TrainConfig, build_flow, train_flow

SMALL = FlowConfig(mass_hidden=(8, 8), sfr_hidden=(8, 8), mass_transforms=1, sfr_transforms=1)


def _status_mb(key: str) -> float:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process [MB]. (``ru_maxrss``
    would not do: it survives the exec of a spawned child, so it starts at the parent's peak.)"""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024
    return float("nan")


def _memory_child(path: str, mode: str, chunk: int, q: mp.Queue) -> None:
    import tracemalloc

    from popmodel.catalog import PosteriorCatalog
    from popmodel.flow.stream import FlowStream

    torch.set_num_threads(1)
    cfg = TrainConfig(max_epochs=1, batch_size=256, progress=False, val_fraction=0.05, threads=1)
    tiny = flow_data_from_catalog(sequence_mock(20, n_samples=2, seed=0)[0])
    train_flow(build_flow(SMALL, tiny, seed=0), tiny, cfg)  # imports and allocator warm-up
    base = _status_mb("VmRSS")
    tracemalloc.start()
    t0 = time.perf_counter()
    if mode == "in-memory":
        data = flow_data_from_catalog(PosteriorCatalog.read(path))
    else:
        data = FlowStream(path, chunk_galaxies=chunk)
    t_open = time.perf_counter() - t0
    res = train_flow(build_flow(SMALL, data, seed=0), data, cfg)
    peak_tm = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    peak = _status_mb("VmHWM")
    q.put({"peak_mb": peak, "base_mb": base, "tracemalloc_mb": peak_tm / 2**20, "open_s": t_open,
           "epoch_s": res.history[0]["seconds"], "rate": res.sample_points_per_second})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="10^6 galaxies for the memory lines")
    ap.add_argument("--galaxies", type=int, default=12_000, help="galaxies of the throughput mock")
    ap.add_argument("--memory-galaxies", type=int, default=None, help="default 60,000 (--full: 10^6)")
    ap.add_argument("--chunk", type=int, default=2048, help="galaxies per streamed chunk")
    a = ap.parse_args(argv)
    n_mem = a.memory_galaxies or (1_000_000 if a.full else 60_000)
    t_start = time.perf_counter()
    print(f"# {time.strftime('%Y-%m-%d %H:%M:%S')} python {platform.python_version()} torch {torch.__version__} "
          f"numpy {np.__version__} cpus {os.cpu_count()}")
    torch.set_num_threads(1)
    cat, survey, _ = sequence_mock(a.galaxies, n_samples=32, log_mass_limit=9.5, mass_error=0.2, seed=1)
    data = flow_data_from_catalog(cat)
    loc, scale = data.standardization()
    norm = selection_grids(survey, data.field_names, loc, scale, log_mass_max=float(data.x[..., 1].max()) + 1)
    cfg = TrainConfig(max_epochs=1, batch_size=256, progress=False, val_fraction=0.05, threads=1)
    rates = {}
    for w in (1, 2):
        flow = build_flow(FlowConfig(), data, seed=0)
        t0 = time.perf_counter()
        if w == 1:
            res = train_flow(flow, data, cfg, normalization=norm)
        else:
            res = train_flow_distributed(flow, data, cfg, world_size=2, threads=1, normalization=norm)
        wall = time.perf_counter() - t0
        rates[w] = res.sample_points_per_second
        print(f"THROUGHPUT ddp processes={w}: {rates[w]:.3e} sample-points/s ({res.n_train} galaxies x 32, "
              f"1 thread each; epoch {res.history[0]['seconds']:.1f} s, call {wall:.1f} s incl. start "
              f"and validation)", flush=True)
    print(f"RATIO ddp 2 processes / 1 process: {rates[2] / rates[1]:.2f}")

    with tempfile.TemporaryDirectory(prefix="bench_flow_scale_") as tmp:
        path = str(Path(tmp) / "catalog.h5")
        t0 = time.perf_counter()
        big, _, _ = sequence_mock(n_mem, n_samples=32, seed=2)
        big.write(path)
        size = os.path.getsize(path) / 2**20
        del big
        print(f"DATA {n_mem} galaxies x 32 samples, HDF5 {size:.0f} MiB ({time.perf_counter() - t0:.0f} s)",
              flush=True)
        ctx = mp.get_context("spawn")
        out = {}
        for mode in ("in-memory", "streamed"):
            q = ctx.Queue()
            p = ctx.Process(target=_memory_child, args=(path, mode, a.chunk, q))
            p.start()
            out[mode] = q.get()
            p.join()
            r = out[mode]
            label = mode if mode == "in-memory" else f"streamed chunk={a.chunk}"
            print(f"MEMORY {label}: peak RSS {r['peak_mb']:.0f} MB (+{r['peak_mb'] - r['base_mb']:.0f} MB over "
                  f"{r['base_mb']:.0f} MB after imports), tracemalloc peak {r['tracemalloc_mb']:.1f} MB; "
                  f"open {r['open_s']:.1f} s, epoch {r['epoch_s']:.1f} s ({r['rate']:.3e} sample-points/s)",
                  flush=True)
        m, s = out["in-memory"], out["streamed"]
        print(f"RATIO memory growth streamed / in-memory: "
              f"{(s['peak_mb'] - s['base_mb']) / max(m['peak_mb'] - m['base_mb'], 1e-9):.3f}")
    print(f"TOTAL {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
