r"""Shard the galaxy axis of the mass-function likelihood across devices.

The likelihood is a sum over galaxies plus a small expected-number grid, so it parallelises
by splitting the galaxies: every device holds a slice of each chunk's galaxies (axis G of the
``(C, G, S)`` block arrays), evaluates its part of the fused value and gradient, and XLA adds
the partial sums with one all-reduce per chunk. The expected-number grid and the parameters
are replicated. Nothing in :mod:`popmodel.smf.likelihood` changes: ``jax.jit`` partitions
the same program according to the input shardings (GSPMD), so a sharded fit is a fit whose
``LikelihoodData`` went through :func:`shard_likelihood_data`.

One host, several devices (GPUs, or CPU devices simulated with
``XLA_FLAGS=--xla_force_host_platform_device_count=N``)::

    data = prepare_smf_data(catalog, survey)
    arrays = shard_likelihood_data(data.arrays)          # all local devices
    fit = run_nuts(arrays, prior, map_result)            # or log_likelihood(p, arrays)

Several hosts (a GPU cluster): start one process per host with the same program, call
:func:`initialize_distributed` first (it wraps ``jax.distributed.initialize``, which reads
the coordinator address, process count and id from the cluster's environment, e.g. SLURM or
Open MPI, or from the arguments), then :func:`shard_likelihood_data` over ``jax.devices()``
(all devices of all hosts). Every process must build the same ``LikelihoodData`` (same
catalogue, same order); each device then keeps only its slice. Chains of ``run_nuts`` should
use ``chain_method="sequential"`` or ``"vectorized"`` there (not ``"parallel"``, which maps
chains onto devices instead of galaxies).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from popmodel.smf.likelihood import PAD, GalaxyBlock, LikelihoodData

__all__ = ["galaxy_mesh", "initialize_distributed", "shard_likelihood_data"]

AXIS = "galaxies"


def initialize_distributed(**kwargs: object) -> None:
    """Join a multi-host JAX job (``jax.distributed.initialize``); a no-op for one process.

    Keyword arguments (``coordinator_address``, ``num_processes``, ``process_id``, ...) go to
    ``jax.distributed.initialize``; without them JAX detects SLURM / Open MPI / cloud TPU
    environments. Call it before any other JAX function.
    """
    if kwargs or _cluster_environment():
        jax.distributed.initialize(**kwargs)


def _cluster_environment() -> bool:
    import os

    return any(k in os.environ for k in ("SLURM_JOB_ID", "OMPI_COMM_WORLD_SIZE",
                                         "JAX_COORDINATOR_ADDRESS"))


def galaxy_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh named ``"galaxies"`` over ``devices`` (default: ``jax.devices()``)."""
    devs = np.asarray(jax.devices() if devices is None else devices)
    return Mesh(devs.reshape(-1), (AXIS,))


def _pad_galaxies(blk: GalaxyBlock, multiple: int) -> GalaxyBlock:
    """Pad axis G with padding galaxies (valid False, padding samples) to a multiple."""
    g = blk.valid.shape[1]
    extra = (-g) % multiple
    if extra == 0:
        return blk

    def pad(a: jax.Array | None, fill: float) -> jax.Array | None:
        if a is None:
            return None
        a = np.asarray(a)
        width = [(0, 0)] * a.ndim
        width[1] = (0, extra)
        return np.pad(a, width, constant_values=fill)

    return GalaxyBlock(
        log_mass=pad(blk.log_mass, 10.0), z=pad(blk.z, 1.0), offset=pad(blk.offset, PAD),
        weight=pad(blk.weight, 0.0), galaxy_offset=pad(blk.galaxy_offset, 0.0),
        valid=pad(blk.valid, False), group=pad(blk.group, 0), monte_carlo=pad(blk.monte_carlo, False),
        cv_index=pad(blk.cv_index, 0), cv_bias=pad(blk.cv_bias, 0.0),
    )


def shard_likelihood_data(data: LikelihoodData, mesh: Mesh | None = None) -> LikelihoodData:
    """Place ``data`` on the devices of ``mesh``, galaxies split, the grid replicated.

    Each block's galaxy axis is padded with masked galaxies to a multiple of the device count
    (padding galaxies contribute exactly zero), so any catalogue size works. The result is
    an ordinary :class:`~popmodel.smf.likelihood.LikelihoodData`: pass it wherever the
    unsharded one goes.
    """
    mesh = galaxy_mesh() if mesh is None else mesh
    n_dev = mesh.devices.size
    split3 = NamedSharding(mesh, P(None, AXIS, None))
    split2 = NamedSharding(mesh, P(None, AXIS))
    replicated = NamedSharding(mesh, P())
    blocks = []
    for blk in data.blocks:
        blk = _pad_galaxies(blk, n_dev)
        put = {}
        for f in dataclasses.fields(GalaxyBlock):
            a = getattr(blk, f.name)
            if a is None:
                put[f.name] = None
            else:
                a = jnp.asarray(a) if not isinstance(a, jax.Array) else a
                put[f.name] = jax.device_put(a, split3 if a.ndim == 3 else split2)
        blocks.append(GalaxyBlock(**put))
    rest = {f.name: (None if getattr(data, f.name) is None
                     else jax.device_put(getattr(data, f.name), replicated))
            for f in dataclasses.fields(LikelihoodData) if f.name != "blocks"}
    return LikelihoodData(blocks=tuple(blocks), **rest)
