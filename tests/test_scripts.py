"""Notebooks and analysis scripts run end to end in their smoke modes (each analyses/ script
has a test here or in test_flow_scripts.py; test_every_analysis_script_has_a_smoke_test checks)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(args, tmp_path, env_extra=None):
    env = dict(os.environ, POPMODEL_SMOKE="1", MPLBACKEND="Agg", **(env_extra or {}))
    r = subprocess.run([sys.executable, *args], check=False, cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r.stdout + r.stderr  # results on stdout, messages (logging) on stderr


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


def _floats(line: str) -> list[float]:
    return [float(v) for v in re.findall(r"[-+]?\d+\.\d+", line)]


@pytest.mark.slow
def test_3dhst_mass_function_notebook(tmp_path):
    """Smoke: COSMOS, 0.5 < z < 1.5, Laplace; the fit lies near Tomczak+14 (same FAST masses)."""
    out = _run([str(ROOT / "notebooks" / "02_3dhst_mass_function.py")], tmp_path)
    line = next(ln for ln in out.splitlines() if "points: median difference" in ln)
    n, med, rms = _floats(line.replace(" points", ".0 points"))[:3]
    print(line)
    assert n >= 20
    assert abs(med) < 0.1 and rms < 0.3  # one field vs ZFOURGE/NMBS: cosmic variance ~0.1 dex
    cov = _floats(next(ln for ln in out.splitlines() if "predictive coverage" in ln))[0]
    assert 0.5 <= cov <= 1.0


def test_star_forming_sequence_notebook(tmp_path, shared_data):
    """The released Leja+22 flow: ridge and log <SFR> at z = 1, log M = 10 reproduce
    science.md check 8 (0.665 / 0.730) within 0.01 dex."""
    weights = shared_data / "sfs_leja2022_trained_flow" / "trained_flow_nsamp100.pth"
    out = _run([str(ROOT / "notebooks" / "03_star_forming_sequence.py")], tmp_path,
               {"POPMODEL_LEJA2022_FLOW": str(weights)})
    row = next(_floats(ln) for ln in out.splitlines() if ln.startswith("1.0  10.00"))
    _, _, ridge, ridge_eq10, mean, mean_eq10 = row
    assert ridge == pytest.approx(0.665, abs=0.01) and mean == pytest.approx(0.730, abs=0.01)
    assert ridge_eq10 == pytest.approx(0.639, abs=1e-3) and mean_eq10 == pytest.approx(0.736, abs=1e-3)


def test_census_notebook(tmp_path):
    """Route 1 and route 2 at the Leja+20 medians reproduce science.md check 4 (0.01 dex)."""
    out = _run([str(ROOT / "notebooks" / "04_census.py")], tmp_path)
    lines = out.splitlines()
    r1 = np.array(_floats(next(ln for ln in lines if ln.startswith("route 1, median"))))
    r2 = np.array(_floats(next(ln for ln in lines if ln.startswith("route 2, median"))))
    np.testing.assert_allclose(r1[1:], [-1.435, -1.225, -1.133, -1.140, -1.218], atol=0.01)  # r1[0] is R
    np.testing.assert_allclose(r2[:4], [-1.448, -1.220, -1.076, -0.998], atol=0.01)
    assert "bands: statistical only" in out


def test_census_notebook_executes_as_a_notebook(tmp_path, monkeypatch):
    """04_census.py converted by jupytext and executed cell by cell in a Jupyter kernel."""
    jupytext = pytest.importorskip("jupytext")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("POPMODEL_SMOKE", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    nb = jupytext.read(ROOT / "notebooks" / "04_census.py")
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                   for o in c.get("outputs", []) if o.get("output_type") == "stream")
    assert "route 1, median, R = 0.36: [-1.435" in text
    # the last cell displays the SFRD figure
    last = [c for c in nb.cells if c.cell_type == "code"][-1]
    assert any("image/png" in o.get("data", {}) for o in last.outputs)


def test_plot_census_smoke(tmp_path):
    _run([str(ROOT / "analyses" / "plot_census.py"), "--smoke", "--out", "c"], tmp_path)
    summary = json.loads((tmp_path / "c" / "census_summary.json").read_text())
    assert summary["band_label"] == "statistical only"
    for name in ("census.ecsv", "census_rho_star.png", "census_sfrd.png", "census_sf_q.png",
                 "census_sfrd.pdf"):
        assert (tmp_path / "c" / name).stat().st_size > 1000


@pytest.mark.slow
def test_figure_scripts_smoke(tmp_path):
    """The five figure scripts (a)-(e) in smoke mode, sharing one folder of mock results (the
    first builds the SMF fit, the next the flow and the census), then ``popmodel figures``.
    Each script commits its own output folder (a figures folder holds one run's figures)."""
    names = ("smf", "rho_star", "sfrd", "sfs", "residuals")
    _run([str(ROOT / "analyses" / "plot_smf.py"), "--smoke", "r", "--out", "figs_smf"], tmp_path)
    _run([str(ROOT / "analyses" / "plot_rho_star.py"), "--smoke", "r", "--out", "figs_rho_star"],
         tmp_path)
    _run([str(ROOT / "analyses" / "plot_sfrd.py"), "--smoke", "r", "--out", "figs_sfrd"], tmp_path)
    _run([str(ROOT / "analyses" / "plot_sfs.py"), "--smoke", "r", "--out", "figs_sfs"], tmp_path)
    out = _run([str(ROOT / "analyses" / "plot_residuals.py"), "--smoke", "r", "--out",
                "figs_residuals"], tmp_path)
    assert "wrote 4 files (residuals)" in out
    stems = {"smf": ["smf"], "rho_star": ["rho_star"], "sfrd": ["sfrd"], "sfs": ["sfs"],
             "residuals": ["residuals_smf", "residuals_sfs"]}
    for name in names:
        for stem in stems[name]:
            for ext in ("png", "pdf"):
                assert (tmp_path / f"figs_{name}" / f"{stem}.{ext}").stat().st_size > 5000, stem
    out = _run(["-m", "popmodel.cli", "figures", "--smoke", "r", "--out", "all"], tmp_path)
    assert "wrote 12 files" in out
    assert "smoke:" not in out  # the mock results were reused, not rebuilt


@pytest.mark.slow
def test_calibrate_cosmic_variance_smoke(tmp_path):
    out = _run([str(ROOT / "analyses" / "calibrate_cosmic_variance.py"), "--smoke", "--out", "cv.json"],
               tmp_path)
    rec = json.loads((tmp_path / "cv.json").read_text())
    assert rec["n_mocks"] == 2, out


def test_every_analysis_script_has_a_smoke_test():
    tests = "".join(p.read_text() for p in (ROOT / "tests").glob("test_*scripts.py"))
    scripts = sorted(p.name for p in (ROOT / "analyses").glob("*.py"))
    assert scripts
    missing = [s for s in scripts if not re.search(re.escape(f'"{s}"') + r'[^\n]{0,80}"--smoke"', tests)]
    assert not missing, f"analysis scripts without a --smoke test: {missing}"
    notebooks = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9]*.py"))
    untested = [n for n in notebooks if f'"{n}"' not in tests]
    assert not untested, f"notebooks without a test: {untested}"
