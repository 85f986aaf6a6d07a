r"""``python -m popmodel.cli.distributed``: flow training on every process of a ``torchrun``
group (:mod:`popmodel.flow.distributed`).

``fit-sfs`` is the ensemble fit of ``popmodel fit-sfs`` (each member trained by all ranks; only
rank 0's files are kept) and ``train`` trains one flow, optionally streamed from disk
(:mod:`popmodel.flow.stream`). Example (4 GPUs on one node)::

    torchrun --standalone --nproc_per_node=4 -m popmodel.cli.distributed \
        fit-sfs catalog.h5 --survey survey.toml --out sfs_out
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from popmodel.cli import sfs
from popmodel.cli.common import (
    logging_to_stderr,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from popmodel.flow.distributed import DistributedContext

__all__ = ["main"]

log = logging.getLogger(__name__)


def _train_command(a: argparse.Namespace, ctx: DistributedContext) -> int:
    from popmodel.catalog import PosteriorCatalog
    from popmodel.flow.data import flow_data_from_catalog
    from popmodel.flow.fit import save_flow
    from popmodel.flow.model import FlowConfig
    from popmodel.flow.selection import selection_grids
    from popmodel.flow.stream import FlowStream
    from popmodel.flow.train import TrainConfig, build_flow, train_flow
    from popmodel.survey import Survey

    if a.stream:
        data: Any = FlowStream(a.catalog, chunk_galaxies=a.chunk_galaxies, max_samples=a.max_samples,
                               z_jitter=a.z_jitter, seed=a.seed)
        z_lo, z_hi, m_hi = float(data.x_min[0]), float(data.x_max[0]), float(data.x_max[1])
    else:
        data = flow_data_from_catalog(PosteriorCatalog.read(a.catalog), max_samples=a.max_samples,
                                      z_jitter=a.z_jitter, seed=a.seed)
        z_lo, z_hi = float(data.x[..., 0].min()), float(data.x[..., 0].max())
        m_hi = float(data.x[..., 1].max())
    flow_cfg = FlowConfig(conditional_on_z=a.conditional_on_z)
    norm = None
    if a.survey:
        loc, scale = data.standardization()
        norm = selection_grids(Survey.read(a.survey), data.field_names, loc, scale,
                               mode="conditional" if a.conditional_on_z else "joint",
                               log_mass_max=m_hi + 1.0, z_range=(z_lo, z_hi))
    cfg = TrainConfig(batch_size=a.batch_size, max_epochs=a.epochs, learning_rate=a.lr, seed=a.seed,
                      progress=not a.no_progress)
    flow = build_flow(flow_cfg, data, seed=a.seed)
    res = train_flow(flow, data, cfg, normalization=norm, checkpoint=a.checkpoint, resume=a.resume,
                     device=ctx.device)
    if ctx.rank == 0:
        save_flow(flow.cpu(), a.out, extra={"train_config": cfg.to_dict(), "result": res.to_dict(),
                                            "world_size": ctx.world_size, "backend": ctx.backend,
                                            "catalog": str(a.catalog), "stream": bool(a.stream)})
        log.info(f"trained on {ctx.world_size} process(es) ({ctx.backend}): best epoch {res.best_epoch}, "
              f"validation loss {res.best_val_loss:.4f}, {res.sample_points_per_second:.3e} "
              f"sample-points/s; wrote {a.out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m popmodel.cli.distributed`` (imports nothing heavy)."""
    ap = argparse.ArgumentParser(prog="python -m popmodel.cli.distributed",
                                 description="Flow training on every process of a torchrun group.")
    ap.add_argument("--backend", choices=("nccl", "gloo"), default=None,
                    help="default: nccl if CUDA is available, else gloo")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sfs.register(sub)
    t = sub.add_parser("train", help="train one flow (in memory or streamed from disk)")
    t.add_argument("catalog", help="posterior catalogue with log_sfr (HDF5 or Parquet for --stream)")
    t.add_argument("--out", required=True, help="flow file (popmodel.flow.load_flow reads it)")
    t.add_argument("--survey", help="survey TOML for the selection normalisation (default: none)")
    t.add_argument("--stream", action="store_true", help="read the catalogue in chunks of galaxies")
    t.add_argument("--chunk-galaxies", type=positive_int, default=4096,
                   help="galaxies per chunk with --stream (default 4096)")
    t.add_argument("--max-samples", type=positive_int, default=32,
                   help="posterior samples used per galaxy (default 32)")
    t.add_argument("--z-jitter", type=nonneg_float, default=0.005,
                   help="Gaussian jitter z_jitter (1 + z) of exact (spectroscopic) redshifts "
                   "(default 0.005)")
    t.add_argument("--conditional-on-z", action="store_true",
                   help="model p(log M, log SFR | z) instead of the joint density")
    t.add_argument("--epochs", type=positive_int, default=60, help="maximum epochs (default 60)")
    t.add_argument("--batch-size", type=positive_int, default=256,
                   help="galaxies per step over all ranks (default 256)")
    t.add_argument("--lr", type=positive_float, default=3e-3,
                   help="initial learning rate (default 3e-3)")
    t.add_argument("--seed", type=nonneg_int, default=0, help="random seed (default 0)")
    t.add_argument("--checkpoint", default=None, help="checkpoint file (default: none)")
    t.add_argument("--resume", action="store_true", help="resume from --checkpoint")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``python -m popmodel.cli.distributed {fit-sfs,train} ...`` (under ``torchrun``)."""
    import torch.distributed as dist

    from popmodel.flow.distributed import init_distributed

    a = build_parser().parse_args(argv)
    ctx = init_distributed(a.backend)
    try:
        with logging_to_stderr(quiet=ctx.rank > 0):  # rank 0 speaks for the group
            if a.cmd == "train":
                return _train_command(a, ctx)
            if a.workers != 1:
                raise SystemExit("error: --workers must be 1 under torchrun (the ranks share each "
                                 "member)")
            if ctx.rank > 0:
                # every rank runs the same fit (the collectives need it); only rank 0's files are kept
                with tempfile.TemporaryDirectory(prefix=f"popmodel_rank{ctx.rank}_") as tmp:
                    a.out, a.no_figures, a.no_progress = tmp, True, True
                    with open(os.devnull, "w") as null:
                        stdout, sys.stdout = sys.stdout, null
                        try:
                            return int(a.func(a) or 0)
                        finally:
                            sys.stdout = stdout
            return int(a.func(a) or 0)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
