"""The ``run-3dhst`` command: the whole census of the packaged 3D-HST sample in one go.

Runs, one after another, into sub-folders of ``--out``, each step in its own process:

1. ``smf/``: the continuity SMF with cosmic variance (``popmodel fit-3dhst``, its reduced
   default: this step alone writes the SMF figure and the rho_* table);
2. ``sfs/``: the deconvolving flow ensemble and the star-forming sequence (``popmodel fit-sfs
   --3dhst``, UV+IR SFRs with an assumed 0.3 dex uncertainty);
3. ``census/``: rho_*(z) and the SFR density by both routes (``popmodel census``);
4. ``figures/``: the SMF, rho_*, SFRD, sequence and residual figures (``popmodel figures``).

A non-empty ``--out`` is refused before any work unless ``--resume`` or ``--overwrite`` is
given. ``--resume`` keeps every step whose folder holds a complete result (its manifest, see
:mod:`popmodel.io.resultdir`) made with the same settings and redoes the others (the flow members
resume from their checkpoints), so an interrupted run picks up where it stopped; the figures are
always redrawn. ``--overwrite`` replaces the popmodel results in the step folders.
``run_3dhst.json`` records each step's command, wall time and peak memory, the popmodel version
and the software versions.

    popmodel run-3dhst --out results/3dhst
    popmodel run-3dhst --out results/3dhst --full      # publication settings (hours)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from popmodel.cli.common import add_output_options, nonneg_int, positive_int

__all__ = ["cmd_run_3dhst", "register", "run_step", "steps_3dhst"]

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``run-3dhst`` to a ``popmodel`` sub-parser collection."""
    p = subparsers.add_parser(
        "run-3dhst", help="the full census of the 3D-HST sample: SMF, sequence, census, figures")
    p.add_argument("--out", required=True, help="output folder (smf/, sfs/, census/, figures/)")
    p.add_argument("--full", action="store_true",
                   help="publication settings for the SMF (fit-3dhst --full) and the flows")
    p.add_argument("--chains", type=positive_int, default=4,
                   help="NUTS chains of the SMF fit (default 4, one after another)")
    p.add_argument("--parallel-chains", action="store_true",
                   help="run the SMF fit's chains side by side (fit-3dhst --parallel-chains: "
                   "faster, but its memory grows with the sampling time)")
    p.add_argument("--seed", type=nonneg_int, default=0,
                   help="random seed of every step (default 0): the SMF chains, the flow members, "
                   "the census's and the figures' draws")
    p.add_argument("--members", type=positive_int, default=5, help="flow ensemble size (default 5)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="maximum epochs per flow member (default: fit-sfs's)")
    p.add_argument("--workers", type=positive_int, default=None,
                   help="flow members trained in parallel processes (default: fit-sfs's, one per "
                   "core)")
    p.add_argument("--no-cosmic-variance", action="store_true",
                   help="no per-field density terms in the SMF fit")
    p.add_argument("--skip", nargs="+", default=[], choices=("smf", "sfs", "census", "figures"),
                   help="steps to leave out (default: none)")
    add_output_options(p, single_step=False)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_run_3dhst, needs_jax=False)  # the steps run in their own processes
    return p


def steps_3dhst(a: argparse.Namespace) -> list[tuple[str, list[str], Path | None]]:
    """The steps as ``(name, popmodel argv, the step's folder or None)``."""
    out = Path(a.out)
    smf, sfs, census = out / "smf", out / "sfs", out / "census"
    seed = ["--seed", str(a.seed)]
    smf_argv = ["fit-3dhst", "--out", str(smf), "--chains", str(a.chains), *seed]
    if a.parallel_chains:
        smf_argv.append("--parallel-chains")
    sfs_argv = ["fit-sfs", "--3dhst", "--out", str(sfs), "--members", str(a.members), *seed]
    if a.workers is not None:
        sfs_argv += ["--workers", str(a.workers)]
    if a.full:
        smf_argv.append("--full")
    if a.no_cosmic_variance:
        smf_argv.append("--no-cosmic-variance")
    if a.epochs is not None:
        sfs_argv += ["--epochs", str(a.epochs)]
    for argv in (smf_argv, sfs_argv):
        if a.resume:
            argv.append("--resume")
        elif a.overwrite:
            argv.append("--overwrite")
    if a.no_progress:
        smf_argv.append("--no-progress")
        sfs_argv.append("--no-progress")
    census_argv = ["census", "--smf", str(smf), "--out", str(census), *seed]
    if "sfs" not in a.skip or (sfs / "sfs.ecsv").exists():
        census_argv += ["--sfs", str(sfs)]
    # the census follows its inputs: redone whenever it runs again
    if a.resume or a.overwrite:
        census_argv.append("--overwrite")
    steps = [("smf", smf_argv, smf), ("sfs", sfs_argv, sfs), ("census", census_argv, census)]
    # the figures are cheap (seconds) and always redrawn
    steps.append(("figures", ["figures", str(out), "--out", str(out / "figures"), "--overwrite",
                              *seed],
                  None))
    return [s for s in steps if s[0] not in a.skip]


def step_complete(argv: list[str], folder: Path) -> bool:
    """Whether ``folder`` holds a complete result (its manifest) of the step ``popmodel ARGV``
    with the same settings."""
    from popmodel.cli import census, sfs, smf
    from popmodel.cli.common import cli_config
    from popmodel.io.resultdir import read_manifest, same_config

    man = read_manifest(folder)
    if man is None:
        return False
    ap = argparse.ArgumentParser(prog="popmodel")
    sub = ap.add_subparsers(dest="cmd")
    for module in (smf, sfs, census):  # the steps with a folder (the figures are always redrawn)
        module.register(sub)
    config = cli_config(ap.parse_args(argv))
    return same_config(man, config)


def run_step(argv: list[str]) -> int:
    """Run ``popmodel ARGV`` in a fresh Python process (its memory is returned when it ends:
    the SMF fit holds several GB that the flow training should not sit beside)."""
    return run_step_measured(argv)[0]


def run_step_measured(argv: list[str]) -> tuple[int, float | None]:
    """Run ``popmodel ARGV`` in a fresh process; returns (exit status, its peak resident memory
    in MB, or None where the platform does not report it).

    The step reports its own peak (``VmHWM`` of ``/proc/self/status``, which counts the new
    program only; ``ru_maxrss`` would include the parent's pages copied at the fork) into a
    file named by ``POPMODEL_PEAK_RSS_FILE``.
    """
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "peak_rss_kb"
        env = dict(os.environ, POPMODEL_PEAK_RSS_FILE=str(report))
        rc = subprocess.run([sys.executable, "-m", "popmodel.cli", *argv], env=env,
                            check=False).returncode
        try:
            kb = float(report.read_text())
        except (OSError, ValueError):
            return rc, None
    return rc, round(kb / 1024, 1)


def peak_rss_kb() -> float | None:
    """This process's peak resident memory [kB] since it started its program (Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return float(line.split()[1])
    except OSError:
        pass
    return None


def cmd_run_3dhst(a: argparse.Namespace) -> int:
    from popmodel import __version__
    from popmodel.errors import OutputError
    from popmodel.io.resultdir import _check_writable, _visible_entries, write_text_atomic

    out = Path(a.out)
    _check_writable(out)
    entries = _visible_entries(out)
    if entries and not (a.resume or a.overwrite):
        raise OutputError(
            f"output folder {out} is not empty ({len(entries)} entries); pass --resume to keep "
            "its complete steps, --overwrite to replace its popmodel results, or choose another "
            "folder")
    record = {"popmodel_version": __version__, "command": "popmodel run-3dhst " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(a).items()
        if k not in ("func", "cmd", "version", "needs_jax") and v not in (False, None, [])),
        "started_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(), "steps": []}
    t_all = time.perf_counter()
    redone: set[str] = set()
    for name, argv, folder in steps_3dhst(a):
        inputs_redone = name == "census" and bool(redone & {"smf", "sfs"})
        if a.resume and folder is not None and not inputs_redone and step_complete(argv, folder):
            log.info(f"[run-3dhst] {name}: {folder} holds a complete result; kept (--resume)")
            record["steps"].append({"step": name, "argv": argv, "skipped": True})
            continue
        log.info(f"[run-3dhst] {name}: popmodel {' '.join(argv)}")
        t0 = time.perf_counter()
        rc, rss = run_step_measured(argv)
        redone.add(name)
        dt = time.perf_counter() - t0
        record["steps"].append({"step": name, "argv": argv, "wall_s": round(dt, 1),
                                "peak_rss_mb": rss, "rc": rc})
        log.info(f"[run-3dhst] {name}: done in {dt:.0f} s")
        write_text_atomic(out / "run_3dhst.json", json.dumps(record, indent=1))
        if rc:
            return rc
    record["total_wall_s"] = round(time.perf_counter() - t_all, 1)
    write_text_atomic(out / "run_3dhst.json", json.dumps(record, indent=1))
    log.info(f"[run-3dhst] all steps done in {record['total_wall_s']:.0f} s; results in {out}")
    return 0
