"""The documentation builds with Sphinx, warnings as errors (autodoc of every public module,
the user guide, the notebooks as pages and the command reference)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_docs_build_without_warnings(tmp_path):
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    pytest.importorskip("jupytext")
    env = dict(os.environ, MPLBACKEND="Agg",
               PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    out = tmp_path / "html"
    r = subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                        "-d", str(tmp_path / "doctrees"), str(ROOT / "docs"), str(out)],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-6000:]
    assert r.stderr.strip() == "", r.stderr[-4000:]
    # the API reference documents the public functions, with their docstrings
    census = (out / "api" / "census.html").read_text()
    assert 'id="popmodel.census.compute_census"' in census
    assert "return_fraction" in census
    smf = (out / "api" / "smf.html").read_text()
    assert 'id="popmodel.smf.checks.write_model_checks"' in smf
    # every notebook has a page, and the CLI reference lists every command
    for nb in sorted((ROOT / "notebooks").glob("[0-9]*.py")):
        assert (out / "_generated" / f"{nb.stem}.html").is_file(), nb.name
    cli = (out / "guide" / "cli.html").read_text()
    for cmd in ("fit-smf", "fit-3dhst", "mock", "census", "fit-sfs", "survey-3dhst"):
        assert f"popmodel {cmd}" in cli
