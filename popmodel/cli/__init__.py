"""The ``popmodel`` command line: argparse only; each sub-command imports its work when it runs.

================================ ==========================================================
sub-commands                     module
================================ ==========================================================
fit-smf, fit-3dhst               :mod:`popmodel.cli.smf`
mock, catalog-from-percentiles,  :mod:`popmodel.cli.data`
survey-3dhst
fit-sfs                          :mod:`popmodel.cli.sfs`
census                           :mod:`popmodel.cli.census`
figures                          :mod:`popmodel.cli.figures`
run-3dhst                        :mod:`popmodel.cli.pipeline`
================================ ==========================================================

Importing this package (and building the parser: ``popmodel --help``, ``--version``) imports
no JAX, torch, numpyro, matplotlib, numpy or astropy. Messages go to stderr through
:mod:`logging` (``-q``: warnings and errors only; ``-v``: more, and the traceback of an error);
errors are one line and an exit status (2 bad input, 1 failed computation).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from popmodel.cli import census, data, figures, pipeline, sfs, smf
from popmodel.cli.common import logging_to_stderr, run_handled, setup_jax

__all__ = ["build_parser", "main"]

_DESCRIPTION = """popmodel: population-level inference of galaxy demographics.

Commands write into a results folder that they refuse to mix with another run: a non-empty
--out needs --overwrite (replace the popmodel result there) or --resume (keep a complete one,
redo an incomplete one). Messages go to stderr (-q: warnings and errors only). Errors are one
line; -v shows the traceback."""


def build_parser() -> argparse.ArgumentParser:
    """The ``popmodel`` parser with every sub-command (imports nothing heavy)."""
    ap = argparse.ArgumentParser(prog="popmodel", description=_DESCRIPTION,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    ap.add_argument("-v", "--verbose", action="count", default=0,
                    help="more messages; with an error, also its traceback")
    ap.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = ap.add_subparsers(dest="cmd", metavar="COMMAND")
    smf.register(sub)
    data.register(sub)
    census.register(sub)
    sfs.register(sub)
    figures.register(sub)
    pipeline.register(sub)
    return ap


def _report_peak_rss(path: str) -> None:
    from popmodel.cli.pipeline import peak_rss_kb

    kb = peak_rss_kb()
    if kb is not None:
        Path(path).write_text(str(kb))


def main(argv: list[str] | None = None) -> int:
    """Run ``popmodel ARGV``; returns the exit status (0, 1 failed computation, 2 bad input)."""
    ap = build_parser()
    a = ap.parse_args(argv)
    if a.version:
        from popmodel._version import __version__

        print(__version__)
        return 0
    if a.cmd is None:
        ap.print_help()
        return 2
    if os.environ.get("POPMODEL_PEAK_RSS_FILE"):  # run-3dhst measures each step's memory
        import atexit

        atexit.register(_report_peak_rss, os.environ["POPMODEL_PEAK_RSS_FILE"])

    def run() -> int:
        if getattr(a, "needs_jax", True):  # fit-sfs is torch only
            # one CPU device (chains one after another) unless --parallel-chains: concurrent
            # chains make the resident memory grow with the sampling time (smf.py's help)
            setup_jax(a.chains if getattr(a, "parallel_chains", False) else 1)
        return a.func(a)

    with logging_to_stderr(a.verbose, a.quiet):
        return run_handled(f"popmodel {a.cmd}", run, a.verbose)


if __name__ == "__main__":
    sys.exit(main())
