"""Test configuration: float64 JAX, a headless matplotlib, and the shared data folder."""

import os
from pathlib import Path

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("JAX_ENABLE_X64", "1")
# two CPU devices so that NUTS chains run in parallel (numpyro's own CI does the same)
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

import jax
import pytest

jax.config.update("jax_enable_x64", True)

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only ../shared/data folder beside the checkout (skip if absent)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is not available")
    return path
