r"""Flow training on several processes or GPUs (PyTorch DistributedDataParallel).

:func:`~popmodel.flow.train.train_flow` trains with DistributedDataParallel (DDP) whenever a
``torch.distributed`` process group of more than one process is initialised: each minibatch is
split disjointly over the ranks, DDP averages the gradients (so a step equals a one-process
step on the whole batch; ``batch_size`` is the effective batch), the losses are all-reduced and
rank 0 writes the checkpoints (see its docstring). This module starts such groups:

- :func:`init_distributed` under ``torchrun`` (reads ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
  ``MASTER_ADDR``, ``MASTER_PORT``; NCCL on CUDA, one GPU per process, else gloo on CPU);
- :func:`train_flow_distributed` spawns ``world_size`` local CPU processes (gloo) from one
  Python session;
- ``python -m popmodel.cli.distributed`` is the command line for ``torchrun``
  (:mod:`popmodel.cli.distributed`): ``fit-sfs`` (the ensemble fit of ``popmodel fit-sfs``,
  each member trained by all ranks) and ``train`` (one flow, optionally streamed from disk,
  :mod:`popmodel.flow.stream`).

Example (4 GPUs on one node; the README's "Running on a GPU cluster" has more)::

    torchrun --standalone --nproc_per_node=4 -m popmodel.cli.distributed \
        fit-sfs catalog.h5 --survey survey.toml --out sfs_out

References:
    | Li et al. 2020, PyTorch Distributed: Experiences on Accelerating Data Parallel Training
      (arXiv:2006.15704)
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from popmodel.flow.data import FlowData
from popmodel.flow.model import SFSFlow
from popmodel.flow.train import (
    TrainConfig,
    TrainResult,
    _ddp_model,
    _Objective,
    _step,
    _world,
    train_flow,
)

__all__ = [
    "DistributedContext",
    "distributed_step",
    "init_distributed",
    "spawn_distributed_step",
    "train_flow_distributed",
]


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the group.

    Attributes:
        rank: Global rank.
        world_size: Number of processes.
        local_rank: Rank on this node (the GPU index under NCCL).
        backend: ``"nccl"`` or ``"gloo"``.
        device: Where this rank trains.
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device


def init_distributed(backend: str | None = None, timeout_s: float = 1800.0) -> DistributedContext:
    """Join the process group that ``torchrun`` set up in the environment.

    Args:
        backend: ``"nccl"`` (CUDA, one GPU per process, chosen as ``LOCAL_RANK``) or ``"gloo"``
            (CPU); None: NCCL if CUDA is available, else gloo.
        timeout_s: Collective timeout.

    Returns:
        The context (the group stays initialised; :func:`torch.distributed.destroy_process_group`
        ends it).

    Raises:
        RuntimeError: If the environment variables of a launcher are missing.
    """
    missing = [v for v in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"environment variable(s) {missing} are not set: launch with torchrun "
                           "(or set them as torchrun does)")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if not dist.is_initialized():
        dist.init_process_group(backend, init_method="env://", rank=rank, world_size=world,
                                timeout=timedelta(seconds=timeout_s))
    return DistributedContext(rank, world, local, backend, device)


def _spawned(rank: int, world: int, init_file: str, out: str, flow_state: dict, data: Any,
             config: TrainConfig, kwargs: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        flow = SFSFlow(flow_state["config"], flow_state["loc"], flow_state["scale"])
        flow.load_state_dict(flow_state["state"])
        result = train_flow(flow, data, config, distributed=True, **kwargs)
        if rank == 0:
            torch.save({"state": flow.state_dict(), "result": result}, out)
    finally:
        dist.destroy_process_group()


def train_flow_distributed(
    flow: SFSFlow,
    data: FlowData,
    config: TrainConfig,
    *,
    world_size: int = 2,
    threads: int | None = None,
    **kwargs: Any,
) -> TrainResult:
    """:func:`~popmodel.flow.train.train_flow` on ``world_size`` local CPU processes (gloo).

    The processes are spawned (``torch.multiprocessing``), each gets a copy of ``flow``,
    ``data`` (in memory or a :class:`~popmodel.flow.stream.FlowStream`) and the keyword
    arguments, and they meet through a file in a temporary directory. ``flow`` is updated in
    place with rank 0's final state (all ranks hold the same).

    Args:
        flow: The initial flow (from :func:`~popmodel.flow.train.build_flow`).
        data: Training data.
        config: Optimisation settings (``batch_size`` is the effective batch over all ranks).
        world_size: Processes.
        threads: torch threads per process (default: the CPUs divided by ``world_size``).
        **kwargs: Passed to :func:`~popmodel.flow.train.train_flow` (``normalization``,
            ``train_idx``, ``val_idx``, ``checkpoint``, ``resume``, ``monitor``).

    Returns:
        Rank 0's training record.

    Raises:
        torch.multiprocessing.ProcessRaisedException: If a rank fails (its traceback, e.g. a
            :class:`~popmodel.flow.train.FlowTrainingError` naming galaxies, is in the message).
    """
    import torch.multiprocessing as mp

    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if threads is None:
        threads = max(1, (os.cpu_count() or 1) // world_size)
    state = _portable(flow)
    with tempfile.TemporaryDirectory(prefix="popmodel_ddp_") as tmp:
        init_file, out = str(Path(tmp) / "rendezvous"), str(Path(tmp) / "rank0.pt")
        mp.start_processes(_spawned, args=(world_size, init_file, out, state, data, config, kwargs, threads),
                           nprocs=world_size, join=True, start_method="spawn")
        got = torch.load(out, map_location="cpu", weights_only=False)
    flow.load_state_dict(got["state"])
    return got["result"]


def distributed_step(
    flow: SFSFlow,
    data: FlowData,
    config: TrainConfig,
    batch_idx: Any,
    *,
    normalization: Any = None,
    distributed: bool | None = None,
) -> dict:
    """One training step of :func:`~popmodel.flow.train.train_flow` on the galaxies
    ``batch_idx`` (split over the ranks as in training): the check that a distributed setup
    reproduces one process.

    Call it on every rank (or in one process). ``flow`` takes the step in place (AdamW from
    fresh state, ``config.learning_rate`` and ``clip_norm``; phase (0, 0) of the normalisation
    lattice).

    Returns:
        ``{"loss": batch-mean loss summed over the ranks, "grad": flat averaged (clipped)
        gradient, "grad_norm": its norm before clipping, "params": flat parameters after the
        step, "rank": rank, "world_size": W}`` (numpy, float64).
    """
    import numpy as np

    rank, world = _world(distributed)
    objective = _Objective(flow, data, config, normalization)
    opt = torch.optim.AdamW(flow.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    model = _ddp_model(objective, world)
    batch = objective.batch(np.asarray(batch_idx, dtype=np.int64))
    loss, gn, _ = _step(model, objective, opt, batch, rank, world, config.clip_norm, "in distributed_step")
    total = loss.detach().double() / world
    if world > 1:
        dist.all_reduce(total)

    def flat(ts: Any) -> Any:
        return torch.cat([t.detach().double().reshape(-1).cpu() for t in ts]).numpy()

    return {"loss": float(total), "grad": flat(p.grad for p in flow.parameters()), "grad_norm": float(gn),
            "params": flat(flow.parameters()), "rank": rank, "world_size": world}


def _spawned_step(rank: int, world: int, init_file: str, out: str, flow_state: dict, data: Any,
                  config: TrainConfig, batch_idx: Any, kwargs: dict) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        flow = SFSFlow(flow_state["config"], flow_state["loc"], flow_state["scale"])
        flow.load_state_dict(flow_state["state"])
        got = distributed_step(flow, data, config, batch_idx, distributed=True, **kwargs)
        torch.save(got, f"{out}.{rank}")
    finally:
        dist.destroy_process_group()


def spawn_distributed_step(flow: SFSFlow, data: FlowData, config: TrainConfig, batch_idx: Any, *,
                           world_size: int = 2, **kwargs: Any) -> list[dict]:
    """:func:`distributed_step` on ``world_size`` spawned local gloo processes; one dict per
    rank (``flow`` is not changed)."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory(prefix="popmodel_ddp_") as tmp:
        init_file, out = str(Path(tmp) / "rendezvous"), str(Path(tmp) / "step")
        mp.start_processes(_spawned_step, args=(world_size, init_file, out, _portable(flow), data, config,
                                                batch_idx, kwargs),
                           nprocs=world_size, join=True, start_method="spawn")
        return [torch.load(f"{out}.{r}", weights_only=False) for r in range(world_size)]


def _portable(flow: SFSFlow) -> dict:
    # copies: torch.multiprocessing moves the storage of pickled tensors to shared memory
    return {"config": flow.config, "loc": flow.loc.tolist(), "scale": flow.scale.tolist(),
            "state": {k: v.detach().cpu().clone() for k, v in flow.state_dict().items()}}
