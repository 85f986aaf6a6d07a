"""Smoke runs of the flow's analysis and benchmark scripts (tiny sizes; slow tier)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("part", ["sequence", "selection", "leja"])
def test_validate_sfs_smoke(tmp_path, part, shared_data):
    subprocess.run([sys.executable, str(ROOT / "analyses" / "validate_sfs.py"), "--part", part, "--smoke",
                    "--recorded-dir", str(tmp_path)], check=True, cwd=ROOT)
    rec = json.loads((tmp_path / f"validate_sfs_{part}_smoke.json").read_text())
    assert rec["smoke"] and rec["popmodel_version"]


def test_fit_sfs_3dhst_smoke(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "analyses" / "fit_sfs_3dhst.py"), "--smoke", "--out",
                    str(tmp_path / "out"), "--recorded-dir", str(tmp_path), "--no-figures"], check=True, cwd=ROOT)
    rec = json.loads((tmp_path / "fit_sfs_3dhst_smoke.json").read_text())
    assert rec["catalog_provenance"]["assumed_sfr_error_dex"] == 0.3
    assert (tmp_path / "out" / "sfs.ecsv").exists()
