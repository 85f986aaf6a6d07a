"""The ``run-3dhst`` command: the whole census of the packaged 3D-HST sample in one go.

Runs, one after another, into sub-folders of ``--out``, each step in its own process:

1. ``smf/``: the continuity SMF with cosmic variance (``popmodel fit-3dhst``, its reduced
   default: this step alone writes the SMF figure and the rho_* table);
2. ``sfs/``: the deconvolving flow ensemble and the star-forming sequence (``popmodel fit-sfs
   --3dhst``, UV+IR SFRs with an assumed 0.3 dex uncertainty);
3. ``census/``: rho_*(z) and the SFR density by both routes (``popmodel census``);
4. ``figures/``: the SMF, rho_*, SFRD, sequence and residual figures (``popmodel figures``).

``--resume`` skips a step whose outputs are already there (the flow members resume from their
checkpoints), so an interrupted run picks up where it stopped. ``run_3dhst.json`` records each
step's command and wall time, the popmodel version and the software versions.

    popmodel run-3dhst --out results/3dhst
    popmodel run-3dhst --out results/3dhst --full      # publication settings (hours)
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["cmd_run_3dhst", "register", "run_step", "steps_3dhst"]


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``run-3dhst`` to a ``popmodel`` sub-parser collection."""
    p = subparsers.add_parser(
        "run-3dhst", help="the full census of the 3D-HST sample: SMF, sequence, census, figures")
    p.add_argument("--out", required=True, help="output folder (smf/, sfs/, census/, figures/)")
    p.add_argument("--full", action="store_true",
                   help="publication settings for the SMF (fit-3dhst --full) and the flows")
    p.add_argument("--chains", type=int, default=2, help="NUTS chains of the SMF fit")
    p.add_argument("--members", type=int, default=5, help="flow ensemble size")
    p.add_argument("--epochs", type=int, default=None,
                   help="maximum epochs per flow member (default: fit-sfs's)")
    p.add_argument("--workers", type=int, default=2, help="flow members trained in parallel")
    p.add_argument("--no-cosmic-variance", action="store_true")
    p.add_argument("--skip", nargs="+", default=[], choices=("smf", "sfs", "census", "figures"),
                   help="steps to leave out")
    p.add_argument("--resume", action="store_true",
                   help="skip steps whose outputs exist; resume flow members from checkpoints")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_run_3dhst, needs_jax=False)  # the steps run in their own processes
    return p


def steps_3dhst(a: argparse.Namespace) -> list[tuple[str, list[str], Path | None]]:
    """The steps as ``(name, popmodel argv, file whose presence marks the step done)``."""
    out = Path(a.out)
    smf, sfs, census = out / "smf", out / "sfs", out / "census"
    smf_argv = ["fit-3dhst", "--out", str(smf), "--chains", str(a.chains)]
    sfs_argv = ["fit-sfs", "--3dhst", "--out", str(sfs), "--members", str(a.members),
                "--workers", str(a.workers)]
    if a.full:
        smf_argv.append("--full")
    if a.no_cosmic_variance:
        smf_argv.append("--no-cosmic-variance")
    if a.epochs is not None:
        sfs_argv += ["--epochs", str(a.epochs)]
    if a.resume:
        sfs_argv.append("--resume")
    if a.no_progress:
        smf_argv.append("--no-progress")
        sfs_argv.append("--no-progress")
    census_argv = ["census", "--smf", str(smf), "--out", str(census)]
    if "sfs" not in a.skip or (sfs / "sfs.ecsv").exists():
        census_argv += ["--sfs", str(sfs)]
    steps = [("smf", smf_argv, smf / "summary.json"), ("sfs", sfs_argv, sfs / "sfs.ecsv"),
             ("census", census_argv, census / "census.ecsv")]
    # the figures are cheap (seconds) and always redrawn
    steps.append(("figures", ["figures", str(out), "--out", str(out / "figures")], None))
    return [s for s in steps if s[0] not in a.skip]


def run_step(argv: list[str]) -> int:
    """Run ``popmodel ARGV`` in a fresh Python process (its memory is returned when it ends:
    the SMF fit holds several GB that the flow training should not sit beside)."""
    return subprocess.run([sys.executable, "-m", "popmodel.cli", *argv], check=False).returncode


def cmd_run_3dhst(a: argparse.Namespace) -> int:
    from popmodel import __version__

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    record = {"popmodel_version": __version__, "command": "popmodel run-3dhst " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()
        if k not in ("func", "cmd", "version", "needs_jax") and v not in (False, None, [])),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "steps": []}
    t_all = time.perf_counter()
    for name, argv, marker in steps_3dhst(a):
        if a.resume and marker is not None and marker.exists():
            print(f"[run-3dhst] {name}: {marker} exists, skipped (--resume)")
            record["steps"].append({"step": name, "argv": argv, "skipped": True})
            continue
        print(f"[run-3dhst] {name}: popmodel {' '.join(argv)}", flush=True)
        t0 = time.perf_counter()
        rc = run_step(argv)
        dt = time.perf_counter() - t0
        record["steps"].append({"step": name, "argv": argv, "wall_s": round(dt, 1), "rc": rc})
        print(f"[run-3dhst] {name}: done in {dt:.0f} s", flush=True)
        (out / "run_3dhst.json").write_text(json.dumps(record, indent=1))
        if rc:
            return rc
    record["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    (out / "run_3dhst.json").write_text(json.dumps(record, indent=1))
    print(f"[run-3dhst] all steps done in {record['total_wall_s']:.0f} s; results in {out}")
    return 0
