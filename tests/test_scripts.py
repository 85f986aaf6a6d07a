"""Notebooks and analysis scripts run end to end in their smoke modes."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path, env_extra=None):
    env = dict(os.environ, POPMODEL_SMOKE="1", MPLBACKEND="Agg", **(env_extra or {}))
    r = subprocess.run([sys.executable, *args], check=False, cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout


def test_quickstart_notebook(tmp_path):
    out = _run([str(ROOT / "notebooks" / "01_quickstart.py")], tmp_path)
    assert "log rho_*" in out


def test_calibrate_smf_smoke(tmp_path):
    out = _run([str(ROOT / "analyses" / "calibrate_smf.py"), "--smoke", "--out", "c.json"], tmp_path)
    assert "SBC over 2 mocks" in out


@pytest.mark.slow
def test_fit_3dhst_smoke(tmp_path):
    _run([str(ROOT / "analyses" / "fit_3dhst.py"), "--smoke", "--out", "r"], tmp_path)
    for name in ("smf_posterior.nc", "smf_parameters.ecsv", "rho_star.ecsv", "smf.png"):
        assert (tmp_path / "r" / name).exists()
