"""The main job end to end: ``popmodel run-3dhst`` with its defaults, timed per step.

Run from a fresh clone, after the README's install, on a quiet machine::

    python benchmarks/bench_main_job.py                 # about 30 minutes on 2 quiet cores
    python benchmarks/bench_main_job.py --out DIR --keep

It runs ``popmodel run-3dhst --out DIR`` in a child process (exactly what a user types) and
prints, from the ``run_3dhst.json`` that the command writes:

* ``STEP <name>: <wall> s, peak RSS <mb> MB`` for each step (the SMF fit, the flow ensemble,
  the census, the figures), and ``TOTAL``;
* ``PROBE``: the speed probe (exp + log evaluations per second, :mod:`probe`) before and after
  the job, so that a slow machine reads as such (``benchmarks/README.md``);
* ``RATIO``: each step's wall time times the probe rate, relative to the SMF step's: the share
  of the job each step takes, comparable across machines;
* ``DIAGNOSTICS``: the SMF step's sampler diagnostics (largest R-hat, smallest bulk and tail
  ESS, divergences) from its ``summary.json``, since a fast run that has not converged is not a
  result.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from probe import exp_log_probe


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=None, help="results folder (default: a temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary results folder")
    ap.add_argument("extra", nargs="*", help="further flags for popmodel run-3dhst (after --)")
    a = ap.parse_args(argv)
    tmp = None
    if a.out is None:
        tmp = tempfile.mkdtemp(prefix="bench_main_job_")
        out = Path(tmp) / "3dhst"
    else:
        out = Path(a.out)
    p0 = exp_log_probe(dtype=np.float32)
    print(f"PROBE before: {p0:.3g} exp+log/s", flush=True)
    cmd = [sys.executable, "-m", "popmodel.cli", "run-3dhst", "--out", str(out), *a.extra]
    print("RUN", " ".join(cmd), flush=True)
    t0 = time.perf_counter()
    rc = subprocess.call(cmd)
    wall = time.perf_counter() - t0
    p1 = exp_log_probe(dtype=np.float32)
    print(f"PROBE after: {p1:.3g} exp+log/s", flush=True)
    if rc != 0:
        print(f"FAILED: popmodel run-3dhst exited {rc} after {wall:.0f} s")
        return rc
    rec = json.loads((out / "run_3dhst.json").read_text())
    steps = [s for s in rec.get("steps", []) if "wall_s" in s]  # skipped steps have none
    ref = next((s["wall_s"] for s in steps if s["step"] == "smf"), None)
    for s in steps:
        rss = s.get("peak_rss_mb")
        print(f"STEP {s['step']}: {s['wall_s']:.0f} s, peak RSS "
              + ("not measured" if rss is None else f"{rss:.0f} MB"))
    print(f"TOTAL {rec.get('total_wall_s', wall):.0f} s (child process {wall:.0f} s)")
    if ref:
        for s in steps:
            print(f"RATIO {s['step']} / SMF step: {s['wall_s'] / ref:.2f}")
    summ = out / "smf" / "summary.json"  # the SMF step's (the census also writes one)
    if summ.is_file():
        d = json.loads(summ.read_text()).get("diagnostics", {})
        if d.get("r_hat"):
            print(f"DIAGNOSTICS R-hat max {max(d['r_hat'].values()):.3f}, bulk ESS min "
                  f"{min(d['ess_bulk'].values()):.0f}, tail ESS min "
                  f"{min(d.get('ess_tail', {'-': np.nan}).values()):.0f}, divergences "
                  f"{d.get('divergences')}, E-BFMI {d.get('e_bfmi')}")
    if tmp is not None and not a.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
